"""Hillshade of a DEM as a transparent PNG placed for a Leaflet ImageOverlay (offline base map)."""

from __future__ import annotations

import io
import math

import numpy as np
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from rasterio.warp import Resampling, calculate_default_transform, reproject, transform_bounds
from scipy.ndimage import distance_transform_edt

# Leaflet shows an ImageOverlay stretched linearly between its corner lat/lons on a Web
# Mercator screen, so the image must be in EPSG:3857 pixels for it to line up.
DISPLAY_CRS = CRS.from_epsg(3857)
GEOGRAPHIC_CRS = CRS.from_epsg(4326)

Bounds = list[list[float]]  # [[south, west], [north, east]], the order folium expects

_METRES_PER_DEGREE_LAT = 110_574.0
_METRES_PER_DEGREE_LON_AT_EQUATOR = 111_320.0


def _pixel_size_m(transform: Affine, crs: CRS, shape: tuple[int, int]) -> tuple[float, float]:
    """Signed ground size of one pixel (x along columns, y along rows) in metres."""
    dx, dy = transform.a, transform.e
    if crs.is_geographic:
        lat = transform.f + transform.e * shape[0] / 2
        return (
            dx * _METRES_PER_DEGREE_LON_AT_EQUATOR * math.cos(math.radians(lat)),
            dy * _METRES_PER_DEGREE_LAT,
        )
    factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
    return dx * factor, dy * factor


def _fill_nodata(dem: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Copy of `dem` with each hole cell set to its nearest valid cell.

    A constant fill would put artificial cliffs, and so dark or bright rims, around holes.
    """
    if valid.all():
        return dem
    _, (rows, cols) = distance_transform_edt(~valid, return_indices=True)
    filled: np.ndarray = dem[rows, cols]
    return filled


def _block_mean(values: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each factor x factor block, ignoring NaN; all-NaN blocks stay NaN."""
    rows, cols = (values.shape[0] // factor) * factor, (values.shape[1] // factor) * factor
    blocks = values[:rows, :cols].reshape(rows // factor, factor, cols // factor, factor)
    counts = np.isfinite(blocks).sum(axis=(1, 3))
    sums = np.nansum(blocks, axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def shade(
    dem: np.ndarray,
    pixel_size: tuple[float, float],
    *,
    azimuth: float = 315.0,
    altitude: float = 45.0,
    z_factor: float = 1.0,
) -> np.ndarray:
    """Illumination 0..1 of each cell of a north-up DEM lit from `azimuth`/`altitude` degrees.

    `pixel_size` is the signed (x, y) step of one column and one row in metres; y is negative
    for the usual north-up raster, which makes the row gradient a northward slope.
    """
    dz_drow, dz_dcol = np.gradient(dem.astype(np.float64) * z_factor, pixel_size[1], pixel_size[0])
    dz_dnorth, dz_deast = dz_drow, dz_dcol
    # Surface normal (-dz/dx, -dz/dy, 1) dotted with the unit vector towards the light.
    az, alt = math.radians(azimuth), math.radians(altitude)
    light_e = math.sin(az) * math.cos(alt)
    light_n = math.cos(az) * math.cos(alt)
    light_up = math.sin(alt)
    lit = (-dz_deast * light_e - dz_dnorth * light_n + light_up) / np.sqrt(
        1.0 + dz_deast**2 + dz_dnorth**2
    )
    shaded: np.ndarray = np.clip(lit, 0.0, 1.0)
    return shaded


def hillshade_png(
    dem: np.ndarray,
    transform: Affine,
    crs: CRS | str | int,
    *,
    azimuth: float = 315,
    altitude: float = 45,
    max_size: int = 1024,
    nodata: float | None = None,
    z_factor: float = 1.0,
) -> tuple[bytes, Bounds]:
    """PNG bytes of the DEM's hillshade warped to Web Mercator, and its lat/lon bounds.

    Cells that are NaN or equal to `nodata` become transparent. The longer side of the image
    is at most `max_size` pixels. Bounds are [[south, west], [north, east]].
    """
    dem = np.asarray(dem)
    if dem.ndim != 2 or min(dem.shape) < 2:
        raise ValueError(f"a DEM is a 2-D array of at least 2x2 cells, got shape {dem.shape}")
    transform = Affine(*transform[:6]) if not isinstance(transform, Affine) else transform
    if transform.b or transform.d:
        raise ValueError("the DEM transform is rotated or sheared; warp it north-up first")
    src_crs = CRS.from_user_input(crs)
    values = dem.astype(np.float64)
    valid = np.isfinite(values)
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        valid &= values != nodata
    if not valid.any():
        raise ValueError("the DEM has no valid cells")

    # Shading far more cells than the image will show costs memory and time for nothing.
    factor = min(max(dem.shape) // (2 * max_size), min(dem.shape) // 2)
    if factor >= 2:
        values = _block_mean(np.where(valid, values, np.nan), factor)
        valid = np.isfinite(values)
        transform = transform @ Affine.scale(factor)

    lit = shade(
        _fill_nodata(values, valid),
        _pixel_size_m(transform, src_crs, values.shape),
        azimuth=azimuth,
        altitude=altitude,
        z_factor=z_factor,
    ).astype(np.float32)
    lit[~valid] = np.nan

    rows, cols = values.shape
    x_edges = (transform.c, transform.c + transform.a * cols)
    y_edges = (transform.f, transform.f + transform.e * rows)
    src_bounds = (min(x_edges), min(y_edges), max(x_edges), max(y_edges))
    dst_transform, width, height = calculate_default_transform(
        src_crs, DISPLAY_CRS, cols, rows, *src_bounds
    )
    scale = max(width, height) / max_size
    if scale > 1:
        width, height = max(1, round(width / scale)), max(1, round(height / scale))
        dst_transform, width, height = calculate_default_transform(
            src_crs, DISPLAY_CRS, cols, rows, *src_bounds, dst_width=width, dst_height=height
        )

    warped = np.full((height, width), np.nan, dtype=np.float32)
    reproject(
        source=lit,
        destination=warped,
        src_transform=transform,
        src_crs=src_crs,
        src_nodata=np.nan,
        dst_transform=dst_transform,
        dst_crs=DISPLAY_CRS,
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )

    inside = np.isfinite(warped)
    grey = np.where(inside, np.nan_to_num(warped) * 255.0, 0.0).round().astype(np.uint8)
    alpha = np.where(inside, 255, 0).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.dstack([grey, alpha])).save(buf, format="PNG", optimize=True)

    x0, y1 = dst_transform.c, dst_transform.f
    x1, y0 = x0 + dst_transform.a * width, y1 + dst_transform.e * height
    w, s, e, n = transform_bounds(DISPLAY_CRS, GEOGRAPHIC_CRS, x0, y0, x1, y1)
    return buf.getvalue(), [[s, w], [n, e]]
