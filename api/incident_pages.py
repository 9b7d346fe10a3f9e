"""Working pages for incidents: one incident's detail with the loop actions the viewer may take
(/pages/incidents/{id}), and the command center's review queue (/pages/review).

The HTML is a constant skeleton in the page shell; the incident data is fetched by the page's script
from the JSON API (/incidents/{id}, /incidents/review …) and put in with text nodes. The buttons
are the detail's `actions` (gis.incidents.service.incident_actions: the POST routes' own rule)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse

from api.deps import SessionDep
from api.maps import ASSET_PREFIX
from api.pages import page_response, shell_of
from api.security import require_page
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.codes import LEVEL_NAMES_ZH
from gis.incidents import service
from gis.incidents.loop import STATE_NAMES_ZH, TRANSITIONS, State
from maps.labels import STAFF_ROLES
from maps.offline import ASSET_PATHS
from maps.shell import STATIC_PREFIX, plain_page

router = APIRouter(tags=["pages"])

# The loop's five steps as the page draws them (closed is shown after the fifth).
LOOP_STEPS = [State.VISIT, State.REPORT, State.STUDY, State.HANDLE, State.FOLLOW_UP]

# What each button says; {next} is the stage it leads to, {state} the current one.
ACTION_LABELS: dict[str, str] = {
    "advance": "完成{state}，转入{next}",
    "satisfied": "群众满意，办结",
    "not_satisfied": "群众不满意，退回{next}",
    "reopen": "重新办理（退回{next}）",
    "review": "确认归属网格",
    "reassign": "改派到其他网格…",
}
ACTION_DONE = "已办理：{label}"

# Why an incident waits for review, in words a township cadre reads (see service.review_reasons).
REVIEW_REASONS: dict[str, str] = {
    "on_boundary": "位于两个网格的交界线上",
    "outside_town": "位于镇界之外{distance}米",
    "vague_place": "地名只能定位到村或片区，未落到村民小组网格",
    "no_group_grid": "不在任何村民小组网格内",
}

TEXTS: dict[str, str] = {
    "loading": "正在读取…",
    "no_actions": "您的角色在此环节没有可办理的操作。",
    "no_photos": "暂无照片",
    "no_history": "暂无记录",
    "no_duplicates": "没有可能重复的事件",
    "no_assignees": "暂无责任人",
    "uploaded": "照片已上传",
    "choose_photo": "请先选择照片",
    "photo_for_step": "照片将记在当前环节：{state}",
    "overdue": "已超期",
    "on_time": "未超期",
    "escalated": "已升级至{level}",
    "none": "—",
    "distance": "相距{distance}米",
    "reviewed": "已确认归属",
    "reassigned": "已改派至{name}（{code}）",
    "queue_empty": "审核队列为空，没有待审核的事件。",
    "queue_total": "待审核 {total} 件，已显示 {shown} 件",
    "current": "（当前）",
    "candidate": "{name}（{village}，{distance}）",
    "inside": "点位在其内",
    "metres": "{distance}米",
    "pick_grid": "请选择或填写网格编码",
    "code_format": "网格编码为15位数字",
    "not_candidate": "该网格不在事件点位附近，只能改派到候选网格之一",
    "satisfied_yes": "满意", "satisfied_no": "不满意",
    "system": "系统",
}

HISTORY_ACTIONS: dict[str, str] = {
    "intake": "登记", "advance": "转入下一环节", "satisfied": "回访：满意", "not_satisfied": "回访：不满意",
    "reopen": "重新办理", "import": "批量导入",
}


def _names() -> dict[str, Any]:
    """The page's Chinese words and the loop's table (one source: the Python dicts)."""
    return {
        "actions": ACTION_LABELS, "action_done": ACTION_DONE, "reasons": REVIEW_REASONS, "texts": TEXTS,
        "history_actions": HISTORY_ACTIONS, "duties": STAFF_ROLES,
        "levels": {str(int(k)): v for k, v in LEVEL_NAMES_ZH.items()},
        "steps": [{"state": s.value, "name": STATE_NAMES_ZH[s]} for s in LOOP_STEPS],
        "closed": STATE_NAMES_ZH[State.CLOSED],
        "transitions": {f"{s.value} {a.value}": t.value for (s, a), t in TRANSITIONS.items()},
    }


DETAIL_BODY = """
<div class="incident-layout" id="incident-page">
  <section class="wangge-panel incident-head" id="incident-head">
    <h2 id="incident-title"></h2>
    <ol class="incident-loop" id="incident-loop" aria-label="一访二报三研四办五问"></ol>
    <p class="incident-state" id="incident-state"></p>
    <p class="incident-description" id="incident-description"></p>
    <dl class="incident-facts" id="incident-facts"></dl>
    <div class="incident-map" id="incident-map" role="img" aria-label="事件位置与周边网格"></div>
  </section>
  <section class="wangge-panel" id="incident-actions-panel">
    <h3>办理</h3>
    <label class="incident-note-label" for="incident-note">办理说明（可选）</label>
    <textarea id="incident-note" maxlength="5000" rows="3" placeholder="例如：已入户走访，双方同意调解"></textarea>
    <div class="incident-actions" id="incident-actions"></div>
    <p class="incident-muted" id="incident-no-actions" hidden></p>
  </section>
  <section class="wangge-panel" id="incident-photos-panel">
    <h3>照片</h3>
    <div class="incident-photos" id="incident-photos"></div>
    <form class="incident-photo-form" id="incident-photo-form" hidden>
      <p class="incident-muted" id="incident-photo-step"></p>
      <input type="file" id="incident-photo-file" accept="image/jpeg,image/png,image/webp" capture="environment">
      <button type="submit" id="incident-photo-upload">上传照片</button>
    </form>
  </section>
  <section class="wangge-panel" id="incident-history-panel">
    <h3>处理记录</h3>
    <ol class="incident-history" id="incident-history"></ol>
  </section>
  <section class="wangge-panel" id="incident-people-panel">
    <h3>责任人</h3>
    <ul class="incident-assignees" id="incident-assignees"></ul>
    <h3>可能重复的事件</h3>
    <ul class="incident-duplicates" id="incident-duplicates"></ul>
  </section>
</div>
"""

REVIEW_BODY = """
<section class="wangge-panel review-filters">
  <form id="review-filter" class="review-filter">
    <label>类别 <select id="review-category"><option value="">全部</option></select></label>
    <label>网格编码 <input id="review-grid" inputmode="numeric" maxlength="15" placeholder="任一级网格"></label>
    <label>超期 <select id="review-overdue"><option value="">全部</option><option value="true">已超期</option>
      <option value="false">未超期</option></select></label>
    <button type="submit">筛选</button>
  </form>
  <p class="incident-muted" id="review-total"></p>
</section>
<ul class="review-list" id="review-list"></ul>
<p class="review-more"><button type="button" id="review-more" hidden>加载更多</button></p>
"""

STYLE = f"{STATIC_PREFIX}/incident.css"
# Leaflet (served locally with the map assets) draws the small map of the point and its grids.
LEAFLET = tuple(f"{ASSET_PREFIX}/{ASSET_PATHS[name]}" for name in ("leaflet", "leaflet_css"))


@router.get("/pages/incidents/{incident_id}", response_class=HTMLResponse, include_in_schema=False)
def incident_page(
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require_page(Permission.VIEW_INCIDENTS))],
    incident_id: Annotated[int, PathParam(ge=1, le=2**62)],
) -> HTMLResponse:
    # A missing (or invisible) incident is a Chinese 404 page; read as the principal, not audited:
    # the page itself shows nothing of it (its script reads the detail through the API).
    service.get_incident(session, principal, incident_id)
    shell = shell_of(request, session, principal)
    config = {"incident_id": incident_id, "incident": _names()}
    return page_response(plain_page(f"事件详情 #{incident_id}", shell, body=DETAIL_BODY, config=config,
                                    scripts=[LEAFLET[0], f"{STATIC_PREFIX}/incident.js"],
                                    styles=[LEAFLET[1], STYLE]))


@router.get("/pages/review", response_class=HTMLResponse, include_in_schema=False)
def review_page(
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require_page(Permission.REVIEW_INCIDENTS))],
) -> HTMLResponse:
    shell = shell_of(request, session, principal)
    config = {"incident": _names(), "page_size": 20}
    return page_response(plain_page("审核队列", shell, body=REVIEW_BODY, config=config,
                                    scripts=[f"{STATIC_PREFIX}/incident.js", f"{STATIC_PREFIX}/review.js"],
                                    styles=[STYLE]))
