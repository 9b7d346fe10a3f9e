"""The incident map (/maps/incidents): scoped like the list, filtered, masked, audited, offline."""

from __future__ import annotations

import re
import uuid

import geopandas as gpd
import pytest
from shapely.geometry import box
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.incidents.categories import CATEGORY_NAMES_ZH, DISPUTE_NAMES_ZH
from gis.incidents.loop import STATE_NAMES_ZH
from maps import labels
from maps.incident_map import OVERDUE_RING, build_incident_map
from tests.browser import click_first_marker
from tests.conftest import database_copy, live_site, make_client

PATH = "/maps/incidents"
MASKED_NAME = re.compile(r"^[\u4e00-\u9fff]{1,2}\*$")
MASKED_PHONE = re.compile(r"^\d{3}\*{4}\d{4}$")
FIELDS = dict(labels.INCIDENT_POPUP_FIELDS)

# Every marker's popup, opened the way a user opens it, read back with the marker's look.
POPUPS_JS = """
() => window.wanggeIncidents.getLayers().map(layer => {
    layer.getPopup().options.autoPan = false;
    layer.openPopup();
    const rows = {};
    layer.getPopup().getElement().querySelectorAll('tr').forEach(tr => {
        rows[tr.cells[0].textContent] = tr.cells[1].textContent;
    });
    layer.closePopup();
    return {id: layer.feature.id, rows: rows, ring: layer.options.color};
})
"""
IDS_JS = "() => window.wanggeIncidents.getLayers().map(layer => layer.feature.id)"


def incident_ids(engine, where: str, **params) -> set[int]:
    with engine.connect() as c:
        return set(c.execute(text(f"SELECT id FROM incident WHERE {where}"), params).scalars())


def incident_rows(engine, ids) -> dict[int, dict]:
    with engine.connect() as c:
        rows = c.execute(
            text("SELECT id, category, dispute_kind, state, reporter_name, reporter_phone "
                 "FROM incident WHERE id = ANY(:ids)"),
            {"ids": list(ids)},
        ).mappings().all()
    return {r["id"]: dict(r) for r in rows}


def ids_in(page_html: str) -> set[int]:
    # Incident ids travel as the numeric feature ids of the incident layer.
    return {int(i) for i in re.findall(r'"id":(\d+),"properties":\{"k"', page_html)}


@pytest.fixture(scope="module")
def reported_db_url(test_db_url):
    """A copy of the sample town in which every incident has a reporter (the sample has none)."""
    with database_copy(test_db_url, "incmap") as url:
        eng = create_engine(url, poolclass=NullPool)
        with eng.begin() as c:
            c.execute(text(
                "UPDATE incident SET "
                "reporter_name = (ARRAY['王','李','张','刘','陈','欧阳'])[id % 6 + 1] "
                "|| (ARRAY['建国','秀英','志强','桂兰','明'])[(id / 6) % 5 + 1], "
                "reporter_phone = '139' || lpad(id::text, 8, '0')"
            ))
        eng.dispose()
        yield url


@pytest.fixture(scope="module")
def reported_engine(reported_db_url):
    eng = create_engine(reported_db_url, poolclass=NullPool)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def codes(engine, accounts) -> dict[str, str]:
    own = accounts["grid_staff"]["scope_codes"][0]
    with engine.connect() as c:
        # The group grid with most incidents outside the grid staff's own.
        other = c.execute(
            text("SELECT group_code FROM incident WHERE group_code <> :own "
                 "GROUP BY group_code ORDER BY count(*) DESC, group_code LIMIT 1"),
            {"own": own},
        ).scalar_one()
        # The village with most disputes: enough markers for the masking checks to mean something.
        village = c.execute(
            text("SELECT village_code FROM incident WHERE category = 'dispute' "
                 "GROUP BY village_code ORDER BY count(*) DESC, village_code LIMIT 1")
        ).scalar_one()
    return {"own": own, "other": other, "village": village, "own_village": own[:12] + "000"}


@pytest.fixture(scope="module")
def site(reported_db_url, accounts):
    with live_site(reported_db_url) as served:
        yield served


@pytest.fixture(scope="module")
def grid_staff_page(open_as):
    return open_as("grid_staff", PATH)


@pytest.fixture(scope="module")
def dispute_page(open_as, codes):
    return open_as("command_center", f"{PATH}?grid_code={codes['village']}&category=dispute")


def test_grid_staff_sees_exactly_the_incidents_of_their_grid(grid_staff_page, reported_engine, codes):
    page, checker, status = grid_staff_page
    assert status == 200
    expected = incident_ids(reported_engine, "group_code = :g", g=codes["own"])
    assert expected, "the sample town should have incidents in the first group grid"
    ids = page.evaluate(IDS_JS)
    assert len(ids) == len(expected)
    assert set(ids) == expected
    count = page.locator("#wangge-incident-count")
    assert count.is_visible()
    assert count.inner_text() == labels.INCIDENT_COUNT.format(total=len(expected))
    assert page.locator("#wangge-masked-note").count() == 0
    assert page.locator("#wangge-truncated-note").count() == 0
    assert labels.SYNTHETIC_BADGE in page.locator("#wangge-title").inner_text()
    assert page.evaluate("window.wanggeGridOutlines.getLayers().length") >= 1
    page.screenshot(path="/tmp/wangge_incident_map_grid_staff.png")
    checker.assert_clean()


def test_grid_staff_popups_speak_chinese_and_show_reporters_in_full(grid_staff_page, reported_engine):
    page, _, _ = grid_staff_page
    popups = page.evaluate(POPUPS_JS)
    db = incident_rows(reported_engine, [p["id"] for p in popups])
    assert len(db) == len(popups) > 0
    for popup in popups:
        rows, row = popup["rows"], db[popup["id"]]
        assert set(rows) == set(FIELDS.values())
        assert rows[FIELDS["id"]] == str(row["id"])
        assert rows[FIELDS["category"]].startswith(CATEGORY_NAMES_ZH[row["category"]])
        if row["dispute_kind"]:
            assert rows[FIELDS["category"]].endswith(DISPUTE_NAMES_ZH[row["dispute_kind"]])
        assert rows[FIELDS["state"]] == STATE_NAMES_ZH[row["state"]]
        assert rows[FIELDS["reporter_name"]] == row["reporter_name"]
        assert rows[FIELDS["reporter_phone"]] == row["reporter_phone"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", rows[FIELDS["occurred_at"]])


def test_grid_staff_asking_for_another_grid_gets_only_their_own(open_as, reported_engine, codes):
    page, checker, status = open_as("grid_staff", f"{PATH}?grid_code={codes['other']}")
    assert status == 200
    own = incident_ids(reported_engine, "group_code = :g", g=codes["own"])
    other = incident_ids(reported_engine, "group_code = :g", g=codes["other"])
    assert other and not own & other
    ids = set(page.evaluate(IDS_JS))
    assert ids == own
    assert not ids & other
    html = page.content()
    for row in incident_rows(reported_engine, other).values():
        assert row["reporter_phone"] not in html
    checker.assert_clean()


def test_command_center_sees_only_the_villages_disputes_masked(dispute_page, reported_engine, codes):
    page, checker, status = dispute_page
    assert status == 200
    expected = incident_ids(reported_engine, "village_code = :v AND category = 'dispute'",
                            v=codes["village"])
    others = incident_ids(reported_engine, "village_code = :v AND category <> 'dispute'",
                          v=codes["village"])
    assert len(expected) > 50 and others, "the filter should have something to leave out"
    popups = page.evaluate(POPUPS_JS)
    assert {p["id"] for p in popups} == expected
    db = incident_rows(reported_engine, expected)
    for popup in popups:
        rows, row = popup["rows"], db[popup["id"]]
        assert rows[FIELDS["category"]].startswith(CATEGORY_NAMES_ZH["dispute"])
        name, phone = rows[FIELDS["reporter_name"]], rows[FIELDS["reporter_phone"]]
        assert MASKED_NAME.match(name), name
        assert name != row["reporter_name"] and row["reporter_name"].startswith(name[:-1])
        assert MASKED_PHONE.match(phone), phone
        assert phone[-4:] == row["reporter_phone"][-4:] and phone != row["reporter_phone"]
    # No reporter's full phone anywhere in the page, not only in the popups.
    html = page.content()
    for row in db.values():
        assert row["reporter_phone"] not in html
    note = page.locator("#wangge-masked-note")
    assert note.is_visible()
    assert note.inner_text() == labels.PERSONAL_MASKED_NOTE
    assert CATEGORY_NAMES_ZH["dispute"] in page.locator("#wangge-incident-filters").inner_text()
    assert page.locator("#wangge-incident-count").inner_text() == labels.INCIDENT_COUNT.format(
        total=len(expected)
    )
    legend = page.locator("#wangge-legend").inner_text()
    assert CATEGORY_NAMES_ZH["dispute"] in legend
    assert CATEGORY_NAMES_ZH["environment"] not in legend
    page.screenshot(path="/tmp/wangge_incident_map_command_center.png")
    checker.assert_clean()


def test_clicking_a_marker_opens_its_popup_with_the_category_in_chinese(dispute_page, reported_engine):
    page, checker, _ = dispute_page
    click_first_marker(page, "wanggeIncidents", "/tmp/wangge_incident_map_popup.png")
    # At zoom 18 neighbours may overlap; whichever marker took the click, its popup is its own.
    shown = int(page.locator(".leaflet-popup-content table").get_attribute("data-incident-id"))
    row = incident_rows(reported_engine, [shown])[shown]
    category = page.locator(".leaflet-popup-content tr", has_text=FIELDS["category"]).inner_text()
    assert CATEGORY_NAMES_ZH[row["category"]] in category
    assert row["category"] not in category
    page.evaluate("() => { window.wanggeMap.closePopup(); }")
    checker.assert_clean()


def test_overdue_incidents_are_ringed_red_on_top(open_as, site, codes):
    page, checker, status = open_as("command_center", f"{PATH}?grid_code={codes['own_village']}")
    assert status == 200
    popups = page.evaluate(POPUPS_JS)
    ringed = [p["ring"] == OVERDUE_RING for p in popups]
    said = [p["rows"][FIELDS["urgency"]].startswith("已超期") for p in popups]
    assert ringed == said
    assert any(ringed) and not all(ringed), "the village should have overdue and other incidents"
    # Canvas markers are painted in layer order: every overdue one after every other one.
    first_overdue = ringed.index(True)
    assert all(ringed[first_overdue:])
    # The same incidents the list API calls overdue, asked in the same session.
    base, _ = site
    listed = page.request.get(
        f"{base}/incidents", params={"grid_code": codes["own_village"], "overdue": "true",
                                     "limit": "5000"}
    ).json()
    assert {p["id"] for p, r in zip(popups, ringed, strict=True) if r} == {
        i["id"] for i in listed["items"]
    }
    for popup in popups:
        if popup["ring"] == OVERDUE_RING:
            assert "已升级至" in popup["rows"][FIELDS["urgency"]]
    checker.assert_clean()


# --- Through the API client (no browser) ---


def test_planner_is_refused(clients):
    response = clients["planner"].get(PATH)
    assert response.status_code == 403
    assert "wanggeIncidents" not in response.text


def test_anonymous_is_sent_to_login(clients):
    response = clients["anonymous"].get(PATH, params={"category": "dispute"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=/maps/incidents")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"category": "flood"}, "category"),
        ({"state": "done"}, "state"),
        ({"overdue": "maybe"}, "overdue"),
        ({"grid_code": "4113"}, "grid_code"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2024-01-01T00:00:00"}, "since"),
        ({"until": "2024-01-01T00:00:00"}, "until"),
    ],
)
def test_bad_filters_are_422_naming_the_field(clients, params, field):
    response = clients["command_center"].get(PATH, params=params)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert ["query", field] in [e["loc"] for e in response.json()["errors"]]


def test_unknown_grid_is_not_found(clients):
    assert clients["admin"].get(PATH, params={"grid_code": "411324999999999"}).status_code == 404


@pytest.mark.parametrize(
    ("role", "params"),
    [
        ("command_center", {"category": "safety_hazard", "since": "2024-03-01T00:00:00+08:00",
                            "until": "2024-09-01T00:00:00+08:00"}),
        ("emergency", {"overdue": "true"}),
        ("supervisor", {"state": "closed", "category": "environment"}),
        ("grid_staff", {"overdue": "false"}),
    ],
)
def test_the_page_shows_what_the_list_gives(clients, role, params):
    page = clients[role].get(PATH, params=params)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    listed = clients[role].get("/incidents", params={**params, "limit": 5000})
    assert listed.status_code == 200
    expected = {i["id"] for i in listed.json()["items"]}
    assert expected, f"{role} {params} should match some incidents"
    assert ids_in(page.text) == expected
    assert labels.INCIDENT_COUNT.format(total=len(expected)) in page.text


def test_grid_staff_map_read_is_audited_with_the_shown_ids(reported_db_url, reported_engine, accounts):
    reason = f"incident map audit test {uuid.uuid4().hex}"
    with make_client(reported_db_url, "grid_staff") as client:
        response = client.get(PATH, params={"reason": reason})
    assert response.status_code == 200
    shown = ids_in(response.text)
    assert shown
    with reported_engine.connect() as c:
        rows = c.execute(
            text("SELECT action, resource, resource_ids, method FROM audit_log "
                 "WHERE actor = :actor AND path = :path AND reason = :reason"),
            {"actor": accounts["grid_staff"]["username"], "path": PATH, "reason": reason},
        ).mappings().all()
    assert len(rows) == 1
    assert (rows[0]["action"], rows[0]["resource"], rows[0]["method"]) == (
        "read_personal", "incident", "GET"
    )
    assert set(map(int, rows[0]["resource_ids"])) == shown


def test_masked_map_writes_no_personal_read(reported_db_url, reported_engine, accounts, codes):
    reason = f"incident map masked test {uuid.uuid4().hex}"
    with make_client(reported_db_url, "command_center") as client:
        response = client.get(PATH, params={"grid_code": codes["village"], "reason": reason})
    assert response.status_code == 200
    assert labels.PERSONAL_MASKED_NOTE in response.text
    with reported_engine.connect() as c:
        n = c.execute(
            text("SELECT count(*) FROM audit_log WHERE actor = :actor AND reason = :reason"),
            {"actor": accounts["command_center"]["username"], "reason": reason},
        ).scalar_one()
    assert n == 0


def test_a_cut_result_says_so(test_db_url, accounts, engine, codes):
    expected = incident_ids(engine, "village_code = :v", v=codes["village"])
    with make_client(test_db_url, "admin", max_features_per_page=10) as client:
        response = client.get(PATH, params={"grid_code": codes["village"]})
    assert response.status_code == 200
    ids = ids_in(response.text)
    assert len(ids) == 10 and ids <= expected
    assert labels.INCIDENT_COUNT.format(total=len(expected)) in response.text
    assert labels.INCIDENTS_TRUNCATED.format(shown=10, total=len(expected)) in response.text


# --- The page builder on its own ---


def _record(**overrides) -> dict:
    base = {
        "id": 1, "category": "dispute", "dispute_kind": "neighbour", "description": "邻里纠纷",
        "occurred_at": "2024-05-01T00:30:00+00:00", "state": "study",
        "deadline": "2024-05-08T00:30:00+00:00", "overdue": False, "escalation_level": 4,
        "escalated_to": "411324105001001", "group_code": "411324105001001",
        "village_code": "411324105001000", "lon": 112.141234567, "lat": 33.02345678,
        "reporter_name": "张*", "reporter_phone": "139****0001",
    }
    return {**base, **overrides}


def _grids() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"code": ["411324105001001"], "name": ["一组"], "level": [4]},
        geometry=[box(112.13, 33.01, 112.15, 33.03)],
        crs="EPSG:4326",
    )


def test_values_cannot_break_out_of_the_page():
    evil = "</script><img src=x onerror=alert(1)>"
    page = build_incident_map([_record(description=evil, reporter_name=evil)], _grids(),
                              title="<b>t</b>")
    assert "</script><img" not in page
    assert "<img src=x" not in page
    assert "<b>t</b>" not in page


def test_page_is_deterministic_with_overdue_last_and_local_times():
    records = [
        _record(id=1, overdue=True, escalation_level=3, escalated_to="411324105001000"),
        _record(id=2, category="environment", dispute_kind=None),
        _record(id=3),
    ]
    names = {"411324105001000": "尹营村"}
    a = build_incident_map(records, _grids(), title="t", total=7, grid_names=names,
                           reporter_masked=True, synthetic=True)
    b = build_incident_map(records, _grids(), title="t", total=7, grid_names=names,
                           reporter_masked=True, synthetic=True)
    assert a == b
    assert [int(i) for i in re.findall(r'"id":(\d+),"properties"', a)] == [2, 3, 1]
    assert "112.141235" in a and "112.141234567" not in a
    assert "2024-05-01 08:30" in a  # UTC 00:30 is 08:30 in the town
    assert labels.INCIDENT_OVERDUE.format(place="尹营村（411324105001000）") in a
    assert labels.INCIDENTS_TRUNCATED.format(shown=3, total=7) in a
    assert labels.INCIDENT_COUNT.format(total=7) in a
    assert labels.PERSONAL_MASKED_NOTE in a
    assert labels.SYNTHETIC_BADGE in a
    plain = build_incident_map(records[1:], _grids(), title="t")
    assert labels.PERSONAL_MASKED_NOTE not in plain
    assert labels.SYNTHETIC_BADGE not in plain
    assert labels.INCIDENT_OVERDUE_LEGEND not in plain
    empty = build_incident_map([], _grids(), title="t", reporter_masked=True)
    assert labels.INCIDENTS_NONE in empty


# --- The data the page loads: the incident list by view (bbox) and open by default ---


def test_the_list_by_view_is_the_sql_oracle(clients, engine, codes):
    with engine.connect() as c:
        x0, y0, x1, y1 = c.execute(text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e FROM grid "
            "WHERE valid_to IS NULL AND code = :v) s"), {"v": codes["village"]}).one()
        expected = incident_ids(engine, "geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326) "
                                "AND state <> 'closed' AND category = 'dispute'",
                                x0=x0, y0=y0, x1=x1, y1=y1)
        closed = incident_ids(engine, "geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326) AND state = 'closed'",
                              x0=x0, y0=y0, x1=x1, y1=y1)
    assert expected and closed
    r = clients["command_center"].get("/incidents", params={
        "bbox": f"{x0},{y0},{x1},{y1}", "open": "true", "category": "dispute", "format": "geojson", "limit": 5000})
    assert r.status_code == 200
    assert {f["id"] for f in r.json()["features"]} == expected
    everything = clients["command_center"].get("/incidents", params={"bbox": f"{x0},{y0},{x1},{y1}", "limit": 5000})
    assert closed <= {i["id"] for i in everything.json()["items"]}


@pytest.mark.parametrize("bbox", ["1,2,3", "a,b,c,d", "10,10,5,5", "0,0,0,200"])
def test_a_bad_bbox_is_422_naming_it(clients, bbox):
    r = clients["command_center"].get("/incidents", params={"bbox": bbox})
    assert r.status_code == 422
    assert ["query", "bbox"] in [e["loc"] for e in r.json()["errors"]]
