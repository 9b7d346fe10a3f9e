"""HAND (height above nearest drainage): an analytic oracle, an independent implementation, no-data
and foreign CRSs, and DEM files that cannot be used."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from shapely.geometry import LineString, MultiLineString

from gis.errors import InputError
from gis.flood import dem as flood_dem
from gis.flood import hydrology

CELL = 10.0


def v_valley(rows: int = 61, cols: int = 41, pit: tuple[int, int] | None = None, ridge: float = 0.05):
    """A V-shaped valley around a level channel in column `cols // 2`, its walls rising 0.37 m per
    cell sideways and `ridge` m per cell away from the middle row. The channel is level, so HAND is
    `z - z_channel` along *any* D8 path that reaches it: the oracle needs no routing rule."""
    r = np.arange(rows)[:, None]
    c = np.arange(cols)[None, :]
    c0, r0 = cols // 2, rows // 2
    z0 = 87.25
    wall = (0.37 * np.abs(c - c0) + ridge * np.abs(r - r0)) * (c != c0)
    z = (z0 + wall).astype(np.float64)
    exact = z - z0
    if pit is not None:
        # A closed hollow 1.3 m deep in a wall: filled for routing, measured at its real bottom.
        z[pit] -= 1.3
        exact[pit] -= 1.3
    transform = Affine(CELL, 0, 500_000.0, 0, -CELL, 3_650_000.0)
    x = 500_000.0 + (c0 + 0.5) * CELL
    river = LineString([(x, 3_650_000.0), (x, 3_650_000.0 - rows * CELL)])
    return z.astype(np.float32), exact, transform, river


def _river_cells(river, shape, transform):
    return hydrology.river_mask([river], shape, transform)


def test_v_valley_hand_matches_the_analytic_value():
    dem, exact, transform, river = v_valley(pit=(20, 30))
    rivers = _river_cells(river, dem.shape, transform)
    assert rivers[:, 20].all() and rivers.sum() == dem.shape[0]
    cond = hydrology.condition(dem, rivers, cell_area_m2=CELL * CELL)
    # Every cell, the DEM's edges included, drains into the channel: edge cells flow inwards
    # when the inside is lower, so the only outlets are where the (level) channel leaves the DEM.
    assert np.isfinite(cond.hand).all()
    assert np.abs(cond.hand - exact).max() < 1e-4
    outlets = np.argwhere(cond.d8 == 0).tolist()
    assert outlets and all(cond.drain[r, c] and r in (0, dem.shape[0] - 1) for r, c in outlets)
    # The hollow was filled for routing but keeps its own (lower) height above the channel.
    assert cond.filled[20, 30] == pytest.approx(dem[20, 30] + 0.88, abs=1e-4)  # up to its lowest rim cell
    assert abs(cond.hand[20, 30] - exact[20, 30]) < 1e-4
    # Every cell drains somewhere; the channel gathers the valley.
    assert cond.accumulation[cond.drain].max() > dem.size // 3


def test_tilted_plane_draining_to_a_channel_along_its_lower_edge():
    rows, cols = 40, 30
    r = np.arange(rows)[:, None]
    dem = np.broadcast_to(55.0 + 0.21 * (rows - 1 - r), (rows, cols)).astype(np.float32)
    drain = np.zeros((rows, cols), bool)
    drain[-1, :] = True
    cond = hydrology.condition(dem, drain, cell_area_m2=CELL * CELL)
    exact = np.broadcast_to(0.21 * (rows - 1 - r), (rows, cols))
    inner = np.zeros((rows, cols), bool)
    inner[:, 1:-1] = True
    inner[0, :] = False
    assert np.abs(cond.hand[inner] - exact[inner]).max() < 1e-4


_D8_STEP = {1: (0, 1), 2: (1, 1), 4: (1, 0), 8: (1, -1), 16: (0, -1), 32: (-1, -1), 64: (-1, 0), 128: (-1, 1)}


def _walk_hand(cond: hydrology.Conditioned) -> np.ndarray:
    """HAND by following every cell's D8 path one step at a time (slow, obviously right)."""
    out = np.full(cond.dem.shape, np.nan)
    for r, c in np.ndindex(cond.dem.shape):
        i, j = r, c
        while not cond.drain[i, j] and cond.d8[i, j] in _D8_STEP:
            di, dj = _D8_STEP[int(cond.d8[i, j])]
            i, j = i + di, j + dj
        if cond.drain[i, j]:
            out[r, c] = float(cond.dem[r, c]) - float(cond.dem[i, j])
    return out


def test_accumulation_threshold_drains_without_river_lines():
    dem, exact, _, _ = v_valley()
    cond = hydrology.condition(dem, None, cell_area_m2=CELL * CELL, accumulation_threshold_km2=0.02)
    # 0.02 km² = 200 cells: drainage is exactly the cells that gather at least 200 cells.
    assert (cond.drain == (cond.accumulation >= 200)).all()
    assert cond.drain[:, 20].sum() > 20
    walked = _walk_hand(cond)
    assert (np.isfinite(walked) == np.isfinite(cond.hand)).all()
    ok = np.isfinite(walked)
    assert ok.sum() > 0.9 * dem.size
    assert np.abs(cond.hand[ok] - walked[ok]).max() < 1e-4
    # Cells draining straight into the channel column keep the analytic value.
    channel_fed = ok & (np.abs(walked - exact) < 1e-4)
    assert channel_fed.sum() > 0.3 * dem.size
    with pytest.raises(ValueError, match="accumulation threshold"):
        hydrology.condition(dem, None, cell_area_m2=CELL * CELL)


def test_hand_equals_the_walked_d8_path_on_the_sample_dem_corner(sample_town):
    """A 200 x 200 corner of the sample DEM where the river runs: every cell's HAND is what a
    step-by-step walk of its D8 path to the river gives."""
    shape = sample_town.dem.shape
    rivers = hydrology.river_mask(
        list(sample_town.rivers.to_crs(sample_town.dem_crs).geometry), shape, sample_town.dem_transform
    )
    rows, cols = np.nonzero(rivers)
    r0 = int(np.clip(rows[len(rows) // 2] - 100, 0, shape[0] - 200))
    c0 = int(np.clip(cols[len(cols) // 2] - 100, 0, shape[1] - 200))
    window = (slice(r0, r0 + 200), slice(c0, c0 + 200))
    cond = hydrology.condition(sample_town.dem[window], rivers[window], cell_area_m2=100.0)
    walked = _walk_hand(cond)
    assert (np.isfinite(walked) == np.isfinite(cond.hand)).all()
    ok = np.isfinite(walked)
    assert ok.sum() > 20_000
    assert np.abs(cond.hand[ok] - walked[ok]).max() < 1e-4


def test_nodata_cells_stay_out_and_the_valid_area_keeps_exact_hand():
    dem, exact, transform, river = v_valley(rows=71, cols=51)
    # A ragged no-data border (a DEM clipped to a township) and a void in one wall.
    rr, cc = np.mgrid[: dem.shape[0], : dem.shape[1]]
    outside = ((rr - 35) / 34.0) ** 2 + ((cc - 25) / 24.0) ** 2 > 1.0
    dem = dem.copy()
    dem[outside] = np.nan
    dem[30:34, 8:11] = np.nan
    rivers = _river_cells(river, dem.shape, transform)
    cond = hydrology.condition(dem, rivers, cell_area_m2=CELL * CELL)
    nodata = ~np.isfinite(dem)
    assert np.isnan(cond.hand[nodata]).all() and np.isnan(cond.filled[nodata]).all()
    assert (cond.d8[nodata] == hydrology.D8_NODATA).all()
    assert not cond.drain[nodata].any() and (cond.accumulation[nodata] == 0).all()
    ok = np.isfinite(cond.hand)
    # Cells next to no-data may leave the DEM there; the rest is exact and most of the valley.
    assert ok.sum() > 0.8 * (~nodata).sum()
    assert np.abs(cond.hand[ok] - exact[ok]).max() < 1e-4


def test_flood_depth_is_stage_minus_hand_and_only_connected_to_the_channel():
    dem, exact, transform, river = v_valley(pit=(20, 27))
    rivers = _river_cells(river, dem.shape, transform)
    cond = hydrology.condition(dem, rivers, cell_area_m2=CELL * CELL)
    stage = 2.0
    depth = hydrology.fluvial_depth(cond.hand, cond.drain, stage)
    wet = np.isfinite(depth)
    assert np.abs(depth[wet] - (stage - cond.hand[wet])).max() < 1e-6
    assert (cond.hand[wet] <= stage + 1e-6).all()
    # The hollow (HAND below the stage behind a higher rim) stays dry; its neighbours are above h.
    assert cond.hand[20, 27] <= stage and not wet[20, 27]
    expected = (cond.hand <= stage) & np.isfinite(cond.hand)
    expected[20, 27] = False
    assert (wet == expected).all()
    # Pluvial: only the hollow ponds, up to its spill level (0.88 m below its rim).
    pond = hydrology.pluvial_depth(cond.dem, cond.filled, cond.drain, 0.5)
    assert np.isfinite(pond).sum() == 1 and abs(pond[20, 27] - 0.5) < 1e-6
    deep = hydrology.pluvial_depth(cond.dem, cond.filled, cond.drain, 5.0)
    assert abs(deep[20, 27] - (cond.filled[20, 27] - cond.dem[20, 27])) < 1e-6


def test_depth_classes_partition_the_wet_cells():
    dem, _, transform, river = v_valley()
    cond = hydrology.condition(dem, _river_cells(river, dem.shape, transform), cell_area_m2=CELL * CELL)
    depth = hydrology.fluvial_depth(cond.hand, cond.drain, 3.0)
    classes = hydrology.depth_classes(depth, transform)
    assert set(classes) == {"0-0.5", "0.5-1", "1-2", ">2"}
    areas = {k: sum(p.area for p in v) for k, v in classes.items()}
    assert sum(areas.values()) == pytest.approx(np.isfinite(depth).sum() * CELL * CELL)
    for name, low, high in hydrology.DEPTH_CLASSES:
        n = (np.isfinite(depth) & (depth >= low) & (depth < high)).sum()
        assert areas[name] == pytest.approx(n * CELL * CELL), name
    # Polygons of one class never overlap those of another.
    union = shapely.union_all([p for v in classes.values() for p in v])
    assert union.area == pytest.approx(sum(areas.values()))


def _pysheds_hand(cond: hydrology.Conditioned, transform) -> np.ndarray:
    """pysheds' HAND (GPL, test only) on our D8 directions. pysheds drops the outer ring of the
    raster, so the rasters get a one-cell no-data margin and are cropped back afterwards."""
    if not hasattr(np, "in1d"):  # pysheds 0.5 still calls np.in1d, removed in numpy 2.4
        np.in1d = np.isin
    from pysheds.grid import Grid
    from pysheds.sview import Raster, ViewFinder

    d8 = np.pad(cond.d8.astype(np.int64), 1, constant_values=0)
    d8[d8 == hydrology.D8_NODATA] = 0
    dem = np.pad(cond.dem.astype(np.float64), 1, constant_values=np.nan)
    drain = np.pad(cond.drain, 1, constant_values=False)
    shifted = transform @ Affine.translation(-1, -1)

    def view(nodata):
        return ViewFinder(affine=shifted, shape=d8.shape, nodata=nodata)

    grid = Grid(viewfinder=view(0))
    hand = grid.compute_hand(
        Raster(d8, viewfinder=view(0)), Raster(dem, viewfinder=view(np.nan)),
        Raster(drain, viewfinder=view(False)), dirmap=(64, 128, 1, 2, 4, 8, 16, 32), nodata_out=np.nan,
    )
    return np.asarray(hand, dtype=np.float64)[1:-1, 1:-1]


def test_hand_agrees_with_pysheds_on_the_sample_dem(sample_town):
    from gis.sample_town import write_dem

    cond = hydrology.condition(
        sample_town.dem,
        hydrology.river_mask(
            list(sample_town.rivers.to_crs(sample_town.dem_crs).geometry), sample_town.dem.shape,
            sample_town.dem_transform,
        ),
        cell_area_m2=100.0,
    )
    theirs = _pysheds_hand(cond, sample_town.dem_transform)
    ours = cond.hand.astype(np.float64)
    assert (np.isfinite(ours) == np.isfinite(theirs)).all()
    both = np.isfinite(ours)
    assert both.sum() > 0.7 * ours.size  # the rest drains off the DEM in other catchments
    assert np.abs(ours[both] - theirs[both]).max() < 1e-4
    assert write_dem  # the same DEM the database loads (sample_town.dem written by write_dem)


def test_fill_routing_and_hand_agree_with_pyflwdir_on_the_sample_dem(sample_town):
    """pyflwdir (MIT, test only) on the same burned DEM: the same filled surface (the filled
    surface of a DEM is unique), and on our D8 directions the same upstream counts and HAND."""
    import pyflwdir

    rivers = hydrology.river_mask(
        list(sample_town.rivers.to_crs(sample_town.dem_crs).geometry), sample_town.dem.shape,
        sample_town.dem_transform,
    )
    dem = sample_town.dem.astype(np.float32).copy()
    dem[:40, :60] = np.nan  # a no-data corner, so edges next to no-data are seeds for both
    cond = hydrology.condition(dem, rivers, cell_area_m2=100.0, burn_depth_m=10.0)
    valid = np.isfinite(dem)
    burned = np.where(valid, dem, -9999.0).astype(np.float32)
    burned[rivers & valid] -= 10.0
    their_filled, _ = pyflwdir.dem.fill_depressions(burned, nodata=-9999.0, outlets="edge")
    assert np.array_equal(their_filled[valid], cond.filled[valid])
    assert np.isnan(cond.filled[~valid]).all()
    flw = pyflwdir.from_array(cond.d8, ftype="d8", check_ftype=False)
    assert flw.idxs_seq.size == valid.sum()  # no loops: every valid cell is in the network order
    assert np.array_equal(flw.upstream_area(unit="cell")[valid].astype(np.int64), cond.accumulation[valid])
    theirs = flw.hand(cond.drain, dem.astype(np.float64))
    # pyflwdir measures from whatever outlet a path ends at; ours only from drainage.
    ours = np.isfinite(cond.hand)
    assert np.abs(theirs[ours] - cond.hand[ours]).max() < 1e-4
    assert ours.sum() > 0.7 * valid.sum()


def _write_tif(path, data, transform, crs, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", dtype="float32", width=data.shape[1], height=data.shape[0],
                       count=1, crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(data.astype(np.float32), 1)
    return path


def test_read_dem_handles_declared_nodata_and_degrees(tmp_path):
    dem, _, transform, _ = v_valley()
    holey = dem.copy()
    holey[5:8, 5:8] = -32768.0
    d = flood_dem.read_dem(_write_tif(tmp_path / "utm.tif", holey, transform, "EPSG:32649", nodata=-32768.0))
    assert np.isnan(d.data[5:8, 5:8]).all() and np.isfinite(d.data).sum() == dem.size - 9
    assert d.crs.to_epsg() == 32649 and d.transform.a == CELL
    # The same valley in degrees comes back on a metric grid of about the same cell size.
    geo = Affine(0.0001, 0, 111.9, 0, -0.0001, 32.9)
    g = flood_dem.read_dem(_write_tif(tmp_path / "deg.tif", dem, geo, "EPSG:4326"))
    assert g.crs.is_projected
    assert 8.0 < g.transform.a < 12.0 and abs(g.transform.a) == abs(g.transform.e)
    assert float(dem.min()) - 1e-3 <= np.nanmin(g.data) < float(dem.min()) + 0.37
    assert np.nanmax(g.data) <= float(dem.max()) + 1e-3


@pytest.mark.parametrize(
    ("content", "crs", "expected"),
    [
        (b"not a raster at all", None, "not_a_raster"),
        (None, None, "no_crs"),
        (None, "EPSG:99999999", "invalid_crs"),
        ("all_nodata", None, "empty_dem"),
    ],
)
def test_unusable_dem_files_are_input_errors(tmp_path, content, crs, expected):
    path = tmp_path / "dem.tif"
    dem, _, transform, _ = v_valley()
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "all_nodata":
        _write_tif(path, np.full(dem.shape, -9999.0), transform, "EPSG:32649", nodata=-9999.0)
    else:
        _write_tif(path, dem, transform, None)
    with pytest.raises(InputError) as info:
        flood_dem.read_dem(path, crs=crs)
    assert info.value.problems[0].type == expected


def test_rivers_that_miss_the_dem_are_refused(tmp_path):
    dem, _, transform, _ = v_valley()
    d = flood_dem.read_dem(_write_tif(tmp_path / "v.tif", dem, transform, "EPSG:32649"))
    far = MultiLineString([[(100.0, 10.0), (100.1, 10.1)]])
    with pytest.raises(InputError) as info:
        flood_dem._condition(d, far, 10.0, None)
    assert info.value.problems[0].loc == ("rivers",)
