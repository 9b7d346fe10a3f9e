"""Plan endpoints: drafts of grid changes, their edits (If-Match: the version edited), validation,
impact, publish and undo, and the plan's files (equivalency CSV, boundaries as GeoJSON/GeoPackage)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Header, HTTPException, Query, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api import schemas
from api.deps import NoNul, SessionDep, SettingsDep
from api.exports import saved_upload, table_response
from api.security import context_of
from gis.auth.roles import Permission
from gis.context import Context
from gis.errors import Forbidden, InputError, Problem
from gis.geometry_input import polygon_from_geojson
from gis.models import Plan
from gis.planning import edits, exchange, plans
from gis.planning import publish as publish_engine
from gis.planning.impact import IMPACT_TABLE
from gis.planning.plans import Draft, PreconditionRequired
from gis.planning.validate import Validation, validate_plan
from gis.settings import Settings
from gis.spreadsheet import CSV_MEDIA_TYPE

router = APIRouter(prefix="/plans", tags=["plans"])

PlanId = Annotated[int, PathParam(ge=1, le=2**62)]
IfMatch = Annotated[str | None, Header(alias="If-Match", description='the plan version edited, e.g. "3"')]
Code = Annotated[str, Field(pattern=r"^\d{15}$", description="a grid code")]
Text = Annotated[str, Field(max_length=200), NoNul]
Real = schemas.Real
_PROBLEM = {"content": {schemas.PROBLEM_MEDIA_TYPE: {"schema": schemas.PROBLEM_SCHEMA}}}
CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **schemas.problems(*schemas.ONE, 409),
    428: {"description": "If-Match is missing: say which version of the plan the change is made against",
          **_PROBLEM},
}


# --- models -------------------------------------------------------------------------------------


class PlanOut(BaseModel):
    id: int
    name: str
    owner_id: int | None
    status: Literal["draft", "scheduled", "published", "discarded"]
    status_zh: str
    version: int
    base: dict[str, int] = Field(description="code -> id of the grid version the plan was drafted on")
    created_at: schemas.IsoTime
    updated_at: schemas.IsoTime
    published_at: schemas.IsoTime | None
    effective_at: schemas.IsoTime | None
    note: str | None
    grids: int | None = Field(default=None, description="how many grids the plan touches")
    publish_id: int | None = Field(description="the plan's newest publish (GET /grids history), if any")
    publish_status: Literal["pending", "applied", "failed", "cancelled"] | None


class PlanGridProperties(BaseModel):
    code: str
    level: int
    name: str
    parent_code: str | None
    old_code: str | None
    retired: bool
    allow_parts: bool
    new: bool


class PlanGridFeature(BaseModel):
    type: Literal["Feature"]
    id: str
    properties: PlanGridProperties
    geometry: schemas.MultiPolygon | None


class PlanDetail(PlanOut):
    features: list[PlanGridFeature]


class PlanBoundaries(BaseModel):
    type: Literal["FeatureCollection"]
    features: list[PlanGridFeature]


class ImpactOut(BaseModel):
    """gis.planning.impact's preview: moves between grids, who follows, what to decide, workload."""

    moves: list[dict[str, Any]] = Field(description="from, to, households, residents, open incidents")
    totals: dict[str, Real]
    staff: list[dict[str, Any]]
    scopes: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    workload: list[dict[str, Any]] = Field(description="per grid: per member before/after vs target±tolerance")
    target: Real | None
    tolerance: Real | None


class ValidationProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    type_zh: str
    ctx: dict[str, Any] | None = None


class ValidationOut(BaseModel):
    finished: bool
    state: Literal["finished", "unfinished"]
    state_zh: str
    grids_checked: int
    counts: dict[str, int]
    problems: list[ValidationProblem]


class EditAnswer(BaseModel):
    plan: PlanOut
    report: dict[str, Any]
    validation: ValidationOut


class PublishAnswer(BaseModel):
    plan: PlanOut
    result: dict[str, Any] = Field(description="what the publish engine reports")


class NewPlan(BaseModel):
    name: Text
    note: Annotated[str | None, Field(max_length=2000), NoNul] = None


class PlanPatch(BaseModel):
    name: Text | None = None
    note: Annotated[str | None, Field(max_length=2000), NoNul] = None


class Reassign(BaseModel):
    kind: Literal["reassign"]
    unit_kind: Literal["household", "household_id", "natural_village", "grid"] = "household"
    unit_ids: Annotated[list[Annotated[str, Field(max_length=40)]], Field(min_length=1, max_length=20_000)]
    to_code: Code
    from_code: Code | None = None


class MoveBoundary(BaseModel):
    kind: Literal["move_boundary"]
    code: Code
    other_code: Code
    line: dict[str, Any] = Field(description="GeoJSON LineString (WGS84): the new shared edge")


class Split(BaseModel):
    kind: Literal["split"]
    code: Code
    line: dict[str, Any] = Field(description="GeoJSON LineString (WGS84) drawn across the grid")
    new_codes: Annotated[list[Code], Field(max_length=20)] = []
    names: Annotated[list[Text], Field(max_length=20)] = []


class Merge(BaseModel):
    kind: Literal["merge"]
    codes: Annotated[list[Code], Field(min_length=2, max_length=50)]
    into: Code


class Create(BaseModel):
    kind: Literal["create"]
    code: Code | None = Field(default=None, description="absent: the next free code under the parent")
    level: Annotated[int, Field(ge=2, le=4)]
    name: Text
    parent_code: Code
    geometry: dict[str, Any] = Field(description="GeoJSON Polygon/MultiPolygon")
    crs: str = "wgs84"


class Retire(BaseModel):
    kind: Literal["retire"]
    code: Code


class Rename(BaseModel):
    kind: Literal["rename"]
    code: Code
    name: Text


class Recode(BaseModel):
    kind: Literal["recode"]
    code: Code
    new_code: Code


class AllowParts(BaseModel):
    kind: Literal["allow_parts"]
    code: Code
    allowed: bool = True


Edit = Annotated[Reassign | MoveBoundary | Split | Merge | Create | Retire | Rename | Recode | AllowParts,
                 Field(discriminator="kind")]


class PublishBody(BaseModel):
    effective_at: dt.datetime | None = Field(default=None, description="when it takes effect (with its zone); "
                                             "absent: now")


# --- helpers ------------------------------------------------------------------------------------


def _version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    raw = if_match.strip().removeprefix("W/").strip('"')
    if not raw.isdigit():
        raise InputError(Problem(("header", "If-Match"), 'If-Match is the plan version, e.g. "3"', "bad_version"))
    return int(raw)


def _tolerances(settings: Settings) -> dict[str, float]:
    return {"gap_tolerance_m2": settings.gap_tolerance_m2, "overlap_tolerance_m2": settings.overlap_tolerance_m2,
            "boundary_tolerance_m": settings.boundary_tolerance_m}


def _out(session: Session, plan: Plan, draft: Draft | None = None) -> dict[str, Any]:
    out = plans.summary(plan, len(draft.rows) if draft is not None else None)
    out["status"] = plans.shown_status(session, plan)
    out["status_zh"] = plans.STATUS_ZH[out["status"]]
    last = plans.last_publish(session, plan)
    out["publish_id"], out["publish_status"] = last if last is not None else (None, None)
    return out


def _etag(plan: Plan) -> dict[str, str]:
    return {"ETag": f'"{plan.version}"'}


def _json(body: Any, plan: Plan, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, default=str), status_code=status,
                    media_type="application/json", headers=_etag(plan))


def _guarded(fn: Any) -> Any:
    """Run a change; a missing If-Match becomes 428 (problem+json)."""
    try:
        return fn()
    except PreconditionRequired as exc:
        raise HTTPException(428, exc.detail) from None


def _validation(draft: Draft, settings: Settings) -> Validation:
    return validate_plan(draft, **_tolerances(settings))


def _apply(edit: Any, draft: Draft) -> dict[str, Any]:
    if isinstance(edit, Reassign):
        return edits.reassign_units(draft, edit.unit_kind, edit.unit_ids, edit.to_code, edit.from_code)
    if isinstance(edit, MoveBoundary):
        return edits.move_boundary(draft, edit.code, edit.other_code, edits.line_from_geojson(edit.line,
                                                                                             ("body", "line")))
    if isinstance(edit, Split):
        return edits.split_grid(draft, edit.code, edits.line_from_geojson(edit.line, ("body", "line")),
                                edit.new_codes, edit.names)
    if isinstance(edit, Merge):
        return edits.merge_grids(draft, edit.codes, edit.into)
    if isinstance(edit, Create):
        geom = polygon_from_geojson(edit.geometry, ("body", "geometry"), max_vertices=50_000, crs=edit.crs)
        return edits.create_grid(draft, edit.code, edit.level, edit.name, edit.parent_code, geom)
    if isinstance(edit, Retire):
        return edits.retire_grid(draft, edit.code)
    if isinstance(edit, Rename):
        return edits.rename_grid(draft, edit.code, edit.name)
    if isinstance(edit, Recode):
        return edits.recode_grid(draft, edit.code, edit.new_code)
    assert isinstance(edit, AllowParts)
    return edits.allow_parts(draft, edit.code, edit.allowed)


# --- routes -------------------------------------------------------------------------------------


@router.post("", status_code=201, response_model=PlanOut, summary="Start a draft plan",
             responses=schemas.problems(*schemas.READ))
def create(session: SessionDep, ctx: Annotated[Context, context_of(Permission.PLAN_GRIDS)], body: NewPlan) -> Response:
    plan = plans.create_plan(session, ctx, body.name, note=body.note)
    return _json(_out(session, plan, Draft(session, plan)), plan, 201)


@router.get("", response_model=list[PlanOut], summary="Plans, newest first",
            responses=schemas.problems(*schemas.READ))
def list_all(
    session: SessionDep, _: Annotated[Context, context_of(Permission.PLAN_GRIDS)],
    status: Annotated[Literal["draft", "scheduled", "published", "discarded"] | None, Query()] = None,
) -> list[dict[str, Any]]:
    found = plans.list_plans(session, "scheduled" if status == "published" else status)
    if status == "published":
        found = plans.list_plans(session, "published") + [
            p for p in found if plans.shown_status(session, p) == "published"]
    elif status == "scheduled":
        found = [p for p in found if plans.shown_status(session, p) == "scheduled"]
    return [_out(session, p) for p in sorted(found, key=lambda p: -p.id)]


@router.get("/{plan_id}", response_model=PlanDetail, summary="A plan and its proposed grids (ETag: its version)",
            responses=schemas.problems(*schemas.ONE))
def get_one(session: SessionDep, _: Annotated[Context, context_of(Permission.PLAN_GRIDS)],
            plan_id: PlanId) -> Response:
    plan = plans.get_plan(session, plan_id)
    draft = Draft(session, plan)
    return _json({**_out(session, plan, draft), "features": plans.grid_features(draft)}, plan)


@router.patch("/{plan_id}", response_model=PlanOut, summary="Rename a plan or change its note (If-Match)",
              responses=CHANGE_RESPONSES)
def patch(session: SessionDep, ctx: Annotated[Context, context_of(Permission.PLAN_GRIDS)], plan_id: PlanId,
          body: PlanPatch, if_match: IfMatch = None) -> Response:
    def run() -> Plan:
        plan = plans.get_plan(session, plan_id, for_update=True)
        plans.check_version(plan, _version(if_match))
        plans.must_be_draft(plan)
        if body.name is not None:
            if not body.name.strip():
                raise InputError(Problem(("body", "name"), "a plan needs a name", "missing"))
            plan.name = body.name.strip()
        if body.note is not None:
            plan.note = body.note
        plans.touch(plan)
        ctx.audit(session, "plan.update", resource="plan", resource_ids=[plan.id], detail={"version": plan.version})
        return plan

    plan = _guarded(run)
    return _json(_out(session, plan), plan)


@router.post("/{plan_id}/discard", response_model=PlanOut, summary="Discard a draft (If-Match)",
             responses=CHANGE_RESPONSES)
def discard(session: SessionDep, ctx: Annotated[Context, context_of(Permission.PLAN_GRIDS)], plan_id: PlanId,
            if_match: IfMatch = None) -> Response:
    plan = _guarded(lambda: plans.discard_plan(session, ctx, plan_id, _version(if_match)))
    return _json(_out(session, plan), plan)


@router.post("/{plan_id}/edits", response_model=EditAnswer,
             summary="One edit: reassign units, move a boundary, split, merge, create, retire, rename, recode "
                     "(If-Match)", responses=CHANGE_RESPONSES)
def edit(session: SessionDep, settings: SettingsDep, ctx: Annotated[Context, context_of(Permission.PLAN_GRIDS)],
         plan_id: PlanId, body: Edit, if_match: IfMatch = None) -> Response:
    plan, draft, report = _guarded(lambda: edits.edit_plan(
        session, ctx, plan_id, _version(if_match), body.kind, lambda d: _apply(body, d)))
    return _json({"plan": _out(session, plan, draft), "report": report,
                  "validation": _validation(draft, settings).as_dict()}, plan)


@router.get("/{plan_id}/validation", response_model=ValidationOut, summary="Every problem of the plan, located",
            responses=schemas.problems(*schemas.ONE))
def validation(session: SessionDep, settings: SettingsDep,
               _: Annotated[Context, context_of(Permission.PLAN_GRIDS)], plan_id: PlanId) -> Response:
    plan = plans.get_plan(session, plan_id)
    return _json(_validation(Draft(session, plan), settings).as_dict(), plan)


ImpactTarget = Annotated[float | None, Query(gt=0, description="households per grid member the planner aims at")]
ImpactTolerance = Annotated[float | None, Query(ge=0, le=1, description="allowed deviation from the target, "
                                                "a share (0.2 = ±20%)")]


def _impact(session: SessionDep, plan_id: int, target: float | None, tolerance: float | None) -> Any:
    plan = plans.get_plan(session, plan_id)
    return publish_engine.impact(session, Draft(session, plan).changes(), target=target, tolerance=tolerance)


@router.get("/{plan_id}/impact", response_model=ImpactOut,
            summary="Who and what moves from which grid to which; workload before and after",
            responses=schemas.problems(*schemas.ONE))
def impact(session: SessionDep, _: Annotated[Context, context_of(Permission.PLAN_GRIDS)], plan_id: PlanId,
           target: ImpactTarget = None, tolerance: ImpactTolerance = None) -> dict[str, Any]:
    answer: dict[str, Any] = _impact(session, plan_id, target, tolerance).as_dict()
    return answer


@router.get("/{plan_id}/impact.csv", summary="The impact table as CSV", response_class=schemas.DownloadResponse,
            responses=schemas.download(CSV_MEDIA_TYPE, also=schemas.ONE))
def impact_csv(session: SessionDep, _: Annotated[Context, context_of(Permission.PLAN_GRIDS)], plan_id: PlanId,
               target: ImpactTarget = None, tolerance: ImpactTolerance = None) -> Response:
    found = _impact(session, plan_id, target, tolerance)
    rows = found.rows()
    return table_response(IMPACT_TABLE, rows, f"plan_{plan_id}_impact", len(rows))


@router.post("/{plan_id}/publish", response_model=PublishAnswer,
             summary="Publish a finished plan now or at a later instant (If-Match; needs edit_grids too)",
             responses=CHANGE_RESPONSES)
def publish(session: SessionDep, settings: SettingsDep, ctx: Annotated[Context, context_of(Permission.PLAN_GRIDS)],
            plan_id: PlanId, body: PublishBody, if_match: IfMatch = None) -> Response:
    if ctx.principal is None or not ctx.principal.can(Permission.EDIT_GRIDS):
        raise Forbidden("publishing a plan also needs the permission to edit grids")
    plan, result = _guarded(lambda: plans.publish_plan(session, ctx, plan_id, _version(if_match), body.effective_at,
                                                       tolerances=_tolerances(settings)))
    return _json({"plan": _out(session, plan), "result": result.as_dict()}, plan)


@router.post("/{plan_id}/cancel", response_model=PlanOut,
             summary="Withdraw a scheduled plan before its effective instant: a draft again (If-Match)",
             responses=CHANGE_RESPONSES)
def cancel(session: SessionDep, ctx: Annotated[Context, context_of(Permission.PLAN_GRIDS)], plan_id: PlanId,
           if_match: IfMatch = None) -> Response:
    if ctx.principal is None or not ctx.principal.can(Permission.EDIT_GRIDS):
        raise Forbidden("withdrawing a scheduled plan also needs the permission to edit grids")
    plan = _guarded(lambda: plans.cancel_plan(session, ctx, plan_id, _version(if_match)))
    return _json(_out(session, plan), plan)


@router.post("/{plan_id}/undo", response_model=PublishAnswer,
             summary="Undo a published plan: publish its inverse as a new plan (If-Match of the published plan)",
             responses=CHANGE_RESPONSES)
def undo(session: SessionDep, ctx: Annotated[Context, context_of(Permission.PLAN_GRIDS)], plan_id: PlanId,
         body: PublishBody, if_match: IfMatch = None) -> Response:
    if ctx.principal is None or not ctx.principal.can(Permission.EDIT_GRIDS):
        raise Forbidden("undoing a plan publishes grids: it also needs the permission to edit grids")
    plan, result = _guarded(lambda: plans.undo_plan(session, ctx, plan_id, _version(if_match), body.effective_at))
    return _json({"plan": _out(session, plan), "result": result.as_dict()}, plan)


@router.get("/{plan_id}/equivalency.csv", summary="The plan's unit -> grid assignment (equivalency file)",
            response_class=schemas.DownloadResponse, responses=schemas.download(CSV_MEDIA_TYPE, also=schemas.ONE))
def equivalency_export(session: SessionDep, _: Annotated[Context, context_of(Permission.PLAN_GRIDS)],
                       plan_id: PlanId) -> Response:
    plan = plans.get_plan(session, plan_id)
    rows = list(exchange.equivalency_rows(Draft(session, plan)))
    return table_response(exchange.EQUIVALENCY, rows, f"plan_{plan_id}_equivalency", len(rows))


@router.post("/{plan_id}/equivalency", response_model=EditAnswer,
             summary="Import an equivalency file (CSV: 单元编号, 网格编码[, 单元类型]) into the plan (If-Match)",
             responses={**CHANGE_RESPONSES, **schemas.problems(413)})
def equivalency_import(session: SessionDep, settings: SettingsDep,
                       ctx: Annotated[Context, context_of(Permission.PLAN_GRIDS)], plan_id: PlanId,
                       file: Annotated[UploadFile, File(description="CSV, UTF-8 or GBK")],
                       if_match: IfMatch = None) -> Response:
    name = Path(file.filename or "equivalency.csv").name
    with saved_upload(file, ".csv", settings.max_upload_bytes) as path:
        data = path.read_bytes()
    plan, draft, report = _guarded(lambda: edits.edit_plan(
        session, ctx, plan_id, _version(if_match), "equivalency_import",
        lambda d: exchange.import_equivalency(d, data, name)))
    return _json({"plan": _out(session, plan, draft), "report": report,
                  "validation": _validation(draft, settings).as_dict()}, plan)


GPKG_MEDIA_TYPE = "application/geopackage+sqlite3"


@router.get("/{plan_id}/boundaries", summary="The plan's proposed grids as GeoJSON or GeoPackage",
            response_class=schemas.GeoJSONResponse, response_model=PlanBoundaries,
            responses={200: {"content": {GPKG_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
                       **schemas.problems(*schemas.ONE)})
def boundaries(session: SessionDep, _: Annotated[Context, context_of(Permission.PLAN_GRIDS)], plan_id: PlanId,
               format: Annotated[Literal["geojson", "gpkg"], Query()] = "geojson") -> Response:
    plan = plans.get_plan(session, plan_id)
    draft = Draft(session, plan)
    if format == "gpkg":
        return Response(exchange.boundaries_gpkg(draft), media_type=GPKG_MEDIA_TYPE,
                        headers={"Content-Disposition": f'attachment; filename="plan_{plan_id}.gpkg"'})
    body = exchange.boundaries_geojson(plans.grid_features(draft))
    return Response(json.dumps(body, ensure_ascii=False), media_type=schemas.GEOJSON_MEDIA_TYPE, headers=_etag(plan))
