"""What is loaded, as notes keyed by dataset (`sample_town`, `dem`): read by pages, written by loaders."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from gis.models import DatasetInfo


def set_dataset_info(session: Session, key: str, value: dict[str, Any]) -> None:
    """Write (or replace) the note on dataset `key`."""
    stmt = insert(DatasetInfo).values(key=key, value=value)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[DatasetInfo.key], set_={"value": stmt.excluded.value, "updated_at": text("now()")}
        )
    )


def dataset_info(session: Session, key: str) -> dict[str, Any] | None:
    """The note on dataset `key`, or None when no such dataset is loaded."""
    value: dict[str, Any] | None = session.execute(
        text("SELECT value FROM dataset_info WHERE key = :k"), {"k": key}
    ).scalar_one_or_none()
    return value
