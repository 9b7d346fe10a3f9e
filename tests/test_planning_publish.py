"""The publish engine (gis/planning/publish.py) on the sample town: merge, split, recode and redraw in
one atomic publish, checked against independent spatial queries; dated publishes; conflicts; undo."""

from __future__ import annotations

import datetime as dt

import pytest
import shapely
from shapely.geometry import MultiPolygon, box
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from gis import clock
from gis.context import Context
from gis.errors import Conflict, InputError
from gis.planning.publish import GridChange, apply_due, inverse_of, publish

CTX = Context(principal=None, method="TEST", path="tests/test_planning_publish.py", actor="test:publish")


def _grid(session, code: str) -> dict:
    row = session.execute(
        text("SELECT id, code, name, level, parent_code, ST_AsBinary(geom) AS wkb, valid_from FROM grid "
             "WHERE code = :c AND valid_to IS NULL"), {"c": code}).one()
    return {**row._asdict(), "geom": shapely.from_wkb(bytes(row.wkb))}


def _change(g: dict, geom=None, **over) -> GridChange:
    fields = {"code": g["code"], "level": g["level"], "name": g["name"], "parent_code": g["parent_code"],
              "geom": g["geom"] if geom is None else geom}
    fields.update(over)
    return GridChange(**fields)


def _multi(geom) -> MultiPolygon:
    geom = shapely.make_valid(geom)
    parts = [p for p in getattr(geom, "geoms", [geom]) if p.geom_type == "Polygon"]
    return MultiPolygon(parts)


def busiest_village(session) -> tuple[str, list[str]]:
    """The village with the most group grids that hold staff, households and open incidents; its groups."""
    village = session.execute(text(
        """
        SELECT g.parent_code FROM grid g
        WHERE g.level = 4 AND g.valid_to IS NULL
          AND EXISTS (SELECT 1 FROM staff s WHERE s.grid_code = g.code)
          AND EXISTS (SELECT 1 FROM incident i WHERE i.group_code = g.code AND i.state <> 'closed')
        GROUP BY g.parent_code HAVING count(*) >= 4 ORDER BY count(*) DESC, g.parent_code LIMIT 1
        """)).scalar_one()
    groups = list(session.execute(text(
        "SELECT code FROM grid WHERE parent_code = :v AND valid_to IS NULL ORDER BY code"), {"v": village}).scalars())
    return village, groups


def touching_pair(session, groups: list[str]) -> tuple[str, str]:
    """Two group grids of the list that share a boundary line."""
    return tuple(session.execute(text(
        """
        SELECT a.code, b.code FROM grid a JOIN grid b ON a.code < b.code AND ST_Intersects(a.geom, b.geom)
        WHERE a.code = ANY(:g) AND b.code = ANY(:g) AND a.valid_to IS NULL AND b.valid_to IS NULL
          AND ST_Length(ST_Intersection(ST_Boundary(a.geom), ST_Boundary(b.geom))) > 0
        ORDER BY a.code, b.code LIMIT 1
        """), {"g": groups}).one())


def free_code(session, village: str) -> str:
    used = set(session.execute(text("SELECT code FROM grid WHERE left(code, 12) = left(:v, 12)"),
                               {"v": village}).scalars())
    return next(f"{village[:12]}{n:03d}" for n in range(999, 0, -1) if f"{village[:12]}{n:03d}" not in used)


def independent_places(session, village: str) -> dict[str, dict[int, list[str]]]:
    """For every household and open incident in the village's polygon: the current grids whose
    polygon contains it, per level — by ST_Contains alone (not grid_at, not household_grid)."""
    out: dict[str, dict[int, list[str]]] = {}
    for kind, table, cond in (("h", "household", "TRUE"), ("i", "incident", "t.state <> 'closed'")):
        rows = session.execute(text(
            f"""
            SELECT t.id, g.level, array_agg(g.code ORDER BY g.code) AS codes
            FROM {table} t JOIN grid v ON v.code = :v AND v.valid_to IS NULL AND ST_Contains(v.geom, t.geom)
            JOIN grid g ON g.valid_to IS NULL AND ST_Contains(g.geom, t.geom)
            WHERE {cond}
            GROUP BY t.id, g.level
            """), {"v": village}).all()
        for r in rows:
            out.setdefault(f"{kind}{r.id}", {})[r.level] = list(r.codes)
    return out


def cache_versions(session) -> tuple:
    """The tile layers' and the flood finder's data versions (bumped by triggers on grid and staff)."""
    tiles = session.execute(text("SELECT sum(grids), sum(households) FROM tile_data_version")).one()
    flood = session.execute(text("SELECT version FROM flood_data_version")).scalar_one()
    return int(tiles[0]), int(tiles[1]), int(flood)


def digest(session) -> dict:
    return {
        "grids": session.execute(text("SELECT md5(string_agg(id || code || coalesce(valid_to::text, '-'), ',' "
                                      "ORDER BY id)) FROM grid")).scalar_one(),
        "incidents": session.execute(text("SELECT md5(string_agg(id || group_code || grid_version_id, ',' "
                                          "ORDER BY id)) FROM incident")).scalar_one(),
        "staff": session.execute(text("SELECT md5(string_agg(id || grid_code, ',' ORDER BY id)) FROM staff"))
        .scalar_one(),
    }


@pytest.fixture
def plan(session):
    return make_plan(session)


def make_plan(session) -> dict:
    """A plan over the busiest village: merge two touching groups (A absorbs B), split a third (C keeps
    its west half, a new code takes the east), recode a fourth (D -> D2), rename a fifth."""
    village, groups = busiest_village(session)
    a, b = touching_pair(session, groups)
    rest = [g for g in groups if g not in (a, b)]
    c, d = rest[0], rest[1]
    ga, gb, gc, gd = (_grid(session, x) for x in (a, b, c, d))
    x0, y0, x1, y1 = gc["geom"].bounds
    mid = (x0 + x1) / 2
    west = _multi(gc["geom"].intersection(box(x0 - 1, y0 - 1, mid, y1 + 1)))
    east = _multi(gc["geom"].intersection(box(mid, y0 - 1, x1 + 1, y1 + 1)))
    new_c = free_code(session, village)
    new_d = f"{village[:12]}{int(new_c[12:]) - 1:03d}"
    changes = [
        _change(ga, _multi(shapely.union(ga["geom"], gb["geom"]))),
        GridChange(b, 4, gb["name"], village, None),
        _change(gc, west),
        GridChange(new_c, 4, gc["name"] + "东", village, east),
        GridChange(new_d, 4, gd["name"], village, gd["geom"], old_code=d),
    ]
    return {"village": village, "a": a, "b": b, "c": c, "d": d, "new_c": new_c, "new_d": new_d,
            "changes": changes, "base": {g: _grid(session, g)["id"] for g in (a, b, c, d)}}


def test_publish_moves_everything_and_keeps_every_place_single(session, plan):
    village, a, b, c, d = plan["village"], plan["a"], plan["b"], plan["c"], plan["d"]
    before_places = independent_places(session, village)
    staff_b = set(session.execute(text("SELECT id FROM staff WHERE grid_code = :c"), {"c": b}).scalars())
    staff_d = set(session.execute(text("SELECT id FROM staff WHERE grid_code = :c"), {"c": d}).scalars())
    closed = session.execute(text(
        "SELECT id, group_code, grid_version_id FROM incident WHERE state = 'closed' AND group_code = ANY(:g)"),
        {"g": [a, b, c, d]}).all()
    user = session.execute(text(
        "INSERT INTO app_user (username, password_hash, role, scope_codes) VALUES ('publish_staff', 'x', "
        "'grid_staff', ARRAY[:b, :d]::varchar[]) RETURNING id"), {"b": b, "d": d}).scalar_one()
    hh_before = session.execute(text(
        "SELECT count(*) FROM household_grid WHERE village_code = :v"), {"v": village}).scalar_one()
    at = clock.now()
    caches = cache_versions(session)

    result = publish(session, CTX, plan["changes"], effective_at=at, base=plan["base"])
    # Grid tiles, household tiles and stored flood answers are all invalidated.
    assert all(after > before for after, before in zip(cache_versions(session), caches, strict=True))

    assert result.status == "applied" and result.publish_id > 0
    assert result.retired == [b] and result.recoded == {d: plan["new_d"]} and result.created == [plan["new_c"]]
    assert sorted(result.replaced) == sorted([a, c])
    # Staff and scopes follow: B's staff now serve A, D's serve D2; the account's scope follows both.
    assert set(session.execute(text("SELECT id FROM staff WHERE grid_code = :c"), {"c": a}).scalars()) >= staff_b
    assert set(session.execute(text("SELECT id FROM staff WHERE grid_code = :c"),
                               {"c": plan["new_d"]}).scalars()) == staff_d
    scope = session.execute(text("SELECT scope_codes FROM app_user WHERE id = :u"), {"u": user}).scalar_one()
    assert sorted(scope) == sorted([a, plan["new_d"]])
    # C was split into C and a new grid: its staff are listed for a decision.
    decision = next(x for x in result.decisions if x["grid"] == c)
    assert sorted(decision["split_into"]) == sorted([c, plan["new_c"]])
    assert {s["staff_id"] for s in decision["staff"]} == set(session.execute(
        text("SELECT id FROM staff WHERE grid_code = :c"), {"c": c}).scalars())

    # Every household and open incident: exactly the grids it was contained in before, at every
    # level, except that B became A, D became D2 and C's east half the new grid — by ST_Contains alone.
    after_places = independent_places(session, village)
    assert set(after_places) == set(before_places)
    east = _multi(plan["changes"][3].geom)
    for key, levels in after_places.items():
        assert all(len(codes) == 1 for codes in levels.values()), (key, levels)
        old = before_places[key][4][0] if 4 in before_places[key] else None
        expect = {b: a, d: plan["new_d"]}.get(old, old)
        if old == c and levels[4][0] != c:
            expect = plan["new_c"]
        assert levels[4] == [expect], (key, levels, before_places[key])
        assert {lv: cs for lv, cs in levels.items() if lv < 4} == {
            lv: cs for lv, cs in before_places[key].items() if lv < 4}
    # The stored assignments agree with the independent answer.
    mismatched = session.execute(text(
        """
        SELECT i.id FROM incident i JOIN grid g ON g.valid_to IS NULL AND g.level = 4 AND ST_Contains(g.geom, i.geom)
        WHERE i.state <> 'closed' AND g.parent_code = :v
          AND (i.group_code <> g.code OR i.grid_version_id <> g.id OR i.village_code <> g.parent_code)
        """), {"v": village}).all()
    assert mismatched == []
    hh = session.execute(text(
        """
        SELECT count(*) FILTER (WHERE hg.group_code IS DISTINCT FROM g.code) AS wrong, count(*) AS n
        FROM household h JOIN household_grid hg ON hg.household_id = h.id
        JOIN grid g ON g.valid_to IS NULL AND g.level = 4 AND ST_Contains(g.geom, h.geom) AND g.parent_code = :v
        """), {"v": village}).one()
    assert hh.wrong == 0 and hh.n > 0
    assert session.execute(text("SELECT count(*) FROM household_grid WHERE village_code = :v"),
                           {"v": village}).scalar_one() == hh_before
    assert not session.execute(text("SELECT 1 FROM household_grid WHERE group_code = ANY(:g)"),
                               {"g": [b, d]}).first()
    # Open incidents are routed to their new grid's staff.
    assert not session.execute(text(
        """
        SELECT 1 FROM incident i JOIN incident_assignee a ON a.incident_id = i.id JOIN staff s ON s.id = a.staff_id
        WHERE i.state <> 'closed' AND i.group_code = ANY(:g) AND a.duty IN ('leader', 'member')
          AND s.grid_code <> i.group_code
        """), {"g": [a, plan["new_c"], plan["new_d"]]}).first()
    # Closed incidents keep the codes and grid version they were handled under.
    for r in closed:
        now = session.execute(text("SELECT group_code, grid_version_id FROM incident WHERE id = :i"),
                              {"i": r.id}).one()
        assert (now.group_code, now.grid_version_id) == (r.group_code, r.grid_version_id)
    # The old versions end exactly where the new begin.
    periods = session.execute(text(
        "SELECT code, valid_from, valid_to FROM grid WHERE code = ANY(:g) AND (valid_to = :at OR valid_from = :at)"),
        {"g": [a, b, c, d, plan["new_c"], plan["new_d"]], "at": at}).all()
    assert {(r.code, r.valid_to is None) for r in periods} == {
        (a, True), (a, False), (b, False), (c, True), (c, False), (d, False), (plan["new_c"], True),
        (plan["new_d"], True)}
    audit = session.execute(text(
        "SELECT detail FROM audit_log WHERE action = 'publish' AND resource = 'grid' ORDER BY id DESC LIMIT 1"
    )).scalar_one()
    assert audit["publish_id"] == result.publish_id and audit["incidents_moved"] == result.incidents_moved
    _ = east


def test_undo_publishes_the_inverse_and_restores_the_grids(session, plan):
    village = plan["village"]
    before = independent_places(session, village)
    staff_before = session.execute(text("SELECT id, grid_code FROM staff ORDER BY id")).all()
    inc_before = session.execute(text(
        "SELECT id, group_code, village_code FROM incident WHERE state <> 'closed' ORDER BY id")).all()
    t0 = clock.now()
    done = publish(session, CTX, plan["changes"], effective_at=t0, base=plan["base"])
    undo = inverse_of(session, done.publish_id)
    assert [c.code for c in undo] == [c.old_code or c.code for c in plan["changes"]]
    assert publish(session, CTX, undo, effective_at=None, base=None).status == "applied"
    assert independent_places(session, village) == before
    # Staff B went to A and stays there (a merge is not a recode); everyone else is back.
    back = dict(session.execute(text("SELECT id, grid_code FROM staff ORDER BY id")).all())
    moved = {s.id for s in staff_before if back[s.id] != s.grid_code}
    assert all(dict((s.id, s.grid_code) for s in staff_before)[i] == plan["b"] for i in moved)
    assert session.execute(text(
        "SELECT id, group_code, village_code FROM incident WHERE state <> 'closed' ORDER BY id")).all() == inc_before


def test_future_publish_changes_nothing_until_the_clock_passes_it(session, plan):
    before, caches = digest(session), cache_versions(session)
    at = clock.now() + dt.timedelta(days=2)
    result = publish(session, CTX, plan["changes"], effective_at=at, base=plan["base"])
    assert result.status == "pending"
    assert digest(session) == before and cache_versions(session) == caches
    assert apply_due(session, at - dt.timedelta(seconds=1)) == []
    assert digest(session) == before
    with clock.frozen(at):
        applied = apply_due(session)
    assert [r.publish_id for r in applied] == [result.publish_id] and applied[0].status == "applied"
    assert digest(session) != before
    row = session.execute(text("SELECT status, applied_at FROM grid_publish WHERE id = :i"),
                          {"i": result.publish_id}).one()
    assert row.status == "applied" and row.applied_at == at
    # Everything at that instant: each new version starts exactly then, each old one ends then.
    starts = set(session.execute(text("SELECT valid_from FROM grid WHERE valid_to IS NULL AND code = ANY(:g)"),
                                 {"g": [plan["a"], plan["c"], plan["new_c"], plan["new_d"]]}).scalars())
    assert starts == {at}
    assert apply_due(session, at + dt.timedelta(days=1)) == []


def test_staff_moved_by_a_late_applied_publish_serve_from_its_effective_day(session, plan):
    """Applied three days after its instant (the service was down): the staff who follow their grid are on
    the new grid's roster from the plan's day (Beijing), not from the day it was applied."""
    moved = set(session.execute(text("SELECT id FROM staff WHERE grid_code = :c"), {"c": plan["b"]}).scalars())
    assert moved
    at = clock.now() + dt.timedelta(days=2)
    result = publish(session, CTX, plan["changes"], effective_at=at, base=plan["base"])
    applied = apply_due(session, at + dt.timedelta(days=3))
    assert [r.publish_id for r in applied] == [result.publish_id]
    day = at.astimezone(clock.BEIJING).date()
    rows = session.execute(text(
        "SELECT staff_id, grid_code, valid_from, valid_to FROM staff_tenure WHERE staff_id = ANY(:s) "
        "AND (grid_code = :b OR valid_to IS NULL)"), {"s": sorted(moved), "b": plan["b"]}).all()
    current = {r.staff_id: r for r in rows if r.valid_to is None}
    assert set(current) == moved and all(r.grid_code == plan["a"] and r.valid_from == day for r in current.values())
    ended = [r for r in rows if r.grid_code == plan["b"]]
    assert {r.staff_id for r in ended} == moved and all(r.valid_to == day for r in ended)


def test_a_scheduled_publish_whose_base_changed_fails_alone(session, plan):
    at = clock.now() + dt.timedelta(hours=1)
    first = publish(session, CTX, plan["changes"], effective_at=at, base=plan["base"])
    # Meanwhile A is redrawn (renamed) by another publish now.
    ga = _grid(session, plan["a"])
    publish(session, CTX, [_change(ga, name=ga["name"] + "（新）")], effective_at=clock.now(), base=None)
    applied = apply_due(session, at)
    assert [(r.publish_id, r.status) for r in applied] == [(first.publish_id, "failed")]
    failure = session.execute(text("SELECT failure FROM grid_publish WHERE id = :i"),
                              {"i": first.publish_id}).scalar_one()
    assert plan["a"] in failure


def test_changed_base_is_a_conflict_naming_the_codes(session, plan):
    stale = dict(plan["base"])
    stale[plan["c"]] = -1
    with pytest.raises(Conflict) as e:
        publish(session, CTX, plan["changes"], effective_at=clock.now(), base=stale)
    assert e.value.extra["conflicts"] == [plan["c"]]
    # A code the plan creates that someone else created meanwhile is a conflict too.
    base = {k: v for k, v in plan["base"].items() if k != plan["a"]}
    with pytest.raises(Conflict) as e:
        publish(session, CTX, plan["changes"], effective_at=clock.now(), base=base)
    assert e.value.extra["conflicts"] == [plan["a"]]


def test_exclusion_constraint_refuses_overlapping_versions(session, plan):
    g = _grid(session, plan["a"])
    with pytest.raises(IntegrityError, match="grid_period_no_overlap"), session.begin_nested():
        session.execute(text(
            "INSERT INTO grid (code, name, level, parent_code, geom, valid_from, valid_to) "
            "SELECT code, name, level, parent_code, geom, valid_from - interval '1 day', valid_from + interval '1 s' "
            "FROM grid WHERE id = :i"), {"i": g["id"]})
    # Adjacent periods are fine: a closed version ending where the current one begins.
    with session.begin_nested():
        session.execute(text(
            "INSERT INTO grid (code, name, level, parent_code, geom, valid_from, valid_to) "
            "SELECT code, name, level, parent_code, geom, valid_from - interval '1 day', valid_from "
            "FROM grid WHERE id = :i"), {"i": g["id"]})


def test_bad_changes_are_refused_with_their_place_and_write_nothing(session, plan):
    before = digest(session)
    ga = _grid(session, plan["a"])
    bowtie = MultiPolygon([shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])])
    with pytest.raises(InputError) as e:
        publish(session, CTX, [_change(ga, bowtie)], effective_at=None, base=None)
    assert e.value.problems[0].loc == ("changes", 0, "geom") and e.value.problems[0].type == "invalid_geometry"
    # Retiring a village that still has current group grids breaks the hierarchy: 422, nothing written.
    gv = _grid(session, plan["village"])
    with pytest.raises(InputError) as e:
        publish(session, CTX, [GridChange(gv["code"], 3, gv["name"], gv["parent_code"], None)],
                effective_at=None, base=None)
    assert e.value.problems[0].type in ("hierarchy", "staff_stranded")
    assert digest(session) == before
    with pytest.raises(InputError) as e:
        publish(session, CTX, plan["changes"], effective_at=clock.now() - dt.timedelta(days=1), base=None)
    assert e.value.problems[0].loc == ("body", "effective_at")


def test_two_planners_publishing_on_one_base_the_second_gets_409(scratch_db_url):
    """Two transactions publish plans drafted on the same base at once: the second waits for the
    first (one publish at a time), then finds its base changed — 409 naming the code, not last-write-wins."""
    import threading

    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from gis.db import make_sessionmaker

    engine = create_engine(scratch_db_url, poolclass=NullPool)
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        village, groups = busiest_village(s)
        g = _grid(s, groups[0])
    base = {g["code"]: g["id"]}
    first_in = threading.Event()
    outcome: dict[str, object] = {}

    def second() -> None:
        first_in.wait(30)
        with sessions() as s, s.begin():
            try:
                publish(s, CTX, [_change(g, name=g["name"] + "（乙）")], effective_at=None, base=base)
                outcome["second"] = "published"
            except Conflict as e:
                outcome["second"] = e.extra["conflicts"]

    worker = threading.Thread(target=second)
    worker.start()
    with sessions() as s, s.begin():
        publish(s, CTX, [_change(g, name=g["name"] + "（甲）")], effective_at=None, base=base)
        first_in.set()
        worker.join(1.0)
        assert worker.is_alive()   # waiting for the first publish to end
    worker.join(60)
    assert outcome["second"] == [g["code"]]
    with sessions() as s:
        assert _grid(s, g["code"])["name"] == g["name"] + "（甲）"
    engine.dispose()
