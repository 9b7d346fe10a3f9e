"""Routing: which staff an incident reaches, as one table every intake path is generated from.

An incident assigned to a group grid reaches that grid's leader and members and its village's
supervisor (`ROUTES`). The one-statement intake and the general intake write the assignees with
the SQL made here (`assignees_select`), and the batch import pairs incidents with staff in memory
(`pair_staff`) from the same table, so that all three reach the same people.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Route:
    """Staff of `role` serving the incident's grid at `level` (4 the group grid, 3 its village)
    are assigned with `duty`."""

    level: int
    role: str
    duty: str


ROUTES: tuple[Route, ...] = (
    Route(4, "grid_leader", "leader"),
    Route(4, "grid_member", "member"),
    Route(3, "supervisor", "supervisor"),
)
ROUTED_ROLES: tuple[str, ...] = tuple(dict.fromkeys(r.role for r in ROUTES))
ROUTED_LEVELS: tuple[int, ...] = tuple(sorted({r.level for r in ROUTES}, reverse=True))


def _duty_sql(role: str) -> str:
    arms = " ".join(f"WHEN '{r.role}' THEN '{r.duty}'" for r in ROUTES)
    return f"CASE {role} {arms} END"


def staff_condition(codes: dict[int, str], staff: str = "s") -> str:
    """SQL: the staff row `staff` is routed for an incident whose grid code at each routed level is
    the SQL expression `codes[level]` (a column or a bind parameter)."""
    arms = []
    for level in ROUTED_LEVELS:
        roles = ", ".join(f"'{r.role}'" for r in ROUTES if r.level == level)
        arms.append(f"({staff}.grid_code = {codes[level]} AND {staff}.role IN ({roles}))")
    return "(" + " OR ".join(arms) + ")"


def assignees_select(incident_id: str, codes: dict[int, str], source: str = "") -> str:
    """SQL: SELECT (incident_id, staff_id, duty) of the staff routed for one incident, for
    `INSERT INTO incident_assignee`. `source` is a FROM item naming the incident's columns
    (e.g. "ins"); without one the expressions are bind parameters."""
    from_items = f"{source} JOIN staff s ON {staff_condition(codes)}" if source else "staff s"
    where = "" if source else f" WHERE {staff_condition(codes)}"
    return f"SELECT {incident_id}, s.id, {_duty_sql('s.role')} FROM {from_items}{where}"


# The staff the batch import reads once, to route in memory.
ROUTED_STAFF_SQL = "SELECT id, role, grid_code FROM staff WHERE role IN (" + ", ".join(
    f"'{role}'" for role in ROUTED_ROLES) + ")"


def pair_staff(ids: np.ndarray, codes: dict[int, np.ndarray], staff: pd.DataFrame) -> pd.DataFrame:
    """(incident_id, staff_id, duty) for the incidents `ids` whose grid codes at each routed level
    are `codes[level]` (None where the incident has none), from `staff` (ROUTED_STAFF_SQL's rows as
    columns staff_id, role, grid_code): the rule of `staff_condition`, in memory."""
    incidents = pd.DataFrame({"incident_id": ids, **{f"g{lv}": codes[lv] for lv in ROUTED_LEVELS}})
    frames: list[Any] = []
    for level in ROUTED_LEVELS:
        roles = [r.role for r in ROUTES if r.level == level]
        crew = staff[staff["role"].isin(roles)]
        frames.append(incidents.merge(crew, left_on=f"g{level}", right_on="grid_code"))
    pairs = pd.concat(frames).drop_duplicates(["incident_id", "staff_id"])
    duty = pairs["role"].map({r.role: r.duty for r in ROUTES})
    return pd.DataFrame({"incident_id": pairs["incident_id"].to_numpy(),
                         "staff_id": pairs["staff_id"].to_numpy(),
                         "duty": duty.to_numpy(dtype=object)})
