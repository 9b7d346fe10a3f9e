"""The grid map (/maps/grids) served by the real app on the sample town, in headless Chromium: a light
page in the shell whose four levels come from the grid list by view, a grid's card on click."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from maps import labels
from tests.browser import OfflinePageChecker
from tests.conftest import DESKTOP, screenshot_path
from tests.map_pages import open_loaded, wait_loaded

pytestmark = pytest.mark.browser
PATH = "/maps/grids"


@pytest.fixture(scope="module")
def page_and_checker(site, accounts):
    base, browser = site
    context = browser.new_context(**DESKTOP)
    page = context.new_page()
    checker = OfflinePageChecker().attach(page)
    # Not logged in: the map sends the browser to the login page, which brings it back.
    page.goto(base + PATH, wait_until="networkidle")
    assert "/login" in page.url
    page.fill("#username", accounts["command_center"]["username"])
    page.fill("#password", accounts["command_center"]["password"])
    page.click("button[type=submit]")
    page.wait_for_url(base + PATH)
    wait_loaded(page)
    yield page, checker
    context.close()


def _largest_group_grid(engine):
    with engine.connect() as c:
        return c.execute(
            text(
                """
                SELECT g.code, g.name, g.parent_code, ST_X(ST_PointOnSurface(g.geom)) AS x,
                       ST_Y(ST_PointOnSurface(g.geom)) AS y,
                       (SELECT name FROM staff WHERE grid_code = g.code AND role = 'grid_leader') AS leader,
                       (SELECT count(*) FROM household h WHERE ST_Intersects(g.geom, h.geom)) AS households
                FROM grid g WHERE g.level = 4 AND g.valid_to IS NULL
                ORDER BY ST_Area(g.geom) DESC LIMIT 1
                """
            )
        ).one()


def _screen_xy(page, lat: float, lon: float) -> list[float]:
    """Where the point (lat, lon) of the map stands on the screen, for a mouse click."""
    return page.evaluate(
        """([lat, lon]) => {
            const p = window.wanggeMap.latLngToContainerPoint([lat, lon]);
            const r = window.wanggeMap.getContainer().getBoundingClientRect();
            return [r.left + p.x, r.top + p.y];
        }""",
        [lat, lon],
    )


def _click(page, lat: float, lon: float) -> str:
    page.evaluate("window.wanggeMap.closePopup()")
    page.evaluate(f"window.wanggeMap.setView([{lat}, {lon}], 15, {{animate: false}})")
    wait_loaded(page)
    page.wait_for_timeout(300)
    xy = _screen_xy(page, lat, lon)
    page.mouse.click(*xy)
    table = page.locator(".leaflet-popup-content table[data-code]")
    table.wait_for(state="visible")
    return table.inner_text()


def test_map_page_is_clean_offline(page_and_checker):
    page, checker = page_and_checker
    page.screenshot(path=screenshot_path("grid_map"))
    checker.assert_clean()
    assert any("/static/vendor/leaflet/dist/leaflet.js" in u for u in checker.requests)
    assert any("/grids?level=4" in u for u in checker.requests), "the levels come by URL"


def test_four_level_layers_hillshade_and_synthetic_badge(page_and_checker):
    page, _ = page_and_checker
    control = page.locator(".leaflet-control-layers").inner_text()
    for name in labels.LEVEL_LAYER_NAMES.values():
        assert name in control
    assert labels.SYNTHETIC_BADGE in page.locator("#wangge-synthetic-badge").inner_text()
    assert page.title().startswith(labels.SYNTHETIC_PAGE_TITLE)
    counts = page.evaluate("[1,2,3,4].map(l => window.wanggeLayers[l].getLayers().length)")
    assert counts == [1, 4, 20, 282]
    legend = page.locator("#wangge-legend").inner_text()
    assert labels.LEVEL_LAYER_NAMES[4] in legend


def test_the_hillshade_comes_by_url(page_and_checker):
    page, _ = page_and_checker
    assert labels.HILLSHADE_LAYER in page.locator(".leaflet-control-layers").inner_text()
    img = page.locator("img.wangge-hillshade")
    assert img.count() == 1
    assert img.get_attribute("src").endswith("/grids/hillshade.png")
    size = img.evaluate("i => [i.naturalWidth, i.naturalHeight, i.complete]")
    assert size[0] > 0 and size[1] > 0 and size[2]


def test_clicking_a_group_grid_opens_its_card_with_staff_and_households(page_and_checker, engine):
    page, checker = page_and_checker
    row = _largest_group_grid(engine)
    content = _click(page, row.y, row.x)
    assert row.code in content
    assert row.name in content
    assert row.leader in content
    assert f"{row.households} 户" in content
    assert labels.LEVEL_LAYER_NAMES[4] in content
    page.screenshot(path=screenshot_path("grid_map_popup"))
    checker.assert_clean()


def test_hiding_level_4_lets_clicks_reach_the_village(page_and_checker, engine):
    page, _ = page_and_checker
    row = _largest_group_grid(engine)
    toggle = page.locator(".leaflet-control-layers-overlays label", has_text=labels.LEVEL_LAYER_NAMES[4])
    toggle.locator("input").uncheck()
    try:
        content = _click(page, row.y, row.x)
        assert row.parent_code in content and row.code not in content
        assert labels.LEVEL_LAYER_NAMES[3] in content
    finally:
        page.evaluate("window.wanggeMap.closePopup()")
        toggle.locator("input").check()


def test_on_a_phone_nothing_covers_the_zoom_and_layer_controls(open_as):
    page, checker, status = open_loaded(open_as, "planner", PATH, phone=True)
    assert status == 200
    zoom = page.locator(".leaflet-control-zoom").bounding_box()
    bar = page.locator("#wangge-title").bounding_box()
    assert zoom["y"] >= bar["y"] + bar["height"]
    legend = page.locator("#wangge-legend").bounding_box()
    assert legend["width"] * legend["height"] < 0.1 * 390 * 844
    layers = page.locator(".leaflet-control-layers").bounding_box()
    assert layers["width"] < 100, "the layer control is folded on a phone"
    page.screenshot(path=screenshot_path("grid_map_phone"))
    checker.assert_clean()


# --- Through the API client (no browser) ---


def test_the_page_is_light_and_embeds_no_grid(clients, engine):
    r = clients["planner"].get(PATH)
    assert r.status_code == 200
    assert len(r.content) < 40_000
    with engine.connect() as c:
        names = c.execute(text("SELECT name FROM grid WHERE level = 4 AND valid_to IS NULL LIMIT 50")).scalars()
        for name in names:
            assert name not in r.text


def test_a_grid_card_is_json_with_public_staff_contacts(clients, engine):
    row = _largest_group_grid(engine)
    r = clients["planner"].get(f"/grids/{row.code}/card")
    assert r.status_code == 200
    card = r.json()
    assert (card["code"], card["name"], card["level"], card["parent_code"]) == (row.code, row.name, 4,
                                                                                row.parent_code)
    assert card["households"] == row.households
    assert row.leader in {p["name"] for p in card["staff"]}
    assert clients["planner"].get("/grids/411324999999999/card").status_code == 404
    assert clients["planner"].get("/grids/12/card").status_code == 422
    assert clients["anonymous"].get(f"/grids/{row.code}/card").status_code == 401


def test_pages_are_sent_compressed(clients):
    r = clients["planner"].get("/grids", params={"level": 4}, headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers.get("content-encoding") == "gzip"
    assert int(r.headers["content-length"]) < len(r.content) / 4
    page = clients["planner"].get(PATH, headers={"Accept-Encoding": "gzip"})
    assert page.headers.get("content-encoding") == "gzip"


def test_more_group_grids_than_one_answer_holds_come_as_vector_tiles(test_db_url, accounts, engine, site):
    """At city scale the view's group grids are more than one answer: the page draws them from
    /tiles/grids (every one, none cut) and a click still opens the grid's card."""
    from api.main import create_app
    from tests.browser import serve_app_in_thread
    from tests.conftest import settings_for
    from tests.map_pages import opened

    row = _largest_group_grid(engine)
    app = create_app(settings_for(test_db_url, max_features_per_page=100))
    with serve_app_in_thread(app) as base, opened((base, site[1]), accounts, "planner", PATH) as (page, checker, _):
        page.wait_for_function("window.wanggeGridTiles && window.wanggeMap.hasLayer(window.wanggeGridTiles)")
        assert page.evaluate("window.wanggeLayers[4].getLayers().length") == 0
        page.wait_for_load_state("networkidle")
        assert any("/tiles/grids/" in u for u in checker.requests)
        page.evaluate(f"window.wanggeMap.setView([{row.y}, {row.x}], 15, {{animate: false}})")
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(500)
        xy = _screen_xy(page, row.y, row.x)
        page.mouse.click(*xy)
        table = page.locator(".leaflet-popup-content table[data-code]")
        table.wait_for(state="visible")
        assert row.code in table.inner_text() and row.leader in table.inner_text()
        page.screenshot(path=screenshot_path("grid_map_tiles"))
        # Tiles still loading when the map zooms are cancelled by the tile layer: the checker keeps them apart.
        checker.assert_clean()
