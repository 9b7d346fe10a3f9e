"""The page shell: navigation by role, who is logged in, logout, Chinese refusal pages, safe page data."""

from __future__ import annotations

import json

import pytest

from gis.auth.principal import Principal
from gis.auth.roles import ROLE_NAMES_ZH, Role
from maps.shell import NAV, json_for_script, make_shell, nav_for, problem_lines, top_bar
from tests.conftest import screenshot_path

HOSTILE = '</script><script>alert(1)</script><!-- {{7*7}} \u2028 & "'


def principal(role: Role, scope: tuple[str, ...] = ()) -> Principal:
    return Principal(user_id=1, username="u", role=role, scope_codes=scope)


def test_page_data_cannot_end_its_script_element():
    text = json_for_script({"description": HOSTILE})
    assert "<" not in text and ">" not in text and "\u2028" not in text
    assert json.loads(text) == {"description": HOSTILE}


@pytest.mark.parametrize("role", list(Role))
def test_navigation_lists_exactly_the_pages_the_role_may_open(role):
    shown = {item.href for item in nav_for(principal(role))}
    assert shown == {item.href for item in NAV if principal(role).can(item.permission)}
    bar = top_bar("标题", make_shell(principal(role), synthetic=True, current="/maps/grids"))
    for item in NAV:
        assert (f'href="{item.href}"' in bar) == (item.href in shown)
    assert ROLE_NAMES_ZH[role] in bar and "退出登录" in bar and "wangge-synthetic-badge" in bar


def test_the_top_bar_escapes_the_title_and_user_name():
    shell = make_shell(Principal(user_id=1, username="<b>x</b>", role=Role.ADMIN), synthetic=False, current="/")
    bar = top_bar("<img src=x onerror=alert(1)>", shell)
    assert "<img" not in bar and "<b>" not in bar and "&lt;img" in bar


def test_field_errors_are_named_in_chinese():
    errors = [{"loc": ["query", "grid_code"], "msg": "String should match", "type": "string_pattern_mismatch"},
              {"loc": ["body", "description"], "type": "missing"}]
    lines = problem_lines({"errors": errors})
    assert lines == ["网格：格式不正确", "事件描述：必须填写"]
    assert problem_lines({"detail": "choose a grid"}) == []
    assert problem_lines({"detail": "服务器繁忙，请稍后重试"}) == ["服务器繁忙，请稍后重试"]


def test_a_refused_page_is_a_chinese_page_and_an_api_refusal_stays_json(clients):
    # 422 on a page: the household map needs a grid for town-wide roles.
    r = clients["command_center"].get("/maps/households", params={"grid_code": "12"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
    assert "输入有误" in r.text and "网格：格式不正确" in r.text and '"errors"' not in r.text
    # 403 on a page: a planner may not see incidents.
    r = clients["planner"].get("/maps/incidents")
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    assert "无权" in r.text and "退出登录" in r.text
    # The same refusal through the API stays problem+json for programs.
    r = clients["planner"].get("/incidents")
    assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")


def test_the_start_page_is_the_first_page_of_the_role(clients):
    for role in ("command_center", "planner", "grid_staff"):
        r = clients[role].get("/", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == nav_for(principal(Role(role)))[0].href
    r = clients["anonymous"].get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


@pytest.mark.browser
@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_menu_and_logout_work_in_a_browser(open_as, site, phone):
    base, _ = site
    page, checker, status = open_as("grid_staff", "/pages/account", phone=phone)
    assert status == 200
    assert page.text_content("#account-role") == ROLE_NAMES_ZH[Role.GRID_STAFF]
    page.click("#wangge-menu-button")
    links = page.locator("#wangge-nav a")
    assert sorted(links.evaluate_all("els => els.map(e => e.getAttribute('href'))")) == sorted(
        item.href for item in nav_for(principal(Role.GRID_STAFF)))
    assert links.first.is_visible()
    page.screenshot(path=screenshot_path(f"shell-menu-{'phone' if phone else 'desktop'}"))
    # The bar fits the screen: nothing of it runs off to the right on a phone.
    width = page.evaluate("document.getElementById('wangge-bar').scrollWidth")
    assert width <= page.viewport_size["width"]
    page.click("#wangge-menu-button")
    with page.expect_navigation():
        page.click("#wangge-logout")
    assert "/login" in page.url
    page.goto(base + "/pages/account")
    assert "/login" in page.url  # the session is gone
    checker.assert_clean()
