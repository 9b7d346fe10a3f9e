"""Incident detail and review queue (issue 13): the detail's `actions` are the POST routes' own rule,
the reviewer's grid candidates and reassignment, and the pages /pages/incidents/{id} and
/pages/review driven in headless Chromium on a desktop and a phone."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.auth.principal import Principal
from gis.auth.roles import Role
from gis.errors import Forbidden, InputError, NotFound
from gis.incidents import service
from gis.incidents.loop import Action, State
from tests.conftest import database_copy, live_site, make_client, screenshot_path

TOLERANCE_M = 200.0
WHEN = "2026-11-20T09:00:00+08:00"


def _principal(accounts: dict[str, dict[str, Any]], role: str) -> Principal:
    a = accounts[role]
    return Principal(a["id"], a["username"], Role(role), tuple(a["scope_codes"]))


def _point_in(session: Any, code: str) -> tuple[float, float]:
    x, y = session.execute(text(
        "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM grid WHERE code = :c "
        "AND valid_to IS NULL) s"), {"c": code}).one()
    return float(x), float(y)


def _report(session: Any, who: Principal, lon: float, lat: float, description: str = "测试事项") -> int:
    req = service.IntakeRequest(category="environment", description=description, occurred_at=WHEN,
                                lon=lon, lat=lat)
    return service.intake(session, who, req, outside_tolerance_m=TOLERANCE_M, duplicate_radius_m=0.0,
                          duplicate_window_hours=0.0).id


def _accepted(session: Any, who: Principal, incident_id: int, action: Action) -> bool:
    """Whether the loop's POST operation takes `action` now (tried inside a savepoint, undone)."""
    nested = session.begin_nested()
    try:
        service.transition(session, who, incident_id, action.value)
        return True
    except (Forbidden, InputError):
        return False
    finally:
        nested.rollback()


def test_actions_are_exactly_what_the_transition_accepts(session, accounts):
    """For every role, in every state of the loop, for an incident in the grid staff's grid and one a
    grid member reported in another grid: `actions` lists an action iff the POST accepts it."""
    who = {role: _principal(accounts, role) for role in accounts}
    own_grid = accounts["grid_staff"]["scope_codes"][0]
    other = session.execute(text(
        "SELECT min(code) FROM grid WHERE level = 4 AND valid_to IS NULL AND parent_code <> :v"),
        {"v": own_grid[:12] + "000"}).scalar_one()
    mine = _report(session, who["admin"], *_point_in(session, own_grid))
    elsewhere = _report(session, who["grid_staff"], *_point_in(session, other))
    path = [Action.ADVANCE] * 4 + [Action.NOT_SATISFIED, Action.ADVANCE, Action.SATISFIED]
    seen: dict[str, set[str]] = {}
    for step in [None, *path]:
        for incident_id in (mine, elsewhere):
            if step is not None and incident_id == mine:
                service.transition(session, who["admin"], incident_id, step.value)
            for role, p in who.items():
                try:
                    actions = service.get_incident(session, p, incident_id)["actions"]
                except NotFound:
                    with pytest.raises(NotFound):
                        service.transition(session, p, incident_id, "advance")
                    continue
                loop = [a.value for a in Action if _accepted(session, p, incident_id, a)]
                assert [a for a in actions if a in {x.value for x in Action}] == loop, (role, incident_id, step)
                seen.setdefault(role, set()).update(loop)
    state = service.get_incident(session, who["admin"], mine)["state"]
    assert state == State.CLOSED
    # The rule has teeth: workers advance, only the command center and admins reopen, the
    # emergency team and the reporter from another grid never work the loop.
    assert seen["grid_staff"] == {"advance", "satisfied", "not_satisfied"}
    assert seen["command_center"] == seen["admin"] == {"advance", "satisfied", "not_satisfied", "reopen"}
    assert seen["emergency"] == set()
    assert "planner" not in seen
    assert service.get_incident(session, who["grid_staff"], elsewhere)["actions"] == []


def _edge_point(session: Any) -> tuple[float, float, str, str]:
    """A point on the edge two group grids share, and the two codes."""
    row = session.execute(text(
        "SELECT ST_X(p) x, ST_Y(p) y, a, b FROM (SELECT ST_PointOnSurface(ST_Intersection(ST_Boundary(a.geom), "
        "ST_Boundary(b.geom))) p, a.code a, b.code b FROM grid a JOIN grid b ON a.code < b.code "
        "AND ST_Touches(a.geom, b.geom) WHERE a.level = 4 AND b.level = 4 AND a.valid_to IS NULL "
        "AND b.valid_to IS NULL AND GeometryType(ST_Intersection(ST_Boundary(a.geom), ST_Boundary(b.geom))) "
        "LIKE '%LINESTRING' ORDER BY a.code, b.code LIMIT 1) s")).one()
    return float(row.x), float(row.y), row.a, row.b


def test_review_actions_candidates_and_reassignment(session, accounts):
    cc, staff = _principal(accounts, "command_center"), _principal(accounts, "grid_staff")
    x, y, a, b = _edge_point(session)
    iid = _report(session, cc, x, y)
    detail = service.get_incident(session, cc, iid)
    assert detail["flagged"] and detail["group_code"] == a          # the smaller code wins on an edge
    assert detail["actions"] == ["advance", "review", "reassign"]
    assert [s["code"] for s in detail["grid_path"]][-1] == a and detail["grid_path"][0]["level"] == 1
    candidates = service.grid_candidates(session, cc, iid, tolerance_m=TOLERANCE_M)
    near = {c["code"]: c for c in candidates}
    assert near[a]["current"] and near[a]["distance_m"] == 0 and near[b]["distance_m"] == 0
    assert [c["distance_m"] for c in candidates] == sorted(c["distance_m"] for c in candidates)
    far = session.execute(text(
        "SELECT g.code FROM grid g, incident i WHERE i.id = :i AND g.level = 4 AND g.valid_to IS NULL "
        "ORDER BY ST_Distance(g.geom::geography, i.geom::geography) DESC LIMIT 1"), {"i": iid}).scalar_one()
    assert far not in near
    with pytest.raises(InputError) as refused:
        service.reassign(session, cc, iid, far, tolerance_m=TOLERANCE_M)
    assert refused.value.problems[0].loc == ("body", "grid_code")
    with pytest.raises(Forbidden):
        service.grid_candidates(session, staff, iid, tolerance_m=TOLERANCE_M)
    moved = service.reassign(session, cc, iid, b, tolerance_m=TOLERANCE_M)
    assert moved["group_code"] == b and moved["village_code"] == b[:12] + "000"
    assert moved["reviewed_at"] is not None and "review" not in moved["actions"]
    staff_of_b = set(session.execute(text(
        "SELECT id FROM staff WHERE grid_code IN (:b, :v)"), {"b": b, "v": b[:12] + "000"}).scalars())
    assert {p["staff_id"] for p in moved["assignees"]} <= staff_of_b and moved["assignees"]
    assert iid not in {i["id"] for i in service.review_queue(session, cc, limit=1000).items}


# --- the pages, in headless Chromium -----------------------------------------------------------

HOSTILE = "门口堆放杂物 <img src=x onerror=\"window.__xss=1\"> {{7*7}} </script>"
LOOP = [("advance", "report"), ("advance", "study"), ("advance", "handle"), ("advance", "follow_up"),
        ("not_satisfied", "handle"), ("advance", "follow_up"), ("satisfied", "closed")]


@pytest.fixture(scope="module")
def pages_db(test_db_url):
    """A private copy of the sample town: these pages write (transitions, reviews, photos)."""
    with database_copy(test_db_url, "incident_pages") as url:
        yield url


@pytest.fixture(scope="module")
def site(pages_db, accounts):
    with live_site(pages_db) as served:
        yield served


@pytest.fixture(scope="module")
def db(pages_db):
    engine = create_engine(pages_db, poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def api(pages_db, accounts):
    with make_client(pages_db, "admin") as admin, make_client(pages_db, "grid_staff") as staff:
        yield {"admin": admin, "grid_staff": staff}


def _post_incident(client: Any, lon: float, lat: float, description: str) -> dict[str, Any]:
    r = client.post("/incidents", json={"category": "environment", "description": description,
                                        "occurred_at": WHEN, "lon": lon, "lat": lat,
                                        "reporter_name": "李四", "reporter_phone": "13900001234"})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _state(db: Any, incident_id: int) -> str:
    with db.connect() as c:
        return str(c.execute(text("SELECT state FROM incident WHERE id = :i"), {"i": incident_id}).scalar_one())


def _own_point(db: Any, accounts: dict[str, dict[str, Any]]) -> tuple[float, float]:
    with db.connect() as c:
        return _point_in(c, accounts["grid_staff"]["scope_codes"][0])


def _wait_state(page: Any, state: str) -> None:
    page.wait_for_selector(f"#incident-page[data-state='{state}']")


@pytest.mark.browser
@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_a_grid_member_works_the_whole_loop_with_the_buttons(open_as, api, db, accounts, phone):
    incident = _post_incident(api["grid_staff"], *_own_point(db, accounts), HOSTILE)
    page, checker, status = open_as("grid_staff", f"/pages/incidents/{incident['id']}", phone=phone)
    assert status == 200
    # User text is text: the description shows literally, nothing in it ran or was templated.
    assert page.text_content("#incident-description") == HOSTILE
    assert page.locator("#incident-description img").count() == 0
    assert page.evaluate("window.__xss") is None
    assert "49" not in page.text_content("#incident-description")
    facts = page.text_content("#incident-facts")
    assert "李四" in facts and "13900001234" in facts          # grid staff see their grid's reporters
    kind = "phone" if phone else "desktop"
    for i, (action, state) in enumerate(LOOP):
        before = _state(db, incident["id"])
        page.fill("#incident-note", f"第{i + 1}步：{action}")
        button = page.locator(f"#incident-actions button[data-action='{action}']")
        assert button.is_visible(), (action, page.locator("#incident-actions").inner_text())
        button.click()
        _wait_state(page, state)
        assert _state(db, incident["id"]) == state != before
        current = page.locator(".incident-step.current")
        assert current.get_attribute("data-state") == state
        if i == 0:
            page.screenshot(path=screenshot_path(f"incident-detail-{kind}"), full_page=True)
    assert _state(db, incident["id"]) == "closed"
    # Closed: a grid member may not reopen (the command center may); no button is offered.
    assert page.locator("#incident-actions button").count() == 0
    assert page.locator("#incident-no-actions").is_visible()
    history = page.locator("#incident-history li")
    assert history.count() == 1 + len(LOOP)
    assert f"第{len(LOOP)}步：satisfied" in history.nth(len(LOOP)).inner_text()
    page.screenshot(path=screenshot_path(f"incident-closed-{kind}"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"]          # nothing runs off a phone's screen
    checker.assert_clean()


@pytest.mark.browser
@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_without_the_permission_no_button_and_a_forced_post_is_refused_in_chinese(open_as, api, db, accounts,
                                                                                  phone):
    incident = _post_incident(api["admin"], *_own_point(db, accounts), "路灯不亮")
    page, checker, status = open_as("emergency", f"/pages/incidents/{incident['id']}", phone=phone)
    assert status == 200
    assert page.text_content("#incident-state").startswith("当前环节：一访")
    assert page.locator("#incident-actions button").count() == 0
    assert page.locator("#incident-no-actions").is_visible()
    assert not page.locator("#incident-note").is_visible()
    # The emergency team may see the incident but not the reporter's name (masked by the API).
    assert "李*" in page.text_content("#incident-facts")
    # Forced: the page's own action call, as a crafted click would make it.
    page.evaluate("WanggeIncident.act('advance')")
    banner = page.locator("#wangge-banner")
    banner.wait_for(state="visible")
    assert "无权" in banner.inner_text() and "forbidden" not in banner.inner_text().lower()
    page.screenshot(path=screenshot_path(f"incident-refused-{'phone' if phone else 'desktop'}"))
    assert _state(db, incident["id"]) == "visit"
    # The one refusal is the only thing wrong on the page (the browser logs the 403 it got).
    problems = [p for p in checker.problems() if "/transitions" not in p]
    assert problems == [] and any("403" in p for p in checker.problems())


@pytest.mark.browser
def test_a_photo_uploaded_on_the_page_is_shown(open_as, api, db, accounts, tmp_path):
    from PIL import Image

    incident = _post_incident(api["grid_staff"], *_own_point(db, accounts), "河道漂浮垃圾")
    photo = tmp_path / "现场.png"
    Image.new("RGB", (64, 48), (200, 60, 30)).save(photo)
    page, checker, status = open_as("grid_staff", f"/pages/incidents/{incident['id']}", phone=True)
    assert status == 200
    assert page.locator(".incident-photo").count() == 0
    # The small map: the point over its own group grid (outlines fetched by URL, nothing remote).
    page.wait_for_selector("#incident-map path.incident-point")
    page.wait_for_selector("#incident-map path.incident-grid.current")
    assert page.locator("#incident-map path.incident-grid").count() >= 2
    page.set_input_files("#incident-photo-file", str(photo))
    page.click("#incident-photo-upload")
    page.wait_for_selector(".incident-photo img")
    page.wait_for_function("document.querySelector('.incident-photo img').naturalWidth === 64")
    assert "一访" in page.text_content(".incident-photo figcaption")
    with db.connect() as c:
        rows = c.execute(text("SELECT filename, size FROM incident_attachment WHERE incident_id = :i"),
                         {"i": incident["id"]}).all()
    assert [r.filename for r in rows] == ["现场.png"] and rows[0].size == photo.stat().st_size
    page.screenshot(path=screenshot_path("incident-photo-phone"), full_page=True)
    checker.assert_clean()


def _edge_pairs(db: Any, n: int) -> list[tuple[float, float, str, str]]:
    with db.connect() as c:
        rows = c.execute(text(
            "SELECT ST_X(p) x, ST_Y(p) y, a, b FROM (SELECT ST_PointOnSurface(ST_Intersection("
            "ST_Boundary(a.geom), ST_Boundary(b.geom))) p, a.code a, b.code b FROM grid a JOIN grid b "
            "ON a.code < b.code AND ST_Touches(a.geom, b.geom) WHERE a.level = 4 AND b.level = 4 "
            "AND a.valid_to IS NULL AND b.valid_to IS NULL AND GeometryType(ST_Intersection(ST_Boundary(a.geom), "
            "ST_Boundary(b.geom))) LIKE '%LINESTRING' ORDER BY a.code DESC, b.code LIMIT :n) s"), {"n": n}).all()
    return [(float(r.x), float(r.y), r.a, r.b) for r in rows]


@pytest.mark.browser
@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_accept_one_review_item_and_reassign_another_from_the_queue(open_as, api, db, phone):
    pairs = _edge_pairs(db, 4)
    x, y, a, b = pairs[2 if phone else 0]
    accepted = _post_incident(api["admin"], x, y, "交界处的事项（确认）")
    moved = _post_incident(api["admin"], x, y, "交界处的事项（改派）")
    assert accepted["flagged"] and moved["group_code"] == a
    page, checker, status = open_as("command_center", "/pages/review", phone=phone)
    assert status == 200
    assert "待审核" in page.text_content("#review-total")
    page.fill("#review-grid", a)
    page.click("#review-filter button[type=submit]")
    page.wait_for_selector(f"#review-list[data-query*='grid_code={a}']")
    items = page.locator(".review-item")
    assert {items.nth(i).get_attribute("data-id") for i in range(items.count())} >= {
        str(accepted["id"]), str(moved["id"])}
    card = page.locator(f".review-item[data-id='{accepted['id']}']")
    assert "位于两个网格的交界线上" in card.inner_text()
    card.locator(".review-accept").click()
    card.wait_for(state="detached")
    with db.connect() as c:
        assert c.execute(text("SELECT reviewed_at IS NOT NULL FROM incident WHERE id = :i"),
                         {"i": accepted["id"]}).scalar_one()
    card = page.locator(f".review-item[data-id='{moved['id']}']")
    card.locator(".review-reassign").click()
    option = card.locator(f".reassign-select option[value='{b}']")
    option.wait_for(state="attached")
    assert "点位在其内" in option.inner_text()
    # A typed code far from the point is refused, in Chinese, and nothing changes.
    with db.connect() as c:
        far = c.execute(text(
            "SELECT g.code FROM grid g, incident i WHERE i.id = :i AND g.level = 4 AND g.valid_to IS NULL "
            "ORDER BY ST_Distance(g.geom::geography, i.geom::geography) DESC LIMIT 1"), {"i": moved["id"]}).scalar_one()
    card.locator(".reassign-code").fill(far)
    card.locator(".reassign-submit").click()
    page.wait_for_function("document.getElementById('wangge-banner').textContent.indexOf('候选网格') >= 0")
    card.locator(".reassign-code").fill("")
    card.locator(".reassign-select").select_option(b)
    page.screenshot(path=screenshot_path(f"review-reassign-{'phone' if phone else 'desktop'}"), full_page=True)
    card.locator(".reassign-submit").click()
    card.wait_for(state="detached")
    assert b in page.text_content("#wangge-banner")
    with db.connect() as c:
        row = c.execute(text("SELECT group_code, village_code, reviewed_at FROM incident WHERE id = :i"),
                        {"i": moved["id"]}).one()
    assert row.group_code == b and row.village_code == b[:12] + "000" and row.reviewed_at is not None
    # The one refusal (the far code, 422) is the only thing wrong on the page.
    assert [p for p in checker.problems() if "/review" not in p] == []
    assert any("422" in p for p in checker.problems())


@pytest.mark.browser
def test_the_queue_pages_with_next_and_refuses_a_bad_code_in_chinese(open_as, api, db):
    x, y, _, _ = _edge_pairs(db, 4)[3]
    for k in range(21):
        _post_incident(api["admin"], x, y, f"交界处第{k}件")
    total = api["admin"].get("/incidents/review", params={"limit": 1}).json()["total"]
    assert total > 20
    page, checker, status = open_as("command_center", "/pages/review")
    assert status == 200
    assert page.locator(".review-item").count() == 20
    assert f"待审核 {total} 件，已显示 20 件" in page.text_content("#review-total")
    page.click("#review-more")
    page.wait_for_function("document.querySelectorAll('.review-item').length > 20")
    ids = page.locator(".review-item").evaluate_all("els => els.map(e => e.dataset.id)")
    assert len(ids) == len(set(ids)) == min(total, 40)
    page.fill("#review-grid", "12")
    page.click("#review-filter button[type=submit]")
    assert "15位数字" in page.locator("#wangge-banner").inner_text()
    checker.assert_clean()


def test_pages_refuse_in_chinese(clients):
    r = clients["planner"].get("/pages/incidents/1")
    assert r.status_code == 403 and "无权" in r.text and r.headers["content-type"].startswith("text/html")
    r = clients["grid_staff"].get("/pages/review")
    assert r.status_code == 403 and "无权" in r.text
    r = clients["command_center"].get("/pages/incidents/987654321")
    assert r.status_code == 404 and "未找到" in r.text
    page = clients["command_center"].get("/pages/incidents/1")
    assert page.status_code == 200 and "wangge-config" in page.text
    # The page carries no incident data: its script fetches it.
    one = clients["command_center"].get("/incidents/1").json()
    assert one["description"] not in page.text
