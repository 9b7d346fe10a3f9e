"""The grids through time: one code's versions and the publishes that made them; the list of publishes."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.errors import NotFound

# Without geometries: a timeline is read to see what changed when (GET /grids/{code}/history has the shapes).
_VERSIONS = text(
    """
    SELECT id, code, name, level, parent_code, valid_from, valid_to, source,
           round(ST_Area(geom::geography)::numeric)::float AS area_m2
    FROM grid WHERE code = :code ORDER BY valid_from
    """
)

_PUBLISH_COLUMNS = ("id, plan_id, name, effective_at, status, created_by_name, created_at, applied_at, failure, "
                    "jsonb_array_length(changes) AS changes")

_TOUCHING = text(
    f"""
    SELECT {_PUBLISH_COLUMNS} FROM grid_publish
    WHERE changes @> CAST(:as_code AS jsonb) OR changes @> CAST(:as_old AS jsonb)
    ORDER BY effective_at, id LIMIT 200
    """
)


def grid_timeline(session: Session, code: str) -> dict[str, Any]:
    """Every version of `code` (oldest first, with its period and area) and every publish that
    touched it (as the new code or the recoded one), pending and failed ones included."""
    versions = [dict(r) for r in session.execute(_VERSIONS, {"code": code}).mappings()]
    publishes = [dict(r) for r in session.execute(
        _TOUCHING, {"as_code": json.dumps([{"code": code}]), "as_old": json.dumps([{"old_code": code}])}
    ).mappings()]
    if not versions and not publishes:
        raise NotFound(f"no grid has the code {code}")
    return {"code": code, "versions": versions, "publishes": publishes}


def publishes(session: Session, *, status: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """The publishes, newest first: who asked, when, effective when, and what became of them."""
    where = "WHERE status = :status" if status else ""
    params: dict[str, Any] = {"status": status, "limit": limit, "offset": offset}
    rows = session.execute(
        text(f"SELECT {_PUBLISH_COLUMNS} FROM grid_publish {where} ORDER BY created_at DESC, id DESC "
             "LIMIT :limit OFFSET :offset"), params).mappings().all()
    total = session.execute(text(f"SELECT count(*) FROM grid_publish {where}"), params).scalar_one()
    return {"items": [dict(r) for r in rows], "total": int(total), "offset": offset}


def publish_row(session: Session, publish_id: int) -> dict[str, Any]:
    row = session.execute(text(f"SELECT {_PUBLISH_COLUMNS} FROM grid_publish WHERE id = :id"),
                          {"id": publish_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"no publish {publish_id}")
    return dict(row)
