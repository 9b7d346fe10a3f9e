"""Point to grid: which grid at every level holds a point, by one deterministic rule.

The rule, for a point P (EPSG:4326):
1. Candidates are the current grids whose closed polygon contains P (interior or boundary).
2. Among the candidates of the deepest level present, the grid with the smallest code wins; its
   ancestors follow from the parent chain, so the four levels always agree with each other.
3. `on_boundary` is true when P lies on the boundary of that grid (so it also touched a neighbour,
   or the town's outer edge).
4. A point that no grid contains is "outside": the answer names the nearest group grid (deepest
   level; the smallest code on a tie) and the geodesic distance on the WGS84 ellipsoid to its
   boundary in metres (`GridIndex.nearest`, the one implementation every path uses).
The rule's one definition for points inside the grids is the SQL function `grid_at` (migration
0008), which every SQL path calls:
* `locate_points` / `locate_points_sql`: one SQL query for many points (unnest, LATERAL grid_at),
  used by the API; the one-statement intake calls grid_at itself (gis.incidents.service).
* `match_bulk` + `add_nearest`: the batch import's kernel, for up to millions of points, held to
  grid_at on the same points — random, on shared edges and vertices, just outside
  (tests/test_intake_paths_property.py). The current grids
  are read once into memory (a `GridIndex`, cached per database and grid version); a compiled pass
  (`gis.grids.pip`) settles the points it can prove strictly inside or outside, and the rest are
  matched with shapely's STRtree, level by level from the deepest, taking the smallest code, the
  boundary flag being shapely's `intersects(boundary, point)`. Points outside every grid get their
  nearest grid from the same `GridIndex.nearest` (`add_nearest`) as the SQL path.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyproj
import shapely
from numpy.typing import ArrayLike
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION
from sqlalchemy.orm import Session

from gis.db import PerDataVersion, offload
from gis.grids.pip import AMBIGUOUS, OUTSIDE, PolygonBuckets


@dataclass
class GridRef:
    code: str
    name: str
    level: int
    parent_code: str | None


@dataclass
class Location:
    lon: float
    lat: float
    inside: bool
    on_boundary: bool = False
    # Level -> grid, from the town (1) down to the deepest level that contains the point.
    path: dict[int, GridRef] = field(default_factory=dict)
    candidates: int = 0
    nearest: GridRef | None = None
    distance_m: float | None = None

    @property
    def deepest(self) -> GridRef | None:
        return self.path[max(self.path)] if self.path else None


# The point → grid rule is the SQL function grid_at (migration 0008), once per point.
_CONTAINING = text(
    """
    SELECT t.i, c.code, c.candidates AS n, c.on_boundary AS on_edge
    FROM unnest(:xs, :ys) WITH ORDINALITY AS t(x, y, i)
    LEFT JOIN LATERAL grid_at(ST_SetSRID(ST_MakePoint(t.x, t.y), 4326)) c ON true
    """
).bindparams(
    bindparam("xs", type_=ARRAY(DOUBLE_PRECISION)), bindparam("ys", type_=ARRAY(DOUBLE_PRECISION))
)

# The given current grids and their current ancestors: what `path_to_town` needs for those codes.
_ANCESTORS = text(
    """
    WITH RECURSIVE up AS (
        SELECT g.code, g.name, g.level, g.parent_code FROM grid g
        WHERE g.valid_to IS NULL AND g.code = ANY(:codes)
      UNION
        SELECT g.code, g.name, g.level, g.parent_code FROM grid g JOIN up ON g.code = up.parent_code
        WHERE g.valid_to IS NULL
    )
    SELECT code, name, level, parent_code FROM up
    """
)

# The deepest current grid that holds the whole disc of radius r around a point (as far as the disc
# lies in the town at all): where a place known only to within r metres can be assigned. The part of
# the disc inside the top-level grids must lie in the grid up to `tol` square metres.
_COVERING = text(
    """
    WITH d AS (
        SELECT ST_Buffer(ST_SetSRID(ST_MakePoint(:x, :y), 4326)::geography, :r)::geometry AS disc
    ),
    part AS (
        SELECT ST_Intersection(d.disc, ST_Union(t.geom)) AS geom
        FROM d JOIN grid t ON t.valid_to IS NULL AND ST_Intersects(t.geom, d.disc)
         AND t.level = (SELECT min(level) FROM grid WHERE valid_to IS NULL)
        GROUP BY d.disc
    )
    SELECT g.code
    FROM grid g, d, part
    WHERE g.valid_to IS NULL AND ST_Intersects(g.geom, d.disc)
      AND coalesce(ST_Area(ST_Difference(part.geom, g.geom)::geography), 0) <= :tol
    ORDER BY g.level DESC, g.code
    LIMIT 1
    """
)


def deepest_covering(session: Session, lon: float, lat: float, radius_m: float,
                     tol_m2: float = 1.0) -> str | None:
    """The code of the deepest current grid holding the disc of `radius_m` around the point (its
    part inside the town); None when the disc does not meet the town."""
    params = {"x": lon, "y": lat, "r": radius_m, "tol": tol_m2}
    return session.execute(_COVERING, params).scalar_one_or_none()


def hierarchy_for(session: Session, codes: Iterable[str | None]) -> dict[str, GridRef]:
    """The current grids that `path_to_town` needs for `codes`: them and their ancestors (a few rows, not the
    whole hierarchy: 60,000 grids in a city)."""
    wanted = sorted({c for c in codes if c})
    if not wanted:
        return {}
    rows = session.execute(_ANCESTORS, {"codes": wanted})
    return {r.code: GridRef(r.code, r.name, r.level, r.parent_code) for r in rows}


def path_to_town(code: str, hierarchy: dict[str, GridRef]) -> dict[int, GridRef]:
    path: dict[int, GridRef] = {}
    ref = hierarchy.get(code)
    while ref is not None:
        path[ref.level] = ref
        ref = hierarchy.get(ref.parent_code) if ref.parent_code else None
    return path


def nearest_groups(session: Session, xs: ArrayLike, ys: ArrayLike) -> list[tuple[str | None, float | None]]:
    """For each point: the nearest current group grid (deepest level) and its geodesic distance."""
    index = grid_index(session)
    pos, dist = index.nearest(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float))
    return [(str(index.codes[p]), float(d)) if p >= 0 else (None, None)
            for p, d in zip(pos, dist, strict=True)]


def locate_points_sql(session: Session, lons: ArrayLike, lats: ArrayLike) -> list[Location]:
    """Locate many WGS84 points at once in SQL; the i-th answer belongs to the i-th point."""
    xs = np.asarray(lons, dtype=float).tolist()
    ys = np.asarray(lats, dtype=float).tolist()
    if not xs:
        return []
    out = [Location(lon=x, lat=y, inside=False) for x, y in zip(xs, ys, strict=True)]
    outside: list[int] = []
    found: list[tuple[Location, str]] = []
    for i, code, n, on_edge in session.execute(_CONTAINING, {"xs": xs, "ys": ys}):
        loc = out[i - 1]
        if code is None:
            outside.append(i - 1)
            continue
        loc.inside = True
        loc.candidates = int(n)
        loc.on_boundary = bool(on_edge)
        found.append((loc, code))
    near: list[tuple[Location, str]] = []
    if outside:
        answers = nearest_groups(session, [xs[i] for i in outside], [ys[i] for i in outside])
        for i, (code, d) in zip(outside, answers, strict=True):
            if code is not None:
                out[i].distance_m = d
                near.append((out[i], code))
    # Only the grids on the answers' paths, not the whole hierarchy (60,000 rows in a city).
    hierarchy = hierarchy_for(session, [c for _, c in found] + [c for _, c in near])
    for loc, code in found:
        loc.path = path_to_town(code, hierarchy)
    for loc, code in near:
        loc.nearest = hierarchy.get(code)
    return out


def locate_points(session: Session, lons: ArrayLike, lats: ArrayLike) -> list[Location]:
    """Locate many WGS84 points at once; the i-th answer belongs to the i-th point."""
    return locate_points_sql(session, lons, lats)


# --- bulk: the same rule in memory ---------------------------------------------------------------

# What identifies one state of the current grids as this session sees it: any added, closed or
# edited row changes the count, the ids or the rows' xmin (every UPDATE writes a new row version).
_GRID_VERSION = (
    "SELECT current_database(), count(*), coalesce(max(id), 0), coalesce(sum(id), 0), "
    "coalesce(sum(xmin::text::bigint), 0) FROM grid WHERE valid_to IS NULL"
)


class GridIndex:
    """The current grids in memory: codes in code order, their parents, ids and a tree per level."""

    def __init__(self, key: tuple[Any, ...], rows: Sequence[Any]):
        rows = sorted(rows, key=lambda r: r[1])                 # by code, as SQL's ORDER BY code
        self.key = key
        self.ids = np.array([r[0] for r in rows], dtype=np.int64)
        self.codes = np.array([r[1] for r in rows], dtype=object)
        self.names = [r[2] for r in rows]
        self.levels = np.array([r[3] for r in rows], dtype=np.int16)
        self.parent_codes = [r[4] for r in rows]
        self.geoms = shapely.from_wkb([bytes(r[5]) for r in rows]) if rows else np.array([], dtype=object)
        self.position = {c: i for i, c in enumerate(self.codes)}
        self.refs = [GridRef(c, n, int(lv), p) for c, n, lv, p in
                     zip(self.codes, self.names, self.levels, self.parent_codes, strict=True)]
        # ancestors[i, L]: the grid at level L on i's path to the town (path_to_town), or -1.
        depth = int(self.levels.max()) if len(rows) else 0
        self.ancestors = np.full((len(rows), depth + 1), -1, dtype=np.int64)
        for i in range(len(rows)):
            j: int | None = i
            seen = 0
            while j is not None and seen <= depth:
                self.ancestors[i, self.levels[j]] = j
                parent = self.parent_codes[j]
                j = self.position.get(parent) if parent else None
                seen += 1
        # Deepest level first; inside a level the positions are in code order.
        self.by_level = []
        for level in sorted({int(v) for v in self.levels}, reverse=True):
            members = np.flatnonzero(self.levels == level)
            self.by_level.append((level, members, shapely.STRtree(self.geoms[members])))
        self.boundaries = shapely.boundary(self.geoms)
        self.lock = threading.Lock()
        # metric CRS -> {grid position: its densified boundary in that CRS}, filled as asked
        self.projected: dict[str, dict[int, shapely.Geometry]] = {}
        self.lock_projected = threading.Lock()

    @functools.cached_property
    def buckets(self) -> list[PolygonBuckets]:
        # Built on the first match (under self.lock): the locate endpoint's nearest-grid answers
        # need only the trees, not the compiled pass (whose first load takes about a second).
        return [PolygonBuckets(self.geoms[members]) for _level, members, _tree in self.by_level]

    def match(self, xs: np.ndarray, ys: np.ndarray, grid: np.ndarray, edge: np.ndarray,
              rows: np.ndarray | None = None) -> None:
        """Fill grid[rows] (winner or -1) and edge[rows] for the points xs/ys[rows].

        A compiled pass (`gis.grids.pip`) settles every point it can prove strictly inside a grid or
        strictly outside all of a level; GEOS (`_match_geos`) decides the rest, the points on or
        within rounding of an edge. The answers are GEOS's either way."""
        rows = np.arange(len(xs)) if rows is None else rows
        px, py = xs[rows], ys[rows]
        todo = np.arange(len(rows))
        unsure: list[np.ndarray] = []
        for (_level, members, _tree), buckets in zip(self.by_level, self.buckets, strict=True):
            if not len(todo):
                break
            found = buckets.classify(px[todo], py[todo])
            hit = found >= 0
            grid[rows[todo[hit]]] = members[found[hit]]       # strictly inside: not on an edge
            unsure.append(todo[found == AMBIGUOUS])
            todo = todo[found == OUTSIDE]
        near_edges = np.concatenate(unsure) if unsure else np.zeros(0, dtype=np.int64)
        if len(near_edges):
            self._match_geos(xs, ys, grid, edge, rows[np.sort(near_edges)])

    def _match_geos(self, xs: np.ndarray, ys: np.ndarray, grid: np.ndarray, edge: np.ndarray,
                    rows: np.ndarray) -> None:
        """The rule by GEOS: deepest level first, smallest code among the grids intersecting the point."""
        pts = shapely.points(xs[rows], ys[rows])
        todo = np.arange(len(rows))
        for _level, members, tree in self.by_level:
            if not len(todo):
                break
            pi, gi = tree.query(pts[todo], predicate="intersects")
            if not len(pi):
                continue
            best = np.full(len(todo), len(members), dtype=np.int64)
            np.minimum.at(best, pi, gi)                        # smallest code among this level's hits
            hit = best < len(members)
            grid[rows[todo[hit]]] = members[best[hit]]
            todo = todo[~hit]
        inside = np.flatnonzero(grid[rows] >= 0)
        edge[rows[inside]] = shapely.intersects(self.boundaries[grid[rows[inside]]], pts[inside])

    def nearest(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each point: the position of the nearest grid of the deepest level (smallest code on
        a tie) and the geodesic distance in metres to its boundary; -1 and NaN with no grids.

        Candidates come from the tree: the nearest grid in plain degrees gives an upper bound d0 of
        the true distance, and every grid nearer than d0 meets a box of d0 around the point (in
        degrees, by metres-per-degree bounds that hold on the whole ellipsoid); each candidate's
        distance is then computed exactly (`_boundary_distance`)."""
        n = len(xs)
        pos = np.full(n, -1, dtype=np.int64)
        dist = np.full(n, np.nan)
        if not n or not self.by_level:
            return pos, dist
        _level, members, tree = self.by_level[0]
        pts = shapely.points(xs, ys)
        pi, gi = tree.query_nearest(pts, all_matches=False)
        bound = np.full(n, np.inf)
        bound[pi] = self._boundary_distance(xs[pi], ys[pi], members[gi])
        dy = bound / _MIN_M_PER_DEG_LAT * (1 + 1e-6) + 1e-9
        cos_far = np.cos(np.radians(np.minimum(np.abs(ys) + dy, 90.0)))
        with np.errstate(divide="ignore"):
            dx = bound / (_MIN_M_PER_DEG_LON_AT_EQUATOR * cos_far) * (1 + 1e-6) + 1e-9
        dx = np.minimum(dx, 360.0)
        boxes = shapely.box(xs - dx, ys - dy, xs + dx, ys + dy)
        qi, qg = tree.query(boxes, predicate="intersects")
        d = self._boundary_distance(xs[qi], ys[qi], members[qg])
        order = np.lexsort((qg, d, qi))            # per point: nearest first, then smallest code
        qi, qg, d = qi[order], qg[order], d[order]
        first = np.flatnonzero(np.r_[True, qi[1:] != qi[:-1]]) if len(qi) else np.zeros(0, np.int64)
        pos[qi[first]] = members[qg[first]]
        dist[qi[first]] = d[first]
        return pos, dist

    def _boundary_distance(self, xs: np.ndarray, ys: np.ndarray, grids: np.ndarray) -> np.ndarray:
        """Geodesic (WGS84 ellipsoid) distance in metres from each point to its grid's boundary.

        The foot of the shortest line is found in a conformal metric projection around the points
        (the local Gauss-Kruger zone, else UTM), on boundaries densified to 50 m in degrees so that
        the projected chords follow the stored edges within millimetres; the distance from the point
        to that foot is then measured on the ellipsoid (Karney's geodesic). Near its minimum the
        distance is stationary along the boundary, so a foot a few centimetres off changes it by far
        less than a millimetre — unlike planar or spherical distances (off by up to 0.1 %)."""
        from gis.crs import metric_crs_for, metric_transformer

        out = np.full(len(xs), np.nan)
        if not len(xs):
            return out
        zones = np.array([metric_crs_for(x, y) for x, y in zip(xs, ys, strict=True)], dtype=object)
        for zone in np.unique(zones):
            k = np.flatnonzero(zones == zone)
            fwd = metric_transformer(zone)
            px, py = fwd.transform(xs[k], ys[k])
            rings = self._projected_boundaries(zone, grids[k])
            lines = shapely.shortest_line(shapely.points(px, py), rings)
            feet = shapely.get_coordinates(lines)[1::2]
            fx, fy = metric_transformer(zone, inverse=True).transform(feet[:, 0], feet[:, 1])
            out[k] = _GEOD.inv(xs[k], ys[k], fx, fy)[2]
        return out

    def _projected_boundaries(self, zone: str, grids: np.ndarray) -> np.ndarray:
        """The boundaries of `grids` (positions), densified and projected into `zone`. Only the
        grids asked for are projected (and kept): at city scale projecting every boundary took a
        second per zone, for the few candidates of a few outside points."""
        with self.lock_projected:
            cache = self.projected.setdefault(zone, {})
            missing = [int(g) for g in np.unique(grids) if int(g) not in cache]
            if missing:
                from gis.crs import metric_transformer

                fwd = metric_transformer(zone)
                dense = shapely.segmentize(self.boundaries[missing], _DENSIFY_DEG)
                done = shapely.transform(
                    dense, lambda c: np.column_stack(fwd.transform(c[:, 0], c[:, 1])))
                cache.update(zip(missing, done, strict=True))
            return np.array([cache[int(g)] for g in grids], dtype=object)

    def path(self, i: int) -> dict[int, GridRef]:
        return {lv: self.refs[j] for lv, j in enumerate(self.ancestors[i]) if j >= 0}


# Lower bounds of the length of a degree on the WGS84 ellipsoid: of latitude (110,574 m at the
# equator) and of longitude at the equator (111,319 m; times cos(lat) elsewhere).
_MIN_M_PER_DEG_LAT = 110_000.0
_MIN_M_PER_DEG_LON_AT_EQUATOR = 111_000.0
_DENSIFY_DEG = 0.0005
_GEOD = pyproj.Geod(ellps="WGS84")

# A city-sized index holds ~130 MB: two versions at most.
_INDEXES: PerDataVersion[GridIndex] = PerDataVersion(_GRID_VERSION, size=2)
_THREADS = max(1, min(4, os.cpu_count() or 1))


def grid_index(session: Session) -> GridIndex:
    """The current grids as this session sees them, read once per database and grid version."""

    def read(key: tuple[Any, ...]) -> GridIndex:
        rows = session.execute(text(
            "SELECT id, code, name, level, parent_code, ST_AsBinary(geom) FROM grid "
            "WHERE valid_to IS NULL"
        )).all()
        return offload(GridIndex, key, rows)

    return _INDEXES.get(session, read)


@dataclass
class BulkLocation:
    """Answers for n points as arrays; grid positions index into the `GridIndex` used."""

    index: GridIndex
    grid: np.ndarray            # the winning grid (deepest level, smallest code); -1 = outside
    on_boundary: np.ndarray     # the point lies on the winner's boundary
    nearest: np.ndarray         # outside points: the nearest group grid, else -1
    distance_m: np.ndarray      # outside points: geodesic distance to it, else NaN

    @property
    def inside(self) -> np.ndarray:
        return self.grid >= 0


def match_bulk(index: GridIndex, lons: ArrayLike, lats: ArrayLike) -> BulkLocation:
    """The grids holding the points, from the in-memory index alone (no database): outside points
    are left with nearest = -1 until `add_nearest` fills them in."""
    xs = np.ascontiguousarray(lons, dtype=float)
    ys = np.ascontiguousarray(lats, dtype=float)
    n = len(xs)
    grid = np.full(n, -1, dtype=np.int64)
    edge = np.zeros(n, dtype=bool)
    if n:
        parts = np.array_split(np.arange(n), min(_THREADS, max(1, n // 50_000)))
        with index.lock:
            if len(parts) == 1:
                index.match(xs, ys, grid, edge)
            else:   # shapely releases the GIL: halves on two cores
                with ThreadPoolExecutor(len(parts)) as pool:
                    list(pool.map(lambda p: index.match(xs, ys, grid, edge, p), parts))
    return BulkLocation(index, grid, edge, np.full(n, -1, dtype=np.int64), np.full(n, np.nan))


def add_nearest(session: Session, loc: BulkLocation, lons: ArrayLike, lats: ArrayLike) -> None:
    """For the points outside every grid: the nearest group grid and the geodesic distance (SQL)."""
    outside = np.flatnonzero(loc.grid < 0)
    if not len(outside):
        return
    xs, ys = np.asarray(lons, dtype=float), np.asarray(lats, dtype=float)
    loc.nearest[outside], loc.distance_m[outside] = loc.index.nearest(xs[outside], ys[outside])
