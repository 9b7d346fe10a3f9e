"""The household list (issue 13): a grid, scope or bbox page is found through the indexes (no Seq Scan on
household), and gives exactly the rows of the one house -> grid rule (household_grid) and the one access
rule (access_for) — for every role, with houses on shared grid edges and an active emergency."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from gis.auth.principal import Principal
from gis.auth.roles import Role
from gis.households import access_for, list_households, list_statements
from tests.conftest import insert_household
from tests.test_household_grid import _shared_edge_points

ROLES = (Role.ADMIN, Role.COMMAND_CENTER, Role.EMERGENCY, Role.GRID_STAFF, Role.SUPERVISOR, Role.PLANNER)


@pytest.fixture
def town(session, accounts):
    """The sample town plus houses on shared group-grid edges and one active emergency that covers
    part of the first village and its neighbours; the principals of each role; the cases."""
    edge_ids = [
        insert_household(session, f"PLAN-EDGE-{i}", x, y, residents=2, elderly=0)
        for i, (x, y, _holding) in enumerate(_shared_edge_points(session, 8))
    ]
    assert len(edge_ids) >= 3
    group = session.execute(text("SELECT min(code) FROM grid WHERE level = 4 AND valid_to IS NULL")).scalar_one()
    village = group[:12] + "000"
    session.execute(
        text(
            "INSERT INTO emergency (title, reason, extent, declared_by) SELECT '测试', '测试', "
            "ST_Multi(ST_Buffer(ST_Centroid(geom), 0.012)), :by FROM grid WHERE code = :v AND valid_to IS NULL"
        ),
        {"v": village, "by": accounts["admin"]["id"]},
    )
    session.execute(text("ANALYZE household"))
    x0, y0, x1, y1 = session.execute(
        text("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
             "(SELECT ST_Envelope(geom) e FROM grid WHERE code = :g AND valid_to IS NULL) s"),
        {"g": group},
    ).one()
    bbox = (x0 - 0.002, y0 - 0.002, x1 + 0.002, y1 + 0.002)  # the group and a rim of its neighbours
    scopes = {Role.GRID_STAFF: (group,), Role.SUPERVISOR: (village,)}
    principals = {r: Principal(1, f"plan_{r.value}", r, scopes.get(r, ())) for r in ROLES}
    cases = {
        "village": {"grid_code": village},
        "group": {"grid_code": group},
        "bbox": {"bbox": bbox},
        "village+bbox": {"grid_code": village, "bbox": bbox},
        "all": {},
    }
    return principals, cases, edge_ids


def _household_nodes(plan: dict) -> list[str]:
    """The scan node types over table household anywhere in a JSON plan; an index scan with no index
    condition (walking the whole primary key in id order, filtering each row) counts as "Full Scan"."""
    out = []
    stack = [plan]
    while stack:
        node = stack.pop()
        if node.get("Relation Name") == "household":
            full = "Index" in node["Node Type"] and "Index Cond" not in node
            out.append("Full Scan" if full else node["Node Type"])
        stack.extend(node.get("Plans", []))
    return out


def test_a_page_never_scans_the_household_table(session, town):
    principals, cases, _ = town
    for role, principal in principals.items():
        for case, kw in cases.items():
            if case == "all":
                continue  # the whole scope: a hash join over the table can be the cheaper plan at this size
            for sql, params in _statements(principal, kw):
                plan = session.execute(text("EXPLAIN (FORMAT JSON) " + sql), params).scalar_one()
                plan = plan if isinstance(plan, list) else json.loads(plan)
                nodes = _household_nodes(plan[0]["Plan"])
                assert "Seq Scan" not in nodes and "Full Scan" not in nodes, (role, case, nodes, sql)


def _statements(principal, kw):
    count_sql, page_sql, params = list_statements(principal, limit=100, **kw)
    return [(count_sql, params), (page_sql, params)]


def test_rows_are_those_of_the_house_grid_and_access_rules(session, town):
    principals, cases, edge_ids = town
    # The reference, over the whole table: each house's grid path (household_grid, the one rule), its point.
    paths = {
        r.household_id: {r.group_code, r.village_code, r.area_code, r.town_code} - {None}
        for r in session.execute(text("SELECT * FROM household_grid"))
    }
    assert set(edge_ids) <= set(paths)
    # a bbox means `&&` (the point's float4 box overlaps it: a house a hair outside may count), as before
    bbox = cases["bbox"]["bbox"]
    in_bbox = set(session.execute(
        text("SELECT id FROM household WHERE geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)"),
        dict(zip(("x0", "y0", "x1", "y1"), bbox, strict=True))).scalars())
    assert 0 < len(in_bbox) < len(paths)
    for role, principal in principals.items():
        acc = access_for(principal)
        visible = set(session.execute(text(f"SELECT h.id FROM household h WHERE {acc.rows}"), acc.params).scalars())
        for case, kw in cases.items():
            want = sorted(
                hid for hid, codes in paths.items()
                if hid in visible
                and ("grid_code" not in kw or kw["grid_code"] in codes)
                and ("bbox" not in kw or hid in in_bbox)
            )
            got, total = list_households(session, principal, limit=100_000, **kw)
            assert [r["id"] for r in got] == want, (role, case)
            assert total == len(want)
            if len(want) > 60:  # a later page: the same rows in the same order
                page, total2 = list_households(session, principal, limit=25, offset=40, **kw)
                assert [r["id"] for r in page] == want[40:65] and total2 == len(want)
            if role in (Role.COMMAND_CENTER, Role.SUPERVISOR) and case != "bbox":
                # the statements they replaced give the same rows (slow: a house -> grid test per row)
                count_sql, page_sql, params = list_statements(
                    principal, limit=100_000, before=True, **kw)
                assert session.execute(text(count_sql), params).scalar_one() == len(want)
                assert [r["id"] for r in session.execute(text(page_sql), params).mappings()] == want
    # The cases are not empty: the grid roles and the emergency team see rows, the planner none.
    admin_village, _ = list_households(session, principals[Role.ADMIN], limit=100_000, **cases["village"])
    assert len(admin_village) > 500
    for role in (Role.EMERGENCY, Role.GRID_STAFF, Role.SUPERVISOR):
        assert list_households(session, principals[role], limit=1, **cases["village"])[1] > 0, role
    assert list_households(session, principals[Role.PLANNER], limit=1)[1] == 0
    # each edge house is in exactly one group grid's list
    groups = session.execute(text("SELECT code FROM grid WHERE level = 4 AND valid_to IS NULL")).scalars().all()
    for hid in edge_ids:
        codes = paths[hid]
        in_groups = [g for g in groups if g in codes]
        assert len(in_groups) == 1
        listed, _ = list_households(session, principals[Role.ADMIN], grid_code=in_groups[0], limit=100_000)
        assert hid in {r["id"] for r in listed}
