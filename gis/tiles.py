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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from gis.auth.principal import Principal
from gis.context import Context
from gis.db import driver_rows, script_rows
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

_GRIDS_SQL = f"""
    SELECT ST_AsMVT(t, 'grids', {EXTENT}, 'geom') FROM (
        SELECT g.code, g.name, g.level,
               ST_AsMVTGeom(ST_SimplifyPreserveTopology(ST_Transform(g.geom, 3857), :tolerance),
                            {_ENV}, {EXTENT}, {BUFFER}, true) AS geom
        FROM grid g
        WHERE {{alive}} AND g.level <= :max_level AND {_NEAR.format(geom="g.geom")}
    ) t WHERE t.geom IS NOT NULL
"""
# The current versions; or, with `as_of`, the versions valid at that instant (GET /grids's rule:
# valid_from <= as_of < coalesce(valid_to, infinity), the `period` range).
GRIDS_SQL = _GRIDS_SQL.format(alive="g.valid_to IS NULL")
GRIDS_AS_OF_SQL = _GRIDS_SQL.format(alive="g.period @> CAST(:as_of AS timestamptz)")

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
# `OFFSET 0` keeps each subquery whole, so the position is worked out once per row, not once per use.
_BLOCKS = """
    SELECT bx, by, floor(bx) AS cx, floor(by) AS cy{extra} FROM (
        SELECT (lon + 180.0) / 360.0 * :blocks AS bx,
               (1.0 - ln(tan(phi) + 1.0 / cos(phi)) / pi()) / 2.0 * :blocks AS by{extra}
        FROM (SELECT ST_X({g}) AS lon, radians(ST_Y({g})) AS phi{columns} FROM {table}
              WHERE {near} AND {{cond}} OFFSET 0) r
        OFFSET 0) q
"""
_IN_TILE = "cx >= :bx0 AND cx < :bx0 + :cells AND cy >= :by0 AND cy < :by0 + :cells"
_BLOCK_POINT = "ST_MakePoint(round((ax - :bx0) * :unit), round((ay - :by0) * :unit))"

INCIDENT_BLOCKS_SQL = f"""
    WITH p AS ({_BLOCKS.format(
        g="i.geom", table="incident i", near=_NEAR.format(geom="i.geom"), extra=", open, overdue",
        columns=f", i.state <> 'closed' AS open, {_OVERDUE} AS overdue")}
    ), b AS (
        SELECT count(*) AS count, count(*) FILTER (WHERE open) AS open, count(*) FILTER (WHERE overdue) AS overdue,
               avg(bx) AS ax, avg(by) AS ay
        FROM p WHERE {_IN_TILE} GROUP BY cx, cy
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
    WITH p AS ({_BLOCKS.format(g="h.geom", table="household h", near=_NEAR.format(geom="h.geom"), extra="",
                               columns="").replace("{cond}", "({rows})")}
    ), b AS (
        SELECT count(*) AS count, avg(bx) AS ax, avg(by) AS ay FROM p WHERE {_IN_TILE} GROUP BY cx, cy
    )
    SELECT ST_AsMVT(t, 'households', {EXTENT}, 'geom') FROM (SELECT count, {_BLOCK_POINT} AS geom FROM b) t
"""


@dataclass(frozen=True)
class Statement:
    """A tile's one SQL statement, its parameters, and whether it aggregates (blocks) or draws rows."""

    sql: str
    params: dict[str, Any]
    aggregate: bool = False

    def run(self, conn: Session | Connection) -> tuple[Any, ...]:
        """Its one row (the tile's bytes, then any extra column), in the caller's transaction.

        Planner settings first, for this transaction only: a plan made for this tile's values (psycopg
        prepares a statement run five times, and PostgreSQL's generic plan for it, made without knowing the
        tile, took 8.7 s instead of 1.3 s for a city-wide incident tile); no JIT (compiling a tile's
        expressions took longer than running them: 1.2 s against 0.2 s for a city-wide grid tile); and for
        aggregates no sort (the planner cannot know how few blocks a tile has, expects a group per row and
        would sort a million rows, on disk, instead of hashing them into a few hundred blocks).
        The settings and the statement go in one message (`gis.db.script_rows`: one round trip)."""
        return self.run_with(conn)[-1]

    def run_with(self, conn: Session | Connection, before: tuple[str, ...] = (),
                 commit: bool = False) -> list[tuple[Any, ...]]:
        """`run`, with the one-row statements `before` sent in the same message after the planner settings
        (e.g. the layer's data version, read in the same transaction), and with `commit` the caller's
        transaction ended by a COMMIT at its end (for a request that writes nothing after the tile).
        Returns each statement's one row: `before`'s, then the tile's."""
        settings = ("SELECT set_config('plan_cache_mode', 'force_custom_plan', true), set_config('jit', 'off', true), "
                    f"set_config('enable_sort', '{'off' if self.aggregate else 'on'}', true)")
        results = script_rows(conn, [settings, *before, self.sql, *(["COMMIT"] if commit else [])], self.params,
                              tuples=True)
        return [tuple(rows[0]) for rows in results[1:]]


# --- versions and ETags ---------------------------------------------------------------------------------

def _version_sql(layer: str) -> str:
    """A layer's data version: the sum over the slots the triggers of migration 0012 bump."""
    return f"SELECT coalesce(sum({layer}), 0) FROM tile_data_version"


def _tile(session: Session, layer: str, statement: Statement, tag_of: Callable[[int], str],
          if_none_match: str | None, commit: bool) -> tuple[str, tuple[Any, ...] | None]:
    """(ETag, the statement's row; None when `if_none_match` names the ETag: 304).

    Without If-None-Match the version is read in the tile's own message (one round trip for both); with
    one, first alone (a 304 then costs that small read only), then the tile."""
    if if_none_match:
        version = int(driver_rows(session, _version_sql(layer), {})[0]["coalesce"])
        tag = tag_of(version)
        if matches(if_none_match, tag):
            return tag, None
        return tag, statement.run_with(session, commit=commit)[-1]
    (version,), row = statement.run_with(session, (_version_sql(layer),), commit=commit)
    return tag_of(int(version)), row


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


def grids_statement(address: TileAddress, as_of: dt.datetime | None = None) -> Statement:
    """A grid tile's statement: one row, the tile's bytes (the grids of the instant `as_of`, current if None)."""
    params = {**address.params(), "max_level": grid_levels(address.z), "tolerance": _unit_m(address.z),
              "margin": BUFFER / EXTENT}
    if as_of is None:
        return Statement(GRIDS_SQL, params)
    return Statement(GRIDS_AS_OF_SQL, {**params, "as_of": as_of})


def grids_tile(session: Session, principal: Principal, address: TileAddress,
               if_none_match: str | None = None, *, commit: bool = False, as_of: dt.datetime | None = None) -> Tile:
    """Current grids down to the level of the zoom (`GET /grids`'s rule: every current grid to every
    role that may view grids), or those valid at the instant `as_of` (timezone-aware). `commit`: end the
    caller's transaction with the tile's message (a request that writes nothing after it; its session's
    commit then sends nothing). The ETag covers `as_of` (as UTC), so a past instant's tile never answers
    for today's, and still the data version (a scheduled publish applied late may change the recent past)."""
    key = None if as_of is None else {"as_of": as_of.astimezone(dt.UTC).isoformat()}
    tag, row = _tile(session, "grids", grids_statement(address, as_of),
                     lambda v: etag("grids", address, principal, v, key), if_none_match, commit)
    if row is None:
        return Tile(tag, None, not_modified=True)
    return Tile(tag, _bytes(row[0]))


def incident_filter_key(filters: IncidentFilter) -> dict[str, Any]:
    # The fields as they are (`vars`, not `asdict`: no deep copy of each on every tile; the key's JSON is the same).
    return {k: v for k, v in vars(filters).items() if v is not None and v is not False}


def tile_now(now: dt.datetime | None = None) -> dt.datetime:
    """The time an incident tile's overdue flags are worked out for: the current minute."""
    return (now or dt.datetime.now(dt.UTC)).replace(second=0, microsecond=0)


def incidents_statement(principal: Principal, address: TileAddress, filters: IncidentFilter,
                        now: dt.datetime) -> Statement:
    """An incident tile's statement: one row, the tile's bytes."""
    cond, params = filters.where(principal, now)
    params.update(address.params())
    if address.z >= (LAYERS["incidents"].point_minzoom or 0):
        params["margin"] = BUFFER / EXTENT
        return Statement(INCIDENT_POINTS_SQL.format(cond=cond), params)
    params.update(_block_params(address))
    return Statement(INCIDENT_BLOCKS_SQL.format(cond=cond), params, aggregate=True)


def incidents_tile(session: Session, principal: Principal, address: TileAddress, filters: IncidentFilter,
                   *, now: dt.datetime | None = None, if_none_match: str | None = None, commit: bool = False) -> Tile:
    """The incidents `principal` may see that match `filters` (IncidentFilter's one predicate): single
    points from the layer's point zoom, blocks with count/open/overdue below it. Overdue flags are
    worked out for the current minute (part of the ETag), so a cached tile is never more than a minute
    behind a deadline passing. `commit`: as for `grids_tile`."""
    now = tile_now(now)
    key = {**incident_filter_key(filters), "now": now.isoformat()}
    tag, row = _tile(session, "incidents", incidents_statement(principal, address, filters, now),
                     lambda v: etag("incidents", address, principal, v, key), if_none_match, commit)
    if row is None:
        return Tile(tag, None, not_modified=True)
    return Tile(tag, _bytes(row[0]))


def households_statement(principal: Principal, address: TileAddress) -> Statement:
    """A household tile's statement: one row, the tile's bytes (and, at point zooms, the ids of the
    households whose personal fields it carries)."""
    acc = access_for(principal)
    params = {**acc.params, **address.params()}
    if address.z >= (LAYERS["households"].point_minzoom or 0):
        params["margin"] = BUFFER / EXTENT
        return Statement(HOUSEHOLD_POINTS_SQL.format(rows=acc.rows, personal=acc.personal), params)
    params.update(_block_params(address))
    return Statement(HOUSEHOLD_BLOCKS_SQL.format(rows=acc.rows), params, aggregate=True)


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
    points = address.z >= (LAYERS["households"].point_minzoom or 0)
    personal = points and acc.personal != "FALSE" and acc.rows != "FALSE"
    tag, found = _tile(session, "households", households_statement(principal, address),
                       lambda v: etag("households", address, principal, v), if_none_match, False)
    if found is None:
        return Tile(tag, None, not_modified=True, personal=personal)
    row = found
    if not points:
        return Tile(tag, _bytes(row[0]))
    content, shown = row[0], row[1]
    if shown:
        ctx.audit(session, "read_personal", resource="household", resource_ids=list(shown),
                  detail={"format": "mvt", "tile": f"{address.z}/{address.x}/{address.y}"})
    return Tile(tag, _bytes(content), personal=bool(shown) or personal)
