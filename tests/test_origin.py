"""Cookie-authenticated writes and logins only from the service's own pages (Origin checks).

Every unsafe route of the app (read from the app, not a hand list) refuses a session-cookie
request whose Origin or Sec-Fetch-Site names another site; the same request from the service's
own origin, and any request with a bearer token, is not refused for its origin.
"""

from __future__ import annotations

import string

import pytest

from api.main import create_app
from api.origin import TITLE_ZH, UNSAFE_METHODS
from gis.settings import Settings
from tests.conftest import TEST_PASSWORD, live_site, make_client
from tests.test_permissions import PATH_VALUES, app_routes

OWN = "https://testserver"
FOREIGN = {"origin": "https://evil.example"}
FOREIGN_HEADERS = [
    {"origin": "https://evil.example"},
    {"origin": "http://testserver"},            # same host, other scheme: another origin
    {"origin": "https://testserver.evil.example"},
    {"origin": "null"},                         # sandboxed frames, data: pages
    {"sec-fetch-site": "cross-site"},           # a browser that sent no Origin
    {"sec-fetch-site": "same-site"},            # a sibling subdomain is not this service
]


def _unsafe_routes() -> list[tuple[str, str]]:
    # Building the app connects to nothing (the pool is made at startup).
    settings = Settings(DATABASE_URL="postgresql://nobody@localhost/none", database_pool_size=0)
    app = create_app(settings)
    found = sorted({(m, r.path) for r in app_routes(app) for m in r.methods if m in UNSAFE_METHODS})
    assert ("POST", "/login") in found and ("PATCH", "/admin/users/{user_id}") in found
    return found


UNSAFE_ROUTES = _unsafe_routes()


def _is_origin_refusal(resp) -> bool:
    return resp.status_code == 403 and resp.json().get("type", "").endswith("/foreign-origin")


@pytest.fixture(scope="module")
def admin_session(test_db_url, accounts):
    """A client logged in as the admin through the session cookie (no bearer token)."""
    with make_client(test_db_url, None) as c:
        creds = {"username": accounts["admin"]["username"], "password": TEST_PASSWORD}
        r = c.post("/auth/login", json=creds, headers={"origin": OWN})
        assert r.status_code == 200, r.text
        yield c


@pytest.mark.parametrize(("method", "path"), UNSAFE_ROUTES)
def test_every_unsafe_route_refuses_a_foreign_origin_with_the_session_cookie(
    admin_session, method, path
):
    url = path.format_map({k: PATH_VALUES.get(k, "1") for k in _params(path)})
    for headers in FOREIGN_HEADERS:
        refused = admin_session.request(method, url, headers=headers, json={})
        assert _is_origin_refusal(refused), (method, url, headers, refused.text)
        body = refused.json()
        assert body["title"] == TITLE_ZH and "WANGGE_TRUSTED_ORIGINS" in body["detail"]
    # The same request from the service's own page is not refused for its origin.
    if path != "/auth/logout":  # (would end the session the other cases use)
        own = admin_session.request(method, url, headers={"origin": OWN}, json={})
        assert not _is_origin_refusal(own), (method, url, own.text)
    assert admin_session.get("/auth/me").status_code == 200  # the session was not touched


def _params(path: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(path) if name]


@pytest.mark.parametrize("path", ["/login", "/auth/login"])
def test_a_foreign_page_cannot_log_a_browser_in(test_db_url, accounts, path):
    creds = {"username": accounts["planner"]["username"], "password": TEST_PASSWORD}
    with make_client(test_db_url, None) as c:
        c.follow_redirects = False
        send = (lambda h: c.post(path, data=creds, headers=h)) if path == "/login" else (
            lambda h: c.post(path, json=creds, headers=h))
        refused = send(FOREIGN)
        assert _is_origin_refusal(refused) and "set-cookie" not in refused.headers
        assert c.get("/auth/me").status_code == 401
        ok = send({"origin": OWN, "sec-fetch-site": "same-origin"})
        assert ok.status_code in (200, 303) and "set-cookie" in ok.headers
        assert c.get("/auth/me").json()["username"] == creds["username"]


def test_same_origin_and_token_writes_still_work(test_db_url, scratch_db_url, accounts):
    target = accounts["planner"]["id"]
    with make_client(scratch_db_url, None) as c:
        admin = {"username": accounts["admin"]["username"], "password": TEST_PASSWORD}
        assert c.post("/auth/login", json=admin).status_code == 200
        same = c.patch(f"/admin/users/{target}", json={"display_name": "同源"},
                       headers={"origin": OWN})
        assert same.status_code == 200 and same.json()["display_name"] == "同源"
        fetched = c.patch(f"/admin/users/{target}", json={"display_name": "本站"},
                          headers={"sec-fetch-site": "same-origin"})
        assert fetched.status_code == 200
        assert c.post("/auth/logout", headers={"origin": OWN}).json() == {"logged_out": True}
    with make_client(scratch_db_url, "admin") as tok:  # a bearer token carries no ambient authority
        r = tok.patch(f"/admin/users/{target}", json={"display_name": "令牌"}, headers=FOREIGN)
        assert r.status_code == 200 and r.json()["display_name"] == "令牌"


def test_trusted_origins_setting_admits_a_proxy_address(test_db_url, accounts):
    creds = {"username": accounts["planner"]["username"], "password": TEST_PASSWORD}
    with make_client(test_db_url, None, trusted_origins=("https://wangge.example.gov.cn",)) as c:
        proxied = c.post("/auth/login", json=creds, headers={"origin": "https://wangge.example.gov.cn"})
        assert proxied.status_code == 200, proxied.text
        assert _is_origin_refusal(c.post("/auth/login", json=creds, headers=FOREIGN))


def test_login_form_in_chromium_works_and_a_foreign_page_cannot_use_it(scratch_db_url, accounts):
    user = accounts["planner"]
    with live_site(scratch_db_url) as (base, browser):
        context = browser.new_context(locale="zh-CN")
        page = context.new_page()
        page.goto(base + "/login?next=/auth/me")
        page.fill("#username", user["username"])
        page.fill("#password", user["password"])
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert page.url == base + "/auth/me" and user["username"] in page.content()
        # A script on the page writes with the session (same origin) ...
        assert page.evaluate("fetch('/auth/logout', {method: 'POST'}).then(r => r.status)") == 200
        context.close()

        # ... while a page of another origin (localhost vs 127.0.0.1) posting the form is refused.
        foreign = base.replace("127.0.0.1", "localhost")
        context = browser.new_context(locale="zh-CN")
        page = context.new_page()
        page.goto(foreign + "/login")
        with page.expect_navigation() as nav:
            page.evaluate(
                """([action, username, password]) => {
                    const form = document.createElement('form');
                    form.method = 'post'; form.action = action;
                    for (const [name, value] of [['username', username], ['password', password]]) {
                        const input = document.createElement('input');
                        input.name = name; input.value = value; form.appendChild(input);
                    }
                    document.body.appendChild(form); form.submit();
                }""",
                [base + "/login", user["username"], user["password"]],
            )
        assert nav.value.status == 403
        assert TITLE_ZH in page.content()
        assert not [c for c in context.cookies() if c["name"] == "wangge_session"]
        context.close()
