"""Point in polygon for many points at once, with a certificate: a compiled first pass that answers
only where floating point cannot be wrong, and says "ask GEOS" everywhere else.

`gis.grids.locate.GridIndex.match` must give exactly GEOS's answer (`intersects`: inside or on the
boundary; smallest code among the hits). GEOS decides with robust orientation tests. The pass here
evaluates the same orientation determinant in plain doubles together with Shewchuk's error bound
for it (J. R. Shewchuk, "Adaptive Precision Floating-Point Arithmetic and Fast Robust Geometric
Predicates", 1997: |det| > (3 + 16ε)ε (|detleft| + |detright|) proves the sign). A point whose
every test against every candidate polygon is proven gets a proven answer — strictly inside one
(then it is not on any boundary) or strictly outside all; a point with any unproven test (on or
within rounding of an edge or vertex) is handed back, and the caller runs GEOS on it. So the
answers are GEOS's, and GEOS runs only for the few points near edges.

Candidates come from a uniform bucket grid per level: each polygon is listed in every cell its
bounding box touches; a point looks at its own cell only (the cell of a coordinate is a monotone
function of it, so a point inside a polygon's box falls in one of the polygon's cells).
"""

from __future__ import annotations

import numba
import numpy as np
import shapely

_EPS = 2.0 ** -53
_ERRBOUND = 2.0 * (3.0 + 16.0 * _EPS) * _EPS      # Shewchuk's ccwerrboundA, doubled for margin

AMBIGUOUS = -2
OUTSIDE = -1


class PolygonBuckets:
    """The polygons of one level: rings as flat coordinates, boxes, and the bucket grid."""

    def __init__(self, geoms: np.ndarray):
        n = len(geoms)
        parts, part_of = shapely.get_parts(geoms, return_index=True)
        rings, ring_part = shapely.get_rings(parts, return_index=True)     # exterior and holes
        ring_owner = part_of[ring_part].astype(np.int64)
        order = np.argsort(ring_owner, kind="stable")          # rings grouped by polygon
        rings, ring_owner = rings[order], ring_owner[order]
        coords, ring_of = shapely.get_coordinates(rings, return_index=True)
        self.x = np.ascontiguousarray(coords[:, 0])
        self.y = np.ascontiguousarray(coords[:, 1])
        self.ring_start = np.searchsorted(ring_of, np.arange(len(rings) + 1)).astype(np.int64)
        self.poly_ring_start = np.searchsorted(ring_owner, np.arange(n + 1)).astype(np.int64)
        bounds = shapely.bounds(geoms)
        self.bx0, self.by0, self.bx1, self.by1 = (np.ascontiguousarray(bounds[:, i]) for i in range(4))
        x0, y0 = float(np.nanmin(self.bx0)), float(np.nanmin(self.by0))
        x1, y1 = float(np.nanmax(self.bx1)), float(np.nanmax(self.by1))
        # About two polygons' worth of area per cell, cells as square as the extent allows.
        cells = max(1, 2 * n)
        w, h = max(x1 - x0, 1e-12), max(y1 - y0, 1e-12)
        self.nx = max(1, min(4096, round(np.sqrt(cells * w / h))))
        self.ny = max(1, min(4096, round(cells / self.nx)))
        self.x0, self.y0 = x0, y0
        self.cw, self.ch = w / self.nx, h / self.ny
        self.cell_start, self.cell_polys = _fill_buckets(
            self.bx0, self.by0, self.bx1, self.by1, x0, y0, self.cw, self.ch, self.nx, self.ny)

    def classify(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Per point: the smallest polygon position holding it strictly inside, OUTSIDE (proven
        outside every polygon) or AMBIGUOUS (not proven: ask GEOS)."""
        out = np.empty(len(xs), dtype=np.int64)
        _classify(np.ascontiguousarray(xs, dtype=np.float64), np.ascontiguousarray(ys, dtype=np.float64),
                  self.x0, self.y0, self.cw, self.ch, self.nx, self.ny, self.cell_start, self.cell_polys,
                  self.bx0, self.by0, self.bx1, self.by1, self.poly_ring_start, self.ring_start,
                  self.x, self.y, _ERRBOUND, out)
        return out


@numba.njit(cache=True)
def _cell(v: float, origin: float, size: float, count: int) -> int:
    c = int(np.floor((v - origin) / size))
    return min(max(c, 0), count - 1)


@numba.njit(cache=True)
def _fill_buckets(bx0: np.ndarray, by0: np.ndarray, bx1: np.ndarray, by1: np.ndarray, x0: float, y0: float,
                  cw: float, ch: float, nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(bx0)
    counts = np.zeros(nx * ny + 1, dtype=np.int64)
    for p in range(n):
        if not (bx0[p] <= bx1[p]):             # empty geometry (NaN box)
            continue
        for iy in range(_cell(by0[p], y0, ch, ny), _cell(by1[p], y0, ch, ny) + 1):
            for ix in range(_cell(bx0[p], x0, cw, nx), _cell(bx1[p], x0, cw, nx) + 1):
                counts[iy * nx + ix + 1] += 1
    start = np.cumsum(counts)
    fill = start[:-1].copy()
    polys = np.empty(start[-1], dtype=np.int64)
    for p in range(n):
        if not (bx0[p] <= bx1[p]):
            continue
        for iy in range(_cell(by0[p], y0, ch, ny), _cell(by1[p], y0, ch, ny) + 1):
            for ix in range(_cell(bx0[p], x0, cw, nx), _cell(bx1[p], x0, cw, nx) + 1):
                c = iy * nx + ix
                polys[fill[c]] = p
                fill[c] += 1
    return start, polys


@numba.njit(nogil=True, cache=True)
def _inside(p: int, px: float, py: float, poly_ring_start: np.ndarray, ring_start: np.ndarray, x: np.ndarray,
            y: np.ndarray, errbound: float) -> int:
    """1 strictly inside, 0 strictly outside and off the boundary, -1 not proven."""
    inside = False
    for r in range(poly_ring_start[p], poly_ring_start[p + 1]):
        for k in range(ring_start[r], ring_start[r + 1] - 1):
            ax, ay, bx, by = x[k], y[k], x[k + 1], y[k + 1]
            straddles = (ay > py) != (by > py)
            if not straddles and not (min(ay, by) <= py <= max(ay, by) and min(ax, bx) <= px <= max(ax, bx)):
                continue                          # neither crossed by the ray nor possibly touched
            detleft = (ax - px) * (by - py)
            detright = (ay - py) * (bx - px)
            det = detleft - detright
            if abs(det) <= errbound * (abs(detleft) + abs(detright)):
                return -1
            if straddles and (det > 0) == (by > ay):
                inside = not inside
    return 1 if inside else 0


@numba.njit(nogil=True, cache=True)
def _classify(xs: np.ndarray, ys: np.ndarray, x0: float, y0: float, cw: float, ch: float, nx: int, ny: int,
              cell_start: np.ndarray, cell_polys: np.ndarray, bx0: np.ndarray, by0: np.ndarray, bx1: np.ndarray,
              by1: np.ndarray, poly_ring_start: np.ndarray, ring_start: np.ndarray, x: np.ndarray, y: np.ndarray,
              errbound: float, out: np.ndarray) -> None:
    for i in range(len(xs)):
        px, py = xs[i], ys[i]
        best = OUTSIDE
        if not (np.isfinite(px) and np.isfinite(py)):
            out[i] = AMBIGUOUS
            continue
        c = _cell(py, y0, ch, ny) * nx + _cell(px, x0, cw, nx)
        for k in range(cell_start[c], cell_start[c + 1]):
            p = cell_polys[k]
            if px < bx0[p] or px > bx1[p] or py < by0[p] or py > by1[p]:
                continue
            r = _inside(p, px, py, poly_ring_start, ring_start, x, y, errbound)
            if r < 0:
                best = AMBIGUOUS
                break
            if r == 1 and (best == OUTSIDE or p < best):
                best = p
        out[i] = best
