"""The incident list pages in SQL (issue 11 item 5): the same answer as filtering every visible row
in Python, newest first, with `overdue` from a stored stage deadline kept right on every write
path, and page plans served by an index in the list's order (no sort, no full read)."""

from __future__ import annotations

import datetime as dt
import itertools
import json

import pytest
from sqlalchemy import text

from gis.incidents.categories import STAGE_HOURS
from gis.incidents.loop import stage_deadline, urgency
from tests.conftest import make_client

NOW = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)


def _principal(accounts, role):
    from gis.auth.principal import Principal
    from gis.auth.roles import Role

    a = accounts[role]
    return Principal(a["id"], a["username"], Role(role), tuple(a["scope_codes"]))


def test_the_stage_deadline_rule_in_sql_is_the_python_rule(session):
    from importlib import import_module

    migration = import_module("gis.migrations.versions.0007_incident_paging_reporters")
    assert {c.value: dict(h) for c, h in STAGE_HOURS.items()} == migration.STAGE_HOURS
    entered = dt.datetime(
        2026, 3, 28, 23, 59, 59, 123456, tzinfo=dt.UTC
    )  # across a DST change elsewhere
    for category, stages in STAGE_HOURS.items():
        for state in (*stages, "closed"):
            got = session.execute(
                text("SELECT incident_stage_deadline(:c, :s, :t)"),
                {"c": category.value, "s": state, "t": entered},
            ).scalar_one()
            assert got == stage_deadline(category, state, entered), (category, state)


def _check_stored_deadlines(session, where: str = "TRUE", **params) -> int:
    rows = session.execute(
        text(
            f"SELECT id, category, state, state_entered_at, stage_deadline FROM incident "
            f"WHERE {where}"
        ),
        params,
    ).all()
    for r in rows:
        assert r.stage_deadline == stage_deadline(r.category, r.state, r.state_entered_at), r.id
    return len(rows)


def test_every_write_path_keeps_the_stage_deadline(session, accounts):
    """Batch import (the sample town's incidents), the one-statement intake, the general intake
    (outside the town, within tolerance) and every loop transition."""
    from gis.incidents import service

    assert _check_stored_deadlines(session) > 1000  # imported
    admin = _principal(accounts, "admin")
    inside = session.execute(
        text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM grid "
            "WHERE level = 4 AND valid_to IS NULL ORDER BY code LIMIT 1) q"
        )
    ).one()
    east = session.execute(
        text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT (ST_DumpPoints(geom)).geom p FROM grid "
            "WHERE level = 1 "
            "AND valid_to IS NULL) q ORDER BY ST_X(p) DESC LIMIT 1"
        )
    ).one()
    ids = []
    for category, (lon, lat) in (
        ("disaster", inside),
        ("safety_hazard", (east[0] + 100 / 93_000, east[1])),
    ):
        req = service.IntakeRequest(
            category=category, description="d", occurred_at=NOW, lon=lon, lat=lat
        )
        result = service.intake(
            session,
            admin,
            req,
            outside_tolerance_m=200,
            duplicate_radius_m=100,
            duplicate_window_hours=72,
            now=NOW,
        )
        assert result.created
        ids.append(result.id)
    t = NOW
    for action in (
        "advance",
        "advance",
        "advance",
        "advance",
        "not_satisfied",
        "advance",
        "satisfied",
        "reopen",
    ):
        t += dt.timedelta(hours=5)
        for i in ids:
            service.transition(session, admin, i, action, now=t)
        assert _check_stored_deadlines(session, "id = ANY(:ids)", ids=ids) == 2
    closed = session.execute(
        text("SELECT count(*) FROM incident WHERE state = 'closed' AND stage_deadline IS NULL")
    ).scalar_one()
    assert (
        closed
        == session.execute(
            text("SELECT count(*) FROM incident WHERE state = 'closed'")
        ).scalar_one()
    )


def _oracle(session, principal, now, **f) -> list[int]:
    """Every visible row filtered in Python (urgency() for overdue), newest first."""
    from gis.incidents.service import access_params, visible_condition

    rows = session.execute(
        text(f"SELECT i.* FROM incident i WHERE {visible_condition(principal)}"),
        access_params(principal),
    ).mappings()
    out = []
    for r in rows:
        g = f.get("grid_code")
        if g and g not in (r["group_code"], r["village_code"], r["area_code"], r["town_code"]):
            continue
        if (
            f.get("state")
            and r["state"] != f["state"]
            or f.get("category")
            and r["category"] != f["category"]
        ):
            continue
        if (
            f.get("since")
            and r["occurred_at"] < f["since"]
            or f.get("until")
            and r["occurred_at"] >= f["until"]
        ):
            continue
        flagged = bool(r["on_boundary"] or r["outside_distance_m"] is not None)
        if f.get("flagged") is not None and flagged is not f["flagged"]:
            continue
        if (
            f.get("overdue") is not None
            and urgency(r["category"], r["state"], r["state_entered_at"], now).overdue
            is not f["overdue"]
        ):
            continue
        out.append((r["occurred_at"], r["id"]))
    return [i for _, i in sorted(out, reverse=True)]


FILTERS = [
    {},
    {"overdue": True},
    {"overdue": False, "category": "dispute"},
    {"state": "handle", "overdue": True},
    {"flagged": True},
    {
        "since": dt.datetime(2025, 6, 1, tzinfo=dt.UTC),
        "until": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    },
    {"grid_code": "village"},
    {"grid_code": "area", "overdue": True},
    {"grid_code": "group", "flagged": False},
]


@pytest.mark.parametrize(
    ("role", "filters"), list(itertools.product(("admin", "supervisor", "grid_staff"), FILTERS))
)
def test_pages_are_the_python_answer_newest_first(session, accounts, role, filters):
    from gis.incidents import service

    principal = _principal(accounts, role)
    codes = (
        session.execute(
            text(
                "SELECT v.code AS village, v.parent_code AS area, min(g.code) AS group FROM grid v "
                "JOIN grid g ON g.parent_code = v.code "
                "WHERE v.code = :v AND v.valid_to IS NULL GROUP BY 1, 2"
            ),
            {"v": accounts["supervisor"]["scope_codes"][0]},
        )
        .mappings()
        .one()
    )
    f = {**filters}
    if "grid_code" in f:
        f["grid_code"] = codes[f["grid_code"]]
    expected = _oracle(session, principal, NOW, **f)
    got, totals = [], set()
    size = max(7, len(expected) // 6 + 1)  # a few pages, the last one short
    for offset in range(0, len(expected) + size, size):
        items, total = service.list_incidents(
            session, principal, limit=size, offset=offset, now=NOW, **f
        )
        got += [r["id"] for r in items]
        totals.add(total)
        for r in items:
            assert (
                r["overdue"]
                is urgency(
                    r["category"], r["state"], dt.datetime.fromisoformat(r["state_entered_at"]), NOW
                ).overdue
            )
    assert got == expected
    assert totals <= {len(expected)} and (totals or not expected)


def _plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"overdue": True},
        {"grid_code": "village"},
        {"grid_code": "area"},
        {"grid_code": "group"},
        {"category": "dispute"},
    ],
)
def test_a_page_is_read_in_index_order_not_sorted(session, accounts, filters):
    """Forbidding sorts and sequential scans, the page still plans without a Sort node: an index
    serves the list's order, so a page stops after offset + limit entries."""
    from gis.incidents import service

    codes = {
        "village": accounts["supervisor"]["scope_codes"][0],
        "group": accounts["grid_staff"]["scope_codes"][0],
    }
    codes["area"] = session.execute(
        text("SELECT parent_code FROM grid WHERE code = :v AND valid_to IS NULL"),
        {"v": codes["village"]},
    ).scalar_one()
    f = {k: codes.get(v, v) if k == "grid_code" else v for k, v in filters.items()}
    cond, params = service.incident_filter(session, _principal(accounts, "admin"), now=NOW, **f)
    session.execute(text("SET LOCAL enable_sort = off"))
    session.execute(text("SET LOCAL enable_seqscan = off"))
    from gis.db import driver_rows

    plan = driver_rows(
        session,
        "EXPLAIN (FORMAT JSON) " + service.PAGE_SQL.format(cond=cond),
        {**params, "limit": 50, "offset": 10_000},
    )[0]["QUERY PLAN"][0]["Plan"]
    nodes = list(_plan_nodes(plan))
    assert not [n for n in nodes if n["Node Type"] in ("Sort", "Incremental Sort", "Seq Scan")], (
        json.dumps(plan)
    )
    assert plan["Node Type"] in ("Nested Loop", "Limit", "Merge Join", "Hash Join")


def test_the_api_counts_exactly_up_to_the_cap_then_estimates(test_db_url, accounts):
    with (
        make_client(test_db_url, "admin", max_exact_incident_count=100) as capped,
        make_client(test_db_url, "admin") as exact,
    ):
        a = capped.get("/incidents", params={"limit": 5}).json()
        b = exact.get("/incidents", params={"limit": 5}).json()
        small = capped.get(
            "/incidents", params={"limit": 5, "category": "disaster", "state": "visit"}
        ).json()
    assert b["total_exact"] is True and b["total"] > 100
    assert a["total_exact"] is False and a["total"] > 100
    assert [i["id"] for i in a["items"]] == [i["id"] for i in b["items"]]
    assert small["total_exact"] is True


def test_the_incident_map_shows_the_newest_when_cut(test_db_url, accounts, engine):
    with engine.connect() as c:
        newest = (
            c.execute(text("SELECT id FROM incident WHERE state <> 'closed' "
                           "ORDER BY occurred_at DESC, id DESC LIMIT 10"))
            .scalars()
            .all()
        )
    # The map page loads the open incidents of its view from the list, `max_features_per_page` at most.
    with make_client(test_db_url, "admin", max_features_per_page=10) as client:
        page = client.get("/incidents", params={"open": "true", "format": "geojson", "limit": 10,
                                                "bbox": "-180,-90,180,90"})
    assert page.status_code == 200
    shown = [f["id"] for f in page.json()["features"]]
    assert shown == newest