"""The edits a planner makes to a plan: reassign units, move a shared boundary, split, merge, create,
retire, rename, recode. Each works on the plan's `Draft`, checks its input (a 422 naming the field)
and keeps the levels above and below in step: area moved between grids of different parents moves
between those parents too, and children follow the grid that now holds them (re-parented, recoded
where a group grid changes village) or, straddling a new edge, are left for validation to flag.

A household's unit area is its Voronoi cell among the households of the group grid that holds it
(all inside one village), clipped to that grid: the cells of a grid's households partition it, so
painting a household moves exactly its share of land. A natural village's area is the union of its
households' cells; a small grid's is its polygon.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import shapely
import shapely.ops
from shapely.geometry import LineString, MultiPoint
from shapely.geometry.base import BaseGeometry
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.codes import GridLevel, code_problem, parent_problem
from gis.context import Context
from gis.errors import InputError, Problem
from gis.models import Plan
from gis.planning.plans import (
    Draft,
    DraftGrid,
    check_version,
    get_plan,
    multipolygon,
    must_be_draft,
    touch,
)

UNIT_KINDS = ("household", "household_id", "natural_village", "grid")
Loc = tuple[str | int, ...]
# A child counts as inside a grid when no more than this share of its area lies outside it.
_INSIDE_SHARE = 0.999


def edit_plan(session: Session, ctx: Context, plan_id: int, if_match: int | None, action: str,
              apply: Callable[[Draft], dict[str, Any]]) -> tuple[Plan, Draft, dict[str, Any]]:
    """One edit in one transaction: lock the plan, check the version named, apply, save, bump, audit."""
    plan = get_plan(session, plan_id, for_update=True)
    check_version(plan, if_match)
    must_be_draft(plan)
    draft = Draft(session, plan)
    report = apply(draft)
    draft.save()
    touch(plan)
    ctx.audit(session, f"plan.{action}", resource="plan", resource_ids=[plan.id],
              detail={"version": plan.version, **report})
    session.flush()
    return plan, draft, report


# --- input ---------------------------------------------------------------------------------------


def line_from_geojson(value: Any, loc: Loc) -> LineString:
    """A drawn line: a GeoJSON LineString (or a Feature holding one) in WGS84 lon/lat."""
    if isinstance(value, dict) and value.get("type") == "Feature":
        value, loc = value.get("geometry"), loc + ("geometry",)
    if not isinstance(value, dict) or value.get("type") != "LineString":
        raise InputError(Problem(loc, "expected a GeoJSON LineString", "bad_geometry_type"))
    coords = value.get("coordinates")
    if not isinstance(coords, list) or len(coords) < 2:
        raise InputError(Problem(loc + ("coordinates",), "a line has at least two positions", "bad_coordinates"))
    pts = []
    for i, c in enumerate(coords):
        if (not isinstance(c, list) or len(c) not in (2, 3)
                or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in c)):
            raise InputError(Problem(loc + ("coordinates", i), "a position is [lon, lat] in finite numbers",
                                     "bad_position"))
        if not (-180 <= c[0] <= 180 and -90 <= c[1] <= 90):
            raise InputError(Problem(loc + ("coordinates", i), "a position is [lon, lat] within lon/lat range",
                                     "out_of_range"))
        pts.append((float(c[0]), float(c[1])))
    line = LineString(pts)
    if line.length == 0:
        raise InputError(Problem(loc + ("coordinates",), "the line has no length", "bad_coordinates"))
    return line


# --- codes ---------------------------------------------------------------------------------------


def next_code(draft: Draft, level: int, parent_code: str, taken: set[str] | None = None) -> str:
    """The first code after every code of its kind ever used under `parent_code` (never one that
    history or the plan already gives to another grid)."""
    lvl = GridLevel(level)
    if lvl is GridLevel.GROUP:
        prefix, start, stop, pattern = parent_code[:12], 1, 999, "{}{:03d}"
        where = "level = 4 AND left(code, 12) = :p"
    elif lvl is GridLevel.VILLAGE:
        prefix, start, stop, pattern = parent_code[:9], 1, 899, "{}{:03d}000"
        where = "level = 3 AND left(code, 9) = :p"
    elif lvl is GridLevel.AREA:
        prefix, start, stop, pattern = parent_code[:9], 901, 999, "{}{:03d}000"
        where = "level = 2 AND left(code, 9) = :p"
    else:
        raise InputError(Problem(("body", "code"), "a town is never split or created in a plan", "bad_level"))
    used = set(draft.session.execute(text(f"SELECT DISTINCT code FROM grid WHERE {where}"), {"p": prefix}).scalars())
    used |= {c for c in draft.rows if c.startswith(prefix)} | (taken or set())
    width = slice(12, 15) if lvl is GridLevel.GROUP else slice(9, 12)
    numbers = [int(c[width]) for c in used if len(c) == 15 and c[width].isdigit() and level_fits(c, lvl)]
    n = max([start - 1, *numbers]) + 1
    if n > stop:
        raise InputError(Problem(("body", "code"), f"no free level-{level} code is left under {parent_code}",
                                 "no_free_code"))
    return pattern.format(prefix, n)


def level_fits(code: str, level: GridLevel) -> bool:
    return code_problem(code, level) is None


def _check_new_code(draft: Draft, code: str, level: int, parent_code: str | None, loc: Loc) -> None:
    why = code_problem(code, level) or parent_problem(code, level, parent_code)
    if why is not None:
        raise InputError(Problem(loc, why, "bad_code"))
    if draft.in_use(code):
        raise InputError(Problem(loc, f"code {code} is already used by another grid", "duplicate_code"))


# --- moving area between grids -------------------------------------------------------------------


def transfer(draft: Draft, region: BaseGeometry, src_code: str, dst_code: str) -> float:
    """Move the part of `region` inside grid `src_code` to `dst_code` (same level); where their parents
    differ, the parents exchange the same area, and so on up. Returns the area moved (square degrees)."""
    src, dst = draft.edit(src_code), draft.edit(dst_code)
    if src.geom is None or dst.geom is None:
        return 0.0
    piece = multipolygon(shapely.intersection(region, src.geom))
    if piece.is_empty or piece.area == 0:
        return 0.0
    src.geom = multipolygon(shapely.difference(src.geom, piece))
    dst.geom = multipolygon(shapely.union(dst.geom, piece))
    if src.parent_code and dst.parent_code and src.parent_code != dst.parent_code:
        transfer(draft, piece, src.parent_code, dst.parent_code)
    return float(piece.area)


def follow_children(draft: Draft, codes: Sequence[str]) -> dict[str, list[str]]:
    """Children of grids `codes` whose area now lies inside another of those grids are re-parented
    there (a group grid moving village gets a new code); those straddling an edge stay, and are
    reported (validation flags them). Returns {"reparented": [...], "straddling": [...]}."""
    grids = [g for g in (draft.find(c) for c in codes) if g is not None]
    moved: list[str] = []
    straddling: list[str] = []
    for parent in grids:
        for child in draft.children(parent.code):
            if child.geom is None or child.geom.area == 0 or parent.geom is None:
                continue
            if shapely.area(shapely.difference(child.geom, parent.geom)) <= (1 - _INSIDE_SHARE) * child.geom.area:
                continue
            home = max(grids, key=lambda g: shapely.area(shapely.intersection(child.geom, g.geom))
                       if g.geom is not None else 0.0)
            inside = home.geom is not None and shapely.area(
                shapely.intersection(child.geom, home.geom)) >= _INSIDE_SHARE * child.geom.area
            if home.code == parent.code or not inside:
                straddling.append(child.code)
                continue
            moved.append(reparent(draft, child.code, home.code))
    return {"reparented": moved, "straddling": sorted(set(straddling))}


def reparent(draft: Draft, code: str, parent_code: str) -> str:
    """Grid `code` under `parent_code` (no area moves); a group grid gets a code in its new village.
    Returns the grid's code in the plan."""
    row = draft.edit(code)
    row.parent_code = parent_code
    if row.level == GridLevel.GROUP and row.code[:12] != parent_code[:12]:
        draft.rekey(row, next_code(draft, 4, parent_code))
    return row.code


# --- units ---------------------------------------------------------------------------------------


def household_points(session: Session, kind: str, unit_ids: Sequence[str]) -> tuple[list[tuple[int, float, float]],
                                                                                     list[Problem]]:
    problems: list[Problem] = []
    if kind == "household_id":
        ids: list[int] = []
        for i, u in enumerate(unit_ids):
            if not str(u).isdigit():
                problems.append(Problem(("body", "unit_ids", i), f"{u!r} is not a household id", "bad_unit"))
            else:
                ids.append(int(u))
        rows = session.execute(text("SELECT id, id::text AS key, ST_X(geom) x, ST_Y(geom) y FROM household "
                                    "WHERE id = ANY(:ids)"), {"ids": ids}).all()
    elif kind == "household":
        rows = session.execute(text("SELECT id, household_no AS key, ST_X(geom) x, ST_Y(geom) y FROM household "
                                    "WHERE household_no = ANY(:ids)"), {"ids": [str(u) for u in unit_ids]}).all()
    else:  # natural_village: its households
        ids = [int(u) for u in unit_ids if str(u).isdigit()]
        rows = session.execute(text(
            "SELECT h.id, h.natural_village_id::text AS key, ST_X(h.geom) x, ST_Y(h.geom) y FROM household h "
            "WHERE h.natural_village_id = ANY(:ids)"), {"ids": ids}).all()
    found = {r.key for r in rows}
    what = {"household": "no household has the number", "household_id": "no household has the id",
            "natural_village": "no household belongs to natural village"}[kind]
    for i, u in enumerate(unit_ids):
        if str(u) not in found and not any(p.loc == ("body", "unit_ids", i) for p in problems):
            problems.append(Problem(("body", "unit_ids", i), f"{what} {u}", "unknown_unit"))
    return [(int(r.id), float(r.x), float(r.y)) for r in rows], problems


def household_cells(draft: Draft, points: Sequence[tuple[int, float, float]]) -> dict[str, BaseGeometry]:
    """{group grid code: the area these households bring out of it}: each household's Voronoi cell
    among the households of the plan's group grid that holds it, clipped to that grid (so the cells
    of a grid's households partition it, and no other grid changes shape)."""
    groups: dict[str, DraftGrid] = {}
    wanted: dict[str, set[tuple[float, float]]] = {}
    for _, x, y in points:
        group = _holder(draft, GridLevel.GROUP, shapely.Point(x, y))
        if group is None:
            continue
        groups[group.code] = group
        wanted.setdefault(group.code, set()).add((x, y))
    cells: dict[str, BaseGeometry] = {}
    for code, group in groups.items():
        assert group.geom is not None
        xy = np.asarray(draft.session.execute(text(
            "SELECT ST_X(geom), ST_Y(geom) FROM household WHERE ST_Covers(ST_GeomFromWKB(:g, 4326), geom)"),
            {"g": shapely.to_wkb(group.geom)}).all(), dtype=float).reshape(-1, 2)
        unique = np.unique(xy, axis=0)
        polys = (shapely.get_parts(shapely.voronoi_polygons(MultiPoint(unique), extend_to=group.geom, ordered=True))
                 if len(unique) > 1 else [group.geom])
        mine = [cell for (x, y), cell in zip(unique.tolist(), polys, strict=True) if (x, y) in wanted[code]]
        cells[code] = shapely.intersection(shapely.union_all(mine), group.geom)
    return cells


def _holder(draft: Draft, level: int, pt: BaseGeometry) -> DraftGrid | None:
    """The plan's grid of `level` that covers point `pt` (the smallest code on a shared edge)."""
    found = [g for g in draft.at_level(level, pt) if g.geom is not None and g.geom.covers(pt)]
    return min(found, key=lambda g: g.code) if found else None


def reassign_units(draft: Draft, kind: str, unit_ids: Sequence[str], to_code: str,
                   from_code: str | None = None) -> dict[str, Any]:
    """Paint units into grid `to_code`: households, natural villages (into a group grid) or small
    grids (re-parented under `to_code`, one level up). Only the part inside `from_code`, when given."""
    if kind not in UNIT_KINDS:
        raise InputError(Problem(("body", "unit_kind"), f"unit_kind is one of {', '.join(UNIT_KINDS)}", "bad_unit"))
    if not unit_ids:
        raise InputError(Problem(("body", "unit_ids"), "name at least one unit", "missing"))
    dst = draft.get(to_code, ("body", "to_code"))
    if kind == "grid":
        return _reassign_grids(draft, unit_ids, dst)
    if dst.level != GridLevel.GROUP:
        raise InputError(Problem(("body", "to_code"), "households and natural villages are painted into a group "
                                 f"grid (level 4); {to_code} is level {dst.level}", "bad_level"))
    points, problems = household_points(draft.session, kind, unit_ids)
    if problems:
        raise InputError(problems)
    moved = move_households(draft, points, dst.code, from_code)
    if not moved:
        raise InputError(Problem(("body", "unit_ids"), f"those units are already in grid {to_code}", "no_change"))
    return {"unit_kind": kind, "units": len(unit_ids), "households": len(points), "to_code": dst.code,
            "from_codes": sorted(moved)}


def move_households(draft: Draft, points: Sequence[tuple[int, float, float]], to_code: str,
                    from_code: str | None = None) -> dict[str, float]:
    """Move these households' cells into group grid `to_code`; {source grid: area moved}."""
    regions = household_cells(draft, points)
    if from_code is not None:
        draft.get(from_code, ("body", "from_code"))
        regions = {c: r for c, r in regions.items() if c == from_code}
    moved: dict[str, float] = {}
    for src_code, region in sorted(regions.items()):
        if src_code != to_code:
            area = transfer(draft, region, src_code, to_code)
            if area > 0:
                moved[src_code] = area
    return moved


def _reassign_grids(draft: Draft, unit_ids: Sequence[str], dst: DraftGrid) -> dict[str, Any]:
    moved: list[str] = []
    for i, code in enumerate(unit_ids):
        loc: Loc = ("body", "unit_ids", i)
        unit = draft.get(str(code), loc)
        if unit.level != dst.level + 1:
            raise InputError(Problem(loc, f"grid {code} (level {unit.level}) moves under a level-{unit.level - 1} "
                                     f"grid; {dst.code} is level {dst.level} (to join grids of one level, merge them)",
                                     "bad_level"))
        if unit.parent_code == dst.code:
            raise InputError(Problem(loc, f"grid {code} is already under {dst.code}", "no_change"))
        if unit.parent_code is not None and unit.geom is not None:
            transfer(draft, unit.geom, unit.parent_code, dst.code)
        moved.append(reparent(draft, unit.code, dst.code))
    return {"unit_kind": "grid", "units": len(unit_ids), "to_code": dst.code, "moved": moved}


# --- geometry edits ------------------------------------------------------------------------------


def _pieces(geom: BaseGeometry, line: LineString) -> list[BaseGeometry]:
    return [p for p in shapely.ops.split(multipolygon(geom), line).geoms if p.area > 0]


def move_boundary(draft: Draft, code_a: str, code_b: str, line: LineString) -> dict[str, Any]:
    """The edge grids a and b share redrawn as `line`: their union is cut by the line and each piece
    goes to the grid that held most of it."""
    a, b = draft.get(code_a, ("body", "code")), draft.get(code_b, ("body", "other_code"))
    if a.code == b.code or a.level != b.level:
        raise InputError(Problem(("body", "other_code"), "a shared boundary lies between two grids of one level",
                                 "bad_level"))
    if a.geom is None or b.geom is None or not shapely.intersects(a.geom, b.geom):
        raise InputError(Problem(("body", "other_code"), f"grids {a.code} and {b.code} share no boundary",
                                 "not_neighbours"))
    pieces = _pieces(shapely.union(a.geom, b.geom), line)
    if len(pieces) < 2:
        raise InputError(Problem(("body", "line"), f"the line must cross grids {a.code} and {b.code} from edge "
                                 "to edge", "line_does_not_cut"))
    old_a, old_b = a.geom, b.geom
    to_a = [p for p in pieces if shapely.area(shapely.intersection(p, old_a)) >= shapely.area(
        shapely.intersection(p, old_b))]
    to_b = [p for p in pieces if p not in to_a]
    if not to_a or not to_b:
        raise InputError(Problem(("body", "line"), "the new line would leave one grid with nothing",
                                 "line_does_not_cut"))
    row_a, row_b = draft.edit(a.code), draft.edit(b.code)
    row_a.geom = multipolygon(shapely.union_all(to_a))
    row_b.geom = multipolygon(shapely.union_all(to_b))
    if a.parent_code != b.parent_code and a.parent_code and b.parent_code:
        transfer(draft, shapely.intersection(old_a, row_b.geom), a.parent_code, b.parent_code)
        transfer(draft, shapely.intersection(old_b, row_a.geom), b.parent_code, a.parent_code)
    return {"codes": [a.code, b.code], **follow_children(draft, [a.code, b.code])}


def split_grid(draft: Draft, code: str, line: LineString, new_codes: Sequence[str] | None = None,
               names: Sequence[str] | None = None) -> dict[str, Any]:
    """Grid `code` cut by `line`: the largest piece keeps the code, the others become new grids
    (codes given, else the next free ones), in reading order; children follow their piece."""
    g = draft.get(code, ("body", "code"))
    if g.level == GridLevel.TOWN or g.geom is None:
        raise InputError(Problem(("body", "code"), "the town is not split", "bad_level"))
    pieces = _pieces(g.geom, line)
    if len(pieces) < 2:
        raise InputError(Problem(("body", "line"), f"the line must cross grid {code} from edge to edge",
                                 "line_does_not_cut"))
    pieces.sort(key=lambda p: -p.area)
    keep, rest = pieces[0], sorted(pieces[1:], key=lambda p: (-round(p.centroid.y, 4), p.centroid.x))
    new_codes = list(new_codes or [])
    names = list(names or [])
    if len(new_codes) > len(rest):
        raise InputError(Problem(("body", "new_codes"), f"the line cuts {len(rest)} new grid(s) off {code}, "
                                 f"not {len(new_codes)}", "too_many_codes"))
    row = draft.edit(code)
    row.geom = multipolygon(keep)
    assert g.parent_code is not None
    created: list[str] = []
    for i, piece in enumerate(rest):
        loc: Loc = ("body", "new_codes", i)
        if i < len(new_codes):
            new = new_codes[i]
            _check_new_code(draft, new, g.level, g.parent_code, loc)
        else:
            new = next_code(draft, g.level, g.parent_code)
        name = names[i] if i < len(names) and names[i].strip() else f"{g.name}（{len(created) + 2}）"
        draft.add(DraftGrid(new, g.level, name, g.parent_code, multipolygon(piece)))
        created.append(new)
    return {"code": code, "created": created, **follow_children(draft, [code, *created])}


def merge_grids(draft: Draft, codes: Sequence[str], into: str) -> dict[str, Any]:
    """Neighbouring grids of one level joined into `into`; the others retired, their children moved."""
    target = draft.get(into, ("body", "into"))
    others: list[DraftGrid] = []
    for i, c in enumerate(codes):
        if c == into:
            continue
        g = draft.get(c, ("body", "codes", i))
        if g.level != target.level:
            raise InputError(Problem(("body", "codes", i), f"grid {c} is level {g.level}, {into} level "
                                     f"{target.level}: merged grids share a level", "bad_level"))
        others.append(g)
    if not others:
        raise InputError(Problem(("body", "codes"), "name at least one grid to merge into another", "missing"))
    joined = target.geom
    pending = list(others)
    while pending:   # each must touch what is merged so far
        nxt = next((g for g in pending if g.geom is not None and joined is not None
                    and shapely.intersects(g.geom, joined)), None)
        if nxt is None:
            raise InputError(Problem(("body", "codes"), "grids " + ", ".join(g.code for g in pending)
                                     + f" do not border {into} or the grids merged into it", "not_neighbours"))
        joined = shapely.union(joined, nxt.geom)
        pending.remove(nxt)
    children: list[str] = []
    for g in others:
        if g.geom is not None:
            transfer(draft, g.geom, g.code, target.code)
        for child in draft.children(g.code):
            children.append(reparent(draft, child.code, target.code))
        draft.retire(draft.edit(g.code))
    return {"into": target.code, "retired": [g.code for g in others], "reparented": children}


def create_grid(draft: Draft, code: str | None, level: int, name: str, parent_code: str,
                geom: BaseGeometry) -> dict[str, Any]:
    """A new grid drawn inside its parent; the area it covers is taken from its siblings, and their
    children that now lie inside it move under it."""
    parent = draft.get(parent_code, ("body", "parent_code"))
    if level != parent.level + 1:
        raise InputError(Problem(("body", "level"), f"a grid under {parent_code} (level {parent.level}) is level "
                                 f"{parent.level + 1}", "bad_level"))
    if not name.strip():
        raise InputError(Problem(("body", "name"), "a grid needs a name", "missing"))
    if code is None:
        code = next_code(draft, level, parent_code)
    else:
        _check_new_code(draft, code, level, parent_code, ("body", "code"))
    assert parent.geom is not None
    shape = multipolygon(shapely.intersection(geom, parent.geom))
    if shape.is_empty:
        raise InputError(Problem(("body", "geometry"), f"the drawn area lies outside the parent grid {parent_code}",
                                 "outside_parent"))
    siblings = [s for s in draft.children(parent_code) if s.geom is not None and shapely.intersects(s.geom, shape)]
    draft.add(DraftGrid(code, level, name.strip(), parent_code, shape))
    taken = []
    for s in siblings:
        row = draft.edit(s.code)
        assert row.geom is not None
        before = row.geom.area
        row.geom = multipolygon(shapely.difference(row.geom, shape))
        if row.geom.area < before:
            taken.append(s.code)
    follow = follow_children(draft, [code, *taken])
    return {"code": code, "taken_from": taken, **follow}


def retire_grid(draft: Draft, code: str) -> dict[str, Any]:
    """Grid `code` closed: its area and its children are left for the planner to give away
    (validation shows the gap and the orphans until then)."""
    row = draft.edit(code)
    orphans = [c.code for c in draft.children(code)]
    draft.retire(row)
    return {"code": code, "orphans": orphans}


def rename_grid(draft: Draft, code: str, name: str) -> dict[str, Any]:
    if not name.strip():
        raise InputError(Problem(("body", "name"), "a grid needs a name", "missing"))
    row = draft.edit(code)
    old, row.name = row.name, name.strip()
    return {"code": code, "old_name": old, "name": row.name}


def recode_grid(draft: Draft, code: str, new_code: str) -> dict[str, Any]:
    """Grid `code` renumbered; its children name the new parent, and a village's group grids take
    its new village digits."""
    row = draft.edit(code)
    if new_code == row.code:
        raise InputError(Problem(("body", "new_code"), "the new code is the grid's code", "no_change"))
    _check_new_code(draft, new_code, row.level, row.parent_code, ("body", "new_code"))
    kids = draft.children(code)
    draft.rekey(row, new_code)
    recoded = {code: new_code}
    for old in [k.code for k in kids]:
        c = draft.edit(old)
        c.parent_code = new_code
        if c.level == GridLevel.GROUP:
            wanted = new_code[:12] + c.code[12:]
            draft.rekey(c, wanted if not draft.in_use(wanted) else next_code(draft, 4, new_code))
            recoded[old] = c.code
    return {"code": code, "new_code": new_code, "recoded": recoded}


def allow_parts(draft: Draft, code: str, allowed: bool) -> dict[str, Any]:
    """Whether grid `code` may be in several pieces (an enclave, a river island) without a problem."""
    row = draft.edit(code)
    row.allow_parts = allowed
    return {"code": code, "allow_parts": allowed}
