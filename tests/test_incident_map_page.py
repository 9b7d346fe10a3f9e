"""The incident map (/maps/incidents): a light page in the shell whose incidents come as vector tiles
(open ones by default; counted blocks at low zoom, points from the point zoom on), with filter controls
that go into the tile URL; a click reads the incident (masked and audited like the list); no view is
cut; offline; on a desktop and a phone."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.incidents.categories import CATEGORY_NAMES_ZH, DISPUTE_NAMES_ZH
from gis.incidents.loop import STATE_NAMES_ZH
from maps import labels
from maps.incident_map import OVERDUE_RING, POINT_MINZOOM
from tests.browser import serve_app_in_thread
from tests.conftest import database_copy, live_site, make_client, screenshot_path, settings_for
from tests.map_pages import open_loaded, opened, wait_loaded

PATH = "/maps/incidents"
MASKED_NAME = re.compile(r"^[\u4e00-\u9fff]{1,2}\*$")
MASKED_PHONE = re.compile(r"^\d{3}\*{4}\d{4}$")
FIELDS = dict(labels.INCIDENT_POPUP_FIELDS)

# The map shows single incidents from the tile layer's point zoom on.
POINT_ZOOM = POINT_MINZOOM

# The points of the loaded tiles of the current zoom (every tile the view needs, and its buffer).
IDS_JS = "() => window.wanggeIncidents.points().map(p => p.properties.id)"

# Open each point's popup the way the page's click does (read from /incidents/{id}), read it back
# with the point's look (its canvas style), in tile paint order.
POPUPS_JS = """
async (limit) => {
    const layer = window.wanggeIncidents, style = layer.options.vectorTileLayerStyles.incidents;
    const out = [];
    for (const p of layer.points().slice(0, limit)) {
        await window.wanggeOpenIncident(p.properties, p.latlng);
        const rows = {};
        document.querySelectorAll('.leaflet-popup-content tr').forEach(tr => {
            rows[tr.cells[0].textContent] = tr.cells[1].textContent;
        });
        window.wanggeMap.closePopup();
        out.push({id: p.properties.id, rows: rows, ring: style(p.properties).color, tile: p.tile,
                  overdue: p.properties.overdue});
    }
    return out;
}
"""


def show_points(page, zoom: int = POINT_ZOOM) -> None:
    """Zoom the map (about its centre) to at least the point zoom and wait for the tiles."""
    if page.evaluate("window.wanggeMap.getZoom()") >= zoom:
        return
    set_zoom(page, zoom)


def set_zoom(page, zoom: int) -> None:
    page.evaluate("document.documentElement.removeAttribute('data-wangge-loaded')")
    page.evaluate("z => window.wanggeMap.setView(window.wanggeMap.getCenter(), z, {animate: false})", zoom)
    wait_loaded(page)


def tile_requests(checker) -> list[str]:
    return [u for u in checker.requests if "/tiles/incidents/" in u]


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
    return open_loaded(open_as, "grid_staff", PATH + "?reason=" + REASON)


@pytest.fixture(scope="module")
def dispute_page(open_as, codes):
    # Closed ones too, as asked in the URL: most of the sample's two years of disputes are closed.
    return open_loaded(open_as, "command_center", f"{PATH}?grid_code={codes['village']}&category=dispute&state=all")


REASON = f"incident-map-{uuid.uuid4().hex[:12]}"
OPEN = "state <> 'closed'"


def test_grid_staff_sees_exactly_the_open_incidents_of_their_grid(grid_staff_page, reported_engine, codes):
    page, checker, status = grid_staff_page
    assert status == 200
    expected = incident_ids(reported_engine, f"group_code = :g AND {OPEN}", g=codes["own"])
    closed = incident_ids(reported_engine, "group_code = :g AND state = 'closed'", g=codes["own"])
    assert expected and closed, "the first group grid should have open and closed incidents"
    show_points(page)
    assert set(page.evaluate(IDS_JS)) == expected
    count = page.locator("#wangge-incident-count")
    assert count.is_visible()
    assert count.inner_text() == labels.INCIDENTS_IN_VIEW.format(total=len(expected))
    assert labels.INCIDENT_FILTER_OPEN in page.locator("#wangge-incident-filters").inner_text()
    assert page.locator("#wangge-masked-note").count() == 0
    assert page.locator("#wangge-truncated-note").count() == 0
    assert labels.SYNTHETIC_BADGE in page.locator("#wangge-synthetic-badge").inner_text()
    assert page.evaluate("window.wanggeGridOutlines.getLayers().length") >= 1
    assert tile_requests(checker), "the incidents should come as vector tiles"
    assert not any(urlsplit(u).path == "/incidents" for u in checker.requests), "no incident list by view any more"
    page.screenshot(path=screenshot_path("incident_map_grid_staff"))
    checker.assert_clean()


def test_the_page_embeds_no_incident(grid_staff_page, reported_engine, codes):
    page, _, _ = grid_staff_page
    html = page.request.get(page.url).text()
    rows = incident_rows(reported_engine, incident_ids(reported_engine, "group_code = :g", g=codes["own"]))
    for row in rows.values():
        assert row["reporter_phone"] not in html
    assert '"features"' not in html


def test_grid_staff_popups_speak_chinese_show_reporters_in_full_and_are_audited(
        grid_staff_page, reported_engine, accounts):
    page, checker, _ = grid_staff_page
    show_points(page)
    popups = page.evaluate(POPUPS_JS, 12)
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
    # Each popup's read of a reporter in full is audited (GET /incidents/{id}); tiles carry no reporter.
    with reported_engine.connect() as c:
        rows = c.execute(
            text("SELECT action, resource, resource_ids, path FROM audit_log "
                 "WHERE actor = :actor AND action = 'read_personal' AND path LIKE '/incidents/%'"),
            {"actor": accounts["grid_staff"]["username"]},
        ).mappings().all()
    assert rows, "the popup's read of reporters should be audited"
    assert {r["resource"] for r in rows} == {"incident"}
    assert {p["id"] for p in popups} <= set().union(*(set(map(int, r["resource_ids"])) for r in rows))
    with reported_engine.connect() as c:
        # Incident tiles carry no reporter, so they are never a personal-data read (household tiles, which other
        # tests open as this account, are audited on their own).
        from_tiles = c.execute(text("SELECT count(*) FROM audit_log WHERE actor = :actor "
                                    "AND path LIKE '/tiles/incidents/%'"),
                               {"actor": accounts["grid_staff"]["username"]}).scalar_one()
    assert from_tiles == 0
    checker.assert_clean()


def test_grid_staff_asking_for_another_grid_gets_only_their_own(open_as, reported_engine, codes):
    page, checker, status = open_loaded(open_as, "grid_staff", f"{PATH}?grid_code={codes['other']}")
    assert status == 200
    own = incident_ids(reported_engine, f"group_code = :g AND {OPEN}", g=codes["own"])
    other = incident_ids(reported_engine, "group_code = :g", g=codes["other"])
    assert other and not own & other
    show_points(page)
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
    expected = incident_ids(reported_engine, "village_code = :v AND category = 'dispute'", v=codes["village"])
    others = incident_ids(reported_engine, "village_code = :v AND category <> 'dispute'", v=codes["village"])
    assert len(expected) > 20 and others, "the filter should have something to leave out"
    show_points(page)
    assert set(page.evaluate(IDS_JS)) == expected
    popups = page.evaluate(POPUPS_JS, 15)
    assert len(popups) == 15
    db = incident_rows(reported_engine, expected)
    for popup in popups:
        rows, row = popup["rows"], db[popup["id"]]
        assert rows[FIELDS["category"]].startswith(CATEGORY_NAMES_ZH["dispute"])
        name, phone = rows[FIELDS["reporter_name"]], rows[FIELDS["reporter_phone"]]
        assert MASKED_NAME.match(name), name
        assert name != row["reporter_name"] and row["reporter_name"].startswith(name[:-1])
        assert MASKED_PHONE.match(phone), phone
        assert phone[-4:] == row["reporter_phone"][-4:] and phone != row["reporter_phone"]
    html = page.content()
    for row in db.values():
        assert row["reporter_phone"] not in html
    note = page.locator("#wangge-masked-note")
    assert note.is_visible()
    assert note.inner_text() == labels.PERSONAL_MASKED_NOTE
    assert CATEGORY_NAMES_ZH["dispute"] in page.locator("#wangge-incident-filters").inner_text()
    assert labels.INCIDENT_FILTER_ALL_STATES in page.locator("#wangge-incident-filters").inner_text()
    assert page.locator("#wangge-filter-category").input_value() == "dispute"
    assert page.locator("#wangge-filter-state").input_value() == "all"
    assert CATEGORY_NAMES_ZH["dispute"] in page.locator("#wangge-legend").inner_text()
    # The filters travel in the tile URL.
    asked = [u for u in tile_requests(checker) if f"grid_code={codes['village']}" in u]
    assert asked and all("category=dispute" in u and "open=false" in u for u in asked)
    page.screenshot(path=screenshot_path("incident_map_command_center"))
    checker.assert_clean()


def test_clicking_a_point_opens_its_popup_with_the_category_in_chinese(dispute_page, reported_engine):
    page, checker, _ = dispute_page
    # Zoom on the first point and click it where it is drawn, as a user does.
    page.evaluate("document.documentElement.removeAttribute('data-wangge-loaded')")
    page.evaluate("() => { const p = window.wanggeIncidents.points()[0];"
                  " window.wanggeMap.setView(p.latlng, 18, {animate: false}); }")
    wait_loaded(page)
    target, x, y = page.evaluate(
        "() => { const map = window.wanggeMap, c = map.getCenter();"
        " const p = window.wanggeIncidents.points().filter(q => map.getBounds().contains(q.latlng))"
        "   .sort((a, b) => a.latlng.distanceTo(c) - b.latlng.distanceTo(c))[0];"
        " const xy = map.latLngToContainerPoint(p.latlng), r = map.getContainer().getBoundingClientRect();"
        " return [p.properties.id, r.left + xy.x, r.top + xy.y]; }")
    page.mouse.click(x, y)
    table = page.locator(".leaflet-popup-content table")
    table.wait_for(state="visible")
    page.wait_for_timeout(400)  # the popup fades in
    page.screenshot(path=screenshot_path("incident_map_popup"))
    # Neighbours may overlap at the spot; whichever point took the click, its popup is its own.
    shown = int(table.get_attribute("data-incident-id"))
    assert target
    row = incident_rows(reported_engine, [shown])[shown]
    category = page.locator(".leaflet-popup-content tr", has_text=FIELDS["category"]).inner_text()
    assert CATEGORY_NAMES_ZH[row["category"]] in category
    assert row["category"] not in category
    # From the map to acting on it: the incident's own page.
    link = page.locator(".leaflet-popup-content a.wangge-popup-link")
    assert link.inner_text() == labels.INCIDENT_OPEN_DETAIL
    assert link.get_attribute("href") == f"/pages/incidents/{shown}"
    page.evaluate("() => { window.wanggeMap.closePopup(); }")
    checker.assert_clean()


def test_overdue_incidents_are_ringed_red_on_top(open_as, site, codes):
    # Closed ones too: the sample's open incidents are old, nearly all overdue.
    page, checker, status = open_loaded(open_as, "command_center",
                                        f"{PATH}?grid_code={codes['own_village']}&state=all")
    assert status == 200
    show_points(page)
    points = page.evaluate("() => { const s = window.wanggeIncidents.options.vectorTileLayerStyles.incidents;"
                           " return window.wanggeIncidents.points().map(p => ({id: p.properties.id,"
                           " overdue: p.properties.overdue, ring: s(p.properties).color, tile: p.tile})); }")
    ringed = [p["ring"] == OVERDUE_RING for p in points]
    assert ringed == [bool(p["overdue"]) for p in points]
    assert any(ringed) and not all(ringed), "the village should have overdue and other incidents"
    # Canvas points are painted in tile order: in each tile every overdue one after every other one.
    for tile in {p["tile"] for p in points}:
        order = [p["ring"] == OVERDUE_RING for p in points if p["tile"] == tile]
        assert order == sorted(order)
    base, _ = site
    listed = page.request.get(
        f"{base}/incidents", params={"grid_code": codes["own_village"], "overdue": "true", "open": "false",
                                     "limit": "5000"}
    ).json()
    assert {p["id"] for p, r in zip(points, ringed, strict=True) if r} == {i["id"] for i in listed["items"]}
    popups = [p for p in page.evaluate(POPUPS_JS, 400) if p["ring"] == OVERDUE_RING][:5]
    assert popups
    for popup in popups:
        assert "已升级至" in popup["rows"][FIELDS["urgency"]]
    checker.assert_clean()


def _choose(page, select: str, value: str) -> None:
    page.evaluate("document.documentElement.removeAttribute('data-wangge-loaded')")
    page.select_option(select, value)
    wait_loaded(page)


def test_the_filter_controls_change_the_shown_set_as_sql_says(open_as, reported_engine, codes):
    village = codes["village"]
    page, checker, status = open_loaded(open_as, "command_center", f"{PATH}?grid_code={village}")
    assert status == 200
    show_points(page)
    shown = lambda: set(page.evaluate(IDS_JS))  # noqa: E731
    assert shown() == incident_ids(reported_engine, f"village_code = :v AND {OPEN}", v=village)
    # Every state, closed ones too.
    _choose(page, "#wangge-filter-state", "all")
    everything = incident_ids(reported_engine, "village_code = :v", v=village)
    assert shown() == everything and "state=all" in page.url
    # Closed only.
    _choose(page, "#wangge-filter-state", "closed")
    closed = incident_ids(reported_engine, "village_code = :v AND state = 'closed'", v=village)
    assert closed and shown() == closed
    # Back to open ones, of one category, overdue.
    _choose(page, "#wangge-filter-state", "")
    _choose(page, "#wangge-filter-category", "dispute")
    _choose(page, "#wangge-filter-overdue", "true")
    with reported_engine.connect() as c:
        overdue = set(c.execute(text(
            "SELECT id FROM incident WHERE village_code = :v AND state <> 'closed' AND category = 'dispute' "
            "AND stage_deadline < now()"), {"v": village}).scalars())
    assert shown() == overdue
    assert "category=dispute" in page.url and "overdue=true" in page.url
    # A time window (Beijing dates, the last day included).
    _choose(page, "#wangge-filter-overdue", "")
    page.evaluate("document.documentElement.removeAttribute('data-wangge-loaded')")
    page.fill("#wangge-filter-since", "2024-01-01")
    page.fill("#wangge-filter-until", "2024-06-30")
    page.locator("#wangge-filter-until").dispatch_event("change")
    wait_loaded(page)
    window = incident_ids(reported_engine, "village_code = :v AND state <> 'closed' AND category = 'dispute' "
                          "AND occurred_at >= '2024-01-01T00:00+08:00' AND occurred_at < '2024-07-01T00:00+08:00'",
                          v=village)
    assert shown() == window
    page.screenshot(path=screenshot_path("incident_map_filters"))
    checker.assert_clean()
    # The URL keeps the filters: opened again, the page shows the same set with the same controls. (Tiles
    # still in flight are aborted by the reload itself: the checker keeps those apart from failures.)
    page.reload(wait_until="networkidle")
    wait_loaded(page)
    show_points(page)
    assert shown() == window
    assert page.locator("#wangge-filter-since").input_value() == "2024-01-01"
    assert page.locator("#wangge-filter-until").input_value() == "2024-06-30"
    checker.assert_clean()


def _aggregate_sum(page) -> tuple[int, int, bool]:
    """(the sum of the counts drawn, how many count circles, whether the town's grids are all in view)."""
    return page.evaluate(
        "() => { const a = window.wanggeIncidents.aggregates();"
        " const shown = document.querySelectorAll('.wangge-aggregate').length;"
        " return [a.reduce((s, x) => s + x.count, 0), shown,"
        " window.wanggeGridOutlines.getLayers().every(l => window.wanggeMap.getBounds().intersects(l.getBounds()))]; }")


@pytest.mark.parametrize(("role", "phone"), [("command_center", False), ("grid_staff", True)])
def test_at_a_low_zoom_the_counts_add_up_to_the_sql_count(open_as, reported_engine, accounts, role, phone):
    page, checker, status = open_loaded(open_as, role, PATH, phone=phone)
    assert status == 200
    set_zoom(page, 11)
    total, circles, _ = _aggregate_sum(page)
    assert page.evaluate("window.wanggeMap.getZoom()") == 11
    if role == "grid_staff":
        expected = len(incident_ids(reported_engine, f"group_code = ANY(:g) AND {OPEN}",
                                    g=list(accounts[role]["scope_codes"])))
    else:
        expected = len(incident_ids(reported_engine, OPEN))
    assert expected > 0
    assert total == expected
    # Drawn on the page as count circles, one text each, no single point at this zoom.
    assert circles == len(page.evaluate("() => window.wanggeIncidents.aggregates()"))
    drawn = page.locator(".wangge-aggregate").all_inner_texts()
    assert sum(int(t) for t in drawn) == expected
    assert page.evaluate(IDS_JS) == []
    assert page.locator("#wangge-zoom-note").count() == 1  # in the legend (folded on a phone)
    # Every tile was answered (200 or 204), none 4xx/5xx (the checker records those as failures).
    assert tile_requests(checker)
    page.screenshot(path=screenshot_path(f"incident_map_counts_{'phone' if phone else 'desktop'}"))
    checker.assert_clean()


def test_on_a_phone_the_controls_stay_usable(open_as, reported_engine, codes):
    page, checker, status = open_loaded(open_as, "grid_staff", PATH, phone=True)
    assert status == 200
    show_points(page)
    assert set(page.evaluate(IDS_JS)) == incident_ids(reported_engine, f"group_code = :g AND {OPEN}",
                                                      g=codes["own"])
    # The legend and the filter panel fold to a line; the zoom buttons stay clear of the top bar.
    zoom = page.locator(".leaflet-control-zoom").bounding_box()
    bar = page.locator("#wangge-title").bounding_box()
    assert zoom["y"] >= bar["y"] + bar["height"]
    legend = page.locator("#wangge-legend").bounding_box()
    assert legend["width"] * legend["height"] < 0.1 * 390 * 844
    page.screenshot(path=screenshot_path("incident_map_phone"))
    checker.assert_clean()


def test_a_crowded_view_is_never_cut(reported_db_url, accounts, reported_engine, site, codes):
    """With a page cap of 10 features the map still shows every incident of the view: tiles have no cap."""
    from api.main import create_app

    village = codes["village"]
    expected = incident_ids(reported_engine, f"village_code = :v AND {OPEN}", v=village)
    assert len(expected) > 10
    app = create_app(settings_for(reported_db_url, max_features_per_page=10))
    path = f"{PATH}?grid_code={village}"
    with serve_app_in_thread(app) as base, opened((base, site[1]), accounts, "admin", path) as (page, checker, status):
        assert status == 200
        # Opened afresh: the landing page after login (the grid map) has its own tiles aborted by leaving it.
        checker.failed_requests.clear()
        page.goto(base + path, wait_until="networkidle")
        wait_loaded(page)
        show_points(page)
        assert set(page.evaluate(IDS_JS)) == expected
        assert page.locator("#wangge-truncated-note").count() == 0
        checker.assert_clean()


def test_the_page_is_the_same_size_with_a_thousand_more_incidents(test_db_url, accounts, engine):
    with database_copy(test_db_url, "incsize") as url, make_client(url, "admin") as client:
        before = client.get(PATH)
        assert before.status_code == 200
        with engine.connect() as c:
            lon, lat = c.execute(text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM grid "
                "WHERE level = 4 AND valid_to IS NULL ORDER BY code LIMIT 1) s")).one()
        rows = ["category,description,occurred_at,lon,lat"] + [
            f"environment,垃圾堆放{i},2026-11-{1 + i % 28:02d} 09:00,{lon + (i % 40) * 1e-5},{lat}"
            for i in range(1000)]
        imported = client.post("/incidents/import", files={
            "file": ("more.csv", "\n".join(rows).encode(), "text/csv")})
        assert imported.status_code == 200, imported.text[:300]
        assert client.get("/incidents", params={"limit": 1}).json()["total"] >= 6000
        after = client.get(PATH)
    assert after.status_code == 200
    assert len(after.content) == len(before.content)
    assert len(after.content) < 40_000


# --- Through the API client (no browser) ---


def test_planner_is_refused_with_a_chinese_page(clients):
    response = clients["planner"].get(PATH)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
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
    assert response.headers["content-type"].startswith("text/html")
    listed = clients["command_center"].get("/incidents", params=params)
    if listed.status_code == 422:  # the list (the page's data) names the same field
        assert ["query", field] in [e["loc"] for e in listed.json()["errors"]]


def test_unknown_grid_is_not_found(clients):
    assert clients["admin"].get(PATH, params={"grid_code": "411324999999999"}).status_code == 404


def test_masked_reads_write_no_personal_read(reported_db_url, reported_engine, accounts, codes):
    reason = f"incident map masked test {uuid.uuid4().hex}"
    with make_client(reported_db_url, "command_center") as client:
        response = client.get("/incidents", params={"grid_code": codes["village"], "reason": reason,
                                                    "format": "geojson", "open": "true"})
    assert response.status_code == 200 and response.json()["features"]
    with reported_engine.connect() as c:
        n = c.execute(
            text("SELECT count(*) FROM audit_log WHERE actor = :actor AND reason = :reason"),
            {"actor": accounts["command_center"]["username"], "reason": reason},
        ).scalar_one()
    assert n == 0


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
