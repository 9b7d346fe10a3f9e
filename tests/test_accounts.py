"""Sessions, tokens and login throttling: they take effect at once."""

from __future__ import annotations

from tests.conftest import TEST_PASSWORD, make_client


def login(client, username, password=TEST_PASSWORD):
    return client.post("/auth/login", json={"username": username, "password": password})


def test_login_sets_a_hardened_cookie_and_logout_ends_it_at_once(scratch_db_url, accounts):
    with make_client(scratch_db_url, None) as c:
        assert c.get("/auth/me").status_code == 401
        r = login(c, accounts["planner"]["username"])
        assert r.status_code == 200, r.text
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
        me = c.get("/auth/me").json()
        assert me["role"] == "planner" and "edit_grids" in me["permissions"]
        stolen = c.cookies.get("wangge_session")
        assert c.post("/auth/logout").json() == {"logged_out": True}
        # The old cookie value, replayed, is dead: the session was revoked in the database.
        c.cookies.set("wangge_session", stolen, domain="testserver")
        assert c.get("/auth/me").status_code == 401


def test_wrong_password_and_unknown_user_answer_alike(scratch_db_url, accounts):
    with make_client(scratch_db_url, None) as c:
        a = login(c, accounts["planner"]["username"], "wrong-password-1")
        b = login(c, "nobody_here", "wrong-password-1")
        assert a.status_code == b.status_code == 401
        assert a.json()["title"] == b.json()["title"]


def test_login_is_throttled_even_for_the_right_password(scratch_db_url, accounts):
    user = accounts["supervisor"]["username"]
    with make_client(scratch_db_url, None, login_max_failures=3) as c:
        for _ in range(3):
            assert login(c, user, "guess-guess-1").status_code == 401
        locked = login(c, user)
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) > 0
        # Other accounts from elsewhere are not locked by it.
        assert login(c, accounts["planner"]["username"]).status_code == 200


def test_login_page_flow_and_no_open_redirect(scratch_db_url, accounts):
    with make_client(scratch_db_url, None) as c:
        c.follow_redirects = False
        r = c.get("/maps/grids")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/maps/grids"
        page = c.get("/login", params={"next": "/maps/grids"})
        assert page.status_code == 200 and 'name="password"' in page.text
        bad = c.post("/login", data={"username": accounts["planner"]["username"], "password": "nope-nope-1"})
        assert bad.status_code == 401 and "用户名或密码错误" in bad.text
        ok = c.post("/login", data={"username": accounts["planner"]["username"], "password": TEST_PASSWORD,
                                    "next": "//evil.example/steal"})
        assert ok.status_code == 303 and ok.headers["location"] == "/maps/grids"
        assert c.get("/maps/grids").status_code == 200


def test_revoked_token_is_refused_at_once(scratch_db_url, accounts):
    with make_client(scratch_db_url, "admin") as admin:
        issued = admin.post(f"/admin/users/{accounts['grid_staff']['id']}/tokens", json={"name": "platform X"})
        assert issued.status_code == 201, issued.text
        secret, token_id = issued.json()["token"], issued.json()["id"]
        listed = admin.get(f"/admin/users/{accounts['grid_staff']['id']}/tokens").json()
        assert all("token" not in t and "hash" not in str(t) for t in listed)
        with make_client(scratch_db_url, None) as c:
            c.headers["Authorization"] = f"Bearer {secret}"
            assert c.get("/auth/me").json()["role"] == "grid_staff"
            assert admin.delete(f"/admin/tokens/{token_id}").status_code == 200
            assert c.get("/auth/me").status_code == 401


def test_role_change_ends_sessions_and_applies_at_once(scratch_db_url, accounts):
    with make_client(scratch_db_url, None) as c, make_client(scratch_db_url, "admin") as admin:
        assert login(c, accounts["command_center"]["username"]).status_code == 200
        assert c.get("/households", params={"limit": 1}).status_code == 200
        r = admin.patch(f"/admin/users/{accounts['command_center']['id']}", json={"role": "planner"})
        assert r.status_code == 200 and r.json()["role"] == "planner"
        assert c.get("/households", params={"limit": 1}).status_code == 401  # session ended
        with make_client(scratch_db_url, "command_center") as tok:  # the token follows the new role
            assert tok.get("/households", params={"limit": 1}).status_code == 403


def test_admin_api_refuses_bad_accounts(clients):
    admin = clients["admin"]
    weak = admin.post("/admin/users", json={"username": "x_weak", "password": "short", "role": "planner"})
    assert weak.status_code == 422 and weak.json()["errors"][0]["loc"] == ["body", "password"]
    noscope = admin.post("/admin/users", json={"username": "x_ns", "password": "long-enough-pw", "role": "grid_staff"})
    assert noscope.status_code == 422 and noscope.json()["errors"][0]["loc"] == ["body", "scope_codes"]
    ghost = admin.post("/admin/users", json={"username": "x_gh", "password": "long-enough-pw", "role": "grid_staff",
                                             "scope_codes": ["411324105888001"]})
    assert ghost.status_code == 422 and ghost.json()["errors"][0]["type"] == "unknown_grid"
    dup = admin.post("/admin/users", json={"username": "TEST_ADMIN", "password": "long-enough-pw", "role": "planner"})
    assert dup.status_code == 422 and dup.json()["errors"][0]["type"] == "duplicate"
    role = admin.post("/admin/users", json={"username": "x_r", "password": "long-enough-pw", "role": "king"})
    assert role.status_code == 422
