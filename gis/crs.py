"""Coordinate systems: parse what callers name, shift GCJ-02/BD-09 to WGS84, pick a metric CRS."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pyproj
import shapely

from gis.errors import InputError, Problem

WGS84_EPSG = 4326
CGCS2000_EPSG = 4490
# CGCS2000 / 3-degree Gauss-Kruger CM 111E: the national metric grid zone covering Zhenping.
LOCAL_METRIC_CRS = "EPSG:4546"
_LOCAL_ZONE_LON = (109.5, 112.5)
_LOCAL_ZONE_LAT = (18.11, 45.11)

# Krasovsky ellipsoid constants of the GCJ-02 obfuscation, as published.
_GCJ_A = 6378245.0
_GCJ_EE = 0.00669342162296594323
_BD_X_PI = math.pi * 3000.0 / 180.0

# GCJ-02 is only applied inside this rough mainland box; outside it the apps serve WGS84.
_CHINA_LON = (72.004, 137.8347)
_CHINA_LAT = (0.8293, 55.8271)

# Fixed-point inverses stop once a step is below ~1 micrometre.
_INVERSE_TOL_DEG = 1e-11
_INVERSE_MAX_ITER = 30

# Coordinates: a number or an array of numbers (x = longitude/easting first).
Coords = npt.ArrayLike
# Converted coordinates come back as they came: floats for numbers, float arrays for arrays.
Pair = tuple[Any, Any]
Arrays = tuple[np.ndarray, np.ndarray]
# Where an error points: a field name, or a full loc tuple such as ("query", "crs").
Field = str | tuple[Any, ...]


@dataclass(frozen=True)
class CoordSystem:
    """A coordinate system the service accepts: WGS84, a Chinese web-map system, or a pyproj CRS.

    kind is "wgs84", "gcj02", "bd09" or "pyproj"; only "pyproj" carries a `crs`."""

    kind: str
    crs: pyproj.CRS | None = None
    label: str = "wgs84"

    @property
    def epsg(self) -> int | None:
        if self.kind == "wgs84":
            return WGS84_EPSG
        if self.kind == "pyproj" and self.crs is not None:
            return self.crs.to_epsg()
        return None

    @property
    def is_lonlat(self) -> bool:
        """True when coordinates are degrees of longitude/latitude."""
        if self.kind == "pyproj" and self.crs is not None:
            return bool(self.crs.is_geographic)
        return True

    @property
    def is_wgs84(self) -> bool:
        return self.kind == "wgs84"

    def __str__(self) -> str:
        return self.label


WGS84 = CoordSystem("wgs84", None, "wgs84")
GCJ02 = CoordSystem("gcj02", None, "gcj02")
BD09 = CoordSystem("bd09", None, "bd09")

_NAMED = {
    "wgs84": WGS84,
    "wgs-84": WGS84,
    "wgs 84": WGS84,
    # CGCS2000 differs from WGS84 by centimetres, far below grid-boundary accuracy.
    "cgcs2000": CoordSystem("wgs84", None, "cgcs2000"),
    "cgcs-2000": CoordSystem("wgs84", None, "cgcs2000"),
    "gcj02": GCJ02,
    "gcj-02": GCJ02,
    "bd09": BD09,
    "bd-09": BD09,
}
_EPSG_RE = re.compile(r"^\s*(?:epsg\s*:\s*)?(\d{4,6})\s*$", re.IGNORECASE)


def _crs_problem(field: Field, msg: str, value: object) -> InputError:
    loc = tuple(field) if isinstance(field, (tuple, list)) else (field,)
    return InputError(
        Problem(loc, msg, "invalid_crs", {"value": str(value)}), "Invalid coordinate system"
    )


def parse_crs(value: str | int | CoordSystem | None, field: Field = "crs") -> CoordSystem:
    """The coordinate system named by `value`; wgs84 when it is None or empty.

    `field` is where errors point: a name, or a full loc tuple such as ("query", "crs")."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return WGS84
    if isinstance(value, CoordSystem):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _crs_problem(
            field, f"give a coordinate system name or EPSG code, got {value!r}", value
        )
    if isinstance(value, str):
        named = _NAMED.get(value.strip().lower())
        if named is not None:
            return named
        m = _EPSG_RE.match(value)
        if not m:
            raise _crs_problem(
                field,
                f"unknown coordinate system {value!r}: "
                "use wgs84, cgcs2000, gcj02, bd09 or EPSG:<code>",
                value,
            )
        code = int(m.group(1))
    else:
        code = value
    return from_epsg(code, field)


def from_epsg(code: int, field: Field = "crs") -> CoordSystem:
    """The coordinate system for an EPSG code; unknown or non-horizontal codes are refused."""
    if code in (WGS84_EPSG, CGCS2000_EPSG):
        return CoordSystem("wgs84", None, "wgs84" if code == WGS84_EPSG else "cgcs2000")
    try:
        crs = _epsg_crs(code)
    except pyproj.exceptions.CRSError:
        raise _crs_problem(
            field, f"EPSG:{code} is not a known coordinate system", f"EPSG:{code}"
        ) from None
    if not (crs.is_geographic or crs.is_projected):
        raise _crs_problem(
            field, f"EPSG:{code} is not a horizontal coordinate system", f"EPSG:{code}"
        )
    return CoordSystem("pyproj", crs, f"EPSG:{code}")


def from_pyproj(crs: pyproj.CRS) -> CoordSystem:
    """Wrap a CRS read from a file, folding WGS84 and CGCS2000 into the no-op system."""
    code = crs.to_epsg()
    if code in (WGS84_EPSG, CGCS2000_EPSG):
        return from_epsg(code)
    label = f"EPSG:{code}" if code else (crs.name or "custom CRS")
    return CoordSystem("pyproj", crs, label)


@lru_cache(maxsize=256)
def _epsg_crs(code: int) -> pyproj.CRS:
    return pyproj.CRS.from_epsg(code)


@lru_cache(maxsize=64)
def _to_wgs84_transformer(wkt: str) -> pyproj.Transformer:
    # Keyed by WKT because CRSs read from .prj files often have no EPSG code; pyproj
    # transformers are thread-safe since 3.1, so one cached instance is shared.
    return pyproj.Transformer.from_crs(pyproj.CRS.from_wkt(wkt), WGS84_EPSG, always_xy=True)


@lru_cache(maxsize=64)
def metric_transformer(metric_crs: str, inverse: bool = False) -> pyproj.Transformer:
    """Cached EPSG:4326 -> `metric_crs` transformer (or the reverse), x = lon first."""
    if inverse:
        return pyproj.Transformer.from_crs(metric_crs, WGS84_EPSG, always_xy=True)
    return pyproj.Transformer.from_crs(WGS84_EPSG, metric_crs, always_xy=True)


# --- GCJ-02 / BD-09 -------------------------------------------------------------------


def _as_float_arrays(lon: Coords, lat: Coords) -> Arrays:
    return np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)


def _out(lon_in: Coords, x: np.ndarray, y: np.ndarray) -> Pair:
    if np.ndim(lon_in) == 0:
        return float(x), float(y)
    return x, y


def in_china(lon: Coords, lat: Coords) -> np.ndarray:
    """Whether points fall in the rough mainland box where GCJ-02 shifting applies."""
    lon, lat = _as_float_arrays(lon, lat)
    return (
        (lon > _CHINA_LON[0])
        & (lon < _CHINA_LON[1])
        & (lat > _CHINA_LAT[0])
        & (lat < _CHINA_LAT[1])
    )


def _gcj_offset(lon: np.ndarray, lat: np.ndarray) -> Arrays:
    """The GCJ-02 shift (degrees) at WGS84 points; zero outside China."""
    x = lon - 105.0
    y = lat - 35.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    six_two = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x + six_two
    dlat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x + six_two
    dlon += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0

    rad_lat = lat / 180.0 * np.pi
    magic = 1.0 - _GCJ_EE * np.sin(rad_lat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = dlat * 180.0 / ((_GCJ_A * (1.0 - _GCJ_EE)) / (magic * sqrt_magic) * np.pi)
    dlon = dlon * 180.0 / (_GCJ_A / sqrt_magic * np.cos(rad_lat) * np.pi)
    inside = in_china(lon, lat)
    return np.where(inside, dlon, 0.0), np.where(inside, dlat, 0.0)


def wgs84_to_gcj02(lon: Coords, lat: Coords) -> Pair:
    """WGS84 -> GCJ-02 (Amap, Tencent); identity outside mainland China."""
    x, y = _as_float_arrays(lon, lat)
    dlon, dlat = _gcj_offset(x, y)
    return _out(lon, x + dlon, y + dlat)


def _fixed_point_inverse(
    forward: Callable[[np.ndarray, np.ndarray], Arrays], gx: np.ndarray, gy: np.ndarray,
    start: Arrays | None = None,
) -> Arrays:
    # The shifts vary slowly with position, so w <- w - (forward(w) - g) contracts fast
    # (a handful of iterations reach micrometres), from `start` (default: g itself). Each point
    # stops once it has converged, so its answer does not depend on the other points converted with
    # it (one point from the API and the same point in a file of a million give the same bits:
    # tests/test_intake_paths_property.py).
    gx, gy = np.ravel(gx), np.ravel(gy)
    wx, wy = (gx.copy(), gy.copy()) if start is None else (np.ravel(start[0]).copy(), np.ravel(start[1]).copy())
    active = np.arange(len(wx))
    for _ in range(_INVERSE_MAX_ITER):
        fx, fy = forward(wx[active], wy[active])
        ex, ey = fx - gx[active], fy - gy[active]
        wx[active] -= ex
        wy[active] -= ey
        active = active[~_converged_each(ex, ey)]
        if not len(active):
            break
    return wx, wy


def _converged_each(ex: np.ndarray, ey: np.ndarray) -> np.ndarray:
    done: np.ndarray = (np.abs(ex) <= _INVERSE_TOL_DEG) & (np.abs(ey) <= _INVERSE_TOL_DEG)
    return done


def gcj02_to_wgs84(lon: Coords, lat: Coords) -> Pair:
    """GCJ-02 -> WGS84 by iterating the forward shift (well under 1 cm)."""
    gx, gy = _as_float_arrays(lon, lat)

    def forward(x: np.ndarray, y: np.ndarray) -> Arrays:
        dlon, dlat = _gcj_offset(x, y)
        return x + dlon, y + dlat

    wx, wy = _fixed_point_inverse(forward, np.atleast_1d(gx), np.atleast_1d(gy))
    return _out(lon, wx.reshape(gx.shape), wy.reshape(gy.shape))


def _gcj_to_bd(x: np.ndarray, y: np.ndarray) -> Arrays:
    z = np.sqrt(x * x + y * y) + 0.00002 * np.sin(y * _BD_X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _BD_X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def gcj02_to_bd09(lon: Coords, lat: Coords) -> Pair:
    """GCJ-02 -> BD-09 (Baidu)."""
    x, y = _as_float_arrays(lon, lat)
    bx, by = _gcj_to_bd(x, y)
    return _out(lon, bx, by)


def bd09_to_gcj02(lon: Coords, lat: Coords) -> Pair:
    """BD-09 -> GCJ-02, refined by iteration because the usual closed form is only approximate."""
    bx, by = _as_float_arrays(lon, lat)
    bx1, by1 = np.ravel(bx), np.ravel(by)
    x = bx1 - 0.0065
    y = by1 - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _BD_X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _BD_X_PI)
    # Start from the closed form and polish against the exact forward formula.
    gx, gy = _fixed_point_inverse(_gcj_to_bd, bx1, by1, start=(z * np.cos(theta), z * np.sin(theta)))
    return _out(lon, gx.reshape(bx.shape), gy.reshape(by.shape))


def wgs84_to_bd09(lon: Coords, lat: Coords) -> Pair:
    """WGS84 -> BD-09."""
    gx, gy = wgs84_to_gcj02(*_as_float_arrays(lon, lat))
    bx, by = gcj02_to_bd09(gx, gy)
    return _out(lon, bx, by)


def bd09_to_wgs84(lon: Coords, lat: Coords) -> Pair:
    """BD-09 -> WGS84."""
    gx, gy = bd09_to_gcj02(*_as_float_arrays(lon, lat))
    wx, wy = gcj02_to_wgs84(gx, gy)
    return _out(lon, wx, wy)


# --- generic conversion ---------------------------------------------------------------


def _pyproj_crs(system: CoordSystem) -> pyproj.CRS:
    if system.crs is None:
        raise ValueError(f"{system.label} is not a pyproj coordinate system")
    return system.crs


def to_wgs84(lon: Coords, lat: Coords, crs: CoordSystem) -> Arrays:
    """Coordinates in `crs` (x = easting/longitude first) as WGS84 lon/lat arrays."""
    x, y = _as_float_arrays(lon, lat)
    if crs.kind == "wgs84":
        return x, y
    if crs.kind == "gcj02":
        return gcj02_to_wgs84(x, y)
    if crs.kind == "bd09":
        return bd09_to_wgs84(x, y)
    tr = _to_wgs84_transformer(_pyproj_crs(crs).to_wkt())
    ox, oy = tr.transform(x, y)
    return np.asarray(ox, dtype=float), np.asarray(oy, dtype=float)


def transform_geometry(geoms: Any, crs: CoordSystem) -> Any:
    """Geometries in `crs` moved to EPSG:4326.

    A GeoSeries comes back as a GeoSeries (crs set to EPSG:4326), a single geometry as a
    geometry, anything else as a numpy array of shapely geometries."""
    import geopandas as gpd

    def func(x: np.ndarray, y: np.ndarray) -> Arrays:
        return to_wgs84(x, y, crs)

    if isinstance(geoms, gpd.GeoSeries):
        values = np.asarray(geoms.array, dtype=object)
        if crs.kind != "wgs84":
            values = shapely.transform(values, func, interleaved=False)
        return gpd.GeoSeries(values, index=geoms.index, crs=f"EPSG:{WGS84_EPSG}", name=geoms.name)
    if isinstance(geoms, shapely.Geometry):
        return geoms if crs.kind == "wgs84" else shapely.transform(geoms, func, interleaved=False)
    values = np.asarray(geoms, dtype=object)
    return values if crs.kind == "wgs84" else shapely.transform(values, func, interleaved=False)


# --- checks and metric CRS ------------------------------------------------------------


def _looks_swapped(lon: float, lat: float) -> bool:
    # Chinese longitudes are 73-136 and latitudes 3-54: a "lon" in the latitude band
    # with a "lat" in the longitude band is almost surely the (lat, lon) order mistake.
    return 3.0 <= lon <= 54.0 and 73.0 <= lat <= 136.0


def _fmt(v: float) -> str:
    return repr(float(v)) if math.isfinite(v) else str(v)


def _point_problems(lon: float, lat: float, prefix: tuple[Any, ...]) -> list[Problem]:
    problems: list[Problem] = []
    bad_number = False
    for name, v in (("lon", lon), ("lat", lat)):
        if not math.isfinite(v):
            problems.append(
                Problem(prefix + (name,), f"{name} must be a finite number, got {v}", "not_finite")
            )
            bad_number = True
    if bad_number:
        return problems
    if _looks_swapped(lon, lat):
        return [
            Problem(
                prefix + ("lon",),
                f"lon and lat look swapped: got lon={_fmt(lon)}, lat={_fmt(lat)}; "
                "give longitude first",
                "swapped_lonlat",
                {"lon": lon, "lat": lat},
            )
        ]
    if not -180.0 <= lon <= 180.0:
        problems.append(
            Problem(
                prefix + ("lon",),
                f"lon must be between -180 and 180, got {_fmt(lon)}",
                "out_of_range",
            )
        )
    if not -90.0 <= lat <= 90.0:
        problems.append(
            Problem(
                prefix + ("lat",),
                f"lat must be between -90 and 90, got {_fmt(lat)}",
                "out_of_range",
            )
        )
    return problems


def check_lonlat(lon: object, lat: object, field_prefix: tuple[Any, ...] = ("query",)) -> None:
    """Raise InputError when lon/lat are not finite, out of range, or look swapped.

    Scalars report at field_prefix + ("lon",); arrays at field_prefix + (index, "lon")."""
    prefix = tuple(field_prefix)
    try:
        x = np.asarray(lon, dtype=float)
        y = np.asarray(lat, dtype=float)
    except (TypeError, ValueError):
        raise InputError(Problem(prefix, "lon and lat must be numbers", "not_a_number")) from None
    if x.ndim == 0 and y.ndim == 0:
        problems = _point_problems(float(x), float(y), prefix)
    else:
        x, y = np.broadcast_arrays(np.atleast_1d(x), np.atleast_1d(y))
        problems = []
        for i, (a, b) in enumerate(zip(x.ravel(), y.ravel(), strict=True)):
            problems.extend(_point_problems(float(a), float(b), prefix + (i,)))
            if len(problems) >= 50:
                break
    if problems:
        raise InputError(problems, "Invalid coordinates")


# A projected CRS is used a little beyond its area of use (a Gauss-Kruger zone's neighbours overlap
# it): inputs within this share of the area's extent outside its edges are still converted.
_AREA_OF_USE_MARGIN = 0.1


@lru_cache(maxsize=64)
def _projected_bounds(wkt: str) -> tuple[float, float, float, float] | None:
    """The area of use of a projected CRS in its units, widened by the margin (None: unknown)."""
    crs = pyproj.CRS.from_wkt(wkt)
    area = crs.area_of_use
    if area is None:
        return None
    tr = pyproj.Transformer.from_crs(WGS84_EPSG, crs, always_xy=True)
    x0, y0, x1, y1 = tr.transform_bounds(
        area.west, area.south, area.east, area.north, densify_pts=41
    )
    if not all(map(math.isfinite, (x0, y0, x1, y1))):
        return None
    mx, my = (x1 - x0) * _AREA_OF_USE_MARGIN, (y1 - y0) * _AREA_OF_USE_MARGIN
    return x0 - mx, y0 - my, x1 + mx, y1 + my


@dataclass
class ConvertedPoints:
    """Points given in some coordinate system, converted to WGS84 and checked.

    `problems` holds (index, field, message, type) for each refused point, field being "lon" (x) or
    "lat" (y); a refused point is NaN in lon/lat and True in `refused`."""

    lon: np.ndarray
    lat: np.ndarray
    refused: np.ndarray
    problems: list[tuple[int, str, str, str]]


def convert_points(x: object, y: object, system: CoordSystem) -> ConvertedPoints:
    """The one rule for point input in any supported system (API, CLI and batch import alike):
    finite numbers; for degrees, the lon/lat ranges (and the swapped-axes mistake) on the input;
    for a projected CRS, its area of use on the input (it has no degree range); then the
    conversion, and the WGS84 result checked against the lon/lat ranges."""
    if (system.kind == "wgs84" and type(x) is float and type(y) is float and -180.0 <= x <= 180.0
            and -90.0 <= y <= 90.0 and not (3.0 <= x <= 54.0 and y >= 73.0)):
        # One WGS84 point that passes every check below (a report's usual case): the same answer
        # without the array work (~75 µs a report).
        return ConvertedPoints(np.array([x]), np.array([y]), np.zeros(1, dtype=bool), [])
    x = np.atleast_1d(np.asarray(x, dtype=float))
    y = np.atleast_1d(np.asarray(y, dtype=float))
    n = len(x)
    refused = np.zeros(n, dtype=bool)
    problems: list[tuple[int, str, str, str]] = []

    def refuse(mask: np.ndarray, field: str, message: Callable[[int], str], kind: str) -> None:
        for i in np.flatnonzero(mask & ~refused):
            problems.append((int(i), field, message(int(i)), kind))
        refused[mask] = True

    with np.errstate(invalid="ignore"):
        refuse(
            ~np.isfinite(x),
            "lon",
            lambda i: f"lon must be a finite number, got {x[i]}",
            "not_finite",
        )
        refuse(
            ~np.isfinite(y),
            "lat",
            lambda i: f"lat must be a finite number, got {y[i]}",
            "not_finite",
        )
        if system.is_lonlat:
            swapped = (x >= 3.0) & (x <= 54.0) & (y >= 73.0) & (y <= 136.0)
            refuse(
                swapped,
                "lon",
                lambda i: (
                    f"lon and lat look swapped: got lon={_fmt(x[i])}, "
                    f"lat={_fmt(y[i])}; give longitude first"
                ),
                "swapped_lonlat",
            )
            refuse(
                ~((x >= -180.0) & (x <= 180.0)),
                "lon",
                lambda i: f"lon must be between -180 and 180, got {_fmt(x[i])}",
                "out_of_range",
            )
            refuse(
                ~((y >= -90.0) & (y <= 90.0)),
                "lat",
                lambda i: f"lat must be between -90 and 90, got {_fmt(y[i])}",
                "out_of_range",
            )
        else:
            box = _projected_bounds(_pyproj_crs(system).to_wkt())
            if box is not None:
                x0, y0, x1, y1 = box
                where = f"the area of use of {system.label}"
                refuse(
                    ~((x >= x0) & (x <= x1)),
                    "lon",
                    lambda i: (
                        f"x (lon) = {_fmt(x[i])} is outside "
                        f"{where} ({x0:.0f} to {x1:.0f}); is this the right crs?"
                    ),
                    "outside_crs_area",
                )
                refuse(
                    ~((y >= y0) & (y <= y1)),
                    "lat",
                    lambda i: (
                        f"y (lat) = {_fmt(y[i])} is outside "
                        f"{where} ({y0:.0f} to {y1:.0f}); is this the right crs?"
                    ),
                    "outside_crs_area",
                )
    lon = np.full(n, np.nan)
    lat = np.full(n, np.nan)
    ok = np.flatnonzero(~refused)
    if len(ok):
        cx, cy = to_wgs84(x[ok], y[ok], system)
        lon[ok], lat[ok] = cx, cy
    with np.errstate(invalid="ignore"):
        bad = ~refused & ~(
            np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180.0) & (np.abs(lat) <= 90.0)
        )
    refuse(
        bad,
        "lon",
        lambda i: f"({_fmt(x[i])}, {_fmt(y[i])}) in {system.label} is no point on the earth",
        "out_of_range",
    )
    lon[refused] = np.nan
    lat[refused] = np.nan
    return ConvertedPoints(lon, lat, refused, sorted(problems))


def points_to_wgs84(
    x: object, y: object, system: CoordSystem, field_prefix: tuple[Any, ...] = ("query",)
) -> Arrays:
    """`convert_points` for request input: WGS84 arrays, or InputError naming each refused point's
    field (prefix + (field,) for one point, prefix + (index, field) for a list)."""
    # Anything may come in (None, text): it is refused below, so only its shape is looked at here.
    single = np.ndim(cast(Coords, x)) == 0 and np.ndim(cast(Coords, y)) == 0
    try:
        out = convert_points(x, y, system)
    except (TypeError, ValueError):
        raise InputError(
            Problem(tuple(field_prefix), "lon and lat must be numbers", "not_a_number")
        ) from None
    if out.problems:
        prefix = tuple(field_prefix)
        raise InputError(
            [
                Problem(prefix + ((f,) if single else (i, f)), msg, kind)
                for i, f, msg, kind in out.problems[:50]
            ],
            "Invalid coordinates",
        )
    return out.lon, out.lat


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone containing the point."""
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


def metric_crs_for(lon: float, lat: float) -> str:
    """A metric CRS around (lon, lat): the local CGCS2000 GK zone, else the point's UTM zone."""
    lon = float(lon)
    lat = float(lat)
    if (
        _LOCAL_ZONE_LON[0] <= lon <= _LOCAL_ZONE_LON[1]
        and _LOCAL_ZONE_LAT[0] <= lat <= _LOCAL_ZONE_LAT[1]
    ):
        return LOCAL_METRIC_CRS
    return f"EPSG:{utm_epsg(lon, lat)}"
