"""Check grids against the hierarchy rules: codes, parents, nesting, no overlaps, no gaps."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from shapely import STRtree
from shapely.geometry.base import BaseGeometry

from gis.codes import code_problem, parent_problem
from gis.crs import metric_crs_for, metric_transformer
from gis.errors import Problem

_REASON_POINT = re.compile(r"\[\s*([-+0-9.eE]+)\s+([-+0-9.eE]+)\s*\]")
# Problems are listed row by row, in this order within a row.
_TYPE_ORDER = {
    t: i
    for i, t in enumerate(
        [
            "empty_geometry",
            "invalid_geometry",
            "duplicate_code",
            "bad_code",
            "bad_parent",
            "outside_parent",
            "overlap",
            "gap",
        ]
    )
}


@dataclass
class _Grids:
    """New and stored grids side by side; index i < n_new is a new row."""

    codes: list[str]
    levels: list[int]
    parents: list[str | None]
    rows: list[int | None]
    geoms: np.ndarray  # EPSG:4326, repaired where invalid, None when empty
    n_new: int

    def row(self, i: int) -> int:
        """The file row of new grid i (a stored grid has none, and no problem is reported on it)."""
        row = self.rows[i]
        assert row is not None, f"grid {self.codes[i]} is stored, not a row of the file"
        return row


# Named in every message about a sliver, so the reader knows which knob decides it.
TOLERANCE_SETTING = "WANGGE_BOUNDARY_TOLERANCE_M"
DEFAULT_TOLERANCE_M = 0.1


def _fmt_area(a: float) -> str:
    return f"{a:.1f}" if a < 10 else f"{a:,.0f}"


def _tolerance_note(width: float, tol_m: float) -> str:
    return (
        f"up to {width:.2f} m wide; parts narrower than {TOLERANCE_SETTING} = {tol_m:g} m "
        "count as coordinate rounding"
    )


@dataclass(frozen=True)
class _Sliver:
    """A gap, overlap or part outside its parent wider and larger than the tolerances (see _Metric.sliver)."""

    part: BaseGeometry  # the wide parts, lon/lat
    area: float  # m²
    width: float  # m, the widest part's
    tol_m: float
    lon: float  # a point inside the largest part
    lat: float

    def size(self) -> str:
        """Its area, as a problem's message gives it."""
        return f"{_fmt_area(self.area)} m²"

    def note(self) -> str:
        return _tolerance_note(self.width, self.tol_m)

    def detail(self, **about: object) -> dict[str, Any]:
        """A sliver problem's detail: its size against the tolerance, what it concerns, and where it is."""
        return {"area_m2": round(self.area, 1), "width_m": round(self.width, 3), "tolerance_m": self.tol_m,
                **about, "lon": self.lon, "lat": self.lat}


def _text(v: object) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    return str(v)


def _polygonal(g: BaseGeometry | None) -> BaseGeometry | None:
    """The polygonal part of a repaired geometry (make_valid may add stray lines/points)."""
    if g is None or g.is_empty:
        return None
    if g.geom_type in ("Polygon", "MultiPolygon"):
        return g
    parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
    if not parts:
        return None
    merged: BaseGeometry = shapely.union_all(parts)
    return merged


def _geometry_problems(codes: list[str], geoms: np.ndarray, rows: list[int]) -> tuple[list[Problem], np.ndarray]:
    problems: list[Problem] = []
    usable = np.empty(len(geoms), dtype=object)
    for i, g in enumerate(geoms):
        row = rows[i]
        if g is None or g.is_empty:
            problems.append(
                Problem(
                    ("features", row, "geometry"),
                    f"grid {codes[i]} has an empty geometry",
                    "empty_geometry",
                )
            )
            usable[i] = None
            continue
        if not shapely.is_valid(g):
            reason = shapely.is_valid_reason(g)
            ctx: dict[str, Any] = {"reason": reason}
            m = _REASON_POINT.search(reason)
            if m:
                ctx["lon"], ctx["lat"] = float(m.group(1)), float(m.group(2))
            problems.append(
                Problem(
                    ("features", row, "geometry"),
                    f"the geometry of grid {codes[i]} is not valid: {reason}",
                    "invalid_geometry",
                    ctx,
                )
            )
            # Keep checking the rest of the rules against a repaired copy.
            usable[i] = _polygonal(shapely.make_valid(g))
        else:
            usable[i] = g
    return problems, usable


def _collect(
    new: gpd.GeoDataFrame, current: gpd.GeoDataFrame | None
) -> tuple[_Grids, list[Problem]]:
    n = len(new)
    new_codes = [_text(c) for c in new["code"]]
    new_rows = [int(r) for r in new["row"]] if "row" in new.columns else list(range(1, n + 1))
    new_geoms = np.asarray(new.geometry.array, dtype=object) if n else np.empty(0, dtype=object)
    problems, usable_new = _geometry_problems(new_codes, new_geoms, new_rows)
    rows: list[int | None] = list(new_rows)

    codes = list(new_codes)
    levels = [int(v) for v in new["level"]]
    parents = [_text(p) or None for p in new["parent_code"]]
    geoms = list(usable_new)
    if current is not None and len(current):
        # A stored grid whose code is in the upload is being replaced by it.
        replaced = set(new_codes)
        cur_geoms = np.asarray(current.geometry.array, dtype=object)
        for code, level, parent, g in zip(
            current["code"], current["level"], current["parent_code"], cur_geoms, strict=True
        ):
            code = _text(code)
            if code in replaced:
                continue
            codes.append(code)
            levels.append(int(level))
            parents.append(_text(parent) or None)
            if g is not None and not g.is_empty and not shapely.is_valid(g):
                g = _polygonal(shapely.make_valid(g))
            geoms.append(None if g is None or g.is_empty else g)
            rows.append(None)
    arr = np.empty(len(geoms), dtype=object)
    arr[:] = geoms
    return _Grids(codes, levels, parents, rows, arr, n), problems


def _code_problems(g: _Grids) -> tuple[list[Problem], dict[str, int], list[int | None]]:
    """Code, duplicate and parent problems, the code index, and each new row's usable parent."""
    problems: list[Problem] = []
    index: dict[str, int] = {}
    for i, code in enumerate(g.codes):
        if i < g.n_new and code in index:
            first = g.row(index[code])
            problems.append(
                Problem(
                    ("features", g.row(i), "code"),
                    f"code {code} is used by rows {first} and {g.row(i)}",
                    "duplicate_code",
                    {"other_row": first},
                )
            )
            continue
        index.setdefault(code, i)

    parent_of: list[int | None] = [None] * g.n_new
    for i in range(g.n_new):
        code, level, parent, row = g.codes[i], g.levels[i], g.parents[i], g.row(i)
        why = code_problem(code, level)
        if why is not None:
            problems.append(Problem(("features", row, "code"), why, "bad_code"))
            continue
        why = parent_problem(code, level, parent)
        if why is None and level > 1:
            j = index.get(parent) if parent is not None else None
            if j is None:
                why = f"parent {parent} is not in the file or among the stored grids"
            elif g.levels[j] != level - 1:
                why = (
                    f"parent {parent} is a level-{g.levels[j]} grid; "
                    f"a level-{level} grid needs a level-{level - 1} parent"
                )
            else:
                parent_of[i] = j
        if why is not None:
            problems.append(
                Problem(
                    ("features", row, "parent_code"), why, "bad_parent", {"parent_code": parent}
                )
            )
    return problems, index, parent_of


class _Metric:
    """Areas and widths in metres of shapes computed in lon/lat.

    Set operations run in EPSG:4326, where the stored edges are straight: in a projected CRS a
    long edge and its split halves bend differently and leave false slivers. Only the results
    are projected, to measure them."""

    def __init__(self, geoms: np.ndarray, n_new: int):
        present = [geoms[k] for k in range(len(geoms)) if geoms[k] is not None]
        basis = [geoms[k] for k in range(min(n_new, len(geoms))) if geoms[k] is not None] or present
        xmin, ymin, xmax, ymax = shapely.total_bounds(np.asarray(basis, dtype=object))
        self.crs = metric_crs_for((xmin + xmax) / 2, (ymin + ymax) / 2)
        self._fwd = metric_transformer(self.crs)

    def project(self, geoms: Any) -> np.ndarray:
        arr = np.asarray(geoms, dtype=object)
        if not len(arr):
            return arr
        fwd = self._fwd
        moved: np.ndarray = shapely.transform(arr, lambda x, y: fwd.transform(x, y), interleaved=False)
        return moved

    def wide_parts(self, piece: BaseGeometry | None, tol_m: float) -> tuple[object | None, float, float]:
        """The parts of a lon/lat `piece` wider than `tol_m` metres: (those parts, their area in
        m², the widest one's width in m). Rounding coordinates (7 decimals ≈ 1 cm) leaves long
        slivers a few centimetres wide along shared edges; those are not gaps or overlaps."""
        piece = _polygonal(piece)
        if piece is None:
            return None, 0.0, 0.0
        parts = shapely.get_parts(piece)
        metric = self.project(parts)
        if tol_m > 0:
            # A part is wider than tol_m exactly when shrinking it by tol_m / 2 leaves something.
            keep = ~shapely.is_empty(shapely.buffer(metric, -tol_m / 2))
            parts, metric = parts[keep], metric[keep]
        if not len(parts):
            return None, 0.0, 0.0
        # GEOS's default precision (1/1000 of the longer side) is metres for a kilometre-long
        # sliver; the shorter side keeps it proportionate, and a millimetre floor keeps it fast.
        b = shapely.bounds(metric)
        precision = np.maximum(np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / 1000, 1e-3)
        radii = shapely.length(shapely.maximum_inscribed_circle(metric, precision))
        return (
            shapely.union_all(parts),
            float(shapely.area(metric).sum()),
            2 * float(np.max(radii)),
        )

    def sliver(self, piece: BaseGeometry | None, tol: float, tol_m: float) -> _Sliver | None:
        """The parts of `piece` wider than `tol_m` m, when together larger than `tol` m² (else None)."""
        part, area, width = self.wide_parts(piece, tol_m)
        if part is None or area <= tol:
            return None
        lon, lat = self.lonlat(part)
        return _Sliver(part, area, width, tol_m, lon, lat)

    @staticmethod
    def lonlat(geom: BaseGeometry) -> tuple[float, float]:
        """A point inside the largest part of a lon/lat geometry."""
        parts = shapely.get_parts(geom)
        biggest = parts[int(np.argmax(shapely.area(parts)))] if len(parts) else geom
        p = shapely.point_on_surface(biggest)
        return round(float(p.x), 6), round(float(p.y), 6)


def _pair_slivers(
    g: _Grids, m: _Metric, pairs: list[tuple[int, int]], op: Callable[[Any, Any], Any], tol: float, tol_m: float
) -> Iterator[tuple[int, int, _Sliver]]:
    """(i, j, sliver) for each pair of rows whose `op` (shapely.difference: i outside j; shapely.intersection:
    their overlap) is wider and larger than the tolerances."""
    if not pairs:
        return
    pieces = op(np.asarray([g.geoms[i] for i, _ in pairs], dtype=object),
                np.asarray([g.geoms[j] for _, j in pairs], dtype=object))
    for (i, j), piece in zip(pairs, pieces, strict=True):
        s = m.sliver(piece, tol, tol_m)
        if s is not None:
            yield i, j, s


def _outside_parent(g: _Grids, m: _Metric, parent_of: list[int | None], tol: float, tol_m: float) -> list[Problem]:
    pairs = [
        (i, j)
        for i, j in enumerate(parent_of)
        if j is not None and g.geoms[i] is not None and g.geoms[j] is not None
    ]
    return [
        Problem(
            ("features", g.row(i), "geometry"),
            f"{s.size()} of grid {g.codes[i]} lies outside its parent {g.codes[j]} ({s.note()})",
            "outside_parent",
            s.detail(other_code=g.codes[j]),
        )
        for i, j, s in _pair_slivers(g, m, pairs, shapely.difference, tol, tol_m)
    ]


def _overlaps(g: _Grids, m: _Metric, tol: float, tol_m: float) -> list[Problem]:
    present = np.asarray([k for k in range(len(g.geoms)) if g.geoms[k] is not None], dtype=int)
    if len(present) < 2:
        return []
    geoms = g.geoms[present]
    tree = STRtree(geoms)
    a, b = tree.query(geoms, predicate="intersects")
    ia, ib = present[a], present[b]
    keep = [
        (i, j)
        for i, j in zip(ia.tolist(), ib.tolist(), strict=True)
        if i < j
        and i < g.n_new  # i < j, so this means at least one side is new
        and g.parents[i] == g.parents[j]
        and g.codes[i] != g.codes[j]
    ]
    problems = []
    for i, j, s in _pair_slivers(g, m, keep, shapely.intersection, tol, tol_m):
        # Report on the later new row, naming the grid it collides with.
        at, other = (j, i) if j < g.n_new else (i, j)
        problems.append(
            Problem(
                ("features", g.row(at), "geometry"),
                f"grid {g.codes[at]} overlaps its sibling {g.codes[other]} by {s.size()} ({s.note()})",
                "overlap",
                s.detail(other_code=g.codes[other]),
            )
        )
    return problems


def _gaps(
    g: _Grids, m: _Metric, index: dict[str, int], parent_of: list[int | None], tol: float, tol_m: float
) -> list[Problem]:
    children: dict[str, list[int]] = {}
    for k, parent in enumerate(g.parents):
        if parent is not None:
            children.setdefault(parent, []).append(k)
    # Only parents the upload touches: a new parent, or a stored one with a new child.
    wanted: dict[int, None] = {}
    for i in range(g.n_new):
        if g.codes[i] in children and index.get(g.codes[i]) == i:
            wanted[i] = None
        parent_row = parent_of[i]
        if parent_row is not None:
            wanted[parent_row] = None
    problems = []
    for p in wanted:
        pg = g.geoms[p]
        kids = [g.geoms[k] for k in children.get(g.codes[p], []) if g.geoms[k] is not None]
        if pg is None or not kids:
            continue
        whole = shapely.difference(pg, shapely.union_all(np.asarray(kids, dtype=object)))
        s = m.sliver(whole, tol, tol_m)
        if s is None:
            continue
        gap = s.part
        if p < g.n_new:
            report_at = p
        else:
            # A stored parent has no row: blame the new child that borders the gap most closely.
            new_kids = [i for i in range(g.n_new) if parent_of[i] == p]
            dist = [
                shapely.distance(g.geoms[i], gap) if g.geoms[i] is not None else np.inf
                for i in new_kids
            ]
            report_at = new_kids[int(np.argmin(dist))]
        if report_at == p:
            loc, whose = ("features", g.row(p), "geometry"), "grid"
        else:
            loc, whose = ("features", g.row(report_at), "parent_code"), "parent grid"
        msg = f"{s.size()} of {whose} {g.codes[p]} is not covered by its children (near {s.lon}, {s.lat}; {s.note()})"
        pieces = int(shapely.get_num_geometries(gap))
        problems.append(Problem(loc, msg, "gap", s.detail(parent_code=g.codes[p], pieces=pieces)))
    return problems


def validate_grids(
    new: gpd.GeoDataFrame,
    current: gpd.GeoDataFrame | None = None,
    *,
    gap_tolerance_m2: float = 1.0,
    overlap_tolerance_m2: float = 1.0,
    boundary_tolerance_m: float = DEFAULT_TOLERANCE_M,
) -> list[Problem]:
    """Every hierarchy problem in `new` (as read by read_grid_file), judged together with `current`.

    `current` holds stored grids that stay (a stored grid with a code in `new` counts as
    replaced). Problems point at ("features", row, field). Areas and widths are computed in a
    metric CRS. A gap, overlap or part outside the parent is ignored where it is no wider than
    `boundary_tolerance_m` (files round coordinates, and shared edges then disagree by
    centimetres) or no larger than the area tolerance (`overlap_tolerance_m2` also bounds how far
    a child may stick out of its parent)."""
    if len(new) == 0:
        return []
    g, problems = _collect(new, current)
    code_probs, index, parent_of = _code_problems(g)
    problems += code_probs
    if any(x is not None for x in g.geoms[: g.n_new]):
        m = _Metric(g.geoms, g.n_new)
        tol_m = boundary_tolerance_m
        problems += _outside_parent(g, m, parent_of, overlap_tolerance_m2, tol_m)
        problems += _overlaps(g, m, overlap_tolerance_m2, tol_m)
        problems += _gaps(g, m, index, parent_of, gap_tolerance_m2, tol_m)
    problems.sort(key=lambda p: (p.loc[1] if len(p.loc) > 1 else 0, _TYPE_ORDER.get(p.type, 99)))
    return problems
