"""Vector tile endpoints: `/tiles/{layer}/{z}/{x}/{y}.pbf` (grids, incidents, households) and `/tiles/layers`.

Each layer is its own route with its own permission; the tiles are built by gis/tiles.py. Answers carry a
weak ETag (If-None-Match -> 304), `Cache-Control: private, no-cache` (`no-store` where the tile may carry
personal fields) and are gzipped here when the client accepts it (`Content-Encoding: gzip`, `Vary:
Accept-Encoding`); the app's GZipMiddleware leaves a response that already has a Content-Encoding alone.
An empty tile is `204 No Content`: both renderers (Leaflet.VectorGrid, MapLibre) draw it as an empty tile,
and it costs no body.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api import incident_params, schemas
from api.compression import gzip_bytes
from api.deps import Reason, SessionDep, request_context
from api.lean import LeanRoute, lean, params_model
from api.security import Check, checks, requires
from gis import clock, tiles
from gis.auth.principal import Principal
from gis.auth.roles import Permission

router = APIRouter(prefix="/tiles", tags=["tiles"], route_class=LeanRoute)

Z = Annotated[int, PathParam(ge=0, le=tiles.MAX_ZOOM, description="zoom 0..22")]
X = Annotated[int, PathParam(ge=0, description="column 0..2^z-1")]
Y = Annotated[int, PathParam(ge=0, description="row 0..2^z-1 (from the north)")]

LAYER_PERMISSION = {
    "grids": Permission.VIEW_GRIDS,
    "incidents": Permission.VIEW_INCIDENTS,
    "households": Permission.VIEW_HOUSEHOLDS,
}

TILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the tile (Mapbox Vector Tile; source layer = the layer's name)",
          "content": {tiles.MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
    204: {"description": "an empty tile: nothing the caller may see lies in it"},
    304: {"description": "the caller's copy (If-None-Match) is current"},
    **schemas.problems(*schemas.READ),
}


def _accepts_gzip(request: Request) -> bool:
    for part in request.headers.get("accept-encoding", "").split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip().removeprefix("q=").strip() if params.strip().startswith("q=") else "1"
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False


# Smaller tiles go as they are: compressing a few hundred bytes saves less than it costs (both ends).
GZIP_MIN_BYTES = 1024


# A past instant's grid tile does not change (only a late-applied scheduled publish could still reach into the
# last moments before it): a client may keep it a day, where today's tiles are revalidated every time.
PAST_TILE_MAX_AGE = "private, max-age=86400"
PAST_TILE_SLACK = dt.timedelta(hours=1)

def tile_response(request: Request, tile: tiles.Tile, cache_control: str | None = None) -> Response:
    headers = {"ETag": tile.etag, "Vary": "Accept-Encoding",
               "Cache-Control": "private, no-store" if tile.personal else (cache_control or "private, no-cache")}
    if tile.not_modified:
        return Response(status_code=304, headers=headers)
    if tile.content is None:
        return Response(status_code=204, headers=headers)
    body = tile.content
    if len(body) >= GZIP_MIN_BYTES and _accepts_gzip(request):
        body = gzip_bytes(body)
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=tiles.MEDIA_TYPE, headers=headers)


def _address(z: int, x: int, y: int) -> tiles.TileAddress:
    return tiles.TileAddress.checked(z, x, y)


TilePath = params_model("TilePath", z=Z, x=X, y=Y)
# Each tile route's query as one model: its lean path validates it, FastAPI documents it from the same model.
GridTileQuery = params_model("GridTileQuery", as_of=(schemas.AsOf, None))
HouseholdTileQuery = params_model("HouseholdTileQuery", reason=(Reason, None))


def _grids_tile(request: Request, session: Any, check: Check, *, z: int, x: int, y: int,
                as_of: dt.datetime | None) -> Response:
    instant = schemas.checked_as_of(as_of)
    address, if_none_match = _address(z, x, y), request.headers.get("if-none-match")
    # The credential's check goes in the tile's message (one round trip), which also ends the transaction.
    tile = check.within(session, lambda principal: tiles.grids_tile(session, principal, address, if_none_match,
                                                                    commit=True, as_of=instant))
    past = instant is not None and instant < clock.now() - PAST_TILE_SLACK
    return tile_response(request, tile, PAST_TILE_MAX_AGE if past else None)


# Each tile route: the token check, the tile and gzip in one worker thread (one thread hop per tile), served by
# its lean path (api.lean: no dependency solving), which a map asking for dozens of tiles at once pays per tile.
@router.get("/grids/{z}/{x}/{y}.pbf", summary="Grid boundaries as a vector tile (deeper levels at deeper zooms)",
            response_class=Response, responses=TILE_RESPONSES)
@lean(_grids_tile, Permission.VIEW_GRIDS, path=TilePath, query=GridTileQuery, on_loop=True)
async def grids_tile(request: Request, session: SessionDep, check: Annotated[Check, checks(Permission.VIEW_GRIDS)],
                     z: Z, x: X, y: Y,
                     query: Annotated[GridTileQuery, Query()]) -> Response:  # type: ignore[valid-type]
    return await run_in_threadpool(lambda: _grids_tile(request, session, check, z=z, x=x, y=y, **vars(query)))


# The filters of OpenFilters as ONE query model (validated at once, no dependency to solve): a map asks for dozens
# of tiles at once, and this is a tile's fixed cost (bench/README.md, "The fixed cost of a request").
IncidentTileQuery = incident_params.query_model("IncidentTileQuery", open_default=True, escalation=False)


def _incidents_tile(request: Request, session: Any, check: Check, *, z: int, x: int, y: int, query: Any) -> Response:
    filters = incident_params.filter_of(query)
    address, if_none_match = _address(z, x, y), request.headers.get("if-none-match")
    tile = check.within(session, lambda principal: tiles.incidents_tile(session, principal, address, filters,
                                                                        if_none_match=if_none_match, commit=True))
    return tile_response(request, tile)


@router.get("/incidents/{z}/{x}/{y}.pbf", summary="Incidents you may see as a vector tile (aggregated below z14)",
            response_class=Response, responses=TILE_RESPONSES)
@lean(_incidents_tile, Permission.VIEW_INCIDENTS, path=TilePath, query=IncidentTileQuery, query_as="query",
      on_loop=True)
async def incidents_tile(
    request: Request,
    session: SessionDep,
    check: Annotated[Check, checks(Permission.VIEW_INCIDENTS)],
    z: Z, x: X, y: Y,
    query: Annotated[IncidentTileQuery, Query()],  # type: ignore[valid-type]  # a model made at import
) -> Response:
    return await run_in_threadpool(lambda: _incidents_tile(request, session, check, z=z, x=x, y=y, query=query))


def _households_tile(request: Request, session: Any, check: Check, *, z: int, x: int, y: int,
                     reason: str | None) -> Response:
    principal = check(session)
    tile = tiles.households_tile(session, request_context(request, principal, reason), _address(z, x, y),
                                 request.headers.get("if-none-match"))
    session.commit()   # the audit row with the tile, here in the worker thread (no teardown thread hop)
    return tile_response(request, tile)


@router.get("/households/{z}/{x}/{y}.pbf",
            summary="Households you may see as a vector tile (personal fields only where your role may see them)",
            response_class=Response, responses=TILE_RESPONSES)
@lean(_households_tile, Permission.VIEW_HOUSEHOLDS, path=TilePath, query=HouseholdTileQuery, on_loop=True)
async def households_tile(request: Request, session: SessionDep,
                          check: Annotated[Check, checks(Permission.VIEW_HOUSEHOLDS)], z: Z, x: X, y: Y,
                          query: Annotated[HouseholdTileQuery, Query()]) -> Response:  # type: ignore[valid-type]
    return await run_in_threadpool(lambda: _households_tile(request, session, check, z=z, x=x, y=y,
                                                            **vars(query)))


class TileLayer(BaseModel):
    name: str = Field(description="the layer, also the MVT source-layer name")
    url: str = Field(description="URL template, {z}/{x}/{y} filled in by the map")
    minzoom: int
    maxzoom: int
    point_minzoom: int | None = Field(description="single features from this zoom on; aggregates below it "
                                                  "(null: never aggregated)")
    fields: dict[str, str] = Field(description="properties of single features")
    aggregate_fields: dict[str, str] = Field(description="properties of aggregate features (`count` marks one)")
    level_minzoom: dict[str, int] | None = Field(
        default=None, description="grids: the shallowest zoom each level (1 town … 4 group grid) is drawn at")


class TileLayers(BaseModel):
    extent: int = Field(description="tile coordinate units per side")
    layers: list[TileLayer] = Field(description="the layers your role may read")


@router.get("/layers", summary="The vector tile layers you may read: zooms, URL templates, fields",
            response_model=TileLayers, responses=schemas.problems(*schemas.SIGNED_IN))
def layers(principal: Annotated[Principal, requires(Permission.VIEW_GRIDS)]) -> TileLayers:
    out = []
    for name, spec in tiles.LAYERS.items():
        if not principal.can(LAYER_PERMISSION[name]):
            continue
        out.append(TileLayer(
            name=name, url=f"/tiles/{name}/{{z}}/{{x}}/{{y}}.pbf", minzoom=spec.minzoom, maxzoom=spec.maxzoom,
            point_minzoom=spec.point_minzoom, fields=spec.fields, aggregate_fields=spec.aggregate_fields,
            level_minzoom={str(k): v for k, v in tiles.GRID_LEVEL_MINZOOM.items()} if name == "grids" else None))
    return TileLayers(extent=tiles.EXTENT, layers=out)
