"""Vector tiles (Mapbox Vector Tiles) of grids, incidents and households, each built by PostGIS in one statement.

A tile is `ST_AsMVT` over the rows the caller may see, filtered inside the statement by the same access
predicate as the lists (grids: every current grid, as `GET /grids`; incidents: `IncidentFilter.where`;
households: `gis.households.access_for`, with the personal fields of `gis.privacy.PERSONAL_FIELDS` present
only on rows where `Access.personal` holds). Nothing is ever dropped to keep a tile small: there is no
LIMIT; instead each layer has a low-zoom form. Grids show deeper levels from deeper zooms
(`GRID_LEVEL_MINZOOM`); incidents below `point_minzoom` and households below theirs are aggregated per
block of 16 × 16 screen pixels (`AGGREGATE_CELLS` blocks per tile side), each block one point feature
carrying how many it holds, so every row is counted in exactly one tile at every zoom.

Caching: `tile_data_version` (migration 0012) is bumped by statement-level triggers on every write that
can change a layer; a tile's ETag hashes the layer, the address, the filters, the caller's role, account
and grids, and that version (and, for incidents, the minute the overdue flags were computed for), so a
conditional request is answered 304 after one small read, without the tile statement.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.auth.principal import Principal
from gis.context import Context
from gis.errors import InputError, Problem
from gis.households import access_for
from gis.incidents.service import FLAGGED_SQL, IncidentFilter
from gis.privacy import PERSONAL_FIELDS

MAX_ZOOM = 22
EXTENT = 4096          # tile coordinate units per side (MVT's usual)
BUFFER = 64            # units drawn beyond the tile's edge, so lines and point symbols are not cut at it
AGGREGATE_CELLS = 16   # aggregation blocks per tile side: 16 screen pixels each on a 256-pixel tile
MEDIA_TYPE = "application/vnd.mapbox-vector-tile"

# The shallowest zoom at which each grid level is drawn (1 town, 2 area, 3 village, 4 group grid): at city
# scale (60,000 group grids) no tile then exceeds 500 KB (bench/tiles_bench.py measures it).
GRID_LEVEL_MINZOOM = {1: 0, 2: 0, 3: 10, 4: 12}


@dataclass(frozen=True)
class LayerSpec:
    name: str
    minzoom: int
    maxzoom: int
    point_minzoom: int | None            # single features from this zoom on; aggregates below it
    fields: dict[str, str]               # property -> what it holds (single features)
    aggregate_fields: dict[str, str] = field(default_factory=dict)


LAYERS: dict[str, LayerSpec] = {
    "grids": LayerSpec(
        "grids", 0, MAX_ZOOM, None,
        {"code": "string: the grid code", "name": "string", "level": "integer: 1 town, 2 area, 3 village, 4 group"},
    ),
    "incidents": LayerSpec(
        "incidents", 0, MAX_ZOOM, 14,
        {"id": "integer", "category": "string: category code", "state": "string: loop state",
         "overdue": "boolean: past its stage deadline", "flagged": "boolean: waits for the command center's review"},
        {"count": "integer: incidents in the block", "open": "integer: of them not closed",
         "overdue": "integer: of them past their stage deadline"},
    ),
    "households": LayerSpec(
        "households", 0, MAX_ZOOM, 15,
        {"id": "integer", "group_code": "string: the house's group grid (absent in a gap between grids)",
         "residents": "integer", "elderly": "integer", "children": "integer", "disabled": "integer",
         "pregnant": "integer", "bedridden": "integer", "floors": "integer",
         **{f: "string: personal; present only on households whose personal fields your role may see"
            for f in PERSONAL_FIELDS["household"]}},
        {"count": "integer: households in the block"},
    ),
}

# The non-personal household columns a point feature carries (the personal ones come from PERSONAL_FIELDS).
_HOUSEHOLD_COLUMNS = ("residents", "elderly", "children", "disabled", "pregnant", "bedridden", "floors")


@dataclass(frozen=True)
class TileAddress:
    z: int
    x: int
    y: int

    @classmethod
    def checked(cls, z: int, x: int, y: int) -> TileAddress:
        """The address, or InputError naming each coordinate outside its zoom's range."""
        if not 0 <= z <= MAX_ZOOM:
            raise InputError(Problem(("path", "z"), f"zoom must be 0..{MAX_ZOOM}"))
        top = 2**z - 1
        problems = [Problem(("path", name), f"{name} must be 0..{top} at zoom {z}")
                    for name, v in (("x", x), ("y", y)) if not 0 <= v <= top]
        if problems:
            raise InputError(problems)
        return cls(z, x, y)

    def params(self) -> dict[str, Any]:
        return {"tile_z": self.z, "tile_x": self.x, "tile_y": self.y}


@dataclass(frozen=True)
class Tile:
    """One answer: `content` None when the client's copy is current (304) or the tile is empty."""

    etag: str
    content: bytes | None
    not_modified: bool = False
    personal: bool = False   # the tile may carry personal fields: never stored by a cache


# --- SQL ------------------------------------------------------------------------------------------------

_ENV = "ST_TileEnvelope(CAST(:tile_z AS int), CAST(:tile_x AS int), CAST(:tile_y AS int))"
# The rows' candidates through the GiST index: the tile (with its buffer) as a lon/lat box.
_NEAR = ("{geom} && ST_Transform(ST_TileEnvelope(CAST(:tile_z AS int), CAST(:tile_x AS int), "
         "CAST(:tile_y AS int), margin => CAST(:margin AS float8)), 4326)")

GRIDS_SQL = f"""
    SELECT ST_AsMVT(t, 'grids', {EXTENT}, 'geom') FROM (
        SELECT g.code, g.name, g.level,
               ST_AsMVTGeom(ST_SimplifyPreserveTopology(ST_Transform(g.geom, 3857), :tolerance),
                            {_ENV}, {EXTENT}, {BUFFER}, true) AS geom
        FROM grid g
        WHERE g.valid_to IS NULL AND g.level <= :max_level AND {_NEAR.format(geom="g.geom")}
    ) t WHERE t.geom IS NOT NULL
"""

# Overdue: the rule of gis.incidents.loop.urgency as IncidentFilter's `overdue` writes it (past the stored
# stage deadline at `now`).
_OVERDUE = "coalesce(i.stage_deadline < :now, false)"

INCIDENT_POINTS_SQL = f"""
    SELECT ST_AsMVT(t, 'incidents', {EXTENT}, 'geom') FROM (
        SELECT i.id, i.category, i.state, {_OVERDUE} AS overdue, {FLAGGED_SQL} AS flagged,
               ST_AsMVTGeom(ST_Transform(i.geom, 3857), {_ENV}, {EXTENT}, {BUFFER}, true) AS geom
        FROM incident i
        WHERE {_NEAR.format(geom="i.geom")} AND {{cond}}
    ) t WHERE t.geom IS NOT NULL
"""

# Aggregates: each row's position in global block units at this zoom (Web Mercator, as the tile grid), so a
# row belongs to exactly one block and one tile (half-open ranges); a block is drawn at its rows' mean.
_BLOCK_X = "((ST_X({g}) + 180.0) / 360.0 * :blocks)"
_BLOCK_Y = "((1.0 - ln(tan(radians(ST_Y({g}))) + 1.0 / cos(radians(ST_Y({g})))) / pi()) / 2.0 * :blocks)"
_IN_TILE = "bx >= :bx0 AND bx < :bx0 + :cells AND by >= :by0 AND by < :by0 + :cells"
_BLOCK_POINT = "ST_MakePoint(round((ax - :bx0) * :unit), round((ay - :by0) * :unit))"

INCIDENT_BLOCKS_SQL = f"""
    WITH p AS (
        SELECT {_BLOCK_X.format(g="i.geom")} AS bx, {_BLOCK_Y.format(g="i.geom")} AS by,
               i.state <> 'closed' AS open, {_OVERDUE} AS overdue
        FROM incident i
        WHERE {_NEAR.format(geom="i.geom")} AND {{cond}}
    ), b AS (
        SELECT count(*) AS count, count(*) FILTER (WHERE open) AS open, count(*) FILTER (WHERE overdue) AS overdue,
               avg(bx) AS ax, avg(by) AS ay
        FROM p WHERE {_IN_TILE}
        GROUP BY floor(bx), floor(by)
    )
    SELECT ST_AsMVT(t, 'incidents', {EXTENT}, 'geom') FROM (
        SELECT count, open, overdue, {_BLOCK_POINT} AS geom FROM b
    ) t
"""

_PERSONAL = ", ".join(f"CASE WHEN h.shown THEN h.{f} END AS {f}" for f in PERSONAL_FIELDS["household"])
_HOUSEHOLD_PROPERTIES = ", ".join(("id", "group_code", *_HOUSEHOLD_COLUMNS, *PERSONAL_FIELDS["household"]))
_HOUSEHOLD_SELECT = ", ".join("h." + c for c in _HOUSEHOLD_COLUMNS)

# One statement: the tile, and the ids of the households whose personal fields it carries (for the audit).
HOUSEHOLD_POINTS_SQL = f"""
    WITH t AS (
        SELECT h.id, hg.group_code, {_HOUSEHOLD_SELECT}, {_PERSONAL}, h.shown,
               ST_AsMVTGeom(ST_Transform(h.geom, 3857), {_ENV}, {EXTENT}, {BUFFER}, true) AS geom
        FROM (SELECT h.*, ({{personal}}) AS shown FROM household h
              WHERE {_NEAR.format(geom="h.geom")} AND ({{rows}})) h
        LEFT JOIN LATERAL household_grid_at(h.geom) hg ON true
    )
    SELECT (SELECT ST_AsMVT(m, 'households', {EXTENT}, 'geom')
            FROM (SELECT {_HOUSEHOLD_PROPERTIES}, geom FROM t WHERE geom IS NOT NULL) m),
           (SELECT coalesce(array_agg(id ORDER BY id), '{{{{}}}}') FROM t WHERE shown AND geom IS NOT NULL)
"""

HOUSEHOLD_BLOCKS_SQL = f"""
    WITH p AS (
        SELECT {_BLOCK_X.format(g="h.geom")} AS bx, {_BLOCK_Y.format(g="h.geom")} AS by
        FROM household h
        WHERE {_NEAR.format(geom="h.geom")} AND ({{rows}})
    ), b AS (
        SELECT count(*) AS count, avg(bx) AS ax, avg(by) AS ay FROM p WHERE {_IN_TILE} GROUP BY floor(bx), floor(by)
    )
    SELECT ST_AsMVT(t, 'households', {EXTENT}, 'geom') FROM (SELECT count, {_BLOCK_POINT} AS geom FROM b) t
"""


# --- versions and ETags ---------------------------------------------------------------------------------

def data_versions(session: Session) -> dict[str, int]:
    """Each layer's data version: the sum over the slots the triggers of migration 0012 bump."""
    row = session.execute(text(
        "SELECT sum(grids) AS grids, sum(incidents) AS incidents, sum(households) AS households "
        "FROM tile_data_version")).mappings().one()
    return {k: int(v or 0) for k, v in row.items()}


def etag(layer: str, address: TileAddress, principal: Principal, version: int,
         filters: Mapping[str, Any] | None = None) -> str:
    """A weak validator (the gzip and identity bodies differ in bytes, not in meaning) over everything the
    tile's content depends on."""
    key = {
        "layer": layer, "tile": [address.z, address.x, address.y], "version": version,
        "role": str(principal.role), "user": principal.user_id, "scope": sorted(principal.scope_codes),
        "filters": dict(filters or {}),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return f'W/"{digest}"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether an If-None-Match header names `tag` (weak comparison, as RFC 9110 says for it)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    bare = tag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == bare for t in if_none_match.split(","))


# --- the layers -----------------------------------------------------------------------------------------

def _unit_m(z: int) -> float:
    """One tile coordinate unit in Web Mercator metres at zoom z."""
    return 2 * 20037508.342789244 / float(2**z) / EXTENT


def _block_params(address: TileAddress) -> dict[str, Any]:
    return {"blocks": float(2**address.z * AGGREGATE_CELLS), "cells": AGGREGATE_CELLS,
            "bx0": address.x * AGGREGATE_CELLS, "by0": address.y * AGGREGATE_CELLS,
            "unit": EXTENT / AGGREGATE_CELLS, "margin": 1.0 / EXTENT}


def _bytes(value: Any) -> bytes | None:
    data = bytes(value) if value is not None else b""
    return data or None


def grid_levels(z: int) -> int:
    """The deepest grid level drawn at zoom z."""
    return max(level for level, minzoom in GRID_LEVEL_MINZOOM.items() if z >= minzoom)


def grids_tile(session: Session, principal: Principal, address: TileAddress,
               if_none_match: str | None = None) -> Tile:
    """Current grids down to the level of the zoom (`GET /grids`'s rule: every current grid to every
    role that may view grids)."""
    tag = etag("grids", address, principal, data_versions(session)["grids"])
    if matches(if_none_match, tag):
        return Tile(tag, None, not_modified=True)
    params = {**address.params(), "max_level": grid_levels(address.z), "tolerance": _unit_m(address.z),
              "margin": BUFFER / EXTENT}
    return Tile(tag, _bytes(session.execute(text(GRIDS_SQL), params).scalar_one()))


def incident_filter_key(filters: IncidentFilter) -> dict[str, Any]:
    return {k: v for k, v in asdict(filters).items() if v is not None and v is not False}


def incidents_tile(session: Session, principal: Principal, address: TileAddress, filters: IncidentFilter,
                   *, now: dt.datetime | None = None, if_none_match: str | None = None) -> Tile:
    """The incidents `principal` may see that match `filters` (IncidentFilter's one predicate): single
    points from the layer's point zoom, blocks with count/open/overdue below it. Overdue flags are
    worked out for the current minute (part of the ETag), so a cached tile is never more than a minute
    behind a deadline passing."""
    now = (now or dt.datetime.now(dt.UTC)).replace(second=0, microsecond=0)
    tag = etag("incidents", address, principal, data_versions(session)["incidents"],
               {**incident_filter_key(filters), "now": now.isoformat()})
    if matches(if_none_match, tag):
        return Tile(tag, None, not_modified=True)
    cond, params = filters.where(principal, now)
    params.update(address.params())
    point_minzoom = LAYERS["incidents"].point_minzoom or 0
    if address.z >= point_minzoom:
        sql = INCIDENT_POINTS_SQL.format(cond=cond)
        params["margin"] = BUFFER / EXTENT
    else:
        sql = INCIDENT_BLOCKS_SQL.format(cond=cond)
        params.update(_block_params(address))
    return Tile(tag, _bytes(session.execute(text(sql), params).scalar_one()))


def households_tile(session: Session, ctx: Context, address: TileAddress,
                    if_none_match: str | None = None) -> Tile:
    """The households the caller may see (`access_for`): points from the layer's point zoom with their
    personal fields only where `Access.personal` holds (absent otherwise: no masked copy either), blocks
    with a count below it. A tile that carries personal fields is audited like the household list
    (`read_personal`, the ids whose fields it carries), one row per request, in the request's transaction."""
    principal = ctx.principal
    if principal is None:
        raise InputError(Problem(("principal",), "household tiles need a signed-in account"))
    acc = access_for(principal)
    point_minzoom = LAYERS["households"].point_minzoom or 0
    points = address.z >= point_minzoom
    personal = points and acc.personal != "FALSE" and acc.rows != "FALSE"
    tag = etag("households", address, principal, data_versions(session)["households"])
    if matches(if_none_match, tag):
        return Tile(tag, None, not_modified=True, personal=personal)
    params = {**acc.params, **address.params()}
    if not points:
        params.update(_block_params(address))
        content = session.execute(text(HOUSEHOLD_BLOCKS_SQL.format(rows=acc.rows)), params).scalar_one()
        return Tile(tag, _bytes(content))
    params["margin"] = BUFFER / EXTENT
    content, shown = session.execute(
        text(HOUSEHOLD_POINTS_SQL.format(rows=acc.rows, personal=acc.personal)), params).one()
    if shown:
        ctx.audit(session, "read_personal", resource="household", resource_ids=list(shown),
                  detail={"format": "mvt", "tile": f"{address.z}/{address.x}/{address.y}"})
    return Tile(tag, _bytes(content), personal=bool(shown) or personal)
