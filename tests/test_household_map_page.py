"""The household map (/maps/households): a light page in the shell whose households come as vector tiles
(counted blocks at low zoom, houses from the point zoom on): scoped rows, personal fields only where the
role may see them, audited reads (tiles and the popup's read), never cut, offline, desktop and phone."""

from __future__ import annotations

import json
import re
import uuid
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

from maps import labels
from maps.household_map import POINT_MINZOOM
from tests.browser import serve_app_in_thread
from tests.conftest import screenshot_path, settings_for
from tests.map_pages import open_loaded, opened, wait_loaded

PATH = "/maps/households"
MASKED_NAME = re.compile(r"^[\u4e00-\u9fff]{1,2}\*+$")
MASKED_PHONE = re.compile(r"^\d{3}\*{4}\d{4}$")

# The map shows single houses from the tile layer's point zoom on.
POINT_ZOOM = POINT_MINZOOM

# The ids of the points of the loaded tiles of the current zoom (the view's tiles and their buffer).
IDS_JS = "() => window.wanggeHouseholds.points().map(p => p.properties.id)"

# Open points' popups the way the page's click does (read from /households/{id}), read back as
# {label: value}, with the id and whether the tile carried personal fields.
POPUPS_JS = """
async ([ids, limit]) => {
    const out = [];
    const points = window.wanggeHouseholds.points().filter(p => !ids || ids.includes(p.properties.id));
    for (const p of points.slice(0, limit)) {
        await window.wanggeOpenHousehold(p.properties, p.latlng);
        const rows = {};
        document.querySelectorAll('.leaflet-popup-content tr').forEach(tr => {
            rows[tr.cells[0].textContent] = tr.cells[1].textContent;
        });
        window.wanggeMap.closePopup();
        out.push({id: p.properties.id, rows: rows, tile_name: p.properties.head_name === undefined ? null
                  : p.properties.head_name});
    }
    return out;
}
"""
REASON = f"household-map-{uuid.uuid4().hex[:12]}"


def show_points(page, zoom: int = POINT_ZOOM) -> None:
    """Zoom the map (about its centre) to at least the point zoom and wait for the tiles."""
    if page.evaluate("window.wanggeMap.getZoom()") < zoom:
        set_zoom(page, zoom)


def set_zoom(page, zoom: int) -> None:
    page.evaluate("document.documentElement.removeAttribute('data-wangge-loaded')")
    page.evaluate("z => window.wanggeMap.setView(window.wanggeMap.getCenter(), z, {animate: false})", zoom)
    wait_loaded(page)


def shown_ids(page) -> set[int]:
    return set(page.evaluate(IDS_JS))


def ids_in(engine, code: str) -> set[int]:
    return {r["id"] for r in households_in(engine, code).values()}


def households_in(engine, code: str) -> dict[str, dict]:
    """household_no -> row for the households in current grid `code`, scoped as the service does."""
    with engine.connect() as c:
        rows = c.execute(
            text(
                "SELECT h.id, h.household_no, h.head_name, h.phone, h.address FROM household h "
                "JOIN grid g ON g.valid_to IS NULL AND g.code = :code "
                "AND ST_Intersects(g.geom, h.geom)"
            ),
            {"code": code},
        ).mappings().all()
    return {r["household_no"]: dict(r) for r in rows}


@pytest.fixture(scope="module")
def codes(engine, accounts) -> dict[str, str]:
    own = accounts["grid_staff"]["scope_codes"][0]
    with engine.connect() as c:
        other = c.execute(
            text(
                "SELECT g.code FROM grid g, grid s WHERE s.code = :own AND s.valid_to IS NULL "
                "AND g.valid_to IS NULL AND g.level = 4 AND NOT ST_Intersects(g.geom, s.geom) "
                "AND EXISTS (SELECT 1 FROM household h WHERE ST_Intersects(g.geom, h.geom)) "
                "ORDER BY g.code DESC LIMIT 1"
            ),
            {"own": own},
        ).scalar_one()
        # A village other than the supervisor's, so nothing about it depends on that account.
        village = c.execute(
            text(
                "SELECT min(code) FROM grid WHERE level = 3 AND valid_to IS NULL AND code <> :v"
            ),
            {"v": accounts["supervisor"]["scope_codes"][0]},
        ).scalar_one()
    return {"own": own, "other": other, "village": village}


@pytest.fixture(scope="module")
def grid_staff_page(open_as):
    return open_loaded(open_as, "grid_staff", f"{PATH}?reason={REASON}")


@pytest.fixture(scope="module")
def command_center_page(open_as, codes):
    return open_loaded(open_as, "command_center", f"{PATH}?grid_code={codes['village']}")


def page_config(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="wangge-config">(.*?)</script>', html, re.S)
    assert found, "the page carries its config as JSON"
    return json.loads(found.group(1))


def test_grid_staff_sees_exactly_the_households_of_their_grid(grid_staff_page, engine, codes):
    page, checker, status = grid_staff_page
    assert status == 200
    expected = ids_in(engine, codes["own"])
    assert expected, "the sample town should have households in the first group grid"
    show_points(page)
    assert shown_ids(page) == expected
    assert page.locator("#wangge-household-count").inner_text() == labels.HOUSEHOLD_COUNT.format(
        shown=page.evaluate("window.wanggeHouseholds.inView().count"))
    assert page.locator("#wangge-masked-note").count() == 0
    assert page.locator("#wangge-truncated-note").count() == 0
    assert labels.SYNTHETIC_BADGE in page.locator("#wangge-synthetic-badge").inner_text()
    assert any("/tiles/households/" in u for u in checker.requests)
    assert not any(urlsplit(u).path == "/households" for u in checker.requests), "no household list by view any more"
    page.screenshot(path=screenshot_path("household_map_grid_staff"))
    checker.assert_clean()


def test_grid_staff_popups_show_full_names_and_phones(grid_staff_page, engine, codes):
    page, _, _ = grid_staff_page
    show_points(page)
    expected = {r["id"]: r for r in households_in(engine, codes["own"]).values()}
    popups = page.evaluate(POPUPS_JS, [None, 12])
    assert len(popups) == min(12, len(expected))
    for popup in popups:
        rows, db = popup["rows"], expected[popup["id"]]
        assert rows["户号"] == db["household_no"]
        assert rows["户主"] == db["head_name"] == popup["tile_name"]
        assert rows["电话"] == db["phone"]
        assert rows["地址"] == db["address"]
        assert set(rows) == {label for _, label in labels.HOUSEHOLD_POPUP_FIELDS}


def test_the_reads_are_audited_with_the_shown_ids(grid_staff_page, accounts, engine, codes):
    page, _, _ = grid_staff_page
    show_points(page)
    expected = ids_in(engine, codes["own"])
    with engine.connect() as c:
        rows = c.execute(
            text("SELECT action, resource, resource_ids, method, path FROM audit_log "
                 "WHERE actor = :actor AND reason = :reason"),
            {"actor": accounts["grid_staff"]["username"], "reason": REASON},
        ).mappings().all()
    assert rows
    assert {(r["action"], r["resource"], r["method"]) for r in rows} == {("read_personal", "household", "GET")}
    # The tiles that carried names and the popups that showed them, each audited with what it carried.
    assert {r["path"].split("/")[1] for r in rows} <= {"tiles", "households"}
    assert any(r["path"].startswith("/tiles/households/") for r in rows)
    audited = set().union(*(set(map(int, r["resource_ids"])) for r in rows))
    assert shown_ids(page) <= audited <= expected


def test_a_household_point_opens_its_popup_on_click(grid_staff_page, engine, codes):
    page, checker, _ = grid_staff_page
    expected = households_in(engine, codes["own"])
    page.evaluate("document.documentElement.removeAttribute('data-wangge-loaded')")
    page.evaluate("() => { const p = window.wanggeHouseholds.points()[0];"
                  " window.wanggeMap.setView(p.latlng, 18, {animate: false}); }")
    wait_loaded(page)
    x, y = page.evaluate(
        "() => { const map = window.wanggeMap, c = map.getCenter();"
        " const p = window.wanggeHouseholds.points().filter(q => map.getBounds().contains(q.latlng))"
        "   .sort((a, b) => a.latlng.distanceTo(c) - b.latlng.distanceTo(c))[0];"
        " const xy = map.latLngToContainerPoint(p.latlng), r = map.getContainer().getBoundingClientRect();"
        " return [r.left + xy.x, r.top + xy.y]; }")
    page.mouse.click(x, y)
    table = page.locator(".leaflet-popup-content table")
    table.wait_for(state="visible")
    page.wait_for_timeout(400)  # the popup fades in
    page.screenshot(path=screenshot_path("household_map_popup"))
    # Neighbours may overlap at zoom 18; whichever point took the click, its name is in full.
    shown_no = table.get_attribute("data-household-no")
    assert shown_no in expected
    assert expected[shown_no]["head_name"] in page.locator(".leaflet-popup-content").inner_text()
    page.evaluate("window.wanggeMap.closePopup()")
    checker.assert_clean()


def test_grid_staff_asking_for_another_grid_gets_only_their_own(open_as, engine, codes):
    page, checker, status = open_loaded(open_as, "grid_staff", f"{PATH}?grid_code={codes['other']}")
    assert status == 200
    own, other = households_in(engine, codes["own"]), households_in(engine, codes["other"])
    assert other and not set(own) & set(other)
    show_points(page)
    ids = shown_ids(page)
    assert ids == {r["id"] for r in own.values()}
    assert not ids & {r["id"] for r in other.values()}
    html = page.content()
    own_phones = {r["phone"] for r in own.values()}
    # Names repeat across grids (common names), household numbers and phones do not.
    for number, row in other.items():
        assert number not in html
        if row["phone"] not in own_phones:
            assert row["phone"] not in html
    checker.assert_clean()


def test_command_center_sees_a_village_masked(command_center_page, engine, codes):
    page, checker, status = command_center_page
    assert status == 200
    with engine.connect() as c:
        active = c.execute(text("SELECT count(*) FROM emergency WHERE closed_at IS NULL")).scalar_one()
    assert active == 0, "this test needs a town without an active emergency"
    expected = households_in(engine, codes["village"])
    assert len(expected) > 100
    show_points(page)
    by_id = {r["id"]: r for r in expected.values()}
    ids = shown_ids(page)
    assert len(ids & set(by_id)) > 20
    # The tiles carry no personal field for this role.
    assert page.evaluate("window.wanggeHouseholds.points().filter(p => p.properties.head_name !== undefined"
                         " || p.properties.phone !== undefined || p.properties.address !== undefined).length") == 0
    popups = page.evaluate(POPUPS_JS, [sorted(ids & set(by_id)), 15])
    assert len(popups) == 15
    for popup in popups:
        rows, db = popup["rows"], by_id[popup["id"]]
        assert rows["户号"] == db["household_no"]
        assert MASKED_NAME.match(rows["户主"]), rows["户主"]
        assert rows["户主"] != db["head_name"] and rows["户主"][0] == db["head_name"][0]
        assert MASKED_PHONE.match(rows["电话"]), rows["电话"]
        assert rows["电话"][-4:] == db["phone"][-4:] and rows["电话"] != db["phone"]
        assert rows["地址"] != db["address"]
    # No full name or phone number anywhere in the page, not only in the popups.
    html = page.content()
    for row in list(expected.values())[:50]:
        assert row["phone"] not in html
    note = page.locator("#wangge-masked-note")
    assert note.is_visible()
    assert note.inner_text() == labels.PERSONAL_MASKED_NOTE
    page.screenshot(path=screenshot_path("household_map_command_center"))
    checker.assert_clean()


@pytest.mark.parametrize("phone", [False, True])
def test_at_a_low_zoom_the_counts_add_up(open_as, engine, codes, phone):
    page, checker, status = open_loaded(open_as, "grid_staff", PATH, phone=phone)
    assert status == 200
    set_zoom(page, 12)
    counts = page.locator(".wangge-aggregate").all_inner_texts()
    assert sum(int(t) for t in counts) == len(ids_in(engine, codes["own"]))
    assert page.evaluate(IDS_JS) == []
    assert page.locator("#wangge-zoom-note").count() == 1  # in the legend (folded on a phone)
    page.screenshot(path=screenshot_path(f"household_map_counts_{'phone' if phone else 'desktop'}"))
    checker.assert_clean()


def test_on_a_phone(open_as, engine, codes):
    page, checker, status = open_loaded(open_as, "grid_staff", PATH, phone=True)
    assert status == 200
    show_points(page)
    assert shown_ids(page) == ids_in(engine, codes["own"])
    zoom = page.locator(".leaflet-control-zoom").bounding_box()
    bar = page.locator("#wangge-title").bounding_box()
    assert zoom["y"] >= bar["y"] + bar["height"]
    legend = page.locator("#wangge-legend").bounding_box()
    assert legend["width"] * legend["height"] < 0.1 * 390 * 844
    page.screenshot(path=screenshot_path("household_map_phone"))
    checker.assert_clean()


def test_emergency_team_without_an_emergency_sees_no_household(open_as):
    page, checker, status = open_loaded(open_as, "emergency", PATH)
    assert status == 200
    assert page.evaluate("window.wanggeHouseholds.points().length") == 0
    assert page.evaluate("window.wanggeHouseholds.aggregates().length") == 0
    assert page.locator("#wangge-household-count").inner_text() == labels.HOUSEHOLDS_NONE
    checker.assert_clean()


def test_planner_is_refused(open_as):
    page, _, status = open_as("planner", PATH)
    assert status == 403
    assert "wanggeHouseholds" not in page.content()


def test_a_crowded_view_is_never_cut(test_db_url, accounts, engine, codes, site):
    """With a page cap of 10 features the map still shows every household of the grid: tiles have no cap."""
    from api.main import create_app

    expected = ids_in(engine, codes["own"])
    assert len(expected) > 10
    app = create_app(settings_for(test_db_url, max_features_per_page=10))
    with (serve_app_in_thread(app) as base,
          opened((base, site[1]), accounts, "admin", f"{PATH}?grid_code={codes['own']}") as (page, checker, status)):
        assert status == 200
        # Opened afresh: the landing page after login (the grid map) has its own tiles aborted by leaving it.
        checker.failed_requests.clear()
        page.goto(base + f"{PATH}?grid_code={codes['own']}", wait_until="networkidle")
        wait_loaded(page)
        show_points(page)
        assert expected <= shown_ids(page)
        assert page.locator("#wangge-truncated-note").count() == 0
        checker.assert_clean()


# --- Through the API client (no browser) ---


def test_the_page_embeds_no_household(clients, engine, codes):
    response = clients["admin"].get(PATH, params={"grid_code": codes["village"]})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    for number, row in households_in(engine, codes["village"]).items():
        assert number not in response.text and row["phone"] not in response.text
    assert page_config(response.text)["query"]["grid_code"] == codes["village"]


def test_supervisor_may_narrow_to_a_grid_of_their_village(clients, accounts, engine, codes):
    village = accounts["supervisor"]["scope_codes"][0]
    with engine.connect() as c:
        groups = c.execute(
            text("SELECT code FROM grid WHERE parent_code = :v AND valid_to IS NULL ORDER BY code"),
            {"v": village},
        ).scalars().all()
    inside = groups[-1]
    narrowed = clients["supervisor"].get(PATH, params={"grid_code": inside})
    assert narrowed.status_code == 200
    assert page_config(narrowed.text)["query"]["grid_code"] == inside
    listed = clients["supervisor"].get("/households", params={"grid_code": inside, "limit": 5000})
    assert {r["household_no"] for r in listed.json()["items"]} == set(households_in(engine, inside))
    # Another village's grid is not theirs: the page asks for their own rows.
    outside = clients["supervisor"].get(PATH, params={"grid_code": codes["other"]})
    assert outside.status_code == 200
    assert page_config(outside.text)["query"]["grid_code"] is None
    own = clients["supervisor"].get("/households", params={"limit": 5000})
    assert {r["household_no"] for r in own.json()["items"]} == set(households_in(engine, village))


def test_masked_reads_write_no_personal_read(clients, accounts, engine, codes):
    reason = f"household map masked test {uuid.uuid4().hex}"
    params = {"grid_code": codes["village"], "reason": reason, "format": "geojson"}
    response = clients["command_center"].get("/households", params=params)
    assert response.status_code == 200 and response.json()["features"]
    with engine.connect() as c:
        n = c.execute(
            text("SELECT count(*) FROM audit_log WHERE actor = :actor AND reason = :reason"),
            {"actor": accounts["command_center"]["username"], "reason": reason},
        ).scalar_one()
    assert n == 0


def test_whole_town_roles_open_on_the_whole_town_from_the_menu(clients, engine):
    # The menu links to the page without a grid: it opens on the town, its households by view (capped).
    response = clients["command_center"].get(PATH)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    config = page_config(response.text)
    assert config["query"]["grid_code"] is None
    with engine.connect() as conn:
        w, s, e, n = conn.execute(text(
            "SELECT ST_XMin(x), ST_YMin(x), ST_XMax(x), ST_YMax(x) FROM "
            "(SELECT ST_Extent(geom) AS x FROM grid WHERE valid_to IS NULL) t")).one()
    assert [*config["bounds"][0], *config["bounds"][1]] == pytest.approx([s, w, n, e])


def test_unknown_grid_is_not_found(clients):
    response = clients["admin"].get(PATH, params={"grid_code": "411324999999999"})
    assert response.status_code == 404


def test_anonymous_is_sent_to_login(clients):
    response = clients["anonymous"].get(PATH, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
