"""The data-quality report of the register: GET /register/quality (JSON, CSV, xlsx) and its page /pages/quality."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from api import schemas
from api.deps import Reason, SessionDep, request_context
from api.exports import table_response
from api.pages import page_response, shell_of
from api.security import require_page, requires
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.register import quality
from maps.shell import STATIC_PREFIX, plain_page

router = APIRouter(tags=["register"])

QualityKind = Literal[
    "household_outside_grids", "grid_without_leader", "grid_without_members", "member_over_limit",
    "household_without_responsible", "household_missing_phone", "staff_missing_phone", "resident_invalid_id",
    "shelter_over_capacity",
]
MemberLimit = Annotated[int, Query(ge=1, le=100_000, description="most households one grid member should answer for")]
PerKind = Annotated[int, Query(ge=1, le=quality.MAX_PER_KIND, description="findings listed per kind (all are counted)")]


class QualityKindSummary(BaseModel):
    kind: QualityKind
    label: str = Field(description="the kind in Chinese")
    total: int = Field(description="findings of this kind in your grids (the whole town for town-wide roles)")
    listed: int = Field(description="of them in `findings`")
    hidden: int = Field(description="households you may not see: counted here, not named")


class QualityFinding(BaseModel):
    kind: QualityKind
    detail: str = Field(description="what is wrong, in Chinese; personal values masked unless shown to you")
    grid_code: schemas.GridCode | None = None
    grid_name: str | None = None
    household_id: int | None = None
    household_no: str | None = None
    staff_id: int | None = None
    shelter_id: int | None = None
    subject: str | None = Field(default=None, description="the household head, staff member, shelter or grid")
    value: int | None = None
    limit: int | None = None
    link: str | None = Field(default=None, description="a page where you can see it, where your role may")
    personal_fields: schemas.PersonalFields | None = None


class QualityReport(BaseModel):
    member_limit: int
    responsibility: Literal["list", "grid"] = Field(
        description="list: the 联系户 list; grid: a group grid's members share its households")
    area: list[schemas.GridCode] = Field(description="your grids; empty: the whole town")
    summary: list[QualityKindSummary]
    findings: list[QualityFinding]


@router.get("/register/quality", summary="Data-quality report of the register (JSON, CSV or xlsx)",
            response_model=QualityReport, **schemas.DATA, responses=schemas.formats())
def quality_report(
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, requires(Permission.VIEW_HOUSEHOLD_COUNTS)],
    member_limit: MemberLimit = quality.DEFAULT_MEMBER_LIMIT,
    per_kind: PerKind = quality.DEFAULT_PER_KIND,
    format: Literal["json", "csv", "xlsx"] = "json",
    reason: Reason = None,
) -> Any:
    report = quality.quality_report(session, principal, member_limit=member_limit, per_kind=per_kind,
                                    ctx=request_context(request, principal, reason), fmt=format)
    if format in ("csv", "xlsx"):
        rows = report.rows()
        return table_response(quality.EXPORT, rows, "register-quality", len(rows), format)
    return report.as_dict()


QUALITY_BODY = """
<section class="wangge-panel" id="quality">
  <h2>台账数据质量</h2>
  <form id="quality-form" class="wangge-quality-form">
    <label>每名网格员联系户上限 <input id="quality-limit" type="number" min="1" max="100000" step="1"></label>
    <button type="submit">重新检查</button>
    <a id="quality-csv" href="/register/quality?format=csv">下载 CSV</a>
    <a id="quality-xlsx" href="/register/quality?format=xlsx">下载 Excel</a>
  </form>
  <p id="quality-status" role="status">正在检查…</p>
  <table class="wangge-table" id="quality-summary">
    <thead><tr><th>问题</th><th>数量</th><th>无权查看</th></tr></thead><tbody></tbody>
  </table>
  <div id="quality-findings"></div>
</section>
"""


@router.get("/pages/quality", response_class=HTMLResponse, include_in_schema=False)
def quality_page(
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require_page(Permission.VIEW_HOUSEHOLD_COUNTS))],
) -> HTMLResponse:
    shell = shell_of(request, session, principal)
    config = {"quality": {"url": "/register/quality", "member_limit": quality.DEFAULT_MEMBER_LIMIT,
                          "labels": quality.KINDS}}
    return page_response(plain_page("台账数据质量", shell, body=QUALITY_BODY, config=config,
                                    scripts=[f"{STATIC_PREFIX}/quality.js"],
                                    styles=[f"{STATIC_PREFIX}/quality.css"]))
