"""Declaring and closing emergencies (audited); while active they open personal fields in their extent."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from api import schemas
from api.deps import NoNul, SessionDep, SettingsDep, request_context
from api.security import requires
from gis import emergencies
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.geometry_input import polygon_from_geojson

router = APIRouter(prefix="/emergencies", tags=["emergencies"])


class Declare(BaseModel):
    title: Annotated[str, NoNul] = Field(min_length=1, max_length=200)
    reason: Annotated[str, NoNul] = Field(min_length=1, max_length=2000)
    extent: dict[str, Any] = Field(description="GeoJSON Polygon or MultiPolygon (or a Feature of one)")
    crs: str = Field(default="wgs84", max_length=40, description="wgs84 | cgcs2000 | gcj02 | bd09 | EPSG:code")


class Close(BaseModel):
    reason: Annotated[str, NoNul] = Field(min_length=1, max_length=2000)


EmergencyId = Annotated[int, PathParam(ge=1, le=2**62)]


@router.get("", summary="Emergencies, newest last", response_model=list[schemas.Emergency], **schemas.DATA,
            responses=schemas.problems(*schemas.READ))
def list_all(
    session: SessionDep, _: Annotated[Principal, requires(Permission.VIEW_EMERGENCIES)], active: bool = False
) -> Any:
    return emergencies.list_emergencies(session, active_only=active)


@router.post("", status_code=201, summary="Declare an emergency over an extent", response_model=schemas.Emergency,
             **schemas.DATA, responses=schemas.problems(*schemas.READ))
def declare(request: Request, session: SessionDep, settings: SettingsDep,
            principal: Annotated[Principal, requires(Permission.MANAGE_EMERGENCIES)], body: Declare) -> Any:
    extent = polygon_from_geojson(body.extent, ("body", "extent"), max_vertices=settings.max_vertices_per_geometry,
                                  crs=body.crs)
    return emergencies.declare(session, principal.user_id, body.title, body.reason, extent,
                               ctx=request_context(request, principal))


@router.get("/{emergency_id}", summary="One emergency", response_model=schemas.Emergency, **schemas.DATA,
            responses=schemas.problems(*schemas.ONE))
def one(
    session: SessionDep, _: Annotated[Principal, requires(Permission.VIEW_EMERGENCIES)], emergency_id: EmergencyId
) -> Any:
    return emergencies.get(session, emergency_id)


@router.post("/{emergency_id}/close", summary="Close an emergency; its extent stops opening personal fields",
             response_model=schemas.Emergency, **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def close(request: Request, session: SessionDep,
          principal: Annotated[Principal, requires(Permission.MANAGE_EMERGENCIES)],
          emergency_id: EmergencyId, body: Close) -> Any:
    return emergencies.close(session, emergency_id, principal.user_id, body.reason,
                             ctx=request_context(request, principal))
