"""The compiled point-in-polygon pass answers only what it can prove, and then exactly as GEOS does."""

from __future__ import annotations

import numpy as np
import shapely

from gis.grids.pip import AMBIGUOUS, OUTSIDE, PolygonBuckets


def geos_answer(geoms: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(smallest position whose closed polygon holds the point or -1, on any boundary)."""
    pts = shapely.points(xs, ys)
    best = np.full(len(xs), -1)
    touches = np.zeros(len(xs), dtype=bool)
    for p, g in enumerate(geoms):
        hit = shapely.intersects(g, pts)
        best[hit & (best < 0)] = p
        touches |= shapely.intersects(g.boundary, pts)
    return best, touches


def awkward_polygons() -> np.ndarray:
    """Tiles sharing edges, a polygon with a hole (and an island in the hole), a multipolygon, a
    long thin sliver, a concave comb, and vertices with many decimals."""
    rng = np.random.default_rng(3)
    tiles = []
    for i in range(4):
        for j in range(3):
            x, y = 113.0 + i * 0.01, 34.0 + j * 0.01
            jitter = rng.uniform(-1e-4, 1e-4, 2)
            tiles.append(shapely.Polygon([(x, y), (x + 0.01, y), (x + 0.01 + jitter[0], y + 0.01),
                                          (x, y + 0.01 + jitter[1])]))
    holed = shapely.Polygon([(113.05, 34.0), (113.08, 34.0), (113.08, 34.03), (113.05, 34.03)],
                            holes=[[(113.06, 34.01), (113.07, 34.01), (113.07, 34.02), (113.06, 34.02)]])
    island = shapely.box(113.063, 34.013, 113.067, 34.017)
    multi = shapely.MultiPolygon([shapely.box(113.09, 34.0, 113.095, 34.005),
                                  shapely.box(113.097, 34.0, 113.1, 34.03)])
    sliver = shapely.Polygon([(113.0, 34.031), (113.1, 34.0310001), (113.1, 34.0310002)])
    comb = shapely.Polygon([(113.0, 34.04)] + [(113.0 + k * 0.005, 34.05 + (k % 2) * 0.01) for k in range(21)]
                           + [(113.1, 34.04)])
    return np.array(tiles + [holed, island, multi, sliver, comb], dtype=object)


def sample_points(geoms: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random points over the extent, plus vertices, points along edges and points one ulp off them."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    xs, ys = [rng.uniform(x0 - 0.01, x1 + 0.01, n)], [rng.uniform(y0 - 0.01, y1 + 0.01, n)]
    coords = shapely.get_coordinates(geoms)
    xs.append(coords[:, 0])
    ys.append(coords[:, 1])
    rings = shapely.get_coordinates(shapely.boundary(geoms))
    a, b = rings[:-1], rings[1:]
    t = rng.uniform(0, 1, len(a))
    along = a + (b - a) * t[:, None]
    xs += [along[:, 0], np.nextafter(along[:, 0], np.inf), along[:, 0]]
    ys += [along[:, 1], along[:, 1], np.nextafter(along[:, 1], -np.inf)]
    return np.concatenate(xs), np.concatenate(ys)


def test_every_proven_answer_is_geos_and_only_points_near_edges_are_left_over():
    geoms = awkward_polygons()
    xs, ys = sample_points(geoms, 20_000, seed=11)
    found = PolygonBuckets(geoms).classify(xs, ys)
    want, touches = geos_answer(geoms, xs, ys)
    proven = found != AMBIGUOUS
    # Proven inside: GEOS's winner, and the point is on no boundary at all.
    inside = found >= 0
    assert np.array_equal(found[inside], want[inside])
    assert not touches[inside].any()
    # Proven outside: GEOS finds no polygon.
    assert (want[found == OUTSIDE] == -1).all()
    # Every point on a boundary is handed back, never guessed.
    assert not (touches & proven).any()
    assert touches.sum() > 150
    # The random points (away from edges) are nearly all settled by the fast pass.
    assert proven[:20_000].mean() > 0.99


def test_grid_index_match_equals_geos_for_the_sample_town(session):
    from gis.grids.locate import grid_index

    index = grid_index(session)
    rng = np.random.default_rng(5)
    x0, y0, x1, y1 = shapely.total_bounds(index.geoms)
    xs = np.concatenate([rng.uniform(x0 - 0.01, x1 + 0.01, 50_000), shapely.get_coordinates(index.geoms)[:, 0]])
    ys = np.concatenate([rng.uniform(y0 - 0.01, y1 + 0.01, 50_000), shapely.get_coordinates(index.geoms)[:, 1]])
    fast_grid, fast_edge = np.full(len(xs), -1), np.zeros(len(xs), dtype=bool)
    index.match(xs, ys, fast_grid, fast_edge)
    geos_grid, geos_edge = np.full(len(xs), -1), np.zeros(len(xs), dtype=bool)
    index._match_geos(xs, ys, geos_grid, geos_edge, np.arange(len(xs)))
    assert np.array_equal(fast_grid, geos_grid)
    assert np.array_equal(fast_edge, geos_edge)
    assert geos_edge.sum() > 100 and (geos_grid >= 0).sum() > 10_000
