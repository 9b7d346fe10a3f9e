"""The household map (/maps/households): scoped rows, masked fields, audited reads, offline."""

from __future__ import annotations

import re
import uuid

import geopandas as gpd
import pytest
from shapely.geometry import box
from sqlalchemy import text

from maps import labels
from maps.household_map import build_household_map
from tests.browser import click_first_marker

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
HOUSEHOLD_NOS_JS = "() => window.wanggeHouseholds.getLayers().map(layer => layer.feature.id)"


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
    return open_as("grid_staff", PATH)


@pytest.fixture(scope="module")
def command_center_page(open_as, codes):
    return open_as("command_center", f"{PATH}?grid_code={codes['village']}")


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
    assert labels.SYNTHETIC_BADGE in page.locator("#wangge-title").inner_text()
    page.screenshot(path="/tmp/wangge_household_map_grid_staff.png")
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


def test_a_household_marker_opens_its_popup_on_click(grid_staff_page, engine, codes):
    page, _, _ = grid_staff_page
    expected = households_in(engine, codes["own"])
    number, popup = click_first_marker(page, "wanggeHouseholds", "/tmp/wangge_household_map_popup.png")
    content = popup.inner_text()
    # At zoom 18 neighbours may overlap; whichever marker took the click, its name is in full.
    shown_no = page.locator(".leaflet-popup-content table").get_attribute("data-household-no")
    assert shown_no in expected
    assert expected[shown_no]["head_name"] in content
    assert number in expected
    page.evaluate("window.wanggeMap.closePopup()")


def test_grid_staff_asking_for_another_grid_gets_only_their_own(open_as, engine, codes):
    page, checker, status = open_as("grid_staff", f"{PATH}?grid_code={codes['other']}")
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
        active = c.execute(
            text("SELECT count(*) FROM emergency WHERE closed_at IS NULL")
        ).scalar_one()
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
    page.screenshot(path="/tmp/wangge_household_map_command_center.png")
    checker.assert_clean()


def test_planner_is_refused(open_as):
    page, _, status = open_as("planner", PATH)
    assert status == 403
    assert "wanggeHouseholds" not in page.content()


# --- Through the API client (no browser) ---


def test_grid_staff_map_read_is_audited_with_the_shown_ids(clients, accounts, engine, codes):
    reason = f"household map audit test {uuid.uuid4().hex}"
    response = clients["grid_staff"].get(PATH, params={"reason": reason})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    expected = households_in(engine, codes["own"])
    with engine.connect() as c:
        rows = c.execute(
            text(
                "SELECT action, resource, resource_ids, method, detail FROM audit_log "
                "WHERE actor = :actor AND path = :path AND reason = :reason"
            ),
            {"actor": accounts["grid_staff"]["username"], "path": PATH, "reason": reason},
        ).mappings().all()
    assert len(rows) == 1
    row = rows[0]
    assert (row["action"], row["resource"], row["method"]) == ("read_personal", "household", "GET")
    assert row["detail"] == {"format": "map"}
    assert sorted(map(int, row["resource_ids"])) == sorted(r["id"] for r in expected.values())
    for number in expected:
        assert number in response.text


def _numbers_in(page_html: str) -> set[str]:
    # Household numbers travel as the 19-digit feature ids of the household layer.
    return set(re.findall(r'"id":"(\d{19})"', page_html))


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
    assert _numbers_in(narrowed.text) == set(households_in(engine, inside))
    outside = clients["supervisor"].get(PATH, params={"grid_code": codes["other"]})
    assert outside.status_code == 200
    assert _numbers_in(outside.text) == set(households_in(engine, village))
    assert not _numbers_in(outside.text) & set(households_in(engine, codes["other"]))


def test_masked_map_writes_no_personal_read(clients, accounts, engine, codes):
    reason = f"household map masked test {uuid.uuid4().hex}"
    params = {"grid_code": codes["village"], "reason": reason}
    response = clients["command_center"].get(PATH, params=params)
    assert response.status_code == 200
    with engine.connect() as c:
        n = c.execute(
            text("SELECT count(*) FROM audit_log WHERE actor = :actor AND reason = :reason"),
            {"actor": accounts["command_center"]["username"], "reason": reason},
        ).scalar_one()
    assert n == 0


def test_a_cut_result_says_so(test_db_url, accounts, engine, codes):
    from tests.conftest import make_client

    expected = households_in(engine, codes["village"])
    with make_client(test_db_url, "admin", max_features_per_page=10) as client:
        response = client.get(PATH, params={"grid_code": codes["village"]})
    assert response.status_code == 200
    numbers = _numbers_in(response.text)
    assert len(numbers) == 10 and numbers <= set(expected)
    assert labels.HOUSEHOLDS_TRUNCATED.format(shown=10, total=len(expected)) in response.text


def test_whole_town_roles_must_name_a_grid(clients):
    response = clients["command_center"].get(PATH)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert ["query", "grid_code"] in [e["loc"] for e in response.json()["errors"]]


def test_unknown_grid_is_not_found(clients):
    response = clients["admin"].get(PATH, params={"grid_code": "411324999999999"})
    assert response.status_code == 404


def test_emergency_team_without_an_emergency_sees_no_household(clients, engine):
    response = clients["emergency"].get(PATH)
    assert response.status_code == 200
    assert labels.HOUSEHOLDS_NONE in response.text
    with engine.connect() as c:
        some_no = c.execute(
            text("SELECT household_no FROM household ORDER BY id LIMIT 1")
        ).scalar_one()
    assert some_no not in response.text


def test_anonymous_is_sent_to_login(clients):
    response = clients["anonymous"].get(PATH, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


# --- The page builder on its own ---


def _record(**overrides) -> dict:
    base = {
        "id": 1, "household_no": "4113241050010000001", "address": "尹营村一组**号",
        "head_name": "张*", "phone": "138****1234", "residents": 3, "elderly": 0, "children": 1,
        "disabled": 0, "pregnant": 0, "bedridden": 0, "floors": 2, "natural_village": "张庄",
        "grid_code": "411324105001001", "grid_name": "一组", "lon": 112.141234567,
        "lat": 33.02345678, "personal_fields": "masked",
    }
    return {**base, **overrides}


def _grids() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"code": ["411324105001001"], "name": ["一组"], "level": [4],
         "parent_code": ["411324105001000"]},
        geometry=[box(112.13, 33.01, 112.15, 33.03)],
        crs="EPSG:4326",
    )


def test_values_cannot_break_out_of_the_page():
    evil = "</script><img src=x onerror=alert(1)>"
    page = build_household_map([_record(head_name=evil, address=evil)], _grids(), title="<b>t</b>")
    assert "</script><img" not in page
    assert "<img src=x" not in page
    assert "<b>t</b>" not in page


def test_page_is_deterministic_light_and_says_when_cut():
    records = [
        _record(id=i, household_no=f"41132410500100{i:05d}", elderly=i % 2) for i in range(1, 4)
    ]
    a = build_household_map(records, _grids(), title="t", total=10, synthetic=True)
    b = build_household_map(records, _grids(), title="t", total=10, synthetic=True)
    assert a == b
    assert "112.141235" in a and "112.141234567" not in a
    assert labels.HOUSEHOLDS_TRUNCATED.format(shown=3, total=10) in a
    assert labels.PERSONAL_MASKED_NOTE in a
    assert labels.SYNTHETIC_BADGE in a
    own = [_record(personal_fields="shown", head_name="张三")]
    shown = build_household_map(own, _grids(), title="t")
    assert labels.PERSONAL_MASKED_NOTE not in shown
    assert labels.SYNTHETIC_BADGE not in shown
