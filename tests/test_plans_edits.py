"""Plan edits on the sample town: every edit kind, checked against the saved plan by independent
spatial SQL (households counted in the plan's grids, areas conserved, levels kept nested)."""

from __future__ import annotations

import pytest
import shapely
from shapely.geometry import LineString
from sqlalchemy import text

from gis.auth.principal import Principal
from gis.auth.roles import Role
from gis.context import Context
from gis.errors import Conflict, InputError
from gis.planning import edits, plans
from gis.planning.plans import Draft, PreconditionRequired
from gis.planning.validate import validate_plan


@pytest.fixture
def ctx(accounts):
    a = accounts["planner"]
    return Context(Principal(a["id"], a["username"], Role.PLANNER), method="TEST", path="tests")


def neighbours(session, level=4, same_parent=True):
    """Two current grids of one level sharing an edge (the first pair by code)."""
    op = "=" if same_parent else "<>"
    return session.execute(text(
        "SELECT a.code, b.code FROM grid a JOIN grid b ON a.code < b.code AND a.level = b.level "
        f"AND a.parent_code {op} b.parent_code "
        "AND ST_Length(ST_Intersection(ST_Boundary(a.geom), ST_Boundary(b.geom))) > 0.001 "
        "WHERE a.level = :lvl AND a.valid_to IS NULL AND b.valid_to IS NULL ORDER BY a.code, b.code LIMIT 1"),
        {"lvl": level}).one()


def current_geom(session, code):
    wkb = session.execute(text("SELECT ST_AsBinary(geom) FROM grid WHERE code = :c AND valid_to IS NULL"),
                          {"c": code}).scalar_one()
    return shapely.from_wkb(bytes(wkb))


def plan_geom(session, plan_id, code):
    wkb = session.execute(text("SELECT ST_AsBinary(geom) FROM plan_grid WHERE plan_id = :p AND code = :c"),
                          {"p": plan_id, "c": code}).scalar_one()
    return shapely.from_wkb(bytes(wkb)) if wkb is not None else None


def households_in_plan_grid(session, plan_id, code):
    """Household ids the plan's grid `code` covers (SQL, independent of the Python edit code)."""
    return set(session.execute(text(
        "SELECT h.id FROM household h JOIN plan_grid g ON ST_Covers(g.geom, h.geom) "
        "WHERE g.plan_id = :p AND g.code = :c"), {"p": plan_id, "c": code}).scalars())


def households_in_grid(session, code):
    return set(session.execute(text(
        "SELECT h.id FROM household h JOIN grid g ON ST_Covers(g.geom, h.geom) "
        "WHERE g.valid_to IS NULL AND g.code = :c"), {"c": code}).scalars())


def edit(session, ctx, plan, action, fn):
    p, draft, report = edits.edit_plan(session, ctx, plan.id, plan.version, action, fn)
    return p, report


def cross_line(geom, frac=0.5, vertical=True):
    """A straight line across `geom` at `frac` of its width (vertical) or height."""
    x0, y0, x1, y1 = geom.bounds
    if vertical:
        x = x0 + (x1 - x0) * frac
        return LineString([(x, y0 - 0.01), (x, y1 + 0.01)])
    y = y0 + (y1 - y0) * frac
    return LineString([(x0 - 0.01, y), (x1 + 0.01, y)])


def test_create_get_list_discard_and_versions(session, ctx):
    plan = plans.create_plan(session, ctx, "  新建小区调整  ")
    assert plan.status == "draft" and plan.version == 1 and plan.name == "新建小区调整"
    assert plan.id in [p.id for p in plans.list_plans(session, "draft")]
    with pytest.raises(PreconditionRequired):
        plans.discard_plan(session, ctx, plan.id, None)
    with pytest.raises(Conflict) as stale:
        plans.discard_plan(session, ctx, plan.id, 7)
    assert stale.value.extra["current_version"] == 1
    plans.discard_plan(session, ctx, plan.id, 1)
    assert plans.get_plan(session, plan.id).status == "discarded"
    with pytest.raises(Conflict):   # only a draft changes
        edits.edit_plan(session, ctx, plan.id, 2, "rename", lambda d: {})
    with pytest.raises(InputError):
        plans.create_plan(session, ctx, "   ")
    audit = session.execute(text("SELECT action FROM audit_log WHERE resource = 'plan' AND :i = ANY(resource_ids)"),
                            {"i": str(plan.id)}).scalars().all()
    assert {"plan.create", "plan.discard"} <= set(audit)


def test_reassign_households_moves_exactly_their_cells(session, ctx):
    a, b = neighbours(session)
    geom_b = current_geom(session, b)
    # The three households of grid a nearest grid b.
    moving = session.execute(text(
        "SELECT h.id, h.household_no FROM household h JOIN grid g ON ST_Covers(g.geom, h.geom) "
        "WHERE g.code = :a AND g.valid_to IS NULL ORDER BY ST_Distance(h.geom, ST_GeomFromWKB(:b, 4326)) LIMIT 3"),
        {"a": a, "b": shapely.to_wkb(geom_b)}).all()
    before_a, before_b = households_in_grid(session, a), households_in_grid(session, b)
    plan = plans.create_plan(session, ctx, "重划户")
    plan, report = edit(session, ctx, plan, "reassign",
                        lambda d: edits.reassign_units(d, "household", [r.household_no for r in moving], b))
    assert report["from_codes"] == [a] and plan.version == 2
    moved = {r.id for r in moving}
    assert households_in_plan_grid(session, plan.id, b) == before_b | moved
    assert households_in_plan_grid(session, plan.id, a) == before_a - moved
    # Area conserved: the union of the two is what it was.
    union_before = shapely.union(current_geom(session, a), geom_b)
    union_after = shapely.union(plan_geom(session, plan.id, a), plan_geom(session, plan.id, b))
    assert abs(union_before.area - union_after.area) < 1e-12
    assert set(plan.base) == {a, b}
    # The village did not change: only the two group grids are in the plan.
    assert {r for r in session.execute(text("SELECT code FROM plan_grid WHERE plan_id = :p"),
                                       {"p": plan.id}).scalars()} == {a, b}
    # Unknown units are named by position; units already there are a no-change.
    with pytest.raises(InputError) as bad:
        edits.edit_plan(session, ctx, plan.id, plan.version, "reassign",
                        lambda d: edits.reassign_units(d, "household", ["no-such-户号", moving[0].household_no], b))
    assert [p.loc for p in bad.value.problems] == [("body", "unit_ids", 0)]
    with pytest.raises(InputError):
        edits.edit_plan(session, ctx, plan.id, plan.version, "reassign",
                        lambda d: edits.reassign_units(d, "household", [moving[0].household_no], b))


def test_reassign_households_across_villages_moves_the_villages_boundary_too(session, ctx):
    a, b = neighbours(session, same_parent=False)
    va, vb = a[:12] + "000", b[:12] + "000"
    one = session.execute(text(
        "SELECT h.id FROM household h JOIN grid g ON ST_Covers(g.geom, h.geom) WHERE g.code = :a "
        "AND g.valid_to IS NULL ORDER BY ST_Distance(h.geom, (SELECT geom FROM grid WHERE code = :b "
        "AND valid_to IS NULL)) LIMIT 1"), {"a": a, "b": b}).scalar_one()
    plan = plans.create_plan(session, ctx, "跨村")
    plan, _ = edit(session, ctx, plan, "reassign", lambda d: edits.reassign_units(d, "household_id", [str(one)], b))
    assert one in households_in_plan_grid(session, plan.id, b)
    assert one in households_in_plan_grid(session, plan.id, vb) and one not in households_in_plan_grid(
        session, plan.id, va)
    assert validate_plan(Draft(session, plan)).counts().get("outside_parent", 0) == 0


def test_reassign_a_natural_village(session, ctx):
    row = session.execute(text(
        "SELECT h.natural_village_id nv, g.code FROM household h JOIN grid g ON g.level = 4 AND g.valid_to IS NULL "
        "AND ST_Covers(g.geom, h.geom) WHERE h.natural_village_id IS NOT NULL GROUP BY 1, 2 "
        "ORDER BY count(*) DESC LIMIT 1")).one()
    members = set(session.execute(text("SELECT id FROM household WHERE natural_village_id = :n"),
                                  {"n": row.nv}).scalars())
    target = session.execute(text(
        "SELECT b.code FROM grid a JOIN grid b ON b.level = 4 AND b.valid_to IS NULL AND b.code <> a.code "
        "AND b.parent_code = a.parent_code AND ST_Intersects(a.geom, b.geom) WHERE a.code = :c "
        "AND a.valid_to IS NULL ORDER BY b.code LIMIT 1"), {"c": row.code}).scalar_one()
    plan = plans.create_plan(session, ctx, "自然村")
    plan, report = edit(session, ctx, plan, "reassign",
                        lambda d: edits.reassign_units(d, "natural_village", [str(row.nv)], target))
    assert members <= households_in_plan_grid(session, plan.id, target)
    assert report["households"] == len(members)


def test_reassign_a_small_grid_to_another_village_recodes_it(session, ctx):
    a, b = neighbours(session, same_parent=False)
    va, vb = a[:12] + "000", b[:12] + "000"
    homes = households_in_grid(session, a)
    plan = plans.create_plan(session, ctx, "组划村")
    plan, report = edit(session, ctx, plan, "reassign", lambda d: edits.reassign_units(d, "grid", [a], vb))
    new_code = report["moved"][0]
    assert new_code[:12] == vb[:12] and new_code != a
    row = session.execute(text("SELECT parent_code, old_code FROM plan_grid WHERE plan_id = :p AND code = :c"),
                          {"p": plan.id, "c": new_code}).one()
    assert row == (vb, a)
    assert homes <= households_in_plan_grid(session, plan.id, vb)
    assert not homes & households_in_plan_grid(session, plan.id, va)
    with pytest.raises(InputError):   # a group grid goes under a village, not another group grid
        edits.edit_plan(session, ctx, plan.id, plan.version, "reassign",
                        lambda d: edits.reassign_units(d, "grid", [b], a))


def test_move_a_shared_boundary(session, ctx):
    a, b = neighbours(session)
    ga, gb = current_geom(session, a), current_geom(session, b)
    # A new edge: a line across the two, a third of the way into b from a.
    ca, cb = ga.centroid, gb.centroid
    mx, my = ca.x + (cb.x - ca.x) * 0.6, ca.y + (cb.y - ca.y) * 0.6
    dx, dy = cb.y - ca.y, -(cb.x - ca.x)
    line = LineString([(mx - 5 * dx, my - 5 * dy), (mx + 5 * dx, my + 5 * dy)])
    plan = plans.create_plan(session, ctx, "移边")
    plan, _ = edit(session, ctx, plan, "move_boundary", lambda d: edits.move_boundary(d, a, b, line))
    na, nb = plan_geom(session, plan.id, a), plan_geom(session, plan.id, b)
    assert na.area > ga.area and nb.area < gb.area
    assert abs(shapely.union(na, nb).area - shapely.union(ga, gb).area) < 1e-12
    assert shapely.intersection(na, nb).area < 1e-12
    far = LineString([(0, 0), (1, 1)])
    with pytest.raises(InputError) as bad:
        edits.edit_plan(session, ctx, plan.id, plan.version, "move_boundary",
                        lambda d: edits.move_boundary(d, a, b, far))
    assert bad.value.problems[0].loc == ("body", "line")


def test_split_a_grid_by_a_drawn_line(session, ctx):
    a, _ = neighbours(session)
    geom = current_geom(session, a)
    homes = households_in_grid(session, a)
    plan = plans.create_plan(session, ctx, "拆分")
    plan, report = edit(session, ctx, plan, "split", lambda d: edits.split_grid(d, a, cross_line(geom)))
    assert len(report["created"]) >= 1
    new = report["created"][0]
    assert new[:12] == a[:12] and new not in {a}
    parts = [plan_geom(session, plan.id, c) for c in [a, *report["created"]]]
    assert abs(sum(p.area for p in parts) - geom.area) < 1e-12
    after = set().union(*(households_in_plan_grid(session, plan.id, c) for c in [a, *report["created"]]))
    assert after == homes
    v = validate_plan(Draft(session, plan))
    # The new piece has no staff yet: the plan is unfinished, not refused.
    assert not v.finished
    assert {(p.type, p.loc[1]) for p in v.problems} >= {("no_leader", new), ("no_members", new)}
    assert all("lon" in (p.ctx or {}) for p in v.problems)


def test_split_a_village_takes_its_group_grids_along(session, ctx):
    village = session.execute(text(
        "SELECT parent_code FROM grid WHERE level = 4 AND valid_to IS NULL GROUP BY 1 "
        "ORDER BY count(*) DESC, 1 LIMIT 1")).scalar_one()
    geom = current_geom(session, village)
    plan = plans.create_plan(session, ctx, "拆村")
    plan, report = edit(session, ctx, plan, "split", lambda d: edits.split_grid(d, village, cross_line(geom)))
    moved = report["reparented"]
    for code in moved:
        assert code[:12] in {c[:12] for c in report["created"]}
    # Every group grid is either wholly in a piece (re-parented/kept) or reported straddling.
    v = validate_plan(Draft(session, plan))
    straddling = {p.loc[1] for p in v.problems if p.type == "outside_parent"}
    assert straddling == set(report["straddling"])


def test_merge_neighbours(session, ctx):
    a, b = neighbours(session)
    homes = households_in_grid(session, a) | households_in_grid(session, b)
    plan = plans.create_plan(session, ctx, "合并")
    plan, report = edit(session, ctx, plan, "merge", lambda d: edits.merge_grids(d, [a, b], a))
    assert report["retired"] == [b]
    assert households_in_plan_grid(session, plan.id, a) == homes
    assert session.execute(text("SELECT retired FROM plan_grid WHERE plan_id = :p AND code = :c"),
                           {"p": plan.id, "c": b}).scalar_one() is True
    far = session.execute(text("SELECT code FROM grid g WHERE level = 4 AND valid_to IS NULL AND NOT ST_Intersects("
                               "geom, (SELECT geom FROM grid WHERE code = :a AND valid_to IS NULL)) ORDER BY code "
                               "DESC LIMIT 1"), {"a": a}).scalar_one()
    with pytest.raises(InputError) as bad:
        edits.edit_plan(session, ctx, plan.id, plan.version, "merge", lambda d: edits.merge_grids(d, [a, far], a))
    assert bad.value.problems[0].type == "not_neighbours"


def test_create_a_grid_takes_area_from_its_siblings(session, ctx):
    a, b = neighbours(session)
    village = a[:12] + "000"
    shared = shapely.intersection(current_geom(session, a).boundary, current_geom(session, b).boundary)
    box = shapely.buffer(shared.interpolate(0.5, normalized=True), 0.002)
    plan = plans.create_plan(session, ctx, "新建")
    plan, report = edit(session, ctx, plan, "create",
                        lambda d: edits.create_grid(d, None, 4, "李邦相新区", village, box))
    new = report["code"]
    assert set(report["taken_from"]) >= {a, b}
    ng = plan_geom(session, plan.id, new)
    assert shapely.intersection(ng, plan_geom(session, plan.id, a)).area < 1e-12
    with pytest.raises(InputError) as bad:
        edits.edit_plan(session, ctx, plan.id, plan.version, "create",
                        lambda d: edits.create_grid(d, a, 4, "重复", village, box))
    assert bad.value.problems[0].type == "duplicate_code"
    with pytest.raises(InputError) as bad:
        edits.edit_plan(session, ctx, plan.id, plan.version, "create",
                        lambda d: edits.create_grid(d, village[:12] + "0x1", 4, "坏码", village, box))
    assert bad.value.problems[0].type == "bad_code"


def test_retire_rename_recode(session, ctx):
    a, b = neighbours(session)
    village = a[:12] + "000"
    plan = plans.create_plan(session, ctx, "撤销改名改码")
    plan, _ = edit(session, ctx, plan, "rename", lambda d: edits.rename_grid(d, b, "新名字"))
    plan, _ = edit(session, ctx, plan, "retire", lambda d: edits.retire_grid(d, a))
    free = session.execute(text("SELECT max(code) FROM grid WHERE level = 3")).scalar_one()
    new_village = free[:9] + f"{int(free[9:12]) + 1:03d}000"
    plan, report = edit(session, ctx, plan, "recode", lambda d: edits.recode_grid(d, village, new_village))
    rows = {r.code: r for r in session.execute(text(
        "SELECT code, name, parent_code, old_code, retired FROM plan_grid WHERE plan_id = :p"), {"p": plan.id})}
    assert rows[new_village].old_code == village
    assert rows[a].retired
    renamed = report["recoded"][b]
    assert renamed[:12] == new_village[:12] and rows[renamed].name == "新名字"
    assert rows[renamed].parent_code == new_village and rows[renamed].old_code == b
    changes = {c.code: c for c in Draft(session, plan).changes()}
    assert changes[a].geom is None and changes[new_village].old_code == village
    v = validate_plan(Draft(session, plan))
    assert "gap" in v.counts()   # the retired grid's area is given to nobody yet


def test_a_stale_version_is_a_conflict_and_a_missing_one_a_precondition(session, ctx):
    a, _ = neighbours(session)
    plan = plans.create_plan(session, ctx, "并发")
    edits.edit_plan(session, ctx, plan.id, 1, "rename", lambda d: edits.rename_grid(d, a, "甲"))
    with pytest.raises(Conflict) as stale:
        edits.edit_plan(session, ctx, plan.id, 1, "rename", lambda d: edits.rename_grid(d, a, "乙"))
    assert stale.value.extra["current_version"] == 2
    with pytest.raises(PreconditionRequired):
        edits.edit_plan(session, ctx, plan.id, None, "rename", lambda d: edits.rename_grid(d, a, "乙"))
    assert session.execute(text("SELECT name FROM plan_grid WHERE plan_id = :p"), {"p": plan.id}).scalar_one() == "甲"
