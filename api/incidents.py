"""Incident endpoints: intake, lists and exports, one incident, loop transitions, the review queue."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from api.deps import NoNul, SessionDep, SettingsDep, check_page_limit
from api.exports import require_time_zone, saved_upload, table_response
from api.security import requires
from gis import audit
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.errors import InputError, NotFound, Problem
from gis.incidents import service
from gis.incidents.categories import CATEGORY_NAMES_ZH, DISPUTE_NAMES_ZH, Category
from gis.incidents.fields import TIME_RULE
from gis.incidents.gazetteer import MAX_PLACE_CHARS
from gis.incidents.loop import STATE_NAMES_ZH, Action, State
from gis.spreadsheet import Table

router = APIRouter(prefix="/incidents", tags=["incidents"])

IncidentId = Annotated[int, PathParam(ge=1, le=2**62)]

CSV_HEADERS = {
    "id": "编号", "category": "类别", "dispute_kind": "纠纷类型", "description": "描述", "occurred_at": "发生时间",
    "state": "环节", "deadline": "期限", "overdue": "超期", "escalated_to": "升级至网格", "group_code": "四级网格",
    "village_code": "行政村", "area_code": "片区", "lon": "经度", "lat": "纬度", "flagged": "待复核",
    "reporter_name": "报告人", "reporter_phone": "报告人电话",
}
# The export speaks the pages' Chinese (categories, kinds, loop stages) and Beijing time.
EXPORT = Table(CSV_HEADERS, times=frozenset({"occurred_at", "deadline"}), labels={
    "category": CATEGORY_NAMES_ZH, "dispute_kind": DISPUTE_NAMES_ZH, "state": STATE_NAMES_ZH})


class IncidentIn(BaseModel):
    # Read by the file import's rule (gis.incidents.fields): codes or the pages' Chinese names, and
    # a time without a zone is Beijing time.
    category: Annotated[str, NoNul] = Field(
        max_length=40, description="a code (dispute) or its Chinese name (矛盾纠纷)",
        examples=["dispute", "矛盾纠纷"])
    dispute_kind: Annotated[str | None, NoNul] = Field(
        default=None, max_length=40,
        description="a code (neighbour) or its Chinese name (邻里纠纷)")
    description: Annotated[str, NoNul] = Field(min_length=1, max_length=5000)
    occurred_at: Annotated[str, NoNul] = Field(
        min_length=1, max_length=64, description=TIME_RULE,
        examples=["2024-05-01T08:00:00+08:00", "2024-05-01 08:00"])
    lon: float | None = None
    lat: float | None = None
    crs: str | None = Field(default=None, max_length=40, description="wgs84 | cgcs2000 | gcj02 | bd09 | EPSG:code")
    place: Annotated[str | None, NoNul] = Field(
        default=None, max_length=MAX_PLACE_CHARS,
        description="a place name or address, e.g. 尹营村三组")
    reporter_name: Annotated[str | None, NoNul] = Field(default=None, max_length=100)
    reporter_phone: str | None = Field(default=None, pattern=r"^[0-9+\-]{5,20}$")
    external_id: Annotated[str | None, NoNul] = Field(default=None, min_length=1, max_length=200)


class TransitionIn(BaseModel):
    action: Action
    note: Annotated[str | None, NoNul] = Field(default=None, max_length=5000)


def _audit_reporter(session, principal, request, records, reason=None):
    ids = [r["id"] for r in records if r.get("reporter_name") or r.get("reporter_phone")]
    if ids and service.reporter_shown(principal):
        audit.record(session, principal, "read_personal", resource="incident", resource_ids=ids,
                     reason=reason, method=request.method, path=request.url.path)


@router.post("", status_code=201, summary="Report an incident: located, assigned to its grids, routed")
def report(request: Request, session: SessionDep, settings: SettingsDep,
           principal: Annotated[Principal, requires(Permission.REPORT_INCIDENTS)], body: IncidentIn):
    req = service.IntakeRequest(**body.model_dump(mode="python"))
    result = service.intake(
        session, principal, req,
        outside_tolerance_m=settings.incident_outside_tolerance_m,
        duplicate_radius_m=settings.duplicate_radius_m,
        duplicate_window_hours=settings.duplicate_window_hours,
        audit_fields={"method": "POST", "path": request.url.path},
    )
    out = result.record or service.get_incident(session, principal, result.id)
    out.update(service.routing(session, principal, out, result.grid_names))
    session.commit()   # here, in the endpoint's worker thread (saves the teardown a thread hop)
    return Response(json.dumps(out, default=str, ensure_ascii=False), status_code=201 if result.created else 200,
                    media_type="application/json")


@router.get("", summary="Incidents you may see, filtered (JSON, GeoJSON or CSV)")
def list_incidents(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, requires(Permission.VIEW_INCIDENTS)],
    grid_code: Annotated[str | None, Query(pattern=r"^\d{15}$", description="any level: its whole subtree")] = None,
    state: State | None = None,
    category: Category | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    overdue: bool | None = None,
    flagged: bool | None = None,
    limit: Annotated[int, Query(ge=1)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    format: Literal["json", "geojson", "csv", "xlsx"] = "json",
):
    check_page_limit(limit, settings)
    require_time_zone(since=since, until=until)
    page = service.list_incidents(
        session, principal, grid_code=grid_code, state=state.value if state else None,
        category=category.value if category else None, since=since, until=until, overdue=overdue,
        flagged=flagged, limit=limit, offset=offset, count_up_to=settings.max_exact_incident_count,
    )
    rows, total = page.items, page.total
    _audit_reporter(session, principal, request, rows)
    session.commit()   # here, in the endpoint's worker thread (saves the teardown a thread hop)
    if format in ("csv", "xlsx"):
        return table_response(EXPORT, rows, "incidents", total, format)
    if format == "geojson":
        fc = {"type": "FeatureCollection", **({"numberMatched": total} if page.total_exact else {}),
              "numberReturned": len(rows),
              "features": [{"type": "Feature", "id": r["id"],
                            "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
                            "properties": {k: v for k, v in r.items() if k not in ("lon", "lat")}} for r in rows]}
        return Response(json.dumps(fc, ensure_ascii=False, default=str), media_type="application/geo+json")
    # total_exact False: more than max_exact_incident_count matched; `total` is the planner's
    # estimate.
    out = {"total": total, "total_exact": page.total_exact, "offset": offset, "items": rows}
    return Response(json.dumps(out, default=str, ensure_ascii=False), media_type="application/json")


@router.post("/import", summary="Batch import (CSV, Excel, GeoJSON, GeoPackage); failed rows by number")
def import_file(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, requires(Permission.IMPORT_INCIDENTS)],
    file: Annotated[UploadFile, File(description=".csv, .xlsx, .geojson, .json or .gpkg")],
    crs: Annotated[str | None, Form(max_length=40)] = None,
    all_or_nothing: Annotated[bool, Form()] = False,
):
    from pathlib import Path

    from gis.incidents.batch import import_incidents, open_incident_file

    suffix = Path(file.filename or "").suffix.lower()
    if suffix not in {".csv", ".xlsx", ".geojson", ".json", ".gpkg"}:
        raise InputError(Problem(("body", "file"), "file type must be .csv, .xlsx, .geojson, .json or .gpkg"))
    with saved_upload(file, suffix, settings.max_upload_bytes) as path:
        report = import_incidents(
            session, open_incident_file(path, max_rows=settings.max_incident_rows_per_file),
            source=f"upload:{file.filename}", crs=crs, all_or_nothing=all_or_nothing,
            outside_tolerance_m=settings.incident_outside_tolerance_m)
    if report.written and report.created:
        audit.record(session, principal, "import", resource="incident", method="POST", path=request.url.path,
                     detail={"file": file.filename, "created": report.created, "failed": len(report.failed)})
    return report.as_dict()


@router.get("/stats", summary="Per grid at a level: counts by state/category, median hours per stage, "
            "on-time rate, satisfaction")
def stats(session: SessionDep, principal: Annotated[Principal, requires(Permission.VIEW_INCIDENTS)],
          level: Annotated[int, Query(ge=1, le=4)] = 3,
          since: dt.datetime | None = None, until: dt.datetime | None = None):
    from gis.incidents.grid_stats import grid_stats

    require_time_zone(since=since, until=until)
    return grid_stats(session, principal, level, since, until)


@router.get("/review", summary="Flagged assignments (shared edge, or outside the town) not yet reviewed")
def review_queue(session: SessionDep, principal: Annotated[Principal, requires(Permission.REVIEW_INCIDENTS)]):
    pending, total = service.list_incidents(session, principal, flagged=True, pending_review=True,
                                            limit=10_000)
    return JSONResponse(json.loads(json.dumps({"total": total, "items": pending}, default=str)))


@router.post("/{incident_id}/review", summary="Mark a flagged assignment as checked")
def mark_reviewed(request: Request, session: SessionDep,
                  principal: Annotated[Principal, requires(Permission.REVIEW_INCIDENTS)],
                  incident_id: IncidentId):
    from sqlalchemy import text

    done = session.execute(text("UPDATE incident SET reviewed_at = now() WHERE id = :i RETURNING id"),
                           {"i": incident_id}).first()
    if done is None:
        raise NotFound(f"no incident {incident_id}")
    audit.record(session, principal, "review", resource="incident", resource_ids=[incident_id],
                 method="POST", path=request.url.path)
    return JSONResponse(json.loads(json.dumps(service.get_incident(session, principal, incident_id), default=str)))


@router.get("/{incident_id}", summary="One incident with its history, assignees and possible duplicates")
def one(
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, requires(Permission.VIEW_INCIDENTS)],
    incident_id: IncidentId,
):
    out = service.get_incident(session, principal, incident_id)
    _audit_reporter(session, principal, request, [out])
    return JSONResponse(json.loads(json.dumps(out, default=str)))


@router.post("/{incident_id}/attachments", status_code=201, summary="Attach a photo (JPEG, PNG or WebP)")
def attach(request: Request, session: SessionDep, settings: SettingsDep,
           principal: Annotated[Principal, requires(Permission.REPORT_INCIDENTS)],
           incident_id: IncidentId, file: Annotated[UploadFile, File()]):
    from gis.incidents.attachments import add_attachment

    data = file.file.read(settings.max_attachment_bytes + 1)
    if len(data) > settings.max_attachment_bytes:
        # The same answer as a body over the route's limit (api/limits.py).
        raise HTTPException(413, f"a photo has at most {settings.max_attachment_bytes} bytes")
    out = add_attachment(session, principal, incident_id, file.filename or "photo", data,
                         max_bytes=settings.max_attachment_bytes,
                         max_pixels=settings.max_attachment_pixels)
    audit.record(session, principal, "create", resource="incident_attachment", resource_ids=[out["id"]],
                 method="POST", path=request.url.path, detail={"incident_id": incident_id, "size": out["size"]})
    return out


@router.get("/{incident_id}/attachments", summary="Photos of an incident (metadata only)")
def attachments(
    session: SessionDep, principal: Annotated[Principal, requires(Permission.VIEW_INCIDENTS)], incident_id: IncidentId
):
    from gis.incidents.attachments import list_attachments

    return list_attachments(session, principal, incident_id)


@router.get("/{incident_id}/attachments/{attachment_id}", summary="One photo's bytes")
def attachment(session: SessionDep, principal: Annotated[Principal, requires(Permission.VIEW_INCIDENTS)],
               incident_id: IncidentId,
               attachment_id: Annotated[int, PathParam(ge=1, le=2**62)]):
    from urllib.parse import quote

    from gis.incidents.attachments import get_attachment

    name, kind, data = get_attachment(session, principal, incident_id, attachment_id)
    return Response(data, media_type=kind, headers={
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}",
        "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})


@router.post("/{incident_id}/transitions", summary="Move the incident one step through the closed loop")
def move(request: Request, session: SessionDep, principal: Annotated[Principal, requires(Permission.WORK_INCIDENTS)],
         incident_id: IncidentId, body: TransitionIn):
    out = service.transition(session, principal, incident_id, body.action.value, body.note)
    audit.record(session, principal, "update", resource="incident", resource_ids=[incident_id],
                 method="POST", path=request.url.path, detail={"action": body.action.value, "state": out["state"]})
    return JSONResponse(json.loads(json.dumps(out, default=str)))
