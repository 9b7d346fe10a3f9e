"""Vector tiles × every role: no other grid's point, no personal field where the role may not see it.

For each role the visible incidents and households (and the households whose personal fields it may
see) are worked out here from the stored rows and grid polygons by the README's rules, independently of
the tile SQL, and every tile over the grid staff's grid, a neighbouring village and the whole town is
checked against them: point tiles hold exactly the visible rows in their box, aggregates add up to the
visible count, properties are only the layer's fields. Run without an emergency (the emergency team sees
no household) and with one (its households, and the command center sees their personal fields).
"""

from __future__ import annotations

from typing import Any

import pytest
import shapely
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.privacy import PERSONAL_FIELDS
from tests.conftest import database_copy, make_client, report_incident
from tests.test_tiles import boxed, features, in_tile, same_ids, tile_of, town_tiles

ROLES = ("admin", "command_center", "emergency", "planner", "grid_staff", "supervisor")
INCIDENT_ROLES = ("admin", "command_center", "emergency", "grid_staff", "supervisor")
HOUSEHOLD_ROLES = ("admin", "command_center", "emergency", "grid_staff", "supervisor")
INCIDENT_FIELDS = {"id", "category", "state", "overdue", "flagged"}
HOUSEHOLD_FIELDS = {"id", "group_code", "residents", "elderly", "children", "disabled", "pregnant", "bedridden",
                    "floors"}
PERSONAL = set(PERSONAL_FIELDS["household"])


@pytest.fixture(scope="module")
def town(test_db_url: Any, accounts: dict[str, dict[str, Any]]) -> Any:
    """A private copy of the sample town where the grid staff reported one incident outside their grid."""
    with database_copy(test_db_url, "tileroles") as url:
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as c:
            grids = {code: (level, shapely.from_wkb(bytes(g))) for code, level, g in c.execute(text(
                "SELECT code, level, ST_AsBinary(geom) FROM grid WHERE valid_to IS NULL"))}
        scope = accounts["grid_staff"]["scope_codes"][0]
        other = next(code for code, (level, _) in sorted(grids.items())
                     if level == 4 and code[:12] != scope[:12])
        p = grids[other][1].representative_point()
        with make_client(url, "grid_staff") as staff:
            made = report_incident(staff, p.x, p.y)
            assert made.status_code == 201, made.text
        with engine.connect() as c:
            incidents = [dict(r) for r in c.execute(text(
                "SELECT id, state, ST_X(geom) AS lon, ST_Y(geom) AS lat, group_code, village_code, area_code, "
                "town_code, created_by FROM incident")).mappings()]
            households = [dict(r) for r in c.execute(text(
                "SELECT id, head_name, phone, address, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM household"
            )).mappings()]
        engine.dispose()
        yield {"url": url, "grids": grids, "incidents": incidents, "households": households, "scope": scope,
               "other": other, "own_report": made.json()["id"]}


@pytest.fixture(scope="module")
def clients(town: Any) -> Any:
    made = {role: make_client(town["url"], role) for role in ROLES}
    for c in made.values():
        c.__enter__()
    yield made
    for c in made.values():
        c.__exit__(None, None, None)


def visible_incidents(town: Any, accounts: dict[str, dict[str, Any]], role: str) -> dict[int, Any]:
    """Open incidents `role` may see: all for the town-wide roles; grid staff and supervisors those of
    their grids' subtrees and the ones they reported."""
    rows = [r for r in town["incidents"] if r["state"] != "closed"]
    if role in ("admin", "command_center", "emergency"):
        return {r["id"]: r for r in rows}
    scope, uid = set(accounts[role]["scope_codes"]), accounts[role]["id"]
    return {r["id"]: r for r in rows
            if scope & {r["group_code"], r["village_code"], r["area_code"], r["town_code"]} or r["created_by"] == uid}


def visible_households(town: Any, accounts: dict[str, dict[str, Any]], role: str,
                       emergency: Any) -> tuple[dict[int, Any], set[int]]:
    """(households `role` may see, ids whose personal fields it may see), by the README's rules."""
    rows = town["households"]
    pts = shapely.points([r["lon"] for r in rows], [r["lat"] for r in rows])
    every = {r["id"]: r for r in rows}
    flooded = ({r["id"] for r, hit in zip(rows, shapely.intersects(emergency, pts), strict=True) if hit}
               if emergency is not None else set())
    if role == "admin":
        return every, set(every)
    if role == "command_center":
        return every, flooded
    if role == "emergency":
        return {i: every[i] for i in flooded}, flooded
    area = shapely.union_all([town["grids"][c][1] for c in accounts[role]["scope_codes"]])
    own = {r["id"] for r, hit in zip(rows, shapely.intersects(area, pts), strict=True) if hit}
    return {i: every[i] for i in own}, own


def tiles_over(geom: Any, z: int) -> list[tuple[int, int]]:
    x0, y0, x1, y1 = geom.bounds
    return town_tiles([{"lon": x0, "lat": y0}, {"lon": x1, "lat": y1}], z)


def places(town: Any) -> Any:
    """The grid staff's group grid and a group grid of another village (with the staff's own report)."""
    return town["grids"][town["scope"]][1], town["grids"][town["other"]][1]


@pytest.mark.parametrize("role", INCIDENT_ROLES)
def test_incident_tiles_show_exactly_the_role_s_incidents(town: Any, accounts: Any, clients: Any, role: str) -> None:
    visible = visible_incidents(town, accounts, role)
    client = clients[role]
    for place in places(town):
        for x, y in tiles_over(place, 14):
            feats = features(client.get(f"/tiles/incidents/14/{x}/{y}.pbf"), "incidents")
            sure, edge = boxed(list(visible.values()), 14, x, y)
            same_ids([f["properties"]["id"] for f in feats], sure, edge)
            assert all(set(f["properties"]) == INCIDENT_FIELDS for f in feats)
    total = sum(f["properties"]["count"] for x, y in town_tiles(town["incidents"], 12)
                for f in features(client.get(f"/tiles/incidents/12/{x}/{y}.pbf"), "incidents"))
    assert total == len(visible)
    if role in ("grid_staff", "supervisor"):
        assert len(visible) < len([r for r in town["incidents"] if r["state"] != "closed"])
    if role == "grid_staff":   # their own report in another village is theirs to follow
        assert town["own_report"] in visible


def test_grid_staff_get_no_point_of_another_grid(town: Any, accounts: Any, clients: Any) -> None:
    """The other village's tiles, as grid staff: their own report, nothing else of that village."""
    _, other = places(town)
    got: set[int] = set()
    for x, y in tiles_over(other, 14):
        got |= {f["properties"]["id"] for f in features(clients["grid_staff"].get(f"/tiles/incidents/14/{x}/{y}.pbf"),
                                                         "incidents")}
    by_id = {r["id"]: r for r in town["incidents"]}
    scope = town["scope"]
    assert town["own_report"] in got
    assert all(by_id[i]["group_code"] == scope or i == town["own_report"] for i in got)
    admin_sees = set()
    for x, y in tiles_over(other, 14):
        admin_sees |= {f["properties"]["id"] for f in features(clients["admin"].get(f"/tiles/incidents/14/{x}/{y}.pbf"),
                                                               "incidents")}
    assert len(admin_sees - got) >= 1   # there was something to hide


def test_planner_gets_no_incident_or_household_tile(clients: Any) -> None:
    for layer in ("incidents", "households"):
        r = clients["planner"].get(f"/tiles/{layer}/12/3300/1650.pbf")
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")


def check_household_tiles(town: Any, accounts: Any, clients: Any, role: str, emergency: Any) -> int:
    """Every household tile over the two places (points) and the town (aggregates) as `role`; returns
    how many point features carried personal fields."""
    visible, personal = visible_households(town, accounts, role, emergency)
    client = clients[role]
    shown = 0
    spots = list(places(town)) + ([emergency] if emergency is not None else [])
    for place in spots:
        for x, y in tiles_over(place, 15):
            r = client.get(f"/tiles/households/15/{x}/{y}.pbf")
            feats = features(r, "households")
            sure, edge = boxed(list(visible.values()), 15, x, y)
            same_ids([f["properties"]["id"] for f in feats], sure, edge)
            for f in feats:
                p = f["properties"]
                truth = visible[p["id"]]
                if p["id"] in personal:
                    assert set(p) - {"phone"} == HOUSEHOLD_FIELDS | PERSONAL - {"phone"}
                    assert all(p.get(k) == truth[k] for k in PERSONAL)
                    shown += 1
                else:   # not even a masked copy
                    assert set(p) == HOUSEHOLD_FIELDS, (role, p)
            if any(f["properties"]["id"] in personal for f in feats):
                assert r.headers["cache-control"] == "private, no-store"
    total = sum(f["properties"]["count"] for x, y in town_tiles(town["households"], 13)
                for f in features(client.get(f"/tiles/households/13/{x}/{y}.pbf"), "households"))
    assert total == len(visible)
    return shown


@pytest.mark.parametrize("role", HOUSEHOLD_ROLES)
def test_household_tiles_without_an_emergency(town: Any, accounts: Any, clients: Any, role: str) -> None:
    shown = check_household_tiles(town, accounts, clients, role, None)
    assert (shown > 0) == (role in ("admin", "grid_staff", "supervisor"))


def test_household_tiles_during_an_emergency(town: Any, accounts: Any, clients: Any) -> None:
    """Declaring an emergency changes the households layer (its version, so every ETag): the emergency
    team then sees the households inside it with their personal fields, the command center their
    personal fields, and each such tile is audited with exactly the ids it carried."""
    rows = town["households"]
    # A square around the grid staff's neighbouring village's busiest z15 tile: many households.
    other = places(town)[1]
    c = other.centroid
    emergency = shapely.box(c.x - 0.004, c.y - 0.003, c.x + 0.004, c.y + 0.003)
    x, y = tile_of(c.x, c.y, 15)
    url = f"/tiles/households/15/{x}/{y}.pbf"
    before = clients["emergency"].get(url)
    assert before.status_code == 204
    declared = clients["admin"].post("/emergencies", json={
        "title": "测试汛情", "reason": "瓦片测试", "extent": shapely.geometry.mapping(emergency)})
    assert declared.status_code == 201, declared.text
    after = clients["emergency"].get(url, headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
    inside = [r for r in rows if emergency.contains(shapely.Point(r["lon"], r["lat"]))]
    assert any(in_tile(r["lon"], r["lat"], 15, x, y) for r in inside)

    engine = create_engine(town["url"], poolclass=NullPool)
    with engine.connect() as conn:
        mark = conn.execute(text("SELECT coalesce(max(id), 0) FROM audit_log")).scalar_one()
    for role in HOUSEHOLD_ROLES:
        assert check_household_tiles(town, accounts, clients, role, emergency) > 0, role
    with engine.connect() as conn:
        audits = conn.execute(text(
            "SELECT a.role, a.resource_ids FROM audit_log a "
            "WHERE a.id > :m AND a.action = 'read_personal' AND a.resource = 'household'"), {"m": mark}).all()
    engine.dispose()
    pts = {r["id"]: shapely.Point(r["lon"], r["lat"]) for r in rows}
    cc = [ids for role, ids in audits if role == "command_center"]
    assert cc and all(emergency.intersects(pts[int(i)]) for ids in cc for i in ids)
    assert {role for role, _ in audits} == set(HOUSEHOLD_ROLES)
