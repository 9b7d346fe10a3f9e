"""The grid member's phone: place suggestions as you type, tasks overdue first, my grids, and the /m/
pages driven in headless Chromium on a phone (and once on a desktop)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.incidents import gazetteer as G
from tests.conftest import PHONE, log_in_and_open, make_client, report_incident, screenshot_path


def _one(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).first()


# --- /places/suggest ----------------------------------------------------------------------------

def test_a_half_typed_group_name_suggests_that_group_grid_first_among_grids(clients, engine, accounts):
    code = accounts["grid_staff"]["scope_codes"][0]
    grid = _one(engine, "SELECT name, code FROM grid WHERE code = :c AND valid_to IS NULL", c=code)
    village = _one(engine, "SELECT name FROM grid WHERE code = :c AND valid_to IS NULL", c=code[:12] + "000").name
    # The name as a phone user types it half-way: the village, then the group's number in Chinese, no 组 yet.
    number = G.canonical(grid.name)[len(G.canonical(village)):].removesuffix("组")
    chinese = "零一二三四五六七八九"[int(number)] if int(number) < 10 else number
    r = clients["grid_staff"].get("/places/suggest", params={"q": village + chinese})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    grids = [s for s in items if s["kind"] == "grid"]
    assert grids and grids[0]["label"] == grid.name and grids[0]["code"] == grid.code
    # Everything offered starts with what was typed (read as a name) or is a close fuzzy match.
    forms = G.partial_forms(village + chinese)
    assert all(any(G.canonical(s["label"]).startswith(f) for f in forms) for s in items[:len(grids)])
    assert len(items) <= 8


def test_every_suggestion_resolves_back_to_the_place_it_offered(clients, session):
    for typed in ("尹营", "魏岭村二", "小学", "李邦相村第", "崔营村十"):
        r = clients["admin"].get("/places/suggest", params={"q": typed, "limit": 10})
        assert r.status_code == 200, (typed, r.text)
        items = r.json()["items"]
        assert items, typed
        for s in items:
            hit = G.resolve(session, s["label"])
            assert (hit.kind, round(hit.lon, 6), round(hit.lat, 6)) == (
                s["kind"], round(s["lon"], 6), round(s["lat"], 6)), (typed, s)


def test_house_addresses_are_suggested_only_to_those_who_may_see_them_and_audited(clients, engine, accounts):
    code = accounts["grid_staff"]["scope_codes"][0]
    inside = _one(engine, "SELECT h.id, h.address FROM household h JOIN LATERAL household_grid_at(h.geom) g "
                  "ON true WHERE g.group_code = :c ORDER BY h.id LIMIT 1", c=code)
    outside = _one(engine, "SELECT h.id, h.address FROM household h JOIN LATERAL household_grid_at(h.geom) g "
                   "ON true WHERE g.village_code <> :v ORDER BY h.id LIMIT 1", v=code[:12] + "000")
    before = _one(engine, "SELECT coalesce(max(id), 0) AS m FROM audit_log").m

    def offered(role: str, address: str) -> list[int]:
        r = clients[role].get("/places/suggest", params={"q": address})
        assert r.status_code == 200, r.text
        return [s["household_id"] for s in r.json()["items"] if s["kind"] == "household"]

    assert inside.id in offered("grid_staff", inside.address)
    assert outside.id not in offered("grid_staff", outside.address)
    assert offered("grid_staff", outside.address) == []
    # The command center sees no personal field outside an active emergency: no address offered.
    assert offered("command_center", inside.address) == []
    assert inside.id in offered("admin", inside.address)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT actor, resource_ids FROM audit_log WHERE id > :b AND action = 'read_personal' "
            "AND resource = 'household' AND path = '/places/suggest' ORDER BY id"), {"b": before}).all()
    assert [(r.actor, str(inside.id) in r.resource_ids) for r in rows] == [
        ("test_grid_staff", True), ("test_admin", True)]


@pytest.mark.parametrize(("params", "field"), [
    ({"q": "村" * (G.MAX_PLACE_CHARS + 1)}, "q"),
    ({"q": ""}, "q"),
    ({"q": "尹营", "limit": G.MAX_SUGGESTIONS + 1}, "limit"),
    ({"q": "尹营", "limit": 0}, "limit"),
])
def test_bad_suggestion_queries_are_refused_naming_the_field(clients, params, field):
    r = clients["grid_staff"].get("/places/suggest", params=params)
    assert r.status_code == 422, r.text
    assert field in r.text


def test_text_that_is_no_number_is_no_error(clients):
    for typed in ("十十组", "三十三十", "第", "尹营村三三组"):
        r = clients["grid_staff"].get("/places/suggest", params={"q": typed})
        assert r.status_code == 200, (typed, r.text)


def test_suggestions_need_the_right_to_report(clients):
    assert clients["anonymous"].get("/places/suggest", params={"q": "尹营"}).status_code == 401
    assert clients["planner"].get("/places/suggest", params={"q": "尹营"}).status_code == 403


def test_suggestions_read_the_in_memory_index_only(engine):
    """Index-backed: once the gazetteer is built, a suggestion runs its version check and, for house
    addresses offered, their access check: no statement reads the names again."""
    from sqlalchemy import event

    from gis.auth.principal import Principal
    from gis.auth.roles import Role
    from gis.context import Context
    from gis.db import make_sessionmaker

    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    with make_sessionmaker(engine)() as s:
        G.gazetteer(s)
        event.listen(engine, "before_cursor_execute", seen)
        try:
            found = G.suggest(s, Context(Principal(1, "x", Role.COMMAND_CENTER)), "尹营村", 8)
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        s.rollback()
    assert found.items and found.more
    assert not any("UNION ALL" in q for q in statements), statements
    assert len(statements) <= 2, statements


# --- my tasks: overdue first --------------------------------------------------------------------

def test_open_incidents_in_deadline_order_put_the_overdue_first(scratch_db_url, accounts):
    code = accounts["grid_staff"]["scope_codes"][0]
    with make_client(scratch_db_url, "grid_staff") as staff:
        lon, lat = _inside(scratch_db_url, code)
        answers = [report_incident(staff, lon, lat, description=f"任务{k}", category=cat)
                   for k, cat in enumerate(("environment", "safety_hazard", "livelihood", "environment"))]
        assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
        ids = [a.json()["id"] for a in answers]
        # Two of them started their stage long ago: past their deadlines, one longer than the other.
        engine = create_engine(scratch_db_url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.execute(text("UPDATE incident SET state_entered_at = now() - interval '40 days' WHERE id = :i"),
                         {"i": ids[2]})
            conn.execute(text("UPDATE incident SET state_entered_at = now() - interval '90 days' WHERE id = :i"),
                         {"i": ids[3]})
        r = staff.get("/incidents", params={"grid_code": code, "open": "true", "order": "deadline", "limit": 500})
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        with engine.connect() as conn:
            oracle = [row.id for row in conn.execute(text(
                "SELECT id FROM incident WHERE group_code = :c AND state <> 'closed' "
                "ORDER BY stage_deadline, id"), {"c": code})]
        engine.dispose()
        assert [i["id"] for i in items] == oracle
        flags = [i["overdue"] for i in items]
        assert flags == sorted(flags, reverse=True)       # every overdue one before every other
        assert {ids[2], ids[3]} <= {i["id"] for i in items if i["overdue"]}
        assert all(i["state"] != "closed" for i in items)
        deadlines = [dt.datetime.fromisoformat(i["deadline"]) for i in items]
        assert deadlines == sorted(deadlines)
        # The default order is unchanged: newest first.
        newest = staff.get("/incidents", params={"grid_code": code, "limit": 500}).json()["items"]
        assert [(i["occurred_at"], i["id"]) for i in newest] == sorted(
            ((i["occurred_at"], i["id"]) for i in newest), reverse=True)
        assert staff.get("/incidents", params={"order": "oldest"}).status_code == 422


def _inside(url, code: str) -> tuple[float, float]:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT ST_X(p) AS lon, ST_Y(p) AS lat FROM (SELECT ST_PointOnSurface(geom) p "
                                "FROM grid WHERE code = :c AND valid_to IS NULL) s"), {"c": code}).one()
    engine.dispose()
    return row.lon, row.lat


# --- my grids -----------------------------------------------------------------------------------

def test_my_grids_name_the_grids_of_my_scope_with_their_staff(clients, engine, accounts):
    for role in ("grid_staff", "supervisor"):
        r = clients[role].get("/me/grids")
        assert r.status_code == 200, r.text
        grids = r.json()["grids"]
        assert [g["code"] for g in grids] == sorted(accounts[role]["scope_codes"])
        for g in grids:
            with engine.connect() as conn:
                staff = conn.execute(text("SELECT id, name, phone FROM staff WHERE grid_code = :c"),
                                     {"c": g["code"]}).all()
                town = conn.execute(text("SELECT name FROM grid WHERE level = 1 AND valid_to IS NULL")).scalar_one()
            assert {s["id"] for s in g["staff"]} == {s.id for s in staff}
            assert g["path"][0] == town and len(g["path"]) == g["level"] - 1
            if role == "grid_staff":
                assert g["staff"][0]["role"] == "grid_leader"
    assert clients["admin"].get("/me/grids").json() == {"grids": []}
    assert clients["anonymous"].get("/me/grids").status_code == 401


# --- the pages in headless Chromium ---------------------------------------------------------------

DESKTOP = {"viewport": {"width": 1280, "height": 800}, "locale": "zh-CN"}


@pytest.fixture(scope="module")
def phone_db(test_db_url):
    """A private copy of the sample town: the pages write (reports, photos, loop steps)."""
    from tests.conftest import database_copy

    with database_copy(test_db_url, "mobile") as url:
        yield url


@pytest.fixture(scope="module")
def phone_site(phone_db, accounts):
    from tests.conftest import live_site

    with live_site(phone_db) as served:
        yield served


@pytest.fixture(scope="module")
def phone_engine(phone_db):
    eng = create_engine(phone_db, poolclass=NullPool)
    yield eng
    eng.dispose()


@pytest.fixture
def open_phone(phone_site, accounts):
    """Log in through the form as `role` on a phone (or `device`), then open `path`; returns
    (page, checker, status). Context options (geolocation, permissions) pass through."""
    base, browser = phone_site
    contexts = []

    def _open(role: str, path: str, device: dict | None = None, **options):
        return log_in_and_open(browser, base, accounts[role], path, contexts, **(device or PHONE), **options)

    yield _open
    for context in contexts:
        context.close()


def _shot(page, name: str) -> None:
    page.screenshot(path=screenshot_path(f"mobile_{name}"), full_page=True)


def _fill_report(page, category: str, description: str) -> None:
    page.select_option("#m-category", category)
    page.fill("#m-description", description)


def _submitted(page) -> int:
    page.click("#m-submit")
    page.wait_for_selector("#m-result[data-done='1'], #wangge-banner.error", timeout=15000)
    assert page.locator("#wangge-banner.error").count() == 0, page.inner_text("#wangge-banner")
    page.wait_for_load_state("networkidle")
    return int(page.get_attribute("#m-result", "data-incident-id"))


def _stored(engine, incident_id: int):
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat, group_code, village_code, input_crs, place_query, "
            "location_source, category, description, created_by FROM incident WHERE id = :i"),
            {"i": incident_id}).one()


def _group_at(engine, lon: float, lat: float) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT code FROM grid_at(ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
                            {"x": lon, "y": lat}).scalar_one()


@pytest.mark.parametrize("device", ["phone", "desktop"])
def test_report_by_place_name_picking_a_suggestion(open_phone, phone_engine, accounts, device):
    code = accounts["grid_staff"]["scope_codes"][0]
    with phone_engine.connect() as conn:
        grid = conn.execute(text("SELECT name, code FROM grid WHERE code = :c AND valid_to IS NULL"),
                            {"c": code}).one()
    page, checker, status = open_phone("grid_staff", "/m/report", PHONE if device == "phone" else DESKTOP)
    assert status == 200
    description = f"路灯坏了（{device}）"
    _fill_report(page, "livelihood", description)
    page.check("#m-where-place-choice")
    # Type part of the name, a character at a time as a thumb does, and pick the grid from the list.
    typed = grid.name[: max(2, len(grid.name) - 2)]
    page.type("#m-place", typed, delay=60)
    option = page.locator("#m-suggestions .m-suggestion", has_text=grid.name).first
    option.wait_for(timeout=10000)
    _shot(page, f"report_place_suggestions_{device}")
    option.click()
    assert page.input_value("#m-place") == grid.name
    incident_id = _submitted(page)
    stored = _stored(phone_engine, incident_id)
    assert (stored.group_code, stored.place_query, stored.location_source) == (grid.code, grid.name, "gazetteer")
    assert (stored.description, stored.created_by) == (description, accounts["grid_staff"]["id"])
    # The answer shown: the grid at each level and who it reached, and a link to the incident.
    path = page.locator("#m-grid-path li").all_text_contents()
    assert any(grid.name in p for p in path) and len(path) == 4
    with phone_engine.connect() as conn:
        reached = conn.execute(text("SELECT s.name FROM incident_assignee a JOIN staff s ON s.id = a.staff_id "
                                    "WHERE a.incident_id = :i"), {"i": incident_id}).scalars().all()
    shown = page.locator("#m-assignees").inner_text()
    assert reached and all(name in shown for name in reached)
    assert page.get_attribute("#m-incident-link", "href") == f"/pages/incidents/{incident_id}"
    _shot(page, f"report_place_done_{device}")
    checker.assert_clean()


def _point_in(engine, code: str) -> tuple[float, float]:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT ST_X(p) AS lon, ST_Y(p) AS lat FROM (SELECT ST_PointOnSurface(geom) p "
                                "FROM grid WHERE code = :c AND valid_to IS NULL) s"), {"c": code}).one()
    return round(row.lon, 6), round(row.lat, 6)


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 80, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("gcj", [False, True], ids=["wgs84", "gcj02"])
def test_report_by_my_location_with_a_photo(open_phone, phone_engine, accounts, gcj):
    from gis.crs import gcj02_to_wgs84

    with phone_engine.connect() as conn:   # a point well inside the town: the GCJ-02 shift stays inside
        town = conn.execute(text("SELECT code FROM grid WHERE level = 1 AND valid_to IS NULL")).scalar_one()
    lon, lat = _point_in(phone_engine, town)
    page, checker, status = open_phone("grid_staff", "/m/report", geolocation={"longitude": lon, "latitude": lat},
                                       permissions=["geolocation"])
    assert status == 200
    _fill_report(page, "environment", "路边垃圾堆放")
    page.click("#m-locate")
    page.wait_for_function("document.getElementById('m-lon').value !== ''")
    assert float(page.input_value("#m-lon")) == pytest.approx(lon, abs=1e-7)
    if gcj:   # the numbers came from a Chinese map app: stated GCJ-02
        page.check("#m-gcj")
    page.set_input_files("#m-photo", files=[{"name": "scene.png", "mimeType": "image/png", "buffer": _png()}])
    incident_id = _submitted(page)
    page.wait_for_selector("#m-result[data-photo='uploaded']")
    stored = _stored(phone_engine, incident_id)
    if gcj:
        x, y = gcj02_to_wgs84(lon, lat)
        want = (float(x), float(y))
        # The shift is real (hundreds of metres here): the toggle changed where it was stored.
        assert abs(stored.lon - lon) + abs(stored.lat - lat) > 1e-3
    else:
        want = (lon, lat)
    assert (stored.lon, stored.lat) == (pytest.approx(want[0], abs=1e-7), pytest.approx(want[1], abs=1e-7))
    assert stored.input_crs == ("gcj02" if gcj else "wgs84") and stored.location_source == "coordinates"
    assert stored.group_code == _group_at(phone_engine, *want)
    with phone_engine.connect() as conn:
        photos = conn.execute(text("SELECT filename, content_type, size FROM incident_attachment "
                                   "WHERE incident_id = :i"), {"i": incident_id}).all()
    assert [(p.filename, p.content_type, p.size) for p in photos] == [("scene.png", "image/png", len(_png()))]
    _shot(page, f"report_location_{'gcj02' if gcj else 'wgs84'}")
    checker.assert_clean()


def test_a_refused_report_is_explained_in_chinese_on_the_page(open_phone, phone_engine):
    page, checker, status = open_phone("grid_staff", "/m/report", geolocation={"longitude": 112.6, "latitude": 33.4},
                                       permissions=["geolocation"])
    assert status == 200
    _fill_report(page, "environment", "路边垃圾堆放")
    page.click("#m-locate")
    page.wait_for_function("document.getElementById('m-lon').value !== ''")
    with phone_engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM incident")).scalar_one()
    page.click("#m-submit")
    banner = page.locator("#wangge-banner.error")
    banner.wait_for()
    said = banner.inner_text()
    assert "辖区之外" in said and "outside" not in said, said
    assert page.locator("#m-result").is_hidden()
    with phone_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM incident")).scalar_one() == before
    # No place name given at all: the form says so before asking the server.
    page.check("#m-where-place-choice")
    page.click("#m-submit")
    page.wait_for_function("document.getElementById('wangge-banner').innerText.includes('地名')")
    _shot(page, "report_refused")
    # The 422 of the refused report is the page's answer, not a fault of the page.
    assert [p for p in checker.problems() if not ("/incidents" in p and "422" in p)] == []


def test_a_role_without_the_right_gets_a_chinese_refusal_page(open_phone):
    page, checker, status = open_phone("planner", "/m/report")
    assert status == 403
    assert "无权" in page.inner_text("#wangge-error-page")


def _overdue_tasks(engine, code: str, other: str) -> None:
    """Open incidents in `code`, some past their deadline, and one in `other` (not a task of `code`)."""
    from tests.conftest import WHEN

    with engine.begin() as conn:
        for days, category in ((0, "environment"), (30, "livelihood"), (90, "safety_hazard"), (0, "dispute")):
            conn.execute(text(
                "INSERT INTO incident (category, dispute_kind, description, occurred_at, geom, location_source, "
                "group_code, village_code, area_code, town_code, grid_version_id, on_boundary, state, "
                "state_entered_at) SELECT CAST(:cat AS text), "
                "CASE WHEN CAST(:cat AS text) = 'dispute' THEN 'neighbour' END, '测试任务', "
                "CAST(:when AS timestamptz), ST_PointOnSurface(g.geom), 'coordinates', g.code, v.code, a.code, "
                "t.code, g.id, false, 'visit', now() - make_interval(days => :days) "
                "FROM grid g JOIN grid v ON v.code = g.parent_code AND v.valid_to IS NULL "
                "JOIN grid a ON a.code = v.parent_code AND a.valid_to IS NULL "
                "JOIN grid t ON t.code = a.parent_code AND t.valid_to IS NULL "
                "WHERE g.code = ANY(:codes) AND g.valid_to IS NULL"),
                {"cat": category, "when": WHEN, "days": days, "codes": [code, other]})


def test_my_tasks_overdue_first_only_my_grid_and_one_tap_calls(open_phone, phone_engine, accounts):
    code = accounts["grid_staff"]["scope_codes"][0]
    with phone_engine.connect() as conn:
        other = conn.execute(text("SELECT min(code) FROM grid WHERE level = 4 AND valid_to IS NULL "
                                  "AND code > :c"), {"c": code}).scalar_one()
    _overdue_tasks(phone_engine, code, other)
    page, checker, status = open_phone("grid_staff", "/m/")
    assert status == 200
    shown = [int(i) for i in page.locator("#m-task-list li.m-task").evaluate_all("els => els.map(e => e.dataset.id)")]
    with phone_engine.connect() as conn:
        oracle = conn.execute(text("SELECT id, stage_deadline < now() AS overdue FROM incident "
                                   "WHERE group_code = :c AND state <> 'closed' ORDER BY stage_deadline, id "
                                   "LIMIT 50"), {"c": code}).all()
        others = set(conn.execute(text("SELECT id FROM incident WHERE group_code <> :c"), {"c": code}).scalars())
        staff = conn.execute(text("SELECT phone FROM staff WHERE grid_code = :c AND phone IS NOT NULL"),
                             {"c": code}).scalars().all()
        households = conn.execute(text(
            "SELECT h.id, h.phone FROM household h WHERE EXISTS (SELECT 1 FROM grid g WHERE g.code = :c AND "
            "g.valid_to IS NULL AND ST_Intersects(g.geom, h.geom)) AND EXISTS (SELECT 1 FROM "
            "household_grid_at(h.geom) x WHERE :c IN (x.group_code, x.village_code)) ORDER BY h.id LIMIT 50"),
            {"c": code}).all()
    assert shown == [r.id for r in oracle]
    assert not set(shown) & others
    flags = page.locator("#m-task-list li.m-task").evaluate_all("els => els.map(e => e.dataset.overdue === '1')")
    assert flags == [r.overdue for r in oracle] and flags[0] and not flags[-1]
    # One tap to call: the grid's staff (a public board) and the households this role may see.
    calls = page.locator("a[href^='tel:']").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert {f"tel:{p}" for p in staff} <= set(calls)
    assert [int(i) for i in page.locator("#m-household-list li.m-household").evaluate_all(
        "els => els.map(e => e.dataset.id)")] == [h.id for h in households]
    for h in households:
        assert f"tel:{h.phone}" in calls
    _shot(page, "my_tasks")
    checker.assert_clean()


def test_no_household_phone_reaches_a_role_that_may_not_see_it(open_phone, phone_engine, accounts):
    page, checker, status = open_phone("command_center", "/m/")
    assert status == 200
    assert page.locator("#m-households").is_hidden()
    with phone_engine.connect() as conn:
        phones = set(conn.execute(text("SELECT phone FROM household WHERE phone IS NOT NULL")).scalars())
    calls = page.locator("a[href^='tel:']").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert not {c.removeprefix("tel:") for c in calls} & phones
    assert not any(p in page.content() for p in list(phones)[:500])
    _shot(page, "command_center_home")
    checker.assert_clean()


def test_advance_the_loop_from_the_task_list(open_phone, phone_engine, accounts):
    page, checker, status = open_phone("grid_staff", "/m/")
    assert status == 200
    first = page.locator("#m-task-list li.m-task").first
    incident_id = int(first.get_attribute("data-id"))
    with phone_engine.connect() as conn:
        before = conn.execute(text("SELECT state FROM incident WHERE id = :i"), {"i": incident_id}).scalar_one()
    shown_before = first.locator(".m-state").inner_text()
    first.locator("button.m-advance").first.click()
    page.wait_for_function("([id, was]) => { const s = document.querySelector(`li.m-task[data-id='${id}'] .m-state`);"
                           " return s && s.textContent !== was; }", arg=[incident_id, shown_before])
    page.wait_for_load_state("networkidle")
    with phone_engine.connect() as conn:
        after = conn.execute(text("SELECT state FROM incident WHERE id = :i"), {"i": incident_id}).scalar_one()
    from gis.incidents.loop import STATE_NAMES_ZH, Action, State, next_state

    assert after == next_state(before, Action.ADVANCE).value
    assert first.locator(".m-state").inner_text() == STATE_NAMES_ZH[State(after)]
    _shot(page, "advanced")
    checker.assert_clean()
