"""GET /search: grids, natural villages, households and incidents, per role, against SQL/Python oracles."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import database_copy, make_client


@pytest.fixture(scope="module")
def db(test_db_url: Any) -> Any:
    """A private copy: household hits write audit rows, and an emergency is declared below."""
    with database_copy(test_db_url, "search") as url:
        yield url


@pytest.fixture(scope="module")
def sql(db: Any) -> Any:
    eng = create_engine(db, poolclass=NullPool)

    def run(query: str, **params: Any) -> list[Any]:
        with eng.connect() as c:
            return list(c.execute(text(query), params).mappings())

    yield run
    eng.dispose()


@pytest.fixture(scope="module")
def as_role(db: Any, accounts: dict[str, Any]) -> Any:
    made: dict[str, Any] = {}

    def get(role: str) -> Any:
        if role not in made:
            made[role] = make_client(db, role).__enter__()
        return made[role]

    yield get
    for c in made.values():
        c.__exit__(None, None, None)


def search(client: Any, q: str, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/search", params={"q": q, **params})
    assert r.status_code == 200, r.text
    hits: list[dict[str, Any]] = r.json()["hits"]
    return hits


def test_a_village_by_name_comes_with_its_extent(as_role: Any, sql: Any) -> None:
    village = sql("SELECT code, name, ST_XMin(geom) x0, ST_YMin(geom) y0, ST_XMax(geom) x1, ST_YMax(geom) y1 "
                  "FROM grid WHERE level = 3 AND valid_to IS NULL ORDER BY code LIMIT 1 OFFSET 3")[0]
    hits = search(as_role("planner"), village["name"])
    first = hits[0]
    assert first["kind"] == "grid" and first["code"] == village["code"] and first["level"] == 3
    assert village["name"] in first["label"] and "行政村" in first["label"]
    assert first["bbox"] == pytest.approx([village["x0"], village["y0"], village["x1"], village["y1"]])


def test_names_match_anywhere_from_three_characters_as_an_oracle_says(as_role: Any, sql: Any) -> None:
    grids = sql("SELECT code, name FROM grid WHERE valid_to IS NULL")
    villages = sql("SELECT id, name FROM natural_village")
    # A three-character piece from the middle of a group grid's name (e.g. "村三组" of "尹营村三组").
    name = next(g["name"] for g in sorted(grids, key=lambda g: g["code"]) if len(g["name"]) >= 5)
    q = name[1:4]
    hits = search(as_role("admin"), q, limit=50)
    want_grids = sorted(g["code"] for g in grids if q in g["name"])[:50]
    got_grids = [h["code"] for h in hits if h["kind"] == "grid"]
    assert sorted(got_grids) == sorted(want_grids[:len(got_grids)]) and got_grids
    if len(want_grids) < 50:
        assert sorted(got_grids) == want_grids
        want_nv = sorted(v["id"] for v in villages if q in v["name"])
        assert sorted(h["id"] for h in hits if h["kind"] == "natural_village") == want_nv[:50 - len(want_grids)]


def test_short_names_match_by_their_start(as_role: Any, sql: Any) -> None:
    nv = sql("SELECT id, name, ST_X(geom) lon, ST_Y(geom) lat FROM natural_village ORDER BY id LIMIT 1")[0]
    q = nv["name"][:2]
    hits = search(as_role("grid_staff"), q, limit=50)
    names = {g["name"] for g in sql("SELECT name FROM grid WHERE valid_to IS NULL")}
    want_nv = sorted(v["id"] for v in sql("SELECT id, name FROM natural_village") if v["name"].startswith(q))
    got_nv = sorted(h["id"] for h in hits if h["kind"] == "natural_village")
    n_grids = sum(1 for n in names if n.startswith(q))
    assert got_nv == want_nv[:max(0, 50 - n_grids)]
    hit = next(h for h in hits if h.get("id") == nv["id"] and h["kind"] == "natural_village")
    assert hit["point"] == pytest.approx([nv["lon"], nv["lat"]]) and "自然村" in hit["label"]
    # "anywhere" needs three characters: the second and third character alone find no name by its middle.
    middle = nv["name"][1:3]
    for h in search(as_role("admin"), middle, limit=50):
        if h["kind"] in ("grid", "natural_village"):
            assert h["label"].startswith(middle)


def test_a_code_prefix_finds_the_subtree(as_role: Any, sql: Any) -> None:
    village = sql("SELECT code FROM grid WHERE level = 3 AND valid_to IS NULL ORDER BY code LIMIT 1")[0]["code"]
    prefix = village[:12]
    want = sorted(r["code"] for r in sql("SELECT code FROM grid WHERE valid_to IS NULL AND code LIKE :p",
                                         p=prefix + "%"))
    hits = search(as_role("supervisor"), prefix, limit=50)
    assert sorted(h["code"] for h in hits if h["kind"] == "grid") == want[:50]
    assert len(want) >= 2


def test_incidents_by_id_and_external_id_only_where_the_role_sees_them(as_role: Any, sql: Any,
                                                                       accounts: dict[str, Any]) -> None:
    scope = accounts["grid_staff"]["scope_codes"]
    inside = sql("SELECT id, external_id FROM incident WHERE group_code = ANY(:s) ORDER BY id LIMIT 1", s=scope)[0]
    outside = sql("SELECT id, external_id FROM incident WHERE NOT (group_code = ANY(:s)) "
                  "AND (created_by IS NULL) ORDER BY id LIMIT 1", s=scope)[0]
    for q in (str(outside["id"]), f"#{outside['id']}", outside["external_id"]):
        assert any(h["kind"] == "incident" and h["id"] == outside["id"] for h in search(as_role("admin"), q))
        assert not any(h["kind"] == "incident" for h in search(as_role("grid_staff"), q))
        assert not any(h["kind"] == "incident" for h in search(as_role("planner"), q))
    hits = search(as_role("grid_staff"), inside["external_id"])
    assert [h["id"] for h in hits if h["kind"] == "incident"] == [inside["id"]]
    assert "事项" in hits[0]["label"]


def _audited(sql: Any, household_id: int) -> int:
    return int(sql("SELECT count(*) AS n FROM audit_log WHERE action = 'read_personal' AND resource = 'household' "
                   "AND resource_ids @> ARRAY[CAST(:i AS text)] AND path = '/search'", i=household_id)[0]["n"])


def test_households_by_the_household_rule_masked_and_audited(as_role: Any, sql: Any, accounts: dict[str, Any]) -> None:
    scope = accounts["grid_staff"]["scope_codes"]
    mine = sql("SELECT h.id, h.household_no, h.address, h.head_name FROM household h "
               "JOIN household_grid hg ON hg.household_id = h.id WHERE hg.group_code = ANY(:s) ORDER BY h.id LIMIT 1",
               s=scope)[0]
    other = sql("SELECT h.id, h.household_no, h.address FROM household h JOIN household_grid hg "
                "ON hg.household_id = h.id WHERE hg.village_code <> left(:g, 12) || '000' ORDER BY h.id LIMIT 1",
                g=scope[0])[0]

    def household_hits(role: str, q: str) -> list[dict[str, Any]]:
        return [h for h in search(as_role(role), q, limit=50) if h["kind"] == "household"]

    before = _audited(sql, mine["id"])
    shown = [h for h in household_hits("grid_staff", mine["household_no"]) if h["id"] == mine["id"]]
    assert shown and shown[0]["personal_fields"] == "shown" and mine["head_name"] in shown[0]["label"]
    assert _audited(sql, mine["id"]) == before + 1
    assert all(h["id"] != other["id"] for h in household_hits("grid_staff", other["household_no"]))
    # The command center sees every household, masked outside an emergency: found by number, never by address.
    masked = [h for h in household_hits("command_center", other["household_no"]) if h["id"] == other["id"]]
    assert masked and masked[0]["personal_fields"] == "masked" and other["address"] not in masked[0]["label"]
    assert all(h["id"] != other["id"] for h in household_hits("command_center", other["address"]))
    before_other = _audited(sql, other["id"])
    household_hits("command_center", other["household_no"])
    assert _audited(sql, other["id"]) == before_other   # nothing personal shown: nothing to audit
    # Planners see no household; emergency teams none outside an active emergency.
    for role in ("planner", "emergency"):
        assert household_hits(role, mine["household_no"]) == []
    # The admin finds it by address too.
    assert any(h["id"] == other["id"] for h in household_hits("admin", other["address"]))


def test_bad_queries_are_refused_naming_the_field(as_role: Any) -> None:
    c = as_role("admin")
    for params, field in (({"q": "村" * 51}, "q"), ({"q": "   "}, "q"), ({"q": ""}, "q"),
                          ({"q": "尹营", "limit": 51}, "limit"), ({"q": "尹营", "limit": 0}, "limit")):
        r = c.get("/search", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["errors"][0]["loc"][-1] == field
    assert c.get("/search", params={"q": "%_\\"}).status_code == 200


def test_like_wildcards_are_literal(as_role: Any) -> None:
    assert search(as_role("admin"), "%%%") == []
    assert search(as_role("admin"), "__") == []


def test_anonymous_is_refused(db: Any) -> None:
    with make_client(db, None) as c:
        assert c.get("/search", params={"q": "村"}).status_code == 401


@pytest.mark.parametrize("query, index", [
    ("SELECT code FROM grid g WHERE valid_to IS NULL AND name LIKE '%村三组%' LIMIT 10", "grid_current_name_trgm"),
    ("SELECT code FROM grid g WHERE valid_to IS NULL AND name LIKE '尹营%' LIMIT 10", "grid_current_name_prefix"),
    ("SELECT id FROM natural_village WHERE name LIKE '李%' LIMIT 10", "natural_village_name_prefix"),
    ("SELECT id FROM natural_village WHERE name LIKE '%李庄%' LIMIT 10", "natural_village_name_trgm"),
    ("SELECT id FROM household h WHERE household_no LIKE '%0001%' LIMIT 10", "household_no_trgm"),
    ("SELECT id FROM household h WHERE address LIKE '%村三组%' LIMIT 10", "household_address_trgm"),
    ("SELECT id FROM incident WHERE external_id = 'sample-00001'", "incident_external_id"),
])
def test_each_lookup_has_an_index(db: Any, query: str, index: str) -> None:
    """The lookup's condition is served by its index: with sequential scans off and the table's other
    indexes out of the way (dropped inside a transaction that is rolled back), the plan reads it."""
    eng = create_engine(db, poolclass=NullPool)
    try:
        with eng.connect() as c, c.begin() as tx:
            table = c.execute(text("SELECT tablename FROM pg_indexes WHERE indexname = :i"), {"i": index}).scalar_one()
            for (other,) in c.execute(text(
                    "SELECT i.indexrelid::regclass::text FROM pg_index i WHERE i.indrelid = CAST(:t AS regclass) "
                    "AND i.indexrelid <> CAST(:i AS regclass) AND NOT EXISTS "
                    "(SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)"), {"t": table, "i": index}).all():
                c.execute(text(f"DROP INDEX {other}"))
            c.execute(text(f"ANALYZE {table}"))
            c.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(r[0] for r in c.execute(text("EXPLAIN " + query)))
            tx.rollback()
    finally:
        eng.dispose()
    assert index in plan, plan
