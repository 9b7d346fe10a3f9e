"""The grid map served by the real app on the sample town, opened in headless Chromium."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from maps import labels
from tests.browser import OfflinePageChecker, launch_chromium, serve_app_in_thread
from tests.conftest import settings_for  # noqa: F401

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page_and_checker(test_db_url, accounts):
    from api.main import create_app

    with serve_app_in_thread(create_app(settings_for(test_db_url))) as base, launch_chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
        page = context.new_page()
        checker = OfflinePageChecker().attach(page)
        # Not logged in: the map sends the browser to the login page, which brings it back.
        page.goto(base + "/maps/grids", wait_until="networkidle")
        assert "/login" in page.url
        page.fill("#username", accounts["command_center"]["username"])
        page.fill("#password", accounts["command_center"]["password"])
        page.click("button[type=submit]")
        page.wait_for_url(base + "/maps/grids")
        page.wait_for_function("document.documentElement.dataset.wanggeReady === '1'")
        page.evaluate("document.fonts.ready.then(() => true)")
        page.wait_for_load_state("networkidle")
        yield page, checker
        context.close()


def test_map_page_is_clean_offline(page_and_checker):
    page, checker = page_and_checker
    page.screenshot(path="/tmp/wangge_grid_map_api.png")
    checker.assert_clean()
    assert any("/static/vendor/leaflet/dist/leaflet.js" in u for u in checker.requests)


def test_four_level_layers_and_synthetic_badge(page_and_checker):
    page, _ = page_and_checker
    control = page.locator(".leaflet-control-layers").inner_text()
    for name in labels.LEVEL_LAYER_NAMES.values():
        assert name in control
    assert labels.SYNTHETIC_BADGE in page.content()
    counts = page.evaluate("[1,2,3,4].map(l => window.wanggeLayers[l].getLayers().length)")
    assert counts == [1, 4, 20, 282]


def test_clicking_a_group_grid_opens_its_popup_with_staff_and_households(page_and_checker, engine):
    page, _ = page_and_checker
    with engine.connect() as c:
        row = c.execute(
            text(
                """
                SELECT g.code, g.name, ST_X(ST_PointOnSurface(g.geom)) AS x, ST_Y(ST_PointOnSurface(g.geom)) AS y,
                       (SELECT name FROM staff WHERE grid_code = g.code AND role = 'grid_leader') AS leader,
                       (SELECT count(*) FROM household h WHERE ST_Intersects(g.geom, h.geom)) AS households
                FROM grid g WHERE g.level = 4 AND g.valid_to IS NULL
                ORDER BY ST_Area(g.geom) DESC LIMIT 1
                """
            )
        ).one()
    page.evaluate("window.wanggeMap.closePopup()")
    page.evaluate(f"window.wanggeMap.setView([{row.y}, {row.x}], 15)")
    page.wait_for_timeout(400)
    xy = page.evaluate(
        """([lat, lon]) => {
            const p = window.wanggeMap.latLngToContainerPoint([lat, lon]);
            const r = window.wanggeMap.getContainer().getBoundingClientRect();
            return [r.left + p.x, r.top + p.y];
        }""",
        [row.y, row.x],
    )
    page.mouse.click(*xy)
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for(state="visible")
    content = popup.inner_text()
    assert row.code in content
    assert row.name in content
    assert row.leader in content
    assert f"{row.households}" in content


def test_pages_are_sent_compressed(clients):
    r = clients["planner"].get("/maps/grids", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers.get("content-encoding") == "gzip"
    assert int(r.headers["content-length"]) < len(r.content) / 4
