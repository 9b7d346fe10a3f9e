"""The rescue order of flooded households, after the county practice "三个最先".

"三个最先": first the most dangerous places, first the elderly living alone and five-guarantee
(五保) households, first the old, sick, disabled and pregnant. The score adds three parts:

* **danger** — water depth at the house: ``DEPTH_POINTS × min(depth, 3 m) / 3 m`` (0–40 points).
  When the extent carries no depth (uploaded or drawn extents) every house gets the middle value
  (20), so the order is decided by the people in it.
* **people** — per member: bedridden 12, disabled 10, pregnant 10, elderly (65+) 6, child (<14) 4;
  plus 30 for an elderly person living alone (a one-person household of someone 65+), and 30 for a
  five-guarantee household when the data says so (the household table has no such column yet, so
  today it never applies).
* **refuge** — a house with an upper floor that stays dry is less urgent: −15 when
  ``floors ≥ 2`` and the depth (when known) is below the height of the floors under the top one
  (``STOREY_M × (floors − 1)``); not applied when someone is bedridden, who cannot climb.

Higher score first. Ties are broken by depth (deeper first), then the number of vulnerable
members, then residents, then household number and id, so the order never depends on the database's
row order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DEPTH_POINTS = 40.0
DEPTH_CAP_M = 3.0
UNKNOWN_DEPTH_POINTS = DEPTH_POINTS / 2
POINTS = {"bedridden": 12.0, "disabled": 10.0, "pregnant": 10.0, "elderly": 6.0, "children": 4.0}
LIVING_ALONE_ELDERLY = 30.0
FIVE_GUARANTEE = 30.0
DRY_UPPER_FLOOR_RELIEF = 15.0
STOREY_M = 3.0
ELDERLY_AGE = 65
CHILD_AGE = 14


@dataclass(frozen=True)
class Score:
    total: float
    danger: float
    people: float
    refuge: float


def living_alone_elderly(h: dict[str, Any]) -> bool:
    return int(h["residents"]) == 1 and int(h["elderly"]) >= 1


def dry_upper_floor(floors: int, depth_m: float | None) -> bool:
    if floors < 2:
        return False
    return depth_m is None or depth_m < STOREY_M * (floors - 1)


def score(h: dict[str, Any]) -> Score:
    """The score of one household (keys: depth_m, residents, floors and the vulnerable counts)."""
    depth = h.get("depth_m")
    known = depth is not None and not (isinstance(depth, float) and math.isnan(depth))
    danger = (DEPTH_POINTS * min(max(float(depth), 0.0), DEPTH_CAP_M) / DEPTH_CAP_M
              if known and depth is not None else UNKNOWN_DEPTH_POINTS)
    people = sum(POINTS[k] * int(h.get(k) or 0) for k in POINTS)
    if living_alone_elderly(h):
        people += LIVING_ALONE_ELDERLY
    if h.get("five_guarantee"):
        people += FIVE_GUARANTEE
    refuge = 0.0
    if int(h.get("bedridden") or 0) == 0 and dry_upper_floor(int(h["floors"]), depth if known else None):
        refuge = -DRY_UPPER_FLOOR_RELIEF
    return Score(round(danger + people + refuge, 3), round(danger, 3), people, refuge)


def vulnerable_members(h: dict[str, Any]) -> int:
    return sum(int(h.get(k) or 0) for k in POINTS)


def sort_key(h: dict[str, Any]) -> tuple[Any, ...]:
    depth = h.get("depth_m")
    d = depth if depth is not None and not math.isnan(depth) else -1.0
    return (-h["priority_score"], -d, -vulnerable_members(h), -int(h["residents"]),
            str(h["household_no"]), int(h["id"]))


def rank(households: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Scores each household (priority_score, priority_parts) and returns them in rescue order,
    with priority_rank 1, 2, ..."""
    for h in households:
        s = score(h)
        h["priority_score"] = s.total
        h["priority_parts"] = {"danger": s.danger, "people": s.people, "refuge": s.refuge}
    ordered = sorted(households, key=sort_key)
    for i, h in enumerate(ordered, 1):
        h["priority_rank"] = i
    return ordered
