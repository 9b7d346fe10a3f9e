"""The flooded-households finder, its 明白卡 checklist and per-grid flood risk (every call audited)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from api import schemas
from api.deps import PageOffset, Reason, SessionDep, check_page_limit, request_context
from api.exports import offset_next_link, point_feature, table_response
from api.lean import LeanRoute, lean, params_model
from api.security import Check, checks, requires
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.errors import InputError, Problem
from gis.flood import answers
from gis.flood import labels as L

router = APIRouter(prefix="/flood", tags=["flood"], route_class=LeanRoute)

ExtentId = Annotated[int | None, Query(ge=1, le=2**62, description="a stored flood extent's id")]
Scenario = Annotated[str | None, Query(max_length=40, pattern=r"^[0-9A-Za-z._\-]+$",
                                       description="a named scenario (e.g. 2023-09-23) or a stage in m (e.g. 1.5)")]
BufferM = Annotated[float, Query(ge=0, le=5000, description="also houses within this many metres of the extent")]
GridFilter = Annotated[str | None, Query(pattern=r"^\d{15}$", description="only households of this grid (any level)")]

# A checklist is printed per grid member; past this size ask for one village or group at a time.
MAX_CHECKLIST_HOUSEHOLDS = 1500


SortBy = Annotated[Literal["rank", "depth", "vulnerable", "residents", "distance", "household_no"], Query(
    description="rank: rescue order (default); depth, vulnerable, residents: most first; distance to the "
                "shelter: nearest first; household_no. Ties in rescue order")]
Format = Literal["json", "geojson", "csv", "xlsx"]

# The list's query as one model: its lean path (api.lean) validates it at once, without dependencies to solve.
FloodHouseholdsQuery = params_model(
    "FloodHouseholdsQuery", extent=(ExtentId, None), scenario=(Scenario, None), buffer_m=(BufferM, 0.0),
    grid_code=(GridFilter, None), limit=(Annotated[int, Query(ge=1)], 1000), offset=(PageOffset, 0),
    format=(Format, "json"), reason=(Reason, None), sort=(SortBy, "rank"))


def _households(request: Request, session: Any, check: Check, *, extent: int | None, scenario: str | None,
                buffer_m: float, grid_code: str | None, limit: int, offset: int, format: Format, reason: str | None,
                sort: str) -> Response:
    """One page of the list in the request's one worker thread: the credential check rides in the page's
    message (Check.within); then the audit row of the read and the COMMIT, in one more."""
    check_page_limit(limit, request.app.state.settings)

    def read(principal: Principal) -> tuple[Principal, answers.FloodPage]:
        return principal, answers.flood_page(session, principal, extent_id=extent, scenario=scenario,
                                             buffer_m=buffer_m, grid_code=grid_code, limit=limit, offset=offset,
                                             sort=sort)

    reader, page = check.within(session, read)   # the caller the page was read for, as the check found it
    answers.audit_read(session, request_context(request, reader, reason), page, scenario=scenario,
                       grid_code=grid_code, fmt=format, sort=sort, commit=True)
    total = page.total
    if format in ("csv", "xlsx"):
        return table_response(L.EXPORT, page.items, "flood_households", total, format)
    if format == "geojson":
        fc = {"type": "FeatureCollection", "numberMatched": total, "numberReturned": len(page.items),
              "extent": page.extent, "totals": page.totals, "features": [point_feature(h) for h in page.items]}
        return Response(json.dumps(fc, ensure_ascii=False, default=str), media_type="application/geo+json")
    out = {**answers.as_json(page), "next": offset_next_link(request, offset, limit, total)}
    # Through its response model, as FastAPI answers a route that returns the dict.
    return Response(_PAGE.dump_json(_PAGE.validate_python(out), by_alias=True), media_type="application/json")


_PAGE = TypeAdapter(schemas.FloodHouseholdPage)


@router.get("/households", summary="Households in a flood extent, in rescue order (JSON, GeoJSON or CSV)",
            response_model=schemas.FloodHouseholdPage, **schemas.DATA,
            responses=schemas.formats(geojson=schemas.FloodHouseholdCollection, also=schemas.ONE))
@lean(_households, Permission.VIEW_HOUSEHOLDS, query=FloodHouseholdsQuery)
async def households(
    request: Request,
    session: SessionDep,
    check: Annotated[Check, checks(Permission.VIEW_HOUSEHOLDS)],
    query: Annotated[FloodHouseholdsQuery, Query()],  # type: ignore[valid-type]  # a model made at import
) -> Response:
    return await run_in_threadpool(lambda: _households(request, session, check, **vars(query)))


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
) -> Any:
    from gis.dataset_info import dataset_info
    from gis.flood.checklist import checklist_html, checklist_pdf

    # One more than may be printed, to say it is too many without reading them all.
    page = answers.list_flood_households(
        session, request_context(request, principal, reason), extent_id=extent, scenario=scenario, buffer_m=buffer_m,
        grid_code=grid_code, limit=MAX_CHECKLIST_HOUSEHOLDS + 1, fmt=format, endpoint="flood_checklist",
    )
    if page.total > MAX_CHECKLIST_HOUSEHOLDS:
        raise InputError(Problem(("query", "grid_code"),
                                 f"{page.total} households: print one village or group at a time "
                                 f"(at most {MAX_CHECKLIST_HOUSEHOLDS})"))
    sample = dataset_info(session, "sample_town")
    html = checklist_html(page.items, page.extent,
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
) -> Any:
    from gis.flood.risk import flood_risk, parse_stages

    return flood_risk(session, level=level, stages=parse_stages(stages), ctx=request_context(request, principal))
