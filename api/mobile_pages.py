"""The grid member's phone: my grid and my tasks (/m/), report an incident (/m/report), and the small
JSON answers those pages need (/places/suggest, /me/grids)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api import schemas
from api.deps import SessionDep
from api.security import context_of, requires
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.context import Context
from gis.grid_member import my_grids as my_grids_of
from gis.incidents.gazetteer import MAX_PLACE_CHARS, MAX_SUGGESTIONS, suggest

router = APIRouter(tags=["mobile"])


class PlaceSuggestion(BaseModel):
    label: str = Field(description="the stored name: sent as a report's `place`, it names this place")
    kind: str = Field(description="town | area | village | grid | natural_village | shelter | household")
    lon: float
    lat: float
    code: str | None = Field(default=None, description="the grid's code, for the grid kinds")
    household_id: int | None = None


class PlaceSuggestions(BaseModel):
    items: list[PlaceSuggestion]
    more: bool = Field(description="more names matched than were offered")


@router.get("/places/suggest", summary="Place names for what a reporter has typed so far (offline gazetteer)",
            response_model=PlaceSuggestions, **schemas.DATA, responses=schemas.problems(*schemas.READ))
def place_suggestions(
    session: SessionDep,
    ctx: Annotated[Context, context_of(Permission.REPORT_INCIDENTS)],
    q: Annotated[str, Query(min_length=1, max_length=MAX_PLACE_CHARS, description="the text typed so far")],
    limit: Annotated[int, Query(ge=1, le=MAX_SUGGESTIONS)] = 8,
) -> dict[str, Any]:
    found = suggest(session, ctx, q, limit)
    return {"items": [vars(s) for s in found.items], "more": found.more}


class StaffCard(BaseModel):
    id: int
    name: str
    phone: str | None = None
    role: str = Field(description="grid_leader | grid_member | party_household | supervisor")


class MyGrid(BaseModel):
    code: str
    name: str
    level: int
    path: list[str] = Field(description="the names of the grids above it, town first")
    staff: list[StaffCard] = Field(description="who serves in it, leader first (the grid's public board)")


class MyGrids(BaseModel):
    grids: list[MyGrid] = Field(description="the grids of the caller's scope; none for roles without one")


@router.get("/me/grids", summary="The grids I serve in, with their staff (the phone's start page)",
            response_model=MyGrids, **schemas.DATA, responses=schemas.problems(*schemas.SIGNED_IN))
def my_grids(session: SessionDep, principal: Annotated[Principal, requires(Permission.VIEW_GRIDS)]) -> dict[str, Any]:
    return {"grids": my_grids_of(session, principal)}
