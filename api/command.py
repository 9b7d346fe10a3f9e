"""The command center: its map page (/maps/command), the search box (/search) and the numbers that
follow the view (/incidents/summary)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from api import schemas
from api.deps import SessionDep, SettingsDep, request_context
from api.grids import parse_bbox
from api.incident_params import OpenFilters
from api.security import require_page, requires
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.search import MAX_HITS, MAX_QUERY_CHARS

router = APIRouter(tags=["command center"])
HERE = Path(__file__).resolve().parent


# --- response models --------------------------------------------------------------------------------

class SearchHit(BaseModel):
    kind: Literal["grid", "natural_village", "household", "incident"]
    label: str = Field(description="what the search box shows (Chinese)")
    id: int | None = Field(default=None, description="natural village, household or incident id")
    code: str | None = Field(default=None, description="grid code, household number or incident external id")
    level: schemas.Level | None = None
    bbox: list[float] | None = Field(default=None, description="min_lon, min_lat, max_lon, max_lat to fit")
    point: list[float] | None = Field(default=None, description="lon, lat to fly to")
    personal_fields: schemas.PersonalFields | None = None


class SearchAnswer(BaseModel):
    q: str
    hits: list[SearchHit]


class GridCount(BaseModel):
    code: schemas.GridCode
    name: str
    count: int


class LevelCounts(BaseModel):
    level: schemas.Level
    level_name: str
    grids: int = Field(description="grids of this level with incidents in the view")
    top: list[GridCount] = Field(description="the grids with the most incidents in the view, most first")


class ShelterProperties(BaseModel):
    id: int
    name: str
    kind: str
    capacity: int


class ShelterFeature(BaseModel):
    type: Literal["Feature"]
    geometry: schemas.Point
    properties: ShelterProperties


class ShelterCollection(BaseModel):
    type: Literal["FeatureCollection"]
    features: list[ShelterFeature]


class ViewSummary(BaseModel):
    bbox: list[float]
    as_of: schemas.IsoTime
    today_from: schemas.IsoTime = Field(description="the start of today in Beijing time")
    total: int
    open: int
    overdue: int
    flagged: int
    today_new: int = Field(description="occurred since the start of today (Beijing time)")
    by_category: dict[str, int]
    by_state: dict[str, int]
    by_level: list[LevelCounts]


# --- JSON routes ------------------------------------------------------------------------------------

@router.get("/search", summary="Search grids, natural villages, households and incidents for the map to fly to",
            response_model=SearchAnswer, **schemas.DATA, responses=schemas.problems(*schemas.READ))
def search(request: Request, session: SessionDep, principal: Annotated[Principal, requires(Permission.VIEW_GRIDS)],
           q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS,
                                   description="a grid code or name, a village, a household number or address, "
                                               "an incident id or external id")],
           limit: Annotated[int, Query(ge=1, le=MAX_HITS)] = 10) -> dict[str, Any]:
    from gis.search import search as run_search

    return run_search(session, request_context(request, principal), q, limit=limit)


@router.get("/incidents/summary", summary="Numbers of the incidents in a view: open, overdue, by category, "
            "by state, per grid level, today's new", response_model=ViewSummary, **schemas.DATA,
            responses=schemas.problems(*schemas.READ))
def view_summary(
    session: SessionDep,
    principal: Annotated[Principal, requires(Permission.VIEW_INCIDENTS)],
    bbox: Annotated[str, Query(max_length=200, description="min_lon,min_lat,max_lon,max_lat (WGS84)")],
    filters: OpenFilters,
    top: Annotated[int, Query(ge=1, le=50, description="grids listed per level")] = 10,
) -> dict[str, Any]:
    from gis.incidents.summary import view_summary as summarise

    box = parse_bbox(bbox)
    assert box is not None
    return summarise(session, principal, box, filters, top=top)


@router.get("/shelters", summary="Shelters as GeoJSON points (name, kind, capacity), optionally in a view",
            response_class=schemas.GeoJSONResponse, response_model=ShelterCollection, **schemas.DATA,
            responses=schemas.problems(*schemas.READ))
def shelters(session: SessionDep, _: Annotated[Principal, requires(Permission.VIEW_SHELTERS)],
             bbox: Annotated[str | None, Query(max_length=200,
                                               description="min_lon,min_lat,max_lon,max_lat (WGS84)")] = None
             ) -> dict[str, Any]:
    from gis.shelters import shelter_features

    return shelter_features(session, parse_bbox(bbox))


# --- the page ---------------------------------------------------------------------------------------

@router.get("/maps/command", response_class=HTMLResponse, include_in_schema=False)
def command_page(request: Request, session: SessionDep, settings: SettingsDep,
                 principal: Annotated[Principal, Depends(require_page(Permission.REVIEW_INCIDENTS))]) -> HTMLResponse:
    """The command center: a page of a few kilobytes; every layer and number comes by URL."""
    from api.maps import ASSET_PREFIX
    from api.pages import STATIC_DIR, page_response, shell_of
    from maps.command_map import build_command_map

    extent = session.execute(text(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e FROM grid "
        "WHERE valid_to IS NULL AND level = 1) s")).one()
    town_bbox = None if extent[0] is None else [float(v) for v in extent]
    urls = {
        "search": "/search", "summary": "/incidents/summary", "tile_layers": "/tiles/layers",
        "tiles": "/tiles/{layer}/{z}/{x}/{y}.pbf", "incidents": "/incidents", "events": "/events/incidents",
        "hotspots": "/hotspots?format=geojson&permutations=99", "flood_risk": "/flood/risk?level=3",
        "grids": "/grids?level=3", "shelters": "/shelters", "emergencies": "/emergencies",
        "households": "/households?format=geojson&limit=5000",
    }
    can = {
        # Vector tiles and the live feed are other modules' routes: used where this checkout has them.
        "tiles": (HERE / "tiles.py").is_file(), "live": (HERE / "events.py").is_file(),
        "households": principal.can(Permission.VIEW_HOUSEHOLDS),
        "flood_risk": principal.can(Permission.VIEW_HOUSEHOLD_COUNTS),
        "shelters": principal.can(Permission.VIEW_SHELTERS),
        "emergencies": principal.can(Permission.VIEW_EMERGENCIES),
    }
    page = build_command_map(
        shell_of(request, session, principal), town_bbox=town_bbox, urls=urls, can=can, asset_prefix=ASSET_PREFIX,
        tile_url=settings.tile_url, tile_attribution=settings.tile_attribution,
        live_script=(STATIC_DIR / "live.js").is_file())
    return page_response(page)
