"""Terrain hydrology on a DEM: river burning, priority-flood conditioning, D8, HAND and flood depth.

Plain raster functions (numpy in, numpy out, no database). The pipeline:

1. **Burn** the river lines into the DEM: every cell a river line touches is lowered by
   `burn_depth_m`, so the flow directions follow the mapped channel even where the DEM's own
   valley is blurred (bridges, embankments, a coarse DEM).
2. **Condition**: priority-flood depression filling (Barnes, Lehman & Mulla 2014; numba) from the
   edges of the valid data, then classic steepest-descent D8 on the filled surface, where flats
   (and outlets) keep the direction the flood reached them from, which leads to their outlet.
3. **Accumulation**: upstream cell counts along the D8 network.
4. **Drainage**: the burned river cells when rivers are given; otherwise (or in addition, when
   `accumulation_threshold_km2` is set) every cell whose upstream area reaches the threshold.
5. **HAND** (height above nearest drainage, Nobre et al. 2011): for every cell, its *original*
   elevation minus the original elevation of the drainage cell its D8 path reaches first. The
   burn and the fill only steer the routing; they never enter the heights. A cell whose path
   leaves the DEM without meeting drainage has no HAND (NaN).

A fluvial scenario "stage h above the channel" floods the cells with HAND <= h that form one
8-connected body of water with a drainage cell (a hollow behind a higher rim stays dry), with
depth h - HAND. The pluvial mode ponds water in the depressions of the DEM: each depression fills
from its lowest cell up to h metres, never above its spill level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
from scipy import ndimage

DEPTH_CLASSES: tuple[tuple[str, float, float], ...] = (
    ("0-0.5", 0.0, 0.5),
    ("0.5-1", 0.5, 1.0),
    ("1-2", 1.0, 2.0),
    (">2", 2.0, np.inf),
)
# D8 codes as ESRI, pyflwdir and pysheds write them; 0 is an outlet, 247 no data.
D8_NODATA = 247
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class Conditioned:
    """A conditioned DEM and everything derived from it, on the DEM's own grid."""

    dem: np.ndarray  # original elevations, float32, NaN where no data
    filled: np.ndarray  # burned then depression-filled elevations, float32, NaN where no data
    d8: np.ndarray  # uint8 D8 directions (ESRI codes, see D8_NODATA)
    accumulation: np.ndarray  # upstream cells, including the cell itself, int32 (0 where no data)
    drain: np.ndarray  # bool: drainage cells
    hand: np.ndarray  # float32 metres, NaN where no data or no drainage downstream


def river_mask(rivers: Any, shape: tuple[int, int], transform: Any) -> np.ndarray:
    """Cells touched by the river lines (shapely geometries in the DEM's CRS)."""
    from rasterio.features import rasterize

    geoms = [g for g in rivers if g is not None and not g.is_empty]
    if not geoms:
        return np.zeros(shape, dtype=bool)
    # all_touched keeps a diagonal river 8-connected, so the burned channel has no gaps.
    mask: np.ndarray = rasterize(
        [(g, 1) for g in geoms], out_shape=shape, transform=transform, all_touched=True, dtype="uint8"
    ).astype(bool)
    return mask


def condition(
    dem: np.ndarray,
    rivers: np.ndarray | None,
    *,
    cell_area_m2: float,
    burn_depth_m: float = 10.0,
    accumulation_threshold_km2: float | None = None,
) -> Conditioned:
    """Burn, fill, route and measure HAND on `dem` (NaN = no data); `rivers` is a cell mask.

    Drainage is the river cells, plus the cells draining at least `accumulation_threshold_km2`
    when that is given; without rivers a threshold is required."""
    dem = np.asarray(dem, dtype=np.float32)
    valid = np.isfinite(dem)
    if not valid.any():
        raise ValueError("the DEM holds no valid cells")
    rivers = np.zeros(dem.shape, bool) if rivers is None else (np.asarray(rivers, bool) & valid)
    if not rivers.any() and accumulation_threshold_km2 is None:
        raise ValueError("give river lines that cross the DEM or an accumulation threshold")
    burned = dem.copy()
    burned[rivers] -= np.float32(burn_depth_m)
    filled, flood_dir, order = _priority_flood(burned)
    del burned
    d8 = _steepest_d8(filled, flood_dir)
    del flood_dir
    accumulation = _accumulate(d8, order)
    drain = rivers.copy()
    if accumulation_threshold_km2 is not None:
        drain |= accumulation >= accumulation_threshold_km2 * 1e6 / cell_area_m2
    hand = _hand(d8, order, drain, dem)
    return Conditioned(dem=dem, filled=filled, d8=d8, accumulation=accumulation, drain=drain, hand=hand)


# D8 neighbours in code order: E, SE, S, SW, W, NW, N, NE (codes 1, 2, 4, ... 128).
_D8_DR = np.array([0, 1, 1, 1, 0, -1, -1, -1], dtype=np.int64)
_D8_DC = np.array([1, 1, 0, -1, -1, -1, 0, 1], dtype=np.int64)
_D8_CODE = np.array([1, 2, 4, 8, 16, 32, 64, 128], dtype=np.uint8)


@numba.njit(cache=True)
def _heap_push(keys: np.ndarray, cells: np.ndarray, size: int, key: float, cell: int) -> int:
    i = size
    while i > 0:
        parent = (i - 1) >> 1
        pk = keys[parent]
        if pk < key or (pk == key and cells[parent] < cell):
            break
        keys[i] = pk
        cells[i] = cells[parent]
        i = parent
    keys[i] = key
    cells[i] = cell
    return size + 1


@numba.njit(cache=True)
def _heap_pop(keys: np.ndarray, cells: np.ndarray, size: int) -> tuple[int, int]:
    top = cells[0]
    size -= 1
    key = keys[size]
    cell = cells[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and (
            keys[child + 1] < keys[child] or (keys[child + 1] == keys[child] and cells[child + 1] < cells[child])
        ):
            child += 1
        if key < keys[child] or (key == keys[child] and cell < cells[child]):
            break
        keys[i] = keys[child]
        cells[i] = cells[child]
        i = child
    keys[i] = key
    cells[i] = cell
    return top, size


@numba.njit(cache=True)
def _priority_flood(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depression filling by priority flood (Barnes et al. 2014, with the plain queue for cells
    inside depressions), seeded with every valid cell on the DEM's edge or next to no-data.

    Returns the filled surface, for each cell the D8 code towards the cell it was reached from
    (0 for the seeds: the outlets) and the cells in the order they were settled. That order is by
    non-decreasing filled height and every cell comes after the one it was reached from, so it
    lists every cell after any cell it can drain to: a downstream-first order for the network."""
    nrow, ncol = z.shape
    n = nrow * ncol
    filled = np.empty((nrow, ncol), dtype=np.float32)
    came = np.full((nrow, ncol), 247, dtype=np.uint8)
    closed = np.zeros((nrow, ncol), dtype=np.bool_)
    order = np.empty(n, dtype=np.int64)
    keys = np.empty(n, dtype=np.float32)
    cells = np.empty(n, dtype=np.int64)
    pits = np.empty(n, dtype=np.int64)  # FIFO of cells raised to the current level
    size = 0
    for r in range(nrow):
        for c in range(ncol):
            if np.isnan(z[r, c]):
                closed[r, c] = True
                filled[r, c] = np.nan
                continue
            edge = r == 0 or c == 0 or r == nrow - 1 or c == ncol - 1
            if not edge:
                for k in range(8):
                    if np.isnan(z[r + _D8_DR[k], c + _D8_DC[k]]):
                        edge = True
                        break
            if edge:
                closed[r, c] = True
                filled[r, c] = z[r, c]
                came[r, c] = 0
                size = _heap_push(keys, cells, size, z[r, c], r * ncol + c)
    settled = 0
    pit_head = 0
    pit_tail = 0
    while size > 0 or pit_head < pit_tail:
        if pit_head < pit_tail:
            cell = pits[pit_head]
            pit_head += 1
        else:
            cell, size = _heap_pop(keys, cells, size)
        order[settled] = cell
        settled += 1
        r = cell // ncol
        c = cell - r * ncol
        level = filled[r, c]
        for k in range(8):
            rr = r + _D8_DR[k]
            cc = c + _D8_DC[k]
            if rr < 0 or rr >= nrow or cc < 0 or cc >= ncol or closed[rr, cc]:
                continue
            closed[rr, cc] = True
            came[rr, cc] = _D8_CODE[(k + 4) % 8]  # from the neighbour back to this cell
            if z[rr, cc] <= level:
                filled[rr, cc] = level
                pits[pit_tail] = rr * ncol + cc
                pit_tail += 1
            else:
                filled[rr, cc] = z[rr, cc]
                size = _heap_push(keys, cells, size, z[rr, cc], rr * ncol + cc)
    return filled, came, order[:settled]


@numba.njit(cache=True)
def _steepest_d8(filled: np.ndarray, flood_dir: np.ndarray) -> np.ndarray:
    """Classic D8 on the filled DEM: towards the neighbour with the steepest drop (diagonals at
    sqrt(2) cell lengths, first of equals in E, SE, S, ... order). Cells with no lower neighbour
    (flats, outlets) keep the direction the flood reached them from, which leads across a flat to
    its outlet and points to a cell settled earlier, so no cycle can form."""
    nrow, ncol = filled.shape
    out = np.empty((nrow, ncol), dtype=np.uint8)
    inv_diag = 1.0 / np.sqrt(2.0)
    for r in range(nrow):
        for c in range(ncol):
            z = filled[r, c]
            if np.isnan(z):
                out[r, c] = 247
                continue
            best = 0.0
            code = flood_dir[r, c]
            for k in range(8):
                rr = r + _D8_DR[k]
                cc = c + _D8_DC[k]
                if rr < 0 or rr >= nrow or cc < 0 or cc >= ncol:
                    continue
                zn = filled[rr, cc]
                if np.isnan(zn):
                    continue
                drop = np.float64(z) - np.float64(zn)
                if k % 2 == 1:
                    drop *= inv_diag
                if drop > best:
                    best = drop
                    code = _D8_CODE[k]
            out[r, c] = code
    return out


@numba.njit(cache=True)
def _downstream(d8: np.ndarray, cell: int, ncol: int) -> int:
    """The cell `cell` drains to, or -1 for an outlet."""
    code = d8.flat[cell]
    if code == 0 or code == 247:
        return -1
    k = 0
    while _D8_CODE[k] != code:
        k += 1
    return int(cell + _D8_DR[k] * ncol + _D8_DC[k])


@numba.njit(cache=True)
def _accumulate(d8: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Upstream cells (the cell itself included), summed from the sources down the network."""
    nrow, ncol = d8.shape
    acc = np.zeros(nrow * ncol, dtype=np.int32)
    for i in range(order.size - 1, -1, -1):
        cell = order[i]
        acc[cell] += 1
        ds = _downstream(d8, cell, ncol)
        if ds >= 0:
            acc[ds] += acc[cell]
    return acc.reshape((nrow, ncol))


@numba.njit(cache=True)
def _hand(d8: np.ndarray, order: np.ndarray, drain: np.ndarray, elevation: np.ndarray) -> np.ndarray:
    """HAND along the D8 network, visiting cells downstream first (`order`): a drainage cell is
    its own reference; any other cell takes the reference of the cell it drains to."""
    nrow, ncol = d8.shape
    ref = np.full(nrow * ncol, np.nan, dtype=np.float64)  # elevation of the drainage cell reached
    hand = np.full((nrow, ncol), np.nan, dtype=np.float32)
    for cell in order:
        if drain.flat[cell]:
            ref[cell] = elevation.flat[cell]
        else:
            ds = _downstream(d8, cell, ncol)
            if ds >= 0:
                ref[cell] = ref[ds]
        if not np.isnan(ref[cell]):
            hand.flat[cell] = np.float32(np.float64(elevation.flat[cell]) - ref[cell])
    return hand


def fluvial_depth(hand: np.ndarray, drain: np.ndarray, stage_m: float) -> np.ndarray:
    """Water depth (m) at stage `stage_m` above the channel; NaN where dry."""
    wet = np.isfinite(hand) & (hand <= stage_m)
    labels, _ = ndimage.label(wet, structure=_EIGHT)
    connected = np.unique(labels[drain & wet])
    connected = connected[connected > 0]
    wet &= np.isin(labels, connected)
    depth = np.full(hand.shape, np.nan, dtype=np.float32)
    depth[wet] = np.float32(stage_m) - hand[wet]
    return depth


def pluvial_depth(
    dem: np.ndarray, filled: np.ndarray, drain: np.ndarray, stage_m: float, min_depth_m: float = 0.1
) -> np.ndarray:
    """Water ponding in the DEM's depressions (not in the channel): each depression fills from its
    lowest cell up to `stage_m` metres of water, never above its spill level; NaN where dry.
    Water shallower than `min_depth_m` is left out: that is within a DEM's vertical noise."""
    sink = np.isfinite(dem) & ~drain & ((filled - dem) > min_depth_m)
    labels, n = ndimage.label(sink, structure=_EIGHT)
    depth = np.full(dem.shape, np.nan, dtype=np.float32)
    if n == 0:
        return depth
    index = np.arange(1, n + 1)
    bottom = np.asarray(ndimage.minimum(dem, labels, index), dtype=np.float64)
    level = np.zeros(n + 1)
    level[1:] = bottom + stage_m
    water = np.minimum(filled, level[labels]) - dem
    wet = sink & (water >= min_depth_m)
    depth[wet] = water[wet]
    return depth


def depth_classes(depth: np.ndarray, transform: Any) -> dict[str, list[Any]]:
    """Polygons (in the raster's CRS) of each depth class of a depth raster (NaN = dry)."""
    from rasterio.features import shapes
    from shapely.geometry import shape

    wet = np.isfinite(depth)
    klass = np.zeros(depth.shape, dtype=np.uint8)
    for i, (_, low, high) in enumerate(DEPTH_CLASSES, start=1):
        klass[wet & (depth >= low) & (depth < high)] = i
    # Depth exactly 0 at the waterline belongs to the shallowest class; below 0 cannot happen.
    klass[wet & (klass == 0)] = 1
    out: dict[str, list[Any]] = {name: [] for name, _, _ in DEPTH_CLASSES}
    for geom, value in shapes(klass, mask=klass > 0, transform=transform, connectivity=8):
        out[DEPTH_CLASSES[int(value) - 1][0]].append(shape(geom))
    return out


def sample(raster: np.ndarray, transform: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Raster values at points (raster CRS, north-up grid); NaN outside the raster."""
    col = np.floor((np.asarray(x, dtype=np.float64) - transform.c) / transform.a).astype(np.int64)
    row = np.floor((np.asarray(y, dtype=np.float64) - transform.f) / transform.e).astype(np.int64)
    inside = (row >= 0) & (row < raster.shape[0]) & (col >= 0) & (col < raster.shape[1])
    out = np.full(row.shape, np.nan, dtype=np.float64)
    out[inside] = raster[row[inside], col[inside]]
    return out
