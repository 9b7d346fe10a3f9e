"""The household map (/maps/households): a light page in the shell whose households come from the list
by view: scoped rows, masked fields, audited reads, offline, on a desktop and a phone."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from sqlalchemy import text

from maps import labels
from tests.browser import click_first_marker, serve_app_in_thread
from tests.conftest import screenshot_path, settings_for
from tests.map_pages import open_loaded, opened

PATH = "/maps/households"
MASKED_NAME = re.compile(r"^[\u4e00-\u9fff]{1,2}\*+$")
MASKED_PHONE = re.compile(r"^\d{3}\*{4}\d{4}$")

# Every popup, opened the way a user opens it, read back as {label: value}.
POPUPS_JS = """
() => window.wanggeHouseholds.getLayers().map(layer => {
    layer.getPopup().options.autoPan = false;
    layer.openPopup();
    const rows = {};
    layer.getPopup().getElement().querySelectorAll('tr').forEach(tr => {
        rows[tr.cells[0].textContent] = tr.cells[1].textContent;
    });
    layer.closePopup();
    return rows;
})
"""
HOUSEHOLD_NOS_JS = "() => window.wanggeHouseholds.getLayers().map(layer => layer.feature.properties.household_no)"
REASON = f"household-map-{uuid.uuid4().hex[:12]}"


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
    expected = households_in(engine, codes["own"])
    assert expected, "the sample town should have households in the first group grid"
    numbers = page.evaluate(HOUSEHOLD_NOS_JS)
    assert len(numbers) == len(expected)
    assert set(numbers) == set(expected)
    assert page.locator("#wangge-household-count").inner_text() == labels.HOUSEHOLD_COUNT.format(
        shown=len(expected)
    )
    assert page.locator("#wangge-masked-note").count() == 0
    assert page.locator("#wangge-truncated-note").count() == 0
    assert labels.SYNTHETIC_BADGE in page.locator("#wangge-synthetic-badge").inner_text()
    page.screenshot(path=screenshot_path("household_map_grid_staff"))
    checker.assert_clean()


def test_grid_staff_popups_show_full_names_and_phones(grid_staff_page, engine, codes):
    page, _, _ = grid_staff_page
    expected = households_in(engine, codes["own"])
    popups = page.evaluate(POPUPS_JS)
    assert len(popups) == len(expected)
    for rows in popups:
        db = expected[rows["户号"]]
        assert rows["户主"] == db["head_name"]
        assert rows["电话"] == db["phone"]
        assert rows["地址"] == db["address"]
        assert set(rows) == {label for _, label in labels.HOUSEHOLD_POPUP_FIELDS}


def test_the_reads_are_audited_with_the_shown_ids(grid_staff_page, accounts, engine, codes):
    page, _, _ = grid_staff_page
    expected = households_in(engine, codes["own"])
    with engine.connect() as c:
        rows = c.execute(
            text("SELECT action, resource, resource_ids, method, path, detail FROM audit_log "
                 "WHERE actor = :actor AND reason = :reason"),
            {"actor": accounts["grid_staff"]["username"], "reason": REASON},
        ).mappings().all()
    assert rows
    assert {(r["action"], r["resource"], r["method"], r["path"]) for r in rows} == {
        ("read_personal", "household", "GET", "/households")}
    assert all(r["detail"] == {"format": "geojson"} for r in rows)
    shown = set().union(*(set(map(int, r["resource_ids"])) for r in rows))
    assert shown == {r["id"] for r in expected.values()}


def test_a_household_marker_opens_its_popup_on_click(grid_staff_page, engine, codes):
    page, _, _ = grid_staff_page
    expected = households_in(engine, codes["own"])
    _, popup = click_first_marker(page, "wanggeHouseholds", screenshot_path("household_map_popup"))
    content = popup.inner_text()
    # At zoom 18 neighbours may overlap; whichever marker took the click, its name is in full.
    shown_no = page.locator(".leaflet-popup-content table").get_attribute("data-household-no")
    assert shown_no in expected
    assert expected[shown_no]["head_name"] in content
    page.evaluate("window.wanggeMap.closePopup()")


def test_grid_staff_asking_for_another_grid_gets_only_their_own(open_as, engine, codes):
    page, checker, status = open_loaded(open_as, "grid_staff", f"{PATH}?grid_code={codes['other']}")
    assert status == 200
    own, other = households_in(engine, codes["own"]), households_in(engine, codes["other"])
    assert other and not set(own) & set(other)
    numbers = set(page.evaluate(HOUSEHOLD_NOS_JS))
    assert numbers == set(own)
    assert not numbers & set(other)
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
    popups = page.evaluate(POPUPS_JS)
    assert {p["户号"] for p in popups} == set(expected)
    for rows in popups:
        db = expected[rows["户号"]]
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


def test_on_a_phone(open_as, engine, codes):
    page, checker, status = open_loaded(open_as, "grid_staff", PATH, phone=True)
    assert status == 200
    assert set(page.evaluate(HOUSEHOLD_NOS_JS)) == set(households_in(engine, codes["own"]))
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
    assert page.evaluate("window.wanggeHouseholds.getLayers().length") == 0
    assert page.locator("#wangge-household-count").inner_text() == labels.HOUSEHOLDS_NONE
    checker.assert_clean()


def test_planner_is_refused(open_as):
    page, _, status = open_as("planner", PATH)
    assert status == 403
    assert "wanggeHouseholds" not in page.content()


def test_a_cut_result_says_so(test_db_url, accounts, engine, codes, site):
    from api.main import create_app

    expected = households_in(engine, codes["village"])
    app = create_app(settings_for(test_db_url, max_features_per_page=10))
    with (serve_app_in_thread(app) as base,
          opened((base, site[1]), accounts, "admin", f"{PATH}?grid_code={codes['village']}") as (page, _, status)):
        assert status == 200
        numbers = set(page.evaluate(HOUSEHOLD_NOS_JS))
        note = page.locator("#wangge-truncated-note").inner_text()
    assert len(numbers) == 10 and numbers <= set(expected)
    assert note == labels.HOUSEHOLDS_IN_VIEW_CUT.format(shown=10, total=len(expected))


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
