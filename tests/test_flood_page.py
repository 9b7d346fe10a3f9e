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

from tests.conftest import database_copy, make_client

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
    em = api["command_center"].post("/emergencies", json={"title": "汛情", "reason": "演练",
                                                           "extent_id": night["id"]}).json()
    try:
        for role in ("emergency", "command_center"):
            body = api[role].get("/flood/households", params=params).json()
            assert len(body["features"]) == len(admin["features"])
            assert all(f["properties"]["head_name"] == heads[f["id"]] for f in body["features"])
        audit = api["admin"].get("/audit", params={"action": "read_personal",
                                                   "actor": accounts["emergency"]["username"]}).json()["items"]
        assert audit and set(map(int, audit[-1]["resource_ids"])) == set(heads)
    finally:
        api["command_center"].post(f"/emergencies/{em['id']}/close", json={"reason": "演练结束"})
