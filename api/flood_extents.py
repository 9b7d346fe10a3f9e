"""Flood extents: modelled scenarios, uploaded survey polygons and extents drawn on the map."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from api import schemas
from api.deps import NoNul, SessionDep, SettingsDep, request_context
from api.exports import saved_upload
from api.security import requires
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.errors import InputError, Problem
from gis.flood import dem, extents, stages
from gis.flood.extent_row import FloodExtent
from gis.flood.stages import compute_stage
from gis.geometry_input import polygon_from_geojson

router = APIRouter(prefix="/flood", tags=["flood"])

ExtentId = Annotated[int, PathParam(ge=1, le=2**62)]
UPLOAD_SUFFIXES = {".geojson", ".json", ".gpkg", ".zip", ".kml"}
# The stages offered for planning and drills (the per-grid flood-risk levels).
STANDARD_STAGES = (0.5, 1.0, 2.0, 3.0)


class Drawn(BaseModel):
    name: Annotated[str, NoNul] = Field(min_length=1, max_length=200)
    geometry: dict[str, Any] = Field(description="GeoJSON Polygon or MultiPolygon (or a Feature of one)")
    crs: str = Field(default="wgs84", max_length=40, description="wgs84 | cgcs2000 | gcj02 | bd09 | EPSG:code")


def _summary(extent: FloodExtent) -> dict[str, Any]:
    return {
        "id": extent.id, "name": extent.name, "source": extent.source, "stage_m": extent.stage_m,
        "mode": extent.mode, "dem_id": extent.dem_id, "area_m2": round(extent.area_m2, 1),
        "parts": len(extent.geom.geoms), "modelled": extent.depth_at is not None,
        "bbox": [round(v, 7) for v in extent.geom.bounds] if not extent.geom.is_empty else None,
    }


@router.post("/extents", status_code=201, summary="Upload a flood extent (GeoJSON, KML, zipped Shapefile, GeoPackage)",
             response_model=schemas.FloodExtentSummary, **schemas.DATA,
             responses=schemas.problems(*schemas.READ, 413))
def upload(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, requires(Permission.EDIT_FLOOD_EXTENTS)],
    file: Annotated[UploadFile, File(description="GeoJSON, GeoPackage, zipped Shapefile or KML of flood polygons")],
    name: Annotated[str | None, Form(max_length=200, description="default: the file name")] = None,
    crs: Annotated[
        str | None, Form(max_length=40, description="gcj02 | bd09 | EPSG:code, when the file does not say")
    ] = None,
) -> Any:
    from gis.vector_files import ReadLimits

    filename = Path(file.filename or "upload").name
    suffix = Path(filename).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise InputError(
            Problem(("body", "file"), "file type must be .geojson, .json, .gpkg, .zip (Shapefile) or .kml",
                    "unsupported_format")
        )
    if name is not None and "\x00" in name:
        raise InputError(Problem(("body", "name"), "text may not contain NUL characters", "bad_text"))
    limits = ReadLimits.from_settings(settings)
    with saved_upload(file, suffix, settings.max_upload_bytes) as path:
        geom = extents.read_extent_file(path, crs=crs, limits=limits)
    extent = extents.save_extent(session, geom, "upload", (name or "").strip() or Path(filename).stem,
                                 user_id=principal.user_id, input_crs=crs, ctx=request_context(request, principal),
                                 detail={"file": filename, "crs": crs})
    return _summary(extent)


@router.post("/extents/drawn", status_code=201, summary="Store a flood extent drawn on the map",
             response_model=schemas.FloodExtentSummary, **schemas.DATA, responses=schemas.problems(*schemas.READ))
def drawn(request: Request, session: SessionDep, settings: SettingsDep,
          principal: Annotated[Principal, requires(Permission.EDIT_FLOOD_EXTENTS)], body: Drawn) -> Any:
    geom = polygon_from_geojson(body.geometry, ("body", "geometry"),
                                max_vertices=settings.max_vertices_per_geometry, crs=body.crs)
    extent = extents.save_extent(session, geom, "drawn", body.name, user_id=principal.user_id,
                                 input_crs=body.crs, ctx=request_context(request, principal), detail={"crs": body.crs})
    return _summary(extent)


@router.get("/extents", summary="Stored flood extents (no geometry), newest first",
            response_model=list[schemas.StoredFloodExtent], **schemas.DATA, responses=schemas.problems(*schemas.READ))
def list_all(session: SessionDep, _: Annotated[Principal, requires(Permission.VIEW_EMERGENCIES)],
             source: Annotated[Literal["model", "upload", "drawn"] | None, Query()] = None) -> Any:
    return extents.list_extents(session, source)


@router.get("/extents/{extent_id}", summary="One flood extent as GeoJSON, with its depth classes when modelled",
            response_model=schemas.FloodExtentCollection, **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def one(
    session: SessionDep, _: Annotated[Principal, requires(Permission.VIEW_EMERGENCIES)], extent_id: ExtentId
) -> Any:
    return extents.extent_feature_collection(session, extents.get_extent(session, extent_id))


@router.get("/scenarios", summary="Named scenarios, standard stages and the DEMs they run on",
            response_model=schemas.Scenarios, **schemas.DATA, responses=schemas.problems(*schemas.SIGNED_IN))
def scenarios(session: SessionDep, _: Annotated[Principal, requires(Permission.VIEW_EMERGENCIES)]) -> Any:
    return {
        "named": [
            {"name": s.name, "stage_m": s.stage_m, "mode": s.mode, "title": s.title, "note": s.note}
            for s in stages.NAMED_SCENARIOS.values()
        ],
        "standard_stages_m": list(STANDARD_STAGES),
        "stage_step_m": stages.stage_limits()[0],
        "max_stage_m": stages.stage_limits()[1],
        "modes": list(stages.MODES),
        "dems": dem.list_dems(session),
        "computed": extents.list_extents(session, "model"),
    }


@router.get("/scenarios/{stage_or_name}",
            summary="A stored modelled flood extent as GeoJSON "
                    "(404 saying how to compute a new stage)",
            response_model=schemas.FloodExtentCollection, **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def scenario(
    session: SessionDep,
    _: Annotated[Principal, requires(Permission.VIEW_EMERGENCIES)],
    stage_or_name: Annotated[
        str, PathParam(max_length=40, description="a stage in metres (1.5) or a name (2023-09-23)")
    ],
    mode: Annotated[Literal["fluvial", "pluvial"], Query()] = "fluvial",
) -> Any:
    extent = stages.scenario(session, stage_or_name, mode, stored_only=True)
    return extents.extent_feature_collection(session, extent)


class StageRequest(BaseModel):
    stage_m: float = Field(description="metres above the channel (fluvial) or of ponding "
                                       "(pluvial): a multiple of the stage step, up to the maximum")
    mode: Literal["fluvial", "pluvial"] = "fluvial"


@router.post("/scenarios", status_code=201,
             summary="Compute and store a modelled stage of the allowed set",
             response_model=schemas.FloodExtentSummary, **schemas.DATA, responses=schemas.problems(*schemas.READ))
def compute_scenario(
    request: Request, session: SessionDep,
    principal: Annotated[Principal, requires(Permission.COMPUTE_FLOOD_SCENARIOS)], body: StageRequest,
) -> Any:
    extent = compute_stage(session, request_context(request, principal), body.stage_m, body.mode)
    return _summary(extent)
