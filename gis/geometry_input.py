"""Geometry sent by clients (GeoJSON): checked before use, every problem named with its place."""

from __future__ import annotations

import math
from typing import Any

import shapely
from shapely.geometry import MultiPolygon, Polygon

from gis.crs import CoordSystem, parse_crs, transform_geometry
from gis.errors import InputError, Problem


def _walk_positions(
    coords: Any, loc: tuple[Any, ...], problems: list[Problem], dims: set[int], counter: list[int]
) -> None:
    """Check every position of a GeoJSON coordinates array; positions are [lon, lat(, z)]."""
    if (
        isinstance(coords, list | tuple)
        and coords
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in coords)
    ):
        counter[0] += 1
        dims.add(len(coords))
        if len(coords) not in (2, 3):
            problems.append(Problem(loc, f"a position has 2 or 3 numbers, got {len(coords)}", "bad_position"))
            return
        if not all(math.isfinite(v) for v in coords):
            problems.append(Problem(loc, "coordinates must be finite numbers (no NaN or Infinity)", "not_finite"))
        return
    if not isinstance(coords, list | tuple) or not coords:
        problems.append(Problem(loc, "expected a non-empty array of positions", "bad_coordinates"))
        return
    for i, c in enumerate(coords):
        if len(problems) > 20:
            return
        _walk_positions(c, loc + (i,), problems, dims, counter)


def polygon_from_geojson(
    value: dict[str, Any],
    loc: tuple[Any, ...],
    *,
    max_vertices: int,
    crs: str | CoordSystem | None = None,
) -> MultiPolygon:
    """A (Multi)Polygon from a GeoJSON geometry or Feature, converted to WGS84 from `crs`."""
    if not isinstance(value, dict):
        raise InputError(Problem(loc, "expected a GeoJSON object", "bad_geojson"))
    if value.get("type") == "Feature":
        value = value.get("geometry") or {}
        loc = loc + ("geometry",)
    if value.get("crs") is not None:
        raise InputError(
            Problem(loc + ("crs",), "GeoJSON geometries carry no crs member; give crs separately", "unknown_crs")
        )
    gtype = value.get("type")
    if gtype not in ("Polygon", "MultiPolygon"):
        raise InputError(
            Problem(loc + ("type",), f"expected Polygon or MultiPolygon, got {gtype!r}", "bad_geometry_type")
        )
    coords = value.get("coordinates")
    problems: list[Problem] = []
    dims: set[int] = set()
    counter = [0]
    _walk_positions(coords, loc + ("coordinates",), problems, dims, counter)
    if problems:
        raise InputError(problems)
    if counter[0] > max_vertices:
        raise InputError(
            Problem(loc + ("coordinates",), f"{counter[0]} vertices; at most {max_vertices}", "too_many_vertices")
        )
    if len(dims) > 1:
        raise InputError(Problem(loc + ("coordinates",), "positions mix 2D and 3D coordinates", "mixed_dimensions"))
    system = crs if isinstance(crs, CoordSystem) else parse_crs(crs, field=loc[:-1] + ("crs",) if loc else ("crs",))
    try:
        geom = shapely.geometry.shape({"type": gtype, "coordinates": coords})
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise InputError(Problem(loc + ("coordinates",), f"not a valid {gtype}: {exc}", "bad_coordinates")) from None
    geom = shapely.force_2d(geom)
    if system.is_lonlat:
        _check_lonlat_bounds(geom, loc)
    geom = transform_geometry(geom, system)
    _check_lonlat_bounds(geom, loc)
    if geom.is_empty:
        raise InputError(Problem(loc, "the geometry is empty", "empty_geometry"))
    if not geom.is_valid:
        raise InputError(Problem(loc, f"invalid polygon: {shapely.is_valid_reason(geom)}", "invalid_geometry"))
    return geom if isinstance(geom, MultiPolygon) else MultiPolygon([geom]) if isinstance(geom, Polygon) else geom


def _check_lonlat_bounds(geom: Any, loc: tuple[Any, ...]) -> None:
    x0, y0, x1, y1 = geom.bounds
    if x0 < -180 or x1 > 180 or y0 < -90 or y1 > 90:
        if x0 >= -90 and x1 <= 90 and y0 >= -180 and y1 <= 180:
            msg = "coordinates look like [lat, lon]; GeoJSON positions are [lon, lat]"
            kind = "swapped_lonlat"
        else:
            msg = "coordinates are outside lon [-180, 180] / lat [-90, 90]; give crs if they are projected"
            kind = "out_of_range"
        raise InputError(Problem(loc + ("coordinates",), msg, kind))
    # Inside the valid range but with axes swapped for China: lon 73-136, lat 3-54.
    if x0 >= 3 and x1 <= 54 and y0 >= 73 and y1 <= 136:
        raise InputError(
            Problem(
                loc + ("coordinates",),
                "coordinates look like [lat, lon]; GeoJSON positions are [lon, lat]",
                "swapped_lonlat",
            )
        )
