"""Validation of a plan: every problem of its proposed grids, each with the grid's code and a place
(lon/lat) on the map. A plan with problems is unfinished, never refused: it is saved as it is, and
publish is where problems stop it.

The hierarchy rules (codes, parents, a child outside its parent, overlaps and gaps between siblings
above the tolerances) are gis/grids/validate.py's, run on the plan's grids together with the current
grids around them (their parents, siblings and children). Added here: a grid in several pieces
(unless allowed), a code another current grid still holds, and a group grid left without a leader
or members.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import text

from gis.codes import GridLevel
from gis.crs import metric_crs_for, metric_transformer
from gis.errors import Problem
from gis.grids.validate import DEFAULT_TOLERANCE_M, validate_grids
from gis.planning.plans import Draft, DraftGrid

PROBLEM_ZH = {
    "empty_geometry": "网格没有范围",
    "invalid_geometry": "几何无效",
    "duplicate_code": "编码重复",
    "bad_code": "编码格式错误",
    "bad_parent": "上级网格不存在或层级不对",
    "outside_parent": "超出上级网格",
    "overlap": "与同级网格重叠",
    "gap": "同级网格之间有空隙",
    "non_contiguous": "网格不连片",
    "no_leader": "没有网格长",
    "no_members": "没有网格员",
}
ORDER = list(PROBLEM_ZH)


@dataclass
class Validation:
    problems: list[Problem] = field(default_factory=list)
    grids_checked: int = 0

    @property
    def finished(self) -> bool:
        return not self.problems

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.problems:
            out[p.type] = out.get(p.type, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "finished": self.finished,
            "state": "finished" if self.finished else "unfinished",
            "state_zh": "可发布" if self.finished else "未完成",
            "grids_checked": self.grids_checked,
            "counts": self.counts(),
            "problems": [{**p.as_dict(), "type_zh": PROBLEM_ZH.get(p.type, p.type)} for p in self.problems],
        }


def _frame(grids: list[DraftGrid]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"row": list(range(1, len(grids) + 1)), "code": [g.code for g in grids], "level": [g.level for g in grids],
         "parent_code": [g.parent_code for g in grids], "name": [g.name for g in grids]},
        geometry=gpd.GeoSeries([g.geom if g.geom is not None and not g.geom.is_empty else None for g in grids],
                               crs="EPSG:4326"),
        crs="EPSG:4326",
    )


def _where(geom: BaseGeometry | None) -> dict[str, float]:
    if geom is None or geom.is_empty:
        return {}
    parts = shapely.get_parts(geom)
    p = shapely.point_on_surface(parts[int(np.argmax(shapely.area(parts)))])
    return {"lon": round(float(p.x), 6), "lat": round(float(p.y), 6)}


def _context(draft: Draft, checked: list[DraftGrid]) -> tuple[list[DraftGrid], list[DraftGrid]]:
    """(grids to check, current grids around them): the plan's grids plus the current children of
    grids whose area changed (a child must stay inside), and the parents and siblings they are judged with."""
    shadowed = draft.shadowed()
    codes = {g.code for g in checked}
    parents: set[str] = {g.parent_code for g in checked if g.parent_code}
    extra: list[DraftGrid] = []
    for g in checked:
        if g.level < GridLevel.GROUP:
            extra += [c for c in draft.children(g.code) if c.code not in codes]
    # Current children of a retired grid are orphans: checked too (their parent is gone); and its
    # parent, whose children no longer cover it.
    # A group grid has no children, so only a retired higher grid is looked up (one query each), and
    # each parent once: a plan retiring 500 group grids costs a handful of queries, not 1,000.
    retired = [r for r in draft.rows.values() if r.retired]
    for r in retired:
        if r.level < GridLevel.GROUP:
            extra += [c for c in draft.children(r.code) if c.code not in codes]
    for code in sorted({r.parent_code for r in retired if r.parent_code}):
        parent = draft.find(code)
        if parent is not None and parent.code not in codes:
            extra.append(parent)
    seen = set(codes)
    check = list(checked)
    for g in extra:
        if g.code not in seen:
            seen.add(g.code)
            check.append(g)
    around: list[DraftGrid] = []
    for g in list(check):   # a checked parent is judged with all its children
        if g.level < GridLevel.GROUP and g.base_code is not None and not draft.rows.get(g.code):
            for c in draft.children(g.code):
                if c.code not in seen:
                    around.append(c)
                    seen.add(c.code)
    for p in sorted(parents | {g.parent_code for g in check if g.parent_code}):
        parent = draft.find(p)
        if parent is not None and p not in seen:
            around.append(parent)
            seen.add(p)
        for s in draft.children(p):
            if s.code not in seen and s.code not in shadowed | codes:
                around.append(s)
                seen.add(s.code)
    return check, around


def validate_plan(draft: Draft, *, gap_tolerance_m2: float = 1.0, overlap_tolerance_m2: float = 1.0,
                  boundary_tolerance_m: float = DEFAULT_TOLERANCE_M) -> Validation:
    """Every problem of the plan's proposed state, located."""
    checked = [r for r in draft.rows.values() if not r.retired]
    if not checked and not draft.rows:
        return Validation()
    check, around = _context(draft, sorted(checked, key=lambda g: (g.level, g.code)))
    problems: list[Problem] = []
    if check:
        raw = validate_grids(_frame(check), _frame(around) if around else None, gap_tolerance_m2=gap_tolerance_m2,
                             overlap_tolerance_m2=overlap_tolerance_m2, boundary_tolerance_m=boundary_tolerance_m)
        for p in raw:
            g = check[int(p.loc[1]) - 1]
            ctx = dict(p.ctx or {})
            ctx.setdefault("code", g.code)
            if "lon" not in ctx:
                ctx.update(_where(g.geom))
            problems.append(Problem(("grids", g.code, str(p.loc[2]) if len(p.loc) > 2 else "geometry"), p.msg,
                                    p.type, ctx))
    problems += _duplicates(draft, checked)
    problems += _pieces(checked, gap_tolerance_m2)
    problems += _staffing(draft, checked)
    problems.sort(key=lambda p: (str(p.loc[1]), ORDER.index(p.type) if p.type in ORDER else 99))
    return Validation(problems, len(check))


def _duplicates(draft: Draft, grids: Iterable[DraftGrid]) -> list[Problem]:
    """A new grid (or a recode) taking a code that a current grid the plan leaves in place still has."""
    out = []
    shadowed = draft.shadowed()
    for g in grids:
        if g.code != g.base_code and g.code not in shadowed and draft.current(g.code) is not None:
            out.append(Problem(("grids", g.code, "code"), f"code {g.code} is still held by a current grid",
                               "duplicate_code", {"code": g.code, **_where(g.geom)}))
    return out


def _pieces(grids: list[DraftGrid], min_area_m2: float) -> list[Problem]:
    """A grid in several pieces (each larger than the area tolerance), unless the plan allows it."""
    out = []
    for g in grids:
        if g.allow_parts or g.geom is None or g.geom.is_empty:
            continue
        parts = shapely.get_parts(g.geom)
        if len(parts) < 2:
            continue
        c = g.geom.centroid
        fwd = metric_transformer(metric_crs_for(c.x, c.y)).transform
        areas = shapely.area(shapely.transform(parts, fwd, interleaved=False))
        big = [i for i in np.argsort(-areas) if areas[i] > min_area_m2]
        if len(big) < 2:
            continue
        stray = parts[big[1]]
        out.append(Problem(
            ("grids", g.code, "geometry"),
            f"grid {g.code} is in {len(big)} separate pieces; the second largest is {areas[big[1]]:,.0f} m²",
            "non_contiguous", {"code": g.code, "pieces": len(big), **_where(stray)}))
    return out


def _staffing(draft: Draft, grids: list[DraftGrid]) -> list[Problem]:
    """Every group grid the plan keeps or makes has a leader (网格长) and a member (网格员); staff follow
    their grid's code, so a new grid (a split piece, a created grid) starts with none."""
    groups = [g for g in grids if g.level == GridLevel.GROUP and g.geom is not None and not g.geom.is_empty]
    if not groups:
        return []
    held = draft.session.execute(text(
        "SELECT grid_code, role, count(*) FROM staff WHERE grid_code = ANY(:codes) GROUP BY 1, 2"),
        {"codes": [g.base_code or g.code for g in groups]}).all()
    roles: dict[str, set[str]] = {}
    for code, role, _ in held:
        roles.setdefault(code, set()).add(role)
    out = []
    for g in groups:
        have = roles.get(g.base_code or g.code, set())
        for role, kind, zh in (("grid_leader", "no_leader", "leader"), ("grid_member", "no_members", "member")):
            if role not in have:
                out.append(Problem(("grids", g.code, "staff"), f"group grid {g.code} has no grid {zh}", kind,
                                   {"code": g.code, **_where(g.geom)}))
    return out
