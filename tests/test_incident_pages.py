"""Incident detail and review queue (issue 13): the detail's `actions` are the POST routes' own rule,
the reviewer's grid candidates and reassignment, and the pages /pages/incidents/{id} and
/pages/review driven in headless Chromium on a desktop and a phone."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from gis.auth.principal import Principal
from gis.auth.roles import Role
from gis.errors import Forbidden, InputError, NotFound
from gis.incidents import service
from gis.incidents.loop import Action, State

TOLERANCE_M = 200.0
WHEN = "2026-11-20T09:00:00+08:00"


def _principal(accounts: dict[str, dict[str, Any]], role: str) -> Principal:
    a = accounts[role]
    return Principal(a["id"], a["username"], Role(role), tuple(a["scope_codes"]))


def _point_in(session: Any, code: str) -> tuple[float, float]:
    x, y = session.execute(text(
        "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM grid WHERE code = :c "
        "AND valid_to IS NULL) s"), {"c": code}).one()
    return float(x), float(y)


def _report(session: Any, who: Principal, lon: float, lat: float, description: str = "测试事项") -> int:
    req = service.IntakeRequest(category="environment", description=description, occurred_at=WHEN,
                                lon=lon, lat=lat)
    return service.intake(session, who, req, outside_tolerance_m=TOLERANCE_M, duplicate_radius_m=0.0,
                          duplicate_window_hours=0.0).id


def _accepted(session: Any, who: Principal, incident_id: int, action: Action) -> bool:
    """Whether the loop's POST operation takes `action` now (tried inside a savepoint, undone)."""
    nested = session.begin_nested()
    try:
        service.transition(session, who, incident_id, action.value)
        return True
    except (Forbidden, InputError):
        return False
    finally:
        nested.rollback()


def test_actions_are_exactly_what_the_transition_accepts(session, accounts):
    """For every role, in every state of the loop, for an incident in the grid staff's grid and one a
    grid member reported in another grid: `actions` lists an action iff the POST accepts it."""
    who = {role: _principal(accounts, role) for role in accounts}
    own_grid = accounts["grid_staff"]["scope_codes"][0]
    other = session.execute(text(
        "SELECT min(code) FROM grid WHERE level = 4 AND valid_to IS NULL AND parent_code <> :v"),
        {"v": own_grid[:12] + "000"}).scalar_one()
    mine = _report(session, who["admin"], *_point_in(session, own_grid))
    elsewhere = _report(session, who["grid_staff"], *_point_in(session, other))
    path = [Action.ADVANCE] * 4 + [Action.NOT_SATISFIED, Action.ADVANCE, Action.SATISFIED]
    seen: dict[str, set[str]] = {}
    for step in [None, *path]:
        for incident_id in (mine, elsewhere):
            if step is not None and incident_id == mine:
                service.transition(session, who["admin"], incident_id, step.value)
            for role, p in who.items():
                try:
                    actions = service.get_incident(session, p, incident_id)["actions"]
                except NotFound:
                    with pytest.raises(NotFound):
                        service.transition(session, p, incident_id, "advance")
                    continue
                loop = [a.value for a in Action if _accepted(session, p, incident_id, a)]
                assert [a for a in actions if a in {x.value for x in Action}] == loop, (role, incident_id, step)
                seen.setdefault(role, set()).update(loop)
    state = service.get_incident(session, who["admin"], mine)["state"]
    assert state == State.CLOSED
    # The rule has teeth: workers advance, only the command center and admins reopen, the
    # emergency team and the reporter from another grid never work the loop.
    assert seen["grid_staff"] == {"advance", "satisfied", "not_satisfied"}
    assert seen["command_center"] == seen["admin"] == {"advance", "satisfied", "not_satisfied", "reopen"}
    assert seen["emergency"] == set()
    assert "planner" not in seen
    assert service.get_incident(session, who["grid_staff"], elsewhere)["actions"] == []


def _edge_point(session: Any) -> tuple[float, float, str, str]:
    """A point on the edge two group grids share, and the two codes."""
    row = session.execute(text(
        "SELECT ST_X(p) x, ST_Y(p) y, a, b FROM (SELECT ST_PointOnSurface(ST_Intersection(ST_Boundary(a.geom), "
        "ST_Boundary(b.geom))) p, a.code a, b.code b FROM grid a JOIN grid b ON a.code < b.code "
        "AND ST_Touches(a.geom, b.geom) WHERE a.level = 4 AND b.level = 4 AND a.valid_to IS NULL "
        "AND b.valid_to IS NULL AND GeometryType(ST_Intersection(ST_Boundary(a.geom), ST_Boundary(b.geom))) "
        "LIKE '%LINESTRING' ORDER BY a.code, b.code LIMIT 1) s")).one()
    return float(row.x), float(row.y), row.a, row.b


def test_review_actions_candidates_and_reassignment(session, accounts):
    cc, staff = _principal(accounts, "command_center"), _principal(accounts, "grid_staff")
    x, y, a, b = _edge_point(session)
    iid = _report(session, cc, x, y)
    detail = service.get_incident(session, cc, iid)
    assert detail["flagged"] and detail["group_code"] == a          # the smaller code wins on an edge
    assert detail["actions"] == ["advance", "review", "reassign"]
    assert [s["code"] for s in detail["grid_path"]][-1] == a and detail["grid_path"][0]["level"] == 1
    candidates = service.grid_candidates(session, cc, iid, tolerance_m=TOLERANCE_M)
    near = {c["code"]: c for c in candidates}
    assert near[a]["current"] and near[a]["distance_m"] == 0 and near[b]["distance_m"] == 0
    assert [c["distance_m"] for c in candidates] == sorted(c["distance_m"] for c in candidates)
    far = session.execute(text(
        "SELECT g.code FROM grid g, incident i WHERE i.id = :i AND g.level = 4 AND g.valid_to IS NULL "
        "ORDER BY ST_Distance(g.geom::geography, i.geom::geography) DESC LIMIT 1"), {"i": iid}).scalar_one()
    assert far not in near
    with pytest.raises(InputError) as refused:
        service.reassign(session, cc, iid, far, tolerance_m=TOLERANCE_M)
    assert refused.value.problems[0].loc == ("body", "grid_code")
    with pytest.raises(Forbidden):
        service.grid_candidates(session, staff, iid, tolerance_m=TOLERANCE_M)
    moved = service.reassign(session, cc, iid, b, tolerance_m=TOLERANCE_M)
    assert moved["group_code"] == b and moved["village_code"] == b[:12] + "000"
    assert moved["reviewed_at"] is not None and "review" not in moved["actions"]
    staff_of_b = set(session.execute(text(
        "SELECT id FROM staff WHERE grid_code IN (:b, :v)"), {"b": b, "v": b[:12] + "000"}).scalars())
    assert {p["staff_id"] for p in moved["assignees"]} <= staff_of_b and moved["assignees"]
    assert iid not in {i["id"] for i in service.review_queue(session, cc, limit=1000).items}
