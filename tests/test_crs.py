"""Tests for gis.crs: GCJ-02/BD-09 shifts, CRS parsing, coordinate checks and metric CRS choice."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import Point, box

from gis import crs as C
from gis.errors import InputError

GEOD = Geod(ellps="WGS84")
ZHENPING = (112.2, 33.0)


def metres(lon1, lat1, lon2, lat2):
    _, _, d = GEOD.inv(lon1, lat1, lon2, lat2)
    return np.asarray(d)


@pytest.fixture(scope="module")
def china_grid():
    lon, lat = np.meshgrid(np.linspace(74.0, 134.0, 31), np.linspace(18.0, 53.0, 36))
    return lon.ravel(), lat.ravel()


# --- published reference values -------------------------------------------------------


# Widely published outputs of the standard formulas for the point (116.404, 39.915).
def test_wgs84_to_gcj02_matches_published_value():
    lon, lat = C.wgs84_to_gcj02(116.404, 39.915)
    assert lon == pytest.approx(116.41024449916938, abs=1e-9)
    assert lat == pytest.approx(39.91640428150164, abs=1e-9)


def test_gcj02_to_bd09_matches_published_value():
    lon, lat = C.gcj02_to_bd09(116.404, 39.915)
    assert lon == pytest.approx(116.41036949371029, abs=1e-9)
    assert lat == pytest.approx(39.92133699351021, abs=1e-9)


def test_bd09_to_gcj02_close_to_published_closed_form():
    # The published value comes from the one-step closed form; ours is refined, so they
    # agree to a few centimetres, not to the last digit.
    lon, lat = C.bd09_to_gcj02(116.404, 39.915)
    assert metres(lon, lat, 116.39762729119315, 39.90865673957631) < 0.1


# --- magnitudes and round trips --------------------------------------------------------


def test_gcj02_offset_near_zhenping_is_hundreds_of_metres():
    glon, glat = C.wgs84_to_gcj02(*ZHENPING)
    shift = float(metres(*ZHENPING, glon, glat))
    assert 100 < shift < 700
    # Shifted east and slightly south here, the usual pattern in central China.
    assert glon > ZHENPING[0]


def test_bd09_is_further_shifted_than_gcj02():
    glon, glat = C.wgs84_to_gcj02(*ZHENPING)
    blon, blat = C.wgs84_to_bd09(*ZHENPING)
    assert 300 < float(metres(glon, glat, blon, blat)) < 1500


def test_gcj02_round_trip_within_a_centimetre(china_grid):
    lon, lat = china_grid
    glon, glat = C.wgs84_to_gcj02(lon, lat)
    assert metres(lon, lat, glon, glat).min() > 1  # the grid really is shifted
    wlon, wlat = C.gcj02_to_wgs84(glon, glat)
    assert metres(lon, lat, wlon, wlat).max() < 0.01


def test_bd09_round_trip_within_a_centimetre(china_grid):
    lon, lat = china_grid
    blon, blat = C.wgs84_to_bd09(lon, lat)
    wlon, wlat = C.bd09_to_wgs84(blon, blat)
    assert metres(lon, lat, wlon, wlat).max() < 0.01
    glon, glat = C.gcj02_to_bd09(lon, lat)
    back = C.bd09_to_gcj02(glon, glat)
    assert metres(lon, lat, *back).max() < 0.01


def test_outside_china_gcj02_is_wgs84():
    lon = np.array([2.35, -74.0, 151.2, 139.7])
    lat = np.array([48.85, 40.7, -33.9, 35.7])
    glon, glat = C.wgs84_to_gcj02(lon, lat)
    np.testing.assert_array_equal(glon, lon)
    np.testing.assert_array_equal(glat, lat)
    wlon, wlat = C.gcj02_to_wgs84(lon, lat)
    np.testing.assert_array_equal(wlon, lon)


def test_scalar_in_scalar_out_and_shapes_kept():
    out = C.wgs84_to_gcj02(112.2, 33.0)
    assert isinstance(out[0], float) and isinstance(out[1], float)
    lon = np.full((2, 3), 112.2)
    lat = np.full((2, 3), 33.0)
    glon, glat = C.gcj02_to_wgs84(lon, lat)
    assert glon.shape == (2, 3) and glat.shape == (2, 3)


# --- parse_crs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, kind",
    [
        (None, "wgs84"),
        ("", "wgs84"),
        ("WGS84", "wgs84"),
        ("cgcs2000", "wgs84"),
        ("GCJ02", "gcj02"),
        ("gcj-02", "gcj02"),
        ("bd09", "bd09"),
        ("BD09", "bd09"),
        ("EPSG:4326", "wgs84"),
        ("epsg:4490", "wgs84"),
        (4490, "wgs84"),
        ("EPSG:4546", "pyproj"),
        ("epsg:32649", "pyproj"),
        (32649, "pyproj"),
        ("4546", "pyproj"),
    ],
)
def test_parse_crs_accepts(value, kind):
    assert C.parse_crs(value).kind == kind


def test_parse_crs_projected_details():
    gk = C.parse_crs("EPSG:4546")
    assert gk.epsg == 4546 and not gk.is_lonlat
    assert C.parse_crs("gcj02").is_lonlat


@pytest.mark.parametrize("value", ["mercator", "EPSG:99999", "EPSG:", 5773, "epsg:abc", True, 3.5])
def test_parse_crs_refuses_with_field(value):
    with pytest.raises(InputError) as ei:
        C.parse_crs(value, field="source_crs")
    (problem,) = ei.value.problems
    assert problem.loc == ("source_crs",)
    assert problem.type == "invalid_crs"


def test_parse_crs_field_may_be_a_loc_tuple():
    with pytest.raises(InputError) as ei:
        C.parse_crs("nonsense", field=("query", "crs"))
    assert ei.value.problems[0].loc == ("query", "crs")


# --- to_wgs84 / transform_geometry -------------------------------------------------------


def test_to_wgs84_from_gauss_kruger_and_utm():
    lon, lat = np.array([112.17, 112.19]), np.array([32.97, 32.99])
    for code in (4546, 32649):
        tr = C.metric_transformer(f"EPSG:{code}")
        x, y = tr.transform(lon, lat)
        assert np.all(np.abs(x) > 1000)  # really metres
        wlon, wlat = C.to_wgs84(x, y, C.parse_crs(code))
        assert metres(lon, lat, wlon, wlat).max() < 0.001


def test_to_wgs84_from_gcj02_accepts_lists():
    glon, glat = C.wgs84_to_gcj02(*ZHENPING)
    lon, lat = C.to_wgs84([glon], [glat], C.parse_crs("gcj02"))
    assert metres(ZHENPING[0], ZHENPING[1], lon[0], lat[0]) < 0.01


def test_transform_geometry_gcj02_geoseries():
    import geopandas as gpd

    original = box(112.16, 32.96, 112.18, 32.98)
    shifted = shapely.transform(original, lambda x, y: C.wgs84_to_gcj02(x, y), interleaved=False)
    s = gpd.GeoSeries([shifted], index=[7])
    back = C.transform_geometry(s, C.parse_crs("gcj02"))
    assert (
        isinstance(back, gpd.GeoSeries) and back.crs.to_epsg() == 4326 and list(back.index) == [7]
    )
    a = shapely.get_coordinates(original)
    b = shapely.get_coordinates(back.iloc[0])
    assert metres(a[:, 0], a[:, 1], b[:, 0], b[:, 1]).max() < 0.01


def test_transform_geometry_single_and_array():
    p = Point(112.2, 33.0)
    assert C.transform_geometry(p, C.WGS84) is p
    out = C.transform_geometry([Point(*C.wgs84_to_bd09(112.2, 33.0))], C.parse_crs("bd09"))
    assert isinstance(out, np.ndarray)
    assert metres(112.2, 33.0, out[0].x, out[0].y) < 0.01


# --- check_lonlat ------------------------------------------------------------------------


def test_check_lonlat_accepts_good_point():
    assert C.check_lonlat(112.2, 33.0) is None
    assert C.check_lonlat([112.2, 112.3], [33.0, 33.1]) is None


def test_check_lonlat_swapped():
    with pytest.raises(InputError) as ei:
        C.check_lonlat(33.0, 112.2)
    (p,) = ei.value.problems
    assert p.loc == ("query", "lon")
    assert p.msg == "lon and lat look swapped: got lon=33.0, lat=112.2; give longitude first"


@pytest.mark.parametrize(
    "lon, lat, loc, word",
    [
        (math.nan, 33.0, ("query", "lon"), "finite"),
        (112.2, math.inf, ("query", "lat"), "finite"),
        (200.0, 33.0, ("query", "lon"), "between -180 and 180"),
        (112.2, -95.0, ("query", "lat"), "between -90 and 90"),
    ],
)
def test_check_lonlat_errors_name_the_field(lon, lat, loc, word):
    with pytest.raises(InputError) as ei:
        C.check_lonlat(lon, lat)
    (p,) = ei.value.problems
    assert p.loc == loc
    assert word in p.msg


def test_check_lonlat_reports_both_fields_and_custom_prefix():
    with pytest.raises(InputError) as ei:
        C.check_lonlat(500.0, math.nan, field_prefix=("body", "points", 3))
    locs = {p.loc for p in ei.value.problems}
    assert ("body", "points", 3, "lat") in locs


def test_check_lonlat_arrays_report_index():
    with pytest.raises(InputError) as ei:
        C.check_lonlat([112.2, 33.0], [33.0, 112.2])
    (p,) = ei.value.problems
    assert p.loc == ("query", 1, "lon") and p.type == "swapped_lonlat"


# --- metric CRS --------------------------------------------------------------------------


def test_metric_crs_for_region_and_elsewhere():
    assert C.metric_crs_for(112.17, 32.97) == "EPSG:4546"
    assert C.metric_crs_for(116.4, 39.9) == "EPSG:32650"
    assert C.metric_crs_for(2.35, 48.85) == "EPSG:32631"
    assert C.metric_crs_for(151.2, -33.9) == "EPSG:32756"
