"""The permission matrix: every route of the app × every role (and anonymous), checked for real.

EXPECTED is the product's rule book. The test reads the routes from the app itself, so a new
endpoint without an entry here (or without a declared rule in code) fails the suite.
"""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from api.main import create_app
from api.security import public
from gis.auth.roles import Permission, Role
from maps.shell import is_page_path
from tests.conftest import settings_for

ALL = frozenset(r.value for r in Role)
PUBLIC = "public"
ADMIN = frozenset({"admin"})
VIEWERS = ALL  # every role may see grids and the grid map
HOUSEHOLD_ROWS = frozenset({"admin", "command_center", "emergency", "grid_staff", "supervisor"})
EMERGENCY_MANAGERS = frozenset({"admin", "command_center"})
EMERGENCY_VIEWERS = frozenset({"admin", "command_center", "emergency"})
GRID_EDITORS = frozenset({"admin", "planner"})
INCIDENT_WORKERS = frozenset({"admin", "command_center", "grid_staff", "supervisor"})
FLOOD_EXTENT_EDITORS = frozenset({"admin", "command_center", "emergency"})

EXPECTED: dict[tuple[str, str], frozenset[str] | str] = {
    ("GET", "/"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("POST", "/auth/login"): PUBLIC,
    ("POST", "/auth/logout"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/auth/me"): VIEWERS,
    ("GET", "/stats"): VIEWERS,
    ("GET", "/admin/users"): ADMIN,
    ("POST", "/admin/users"): ADMIN,
    ("PATCH", "/admin/users/{user_id}"): ADMIN,
    ("GET", "/admin/users/{user_id}/tokens"): ADMIN,
    ("POST", "/admin/users/{user_id}/tokens"): ADMIN,
    ("DELETE", "/admin/tokens/{token_id}"): ADMIN,
    ("GET", "/grids"): VIEWERS,
    ("GET", "/grids/locate"): VIEWERS,
    ("POST", "/grids/locate"): VIEWERS,
    ("POST", "/grids/import"): GRID_EDITORS,
    ("GET", "/grids/{code}/history"): VIEWERS,
    ("GET", "/grids/{code}/timeline"): VIEWERS,
    ("GET", "/grids/publishes"): VIEWERS,
    ("POST", "/grids/publishes/{publish_id}/cancel"): GRID_EDITORS,
    ("GET", "/grids/{code}/card"): VIEWERS,
    ("GET", "/grids/hillshade.png"): VIEWERS,
    # Plans: drafting is the planners' (publish and undo also check edit_grids, which the same roles hold).
    ("POST", "/plans"): GRID_EDITORS,
    ("GET", "/plans"): GRID_EDITORS,
    ("GET", "/plans/{plan_id}"): GRID_EDITORS,
    ("PATCH", "/plans/{plan_id}"): GRID_EDITORS,
    ("POST", "/plans/{plan_id}/discard"): GRID_EDITORS,
    ("POST", "/plans/{plan_id}/edits"): GRID_EDITORS,
    ("GET", "/plans/{plan_id}/validation"): GRID_EDITORS,
    ("GET", "/plans/{plan_id}/impact"): GRID_EDITORS,
    ("GET", "/plans/{plan_id}/impact.csv"): GRID_EDITORS,
    ("POST", "/plans/{plan_id}/publish"): GRID_EDITORS,
    ("POST", "/plans/{plan_id}/undo"): GRID_EDITORS,
    ("POST", "/plans/{plan_id}/cancel"): GRID_EDITORS,
    ("GET", "/plans/{plan_id}/equivalency.csv"): GRID_EDITORS,
    ("POST", "/plans/{plan_id}/equivalency"): GRID_EDITORS,
    ("GET", "/plans/{plan_id}/boundaries"): GRID_EDITORS,
    ("GET", "/households"): HOUSEHOLD_ROWS,
    ("GET", "/households/counts"): ALL,
    ("GET", "/households/{household_id}"): HOUSEHOLD_ROWS,
    ("GET", "/emergencies"): EMERGENCY_VIEWERS,
    ("POST", "/emergencies"): EMERGENCY_MANAGERS,
    ("GET", "/emergencies/{emergency_id}"): EMERGENCY_VIEWERS,
    ("POST", "/emergencies/{emergency_id}/close"): EMERGENCY_MANAGERS,
    ("GET", "/audit"): ADMIN,
    ("GET", "/audit/export"): ADMIN,
    ("GET", "/maps/grids"): VIEWERS,
    ("GET", "/pages/account"): VIEWERS,
    ("GET", "/pages/incidents/{incident_id}"): INCIDENT_WORKERS | {"emergency"},
    ("GET", "/pages/review"): EMERGENCY_MANAGERS,
    ("GET", "/maps/households"): HOUSEHOLD_ROWS,
    ("GET", "/maps/incidents"): INCIDENT_WORKERS | {"emergency"},
    ("POST", "/incidents"): INCIDENT_WORKERS | {"emergency"},
    ("GET", "/incidents"): INCIDENT_WORKERS | {"emergency"},
    ("GET", "/incidents/review"): EMERGENCY_MANAGERS,
    ("POST", "/incidents/import"): EMERGENCY_MANAGERS,
    ("POST", "/register/households/import"): EMERGENCY_MANAGERS,
    ("PATCH", "/register/households/{household_no}"): EMERGENCY_MANAGERS,
    ("PATCH", "/register/households/{household_no}/residents/{id_number}"): EMERGENCY_MANAGERS,
    ("GET", "/register/households/{household_no}/residents"): HOUSEHOLD_ROWS,
    ("GET", "/register/households/{household_no}/changes"): HOUSEHOLD_ROWS,
    ("GET", "/incidents/stats"): INCIDENT_WORKERS | {"emergency"},
    ("POST", "/incidents/{incident_id}/attachments"): INCIDENT_WORKERS | {"emergency"},
    ("GET", "/incidents/{incident_id}/attachments"): INCIDENT_WORKERS | {"emergency"},
    ("GET", "/incidents/{incident_id}/attachments/{attachment_id}"): INCIDENT_WORKERS | {"emergency"},
    ("POST", "/incidents/{incident_id}/review"): EMERGENCY_MANAGERS,
    ("GET", "/incidents/{incident_id}/review/candidates"): EMERGENCY_MANAGERS,
    ("GET", "/incidents/{incident_id}"): INCIDENT_WORKERS | {"emergency"},
    ("POST", "/incidents/{incident_id}/transitions"): INCIDENT_WORKERS,
    ("POST", "/flood/extents"): FLOOD_EXTENT_EDITORS,
    ("POST", "/flood/extents/drawn"): FLOOD_EXTENT_EDITORS,
    ("GET", "/flood/extents"): EMERGENCY_VIEWERS,
    ("GET", "/flood/extents/{extent_id}"): EMERGENCY_VIEWERS,
    ("GET", "/flood/scenarios"): EMERGENCY_VIEWERS,
    ("GET", "/flood/scenarios/{stage_or_name}"): EMERGENCY_VIEWERS,
    ("POST", "/flood/scenarios"): EMERGENCY_MANAGERS,  # models a new stage: issue 11, item 8
    ("GET", "/flood/households"): HOUSEHOLD_ROWS,
    ("GET", "/flood/checklist"): HOUSEHOLD_ROWS,
    ("GET", "/flood/risk"): ALL,
    ("GET", "/maps/flood"): EMERGENCY_VIEWERS,
    ("GET", "/flood/map/water"): EMERGENCY_VIEWERS,
    ("GET", "/flood/map/shelters"): EMERGENCY_VIEWERS | {"planner"},
    ("GET", "/flood/map/assignments"): HOUSEHOLD_ROWS,
    ("GET", "/flood/map/network"): EMERGENCY_VIEWERS,
    ("GET", "/flood/map/places"): EMERGENCY_VIEWERS,
    # Hot spots: whoever may see incidents; grid staff and supervisors only over their own grids.
    ("GET", "/hotspots"): INCIDENT_WORKERS | {"emergency"},
    ("GET", "/hotspots/units/{unit_id}/incidents"): INCIDENT_WORKERS | {"emergency"},
    ("GET", "/maps/hotspots"): INCIDENT_WORKERS | {"emergency"},
    # The phone (api/mobile_pages.py): my grid and tasks, the report form and its place suggestions.
    ("GET", "/m/"): INCIDENT_WORKERS | {"emergency"},
    ("GET", "/m/report"): INCIDENT_WORKERS | {"emergency"},
    ("GET", "/places/suggest"): INCIDENT_WORKERS | {"emergency"},
    ("GET", "/me/grids"): VIEWERS,
    ("GET", "/hotspots/map"): INCIDENT_WORKERS | {"emergency"},
    # Vector tiles: each layer as its list.
    ("GET", "/tiles/layers"): VIEWERS,
    ("GET", "/tiles/grids/{z}/{x}/{y}.pbf"): VIEWERS,
    ("GET", "/tiles/incidents/{z}/{x}/{y}.pbf"): INCIDENT_WORKERS | {"emergency"},
    ("GET", "/tiles/households/{z}/{x}/{y}.pbf"): HOUSEHOLD_ROWS,
    # The command center: its page, search (each kind of hit by its own rule), the numbers of a view.
    ("GET", "/maps/command"): EMERGENCY_MANAGERS,
    ("GET", "/search"): VIEWERS,
    ("GET", "/incidents/summary"): INCIDENT_WORKERS | {"emergency"},
    ("GET", "/shelters"): frozenset({"admin", "command_center", "emergency", "planner"}),
    ("GET", "/events/incidents"): INCIDENT_WORKERS | {"emergency"},
    # The register's data-quality report (issue 14): every role, over its own area; households only as it may see them.
    ("GET", "/register/quality"): ALL,
    ("GET", "/pages/quality"): ALL,
    # The register back as files (issue 14): personal fields as each role may see them.
    ("GET", "/register/export.gpkg"): EMERGENCY_VIEWERS,
    ("GET", "/register/export.xlsx"): EMERGENCY_VIEWERS,
    # Issue 14, roster: places, DEM uploads (IMPORT_REGISTER: admin, command center).
    ("POST", "/places/{kind}/import"): EMERGENCY_MANAGERS,
    ("POST", "/flood/dem"): EMERGENCY_MANAGERS,
    ("GET", "/flood/dem/jobs/{job_id}"): EMERGENCY_MANAGERS,
    # Issue 14, roster: the staff roster, 联系户, single staff edits; who served a grid when (like the card).
    ("POST", "/staff/import"): EMERGENCY_MANAGERS,
    ("POST", "/staff/responsibilities/import"): EMERGENCY_MANAGERS,
    ("POST", "/staff"): EMERGENCY_MANAGERS,
    ("PATCH", "/staff/{staff_id}"): EMERGENCY_MANAGERS,
    ("DELETE", "/staff/{staff_id}"): EMERGENCY_MANAGERS,
    ("GET", "/grids/{code}/staff"): VIEWERS,
    ("GET", "/plans/suggestions"): GRID_EDITORS,
    ("GET", "/plans/units"): GRID_EDITORS,
    ("GET", "/plans/suggestions/impact"): GRID_EDITORS,
    ("POST", "/plans/suggestions/publish"): GRID_EDITORS,
    ("POST", "/plans/suggestions"): GRID_EDITORS,
    ("GET", "/maps/planner"): GRID_EDITORS,
}

# A query for routes that would otherwise answer an endless event stream: refused (422) after the access check.
QUERY = {"/events/incidents": "?after=not-a-cursor"}

# Path parameters that exist nowhere, so an allowed call can do no harm (404/422, never a write).
PATH_VALUES = {
    "user_id": "987654321",
    "token_id": "987654321",
    "code": "411324105888888",
    "household_id": "987654321",
    "emergency_id": "987654321",
    "incident_id": "987654321",
    "attachment_id": "987654321",
    "extent_id": "987654321",
    "publish_id": "987654321",
    "stage_or_name": "no-such-scenario",
    "unit_id": "411324105888888",
    "plan_id": "987654321",
    "z": "3", "x": "0", "y": "0",   # a tile far from the town: empty
    "kind": "shelters",
    "job_id": "987654321",
    "staff_id": "987654321",
    "household_no": "NO-SUCH-HOUSEHOLD",
    "id_number": "11010519491231002X",
}


def app_routes(app) -> list[APIRoute]:
    def walk(routes):
        for r in routes:
            if isinstance(r, APIRoute):
                yield r
            elif hasattr(r, "original_router"):
                yield from walk(r.original_router.routes)

    return list(walk(app.routes))


def declared_rule(route: APIRoute):
    """The permission a route declares through its dependencies: a Permission, 'public', or None."""
    found = []

    def walk(dependant):
        for dep in dependant.dependencies:
            call = dep.call
            if call is public:
                found.append(PUBLIC)
            elif hasattr(call, "permission") and call.permission is not None:
                found.append(call.permission)
            walk(dep)

    walk(route.dependant)
    return found


@pytest.fixture(scope="module")
def routes():
    return [(m, r) for r in app_routes(create_app()) for m in sorted(r.methods - {"HEAD"})]


def test_every_route_has_exactly_one_rule_and_an_expectation(routes):
    seen = set()
    for method, route in routes:
        key = (method, route.path)
        seen.add(key)
        rules = declared_rule(route)
        assert len(rules) == 1, f"{key}: declares {rules or 'no'} access rule (use require/require_page/public)"
        assert key in EXPECTED, f"{key} has no line in the permission matrix"
    assert set(EXPECTED) - seen == set(), "the matrix names routes the app does not have"


def test_declared_rules_agree_with_the_matrix(routes):
    from gis.auth.roles import allows

    for method, route in routes:
        rule = declared_rule(route)[0]
        expected = EXPECTED[(method, route.path)]
        if rule == PUBLIC:
            assert expected == PUBLIC, (method, route.path)
        else:
            assert isinstance(rule, Permission)
            assert frozenset(r.value for r in Role if allows(r, rule)) == expected, (method, route.path)


def test_openapi_document_lists_every_schema_route(routes):
    doc = create_app().openapi()
    for method, route in routes:
        if route.include_in_schema:
            assert method.lower() in doc["paths"][route.path], (method, route.path)


@pytest.mark.parametrize("who", sorted(ALL) + ["anonymous"])
def test_every_route_answers_each_role_as_the_matrix_says(routes, clients, who):
    client = clients[who]
    wrong = []
    for method, route in routes:
        expected = EXPECTED[(method, route.path)]
        path = route.path.format(**PATH_VALUES) + QUERY.get(route.path, "")
        is_page = method == "GET" and is_page_path(route.path)
        r = client.request(method, path, follow_redirects=False)
        allowed = expected == PUBLIC or who in expected
        if allowed:
            ok = r.status_code not in (401, 403) and r.status_code < 500
        elif who == "anonymous":
            ok = (r.status_code == 303 and "/login" in r.headers["location"]) if is_page else r.status_code == 401
        else:
            ok = r.status_code == 403
        if not ok:
            wrong.append(f"{method} {path}: {r.status_code} (allowed={allowed})")
        if not allowed and r.status_code in (401, 403):
            if is_page:
                # A refused page is a Chinese page, never raw JSON.
                assert r.headers["content-type"].startswith("text/html"), (method, path)
                assert "无权" in r.text, (method, path)
            else:
                assert r.headers["content-type"].startswith("application/problem+json"), (method, path)
    assert wrong == []


def test_a_revoked_or_unknown_token_is_401_not_anonymous(clients):
    r = clients["anonymous"].get("/grids", headers={"Authorization": "Bearer wg_not-a-token"})
    assert r.status_code == 401
    assert "invalid_token" in r.headers["www-authenticate"]
    r = clients["anonymous"].get("/grids", headers={"Authorization": "Basic abc"})
    assert r.status_code == 401


def test_settings_helper_builds_isolated_settings(test_db_url):
    # The matrix runs against the read-only sample database; nothing above may write to it.
    s = settings_for(test_db_url)
    assert s.database_pool_size == 0 and test_db_url.database in s.database_url
