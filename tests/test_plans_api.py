"""The /plans API through the real ASGI app as the planner: versions (ETag / If-Match -> 428, 409),
edits with live validation, the equivalency file round trip and the plan's boundaries."""

from __future__ import annotations

import csv
import io
import json

import pyogrio
import pytest
import shapely
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import make_client


@pytest.fixture(scope="module")
def db(test_db_url, accounts):
    from tests.conftest import database_copy

    with database_copy(test_db_url, "plans_api") as url:
        yield url


@pytest.fixture(scope="module")
def planner(db):
    with make_client(db, "planner") as c:
        yield c


@pytest.fixture(scope="module")
def sql(db):
    eng = create_engine(db, poolclass=NullPool)
    yield eng
    eng.dispose()


def pair(sql):
    """Two neighbouring group grids of one village."""
    with sql.connect() as c:
        return c.execute(text(
            "SELECT a.code, b.code FROM grid a JOIN grid b ON a.code < b.code AND a.parent_code = b.parent_code "
            "AND ST_Length(ST_Intersection(ST_Boundary(a.geom), ST_Boundary(b.geom))) > 0.001 "
            "WHERE a.level = 4 AND b.level = 4 AND a.valid_to IS NULL AND b.valid_to IS NULL "
            "ORDER BY a.code DESC LIMIT 1")).one()


def households_nearest(sql, a, b, n=2):
    """The household numbers of the `n` houses of grid `a` nearest grid `b`."""
    with sql.connect() as c:
        return c.execute(text(
            "SELECT h.household_no FROM household h JOIN grid g ON ST_Covers(g.geom, h.geom) WHERE g.code = :a "
            "AND g.valid_to IS NULL ORDER BY ST_Distance(h.geom, (SELECT geom FROM grid WHERE code = :b "
            "AND valid_to IS NULL)) LIMIT :n"), {"a": a, "b": b, "n": n}).scalars().all()


def new_plan(client, name="测试方案"):
    r = client.post("/plans", json={"name": name})
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == '"1"'
    return r.json()


def test_versions_if_match_and_conflicts(planner, sql):
    a, b = pair(sql)
    plan = new_plan(planner)
    edit = {"kind": "rename", "code": a, "name": "改名网格"}
    r = planner.post(f"/plans/{plan['id']}/edits", json=edit)
    assert r.status_code == 428 and r.headers["content-type"].startswith("application/problem+json")
    r = planner.post(f"/plans/{plan['id']}/edits", json=edit, headers={"If-Match": '"1"'})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"2"' and r.json()["plan"]["version"] == 2
    assert r.json()["report"] == {"code": a, "old_name": r.json()["report"]["old_name"], "name": "改名网格"}
    # A second planner working from version 1 is refused and told the current version.
    r = planner.post(f"/plans/{plan['id']}/edits", json={**edit, "name": "另一个名字"}, headers={"If-Match": "1"})
    assert r.status_code == 409
    assert r.json()["current_version"] == 2
    detail = planner.get(f"/plans/{plan['id']}")
    assert detail.headers["etag"] == '"2"'
    assert [f["properties"]["name"] for f in detail.json()["features"]] == ["改名网格"]
    r = planner.patch(f"/plans/{plan['id']}", json={"name": "新名"}, headers={"If-Match": "1"})
    assert r.status_code == 409
    r = planner.patch(f"/plans/{plan['id']}", json={"name": "新名"}, headers={"If-Match": "2"})
    assert r.status_code == 200 and r.json()["name"] == "新名" and r.json()["version"] == 3
    r = planner.post(f"/plans/{plan['id']}/discard", headers={"If-Match": "3"})
    assert r.status_code == 200 and r.json()["status"] == "discarded"
    assert plan["id"] in [p["id"] for p in planner.get("/plans", params={"status": "discarded"}).json()]
    r = planner.post(f"/plans/{plan['id']}/edits", json=edit, headers={"If-Match": "4"})
    assert r.status_code == 409   # only a draft changes


def test_split_by_a_drawn_line_shows_the_plan_unfinished_not_refused(planner, sql):
    a, _ = pair(sql)
    with sql.connect() as c:
        x0, y0, x1, y1 = c.execute(text("SELECT ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) FROM grid "
                                        "WHERE code = :c AND valid_to IS NULL"), {"c": a}).one()
    x = (x0 + x1) / 2
    plan = new_plan(planner)
    line = {"type": "LineString", "coordinates": [[x, y0 - 0.01], [x, y1 + 0.01]]}
    r = planner.post(f"/plans/{plan['id']}/edits", json={"kind": "split", "code": a, "line": line, "names": ["东片"]},
                     headers={"If-Match": "1"})
    assert r.status_code == 200, r.text
    body = r.json()
    new = body["report"]["created"][0]
    v = body["validation"]
    assert v["finished"] is False and v["state_zh"] == "未完成"
    kinds = {(p["type"], p["loc"][1]) for p in v["problems"]}
    assert ("no_leader", new) in kinds and ("no_members", new) in kinds
    assert all(isinstance(p["ctx"]["lon"], float) for p in v["problems"])
    assert planner.get(f"/plans/{plan['id']}/validation").json() == v
    # A line that crosses nothing: a 422 naming the line.
    far = {"type": "LineString", "coordinates": [[100.0, 20.0], [100.1, 20.1]]}
    r = planner.post(f"/plans/{plan['id']}/edits", json={"kind": "split", "code": a, "line": far},
                     headers={"If-Match": "2"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "line"]
    # Boundaries: GeoJSON and GeoPackage give the same grids.
    gj = planner.get(f"/plans/{plan['id']}/boundaries").json()
    assert sorted(f["id"] for f in gj["features"]) == sorted([a, new])
    names = {f["id"]: f["properties"]["name"] for f in gj["features"]}
    assert names[new] == "东片"
    r = planner.get(f"/plans/{plan['id']}/boundaries", params={"format": "gpkg"})
    assert r.status_code == 200
    frame = pyogrio.read_dataframe(io.BytesIO(r.content))
    assert sorted(frame["code"]) == sorted([a, new])
    total = sum(shapely.geometry.shape(f["geometry"]).area for f in gj["features"])
    assert abs(total - frame.geometry.area.sum()) < 1e-12


def test_equivalency_round_trip_and_a_bad_file_changes_nothing(planner, sql):
    a, b = pair(sql)
    moving = households_nearest(sql, a, b)
    plan = new_plan(planner)
    r = planner.post(f"/plans/{plan['id']}/edits",
                     json={"kind": "reassign", "unit_ids": moving[:1], "to_code": b}, headers={"If-Match": "1"})
    assert r.status_code == 200, r.text
    r = planner.get(f"/plans/{plan['id']}/equivalency.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == ["单元类型", "单元编号", "网格编码"]
    exported = {row[1].lstrip("'"): row[2].lstrip("'") for row in rows[1:]}
    assert exported[moving[0]] == b
    # Import into a fresh plan: the same households end up in b.
    other = new_plan(planner, "导入方案")
    body = "单元编号,网格编码\n" + f"{moving[0]},{b}\n{moving[1]},{b}\n"
    r = planner.post(f"/plans/{other['id']}/equivalency", files={"file": ("对照表.csv", body.encode("gbk"))},
                     headers={"If-Match": "1"})
    assert r.status_code == 200, r.text
    assert r.json()["report"]["units_moved"] == 2
    again = planner.get(f"/plans/{other['id']}/equivalency.csv").content.decode("utf-8-sig")
    got = {row[1].lstrip("'"): row[2].lstrip("'") for row in list(csv.reader(io.StringIO(again)))[1:]}
    assert got[moving[0]] == b and got[moving[1]] == b
    # A bad row: named by file, row and column; the plan stays at its version.
    bad = f"单元编号,网格编码\n{moving[0]},{a}\nno-such-户号,{a}\n{moving[1]},12345\n"
    r = planner.post(f"/plans/{other['id']}/equivalency", files={"file": ("bad.csv", bad.encode())},
                     headers={"If-Match": "2"})
    assert r.status_code == 422
    locs = [e["loc"] for e in r.json()["errors"]]
    assert ["file", "bad.csv", 4, "网格编码"] in locs
    r = planner.post(f"/plans/{other['id']}/equivalency",
                     files={"file": ("bad.csv", f"单元编号,网格编码\nno-such-户号,{a}\n".encode())},
                     headers={"If-Match": "2"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["file", "bad.csv", 2, "单元编号"]
    assert planner.get(f"/plans/{other['id']}").headers["etag"] == '"2"'


def test_create_through_the_api_takes_a_geojson_polygon(planner, sql):
    a, b = pair(sql)
    with sql.connect() as c:
        lon, lat = c.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(ST_Intersection(ST_Boundary(a.geom), "
            "ST_Boundary(b.geom))) p FROM grid a, grid b WHERE a.code = :a AND b.code = :b AND a.valid_to IS NULL "
            "AND b.valid_to IS NULL) s"), {"a": a, "b": b}).one()
    h = 0.001
    square = {"type": "Polygon", "coordinates": [[[lon - h, lat - h], [lon + h, lat - h], [lon + h, lat + h],
                                                  [lon - h, lat + h], [lon - h, lat - h]]]}
    plan = new_plan(planner)
    r = planner.post(f"/plans/{plan['id']}/edits", headers={"If-Match": "1"},
                     json={"kind": "create", "level": 4, "name": "新小区", "parent_code": a[:12] + "000",
                           "geometry": square})
    assert r.status_code == 200, r.text
    assert set(r.json()["report"]["taken_from"]) >= {a, b}
    r = planner.post(f"/plans/{plan['id']}/edits", headers={"If-Match": "2"},
                     json={"kind": "create", "level": 4, "name": "坏", "parent_code": a[:12] + "000",
                           "geometry": {"type": "Polygon", "coordinates": [[[lat, lon], [lat, lon + h], [lat + h, lon],
                                                                            [lat, lon]]]}})
    assert r.status_code == 422
    assert r.json()["errors"][0]["type"] == "swapped_lonlat"


def test_other_roles_are_refused(db):
    with make_client(db, "grid_staff") as staff:
        r = staff.post("/plans", json={"name": "x"})
        assert r.status_code == 403
    with make_client(db, "command_center") as cc:
        assert cc.get("/plans").status_code == 403


def test_a_plan_id_that_does_not_exist_is_404(planner):
    r = planner.get("/plans/987654")
    assert r.status_code == 404
    assert json.loads(r.text)["status"] == 404


def test_equivalency_file_with_natural_villages_and_grids(planner, sql):
    with sql.connect() as c:
        nv, home = c.execute(text(
            "SELECT h.natural_village_id, min(g.code) FROM household h JOIN grid g ON g.level = 4 "
            "AND g.valid_to IS NULL AND ST_Covers(g.geom, h.geom) WHERE h.natural_village_id IS NOT NULL "
            "GROUP BY 1 ORDER BY count(DISTINCT g.code), 1 LIMIT 1")).one()
        target = c.execute(text(
            "SELECT b.code FROM grid a JOIN grid b ON b.level = 4 AND b.valid_to IS NULL AND b.code <> a.code "
            "AND b.parent_code = a.parent_code AND ST_Intersects(a.geom, b.geom) WHERE a.code = :c "
            "AND a.valid_to IS NULL ORDER BY b.code LIMIT 1"), {"c": home}).scalar_one()
        small, other_village = c.execute(text(
            "SELECT a.code, b.parent_code FROM grid a JOIN grid b ON a.parent_code <> b.parent_code "
            "AND ST_Length(ST_Intersection(ST_Boundary(a.geom), ST_Boundary(b.geom))) > 0.001 "
            "WHERE a.level = 4 AND b.level = 4 AND a.valid_to IS NULL AND b.valid_to IS NULL "
            "AND a.code <> :home AND b.code <> :home ORDER BY a.code DESC LIMIT 1"), {"home": home}).one()
        members = set(c.execute(text("SELECT household_no FROM household WHERE natural_village_id = :n"),
                                {"n": nv}).scalars())
    plan = new_plan(planner, "自然村和网格")
    body = f"单元类型,单元编号,网格编码\n自然村,{nv},{target}\n网格,{small},{other_village}\n"
    r = planner.post(f"/plans/{plan['id']}/equivalency", files={"file": ("units.csv", body.encode())},
                     headers={"If-Match": "1"})
    assert r.status_code == 200, r.text
    report = r.json()["report"]
    assert report["units_moved"] == 2 and report["reparented"][0][:12] == other_village[:12]
    exported = planner.get(f"/plans/{plan['id']}/equivalency.csv").content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(exported)))
    got = {row[1].lstrip("'"): row[2].lstrip("'") for row in rows[1:]}
    assert {got.get(h) for h in members} == {target}
    bad = f"单元类型,单元编号,网格编码\n楼栋,1,{target}\n"
    r = planner.post(f"/plans/{plan['id']}/equivalency", files={"file": ("units.csv", bad.encode())},
                     headers={"If-Match": "2"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["file", "units.csv", 2, "单元类型"]


def test_impact_of_a_plan_names_who_moves_where(planner, sql):
    a, b = pair(sql)
    units = households_nearest(sql, a, b)
    with sql.connect() as c:
        residents = c.execute(text("SELECT sum(residents) FROM household WHERE household_no = ANY(:u)"),
                              {"u": units}).scalar_one()
    plan = new_plan(planner, "影响")
    r = planner.post(f"/plans/{plan['id']}/edits", headers={"If-Match": "1"},
                     json={"kind": "reassign", "unit_ids": units, "to_code": b})
    assert r.status_code == 200, r.text
    r = planner.get(f"/plans/{plan['id']}/impact", params={"target": 20, "tolerance": 0.5})
    assert r.status_code == 200, r.text
    moves = [m for m in r.json()["moves"] if m["from"] == a and m["to"] == b]
    assert moves and moves[0]["households"] == len(units) and moves[0]["residents"] == residents
    r = planner.get(f"/plans/{plan['id']}/impact.csv")
    assert r.status_code == 200
    header = next(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert "原网格编码" in header and "新网格编码" in header


def test_impact_of_a_plan_with_no_edits_is_empty_not_an_error(planner):
    """A fresh plan has no changes: its preview moves nothing (the fuzz found a 500 here)."""
    plan = new_plan(planner, "空方案")
    r = planner.get(f"/plans/{plan['id']}/impact", params={"target": 20, "tolerance": 0.2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["moves"] == [] and body["totals"] == {"households": 0, "residents": 0, "open_incidents": 0}
    r = planner.get(f"/plans/{plan['id']}/impact.csv")
    assert r.status_code == 200
    assert len(list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))) == 1   # the header alone
