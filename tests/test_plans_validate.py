"""Plan validation on the sample town: each kind of problem made on purpose, found with its grid code
and a place (lon/lat) inside the problem, and gone again once it is fixed."""

from __future__ import annotations

import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon
from sqlalchemy import text

from gis.auth.principal import Principal
from gis.auth.roles import Role
from gis.context import Context
from gis.planning import edits, plans
from gis.planning.changes import GridChange
from gis.planning.plans import Draft
from gis.planning.validate import PROBLEM_ZH, validate_plan
from tests.test_plans_edits import current_geom, neighbours


@pytest.fixture
def ctx(accounts):
    a = accounts["planner"]
    return Context(Principal(a["id"], a["username"], Role.PLANNER), method="TEST", path="tests")


def grid(session, code):
    r = session.execute(text("SELECT code, level, name, parent_code FROM grid WHERE code = :c AND valid_to IS NULL"),
                        {"c": code}).one()
    return r


def check(session, plan):
    return validate_plan(Draft(session, plan))


def found(v, kind):
    return [p for p in v.problems if p.type == kind]


def located_in(problem, geom, slack=1e-6):
    pt = shapely.Point(problem.ctx["lon"], problem.ctx["lat"])
    return shapely.distance(pt, geom) <= slack


def test_an_untouched_plan_and_a_rename_are_finished(session, ctx):
    a, _ = neighbours(session)
    plan = plans.create_plan(session, ctx, "空")
    assert check(session, plan).finished
    plan, _, _ = edits.edit_plan(session, ctx, plan.id, 1, "rename", lambda d: edits.rename_grid(d, a, "新名"))
    v = check(session, plan)
    assert v.finished, v.as_dict()
    assert v.as_dict()["state"] == "finished"


def test_invalid_and_empty_geometry(session, ctx):
    a, b = neighbours(session)
    ga, gb = grid(session, a), grid(session, b)
    x0, y0, x1, y1 = current_geom(session, a).bounds
    bowtie = MultiPolygon([Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1), (x0, y0)])])
    plan = plans.create_plan(session, ctx, "坏几何", [
        GridChange(a, 4, ga.name, ga.parent_code, bowtie),
        GridChange(b, 4, gb.name, gb.parent_code, MultiPolygon()),
    ])
    v = check(session, plan)
    bad = found(v, "invalid_geometry")
    assert [p.loc for p in bad] == [("grids", a, "geometry")]
    assert "Self-intersection" in bad[0].msg and located_in(bad[0], bowtie)
    assert [p.loc[1] for p in found(v, "empty_geometry")] == [b]
    assert not v.finished


def test_malformed_code_and_bad_parent(session, ctx):
    a, _ = neighbours(session)
    ga = grid(session, a)
    geom = current_geom(session, a)
    village = a[:12] + "000"
    malformed = village[:12] + "0a1"
    plan = plans.create_plan(session, ctx, "坏编码", [
        GridChange(a, 4, ga.name, ga.parent_code, None),   # retired ...
        GridChange(malformed, 4, "坏码", village, geom),   # ... and replaced by a malformed code
    ])
    v = check(session, plan)
    assert [p.loc for p in found(v, "bad_code")] == [("grids", malformed, "code")]
    assert located_in(found(v, "bad_code")[0], geom)
    # Retiring a village orphans its group grids: each is reported with its missing parent.
    plan2 = plans.create_plan(session, ctx, "撤村")
    edits.edit_plan(session, ctx, plan2.id, 1, "retire", lambda d: edits.retire_grid(d, village))
    v2 = check(session, plan2)
    orphans = {p.loc[1] for p in found(v2, "bad_parent")}
    kids = set(session.execute(text("SELECT code FROM grid WHERE parent_code = :v AND valid_to IS NULL"),
                               {"v": village}).scalars())
    assert orphans == kids and kids
    assert all(p.ctx["parent_code"] == village for p in found(v2, "bad_parent"))
    assert found(v2, "gap")   # and the village's area belongs to no village now


def test_outside_parent_and_overlap(session, ctx):
    a, b = neighbours(session)
    ga = grid(session, a)
    grown = MultiPolygon([shapely.buffer(current_geom(session, a), 0.003, join_style="mitre")])
    plan = plans.create_plan(session, ctx, "外扩", [GridChange(a, 4, ga.name, ga.parent_code, grown)])
    v = check(session, plan)
    outside = found(v, "outside_parent")
    assert [p.loc[1] for p in outside] == [a]
    village = current_geom(session, ga.parent_code)
    assert not located_in(outside[0], village, slack=0) or shapely.Point(
        outside[0].ctx["lon"], outside[0].ctx["lat"]).distance(village.boundary) < 1e-9
    overlaps = found(v, "overlap")
    assert b in {p.ctx["other_code"] for p in overlaps}
    over_b = next(p for p in overlaps if p.ctx["other_code"] == b)
    assert located_in(over_b, current_geom(session, b), slack=1e-9)
    assert over_b.ctx["area_m2"] > 1


def test_gap_between_siblings(session, ctx):
    a, _ = neighbours(session)
    ga = grid(session, a)
    geom = current_geom(session, a)
    shrunk = MultiPolygon([shapely.buffer(geom, -0.0005, join_style="mitre")])
    plan = plans.create_plan(session, ctx, "缩小", [GridChange(a, 4, ga.name, ga.parent_code, shrunk)])
    v = check(session, plan)
    gaps = found(v, "gap")
    assert gaps and gaps[0].ctx["parent_code"] == ga.parent_code
    ring = shapely.difference(geom, shrunk)
    assert located_in(gaps[0], ring, slack=1e-9)


def test_non_contiguous_unless_allowed(session, ctx):
    a, _ = neighbours(session)
    village = a[:12] + "000"
    # A household of a sibling that does not touch a: painting it into a leaves a in two pieces.
    hh = session.execute(text(
        "SELECT h.household_no FROM household h JOIN grid g ON g.valid_to IS NULL AND g.level = 4 "
        "AND g.parent_code = :v AND g.code <> :a AND ST_Covers(g.geom, h.geom) "
        "WHERE ST_Distance(g.geom, (SELECT geom FROM grid WHERE code = :a AND valid_to IS NULL)) > 0.001 "
        "ORDER BY h.household_no LIMIT 1"), {"v": village, "a": a}).scalar_one()
    plan = plans.create_plan(session, ctx, "飞地")
    plan, _, _ = edits.edit_plan(session, ctx, plan.id, 1, "reassign",
                                 lambda d: edits.reassign_units(d, "household", [hh], a))
    v = check(session, plan)
    pieces = found(v, "non_contiguous")
    assert [p.loc[1] for p in pieces] == [a] and pieces[0].ctx["pieces"] == 2
    lonlat = session.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM household WHERE household_no = :h"),
                             {"h": hh}).one()
    stray = [g for g in shapely.get_parts(Draft(session, plan).rows[a].geom) if g.covers(shapely.Point(*lonlat))][0]
    assert located_in(pieces[0], stray, slack=1e-9)
    plan, _, _ = edits.edit_plan(session, ctx, plan.id, plan.version, "allow_parts",
                                 lambda d: edits.allow_parts(d, a, True))
    assert not found(check(session, plan), "non_contiguous")


def test_no_leader_no_members_and_a_code_taken_meanwhile(session, ctx):
    a, _ = neighbours(session)
    village = a[:12] + "000"
    box = shapely.buffer(current_geom(session, a).centroid, 0.0005)
    plan = plans.create_plan(session, ctx, "新网格")
    plan, _, report = edits.edit_plan(session, ctx, plan.id, 1, "create",
                                      lambda d: edits.create_grid(d, None, 4, "新区", village, box))
    new = report["code"]
    v = check(session, plan)
    assert {p.type for p in v.problems if p.loc[1] == new} == {"no_leader", "no_members"}
    # Staff assigned to the new code (as a roster import would, once published) satisfy the check.
    session.execute(text("INSERT INTO staff (name, role, grid_code) VALUES ('甲', 'grid_leader', :c), "
                         "('乙', 'grid_member', :c)"), {"c": new})
    # ... but meanwhile another publish gave that very code to a current grid: the plan now duplicates it.
    v = check(session, plan)
    assert not [p for p in v.problems if p.type in ("no_leader", "no_members")]
    session.execute(text("INSERT INTO grid (code, name, level, parent_code, geom) SELECT :c, '别处', 4, :v, "
                         "ST_Multi(ST_Buffer(ST_Centroid(geom), 0.0001)) FROM grid WHERE code = :a "
                         "AND valid_to IS NULL"), {"c": new, "v": village, "a": a})
    v = check(session, plan)
    assert [p.loc for p in found(v, "duplicate_code")] == [("grids", new, "code")]


def test_every_problem_kind_has_a_chinese_name():
    assert set(PROBLEM_ZH) >= {"invalid_geometry", "empty_geometry", "duplicate_code", "bad_code", "bad_parent",
                               "outside_parent", "overlap", "gap", "non_contiguous", "no_leader", "no_members"}


def test_retiring_many_group_grids_costs_no_query_per_grid(session, ctx):
    """Merging all of a village's group grids into one is checked with as many queries as merging two (a
    group grid has no children to look up; the village is looked up once), and the village of a retired
    grid is still judged: a retirement whose area no sibling takes is a gap."""
    from sqlalchemy import event

    a, _ = neighbours(session)
    village = a[:12] + "000"
    kids = session.execute(text("SELECT code, name FROM grid WHERE parent_code = :v AND valid_to IS NULL "
                                "ORDER BY code"), {"v": village}).all()
    assert len(kids) >= 6, "the sample village needs a few group grids"

    def merged(n):
        whole = shapely.union_all([current_geom(session, k.code) for k in kids[:n]])
        return plans.create_plan(session, ctx, f"合并{n}", [
            GridChange(kids[0].code, 4, kids[0].name, village, MultiPolygon(list(shapely.get_parts(whole))))]
            + [GridChange(k.code, 4, k.name, village, None) for k in kids[1:n]])

    few, many = merged(2), merged(len(kids))
    one = plans.create_plan(session, ctx, "撤一个", [GridChange(kids[-1].code, 4, kids[-1].name, village, None)])
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    bind = session.get_bind()
    event.listen(bind, "before_cursor_execute", count)
    try:
        v_few = check(session, few)
        n_few = len(statements)
        v_many = check(session, many)
        n_many = len(statements) - n_few
    finally:
        event.remove(bind, "before_cursor_execute", count)
    for v in (v_few, v_many):
        assert not [p for p in v.problems if p.type in ("gap", "overlap", "outside_parent", "non_contiguous")]
    assert n_many <= n_few, (n_few, n_many)
    gaps = found(check(session, one), "gap")
    assert [p.ctx["parent_code"] for p in gaps] == [village]
    assert located_in(gaps[0], current_geom(session, kids[-1].code), slack=1e-9)
