"""Incident endpoints: intake, lists and exports, one incident, loop transitions, the review queue."""

from __future__ import annotations

import datetime as dt
import email.message
import json
from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticUndefined as Undefined
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import incident_params, schemas
from api.deps import NoNul, PageOffset, Reason, SessionDep, SettingsDep, check_page_limit, request_context
from api.exports import point_feature, require_time_zone, saved_upload, table_response
from api.grids import parse_bbox
from api.incident_params import EscalationLevel, GridCodeQuery
from api.lean import LeanRoute, lean
from api.security import Check, checks, requires
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.errors import InputError, Problem
from gis.incidents import service
from gis.incidents.categories import CATEGORY_NAMES_ZH, DISPUTE_NAMES_ZH, Category
from gis.incidents.fields import TIME_RULE
from gis.incidents.gazetteer import MAX_PLACE_CHARS
from gis.incidents.loop import STATE_NAMES_ZH, Action
from gis.settings import Settings
from gis.spreadsheet import Table

router = APIRouter(prefix="/incidents", tags=["incidents"], route_class=LeanRoute)

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


def next_link(request: Request, offset: int, limit: int, shown: int, total: int) -> str | None:
    """The URL of the following page (the same query, offset moved on), or None on the last one."""
    if shown < limit or offset + shown >= total:
        return None
    return str(request.url.include_query_params(offset=offset + limit))


# The intake's body, validated as FastAPI validates a route's body model (`_intake_body`); the OpenAPI
# document still shows it as the request body.
_INTAKE_BODY = TypeAdapter(IncidentIn)
_INTAKE_REQUEST_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": IncidentIn.model_json_schema()}}}}


async def _read_json(request: Request) -> Any:
    """The body as FastAPI reads a JSON body model: `Undefined` when empty, the parsed JSON when the
    content type is JSON (`application/json`, `*+json`), else the bytes (which then fail validation).
    Malformed JSON is answered 422 here, before the credentials are checked, as FastAPI does."""
    try:
        raw = await request.body()
        if not raw:
            return Undefined
        content_type = request.headers.get("content-type")
        if content_type == "application/json":
            return json.loads(raw)
        if not content_type:
            return raw
        message = email.message.Message()
        message["content-type"] = content_type
        subtype = message.get_content_subtype()
        if message.get_content_maintype() != "application" or not (subtype == "json" or subtype.endswith("+json")):
            return raw
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error",
                                       "input": {}, "ctx": {"error": exc.msg}}], body=exc.doc) from exc
    except StarletteHTTPException:   # the body limit's 413
        raise
    except Exception as exc:  # noqa: BLE001 - as FastAPI: not UTF-8 text, the client gone mid-body
        raise HTTPException(400, "There was an error parsing the body") from exc


def _intake_body(body: Any) -> IncidentIn:
    """`body` (from `_read_json`) validated as FastAPI validates a body model: 422 naming each field."""
    if body is Undefined:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    try:
        return _INTAKE_BODY.validate_python(body, from_attributes=True)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)],
                                     body=body) from None


def _report(request: Request, session: Any, check: Check, *, body: Any) -> Response:
    """The token check, the body's validation (after it: 401/403 come before 422, as for any route), the
    intake, the commit and the JSON, in the request's ONE worker thread (one thread hop per report).

    First, for a caller seen here before, the common case in one round trip (`_report_at_once`)."""
    settings: Settings = request.app.state.settings
    at_once = _report_at_once(request, session, check, body, settings)
    if at_once is not None:
        principal, result = at_once
    else:
        principal = check(session)
        fields = _intake_body(body)
        req = service.IntakeRequest(**fields.__dict__)
        result = service.intake(
            session, request_context(request, principal), req,
            outside_tolerance_m=settings.incident_outside_tolerance_m,
            duplicate_radius_m=settings.duplicate_radius_m,
            duplicate_window_hours=settings.duplicate_window_hours,
        )
    out = result.record or service.get_incident(session, principal, result.id)
    out.update(service.routing(session, principal, out, result.grid_names))
    session.commit()   # here, in the worker thread (saves the teardown a thread hop)
    return Response(json.dumps(out, default=str, ensure_ascii=False),
                    status_code=201 if result.created else 200, media_type="application/json")


def _report_at_once(request: Request, session: Any, check: Check, body: Any,
                    settings: Settings) -> tuple[Principal, service.IntakeResult] | None:
    """The report checked, stored and committed by ONE statement (`service.intake_at_once`), for the caller
    its credential was last found to be here (`Check.guess`) and written only if the statement's own check of
    the credential finds that caller still; None when it wrote nothing (then `_report` takes the plain way,
    which answers a changed caller, a refused field or an unusual report as before)."""
    guess = check.guess()
    if guess is None:
        return None
    principal, only_while = guess
    try:
        fields = _intake_body(body)
    except RequestValidationError:
        return None   # the plain way answers it, after the credential's check
    result = service.intake_at_once(
        session, request_context(request, principal), service.IntakeRequest(**fields.__dict__),
        only_while=only_while, duplicate_radius_m=settings.duplicate_radius_m,
        duplicate_window_hours=settings.duplicate_window_hours)
    return None if result is None else (check.confirm(principal), result)


async def _report_body(request: Request) -> dict[str, Any]:
    return {"body": await _read_json(request)}


@router.post("", status_code=201, summary="Report an incident: located, assigned to its grids, routed",
             response_model=schemas.ReportedIncident, **schemas.DATA,
             responses=schemas.reported_again(schemas.ReportedIncident), openapi_extra=_INTAKE_REQUEST_BODY)
# On the event loop for a report by coordinates; one by place name (the gazetteer's fuzzy ranking, its index
# read once per data version) keeps its worker thread.
@lean(_report, Permission.REPORT_INCIDENTS, parse=_report_body,
      on_loop=lambda values: isinstance(values["body"], dict) and not values["body"].get("place"))
async def report(request: Request, session: SessionDep,
                 check: Annotated[Check, checks(Permission.REPORT_INCIDENTS)]) -> Response:
    body = await _read_json(request)
    return await run_in_threadpool(lambda: _report(request, session, check, body=body))


# GET /incidents' whole query as one model (api.incident_params.query_model): the list's own parameters, then
# every incident filter (`open` off by default). The fixed cost of a list request: bench/README.md.
IncidentListQuery = incident_params.query_model("IncidentListQuery", open_default=False, before={
    "order": (Annotated[Literal["newest", "deadline"], Query(
        description="newest first, or a to-do list: overdue first, then by stage deadline")], "newest"),
    "bbox": (Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat (WGS84): a map's view")],
             None),
    "limit": (Annotated[int, Query(ge=1)], 100),
    "offset": (PageOffset, 0),
    "format": (Literal["json", "geojson", "csv", "xlsx"], "json"),
    "reason": (Reason, None),
})


def _list_page(request: Request, session: Any, check: Check, *, query: Any) -> Response:
    """One page of the list: the token check, the page and its JSON, in the request's one worker thread."""
    q = query
    filters = incident_params.filter_of(q)
    settings: Settings = request.app.state.settings
    order, bbox, limit, offset, format, reason = q.order, q.bbox, q.limit, q.offset, q.format, q.reason
    if format == "json":
        def json_list(principal: Principal) -> Response:
            check_page_limit(limit, settings)
            return json_page(request, session, request_context(request, principal, reason), filters, order,
                             parse_bbox(bbox), limit, offset, settings.max_exact_incident_count)

        # The credential's check goes in the page's message (one round trip for both).
        return check.within(session, json_list)
    principal = check(session)
    check_page_limit(limit, settings)
    page = service.list_incidents(
        session, request_context(request, principal, reason), filters, order=order, bbox=parse_bbox(bbox),
        limit=limit, offset=offset, count_up_to=settings.max_exact_incident_count,
    )
    rows, total = page.items, page.total
    session.commit()   # here, in the endpoint's worker thread (saves the teardown a thread hop)
    if format in ("csv", "xlsx"):
        return table_response(EXPORT, rows, "incidents", total, format)
    if format == "geojson":
        fc = {"type": "FeatureCollection", **({"numberMatched": total} if page.total_exact else {}),
              "numberReturned": len(rows),
              "features": [point_feature(r) for r in rows]}
        return Response(json.dumps(fc, ensure_ascii=False, default=str), media_type="application/geo+json")
    # total_exact False: more than max_exact_incident_count matched; `total` is the planner's estimate.
    out = {"total": total, "total_exact": page.total_exact, "offset": offset,
           "next": next_link(request, offset, limit, len(rows), total), "items": rows}
    return Response(json.dumps(out, default=str, ensure_ascii=False), media_type="application/json")


# Served by its lean path (api.lean: the query model validated at once, no dependency to solve); one thread hop.
@router.get("", summary="Incidents you may see, filtered (JSON, GeoJSON or CSV)", response_model=schemas.IncidentPage,
            **schemas.DATA, responses=schemas.formats(geojson=schemas.IncidentCollection))
@lean(_list_page, Permission.VIEW_INCIDENTS, query=IncidentListQuery, query_as="query",
      on_loop=lambda values: values["query"].format == "json")   # a page PostgreSQL shaped; files in a thread
async def list_incidents(
    request: Request,
    session: SessionDep,
    check: Annotated[Check, checks(Permission.VIEW_INCIDENTS)],
    query: Annotated[IncidentListQuery, Query()],  # type: ignore[valid-type]  # a model made at import
) -> Response:
    return await run_in_threadpool(lambda: _list_page(request, session, check, query=query))


def json_page(request: Request, session: Any, ctx: Any, filters: service.IncidentFilter, order: str,
              bbox: tuple[float, float, float, float] | None, limit: int, offset: int,
              count_up_to: int | None) -> Response:
    """The JSON list: the rows as PostgreSQL shaped them (`service.list_incidents_json`), wrapped here."""
    if bbox is not None:
        filters = replace(filters, bbox=bbox)
    page = service.list_incidents_json(session, ctx, filters, order=order, limit=limit, offset=offset,
                                       count_up_to=count_up_to, end_transaction=True)
    # total_exact False: more than max_exact_incident_count matched; `total` is the planner's estimate.
    head = json.dumps({"total": page.total, "total_exact": page.total_exact, "offset": offset,
                       "next": next_link(request, offset, limit, page.shown, page.total)}, ensure_ascii=False)
    return Response(head[:-1] + ', "items": ' + page.items_json + "}", media_type="application/json")


@router.post("/import", summary="Batch import (CSV, Excel, GeoJSON, GeoPackage); failed rows by number",
             response_model=schemas.IncidentImportReport, **schemas.DATA,
             responses=schemas.problems(*schemas.READ, 413))
def import_file(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, requires(Permission.IMPORT_INCIDENTS)],
    file: Annotated[UploadFile, File(description=".csv, .xlsx, .geojson, .json or .gpkg")],
    crs: Annotated[str | None, Form(max_length=40)] = None,
    all_or_nothing: Annotated[bool, Form()] = False,
) -> dict[str, Any]:
    from pathlib import Path

    from gis.incidents.batch import import_incidents, open_incident_file

    suffix = Path(file.filename or "").suffix.lower()
    if suffix not in {".csv", ".xlsx", ".geojson", ".json", ".gpkg"}:
        raise InputError(Problem(("body", "file"), "file type must be .csv, .xlsx, .geojson, .json or .gpkg"))
    with saved_upload(file, suffix, settings.max_upload_bytes) as path:
        report = import_incidents(
            session, open_incident_file(path, max_rows=settings.max_incident_rows_per_file),
            source=f"upload:{file.filename}", crs=crs, all_or_nothing=all_or_nothing,
            outside_tolerance_m=settings.incident_outside_tolerance_m,
            ctx=request_context(request, principal), file_name=file.filename)
    return report.as_dict()


@router.get("/stats", summary="Per grid at a level: counts by state/category, median hours per stage, "
            "on-time rate, satisfaction", response_model=list[schemas.GridIncidentStats], **schemas.DATA,
            responses=schemas.problems(*schemas.READ))
def stats(session: SessionDep, principal: Annotated[Principal, requires(Permission.VIEW_INCIDENTS)],
          level: Annotated[int, Query(ge=1, le=4)] = 3,
          since: dt.datetime | None = None, until: dt.datetime | None = None) -> list[dict[str, Any]]:
    from gis.incidents.grid_stats import grid_stats

    require_time_zone(since=since, until=until)
    return grid_stats(session, principal, level, since, until)


@router.get("/review", summary="Flagged assignments (shared edge, or outside the town) not yet reviewed",
            response_model=schemas.ReviewQueue, **schemas.DATA, responses=schemas.problems(*schemas.READ))
def review_queue(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, requires(Permission.REVIEW_INCIDENTS)],
    grid_code: GridCodeQuery = None,
    category: Category | None = None,
    overdue: bool | None = None,
    escalation_level: EscalationLevel = None,
    limit: Annotated[int, Query(ge=1)] = 100,
    offset: PageOffset = 0,
) -> JSONResponse:
    check_page_limit(limit, settings)
    page = service.review_queue(
        session, request_context(request, principal), grid_code=grid_code,
        category=category.value if category else None, overdue=overdue, escalation_level=escalation_level,
        limit=limit, offset=offset, count_up_to=settings.max_exact_incident_count)
    out = {"total": page.total, "total_exact": page.total_exact, "offset": offset,
           "next": next_link(request, offset, limit, len(page.items), page.total), "items": page.items}
    return JSONResponse(json.loads(json.dumps(out, default=str)))


class ReviewIn(BaseModel):
    grid_code: str | None = Field(default=None, pattern=r"^\d{15}$",
                                  description="move it to this group grid (one of its grid candidates)")


@router.post("/{incident_id}/review", summary="Mark a flagged assignment as checked, or move it to a nearby group grid",
             response_model=schemas.IncidentDetail, **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def mark_reviewed(request: Request, session: SessionDep, settings: SettingsDep,
                  principal: Annotated[Principal, requires(Permission.REVIEW_INCIDENTS)],
                  incident_id: IncidentId, body: ReviewIn | None = None) -> JSONResponse:
    ctx = request_context(request, principal)
    if body is not None and body.grid_code is not None:
        out = service.reassign(session, ctx, incident_id, body.grid_code,
                               tolerance_m=settings.incident_outside_tolerance_m)
    else:
        out = service.mark_reviewed(session, ctx, incident_id)
    return JSONResponse(json.loads(json.dumps(out, default=str)))


@router.get("/{incident_id}/review/candidates", summary="Group grids a flagged incident may be moved to, nearest first",
            response_model=list[schemas.GridCandidate], **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def review_candidates(session: SessionDep, settings: SettingsDep,
                      principal: Annotated[Principal, requires(Permission.REVIEW_INCIDENTS)],
                      incident_id: IncidentId) -> list[dict[str, Any]]:
    return service.grid_candidates(session, principal, incident_id,
                                   tolerance_m=settings.incident_outside_tolerance_m)


@router.get("/{incident_id}", summary="One incident with its history, assignees and possible duplicates",
            response_model=schemas.IncidentDetail, **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def one(
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, requires(Permission.VIEW_INCIDENTS)],
    incident_id: IncidentId,
) -> JSONResponse:
    out = service.get_incident(session, request_context(request, principal), incident_id)
    return JSONResponse(json.loads(json.dumps(out, default=str)))


@router.post("/{incident_id}/attachments", status_code=201, summary="Attach a photo (JPEG, PNG or WebP)",
             response_model=schemas.Attachment, **schemas.DATA, responses=schemas.problems(*schemas.ONE, 413))
def attach(request: Request, session: SessionDep, settings: SettingsDep,
           principal: Annotated[Principal, requires(Permission.REPORT_INCIDENTS)],
           incident_id: IncidentId, file: Annotated[UploadFile, File()]) -> dict[str, Any]:
    from gis.incidents.attachments import add_attachment

    data = file.file.read(settings.max_attachment_bytes + 1)
    if len(data) > settings.max_attachment_bytes:
        # The same answer as a body over the route's limit (api/limits.py).
        raise HTTPException(413, f"a photo has at most {settings.max_attachment_bytes} bytes")
    return add_attachment(session, request_context(request, principal), incident_id, file.filename or "photo",
                          data, max_bytes=settings.max_attachment_bytes,
                          max_pixels=settings.max_attachment_pixels)


@router.get("/{incident_id}/attachments", summary="Photos of an incident (metadata only)",
            response_model=list[schemas.Attachment], **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def attachments(
    session: SessionDep, principal: Annotated[Principal, requires(Permission.VIEW_INCIDENTS)], incident_id: IncidentId
) -> list[dict[str, Any]]:
    from gis.incidents.attachments import list_attachments

    return list_attachments(session, principal, incident_id)


@router.get("/{incident_id}/attachments/{attachment_id}", summary="One photo's bytes",
            response_class=schemas.DownloadResponse,
            responses=schemas.download("image/jpeg", "image/png", "image/webp", also=schemas.ONE))
def attachment(session: SessionDep, principal: Annotated[Principal, requires(Permission.VIEW_INCIDENTS)],
               incident_id: IncidentId,
               attachment_id: Annotated[int, PathParam(ge=1, le=2**62)]) -> Response:
    from urllib.parse import quote

    from gis.incidents.attachments import get_attachment

    name, kind, data = get_attachment(session, principal, incident_id, attachment_id)
    return Response(data, media_type=kind, headers={
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}",
        "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})


@router.post("/{incident_id}/transitions", summary="Move the incident one step through the closed loop",
             response_model=schemas.IncidentDetail, **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def move(request: Request, session: SessionDep, principal: Annotated[Principal, requires(Permission.WORK_INCIDENTS)],
         incident_id: IncidentId, body: TransitionIn) -> JSONResponse:
    out = service.transition(session, request_context(request, principal), incident_id, body.action.value,
                             body.note)
    return JSONResponse(json.loads(json.dumps(out, default=str)))
