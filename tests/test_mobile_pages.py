"""The grid member's phone: place suggestions as you type, tasks overdue first, my grids, and the /m/
pages driven in headless Chromium on a phone (and once on a desktop)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.incidents import gazetteer as G
from tests.conftest import make_client, report_incident


def _one(engine, sql: str, **params):
    with engine.connect() as conn:
        return conn.execute(text(sql), params).first()


# --- /places/suggest ----------------------------------------------------------------------------

def test_a_half_typed_group_name_suggests_that_group_grid_first_among_grids(clients, engine, accounts):
    code = accounts["grid_staff"]["scope_codes"][0]
    grid = _one(engine, "SELECT name, code FROM grid WHERE code = :c AND valid_to IS NULL", c=code)
    village = _one(engine, "SELECT name FROM grid WHERE code = :c AND valid_to IS NULL", c=code[:12] + "000").name
    # The name as a phone user types it half-way: the village, then the group's number in Chinese, no 组 yet.
    number = G.canonical(grid.name)[len(G.canonical(village)):].removesuffix("组")
    chinese = "零一二三四五六七八九"[int(number)] if int(number) < 10 else number
    r = clients["grid_staff"].get("/places/suggest", params={"q": village + chinese})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    grids = [s for s in items if s["kind"] == "grid"]
    assert grids and grids[0]["label"] == grid.name and grids[0]["code"] == grid.code
    # Everything offered starts with what was typed (read as a name) or is a close fuzzy match.
    forms = G.partial_forms(village + chinese)
    assert all(any(G.canonical(s["label"]).startswith(f) for f in forms) for s in items[:len(grids)])
    assert len(items) <= 8


def test_every_suggestion_resolves_back_to_the_place_it_offered(clients, session):
    for typed in ("尹营", "魏岭村二", "小学", "李邦相村第", "崔营村十"):
        r = clients["admin"].get("/places/suggest", params={"q": typed, "limit": 10})
        assert r.status_code == 200, (typed, r.text)
        items = r.json()["items"]
        assert items, typed
        for s in items:
            hit = G.resolve(session, s["label"])
            assert (hit.kind, round(hit.lon, 6), round(hit.lat, 6)) == (
                s["kind"], round(s["lon"], 6), round(s["lat"], 6)), (typed, s)


def test_house_addresses_are_suggested_only_to_those_who_may_see_them_and_audited(clients, engine, accounts):
    code = accounts["grid_staff"]["scope_codes"][0]
    inside = _one(engine, "SELECT h.id, h.address FROM household h JOIN LATERAL household_grid_at(h.geom) g "
                  "ON true WHERE g.group_code = :c ORDER BY h.id LIMIT 1", c=code)
    outside = _one(engine, "SELECT h.id, h.address FROM household h JOIN LATERAL household_grid_at(h.geom) g "
                   "ON true WHERE g.village_code <> :v ORDER BY h.id LIMIT 1", v=code[:12] + "000")
    before = _one(engine, "SELECT coalesce(max(id), 0) AS m FROM audit_log").m

    def offered(role: str, address: str) -> list[int]:
        r = clients[role].get("/places/suggest", params={"q": address})
        assert r.status_code == 200, r.text
        return [s["household_id"] for s in r.json()["items"] if s["kind"] == "household"]

    assert inside.id in offered("grid_staff", inside.address)
    assert outside.id not in offered("grid_staff", outside.address)
    assert offered("grid_staff", outside.address) == []
    # The command center sees no personal field outside an active emergency: no address offered.
    assert offered("command_center", inside.address) == []
    assert inside.id in offered("admin", inside.address)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT actor, resource_ids FROM audit_log WHERE id > :b AND action = 'read_personal' "
            "AND resource = 'household' AND path = '/places/suggest' ORDER BY id"), {"b": before}).all()
    assert [(r.actor, str(inside.id) in r.resource_ids) for r in rows] == [
        ("test_grid_staff", True), ("test_admin", True)]


@pytest.mark.parametrize(("params", "field"), [
    ({"q": "村" * (G.MAX_PLACE_CHARS + 1)}, "q"),
    ({"q": ""}, "q"),
    ({"q": "尹营", "limit": G.MAX_SUGGESTIONS + 1}, "limit"),
    ({"q": "尹营", "limit": 0}, "limit"),
])
def test_bad_suggestion_queries_are_refused_naming_the_field(clients, params, field):
    r = clients["grid_staff"].get("/places/suggest", params=params)
    assert r.status_code == 422, r.text
    assert field in r.text


def test_text_that_is_no_number_is_no_error(clients):
    for typed in ("十十组", "三十三十", "第", "尹营村三三组"):
        r = clients["grid_staff"].get("/places/suggest", params={"q": typed})
        assert r.status_code == 200, (typed, r.text)


def test_suggestions_need_the_right_to_report(clients):
    assert clients["anonymous"].get("/places/suggest", params={"q": "尹营"}).status_code == 401
    assert clients["planner"].get("/places/suggest", params={"q": "尹营"}).status_code == 403


def test_suggestions_read_the_in_memory_index_only(engine):
    """Index-backed: once the gazetteer is built, a suggestion runs its version check and, for house
    addresses offered, their access check: no statement reads the names again."""
    from sqlalchemy import event

    from gis.auth.principal import Principal
    from gis.auth.roles import Role
    from gis.context import Context
    from gis.db import make_sessionmaker

    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    with make_sessionmaker(engine)() as s:
        G.gazetteer(s)
        event.listen(engine, "before_cursor_execute", seen)
        try:
            found = G.suggest(s, Context(Principal(1, "x", Role.COMMAND_CENTER)), "尹营村", 8)
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        s.rollback()
    assert found.items and found.more
    assert not any("UNION ALL" in q for q in statements), statements
    assert len(statements) <= 2, statements


# --- my tasks: overdue first --------------------------------------------------------------------

def test_open_incidents_in_deadline_order_put_the_overdue_first(scratch_db_url, accounts):
    code = accounts["grid_staff"]["scope_codes"][0]
    with make_client(scratch_db_url, "grid_staff") as staff:
        lon, lat = _inside(scratch_db_url, code)
        answers = [report_incident(staff, lon, lat, description=f"任务{k}", category=cat)
                   for k, cat in enumerate(("environment", "safety_hazard", "livelihood", "environment"))]
        assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
        ids = [a.json()["id"] for a in answers]
        # Two of them started their stage long ago: past their deadlines, one longer than the other.
        engine = create_engine(scratch_db_url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.execute(text("UPDATE incident SET state_entered_at = now() - interval '40 days' WHERE id = :i"),
                         {"i": ids[2]})
            conn.execute(text("UPDATE incident SET state_entered_at = now() - interval '90 days' WHERE id = :i"),
                         {"i": ids[3]})
        r = staff.get("/incidents", params={"grid_code": code, "open": "true", "order": "deadline", "limit": 500})
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        with engine.connect() as conn:
            oracle = [row.id for row in conn.execute(text(
                "SELECT id FROM incident WHERE group_code = :c AND state <> 'closed' "
                "ORDER BY stage_deadline, id"), {"c": code})]
        engine.dispose()
        assert [i["id"] for i in items] == oracle
        flags = [i["overdue"] for i in items]
        assert flags == sorted(flags, reverse=True)       # every overdue one before every other
        assert {ids[2], ids[3]} <= {i["id"] for i in items if i["overdue"]}
        assert all(i["state"] != "closed" for i in items)
        deadlines = [dt.datetime.fromisoformat(i["deadline"]) for i in items]
        assert deadlines == sorted(deadlines)
        # The default order is unchanged: newest first.
        newest = staff.get("/incidents", params={"grid_code": code, "limit": 500}).json()["items"]
        assert [(i["occurred_at"], i["id"]) for i in newest] == sorted(
            ((i["occurred_at"], i["id"]) for i in newest), reverse=True)
        assert staff.get("/incidents", params={"order": "oldest"}).status_code == 422


def _inside(url, code: str) -> tuple[float, float]:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT ST_X(p) AS lon, ST_Y(p) AS lat FROM (SELECT ST_PointOnSurface(geom) p "
                                "FROM grid WHERE code = :c AND valid_to IS NULL) s"), {"c": code}).one()
    engine.dispose()
    return row.lon, row.lat


# --- my grids -----------------------------------------------------------------------------------

def test_my_grids_name_the_grids_of_my_scope_with_their_staff(clients, engine, accounts):
    for role in ("grid_staff", "supervisor"):
        r = clients[role].get("/me/grids")
        assert r.status_code == 200, r.text
        grids = r.json()["grids"]
        assert [g["code"] for g in grids] == sorted(accounts[role]["scope_codes"])
        for g in grids:
            with engine.connect() as conn:
                staff = conn.execute(text("SELECT id, name, phone FROM staff WHERE grid_code = :c"),
                                     {"c": g["code"]}).all()
                town = conn.execute(text("SELECT name FROM grid WHERE level = 1 AND valid_to IS NULL")).scalar_one()
            assert {s["id"] for s in g["staff"]} == {s.id for s in staff}
            assert g["path"][0] == town and len(g["path"]) == g["level"] - 1
            if role == "grid_staff":
                assert g["staff"][0]["role"] == "grid_leader"
    assert clients["admin"].get("/me/grids").json() == {"grids": []}
    assert clients["anonymous"].get("/me/grids").status_code == 401
