"""Headline numbers of what is loaded: grids per level, people and places."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


def town_counts(session: Session) -> dict[str, Any]:
    def q(sql: str) -> Any:
        return session.execute(text(sql)).scalar_one()

    levels: dict[int, int] = dict(
        session.execute(text("SELECT level, count(*) FROM grid WHERE valid_to IS NULL GROUP BY level")).all()
    )
    staff: dict[str, int] = dict(session.execute(text("SELECT role, count(*) FROM staff GROUP BY role")).all())
    synthetic = session.execute(
        text("SELECT value->>'notice' FROM dataset_info WHERE key = 'sample_town'")
    ).scalar_one_or_none()
    return {
        "grids_by_level": {str(k): v for k, v in sorted(levels.items())},
        "natural_villages": q("SELECT count(*) FROM natural_village"),
        "households": q("SELECT count(*) FROM household"),
        "residents": q("SELECT count(*) FROM resident"),
        "residents_by_household_counts": int(q("SELECT coalesce(sum(residents), 0) FROM household")),
        "staff_by_role": staff,
        "shelters": q("SELECT count(*) FROM shelter"),
        "roads": q("SELECT count(*) FROM road"),
        "rivers": q("SELECT count(*) FROM river"),
        "synthetic_notice": synthetic,
    }
