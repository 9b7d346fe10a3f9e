"""Places of the town from files (shelters, roads, rivers, natural villages) and DEM uploads run as jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from api import schemas
from api.deps import SessionDep, SettingsDep, request_context
from api.exports import parse_mapping, saved_upload
from api.security import requires
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.errors import InputError, Problem
from gis.register import places

router = APIRouter(tags=["register"])

PlaceKindPath = Literal["shelters", "roads", "rivers", "natural-villages"]


class FileProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    ctx: dict[str, Any] | None = None


class PlaceImportReport(BaseModel):
    kind: Literal["shelters", "roads", "rivers", "natural_villages"]
    file: str
    dry_run: bool
    mode: Literal["all_or_nothing", "good_rows"]
    replace: bool
    rows: int = Field(description="features or rows read")
    inserted: int
    updated: int
    unchanged: int
    deleted: int = Field(description="stored places the file no longer holds (replace only)")
    skipped: int = Field(description="rows refused (good_rows only); each named in problems")
    problems: list[FileProblem]
    terrain_stale: list[str] = Field(description="DEMs conditioned with other rivers than now stored")
    terrain_rebuilt: list[str]


@router.post("/places/{kind}/import", summary="Import shelters, roads, rivers or natural villages from a file",
             response_model=PlaceImportReport, **schemas.DATA, responses=schemas.problems(*schemas.READ, 413))
def import_places(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, requires(Permission.IMPORT_REGISTER)],
    kind: Annotated[PlaceKindPath, PathParam()],
    file: Annotated[UploadFile, File(description="GeoPackage, GeoJSON, zipped Shapefile or KML; for shelters "
                                                 "and natural villages also CSV/xlsx with 经度/纬度 columns")],
    crs: Annotated[str | None, Form(max_length=40, description="wgs84 | gcj02 | bd09 | EPSG:code, when the file "
                                                               "does not say (tables: default wgs84)")] = None,
    layer: Annotated[str | None, Form(max_length=200, description="the layer (GeoPackage) or sheet (xlsx)")] = None,
    mapping: Annotated[str | None, Form(max_length=4000, description='JSON {"name": "场所名称", ...}')] = None,
    dry_run: Annotated[bool, Form(description="check and report; write nothing")] = False,
    mode: Annotated[Literal["all_or_nothing", "good_rows"], Form()] = "all_or_nothing",
    replace: Annotated[bool, Form(description="also delete the stored places the file does not hold")] = False,
    rebuild_terrain: Annotated[bool, Form(description="rivers: condition the DEMs again with the new rivers")] = False,
) -> Any:
    filename = Path(file.filename or "upload").name
    suffix = Path(filename).suffix.lower()
    key: places.PlaceKind = "natural_villages" if kind == "natural-villages" else kind
    allowed = places.VECTOR_SUFFIXES + (places.TABLE_SUFFIXES if places.LAYERS[key].points else ())
    if suffix not in allowed:
        raise InputError(Problem(("body", "file"), f"file type must be one of {', '.join(allowed)}",
                                 "unsupported_format"))
    columns = parse_mapping(mapping)
    with saved_upload(file, suffix, settings.max_upload_bytes) as path:
        report = places.import_place_file(
            session, request_context(request, principal), key, path, file_name=filename, crs=crs,
            layer_name=layer, mapping=columns, dry_run=dry_run, mode=mode, replace=replace, rebuild=rebuild_terrain,
        )
    return report.as_dict()


class DemJobResult(BaseModel):
    id: int
    name: str
    digest: str
    shape: list[int]
    cell_m: schemas.Real
    stages_m: list[schemas.Real]
    drainage_cells: int
    cells_with_hand: int


class DemJob(BaseModel):
    id: int
    state: Literal["queued", "running", "done", "failed"]
    progress: schemas.Real = Field(description="0 to 1")
    step: str | None
    name: str
    file_name: str
    created_at: schemas.IsoTime
    started_at: schemas.IsoTime | None
    finished_at: schemas.IsoTime | None
    result: DemJobResult | None = Field(description="the imported DEM, once done")
    problems: list[FileProblem] | None = Field(description="why it failed")


@router.post("/flood/dem", status_code=202, summary="Upload a DEM (GeoTIFF, any CRS): conditioned as a job to poll",
             response_model=DemJob, **schemas.DATA, responses=schemas.problems(*schemas.READ, 413))
def upload_dem(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, requires(Permission.IMPORT_REGISTER)],
    file: Annotated[UploadFile, File(description="a single-band elevation GeoTIFF; no-data as the file declares")],
    name: Annotated[str | None, Form(max_length=200, description="default: the file name")] = None,
    crs: Annotated[str | None, Form(max_length=40, description="EPSG:code when the file does not say")] = None,
    threshold_km2: Annotated[float | None, Form(gt=0, le=10_000, description="also drain cells with this "
                                                                             "upstream area (km²)")] = None,
) -> Any:
    from gis.register import dem_jobs

    filename = Path(file.filename or "dem.tif").name
    dem_name = (name or "").strip() or Path(filename).stem
    if "\x00" in dem_name:
        raise InputError(Problem(("body", "name"), "text may not contain NUL characters", "bad_text"))
    with saved_upload(file, ".tif", settings.max_upload_bytes) as path:
        dem_jobs.check_upload(path, filename, crs)
        kept = dem_jobs.keep_upload(path, settings.data_dir)
    ctx = request_context(request, principal)
    try:
        job_id = dem_jobs.create_job(session, ctx, name=dem_name, file_name=filename)
        session.commit()  # the job must be visible to the polls (and to its own progress writes) now
    except BaseException:
        kept.unlink(missing_ok=True)
        raise
    dem_jobs.start_job(request.app.state.sessionmaker, ctx, job_id, kept, name=dem_name, file_name=filename, crs=crs,
                       threshold_km2=threshold_km2)
    return dem_jobs.job_status(session, job_id)


@router.get("/flood/dem/jobs/{job_id}", summary="A DEM upload job: state, progress and, once done, the DEM",
            response_model=DemJob, **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def dem_job(session: SessionDep, _: Annotated[Principal, requires(Permission.IMPORT_REGISTER)],
            job_id: Annotated[int, PathParam(ge=1, le=2**62)]) -> Any:
    from gis.register import dem_jobs

    return dem_jobs.job_status(session, job_id)
