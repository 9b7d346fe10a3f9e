"""Who serves in a grid and who lives there: staff lists and household counts per grid."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.households import counts_by_grid

# Order in which a grid's contact card lists its people (一长一员一户, then the supervisor).
ROLE_ORDER = {"grid_leader": 0, "grid_member": 1, "party_household": 2, "supervisor": 3}


def staff_by_grid(session: Session, codes: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Staff per grid code, leader first. Staff contacts are public by design (the grid's board)."""
    sql = "SELECT id, name, phone, role, grid_code FROM staff"
    params: dict[str, Any] = {}
    if codes is not None:
        sql += " WHERE grid_code = ANY(:codes)"
        params["codes"] = list(codes)
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in session.execute(text(sql), params):
        out[r.grid_code].append({"id": r.id, "name": r.name, "phone": r.phone, "role": r.role})
    for people in out.values():
        people.sort(key=lambda p: (ROLE_ORDER.get(p["role"], 9), p["id"]))
    return dict(out)


def household_counts(session: Session) -> dict[str, dict[str, int]]:
    """Households and residents per current grid, at every level (a house counts in its own grid,
    by gis.households' house → grid rule, and in each of that grid's ancestors)."""
    return {r["code"]: {"households": r["households"], "residents": r["residents"]} for r in counts_by_grid(session)}
