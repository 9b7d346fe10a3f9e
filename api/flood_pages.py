"""The flood emergency page (/maps/flood) and the GeoJSON layers it fetches for the part of the town in view."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import text

from api import schemas
from api.deps import SessionDep, SettingsDep, check_page_limit
from api.grids import parse_bbox
from api.security import require_page, requires
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.flood import finder, layers

router = APIRouter(tags=["flood"])

ExtentId = Annotated[int | None, Query(ge=1, le=2**62, description="a stored flood extent's id")]
Scenario = Annotated[str | None, Query(max_length=40, pattern=r"^[0-9A-Za-z._\-]+$",
                                       description="a named scenario (e.g. 2023-09-23) or a stage in m (e.g. 1.5)")]
BboxQuery = Annotated[str | None, Query(max_length=200, description="min_lon,min_lat,max_lon,max_lat: the view")]
Zoom = Annotated[int, Query(ge=0, le=22, description="the map's zoom: detail finer than a pixel is left out")]


# --- answers ------------------------------------------------------------------------------------

Position = list[float]


class LineString(BaseModel):
    type: Literal["LineString"]
    coordinates: list[Position]


class MultiLineString(BaseModel):
    type: Literal["MultiLineString"]
    coordinates: list[list[Position]]


Line = Annotated[LineString | MultiLineString, Field(discriminator="type")]


class WaterProperties(BaseModel):
    depth_class: str | None = Field(description="0-0.5, 0.5-1, 1-2 or >2 (m); null: an observed extent, no depths")
    area_m2: float = Field(description="of the whole class, not only the part in view")


class WaterFeature(BaseModel):
    type: Literal["Feature"]
    properties: WaterProperties
    geometry: schemas.Area


class WaterLayerProperties(BaseModel):
    extent_id: int
    name: str
    source: schemas.ExtentSource
    stage_m: float | None
    mode: schemas.FloodMode | None


class WaterCollection(BaseModel):
    type: Literal["FeatureCollection"]
    properties: WaterLayerProperties
    features: list[WaterFeature]


class ShelterProperties(BaseModel):
    id: int
    name: str
    kind: str | None
    capacity: int = Field(description="people")
    dry: bool | None = Field(description="outside the water (null without an extent)")
    assigned: int | None = Field(description="residents the extent's list places here (null without an extent)")
    remaining: int | None = Field(description="room left (null without an extent)")


class ShelterFeature(BaseModel):
    type: Literal["Feature"]
    id: int
    properties: ShelterProperties
    geometry: schemas.Point


class ShelterLayerProperties(BaseModel):
    extent_id: int | None


class ShelterCollection(BaseModel):
    type: Literal["FeatureCollection"]
    properties: ShelterLayerProperties
    features: list[ShelterFeature]


class AssignmentProperties(BaseModel):
    household_id: int
    household_no: str
    priority_rank: int = Field(description="1 = rescue first")
    shelter_id: int
    shelter_name: str
    distance_m: schemas.Real | None


class AssignmentFeature(BaseModel):
    type: Literal["Feature"]
    id: int
    properties: AssignmentProperties
    geometry: LineString


class AssignmentLayerProperties(BaseModel):
    extent_id: int
    households: int = Field(description="households of the extent the reader may see")
    returned: int = Field(description="households whose lines this answer holds (rescue order)")


class AssignmentCollection(BaseModel):
    type: Literal["FeatureCollection"]
    properties: AssignmentLayerProperties
    features: list[AssignmentFeature]


class NetworkProperties(BaseModel):
    kind: Literal["road", "river"]
    name: str | None
    road_class: str | None


class NetworkFeature(BaseModel):
    type: Literal["Feature"]
    id: str
    properties: NetworkProperties
    geometry: Line


class Empty(BaseModel):
    pass


class NetworkCollection(BaseModel):
    type: Literal["FeatureCollection"]
    properties: Empty
    features: list[NetworkFeature]


class PlaceProperties(BaseModel):
    kind: Literal["village", "natural_village"]
    name: str
    village_code: schemas.GridCode


class PlaceFeature(BaseModel):
    type: Literal["Feature"]
    properties: PlaceProperties
    geometry: schemas.Point


class PlaceCollection(BaseModel):
    type: Literal["FeatureCollection"]
    properties: Empty
    features: list[PlaceFeature]


def _geojson(fc: dict[str, Any]) -> Response:
    return Response(json.dumps(fc, ensure_ascii=False, default=str), media_type="application/geo+json")


# --- layers -------------------------------------------------------------------------------------


@router.get("/flood/map/water", summary="The water of a flood extent in view, by depth class (GeoJSON)",
            response_model=WaterCollection, response_class=schemas.GeoJSONResponse, **schemas.DATA,
            responses=schemas.problems(*schemas.ONE))
def water(session: SessionDep, _: Annotated[Principal, requires(Permission.VIEW_EMERGENCIES)],
          extent: ExtentId = None, scenario: Scenario = None, bbox: BboxQuery = None, zoom: Zoom = 14) -> Any:
    ext = finder.resolve_extent(session, extent, scenario)
    return _geojson(layers.water(session, ext, parse_bbox(bbox), zoom))


@router.get("/flood/map/shelters", summary="Shelters in view, with the room an extent's list leaves (GeoJSON)",
            response_model=ShelterCollection, response_class=schemas.GeoJSONResponse, **schemas.DATA,
            responses=schemas.problems(*schemas.ONE))
def shelters(session: SessionDep, _: Annotated[Principal, requires(Permission.VIEW_SHELTERS)],
             extent: ExtentId = None, scenario: Scenario = None, bbox: BboxQuery = None) -> Any:
    ext = finder.resolve_extent(session, extent, scenario) if (extent, scenario) != (None, None) else None
    return _geojson(layers.shelters(session, ext, parse_bbox(bbox)))


@router.get("/flood/map/assignments",
            summary="Lines from the households you may see to their shelters, in rescue order (GeoJSON)",
            response_model=AssignmentCollection, response_class=schemas.GeoJSONResponse, **schemas.DATA,
            responses=schemas.problems(*schemas.ONE))
def assignments(session: SessionDep, settings: SettingsDep,
                principal: Annotated[Principal, requires(Permission.VIEW_HOUSEHOLDS)],
                extent: ExtentId = None, scenario: Scenario = None,
                limit: Annotated[int, Query(ge=1)] = 2000) -> Any:
    check_page_limit(limit, settings)
    ext = finder.resolve_extent(session, extent, scenario)
    return _geojson(layers.assignment_lines(session, principal, ext, limit))


@router.get("/flood/map/network", summary="Roads and rivers in view, simplified for the zoom (GeoJSON)",
            response_model=NetworkCollection, response_class=schemas.GeoJSONResponse, **schemas.DATA,
            responses=schemas.problems(*schemas.READ))
def network(session: SessionDep, _: Annotated[Principal, requires(Permission.VIEW_EMERGENCIES)],
            bbox: BboxQuery = None, zoom: Zoom = 14) -> Any:
    return _geojson(layers.roads_and_rivers(session, parse_bbox(bbox), zoom))


@router.get("/flood/map/places", summary="Village and natural-village names in view, to label (GeoJSON)",
            response_model=PlaceCollection, response_class=schemas.GeoJSONResponse, **schemas.DATA,
            responses=schemas.problems(*schemas.READ))
def places(session: SessionDep, _: Annotated[Principal, requires(Permission.VIEW_EMERGENCIES)],
           bbox: BboxQuery = None) -> Any:
    return _geojson(layers.places(session, parse_bbox(bbox)))


# --- the page -----------------------------------------------------------------------------------


@router.get("/maps/flood", response_class=HTMLResponse, include_in_schema=False)
def flood_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(require_page(Permission.VIEW_EMERGENCIES))],
) -> HTMLResponse:
    """Pick a scenario or an extent (or upload or draw one), see the water, the households in rescue
    order, shelters and routes; declare or close the emergency; print the 明白卡."""
    from api.maps import ASSET_PREFIX, _missing_assets_page
    from api.pages import page_response, shell_of
    from maps.flood_map import build_flood_page

    missing = _missing_assets_page()
    if missing is not None:
        return missing
    town = session.execute(text(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) AS e FROM grid "
        "WHERE level = 1 AND valid_to IS NULL) s")).one()
    page = build_flood_page(
        shell_of(request, session, principal),
        town_bbox=None if town[0] is None else [round(float(v), 6) for v in town],
        can_declare=principal.can(Permission.MANAGE_EMERGENCIES),
        can_draw=principal.can(Permission.EDIT_FLOOD_EXTENTS),
        asset_prefix=ASSET_PREFIX, tile_url=settings.tile_url, tile_attribution=settings.tile_attribution,
    )
    return page_response(page)
