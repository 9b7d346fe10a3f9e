"""The grid member's phone: my grid and my tasks (/m/), report an incident (/m/report), and the small
JSON answers those pages need (/places/suggest, /me/grids)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api import schemas
from api.deps import SessionDep
from api.pages import page_response
from api.security import context_of, require_page, requires
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.context import Context
from gis.grid_member import my_grids as my_grids_of
from gis.incidents.gazetteer import MAX_PLACE_CHARS, MAX_SUGGESTIONS, suggest
from maps.shell import STATIC_PREFIX as STATIC
from maps.shell import page_shell, plain_page

router = APIRouter(tags=["mobile"])


class PlaceSuggestion(BaseModel):
    label: str = Field(description="the stored name: sent as a report's `place`, it names this place")
    kind: str = Field(description="town | area | village | grid | natural_village | shelter | household")
    lon: float
    lat: float
    code: str | None = Field(default=None, description="the grid's code, for the grid kinds")
    household_id: int | None = None


class PlaceSuggestions(BaseModel):
    items: list[PlaceSuggestion]
    more: bool = Field(description="more names matched than were offered")


@router.get("/places/suggest", summary="Place names for what a reporter has typed so far (offline gazetteer)",
            response_model=PlaceSuggestions, **schemas.DATA, responses=schemas.problems(*schemas.READ))
def place_suggestions(
    session: SessionDep,
    ctx: Annotated[Context, context_of(Permission.REPORT_INCIDENTS)],
    q: Annotated[str, Query(min_length=1, max_length=MAX_PLACE_CHARS, description="the text typed so far")],
    limit: Annotated[int, Query(ge=1, le=MAX_SUGGESTIONS)] = 8,
) -> dict[str, Any]:
    found = suggest(session, ctx, q, limit)
    return {"items": [vars(s) for s in found.items], "more": found.more}


class StaffCard(BaseModel):
    id: int
    name: str
    phone: str | None = None
    role: str = Field(description="grid_leader | grid_member | party_household | supervisor")


class MyGrid(BaseModel):
    code: str
    name: str
    level: int
    path: list[str] = Field(description="the names of the grids above it, town first")
    staff: list[StaffCard] = Field(description="who serves in it, leader first (the grid's public board)")


class MyGrids(BaseModel):
    grids: list[MyGrid] = Field(description="the grids of the caller's scope; none for roles without one")


@router.get("/me/grids", summary="The grids I serve in, with their staff (the phone's start page)",
            response_model=MyGrids, **schemas.DATA, responses=schemas.problems(*schemas.SIGNED_IN))
def my_grids(session: SessionDep, principal: Annotated[Principal, requires(Permission.VIEW_GRIDS)]) -> dict[str, Any]:
    return {"grids": my_grids_of(session, principal)}


# --- the pages ----------------------------------------------------------------------------------
# Constant skeletons (no user data: mobile.js fills them in with textContent).

HOME_BODY = """
<section class="m-card" id="m-grids" aria-labelledby="m-grids-title">
  <h2 id="m-grids-title">我的网格</h2>
  <div id="m-grid-list"><p class="m-hint">正在读取……</p></div>
</section>
<section class="m-card" id="m-tasks" aria-labelledby="m-tasks-title">
  <h2 id="m-tasks-title">我的任务 <span class="m-count" id="m-task-count"></span></h2>
  <p class="m-hint">未办结的事件：超期的排在最前，其余按期限先后。</p>
  <ol class="m-list" id="m-task-list"></ol>
  <button type="button" class="m-more" id="m-task-more" hidden>加载更多</button>
</section>
<section class="m-card" id="m-households" aria-labelledby="m-households-title" hidden>
  <h2 id="m-households-title">网格住户 <span class="m-count" id="m-household-count"></span></h2>
  <ol class="m-list" id="m-household-list"></ol>
  <button type="button" class="m-more" id="m-household-more" hidden>加载更多</button>
</section>
<a class="m-fab" id="m-report-link" href="/m/report">＋ 上报事件</a>
"""

REPORT_BODY = """
<form class="m-card" id="m-report-form" novalidate>
  <label class="m-field">类别
    <select id="m-category" name="category" required></select></label>
  <label class="m-field" id="m-kind-field" hidden>纠纷类型
    <select id="m-kind" name="dispute_kind"></select></label>
  <label class="m-field">情况描述
    <textarea id="m-description" name="description" rows="4" maxlength="5000" required
      placeholder="发生了什么、涉及谁、现在怎样"></textarea></label>
  <label class="m-field">发生时间（北京时间）
    <input type="datetime-local" id="m-occurred" name="occurred_at" required></label>
  <div class="m-field">照片（可选）
    <div class="m-photo-row">
      <label class="m-button" for="m-photo">拍照 / 选照片</label>
      <span class="m-hint" id="m-photo-name">未选照片</span>
    </div>
    <input type="file" class="m-photo-input" id="m-photo" name="photo" accept="image/*" capture="environment">
  </div>
  <fieldset class="m-field" id="m-where">
    <legend>位置</legend>
    <div class="m-tabs" role="radiogroup" aria-label="位置来源">
      <label><input type="radio" name="where" value="gps" id="m-where-gps-choice" checked> 用我的位置</label>
      <label><input type="radio" name="where" value="place" id="m-where-place-choice"> 输入地名</label>
    </div>
    <div id="m-where-gps">
      <button type="button" class="m-button" id="m-locate">获取我的位置</button>
      <div class="m-coords">
        <label>经度 <input type="number" step="any" id="m-lon" inputmode="decimal"></label>
        <label>纬度 <input type="number" step="any" id="m-lat" inputmode="decimal"></label>
      </div>
      <label class="m-check"><input type="checkbox" id="m-gcj">
        坐标来自高德、腾讯等国内地图应用（GCJ-02 火星坐标）</label>
      <p class="m-hint" id="m-crs-note">手机定位给出的是 WGS84 坐标，按 WGS84 上报。</p>
    </div>
    <div id="m-where-place" hidden>
      <input type="text" id="m-place" maxlength="100" autocomplete="off" placeholder="如：尹营村三组、尹营小学"
        aria-autocomplete="list" aria-controls="m-suggestions">
      <ul class="m-suggestions" id="m-suggestions" role="listbox" aria-label="地名建议"></ul>
    </div>
  </fieldset>
  <button type="submit" class="m-button m-primary" id="m-submit">提交上报</button>
</form>
<section class="m-card" id="m-result" hidden aria-live="polite">
  <h2>已上报</h2>
  <p id="m-routing"></p>
  <h3>分派到的网格</h3>
  <ol class="m-path" id="m-grid-path"></ol>
  <h3>已通知</h3>
  <ul class="m-list" id="m-assignees"></ul>
  <p id="m-photo-status"></p>
  <p class="m-actions"><a class="m-button" id="m-incident-link" href="#">查看事件</a>
    <a class="m-button" href="/m/report">再报一件</a> <a class="m-button" href="/m/">我的任务</a></p>
</section>
"""



def _page(session: Session, principal: Principal, *, title: str, current: str, body: str,
          config: dict[str, Any]) -> HTMLResponse:
    shell = page_shell(session, principal, current=current)
    return page_response(plain_page(title, shell, body=body, config=config, scripts=[STATIC + "/mobile.js"],
                                    styles=[STATIC + "/mobile.css"]))


def _names() -> dict[str, Any]:
    """The Chinese names the phone's pages show beside the shell's (place kinds, staff duties, levels)."""
    from gis.incidents.categories import CATEGORY_NAMES_ZH, DISPUTE_NAMES_ZH
    from gis.incidents.loop import STATE_NAMES_ZH

    return {"place_kinds": PLACE_KIND_NAMES, "staff_roles": STAFF_ROLE_NAMES, "levels": LEVEL_NAMES,
            "categories": {k.value: v for k, v in CATEGORY_NAMES_ZH.items()},
            "dispute_kinds": {k.value: v for k, v in DISPUTE_NAMES_ZH.items()},
            "states": {str(k): v for k, v in STATE_NAMES_ZH.items()}}


PLACE_KIND_NAMES = {"town": "镇", "area": "片区", "village": "行政村", "grid": "网格", "natural_village": "自然村",
                    "shelter": "避险场所", "household": "门牌地址"}
STAFF_ROLE_NAMES = {"grid_leader": "网格长", "grid_member": "网格员", "party_household": "党员中心户",
                    "supervisor": "网格督导员"}
LEVEL_NAMES = {"1": "镇", "2": "片区", "3": "行政村", "4": "村民小组网格"}


@router.get("/m/", include_in_schema=False, response_class=HTMLResponse)
def home_page(session: SessionDep,
              principal: Annotated[Principal, Depends(require_page(Permission.VIEW_INCIDENTS))]) -> HTMLResponse:
    return _page(session, principal, title="我的网格", current="/m/", body=HOME_BODY, config={
        "page": "home", "mobile_names": _names(), "households": principal.can(Permission.VIEW_HOUSEHOLDS),
        "can_report": principal.can(Permission.REPORT_INCIDENTS),
        "can_work": principal.can(Permission.WORK_INCIDENTS), "page_size": 50})


@router.get("/m/report", include_in_schema=False, response_class=HTMLResponse)
def report_page(session: SessionDep,
                principal: Annotated[Principal, Depends(require_page(Permission.REPORT_INCIDENTS))]) -> HTMLResponse:
    return _page(session, principal, title="上报事件", current="/m/report", body=REPORT_BODY, config={
        "page": "report", "mobile_names": _names(), "max_place_chars": MAX_PLACE_CHARS, "suggest_limit": 8,
        "suggest_delay_ms": 250})
