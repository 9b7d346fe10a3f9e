"""Declared emergencies: while one is active, emergency teams see personal fields inside its extent."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from shapely.geometry import MultiPolygon
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.bulk import ewkt
from gis.context import Context
from gis.errors import InputError, NotFound, Problem

_COLUMNS = (
    "e.id, e.title, e.reason, e.declared_at, e.closed_at, e.close_reason, "
    "d.username AS declared_by, c.username AS closed_by, ST_AsGeoJSON(e.extent, 7) AS extent"
)


def parse_extent(geojson: dict[str, Any], loc: tuple[str | int, ...], max_vertices: int) -> MultiPolygon:
    """A GeoJSON Polygon/MultiPolygon (or a Feature of one) in WGS84, checked and made a MultiPolygon."""
    from gis.geometry_input import polygon_from_geojson

    return polygon_from_geojson(geojson, loc, max_vertices=max_vertices)


def flood_extent_geometry(session: Session, extent_id: int, loc: tuple[str | int, ...]) -> MultiPolygon:
    """The polygon of a stored flood extent, to declare over; an unknown id is the caller's input error."""
    from gis.flood import extents

    try:
        return extents.get_extent(session, extent_id).geom
    except NotFound as exc:
        raise InputError(Problem(loc, exc.detail, "unknown_extent")) from None


def scenario_geometry(session: Session, scenario: str, mode: str,
                      loc: tuple[str | int, ...]) -> tuple[int, MultiPolygon]:
    """(extent id, polygon) of a stored modelled scenario: a name (2023-09-23) or a stage in metres
    (1.5) as GET /flood/scenarios lists them. Declaring never computes a stage: one not computed yet,
    or an unknown name, is the caller's input error naming `loc`."""
    from gis.flood import stages

    value = str(scenario).strip()
    try:
        if value in stages.NAMED_SCENARIOS:
            extent = stages.named_scenario(session, value, stored_only=True, loc=loc)
        else:
            try:
                stage = float(value.removesuffix("m").strip())
            except ValueError:
                raise InputError(Problem(
                    loc, f"{scenario!r} is neither a stage in metres nor a scenario name "
                         f"({', '.join(stages.NAMED_SCENARIOS)})", "unknown_scenario")) from None
            extent = stages.stored_scenario(session, stages.check_stage(stage, mode, loc), mode, loc=loc)
    except NotFound as exc:
        raise InputError(Problem(loc, exc.detail, "unknown_scenario")) from None
    return extent.id, extent.geom


def declare(session: Session, user_id: int, title: str, reason: str, extent: MultiPolygon,
            ctx: Context | None = None, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Declare an emergency over `extent` (audited with `ctx`, in the same transaction; `source` says
    how the caller named the extent: a stored extent's id or a scenario)."""
    row = session.execute(
        text(
            "INSERT INTO emergency (title, reason, extent, declared_by) "
            "VALUES (:t, :r, ST_GeomFromEWKT(:g), :u) RETURNING id"
        ),
        {"t": title, "r": reason, "g": ewkt(extent), "u": user_id},
    ).one()
    if ctx is not None:
        ctx.audit(session, "declare_emergency", resource="emergency", resource_ids=[row.id], reason=reason,
                  detail={"title": title, **(source or {})})
    return get(session, row.id)


def close(session: Session, emergency_id: int, user_id: int, reason: str, ctx: Context | None = None) -> dict[str, Any]:
    """Close an active emergency (audited with `ctx`, in the same transaction)."""
    current = get(session, emergency_id)
    if current["closed_at"] is not None:
        raise InputError(Problem(("path", "emergency_id"), "this emergency is already closed", "already_closed"))
    session.execute(
        text("UPDATE emergency SET closed_at = now(), closed_by = :u, close_reason = :r WHERE id = :i"),
        {"u": user_id, "r": reason, "i": emergency_id},
    )
    if ctx is not None:
        ctx.audit(session, "close_emergency", resource="emergency", resource_ids=[emergency_id], reason=reason)
    return get(session, emergency_id)


def get(session: Session, emergency_id: int) -> dict[str, Any]:
    row = session.execute(
        text(
            f"SELECT {_COLUMNS} FROM emergency e JOIN app_user d ON d.id = e.declared_by "
            "LEFT JOIN app_user c ON c.id = e.closed_by WHERE e.id = :i"
        ),
        {"i": emergency_id},
    ).mappings().first()
    if row is None:
        raise NotFound(f"no emergency with id {emergency_id}")
    return _out(row)


def list_emergencies(session: Session, active_only: bool = False) -> list[dict[str, Any]]:
    where = "WHERE e.closed_at IS NULL" if active_only else ""
    rows = session.execute(
        text(
            f"SELECT {_COLUMNS} FROM emergency e JOIN app_user d ON d.id = e.declared_by "
            f"LEFT JOIN app_user c ON c.id = e.closed_by {where} ORDER BY e.id"
        )
    ).mappings()
    return [_out(r) for r in rows]


def _out(row: Mapping[Any, Any]) -> dict[str, Any]:
    d = dict(row)
    d["active"] = d["closed_at"] is None
    for k in ("declared_at", "closed_at"):
        d[k] = d[k].isoformat() if d[k] else None
    d["extent"] = json.loads(d["extent"])
    return d


def any_active(session: Session) -> bool:
    return bool(
        session.execute(text("SELECT EXISTS (SELECT 1 FROM emergency WHERE closed_at IS NULL)")).scalar_one()
    )


