"""Analysis units (grids of one level, or a hexagon layer clipped to the town) and their neighbours.

Neighbours are binary and symmetric, kept in CSR form (`indptr`, `indices`, the unit itself left
out; Gi* adds it). Two rules:

* grids — queen contiguity: two grids are neighbours when their closed outlines share at least
  one point (an edge or a corner). Tilings made by snapping may leave hair-line gaps, so outlines
  within `snap_m` metres (default 1 m) of each other count as touching.
* hexagons — a distance band between hexagon centres in a metric CRS. The band is the larger of
  the spacing of adjacent hexagons (× 1.01, so all six neighbours are in) and the largest
  nearest-neighbour distance, so every unit has at least one neighbour.

A unit with no neighbour is an island: it is kept, flagged, and given no statistic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from scipy import sparse
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class Neighbours:
    indptr: np.ndarray
    indices: np.ndarray
    rule: str
    threshold_m: float | None = None

    @property
    def n(self) -> int:
        return len(self.indptr) - 1

    @property
    def cardinalities(self) -> np.ndarray:
        return np.diff(self.indptr)

    @property
    def islands(self) -> np.ndarray:
        return np.flatnonzero(self.cardinalities == 0)

    def as_dict(self) -> dict[int, list[int]]:
        return {
            i: self.indices[self.indptr[i] : self.indptr[i + 1]].tolist() for i in range(self.n)
        }

    def subset(self, keep: np.ndarray) -> Neighbours:
        """The neighbours among the units `keep` (indices, in that order)."""
        m = self.matrix()[keep][:, keep].tocsr()
        m.sort_indices()
        return Neighbours(
            m.indptr.astype(np.int64), m.indices.astype(np.int64), self.rule, self.threshold_m
        )

    def matrix(self) -> sparse.csr_matrix:
        data = np.ones(len(self.indices))
        return sparse.csr_matrix((data, self.indices, self.indptr), shape=(self.n, self.n))


def _from_pairs(
    n: int, left: np.ndarray, right: np.ndarray, rule: str, threshold: float | None = None
) -> Neighbours:
    keep = left != right
    left, right = left[keep], right[keep]
    m = sparse.coo_matrix(
        (np.ones(2 * len(left)), (np.r_[left, right], np.r_[right, left])), shape=(n, n)
    )
    m = m.tocsr()
    m.data[:] = 1.0  # pairs found twice (i, j) and (j, i) stay binary
    m.sort_indices()
    return Neighbours(m.indptr.astype(np.int64), m.indices.astype(np.int64), rule, threshold)


def queen_neighbours(geoms_metric: Any, snap_m: float = 1.0) -> Neighbours:
    """Queen contiguity of polygons given in a metric CRS (an array of shapely geometries)."""
    geoms = np.asarray(geoms_metric, dtype=object)
    tree = shapely.STRtree(geoms)
    if snap_m > 0:
        left, right = tree.query(geoms, predicate="dwithin", distance=snap_m)
    else:
        left, right = tree.query(geoms, predicate="intersects")
    return _from_pairs(len(geoms), left, right, "queen")


def distance_band_neighbours(xy: np.ndarray, min_threshold: float = 0.0) -> Neighbours:
    """Centres within the band; the band grows to the largest nearest-neighbour distance."""
    xy = np.asarray(xy, dtype=float)
    tree = cKDTree(xy)
    if len(xy) > 1:
        d, _ = tree.query(xy, k=2)
        threshold = max(float(min_threshold), float(d[:, 1].max()) * (1 + 1e-9))
    else:
        threshold = float(min_threshold)
    pairs = tree.query_pairs(threshold, output_type="ndarray")
    return _from_pairs(len(xy), pairs[:, 0], pairs[:, 1], "distance_band", threshold)


def hexagon_centres(bounds: tuple[float, float, float, float], size_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres of pointy-top hexagons `size_m` apart (flat side to flat side) covering `bounds`,
    and their (column, row) on a lattice anchored at the CRS origin, so a hexagon keeps its id
    whatever area is analysed."""
    x0, y0, x1, y1 = bounds
    r = size_m / np.sqrt(3)  # circumradius
    dy = 1.5 * r
    rows = np.arange(int(np.floor(y0 / dy)) - 1, int(np.ceil(y1 / dy)) + 2)
    cols = np.arange(int(np.floor(x0 / size_m)) - 1, int(np.ceil(x1 / size_m)) + 2)
    j, i = np.meshgrid(rows, cols, indexing="ij")
    x = i * size_m + (j % 2) * size_m / 2
    y = j * dy
    return np.column_stack([x.ravel(), y.ravel()]), np.column_stack([i.ravel(), j.ravel()])


def hexagon_polygons(centres: np.ndarray, size_m: float) -> np.ndarray:
    r = size_m / np.sqrt(3)
    angles = np.deg2rad(np.arange(30, 390, 60))  # pointy top: vertices at 30°, 90°, …
    ring = np.column_stack([np.cos(angles), np.sin(angles)]) * r
    coords = centres[:, None, :] + ring[None, :, :]
    return np.asarray(shapely.polygons(coords), dtype=object)


def hexagon_units(
    area_metric: Any, size_m: float, min_share: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hexagons clipped to `area_metric` (a polygon in a metric CRS): (clipped polygons, centres,
    lattice positions).

    Hexagons whose part inside the area is at most `min_share` of a full hexagon are left out
    (0: keep every hexagon that overlaps the area at all)."""
    centres, lattice = hexagon_centres(area_metric.bounds, size_m)
    hexes = hexagon_polygons(centres, size_m)
    shapely.prepare(area_metric)
    hit = shapely.intersects(area_metric, hexes)
    centres, lattice, hexes = centres[hit], lattice[hit], hexes[hit]
    clipped = shapely.intersection(hexes, area_metric)
    full = np.sqrt(3) / 2 * size_m**2
    keep = (~shapely.is_empty(clipped)) & (shapely.area(clipped) > min_share * full)
    return clipped[keep], centres[keep], lattice[keep]


def hexagon_neighbours(centres: np.ndarray, size_m: float) -> Neighbours:
    return distance_band_neighbours(centres, min_threshold=size_m * 1.01)


def assign_points(polygons: Any, xy: np.ndarray) -> np.ndarray:
    """Index of the polygon containing each point (the first by index on shared edges); −1: none."""
    out = np.full(len(xy), -1, dtype=np.int64)
    if len(xy) == 0 or len(polygons) == 0:
        return out
    tree = shapely.STRtree(np.asarray(polygons, dtype=object))
    pts, polys = tree.query(shapely.points(xy), predicate="intersects")
    # Smallest polygon index wins where a point lies on a shared edge, as in the grid rule.
    order = np.lexsort((polys, pts))
    pts, polys = pts[order], polys[order]
    first = np.r_[True, pts[1:] != pts[:-1]]
    out[pts[first]] = polys[first]
    return out
