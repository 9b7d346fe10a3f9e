"""Publishing plans through the API as the planner: a finished plan goes live (households counted by an
independent spatial query), an unfinished one is refused with its problems, two plans on one grid
conflict (409 naming the grid), a dated plan waits (and can be withdrawn), and undo restores the grids."""

from __future__ import annotations

import datetime as dt

import pytest
import shapely
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import make_client


@pytest.fixture(scope="module")
def db(test_db_url, accounts):
    from tests.conftest import database_copy

    with database_copy(test_db_url, "plans_publish") as url:
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


def pairs(sql):
    """Neighbouring group grids of one village, each pair disjoint from the others."""
    with sql.connect() as c:
        rows = c.execute(text(
            "SELECT a.code, b.code FROM grid a JOIN grid b ON a.code < b.code AND a.parent_code = b.parent_code "
            "AND ST_Length(ST_Intersection(ST_Boundary(a.geom), ST_Boundary(b.geom))) > 0.001 "
            "WHERE a.level = 4 AND b.level = 4 AND a.valid_to IS NULL AND b.valid_to IS NULL "
            "ORDER BY a.code")).all()
    used: set[str] = set()
    out = []
    for a, b in rows:
        if a not in used and b not in used:
            used |= {a, b}
            out.append((a, b))
    return out


def nearest_households(sql, a, b, n):
    """The households of grid a nearest the middle of the edge it shares with b."""
    with sql.connect() as c:
        return c.execute(text(
            "SELECT h.household_no FROM household h JOIN grid g ON ST_Covers(g.geom, h.geom) WHERE g.code = :a "
            "AND g.valid_to IS NULL ORDER BY ST_Distance(h.geom, (SELECT ST_PointOnSurface(ST_Intersection("
            "ST_Boundary(x.geom), ST_Boundary(y.geom))) FROM grid x, grid y WHERE x.code = :a AND y.code = :b "
            "AND x.valid_to IS NULL AND y.valid_to IS NULL)), h.household_no LIMIT :n"),
            {"a": a, "b": b, "n": n}).scalars().all()


def group_of(sql, household_no):
    """The current group grid of a household, by a spatial query of its own (not the household_grid view)."""
    with sql.connect() as c:
        return c.execute(text(
            "SELECT min(g.code) FROM grid g JOIN household h ON ST_Covers(g.geom, h.geom) "
            "WHERE h.household_no = :h AND g.level = 4 AND g.valid_to IS NULL"), {"h": household_no}).scalar_one()


def draft_reassign(planner, sql, a, b, name):
    """A finished draft painting one household of a (near the a|b edge) into b; a candidate whose cell
    would leave a grid in pieces is tried and discarded, as a planner would."""
    for unit in nearest_households(sql, a, b, 12):
        plan = planner.post("/plans", json={"name": name}).json()
        r = planner.post(f"/plans/{plan['id']}/edits", headers={"If-Match": "1"},
                         json={"kind": "reassign", "unit_ids": [unit], "to_code": b})
        assert r.status_code == 200, r.text
        if r.json()["validation"]["finished"]:
            return plan["id"], [unit]
        assert planner.post(f"/plans/{plan['id']}/discard", headers={"If-Match": "2"}).status_code == 200
    return None


def finished_reassign(planner, sql, pairs_from, name):
    """(a, b, plan id, units) of the first pair from `pairs_from` on that gives a finished draft."""
    for a, b in pairs(sql)[pairs_from:pairs_from + 6]:
        found = draft_reassign(planner, sql, a, b, name=name)
        if found is not None:
            return a, b, *found
    raise AssertionError("no pair of grids gives a clean one-household reassignment")


def test_publish_a_finished_plan_now_then_undo_it(planner, sql):
    with sql.connect() as c:
        before_all = {code: shapely.from_wkb(bytes(w)) for code, w in c.execute(text(
            "SELECT code, ST_AsBinary(geom) FROM grid WHERE level = 4 AND valid_to IS NULL"))}
        total = c.execute(text("SELECT count(*) FROM household")).scalar_one()
    a, b, plan_id, units = finished_reassign(planner, sql, 0, "重划")
    before = {a: before_all[a], b: before_all[b]}
    assert all(group_of(sql, u) == a for u in units)
    r = planner.post(f"/plans/{plan_id}/publish", json={})
    assert r.status_code == 428
    r = planner.post(f"/plans/{plan_id}/publish", json={}, headers={"If-Match": "2"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["plan"]["status"] == "published" and body["plan"]["publish_status"] == "applied"
    assert sorted(body["result"]["replaced"]) == sorted([a, b])
    assert all(group_of(sql, u) == b for u in units)
    with sql.connect() as c:
        # Every household in exactly one current group grid; none lost.
        counts = c.execute(text(
            "SELECT count(*) FILTER (WHERE n = 1), count(*) FROM (SELECT h.id, count(g.code) n FROM household h "
            "LEFT JOIN grid g ON g.level = 4 AND g.valid_to IS NULL AND ST_Contains(g.geom, h.geom) "
            "GROUP BY h.id) s")).one()
        assert counts[1] == total
        assert counts[0] >= total - 5   # (a handful on a shared edge are covered by two: ST_Contains says 0)
    # A published plan no longer changes.
    r = planner.post(f"/plans/{plan_id}/edits", headers={"If-Match": "3"},
                     json={"kind": "rename", "code": a, "name": "不行"})
    assert r.status_code == 409
    # Undo: its inverse published as a new plan; the grids are what they were.
    r = planner.post(f"/plans/{plan_id}/undo", json={}, headers={"If-Match": "3"})
    assert r.status_code == 200, r.text
    assert r.json()["plan"]["name"].startswith("撤销")
    assert all(group_of(sql, u) == a for u in units)
    with sql.connect() as c:
        after = {code: shapely.from_wkb(bytes(w)) for code, w in c.execute(text(
            "SELECT code, ST_AsBinary(geom) FROM grid WHERE code IN (:a, :b) AND valid_to IS NULL"),
            {"a": a, "b": b})}
    for code in (a, b):
        assert shapely.equals_exact(shapely.normalize(after[code]), shapely.normalize(before[code]), 1e-9)
    # Undone once: a second undo of the same plan finds its grids changed since.
    r = planner.post(f"/plans/{plan_id}/undo", json={}, headers={"If-Match": "4"})
    assert r.status_code == 409 and set(r.json()["conflicts"]) >= {a, b}


def test_two_plans_on_the_same_grid_the_second_publish_is_a_conflict_naming_it(planner, sql):
    a, b, first, _ = finished_reassign(planner, sql, 8, "甲方案")
    second = planner.post("/plans", json={"name": "乙方案"}).json()["id"]
    r = planner.post(f"/plans/{second}/edits", headers={"If-Match": "1"}, json={"kind": "rename", "code": a,
                                                                               "name": "乙的名字"})
    assert r.status_code == 200
    r = planner.post(f"/plans/{first}/publish", json={}, headers={"If-Match": "2"})
    assert r.status_code == 200, r.text
    r = planner.post(f"/plans/{second}/publish", json={}, headers={"If-Match": "2"})
    assert r.status_code == 409, r.text
    assert r.json()["conflicts"] == [a]
    assert a in r.json()["detail"]
    assert planner.get(f"/plans/{second}").json()["status"] == "draft"
    with sql.connect() as c:
        assert c.execute(text("SELECT name FROM grid WHERE code = :a AND valid_to IS NULL"),
                         {"a": a}).scalar_one() != "乙的名字"


def test_an_unfinished_plan_is_refused_with_its_problems(planner, sql):
    a, b = pairs(sql)[2]
    plan = planner.post("/plans", json={"name": "未完成"}).json()
    r = planner.post(f"/plans/{plan['id']}/edits", headers={"If-Match": "1"}, json={"kind": "retire", "code": a})
    assert r.status_code == 200 and not r.json()["validation"]["finished"]
    r = planner.post(f"/plans/{plan['id']}/publish", json={}, headers={"If-Match": "2"})
    assert r.status_code == 422
    assert {e["type"] for e in r.json()["errors"]} >= {"gap"}
    with sql.connect() as c:
        assert c.execute(text("SELECT count(*) FROM grid WHERE code = :a AND valid_to IS NULL"),
                         {"a": a}).scalar_one() == 1
    empty = planner.post("/plans", json={"name": "空"}).json()
    assert planner.post(f"/plans/{empty['id']}/publish", json={}, headers={"If-Match": "1"}).status_code == 422


def test_a_dated_plan_waits_and_can_be_withdrawn(planner, sql):
    a, b, plan_id, units = finished_reassign(planner, sql, 20, "定时")
    when = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).isoformat()
    r = planner.post(f"/plans/{plan_id}/publish", json={"effective_at": when}, headers={"If-Match": "2"})
    assert r.status_code == 200, r.text
    assert r.json()["plan"]["status"] == "scheduled" and r.json()["plan"]["publish_status"] == "pending"
    assert group_of(sql, units[0]) == a   # nothing changed yet
    assert plan_id in [p["id"] for p in planner.get("/plans", params={"status": "scheduled"}).json()]
    r = planner.post(f"/plans/{plan_id}/cancel", headers={"If-Match": "2"})
    assert r.status_code == 409
    r = planner.post(f"/plans/{plan_id}/cancel", headers={"If-Match": "3"})
    assert r.status_code == 200 and r.json()["status"] == "draft" and r.json()["publish_status"] == "cancelled"
    r = planner.post(f"/plans/{plan_id}/cancel", headers={"If-Match": "4"})
    assert r.status_code == 409
    with make_client(sql.url, "grid_staff") as staff:
        assert staff.post(f"/plans/{plan_id}/publish", json={}, headers={"If-Match": "4"}).status_code == 403
