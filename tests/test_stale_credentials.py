"""A token or session issued before a change to its user never keeps the old privileges.

For each kind of user change (role, scope, deactivation, password through the API and through the
CLI) and each credential issued before it (a browser session, a plain token, a token issued with
an explicit role or scope), the credential is checked on a route the old privileges allowed.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.auth.principal import narrowed_access
from gis.auth.roles import Role
from tests.conftest import database_copy, inside_point, make_client, report_incident, stored_report

PASSWORD = "old-password-12345"
NEW_PASSWORD = "new-password-67890"
CREDENTIALS = ("session", "token", "narrowed_token")
CHANGES = ("role", "scope", "deactivate", "password_api", "password_cli")


@pytest.fixture(scope="module")
def db_url(test_db_url, accounts):
    """One private copy for the module: each test makes its own user in it."""
    with database_copy(test_db_url, "stale") as url:
        yield url


@pytest.fixture(scope="module")
def admin(db_url):
    with make_client(db_url, "admin") as c:
        yield c


@pytest.fixture(scope="module")
def two_grids(db_url):
    """Two group grids that both have households, and a household id in the first."""
    engine = create_engine(db_url, poolclass=NullPool)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT g.code, min(h.id) FROM grid g "
            "JOIN household h ON ST_Intersects(g.geom, h.geom) "
            "WHERE g.level = 4 AND g.valid_to IS NULL GROUP BY g.code ORDER BY g.code LIMIT 2"
        )).all()
    engine.dispose()
    assert len(rows) == 2
    return rows[0][0], rows[1][0], rows[0][1]


def _setup(change: str, two_grids):
    """(role, scope, route that the old privileges allow, the PATCH body or None)."""
    old_grid, new_grid, household_id = two_grids
    if change == "role":
        return "admin", [], "/admin/users", {"role": "planner"}
    if change == "scope":
        return "grid_staff", [old_grid], f"/households/{household_id}", {"scope_codes": [new_grid]}
    if change == "deactivate":
        return "command_center", [], "/households?limit=1", {"active": False}
    village = old_grid[:12] + "000"
    return "supervisor", [village], f"/households/{household_id}", {"password": NEW_PASSWORD}


def _change_password_with_cli(db_url, username, monkeypatch):
    from typer.testing import CliRunner

    from gis import settings as settings_mod
    from gis.cli import app

    monkeypatch.setenv("DATABASE_URL", db_url.render_as_string(hide_password=False))
    settings_mod.get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["users", "set-password", username],
                                    input=NEW_PASSWORD + "\n")
    finally:
        settings_mod.get_settings.cache_clear()
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("credential", CREDENTIALS)
@pytest.mark.parametrize("change", CHANGES)
def test_credentials_issued_before_a_change_lose_the_old_privileges(
    db_url, admin, two_grids, change, credential, monkeypatch
):
    role, scope, route, patch = _setup(change, two_grids)
    username = f"u_{uuid.uuid4().hex[:10]}"
    made = admin.post("/admin/users", json={"username": username, "password": PASSWORD,
                                            "role": role, "scope_codes": scope})
    assert made.status_code == 201, made.text
    user_id = made.json()["id"]
    with make_client(db_url, None) as c:
        if credential == "session":
            login = c.post("/auth/login", json={"username": username, "password": PASSWORD})
            assert login.status_code == 200
        else:
            body = {"name": "before the change"}
            if credential == "narrowed_token":  # issued with the user's role and scope spelt out
                body |= {"role": role, "scope_codes": scope or None}
            issued = admin.post(f"/admin/users/{user_id}/tokens", json=body)
            assert issued.status_code == 201, issued.text
            c.headers["Authorization"] = f"Bearer {issued.json()['token']}"
        before = c.get(route)
        assert before.status_code == 200, before.text

        if change == "password_cli":
            _change_password_with_cli(db_url, username, monkeypatch)
        else:
            assert admin.patch(f"/admin/users/{user_id}", json=patch).status_code == 200

        after = c.get(route)
        assert after.status_code in (401, 403, 404), (change, credential, after.text)
        if change in ("deactivate", "password_api", "password_cli") or credential == "session":
            # The credential itself is dead, not merely short of a permission.
            assert c.get("/auth/me").status_code == 401
    if change.startswith("password"):
        with make_client(db_url, None) as fresh:  # the new password works
            ok = fresh.post("/auth/login", json={"username": username, "password": NEW_PASSWORD})
            assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("change", ["revoke", "deactivate", "role", "scope"])
def test_a_report_after_its_caller_changed_is_made_for_the_caller_found(db_url, admin, two_grids, change):
    """The same token reports before and after a change to it or its user. The process keeps what each credential
    last granted (for the checks that ride in a route's message, `api.security.Check.within`); a report is
    written and answered for the caller as found when it is made, and nothing is written for the old one."""
    old_grid, new_grid, _ = two_grids
    username = f"r_{uuid.uuid4().hex[:10]}"
    user = admin.post("/admin/users", json={"username": username, "password": PASSWORD, "role": "grid_staff",
                                            "scope_codes": [old_grid]})
    assert user.status_code == 201, user.text
    issued = admin.post(f"/admin/users/{user.json()['id']}/tokens", json={"name": "phone"}).json()
    old_point = inside_point(db_url, old_grid)

    with make_client(db_url, None) as c:
        c.headers["Authorization"] = f"Bearer {issued['token']}"
        seen = report_incident(c, *old_point, external_id=f"{username}-1")
        assert seen.status_code == 201, seen.text
        assert seen.json()["actions"], "a member works the incidents of their own grid"
        patch = {"role": {"role": "planner"}, "deactivate": {"active": False},
                 "scope": {"scope_codes": [new_grid]}}.get(change)
        if patch is None:
            assert admin.delete(f"/admin/tokens/{issued['id']}").status_code in (200, 204)
        else:
            assert admin.patch(f"/admin/users/{user.json()['id']}", json=patch).status_code == 200

        again = report_incident(c, *old_point, external_id=f"{username}-2")
        if change == "scope":   # stored, and answered for the member as moved: the old grid is not theirs to work
            assert again.status_code == 201, again.text
            assert again.json()["group_code"] == old_grid and again.json()["actions"] == []
            moved = report_incident(c, *inside_point(db_url, new_grid), external_id=f"{username}-3")
            assert moved.status_code == 201 and moved.json()["actions"], moved.text
        else:
            assert again.status_code == (403 if change == "role" else 401), again.text
        assert stored_report(db_url, f"{username}-2") == ((1, 1, 1) if change == "scope" else (0, 0, 0))
    assert stored_report(db_url, f"{username}-1") == (1, 1, 1)


def test_a_moved_members_token_sees_the_new_grid_and_not_the_old(db_url, admin, two_grids):
    old_grid, new_grid, _ = two_grids
    username = f"u_{uuid.uuid4().hex[:10]}"
    user = admin.post("/admin/users", json={"username": username, "password": PASSWORD,
                                            "role": "grid_staff", "scope_codes": [old_grid]}).json()
    secret = admin.post(f"/admin/users/{user['id']}/tokens", json={"name": "t"}).json()["token"]
    admin.patch(f"/admin/users/{user['id']}", json={"scope_codes": [new_grid]})
    with make_client(db_url, None) as c:
        c.headers["Authorization"] = f"Bearer {secret}"
        assert c.get("/auth/me").json()["scope_codes"] == [new_grid]
        old = c.get("/households", params={"grid_code": old_grid}).json()
        assert old["total"] == 0 and old["items"] == []
        assert c.get("/households", params={"grid_code": new_grid}).json()["total"] > 0


def test_an_admins_token_narrowed_to_a_grid_stays_narrow(db_url, admin, accounts, two_grids):
    old_grid, new_grid, household_id = two_grids
    issued = admin.post(f"/admin/users/{accounts['admin']['id']}/tokens",
                        json={"name": "field tablet", "role": "grid_staff",
                              "scope_codes": [new_grid]})
    assert issued.status_code == 201, issued.text
    with make_client(db_url, None) as c:
        c.headers["Authorization"] = f"Bearer {issued.json()['token']}"
        me = c.get("/auth/me").json()
        assert me["role"] == "grid_staff" and me["scope_codes"] == [new_grid]
        assert c.get("/admin/users").status_code == 403
        assert c.get(f"/households/{household_id}").status_code in (403, 404)


@pytest.mark.parametrize(
    ("user_role", "user_scope", "token_role", "token_scope", "expected"),
    [
        ("admin", (), None, None, ("admin", ())),
        ("admin", (), "grid_staff", ["A"], ("grid_staff", ("A",))),
        ("planner", (), "admin", None, None),                 # demoted admin
        ("grid_staff", ("B",), None, None, ("grid_staff", ("B",))),
        ("grid_staff", ("B",), None, ["A"], None),            # moved from A to B
        ("grid_staff", ("B", "C"), "grid_staff", ["A", "B"], ("grid_staff", ("B",))),
        ("supervisor", ("V",), "grid_staff", ["A"], None),     # role changed under the token
        ("planner", (), None, ["A"], None),                   # a grid token of a former member
        ("planner", (), None, [], ("planner", ())),
    ],
)
def test_narrowed_access_never_widens(user_role, user_scope, token_role, token_scope, expected):
    got = narrowed_access(Role(user_role), user_scope, token_role, token_scope)
    assert (None if got is None else (str(got[0]), got[1])) == expected
