"""The flood emergency page (/maps/flood) and the GeoJSON layers it fetches by view."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import shapely
from shapely.geometry import box, shape
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import audit_rows_from_now, database_copy, make_client

MASKED_NAME = re.compile(r"^[\u4e00-\u9fff]{1,2}\*+$")
PERSONAL = ("head_name", "phone", "address", "members", "id_number", "name_of_head")


@pytest.fixture(scope="module")
def db(test_db_url: Any) -> Iterator[Any]:
    """A private copy: the tests declare emergencies and draw extents."""
    with database_copy(test_db_url, "flood_page") as url:
        yield url


def sql(url: Any, statement: str, **params: Any) -> list[Any]:
    eng = create_engine(url, poolclass=NullPool)
    try:
        with eng.connect() as c:
            return list(c.execute(text(statement), params).all())
    finally:
        eng.dispose()


@pytest.fixture(scope="module")
def api(db: Any, accounts: dict[str, Any]) -> Iterator[dict[str, Any]]:
    roles = ("admin", "command_center", "emergency", "planner", "grid_staff", "supervisor")
    clients = {role: make_client(db, role) for role in roles}
    for c in clients.values():
        c.__enter__()
    try:
        yield clients
    finally:
        for c in clients.values():
            c.__exit__(None, None, None)


@pytest.fixture(scope="module")
def night(db: Any) -> dict[str, Any]:
    """The 2023-09-23 scenario's stored extent (the 2 m fluvial stage) and its bounds."""
    (eid, x0, y0, x1, y1), = sql(db, "SELECT id, ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) "
                                     "FROM flood_extent WHERE source = 'model' AND stage_m = 2 AND mode = 'fluvial'")
    return {"id": eid, "bbox": (x0, y0, x1, y1)}


def _bbox(b: tuple[float, ...]) -> str:
    return ",".join(f"{v:.6f}" for v in b)


# --- the layers ---------------------------------------------------------------------------------


def test_water_comes_by_depth_class_and_by_view(api: dict[str, Any], db: Any, night: dict[str, Any]) -> None:
    r = api["emergency"].get("/flood/map/water", params={"scenario": "2023-09-23", "zoom": 16})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/geo+json")
    fc = r.json()
    stored = sql(db, "SELECT depth_class, ST_Area(geom::geography) FROM flood_extent_class WHERE extent_id = :e",
                 e=night["id"])
    assert sorted(f["properties"]["depth_class"] for f in fc["features"]) == sorted(c for c, _ in stored)
    assert fc["properties"]["extent_id"] == night["id"]
    # Simplified for the zoom, the water still covers (almost exactly) the stored classes.
    union = shapely.union_all([shape(f["geometry"]) for f in fc["features"]])
    whole = shapely.from_wkt(sql(db, "SELECT ST_AsText(geom) FROM flood_extent WHERE id = :e", e=night["id"])[0][0])
    assert shapely.symmetric_difference(union, whole).area < 0.02 * whole.area

    # A view of the western half: nothing outside it, less than the whole.
    x0, y0, x1, y1 = night["bbox"]
    half = (x0, y0, (x0 + x1) / 2, y1)
    part = api["emergency"].get("/flood/map/water", params={"extent": night["id"], "bbox": _bbox(half)}).json()
    clipped = shapely.union_all([shape(f["geometry"]) for f in part["features"]])
    assert box(*half).buffer(1e-6).contains(clipped)
    assert 0 < clipped.area < union.area
    # A coarse zoom sends fewer vertices.
    coarse = api["emergency"].get("/flood/map/water", params={"extent": night["id"], "zoom": 11}).json()
    count = sum(shapely.get_num_coordinates(shape(f["geometry"])) for f in coarse["features"])
    assert count < sum(shapely.get_num_coordinates(shape(f["geometry"])) for f in fc["features"])


def test_a_drawn_extent_is_water_without_depths(api: dict[str, Any], night: dict[str, Any]) -> None:
    x0, y0, x1, y1 = night["bbox"]
    square = shapely.geometry.mapping(box(x0, y0, x0 + (x1 - x0) / 3, y0 + (y1 - y0) / 3))
    drawn = api["command_center"].post("/flood/extents/drawn", json={"name": "巡查圈定", "geometry": square}).json()
    fc = api["command_center"].get("/flood/map/water", params={"extent": drawn["id"]}).json()
    assert [f["properties"]["depth_class"] for f in fc["features"]] == [None]
    assert shape(fc["features"][0]["geometry"]).hausdorff_distance(shape(square)) < 2e-6  # 6 decimals


def test_shelters_show_the_room_the_extent_leaves(api: dict[str, Any], db: Any, night: dict[str, Any]) -> None:
    fc = api["emergency"].get("/flood/map/shelters", params={"scenario": "2023-09-23"}).json()
    shelters = {r[0]: r[1] for r in sql(db, "SELECT id, capacity FROM shelter")}
    assert {f["id"] for f in fc["features"]} == set(shelters)
    placed = dict(sql(db, "SELECT (row->>'shelter_id')::bigint, sum((row->>'residents')::int) "
                          "FROM flood_answer_household WHERE extent_id = :e AND buffer_m = 0 "
                          "AND row->>'shelter_id' IS NOT NULL GROUP BY 1", e=night["id"]))
    assert placed, "the flood night places households in shelters"
    for f in fc["features"]:
        p = f["properties"]
        assert p["capacity"] == shelters[p["id"]]
        assert p["assigned"] == placed.get(p["id"], 0)
        assert p["remaining"] == p["capacity"] - p["assigned"]
    flooded = sql(db, "SELECT s.id FROM shelter s, flood_extent e WHERE e.id = :e AND ST_Intersects(s.geom, e.geom)",
                  e=night["id"])
    assert {f["id"] for f in fc["features"] if f["properties"]["dry"] is False} == {r[0] for r in flooded}
    # Without an extent: capacity only.
    plain = api["planner"].get("/flood/map/shelters").json()
    assert all(f["properties"]["remaining"] is None for f in plain["features"])


def test_assignment_lines_follow_the_household_rule(api: dict[str, Any], db: Any, night: dict[str, Any],
                                                    accounts: dict[str, Any]) -> None:
    expected = {r[0]: r[1] for r in sql(
        db, "SELECT household_id, (row->>'shelter_id')::bigint FROM flood_answer_household "
            "WHERE extent_id = :e AND buffer_m = 0 AND row->>'shelter_id' IS NOT NULL", e=night["id"])}
    fc = api["command_center"].get("/flood/map/assignments", params={"scenario": "2023-09-23"}).json()
    got = {f["properties"]["household_id"]: f["properties"]["shelter_id"] for f in fc["features"]}
    assert got == expected and len(got) > 10
    for f in fc["features"]:
        assert not set(f["properties"]) & set(PERSONAL)
        assert f["geometry"]["type"] == "LineString" and len(f["geometry"]["coordinates"]) == 2
    ranks = [f["properties"]["priority_rank"] for f in fc["features"]]
    assert ranks == sorted(ranks)

    # The emergency team: nothing without an active emergency.
    em = api["emergency"].get("/flood/map/assignments", params={"scenario": "2023-09-23"}).json()
    assert em["features"] == [] and em["properties"]["households"] == 0
    # Grid staff: only the households of their own grid.
    scope = accounts["grid_staff"]["scope_codes"]
    own = {r[0] for r in sql(db, "SELECT a.household_id FROM flood_answer_household a JOIN household h "
                                 "ON h.id = a.household_id WHERE a.extent_id = :e AND a.buffer_m = 0 AND EXISTS "
                                 "(SELECT 1 FROM grid g WHERE g.valid_to IS NULL AND g.code = ANY(:s) "
                                 "AND ST_Intersects(g.geom, h.geom))", e=night["id"], s=scope)}
    gs = api["grid_staff"].get("/flood/map/assignments", params={"scenario": "2023-09-23"}).json()
    assert {f["properties"]["household_id"] for f in gs["features"]} <= own
    assert gs["properties"]["households"] == len(own)
    # The planner sees no household.
    assert api["planner"].get("/flood/map/assignments", params={"scenario": "2023-09-23"}).status_code == 403


def test_roads_rivers_and_place_names_in_view(api: dict[str, Any], db: Any, night: dict[str, Any]) -> None:
    fc = api["emergency"].get("/flood/map/network", params={"zoom": 13}).json()
    kinds = {f["properties"]["kind"] for f in fc["features"]}
    assert kinds == {"road", "river"}
    roads, rivers = sql(db, "SELECT (SELECT count(*) FROM road), (SELECT count(*) FROM river)")[0]
    assert sum(f["properties"]["kind"] == "road" for f in fc["features"]) == roads
    assert sum(f["properties"]["kind"] == "river" for f in fc["features"]) == rivers
    view = night["bbox"]
    part = api["emergency"].get("/flood/map/network", params={"bbox": _bbox(view), "zoom": 15}).json()
    assert 0 < len(part["features"]) < len(fc["features"]) or roads + rivers <= 2
    for f in part["features"]:
        assert box(*view).buffer(1e-6).contains(shape(f["geometry"]))

    places = api["emergency"].get("/flood/map/places", params={"bbox": _bbox(view)}).json()
    names = {f["properties"]["name"] for f in places["features"] if f["properties"]["kind"] == "village"}
    assert {"岁坡村", "小岗村"} <= names
    natural = sql(db, "SELECT count(*) FROM natural_village WHERE geom && ST_MakeEnvelope(:a, :b, :c, :d, 4326)",
                  a=view[0], b=view[1], c=view[2], d=view[3])[0][0]
    assert sum(f["properties"]["kind"] == "natural_village" for f in places["features"]) == natural > 0


def test_layer_refusals_name_the_field(api: dict[str, Any]) -> None:
    def locs(r: Any) -> list[Any]:
        assert r.status_code == 422, r.text
        return [e["loc"] for e in r.json()["errors"]]

    assert locs(api["admin"].get("/flood/map/water")) == [["query", "extent"]]
    assert locs(api["admin"].get("/flood/map/water", params={"scenario": "2023-09-23", "bbox": "1,2,3"})) == [
        ["query", "bbox"]]
    assert locs(api["admin"].get("/flood/map/network", params={"zoom": 40})) == [["query", "zoom"]]
    assert locs(api["admin"].get("/flood/map/places", params={"bbox": "a,b,c,d"})) == [["query", "bbox"]]
    assert api["admin"].get("/flood/map/water", params={"scenario": "1900-01-01"}).status_code == 404
    for role in ("grid_staff", "planner"):
        assert api[role].get("/flood/map/water", params={"scenario": "2023-09-23"}).status_code == 403
        assert api[role].get("/flood/map/places").status_code == 403


def test_the_pages_household_rows_are_masked_per_role(api: dict[str, Any], db: Any, night: dict[str, Any],
                                                      accounts: dict[str, Any]) -> None:
    """The list and points the page fetches (/flood/households, GeoJSON): the household rule."""
    params = {"extent": night["id"], "format": "geojson", "limit": 500}
    cc = api["command_center"].get("/flood/households", params=params).json()
    assert cc["features"] and all(f["properties"]["personal_fields"] == "masked" for f in cc["features"])
    assert all(MASKED_NAME.match(f["properties"]["head_name"]) for f in cc["features"])
    admin = api["admin"].get("/flood/households", params=params).json()
    assert all(f["properties"]["personal_fields"] == "shown" for f in admin["features"])
    heads = dict(sql(db, "SELECT id, head_name FROM household WHERE id = ANY(:i)",
                     i=[f["id"] for f in admin["features"]]))
    assert all(f["properties"]["head_name"] == heads[f["id"]] for f in admin["features"])
    assert api["emergency"].get("/flood/households", params=params).json()["features"] == []
    assert api["planner"].get("/flood/households", params=params).status_code == 403
    # Inside a declared emergency, the emergency team and the command center see the names.
    since = audit_rows_from_now(db)
    em = api["command_center"].post("/emergencies", json={"title": "汛情", "reason": "演练",
                                                           "extent_id": night["id"]}).json()
    try:
        for role in ("emergency", "command_center"):
            body = api[role].get("/flood/households", params=params).json()
            assert len(body["features"]) == len(admin["features"])
            assert all(f["properties"]["head_name"] == heads[f["id"]] for f in body["features"])
        reads = {"action": "read_personal", "actor": accounts["emergency"]["username"], **since}
        audit = api["admin"].get("/audit", params=reads).json()["items"]
        assert audit and set(map(int, audit[-1]["resource_ids"])) == set(heads)
    finally:
        api["command_center"].post(f"/emergencies/{em['id']}/close", json={"reason": "演练结束"})


def test_the_list_sorts_in_sql_and_in_memory_alike(api: dict[str, Any], night: dict[str, Any]) -> None:
    def page(sort: str, buffer_m: float) -> list[dict[str, Any]]:
        r = api["command_center"].get("/flood/households", params={"extent": night["id"], "sort": sort,
                                                                   "buffer_m": buffer_m, "limit": 1000})
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    keys = {
        "depth": lambda h: (h["depth_m"] is None, -(h["depth_m"] or 0)),
        "vulnerable": lambda h: -h["vulnerable"],
        "residents": lambda h: -h["residents"],
        "distance": lambda h: (h["shelter_distance_m"] is None, h["shelter_distance_m"] or 0),
        "household_no": lambda h: h["household_no"].encode(),
    }
    # Stored (buffer 0) and computed on the read (buffer 20 m, not stored): the same orders.
    for buffer_m in (0.0, 20.0):
        rescue = page("rank", buffer_m)
        assert [h["priority_rank"] for h in rescue] == sorted(h["priority_rank"] for h in rescue)
        for sort, key in keys.items():
            got = page(sort, buffer_m)
            assert [h["id"] for h in got] == [h["id"] for h in sorted(rescue, key=key)], (sort, buffer_m)
    r = api["command_center"].get("/flood/households", params={"extent": night["id"], "sort": "name"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "sort"]


# --- the page in a browser ----------------------------------------------------------------------

PAGE = "/maps/flood"


@pytest.fixture(scope="module")
def site(db: Any, accounts: dict[str, Any]) -> Iterator[Any]:
    """The app on this module's private copy (the page declares emergencies and draws extents)."""
    from tests.conftest import live_site

    with live_site(db) as served:
        yield served


def _open(open_as: Any, role: str, phone: bool) -> tuple[Any, Any]:
    page, checker, status = open_as(role, PAGE, phone=phone)
    assert status == 200
    page.wait_for_function("document.documentElement.dataset.floodReady === '1'")
    page.wait_for_function("document.querySelectorAll('#flood-rows tr').length > 0")
    return page, checker


def _list_state(page: Any) -> str:
    return str(page.evaluate("document.documentElement.dataset.floodList || ''"))


VIEWS = [False, True]
VIEW_IDS = ["desktop", "phone"]


@pytest.mark.browser
@pytest.mark.parametrize("phone", VIEWS, ids=VIEW_IDS)
def test_declare_and_close_an_emergency_by_choosing_a_scenario(open_as: Any, db: Any, night: dict[str, Any],
                                                               accounts: dict[str, Any], phone: bool) -> None:
    from tests.conftest import screenshot_path

    page, checker = _open(open_as, "command_center", phone)
    page.select_option("#flood-extent", "scenario:2023-09-23")
    page.wait_for_function("(document.documentElement.dataset.floodList || '').startsWith('scenario:2023-09-23|')")
    total = sql(db, "SELECT count(*) FROM flood_answer_household WHERE extent_id = :e AND buffer_m = 0",
                e=night["id"])[0][0]
    assert _list_state(page) == f"scenario:2023-09-23|{total}|0"
    # Before the emergency the command center sees the names masked.
    heads = page.locator("#flood-rows tr td:nth-child(3)").all_text_contents()
    assert heads and all(MASKED_NAME.match(h) for h in heads)
    assert page.is_visible("#flood-mask-note")
    # The water, the households, the shelters, routes and names are on the map (all fetched by URL).
    counts = page.evaluate("""() => { const f = window.wanggeFlood; return {
        water: f.water.getLayers().length, households: f.households.getLayers().length,
        shelters: f.shelters.getLayers().length, routes: f.routes.getLayers().length,
        labels: f.labels.getLayers().length, network: f.network.getLayers().length}; }""")
    assert counts["households"] == total and counts["water"] >= 1 and counts["shelters"] > 0
    assert counts["routes"] > 0 and counts["labels"] > 0 and counts["network"] > 0

    before = sql(db, "SELECT coalesce(max(id), 0) FROM emergency")[0][0]
    page.fill("#flood-em-reason", "暴雨预警，河水上涨")
    dialogs: list[str] = []
    page.once("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    page.click("#flood-declare")
    page.wait_for_selector("#flood-emergencies li.flood-emergency")
    assert "宣布应急" in dialogs[0]
    (eid, title, reason, who, same, closed), = sql(
        db, "SELECT e.id, e.title, e.reason, u.username, ST_Equals(e.extent, f.geom), e.closed_at FROM emergency e "
            "JOIN app_user u ON u.id = e.declared_by, flood_extent f WHERE e.id > :b AND f.id = :f",
        b=before, f=night["id"])
    assert title == "防汛应急：2023年9月23日夜 暴雨内涝（重现）" and reason == "暴雨预警，河水上涨"
    assert who == accounts["command_center"]["username"] and same and closed is None
    assert page.text_content("#flood-emergencies").count(title) == 1
    # Inside the emergency the names are shown.
    page.wait_for_function("!Array.from(document.querySelectorAll('#flood-rows tr td:nth-child(3)'))"
                           ".some(td => td.textContent.includes('*'))")
    assert page.is_hidden("#flood-mask-note")
    page.screenshot(path=screenshot_path(f"flood-emergency-{'phone' if phone else 'desktop'}"))

    page.once("dialog", lambda d: (dialogs.append(d.message), d.accept("水已退去")))
    page.click(f"#flood-emergencies button[data-emergency='{eid}']")
    page.wait_for_selector("#flood-emergencies li.flood-emergency", state="detached")
    assert "结束应急" in dialogs[1]
    (closed, close_reason), = sql(db, "SELECT closed_at, close_reason FROM emergency WHERE id = :e", e=eid)
    assert closed is not None and close_reason == "水已退去"
    checker.assert_clean()


def _map_point(page: Any, lon: float, lat: float) -> tuple[float, float]:
    x, y = page.evaluate("([lat, lon]) => { const p = Wangge.map.latLngToContainerPoint([lat, lon]); "
                         "const r = Wangge.map.getContainer().getBoundingClientRect(); "
                         "return [r.left + p.x, r.top + p.y]; }", [lat, lon])
    return float(x), float(y)


@pytest.mark.browser
@pytest.mark.parametrize("phone", VIEWS, ids=VIEW_IDS)
def test_draw_a_flood_polygon_and_see_the_households_inside(open_as: Any, db: Any, phone: bool) -> None:
    from tests.conftest import screenshot_path

    page, checker = _open(open_as, "command_center", phone)
    # A small square around houses in 小岗村 (a few dozen households).
    (lon, lat), = sql(db, "SELECT ST_X(h.geom), ST_Y(h.geom) FROM household h JOIN grid g ON g.valid_to IS NULL "
                          "AND g.level = 3 AND g.name = '小岗村' AND ST_Intersects(g.geom, h.geom) "
                          "ORDER BY h.id LIMIT 1")
    page.evaluate("([lat, lon]) => Wangge.map.setView([lat, lon], 17, {animate: false})", [lat, lon])
    page.wait_for_timeout(300)
    size = page.evaluate("(() => { const s = Wangge.map.getSize(); return [s.x, s.y]; })()")
    half = min(size) * 0.3
    cx, cy = _map_point(page, lon, lat)
    corners = [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    page.click(".leaflet-draw-draw-polygon")
    for x, y in corners:
        page.mouse.click(x, y)
        page.wait_for_timeout(150)
    before = sql(db, "SELECT coalesce(max(id), 0) FROM flood_extent")[0][0]
    page.mouse.click(*corners[0])  # back on the first point: the polygon is done
    page.wait_for_function("document.getElementById('wangge-banner').textContent.includes('已保存手绘范围')")
    (eid, inside), = sql(db, "SELECT e.id, (SELECT count(*) FROM household h WHERE ST_Intersects(e.geom, h.geom)) "
                             "FROM flood_extent e WHERE e.id > :b AND e.source = 'drawn'", b=before)
    assert inside > 0
    page.wait_for_function(f"(document.documentElement.dataset.floodList || '').startsWith('extent:{eid}|')")
    assert _list_state(page) == f"extent:{eid}|{inside}|0"
    assert page.locator("#flood-rows tr").count() == min(inside, 20)
    assert f"共 {inside} 户" in page.text_content("#flood-totals")
    assert page.evaluate("window.wanggeFlood.households.getLayers().length") == inside
    # The drawn polygon is the square clicked (within a pixel or two).
    (x0, y0, x1, y1), = sql(db, "SELECT ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) "
                                "FROM flood_extent WHERE id = :e", e=eid)
    tl = page.evaluate("([x, y]) => { const l = Wangge.map.containerPointToLatLng([x, y]); return [l.lng, l.lat]; }",
                       [size[0] / 2 - half, size[1] / 2 - half])
    assert abs(tl[0] - x0) < 2e-5 * 4 and abs(tl[1] - y1) < 2e-5 * 4

    # Clicking a row flies the map to that household and opens it.
    first = page.locator("#flood-rows tr").first
    hid = int(first.get_attribute("data-household"))
    (hlon, hlat, number), = sql(db, "SELECT ST_X(geom), ST_Y(geom), household_no FROM household WHERE id = :h", h=hid)
    page.evaluate("Wangge.map.setView([0.5 * (Wangge.map.getBounds().getSouth() + Wangge.map.getBounds().getNorth())"
                  " + 0.02, Wangge.map.getCenter().lng], 13, {animate: false})")
    assert not page.evaluate("([lat, lon]) => Wangge.map.getBounds().pad(-0.2).contains([lat, lon]) "
                             "&& Wangge.map.getZoom() >= 17", [hlat, hlon])
    first.click()
    page.wait_for_selector(".leaflet-popup-content")
    # There (the popup may pan the map a little to fit on the screen), close and opened.
    assert page.evaluate("([lat, lon]) => Wangge.map.getBounds().contains([lat, lon]) && Wangge.map.getZoom() >= 17",
                         [hlat, hlon])
    assert number in page.text_content(".leaflet-popup-content")
    page.screenshot(path=screenshot_path(f"flood-drawn-{'phone' if phone else 'desktop'}"))
    checker.assert_clean()


@pytest.mark.browser
def test_upload_an_extent_file_and_see_its_households(open_as: Any, db: Any, tmp_path: Any) -> None:
    import json

    page, checker = _open(open_as, "command_center", False)
    (geojson,), = sql(db, "SELECT ST_AsGeoJSON(ST_Buffer(ST_PointOnSurface(geom)::geography, 400)::geometry) "
                          "FROM grid WHERE level = 3 AND valid_to IS NULL AND name = '岁坡村'")
    survey = tmp_path / "无人机航测.geojson"
    survey.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": json.loads(geojson)}]}), encoding="utf-8")
    before = sql(db, "SELECT coalesce(max(id), 0) FROM flood_extent")[0][0]
    page.set_input_files("#flood-file", str(survey))
    assert page.text_content("#flood-file-name") == "无人机航测.geojson"
    page.click("#flood-upload")
    page.wait_for_function("document.getElementById('wangge-banner').textContent.includes('已保存上传范围')")
    (eid, name, inside), = sql(db, "SELECT e.id, e.name, (SELECT count(*) FROM household h "
                                   "WHERE ST_Intersects(e.geom, h.geom)) FROM flood_extent e "
                                   "WHERE e.id > :b AND e.source = 'upload'", b=before)
    assert name == "无人机航测"
    page.wait_for_function(f"(document.documentElement.dataset.floodList || '').startsWith('extent:{eid}|')")
    assert _list_state(page) == f"extent:{eid}|{inside}|0"
    assert page.input_value("#flood-extent") == f"extent:{eid}"
    checker.assert_clean()


@pytest.mark.browser
def test_print_the_mingbaika_of_a_selected_grid(open_as: Any, db: Any, night: dict[str, Any]) -> None:
    from pypdf import PdfReader

    from tests.conftest import screenshot_path

    page, checker = _open(open_as, "command_center", False)
    page.select_option("#flood-extent", "scenario:2023-09-23")
    page.wait_for_function("(document.documentElement.dataset.floodList || '').startsWith('scenario:2023-09-23|')")
    (code, name), = sql(db, "SELECT code, name FROM grid WHERE level = 3 AND valid_to IS NULL AND name = '岁坡村'")
    # The list: sorted by a column, filtered by a grid (oracle: the stored answer).
    (deepest, in_village), = sql(db, "SELECT max((row->>'depth_m')::float), count(*) FILTER (WHERE village_code = :c) "
                                     "FROM flood_answer_household WHERE extent_id = :e AND buffer_m = 0",
                                 c=code, e=night["id"])
    page.click("#flood-table th button[data-sort='depth']")
    page.wait_for_function("document.querySelector('#flood-table th button.active')?.dataset.sort === 'depth'")
    assert page.text_content("#flood-rows tr:first-child td:nth-child(6)") == f"{deepest:.2f} 米"
    page.select_option("#flood-grid", code)
    page.wait_for_function(f"(document.documentElement.dataset.floodList || '').endsWith('|{in_village}|0')")
    assert page.locator("#flood-rows tr").count() == min(in_village, 20)
    assert set(page.locator("#flood-rows tr td:nth-child(7)").all_text_contents()) <= {
        n for (n,) in sql(db, "SELECT name FROM grid WHERE valid_to IS NULL AND level = 4 AND code LIKE :p",
                          p=code[:12] + "%")}
    box_ = page.locator(f"#flood-print-grids input[value='{code}']")
    box_.check()
    with page.expect_download() as download:
        page.click("#flood-print-button")
    path = download.value.path()
    text = "".join(p.extract_text() for p in PdfReader(path).pages)
    assert name in text
    # The link the page made answers the PDF (200, application/pdf), for the grid chosen only.
    href = page.locator(".flood-print-link").first.get_attribute("href")
    assert f"grid_code={code}" in href and "format=pdf" in href
    r = page.request.get(page.locator(".flood-print-link").first.evaluate("a => a.href"))
    assert r.status == 200 and r.headers["content-type"] == "application/pdf"
    other = sql(db, "SELECT name FROM grid WHERE level = 3 AND valid_to IS NULL AND name IN ('小岗村', '周湾村')")
    assert other and not any(o in text for (o,) in other)
    page.screenshot(path=screenshot_path("flood-print-desktop"))
    checker.assert_clean()


@pytest.mark.browser
@pytest.mark.parametrize("role", ["planner", "grid_staff"])
def test_a_role_without_flood_permission_gets_a_chinese_403_page(open_as: Any, role: str) -> None:
    page, checker, status = open_as(role, PAGE)
    assert status == 403
    assert "无权" in page.text_content("#wangge-error-page")
    assert page.locator("#flood-panel").count() == 0
    assert '"errors"' not in page.content()


@pytest.mark.browser
@pytest.mark.parametrize("phone", VIEWS, ids=VIEW_IDS)
def test_the_emergency_team_sees_no_household_without_an_emergency(open_as: Any, phone: bool) -> None:
    from tests.conftest import screenshot_path

    page, checker = _open(open_as, "emergency", phone)
    assert "宣布应急后" in page.text_content("#flood-rows")
    assert page.locator("#flood-declare").count() == 0
    assert page.evaluate("window.wanggeFlood.households.getLayers().length") == 0
    if phone:
        # The list sits below the map, which keeps its controls uncovered.
        map_box = page.locator(".folium-map").bounding_box()
        panel = page.locator("#flood-panel").bounding_box()
        assert panel["y"] >= map_box["y"] + map_box["height"] - 1
    page.screenshot(path=screenshot_path(f"flood-emergency-team-{'phone' if phone else 'desktop'}"))
    checker.assert_clean()
