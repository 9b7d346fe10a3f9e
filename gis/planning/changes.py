"""One proposed change to one grid, as the publish engine takes it (the interface of DESIGN14_15.md).

Defined here until gis/planning/publish.py lands on main; then this module re-exports that class.
"""

from __future__ import annotations

from dataclasses import dataclass

from shapely.geometry import MultiPolygon


@dataclass(frozen=True)
class GridChange:
    code: str
    level: int
    name: str
    parent_code: str | None
    geom: MultiPolygon | None  # EPSG:4326; None = retire the grid `code`
    old_code: str | None = None  # a recode: the current code it replaces
