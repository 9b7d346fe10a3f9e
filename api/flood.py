"""The flooded-households finder, its 明白卡 checklist and per-grid flood risk (every call audited)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api import schemas
from api.deps import NoNul, SessionDep, SettingsDep, check_page_limit
from api.exports import table_response
from api.security import requires
from gis import audit
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.errors import InputError, Problem
from gis.flood import finder
from gis.flood import labels as L

router = APIRouter(prefix="/flood", tags=["flood"])

ExtentId = Annotated[int | None, Query(ge=1, le=2**62, description="a stored flood extent's id")]
Scenario = Annotated[str | None, Query(max_length=40, pattern=r"^[0-9A-Za-z._\-]+$",
                                       description="a named scenario (e.g. 2023-09-23) or a stage in m (e.g. 1.5)")]
BufferM = Annotated[float, Query(ge=0, le=5000, description="also houses within this many metres of the extent")]
Reason = Annotated[str | None, Query(max_length=500, description="why you need this (kept in the audit log)"), NoNul]
GridFilter = Annotated[str | None, Query(pattern=r"^\d{15}$", description="only households of this grid (any level)")]

# A checklist is printed per grid member; past this size ask for one village or group at a time.
MAX_CHECKLIST_HOUSEHOLDS = 1500


def _find(session, principal, extent, scenario, buffer_m, grid_code=None, with_shelters=True):
    ext = finder.resolve_extent(session, extent, scenario)
    result = finder.flooded_households(session, principal, ext, buffer_m, with_shelters=with_shelters)
    if grid_code is not None and not grid_code.endswith("000000"):  # a town code keeps everything
        result.households = [h for h in result.households
                             if grid_code in (h["grid_code"], h["village_code"], h["area_code"])]
    return result


def _audit(session, principal, request: Request, households: list[dict], what: str, fmt: str,
           reason: str | None, extra: dict) -> None:
    shown = [h["id"] for h in households if h.get("personal_fields") == "shown"]
    audit.record(
        session, principal, "read_personal" if shown else "read", resource="household", resource_ids=shown,
        reason=reason, method=request.method, path=request.url.path,
        detail={"endpoint": what, "format": fmt, "households": len(households), "shown": len(shown), **extra},
    )


def _feature(h: dict) -> dict:
    props = {k: v for k, v in h.items() if k not in ("lon", "lat")}
    return {"type": "Feature", "id": h["id"], "geometry": {"type": "Point", "coordinates": [h["lon"], h["lat"]]},
            "properties": props}


@router.get("/households", summary="Households in a flood extent, in rescue order (JSON, GeoJSON or CSV)",
            response_model=schemas.FloodHouseholdPage, **schemas.DATA,
            responses=schemas.formats(geojson=schemas.FloodHouseholdCollection, also=schemas.ONE))
def households(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, requires(Permission.VIEW_HOUSEHOLDS)],
    extent: ExtentId = None,
    scenario: Scenario = None,
    buffer_m: BufferM = 0.0,
    grid_code: GridFilter = None,
    limit: Annotated[int, Query(ge=1)] = 1000,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    format: Literal["json", "geojson", "csv", "xlsx"] = "json",
    reason: Reason = None,
):
    check_page_limit(limit, settings)
    result = _find(session, principal, extent, scenario, buffer_m, grid_code)
    page = result.households[offset: offset + limit]
    _audit(session, principal, request, page, "flood_households", format, reason,
           {"extent": result.extent, "scenario": scenario, "offset": offset})
    total = len(result.households)
    if format in ("csv", "xlsx"):
        return table_response(L.EXPORT, page, "flood_households", total, format)
    if format == "geojson":
        fc = {"type": "FeatureCollection", "numberMatched": total, "numberReturned": len(page),
              "extent": result.extent, "totals": result.totals, "features": [_feature(h) for h in page]}
        return Response(json.dumps(fc, ensure_ascii=False, default=str), media_type="application/geo+json")
    return {
        "extent": result.extent, "total": total, "offset": offset, "totals": result.totals,
        "shelter_method": result.shelter_method, "distance_kind": result.distance_kind,
        "unplaced": result.unplaced, "shelters": result.shelters, "items": page,
    }


@router.get("/checklist", summary="The printable 明白卡 checklist per grid member (HTML or PDF)",
            response_class=HTMLResponse, responses=schemas.download("application/pdf", also=schemas.ONE))
def checklist(
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, requires(Permission.VIEW_HOUSEHOLDS)],
    extent: ExtentId = None,
    scenario: Scenario = None,
    buffer_m: BufferM = 0.0,
    grid_code: GridFilter = None,
    format: Literal["html", "pdf"] = "html",
    reason: Reason = None,
):
    from gis.dataset_info import dataset_info
    from gis.flood.checklist import checklist_html, checklist_pdf

    result = _find(session, principal, extent, scenario, buffer_m, grid_code)
    if len(result.households) > MAX_CHECKLIST_HOUSEHOLDS:
        raise InputError(Problem(("query", "grid_code"),
                                 f"{len(result.households)} households: print one village or group at a time "
                                 f"(at most {MAX_CHECKLIST_HOUSEHOLDS})"))
    _audit(session, principal, request, result.households, "flood_checklist", format, reason,
           {"extent": result.extent, "scenario": scenario, "grid_code": grid_code})
    sample = dataset_info(session, "sample_town")
    html = checklist_html(result.households, result.extent,
                          synthetic_notice=sample.get("notice") if sample else None)
    if format == "pdf":
        return Response(checklist_pdf(html), media_type="application/pdf",
                        headers={"Content-Disposition": 'attachment; filename="flood_checklist.pdf"'})
    return HTMLResponse(html)


@router.get("/risk", summary="Per-grid flood risk: households and people at risk per stage (counts only)",
            response_model=schemas.FloodRisk, **schemas.DATA, responses=schemas.problems(*schemas.READ))
def risk(
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, requires(Permission.VIEW_HOUSEHOLD_COUNTS)],
    level: Annotated[int, Query(ge=1, le=4)] = 4,
    stages: Annotated[
        str | None, Query(max_length=100, description="comma-separated metres; default 0.5,1,2,3")
    ] = None,
):
    from gis.flood.risk import flood_risk, parse_stages

    out = flood_risk(session, level=level, stages=parse_stages(stages))
    audit.record(session, principal, "read", resource="flood_risk", method=request.method, path=request.url.path,
                 detail={"endpoint": "flood_risk", "level": level, "stages": out["stages"]})
    return out
