"""Flood extents uploaded or drawn: read and checked from files, stored, listed and read back.

The DEM import lives in gis/flood/dem.py, the modelled stages in gis/flood/stages.py, the stored
row in gis/flood/extent_row.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.context import Context
from gis.errors import InputError, NotFound, Problem
from gis.flood import hydrology
from gis.flood.dem import _dem_by_id, _read_limits
from gis.flood.extent_row import _EXTENT_SQL, SOURCES, FloodExtent, _as_multipolygon, _extent, _store_answer
from gis.flood.stages import _depth_sampler

if TYPE_CHECKING:
    from gis.vector_files import ReadLimits


def _area_m2(geom: MultiPolygon) -> float:
    from gis.crs import metric_crs_for, metric_transformer

    if geom.is_empty:
        return 0.0
    c = geom.centroid
    tr = metric_transformer(metric_crs_for(c.x, c.y))
    local = shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    return float(local.area)


def save_extent(
    session: Session,
    geom: Any,
    source: str,
    name: str,
    user_id: int | None = None,
    input_crs: str | None = None,
    ctx: Context | None = None,
    detail: dict[str, Any] | None = None,
) -> FloodExtent:
    """Store an uploaded or drawn flood extent (`geom` a (Multi)Polygon in EPSG:4326) and its
    households list; with `ctx`, audited (`flood_extent_<source>`, with `detail`)."""
    if source not in ("upload", "drawn"):
        raise InputError(Problem(("source",), "an uploaded or drawn extent ('upload' or 'drawn')", "bad_source"))
    name = (name or "").strip()
    if not name:
        raise InputError(Problem(("name",), "give the extent a name", "missing"))
    if len(name) > 200:
        raise InputError(Problem(("name",), "at most 200 characters", "too_long"))
    if geom is None or geom.is_empty:
        raise InputError(Problem(("geometry",), "the extent is empty", "empty_geometry"))
    if not isinstance(geom, Polygon | MultiPolygon):
        raise InputError(
            Problem(("geometry",), f"a Polygon or MultiPolygon, got {geom.geom_type}", "bad_geometry_type")
        )
    geom = _as_multipolygon(shapely.force_2d(geom))
    if not geom.is_valid:
        raise InputError(
            Problem(("geometry",), f"invalid polygon: {shapely.is_valid_reason(geom)}", "invalid_geometry")
        )
    minx, miny, maxx, maxy = geom.bounds
    if not (minx >= -180 and maxx <= 180 and miny >= -90 and maxy <= 90):
        raise InputError(Problem(("geometry",), "coordinates are not longitude/latitude", "wrong_crs"))
    new_id = session.execute(
        text(
            "INSERT INTO flood_extent (name, source, geom, area_m2, input_crs, created_by_user) VALUES "
            "(:name, :source, ST_GeomFromWKB(:geom, 4326), :area, :crs, :user) RETURNING id"
        ),
        {"name": name, "source": source, "geom": shapely.to_wkb(geom), "area": _area_m2(geom),
         "crs": input_crs, "user": user_id},
    ).scalar_one()
    extent = get_extent(session, new_id)
    _store_answer(session, extent)
    if ctx is not None:
        ctx.audit(session, f"flood_extent_{source}", resource="flood_extent", resource_ids=[extent.id],
                  detail=detail)
    return extent


def read_extent_file(path: Path, crs: str | None = None, limits: ReadLimits | None = None) -> MultiPolygon:
    """The polygons of a GeoJSON / KML / zipped Shapefile / GeoPackage file as one MultiPolygon in
    EPSG:4326 (`crs` = gcj02 | bd09 | EPSG:code when the file does not say, or to override it)."""
    try:
        return _read_extent_file(path, crs, limits)
    except InputError as exc:
        if exc.title == "Invalid coordinate system":
            raise
        raise InputError(exc.problems, "Cannot read the flood extent file") from None


def _read_extent_file(path: Path, crs: str | None, limits: ReadLimits | None) -> MultiPolygon:
    from gis.crs import parse_crs
    from gis.vector_files import as_multipolygon as grid_multipolygon
    from gis.vector_files import file_error as _file_error
    from gis.vector_files import geometries_in_wgs84 as _to_wgs84
    from gis.vector_files import read_features as _read_raw

    limits = limits or _read_limits()
    path = Path(path)
    if crs is not None and str(crs).strip():
        parse_crs(crs, "crs")
    if not path.is_file():
        raise _file_error("the file does not exist", "unreadable_file")
    size = path.stat().st_size
    if size == 0:
        raise _file_error("the file is empty", "empty_file")
    if size > limits.max_file_bytes:
        raise _file_error(f"the file is larger than {limits.max_file_bytes} bytes", "file_too_large")
    raw, default_wgs84 = _read_raw(path, None, limits)
    if len(raw) == 0 or raw.geometry.isna().all():
        raise _file_error("the file holds no features", "empty_file")
    if len(raw) > limits.max_features:
        raise _file_error(f"the file has {len(raw)} features; at most {limits.max_features}", "too_many_features")
    vertices = int(shapely.get_num_coordinates(np.asarray(raw.geometry.array, dtype=object)).sum())
    if vertices > limits.max_vertices_per_geometry:
        raise _file_error(
            f"the extent has {vertices} vertices; at most {limits.max_vertices_per_geometry}", "too_many_vertices"
        )
    geoms = _to_wgs84(raw, crs, default_wgs84)
    polys: list[Polygon] = []
    problems: list[Problem] = []
    for i, g in enumerate(geoms, start=1):
        if g is None or g.is_empty:
            continue
        mp = grid_multipolygon(shapely.force_2d(g))
        if mp is None:
            problems.append(Problem(("features", i, "geometry"), f"feature {i} is a {g.geom_type}, not a polygon",
                                    "bad_geometry_type"))
            continue
        if not mp.is_valid:
            problems.append(Problem(("features", i, "geometry"),
                                    f"feature {i} is not a valid polygon: {shapely.is_valid_reason(mp)}",
                                    "invalid_geometry"))
            continue
        polys.extend(mp.geoms)
    if problems:
        raise InputError(problems[:50], "Cannot read the flood extent file")
    if not polys:
        raise _file_error("the file holds no polygons", "empty_file")
    # Features of one survey may overlap (two flights over the same field): dissolve them.
    return _as_multipolygon(shapely.union_all(polys))


def get_extent(session: Session, extent_id: int) -> FloodExtent:
    r = session.execute(text(_EXTENT_SQL + "WHERE id = :id"), {"id": int(extent_id)}).one_or_none()
    if r is None:
        raise NotFound(f"no flood extent has the id {extent_id}")
    depth_at = None
    if r.source == "model":
        row = _dem_by_id(session, r.dem_id)
        depth_at = _depth_sampler(row, r.stage_m, r.mode)
    return _extent(session, r, depth_at)


def list_extents(session: Session, source: str | None = None) -> list[dict[str, Any]]:
    """Every stored extent (without geometry), newest first."""
    if source is not None and source not in SOURCES:
        raise InputError(Problem(("query", "source"), f"one of {', '.join(SOURCES)}", "unknown_source"))
    rows = session.execute(
        text(
            "SELECT e.id, e.name, e.source, e.stage_m, e.mode, e.dem_id, d.name AS dem_name, e.area_m2, "
            "e.created_at, e.created_by_user, ST_NPoints(e.geom) AS vertices, "
            "ST_XMin(e.geom) AS xmin, ST_YMin(e.geom) AS ymin, ST_XMax(e.geom) AS xmax, ST_YMax(e.geom) AS ymax "
            "FROM flood_extent e LEFT JOIN flood_dem d ON d.id = e.dem_id "
            "WHERE (CAST(:source AS text) IS NULL OR e.source = :source) ORDER BY e.created_at DESC, e.id DESC"
        ),
        {"source": source},
    ).mappings()
    out = []
    for r in rows:
        d = dict(r)
        d["created_at"] = d["created_at"].isoformat() if d["created_at"] else None
        box = [d.pop(k) for k in ("xmin", "ymin", "xmax", "ymax")]
        d["bbox"] = None if box[0] is None else [round(v, 6) for v in box]
        out.append(d)
    return out


def extent_classes(session: Session, extent_id: int) -> list[dict[str, Any]]:
    """The depth classes of a modelled extent: class, area and GeoJSON geometry."""
    rows = session.execute(
        text(
            "SELECT depth_class, area_m2, ST_AsGeoJSON(geom, 7) AS geojson FROM flood_extent_class "
            "WHERE extent_id = :id"
        ),
        {"id": int(extent_id)},
    ).all()
    order = {name: i for i, (name, _, _) in enumerate(hydrology.DEPTH_CLASSES)}
    return sorted(
        ({"depth_class": r.depth_class, "area_m2": r.area_m2, "geometry": json.loads(r.geojson)} for r in rows),
        key=lambda d: order[d["depth_class"]],
    )


def extent_feature_collection(session: Session, extent: FloodExtent) -> dict[str, Any]:
    """GeoJSON: the extent as one feature, then one feature per depth class (when modelled)."""
    props = {
        "id": extent.id, "name": extent.name, "source": extent.source, "stage_m": extent.stage_m,
        "mode": extent.mode, "dem_id": extent.dem_id, "area_m2": round(extent.area_m2, 1),
        "created_at": extent.created_at.isoformat() if extent.created_at else None,
    }
    features = [{"type": "Feature", "properties": {"kind": "extent", **props},
                 "geometry": shapely.geometry.mapping(extent.geom)}]
    for c in extent_classes(session, extent.id):
        features.append({
            "type": "Feature",
            "properties": {"kind": "depth_class", "extent_id": extent.id, "depth_class": c["depth_class"],
                           "area_m2": round(c["area_m2"], 1)},
            "geometry": c["geometry"],
        })
    return {"type": "FeatureCollection", "properties": props, "features": features}
