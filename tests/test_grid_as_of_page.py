"""The grid map's "查看历史" (/maps/grids) in headless Chromium, after a real publish (two touching group grids
merged: B retired): an instant before it shows B again with a Chinese banner, the URL keeps the instant (a
reload shows the same), 现在 shows today's grids; offline, and on a phone screen."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import shapely
from shapely.geometry import MultiPolygon
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from gis import clock
from gis.context import Context
from gis.db import transaction
from gis.planning.publish import GridChange, publish
from tests.conftest import database_copy, live_site, screenshot_path
from tests.map_pages import opened, wait_loaded
from tests.test_planning_publish import _grid, busiest_village, touching_pair

pytestmark = pytest.mark.browser
PATH = "/maps/grids"
BEIJING = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture(scope="module")
def published(test_db_url: Any, accounts: Any) -> Any:
    """A copy of the sample town where A absorbed B; (site, before_at, A, B, B's inner point)."""
    with database_copy(test_db_url, "asof_page") as url:
        engine = create_engine(url, poolclass=NullPool)
        with transaction(engine) as session:
            village, groups = busiest_village(session)
            a, b = touching_pair(session, groups)
            ga, gb = _grid(session, a), _grid(session, b)
        before_at = clock.now().replace(microsecond=0) - dt.timedelta(seconds=1)
        merged = shapely.union(ga["geom"], gb["geom"])
        with transaction(engine) as session:
            ctx = Context(principal=None, method="TEST", path="test_grid_as_of_page", actor="test:planner")
            publish(session, ctx, [
                GridChange(a, 4, ga["name"], village, MultiPolygon([p for p in getattr(merged, "geoms", [merged])])),
                GridChange(b, 4, gb["name"], village, None),
            ], effective_at=None, base={a: ga["id"], b: gb["id"]})
        engine.dispose()
        with live_site(url) as site:
            yield {"site": site, "before_at": before_at, "a": a, "b": b, "point": gb["geom"].representative_point()}


def _look_at(page: Any, point: Any) -> None:
    page.evaluate("document.documentElement.dataset.wanggeLoaded = '0'")
    page.evaluate(f"window.wanggeMap.setView([{point.y}, {point.x}], 15, {{animate: false}})")
    wait_loaded(page)


def _has(page: Any, code: str) -> bool:
    return bool(page.evaluate("code => window.wanggeFindGrid(code) !== null", code))


def _as_of_in_url(page: Any) -> str | None:
    values = parse_qs(urlparse(page.url).query).get("as_of")
    return values[0] if values else None


def test_history_control_shows_the_grids_before_a_publish_and_back(published: Any, accounts: Any) -> None:
    b, a, point, before_at = published["b"], published["a"], published["point"], published["before_at"]
    local = before_at.astimezone(BEIJING)
    with opened(published["site"], accounts, "command_center", PATH) as (page, checker, status):
        assert status == 200
        _look_at(page, point)
        assert _has(page, a) and not _has(page, b)
        banner = page.locator("#wangge-as-of-banner")
        assert not banner.is_visible()

        page.evaluate("document.documentElement.dataset.wanggeLoaded = '0'")
        page.fill("#wangge-as-of", local.strftime("%Y-%m-%dT%H:%M:%S"))
        page.locator("#wangge-as-of").dispatch_event("change")
        wait_loaded(page)
        assert _has(page, b) and _has(page, a)
        assert banner.is_visible() and banner.inner_text() == f"显示 {local:%Y-%m-%d %H:%M} 时的网格"
        shown = _as_of_in_url(page)
        assert shown is not None and dt.datetime.fromisoformat(shown) == before_at
        assert any("as_of=" in u and "/grids?level=4" in u for u in checker.requests)
        # The tiles (drawn instead where a view holds more group grids than one answer) ask for the same instant.
        tiles_url = page.evaluate("window.wanggeGridTilesUrl()")
        assert "/tiles/grids/{z}/{x}/{y}.pbf?" in tiles_url and "as_of=" in tiles_url
        page.screenshot(path=screenshot_path("grid_map_as_of"))

        # The URL is the view: reloading it shows the same instant.
        page.reload(wait_until="networkidle")
        wait_loaded(page)
        _look_at(page, point)
        assert _has(page, b) and banner.is_visible()
        assert page.input_value("#wangge-as-of") == local.strftime("%Y-%m-%dT%H:%M:%S")
        # The retired grid's card, clicked on the map: the grid as it was, not an error about today's grids.
        x, y = page.evaluate("([lat, lon]) => { const p = window.wanggeMap.latLngToContainerPoint([lat, lon]); "
                             "const r = window.wanggeMap.getContainer().getBoundingClientRect(); "
                             "return [r.left + p.x, r.top + p.y]; }", [point.y, point.x])
        page.mouse.click(x, y)
        card = page.locator(".wangge-grid-card table")
        card.wait_for(timeout=15_000)
        assert card.get_attribute("data-code") == b
        assert "这是该时刻的网格" in page.locator(".wangge-grid-card").inner_text()
        assert page.locator(".wangge-popup-error").count() == 0
        page.keyboard.press("Escape")

        page.evaluate("document.documentElement.dataset.wanggeLoaded = '0'")
        page.click("#wangge-as-of-now")
        wait_loaded(page)
        assert _has(page, a) and not _has(page, b)
        assert not banner.is_visible() and _as_of_in_url(page) is None
        assert page.evaluate("window.wanggeGridTilesUrl()") == "/tiles/grids/{z}/{x}/{y}.pbf"
        checker.assert_clean()


def test_history_on_a_phone_opened_from_a_shared_url(published: Any, accounts: Any) -> None:
    before_at = published["before_at"]
    local = before_at.astimezone(BEIJING)
    path = f"{PATH}?as_of={local.isoformat().replace('+', '%2B')}"
    with opened(published["site"], accounts, "grid_staff", path, phone=True) as (page, checker, status):
        assert status == 200
        _look_at(page, published["point"])
        assert _has(page, published["b"])
        banner = page.locator("#wangge-as-of-banner")
        assert banner.inner_text() == f"显示 {local:%Y-%m-%d %H:%M} 时的网格"
        for selector in ("#wangge-grid-history", "#wangge-as-of", "#wangge-as-of-now"):
            box = page.locator(selector).bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, selector
        page.screenshot(path=screenshot_path("grid_map_as_of_phone"))
        # The login lands on the caller's start page, whose map asks for today's grids, and the shared URL
        # replaces it at once: those requests (without as_of) may be cancelled by the navigation; the
        # shared instant's own requests are answered, none cancelled.
        assert not [u for u in checker.aborted_requests if "as_of=" in u]
        checker.assert_clean()

        # An instant without its offset is not guessed at: today's grids, no banner; on a phone the panel
        # then starts folded, and its head opens it.
        page.goto(published["site"][0] + f"{PATH}?as_of=2026-12-06T08:00:00", wait_until="networkidle")
        wait_loaded(page)
        _look_at(page, published["point"])
        assert not _has(page, published["b"]) and not banner.is_visible()
        assert not page.locator("#wangge-as-of").is_visible()
        page.click("#wangge-as-of-head")
        assert page.locator("#wangge-as-of").is_visible() and page.locator("#wangge-as-of-now").is_visible()
