"""A change to the grids, as plans draft it and the publish engine applies it (`GridChange`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from gis.errors import InputError, Problem


@dataclass(frozen=True)
class GridChange:
    """The proposed state of one grid code.

    `geom` None retires `code`; `old_code` set means `code` replaces (recodes) that current grid,
    whose staff, account scopes and open incidents follow it. Otherwise `code` gets a new version
    when it is current, or is created. Geometries are EPSG:4326 (Polygon is taken as MultiPolygon).
    """

    code: str
    level: int
    name: str
    parent_code: str | None
    geom: BaseGeometry | None
    old_code: str | None = None

    @property
    def retires(self) -> bool:
        return self.geom is None

    def multipolygon(self) -> MultiPolygon | None:
        if self.geom is None:
            return None
        if isinstance(self.geom, Polygon):
            return MultiPolygon([self.geom])
        if isinstance(self.geom, MultiPolygon):
            return self.geom
        raise TypeError(f"grid {self.code}: a {self.geom.geom_type} is not a polygon")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready; the geometry as hex WKB (exact: a stored publish applies what was asked)."""
        geom = self.multipolygon()
        return {
            "code": self.code, "level": self.level, "name": self.name, "parent_code": self.parent_code,
            "geom": None if geom is None else shapely.to_wkb(geom, hex=True), "old_code": self.old_code,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GridChange:
        geom = d.get("geom")
        return cls(
            code=d["code"], level=int(d["level"]), name=d["name"], parent_code=d.get("parent_code"),
            geom=None if geom is None else shapely.from_wkb(geom), old_code=d.get("old_code"),
        )


def check_changes(changes: Sequence[GridChange]) -> None:
    """What can be told from the changes alone (codes, levels, geometries, repeats): InputError with
    every problem, each at ("changes", index, field)."""
    from gis.codes import code_problem

    problems: list[Problem] = []
    seen: dict[str, int] = {}
    replaced: dict[str, int] = {}
    for i, c in enumerate(changes):
        loc = ("changes", i)
        if c.code in seen:
            problems.append(Problem((*loc, "code"), f"grid {c.code} is changed twice (also change {seen[c.code]})",
                                    "duplicate_code"))
        seen.setdefault(c.code, i)
        if c.old_code is not None:
            if c.old_code in replaced:
                problems.append(Problem((*loc, "old_code"), f"grid {c.old_code} is recoded twice", "duplicate_code"))
            replaced.setdefault(c.old_code, i)
            if c.old_code == c.code:
                problems.append(Problem((*loc, "old_code"), "a recode needs a different code", "same_code"))
        if c.retires:
            if c.old_code is not None:
                problems.append(Problem((*loc, "geom"), f"recoding {c.old_code} to {c.code} needs its geometry",
                                        "missing_geometry"))
            continue
        why = code_problem(c.code, c.level)
        if why:
            problems.append(Problem((*loc, "code"), why, "bad_code"))
        if (c.level == 1) != (c.parent_code is None):
            problems.append(Problem((*loc, "parent_code"), "only the town (level 1) has no parent", "bad_parent"))
        try:
            geom = c.multipolygon()
        except TypeError as e:
            problems.append(Problem((*loc, "geom"), str(e), "not_a_polygon"))
            continue
        if geom is None or geom.is_empty:
            problems.append(Problem((*loc, "geom"), f"grid {c.code}: the geometry is empty", "empty_geometry"))
        elif not geom.is_valid:
            why = shapely.is_valid_reason(geom)
            problems.append(Problem((*loc, "geom"), f"grid {c.code}: invalid geometry ({why})", "invalid_geometry"))
    for code, i in replaced.items():
        if code in seen and not changes[seen[code]].retires:
            problems.append(Problem(("changes", i, "old_code"),
                                    f"grid {code} is recoded and also kept with a new version", "duplicate_code"))
    if problems:
        raise InputError(problems, title="The grid changes cannot be published")
