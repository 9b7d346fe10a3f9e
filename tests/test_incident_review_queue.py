"""The review queue and escalation in SQL (issue 12 items 4 and 1): the queue pages in SQL with a
total and a `next` link, its plan reads its own index (no sort, no full read), the escalation level
computed in SQL is `urgency()`'s, and the one-statement intake finds the grid through the index."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.db import driver_rows
from gis.incidents import service
from gis.incidents.loop import urgency
from tests.conftest import make_client

NOW = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)


def _principal(accounts, role):
    from gis.auth.principal import Principal
    from gis.auth.roles import Role

    a = accounts[role]
    return Principal(a["id"], a["username"], Role(role), tuple(a["scope_codes"]))


def _plan_nodes(plan: dict) -> list[dict]:
    out, todo = [], [plan]
    while todo:
        node = todo.pop()
        out.append(node)
        todo.extend(node.get("Plans", []))
    return out


def test_escalation_level_in_sql_is_urgency(session, accounts):
    admin = _principal(accounts, "admin")
    rows = session.execute(text(
        f"SELECT i.id, i.category, i.state, i.state_entered_at, {service.ESCALATION_LEVEL_SQL} AS level "
        "FROM incident i"), {"now": NOW}).all()
    assert len(rows) > 1000
    want = {r.id: urgency(r.category, r.state, r.state_entered_at, NOW).escalation_level for r in rows}
    assert {r.id: r.level for r in rows} == want
    assert len(set(want.values())) > 1          # the sample spans on-time and escalated incidents
    for level in (1, 2, 3, 4):
        page = service.list_incidents(session, admin, escalation_level=level, limit=10_000, now=NOW)
        assert {r["id"] for r in page.items} == {i for i, lv in want.items() if lv == level}, level
        assert all(r["escalation_level"] == level for r in page.items)


def _queue_oracle(session) -> list[int]:
    """Every flagged incident not yet reviewed, newest first, found without the service's filter."""
    rows = session.execute(text(
        "SELECT id, occurred_at, on_boundary, outside_distance_m, village_code, group_code, reviewed_at "
        "FROM incident")).all()
    keep = [r for r in rows if r.reviewed_at is None and (
        r.on_boundary or r.outside_distance_m is not None or r.village_code is None
        or r.group_code == r.village_code)]
    return [r.id for r in sorted(keep, key=lambda r: (r.occurred_at, r.id), reverse=True)]


def test_review_queue_pages_in_sql_with_total_and_next(scratch_db_url, accounts):
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with make_client(scratch_db_url, "command_center") as cc:
        # A few flagged incidents of its own: 100 m outside the town's easternmost point.
        with engine.connect() as c:
            east = c.execute(text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT (ST_DumpPoints(geom)).geom p FROM grid WHERE level = 1 "
                "AND valid_to IS NULL) q ORDER BY ST_X(p) DESC LIMIT 1")).one()
        with make_client(scratch_db_url, "admin") as admin:
            for k in range(5):
                r = admin.post("/incidents", json={
                    "category": "environment", "description": "垃圾", "occurred_at": f"2024-0{k + 1}-01T08:00:00Z",
                    "lon": east[0] + 100 / 93_000, "lat": east[1] + k * 1e-5})
                assert r.status_code == 201 and r.json()["flagged"], r.text
        with engine.connect() as c:
            from sqlalchemy.orm import Session

            with Session(bind=c) as s:
                want = _queue_oracle(s)
        assert len(want) >= 5
        got, url, pages = [], "/incidents/review?limit=2", 0
        while url:
            page = cc.get(url)
            assert page.status_code == 200, page.text
            body = page.json()
            assert body["total"] == len(want) and len(body["items"]) <= 2
            got += [i["id"] for i in body["items"]]
            url, pages = body["next"], pages + 1
            assert pages <= len(want)
        assert got == want
        assert pages == (len(want) + 1) // 2
        # Filters combine with the queue: the category narrows it in SQL.
        env = cc.get("/incidents/review", params={"category": "environment", "limit": 100}).json()
        assert env["total"] >= 5
        assert all(i["category"] == "environment" and i["flagged"] for i in env["items"])
        # Reviewing takes one out (and is audited by the operation itself).
        first = want[0]
        assert cc.post(f"/incidents/{first}/review").status_code == 200
        after = cc.get("/incidents/review", params={"limit": 100}).json()
        assert after["total"] == len(want) - 1 and first not in {i["id"] for i in after["items"]}
        assert cc.get("/incidents/review", params={"limit": 100_000}).status_code == 422
    with engine.connect() as c:
        rows = c.execute(text(
            "SELECT action, method, path, resource_ids FROM audit_log WHERE action = 'review'")).all()
    engine.dispose()
    assert [(r.action, r.method, r.path, list(r.resource_ids)) for r in rows] == [
        ("review", "POST", f"/incidents/{first}/review", [str(first)])]


def test_review_queue_plan_reads_its_index_without_sort(session, accounts):
    cond, params = service.IncidentFilter(flagged=True, pending_review=True).where(
        _principal(accounts, "command_center"), NOW)
    session.execute(text("SET LOCAL enable_sort = off"))
    session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = driver_rows(session, "EXPLAIN (FORMAT JSON) " + service.PAGE_SQL.format(cond=cond),
                       {**params, "limit": 50, "offset": 100})[0]["QUERY PLAN"][0]["Plan"]
    nodes = _plan_nodes(plan)
    assert not [n for n in nodes if n["Node Type"] in ("Sort", "Incremental Sort", "Seq Scan")], plan
    assert "incident_review_queue" in {n.get("Index Name") for n in nodes}, plan


def test_one_statement_intake_finds_the_grid_through_its_index(session, accounts):
    admin = _principal(accounts, "admin")
    x, y = session.execute(text(
        "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM grid "
        "WHERE level = 4 AND valid_to IS NULL ORDER BY code LIMIT 1) q")).one()
    sql = service._intake_inside_sql().replace("{visible}", "TRUE")
    from gis import audit

    params = {**audit.params(admin, "create", resource="incident"), "x": x, "y": y, "ext": None,
              "cat": "dispute", "kind": None, "desc": "d", "occ": NOW, "rname": None, "rphone": None,
              "src": "coordinates", "crs": None, "place": None, "match": None, "prec": None, "now": NOW,
              "by": admin.user_id, "actor": admin.username, "r": 100, "w": 72}
    session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = driver_rows(session, "EXPLAIN (FORMAT JSON) " + sql, params)[0]["QUERY PLAN"][0]["Plan"]
    nodes = _plan_nodes(plan)
    on_grid = [n for n in nodes if n.get("Relation Name") == "grid"]
    # grid_at is inlined (no function scan of it), and every read of the grid table is an index read. The one
    # function scan is the duplicate rule, `incident_near`, kept apart on purpose (migration 0020: planned when it
    # runs, with its index).
    scans = [n.get("Function Name") for n in nodes if n["Node Type"] == "Function Scan"]
    assert scans == ["incident_near"], plan
    assert on_grid and not [n for n in on_grid if n["Node Type"] == "Seq Scan"], plan
    assert any("geom" in (n.get("Index Name") or "") for n in on_grid), plan
