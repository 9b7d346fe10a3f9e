"""Grid endpoints: export, point-to-grid lookup, and file import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import shapely
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api import schemas
from api.deps import PageOffset, SessionDep, SettingsDep
from api.exports import saved_upload
from api.security import requires
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.context import Context
from gis.crs import parse_crs, points_to_wgs84
from gis.errors import InputError, NotFound, Problem
from gis.grids import store
from gis.grids.locate import Location, locate_points
from gis.people import staff_by_grid

router = APIRouter(prefix="/grids", tags=["grids"])

GEOJSON = "application/geo+json"


def parse_bbox(bbox: str | None) -> tuple[float, float, float, float] | None:
    if bbox is None:
        return None
    parts = bbox.split(",")
    try:
        x0, y0, x1, y1 = (float(p) for p in parts)
    except ValueError:
        raise InputError(
            Problem(("query", "bbox"), "bbox is four numbers: min_lon,min_lat,max_lon,max_lat")
        ) from None
    if not all(map(lambda v: v == v and abs(v) != float("inf"), (x0, y0, x1, y1))):
        raise InputError(Problem(("query", "bbox"), "bbox values must be finite numbers"))
    if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
        raise InputError(
            Problem(("query", "bbox"), "bbox must be min_lon,min_lat,max_lon,max_lat within lon/lat range")
        )
    return x0, y0, x1, y1


def _iso(value: Any) -> str | None:
    """ISO time, or None for a missing one (pandas turns a missing time into NaT)."""
    import pandas as pd

    return None if value is None or pd.isna(value) else value.isoformat()


def _feature_collection(frame: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    features = []
    for r, g in zip(frame.itertuples(), frame.geometry, strict=True):
        features.append(
            {
                "type": "Feature",
                "id": r.code,
                "properties": {
                    "code": r.code,
                    "name": r.name,
                    "level": int(r.level),
                    "parent_code": r.parent_code,
                    "valid_from": _iso(r.valid_from),
                },
                "geometry": shapely.geometry.mapping(g),
            }
        )
    out = {"type": "FeatureCollection", "features": features}
    out.update(extra or {})
    return out


@router.get("", summary="Current grids as GeoJSON", response_class=schemas.GeoJSONResponse,
            response_model=schemas.GridCollection, **schemas.DATA, responses=schemas.problems(*schemas.READ))
def list_grids(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    _: Annotated[Principal, requires(Permission.VIEW_GRIDS)],
    level: Annotated[int | None, Query(ge=1, le=4, description="1 town … 4 group grid")] = None,
    parent_code: Annotated[str | None, Query(pattern=r"^\d{15}$")] = None,
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat (WGS84)")] = None,
    limit: Annotated[int | None, Query(ge=1)] = None,
    offset: PageOffset = 0,
    as_of: schemas.AsOf = None,
) -> Response:
    box = parse_bbox(bbox)
    as_of = schemas.checked_as_of(as_of)
    cap = settings.max_features_per_page
    if limit is not None and limit > cap:
        raise InputError(Problem(("query", "limit"), f"at most {cap} features per page"))
    limit = limit or cap
    frame = store.current_grids(
        session, level=level, parent_code=parent_code, bbox=box, limit=limit, offset=offset, as_of=as_of
    )
    matched = store.count_current_grids(session, level=level, parent_code=parent_code, bbox=box, as_of=as_of)
    # Pages follow the code order (unique among current grids), so consecutive pages neither repeat nor skip.
    after = offset + len(frame)
    next_url = str(request.url.include_query_params(offset=after, limit=limit)) if after < matched else None
    body = _feature_collection(
        frame, {"numberMatched": matched, "numberReturned": len(frame), "offset": offset, "next": next_url}
    )
    return Response(json.dumps(body, ensure_ascii=False), media_type=GEOJSON)


class LocatedGrid(BaseModel):
    code: str
    name: str
    level: int
    staff: list[dict[str, Any]] = Field(default_factory=list)


class LocateAnswer(BaseModel):
    lon: float = Field(description="WGS84 longitude actually located")
    lat: float
    on_boundary: bool
    rule: str = "deepest containing grid with the smallest code; ancestors by parent chain"
    grids: dict[str, LocatedGrid] = Field(description="level (1-4) -> grid")


def _answer(loc: Location, staff: dict[str, list[dict[str, Any]]]) -> LocateAnswer:
    return LocateAnswer(
        lon=loc.lon,
        lat=loc.lat,
        on_boundary=loc.on_boundary,
        grids={
            str(level): LocatedGrid(
                code=ref.code, name=ref.name, level=ref.level, staff=staff.get(ref.code, [])
            )
            for level, ref in sorted(loc.path.items())
        },
    )


def _outside(loc: Location) -> NotFound:
    nearest = loc.nearest
    return NotFound(
        "The point is outside every grid of the town"
        + (f"; the nearest grid is {nearest.name} ({nearest.code}), {loc.distance_m:.0f} m away" if nearest else ""),
        extra={
            "nearest": {"code": nearest.code, "name": nearest.name, "level": nearest.level} if nearest else None,
            "distance_m": round(loc.distance_m, 1) if loc.distance_m is not None else None,
        },
    )


@router.get(
    "/locate",
    response_model=LocateAnswer,
    summary="The grid at every level for one point",
    responses={**schemas.problems(*schemas.READ),
               404: {"description": "outside the town: names the nearest grid and distance",
                     "content": {schemas.PROBLEM_MEDIA_TYPE: {"schema": schemas.PROBLEM_SCHEMA}}}},
)
def locate(
    session: SessionDep,
    _: Annotated[Principal, requires(Permission.VIEW_GRIDS)],
    lon: Annotated[float, Query(description="longitude (east), first")],
    lat: Annotated[float, Query(description="latitude (north)")],
    crs: Annotated[str, Query(description="wgs84 | cgcs2000 | gcj02 | bd09 | EPSG:code")] = "wgs84",
) -> LocateAnswer:
    system = parse_crs(crs, field=("query", "crs"))
    xs, ys = points_to_wgs84(lon, lat, system, field_prefix=("query",))
    loc = locate_points(session, xs, ys)[0]
    if not loc.inside:
        raise _outside(loc)
    staff = staff_by_grid(session, [g.code for g in loc.path.values()])
    return _answer(loc, staff)


class PointIn(BaseModel):
    lon: float
    lat: float


class LocateMany(BaseModel):
    crs: str = "wgs84"
    points: list[PointIn]
    include_staff: bool = False


class LocateManyItem(BaseModel):
    inside: bool
    answer: LocateAnswer | None = None
    nearest_code: str | None = None
    distance_m: float | None = None


@router.post("/locate", response_model=list[LocateManyItem], summary="Locate many points at once",
             responses=schemas.problems(*schemas.READ))
def locate_many(
    session: SessionDep,
    settings: SettingsDep,
    _: Annotated[Principal, requires(Permission.VIEW_GRIDS)],
    body: LocateMany,
) -> list[LocateManyItem]:
    if len(body.points) > settings.max_points_per_locate:
        raise InputError(
            Problem(("body", "points"), f"at most {settings.max_points_per_locate} points per request")
        )
    system = parse_crs(body.crs, field=("body", "crs"))
    xs, ys = points_to_wgs84([p.lon for p in body.points], [p.lat for p in body.points], system,
                             field_prefix=("body", "points"))
    locs = locate_points(session, xs, ys)
    codes = {g.code for loc in locs for g in loc.path.values()}
    staff = staff_by_grid(session, list(codes)) if body.include_staff else {}
    return [
        LocateManyItem(inside=True, answer=_answer(loc, staff))
        if loc.inside
        else LocateManyItem(
            inside=False,
            nearest_code=loc.nearest.code if loc.nearest else None,
            distance_m=loc.distance_m,
        )
        for loc in locs
    ]


@router.post("/import", summary="Import a grid boundary file (all-or-nothing)", response_model=schemas.GridImportReport,
             **schemas.DATA, responses=schemas.problems(*schemas.READ, 413))
def import_file(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, requires(Permission.EDIT_GRIDS)],
    file: Annotated[UploadFile, File(description="GeoJSON, GeoPackage, zipped Shapefile or KML")],
    crs: Annotated[str | None, Form(description="override: gcj02 | bd09 | EPSG:code")] = None,
    dry_run: Annotated[bool, Form(description="validate and report, write nothing")] = False,
) -> dict[str, Any]:
    name = Path(file.filename or "upload").name
    suffix = "".join(Path(name).suffixes[-1:]).lower()
    if suffix not in {".geojson", ".json", ".gpkg", ".zip", ".kml"}:
        raise InputError(
            Problem(("body", "file"), "file type must be .geojson, .json, .gpkg, .zip (Shapefile) or .kml")
        )
    ctx = Context(principal, method=request.method, path=request.url.path)
    with saved_upload(file, suffix, settings.max_upload_bytes) as path:
        report = store.import_grid_file(
            session, ctx, path, file_name=name, source=f"upload:{name}", settings=settings, crs=crs, dry_run=dry_run
        )
    return {"dry_run": dry_run, **report.as_dict()}


@router.get("/{code}/history", summary="Every version of one grid", response_class=schemas.GeoJSONResponse,
            response_model=schemas.GridHistory, **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def history(
    session: SessionDep,
    _: Annotated[Principal, requires(Permission.VIEW_GRIDS)],
    code: Annotated[str, PathParam(pattern=r"^\d{15}$")],
) -> Response:
    frame = store.grid_history(session, code)
    if frame.empty:
        raise NotFound(f"no grid has the code {code}")
    feats = []
    for r, g in zip(frame.itertuples(), frame.geometry, strict=True):
        feats.append(
            {
                "type": "Feature",
                "properties": {
                    "code": r.code, "name": r.name, "level": int(r.level), "parent_code": r.parent_code,
                    "valid_from": _iso(r.valid_from),
                    "valid_to": _iso(r.valid_to),
                    "source": r.source,
                },
                "geometry": shapely.geometry.mapping(g),
            }
        )
    body = {"type": "FeatureCollection", "features": feats}
    return Response(json.dumps(body, ensure_ascii=False), media_type=GEOJSON)

