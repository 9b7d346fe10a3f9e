"""What a grid member's phone starts from: the grids they serve in, with the people on each grid's board."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.auth.principal import Principal
from gis.people import staff_by_grid


def my_grids(session: Session, principal: Principal) -> list[dict[str, Any]]:
    """The current grids of the principal's scope (code order), each with the names of the grids
    above it (town first) and its staff, leader first. Roles without a scope have none."""
    codes = list(principal.scope_codes) if principal.scoped else []
    if not codes:
        return []
    rows = session.execute(
        text(
            """
            WITH RECURSIVE up AS (
                SELECT g.code AS own, g.parent_code AS code, 1 AS depth FROM grid g
                WHERE g.code = ANY(:codes) AND g.valid_to IS NULL
                UNION ALL
                SELECT up.own, p.parent_code, up.depth + 1 FROM up
                JOIN grid p ON p.code = up.code AND p.valid_to IS NULL
                WHERE up.depth < 4
            )
            SELECT g.code, g.name, g.level,
                   coalesce((SELECT array_agg(a.name ORDER BY a.level) FROM up
                             JOIN grid a ON a.code = up.code AND a.valid_to IS NULL
                             WHERE up.own = g.code), '{}') AS path
            FROM grid g WHERE g.code = ANY(:codes) AND g.valid_to IS NULL ORDER BY g.code
            """
        ),
        {"codes": codes},
    ).mappings()
    grids = [dict(r) for r in rows]
    staff = staff_by_grid(session, [g["code"] for g in grids])
    for g in grids:
        g["path"] = list(g["path"])
        g["staff"] = staff.get(g["code"], [])
    return grids
