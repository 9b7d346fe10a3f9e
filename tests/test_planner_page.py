"""The planner's map (/maps/planner) in headless Chromium, desktop and phone: a planner picks a village,
asks for balanced suggestions, sees them drawn over the current grids with a table whose figures agree
with an independent count; other roles get a Chinese refusal; nothing loads from the internet."""

from __future__ import annotations

import pytest
import shapely
from shapely.geometry import shape
from sqlalchemy import text

from tests.browser import OfflinePageChecker, serve_app_in_thread
from tests.conftest import DESKTOP, database_copy, screenshot_path, settings_for
from tests.map_pages import open_loaded, opened

PATH = "/maps/planner"
N_GRIDS = 3


@pytest.fixture(scope="module")
def village(engine) -> tuple[str, str, int]:
    """(code, name, households inside its polygon) of the village with the fewest households."""
    with engine.connect() as c:
        return tuple(c.execute(text(
            "SELECT v.code, v.name, (SELECT count(*) FROM household h WHERE ST_Contains(v.geom, h.geom)) AS n "
            "FROM grid v WHERE v.level = 3 AND v.valid_to IS NULL ORDER BY n, v.code LIMIT 1")).one())


def _households_in(engine, geometry: dict, village_code: str) -> int:
    with engine.connect() as c:
        return c.execute(text(
            "SELECT count(*) FROM household h JOIN grid v ON v.code = :v AND v.valid_to IS NULL "
            "AND ST_Contains(v.geom, h.geom) WHERE ST_Contains(ST_GeomFromWKB(:wkb, 4326), h.geom)"),
            {"v": village_code, "wkb": shapely.to_wkb(shape(geometry))}).scalar_one()


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_a_planner_gets_balanced_suggestions_drawn_over_the_current_grids(open_as, engine, village, phone):
    code, name, households = village
    page, checker, status = open_loaded(open_as, "planner", PATH, phone=phone)
    assert status == 200
    panel = page.locator("#planner-panel")
    if "collapsed" in (panel.get_attribute("class") or ""):
        panel.locator(".wangge-panel-head").click()  # folded on a phone: open it as a user does
    page.select_option("#planner-village", code)
    page.wait_for_function("document.querySelector('#planner-n').value !== ''")
    # The village's units come with it: their households add up to the village's.
    page.wait_for_function("window.wanggeUnits.getLayers().length > 0")
    unit_households = page.evaluate(
        "() => window.wanggeUnits.getLayers().reduce((s, l) => s + l.feature.properties.households, 0)")
    assert unit_households == households
    page.fill("#planner-n", str(N_GRIDS))
    page.fill("#planner-tolerance", "10")
    page.click("#planner-run")
    page.wait_for_function("document.documentElement.dataset.plannerShown === '0'", timeout=120_000)
    rows = page.locator("#planner-grids tbody tr")
    assert rows.count() == N_GRIDS
    codes = [rows.nth(i).get_attribute("data-code") for i in range(N_GRIDS)]
    assert len(set(codes)) == N_GRIDS and all(c.startswith(code[:12]) for c in codes)
    assert name in page.locator("#planner-status").inner_text()
    # The suggested grids on the map: their households, counted by PostGIS, are the table's, and add up.
    drawn = page.evaluate(
        "() => window.wanggeSuggested.toGeoJSON().features.map(f => [f.properties.code, f.geometry])")
    assert sorted(c for c, _ in drawn) == sorted(codes)
    table = {rows.nth(i).get_attribute("data-code"): int(rows.nth(i).locator("td").nth(2).inner_text())
             for i in range(N_GRIDS)}
    counted = {c: _households_in(engine, g, code) for c, g in drawn}
    assert counted == table
    assert sum(counted.values()) == households
    for c in counted.values():
        assert abs(c - households / N_GRIDS) <= 0.1 * households / N_GRIDS
    # Other suggestions can be compared: picking one redraws map and table.
    options = page.locator(".wangge-planner-option")
    if options.count() > 1:
        options.nth(1).click()
        page.wait_for_function("document.documentElement.dataset.plannerShown === '1'")
        assert page.locator("#planner-grids tbody tr").count() == N_GRIDS
    page.screenshot(path=screenshot_path(f"planner-{'phone' if phone else 'desktop'}"))
    checker.assert_clean()


def test_an_impossible_request_is_explained_in_chinese(open_as, village):
    page, checker, status = open_loaded(open_as, "planner", PATH)
    assert status == 200
    page.select_option("#planner-village", village[0])
    page.wait_for_function("document.querySelector('#planner-n').value !== ''")
    page.fill("#planner-n", "999")  # more grids than the village has houses
    page.click("#planner-run")
    banner = page.locator("#wangge-banner")
    banner.wait_for(state="visible")
    assert any("\u4e00" <= ch <= "\u9fff" for ch in banner.inner_text())
    assert "{" not in banner.inner_text()  # never raw JSON
    # The one refused request is the suggestion itself (422); nothing else failed or left the machine.
    problems = checker.problems()
    assert problems and all("422" in p and ("/plans/suggestions" in p or "Failed to load" in p) for p in problems), \
        problems


def test_other_roles_are_refused_with_a_chinese_page(open_as):
    page, _, status = open_as("grid_staff", PATH)
    assert status == 403
    assert "无权" in page.content()


def test_a_planner_publishes_a_suggestion_and_the_command_center_sees_the_new_grids(site, test_db_url, accounts,
                                                                                   village):
    """On a private copy of the town: split a village into two grids more than it has, publish from the
    page, then the command center's search finds a new grid and its map goes there; every household
    of the village lies in exactly one of its new grids (PostGIS)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from api.main import create_app

    code, _, households = village
    _, browser = site  # the module's browser, serving a private copy of the town
    with database_copy(test_db_url, "planner") as url, \
            serve_app_in_thread(create_app(settings_for(url))) as base:
        own_site = (base, browser)
        eng = create_engine(url, poolclass=NullPool)
        try:
            with eng.connect() as c:
                before = set(c.execute(text("SELECT code FROM grid WHERE parent_code = :v AND level = 4 "
                                            "AND valid_to IS NULL"), {"v": code}).scalars())
            n = len(before) + 2
            with opened(own_site, accounts, "planner", PATH, phone=True) as (page, checker, status):
                assert status == 200
                panel = page.locator("#planner-panel")
                if "collapsed" in (panel.get_attribute("class") or ""):
                    panel.locator(".wangge-panel-head").click()
                page.select_option("#planner-village", code)
                page.wait_for_function("document.querySelector('#planner-n').value !== ''")
                page.fill("#planner-n", str(n))
                page.click("#planner-run")
                page.wait_for_function("document.documentElement.dataset.plannerShown === '0'", timeout=120_000)
                shown = sorted(page.locator("#planner-grids tbody tr").evaluate_all(
                    "rows => rows.map(r => r.title)"))
                # The impact first: the households it says move are those whose grid changes (PostGIS).
                drawn = page.evaluate(
                    "() => window.wanggeSuggested.toGeoJSON().features.map(f => [f.properties.code, f.geometry])")
                page.click("#planner-impact-button")
                page.wait_for_function("!!document.documentElement.dataset.plannerImpact", timeout=120_000)
                moved_rows = page.locator("#planner-moves tbody tr")
                said = sum(int(moved_rows.nth(i).locator("td").nth(2).inner_text())
                           for i in range(moved_rows.count()))
                with eng.connect() as c:
                    expected = c.execute(text(
                        "WITH s AS (SELECT code, ST_GeomFromWKB(wkb, 4326) AS geom FROM unnest(CAST(:codes AS text[]), "
                        "CAST(:wkbs AS bytea[])) AS t(code, wkb)) "
                        "SELECT count(*) FROM household h JOIN grid v ON v.code = :v AND v.valid_to IS NULL "
                        "AND ST_Contains(v.geom, h.geom) "
                        "JOIN grid g ON g.parent_code = :v AND g.level = 4 AND g.valid_to IS NULL "
                        "AND ST_Contains(g.geom, h.geom) JOIN s ON ST_Contains(s.geom, h.geom) WHERE s.code <> g.code"),
                        {"v": code, "codes": [c_ for c_, _ in drawn],
                         "wkbs": [shapely.to_wkb(shape(g)) for _, g in drawn]}).scalar_one()
                assert said == expected > 0
                page.click("#planner-publish")
                page.wait_for_function("(document.documentElement.dataset.plannerPublished || '')"
                                       ".startsWith('applied:')", timeout=120_000)
                assert "已发布" in page.locator("#planner-published").inner_text()
                page.screenshot(path=screenshot_path("planner-published-phone"))
                checker.assert_clean()
            with eng.connect() as c:
                after = sorted(c.execute(text("SELECT code FROM grid WHERE parent_code = :v AND level = 4 "
                                              "AND valid_to IS NULL"), {"v": code}).scalars())
                misplaced = c.execute(text(
                    "SELECT count(*) FROM (SELECT h.id FROM household h JOIN grid v ON v.code = :v "
                    "AND v.valid_to IS NULL AND ST_Contains(v.geom, h.geom) LEFT JOIN grid g ON g.parent_code = :v "
                    "AND g.level = 4 AND g.valid_to IS NULL AND ST_Contains(g.geom, h.geom) "
                    "GROUP BY h.id HAVING count(g.id) <> 1) x"), {"v": code}).scalar_one()
            assert after == shown and len(after) == n
            assert misplaced == 0
            new_code = max(set(after) - before)
            # The command center searches the new grid by its code; the map flies into it.
            context = browser.new_context(**DESKTOP)
            try:
                cc = context.new_page()
                cc_checker = OfflinePageChecker().attach(cc)
                cc.goto(base + "/login?next=/maps/command", wait_until="networkidle")
                cc.fill("#username", accounts["command_center"]["username"])
                cc.fill("#password", accounts["command_center"]["password"])
                with cc.expect_navigation():
                    cc.click("button[type=submit]")
                cc.wait_for_function("document.documentElement.dataset.commandReady === '1'")
                cc.fill("#command-search-input", new_code)
                cc.press("#command-search-input", "Enter")
                cc.wait_for_function(f"document.documentElement.dataset.commandFlown === 'grid:{new_code}'",
                                     timeout=15_000)
                lat, lon = cc.evaluate("(() => { const c = window.wanggeMap.getCenter(); return [c.lat, c.lng]; })()")
                with eng.connect() as c:
                    box = c.execute(text("SELECT ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) FROM grid "
                                         "WHERE code = :c AND valid_to IS NULL"), {"c": new_code}).one()
                assert box[0] <= lon <= box[2] and box[1] <= lat <= box[3]
                cc.wait_for_load_state("networkidle")
                assert any("/tiles/grids/" in u for u in cc_checker.requests)
                cc.screenshot(path=screenshot_path("planner-published-command-center"))
                cc_checker.assert_clean()
            finally:
                context.close()
        finally:
            eng.dispose()


def test_a_suggestion_becomes_a_draft_plan(scratch_db_url, accounts, engine, village):
    """POST /plans/suggestions: the suggestion shown becomes a draft plan whose proposed grids are the
    suggested ones (GET /plans/{id}); another fingerprint is a 409 and makes no plan."""
    from tests.conftest import make_client

    code, name, _ = village
    with engine.connect() as c:
        groups = c.execute(text("SELECT count(*) FROM grid WHERE parent_code = :v AND level = 4 AND valid_to IS NULL"),
                           {"v": code}).scalar_one()
    params = {"village": code, "n": groups + 1, "tolerance": 0.1, "steps": 5}
    with make_client(scratch_db_url, "planner") as c:
        shown = c.get("/plans/suggestions", params={**params, "count": 1}).json()
        first = shown["suggestions"][0]
        body = {**params, "seed": first["seed"], "fingerprint": first["fingerprint"]}
        assert c.post("/plans/suggestions", json={**body, "fingerprint": "0" * 20}).status_code == 409
        assert c.get("/plans").json() == []
        r = c.post("/plans/suggestions", json=body)
        assert r.status_code == 201, r.text
        plan = r.json()
        assert plan["status"] == "draft" and name in plan["name"]
        detail = c.get(f"/plans/{plan['id']}")
        assert detail.status_code == 200, detail.text
        for g in first["grids"]:
            assert g["code"] in detail.text
        assert [p["id"] for p in c.get("/plans").json()] == [plan["id"]]
