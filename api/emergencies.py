"""Declaring and closing emergencies (audited); while active they open personal fields in their extent."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from api import schemas
from api.deps import NoNul, SessionDep, SettingsDep, request_context
from api.security import requires
from gis import emergencies
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.errors import InputError, Problem
from gis.geometry_input import polygon_from_geojson

router = APIRouter(prefix="/emergencies", tags=["emergencies"])


class Declare(BaseModel):
    """The extent is named in exactly one way: pasted GeoJSON (`extent`), a stored flood extent
    (`extent_id`, as GET /flood/extents lists them) or a modelled scenario (`scenario`)."""

    title: Annotated[str, NoNul] = Field(min_length=1, max_length=200)
    reason: Annotated[str, NoNul] = Field(min_length=1, max_length=2000)
    extent: dict[str, Any] | None = Field(default=None,
                                          description="GeoJSON Polygon or MultiPolygon (or a Feature of one)")
    crs: str = Field(default="wgs84", max_length=40,
                     description="of `extent`: wgs84 | cgcs2000 | gcj02 | bd09 | EPSG:code")
    extent_id: int | None = Field(default=None, ge=1, le=2**62, description="a stored flood extent's id")
    scenario: Annotated[str, NoNul] | None = Field(
        default=None, min_length=1, max_length=40,
        description="a named scenario (2023-09-23) or a computed stage in metres (1.5), as GET /flood/scenarios lists")
    mode: Literal["fluvial", "pluvial"] = Field(default="fluvial", description="of a `scenario` given as a stage")

    def extent_fields(self) -> list[str]:
        return [name for name in DECLARE_FORMS if getattr(self, name) is not None]


DECLARE_FORMS = ("extent", "extent_id", "scenario")


class Close(BaseModel):
    reason: Annotated[str, NoNul] = Field(min_length=1, max_length=2000)


EmergencyId = Annotated[int, PathParam(ge=1, le=2**62)]


@router.get("", summary="Emergencies, newest last", response_model=list[schemas.Emergency], **schemas.DATA,
            responses=schemas.problems(*schemas.READ))
def list_all(
    session: SessionDep, _: Annotated[Principal, requires(Permission.VIEW_EMERGENCIES)], active: bool = False
) -> Any:
    return emergencies.list_emergencies(session, active_only=active)


@router.post("", status_code=201,
             summary="Declare an emergency over an extent: pasted GeoJSON, a stored extent's id or a scenario",
             response_model=schemas.Emergency,
             **schemas.DATA, responses=schemas.problems(*schemas.READ))
def declare(request: Request, session: SessionDep, settings: SettingsDep,
            principal: Annotated[Principal, requires(Permission.MANAGE_EMERGENCIES)], body: Declare) -> Any:
    given = body.extent_fields()
    if len(given) != 1:
        message = ("give exactly one of extent (GeoJSON), extent_id (a stored flood extent) or scenario "
                   "(a scenario name or a computed stage)")
        raise InputError([Problem(("body", name), message, "one_extent_form") for name in (given or DECLARE_FORMS)])
    source: dict[str, Any]
    if body.extent is not None:
        extent = polygon_from_geojson(body.extent, ("body", "extent"),
                                      max_vertices=settings.max_vertices_per_geometry, crs=body.crs)
        source = {"extent_from": "geojson"}
    elif body.extent_id is not None:
        extent = emergencies.flood_extent_geometry(session, body.extent_id, ("body", "extent_id"))
        source = {"extent_from": "extent_id", "extent_id": body.extent_id}
    else:
        extent_id, extent = emergencies.scenario_geometry(session, body.scenario or "", body.mode,
                                                          ("body", "scenario"))
        source = {"extent_from": "scenario", "scenario": body.scenario, "mode": body.mode, "extent_id": extent_id}
    return emergencies.declare(session, principal.user_id, body.title, body.reason, extent,
                               ctx=request_context(request, principal), source=source)


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
