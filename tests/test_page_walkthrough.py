"""A newcomer's walkthrough: every role logs in and opens every page its menu offers, on a desktop and on a
phone, the way a user does. Each page must open (a menu never leads to a refusal), show its data, stay clean
offline (no console error, no remote or failed request), show the synthetic-data badge and who is logged in,
keep the top bar off the map's controls on a phone, and let the user log out; refusals are Chinese pages."""

from __future__ import annotations

import pytest

from gis.auth.principal import Principal
from gis.auth.roles import ROLE_NAMES_ZH, Role
from maps.shell import nav_for
from tests.browser import OfflinePageChecker
from tests.conftest import DESKTOP, PHONE, screenshot_path

# Not walked here: /docs is not a shell page.
SKIPPED = frozenset({"/docs"})
MAP_PAGES = frozenset({"/maps/command", "/maps/grids", "/maps/incidents", "/maps/households", "/maps/hotspots",
                       "/maps/flood"})
# Pages that keep the live feed open: the network is never idle there.
LIVE_PAGES = frozenset({"/maps/command"})
# Phone walks for the roles that work on a phone or see the most pages (the rest: desktop only, to keep time).
PHONE_ROLES = (Role.ADMIN, Role.GRID_STAFF, Role.EMERGENCY, Role.PLANNER)
# Each page's own sign that its first data is shown (set by the page's script).
READY = {
    "/maps/flood": "document.documentElement.dataset.floodReady === '1'",
    "/maps/command": "document.documentElement.dataset.commandReady === '1'",
}
MAP_READY = "document.documentElement.dataset.wanggeLoaded === '1'"
SHELL_READY = "document.documentElement.dataset.wanggeReady === '1'"
# Largest share of a phone's screen the map's open-by-default overlays (legend, panels) may cover.
MAX_OVERLAY_SHARE = 0.40


def menu_of(role: Role) -> list[str]:
    principal = Principal(user_id=1, username="walker", role=role)
    return [item.href for item in nav_for(principal) if item.href not in SKIPPED]


def slug(path: str) -> str:
    return path.strip("/").replace("/", "-") or "root"


def log_in(page, base: str, account: dict) -> None:
    page.goto(base + "/login", wait_until="networkidle")
    page.fill("#username", account["username"])
    page.fill("#password", account["password"])
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.wait_for_load_state("load")  # the role's first page may be the command center (never idle)


def wait_shown(page, path: str) -> None:
    page.wait_for_function(SHELL_READY, timeout=30_000)
    if path in READY:
        page.wait_for_function(READY[path], timeout=30_000)
    elif path in MAP_PAGES:
        page.wait_for_function(MAP_READY, timeout=30_000)
    if path not in LIVE_PAGES:
        page.wait_for_load_state("networkidle")


# On a phone: where each Leaflet control stands against the bar and the screen, how much of the screen the
# overlays cover, and whether the page is wider than the screen.
_LAYOUT_JS = """() => {
    const bar = document.getElementById('wangge-bar').getBoundingClientRect();
    const vw = window.innerWidth, vh = window.innerHeight;
    const controls = [];
    let covered = 0;
    for (const el of document.querySelectorAll('.leaflet-control')) {
        const r = el.getBoundingClientRect();
        if (r.width === 0 || r.height === 0 || getComputedStyle(el).visibility === 'hidden') continue;
        controls.push({cls: el.className, id: el.id, top: r.top, left: r.left, right: r.right, bottom: r.bottom});
        const w = Math.max(0, Math.min(r.right, vw) - Math.max(r.left, 0));
        const h = Math.max(0, Math.min(r.bottom, vh) - Math.max(r.top, bar.bottom));
        covered += w * h;
    }
    return {barBottom: bar.bottom, vw, vh, controls, share: covered / (vw * vh),
            scrollWidth: document.documentElement.scrollWidth};
}"""


def check_phone_layout(page, path: str) -> None:
    layout = page.evaluate(_LAYOUT_JS)
    assert layout["scrollWidth"] <= layout["vw"], f"{path} scrolls sideways on a phone: {layout['scrollWidth']}px"
    if path not in MAP_PAGES:
        return
    assert layout["controls"], f"{path}: no map control on a phone"
    for c in layout["controls"]:
        where = f"{path}: control {c['id'] or c['cls']} at {c}"
        assert c["top"] >= layout["barBottom"] - 0.5, "the top bar covers " + where
        assert c["left"] >= 0 and c["right"] <= layout["vw"] + 0.5, "off the screen sideways: " + where
        assert c["bottom"] <= layout["vh"] + 0.5, "below the screen: " + where
    assert layout["share"] <= MAX_OVERLAY_SHARE, f"{path}: overlays cover {layout['share']:.0%} of a phone screen"


def walk(site, account: dict, role: Role, *, phone: bool) -> None:
    base, browser = site
    viewport = "phone" if phone else "desktop"
    context = browser.new_context(**(PHONE if phone else DESKTOP))
    try:
        page = context.new_page()
        checker = OfflinePageChecker().attach(page)
        log_in(page, base, account)
        pages = menu_of(role)
        assert pages, f"{role} has no page"
        for path in pages:
            checker.assert_clean()
            # Leaving a live page ends its event stream (and any tile still loading): aborted, which the
            # checker keeps apart from failures.
            response = page.goto(base + path, wait_until="load")
            assert response is not None and response.status == 200, f"{role} {path}: HTTP {response.status}"
            wait_shown(page, path)
            page.screenshot(path=screenshot_path(f"walk-{role}-{slug(path)}-{viewport}"))
            assert page.locator("#wangge-error-page").count() == 0, f"{role} {path}: an error page"
            banner = page.locator("#wangge-banner.error")
            assert banner.count() == 0 or not banner.is_visible(), f"{role} {path}: {banner.text_content()}"
            assert page.locator("#wangge-synthetic-badge").is_visible(), f"{role} {path}: no synthetic badge"
            who = page.locator("#wangge-who")
            assert account["username"] in who.text_content() and ROLE_NAMES_ZH[role] in who.text_content()
            if not phone:
                assert who.is_visible(), f"{role} {path}: the user's name is not shown"
            assert page.locator("#wangge-logout").is_visible(), f"{role} {path}: no logout"
            # This page is in the menu and marked as the current one.
            page.click("#wangge-menu-button")
            current = page.locator("#wangge-nav a[aria-current=page]")
            assert current.is_visible() and current.get_attribute("href") == path
            page.click("#wangge-menu-button")
            if phone:
                check_phone_layout(page, path)
            problems = checker.problems()
            assert not problems, f"{role} {path} ({viewport}) is not clean offline:\n" + "\n".join(problems)
        # Logging out from the last page leads to the login form, and the pages ask for a login again.
        with page.expect_navigation():
            page.click("#wangge-logout")
        page.wait_for_load_state("networkidle")
        assert "/login" in page.url
        page.goto(base + pages[0], wait_until="networkidle")
        assert "/login" in page.url
    finally:
        context.close()


@pytest.mark.parametrize("role", list(Role))
def test_every_menu_page_opens_with_its_data_on_a_desktop(site, accounts, role):
    walk(site, accounts[role], role, phone=False)


@pytest.mark.parametrize("role", PHONE_ROLES)
def test_every_menu_page_opens_with_its_data_on_a_phone(site, accounts, role):
    walk(site, accounts[role], role, phone=True)


# A refusal on a page: (role, path, status) — a bad grid code, and a page outside the role's menu.
REFUSALS = [
    (Role.COMMAND_CENTER, "/maps/households?grid_code=bad", 422),
    (Role.PLANNER, "/maps/incidents", 403),
    (Role.PLANNER, "/pages/review", 403),
    (Role.GRID_STAFF, "/maps/flood", 403),
    (Role.EMERGENCY, "/pages/review", 403),
]


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_a_refused_page_is_a_chinese_page_with_a_way_back(site, accounts, phone):
    base, browser = site
    context = browser.new_context(**(PHONE if phone else DESKTOP))
    try:
        page = context.new_page()
        for role, path, status in REFUSALS:
            principal = Principal(user_id=1, username="walker", role=role)
            assert path.split("?")[0] not in {item.href for item in nav_for(principal)} or status == 422
            context.clear_cookies()
            log_in(page, base, accounts[role])
            start = page.url
            response = page.goto(base + path, wait_until="networkidle")
            assert response is not None and response.status == status, f"{role} {path}: {response.status}"
            assert response.headers["content-type"].startswith("text/html")
            error = page.locator("#wangge-error-page")
            assert error.is_visible() and error.get_attribute("data-status") == str(status)
            text = page.locator("body").inner_text()
            assert "{" not in text and "detail" not in text, f"{role} {path}: raw JSON shown: {text}"
            assert any("\u4e00" <= ch <= "\u9fff" for ch in error.inner_text())
            assert page.locator("#wangge-synthetic-badge").is_visible()
            page.screenshot(path=screenshot_path(f"walk-{role}-refused-{status}-{'phone' if phone else 'desktop'}"))
            # A way back: the link returns to the page the user came from.
            with page.expect_navigation():
                page.get_by_role("link", name="返回上一页").click()
            page.wait_for_load_state("networkidle")
            assert page.url == start, f"{role} {path}: back led to {page.url}, not {start}"
            # And a way home (opened without history, back goes nowhere): the first page of the role's menu.
            page.goto(base + path, wait_until="networkidle")
            home = nav_for(principal)[0].href
            with page.expect_navigation():
                page.click("#wangge-home-link")
            wait_shown(page, home)
            assert page.url == base + home and page.locator("#wangge-error-page").count() == 0
    finally:
        context.close()
