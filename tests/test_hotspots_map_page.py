"""The hot-spot map (/maps/hotspots) in headless Chromium: colours, legend, popups with the incidents
behind a unit, the density layer, the time-window form, refusals, scope — and nothing remote."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from gis.hotspots.service import HotspotQuery, analyse
from maps import labels
from maps.hotspot_map import BIN_COLOURS

PATH = "/maps/hotspots"

STYLES_JS = """
() => window.wanggeHotspots.getLayers().map(layer => ({
    id: layer.feature.id, fill: layer.options.fillColor, bin: layer.feature.properties.bin,
    significant: layer.feature.properties.significant}))
"""


@pytest.fixture(scope="module")
def expected(engine):
    from gis.db import make_sessionmaker

    with make_sessionmaker(engine)() as s:
        return analyse(s, None, HotspotQuery()).units.set_index("unit_id")


@pytest.fixture(scope="module")
def town_page(open_as):
    return open_as("command_center", PATH)


def test_units_are_coloured_hot_to_cold_as_the_analysis_says(town_page, expected):
    page, checker, status = town_page
    assert status == 200
    styles = page.evaluate(STYLES_JS)
    assert len(styles) == len(expected) == 282
    for s in styles:
        row = expected.loc[s["id"]]
        assert s["bin"] == row["bin"]
        assert s["fill"] == BIN_COLOURS[int(row["bin"])]
    hot = [s for s in styles if s["significant"] and s["bin"] == 3]
    assert hot and all(s["fill"] == "#d62f27" for s in hot)
    legend = page.locator("#wangge-legend").inner_text()
    for text_ in labels.HOTSPOT_BINS.values():
        assert text_ in legend
    assert labels.HOTSPOT_OUTLIER_LEGEND in legend
    assert "282" in page.locator("#wangge-hotspot-summary-0").inner_text()
    assert labels.SYNTHETIC_BADGE in page.locator("#wangge-title").inner_text()
    assert labels.HOTSPOT_PAGE_TITLE in page.title()
    # Warnings speak Chinese too (most group grids had no dispute in two years).
    assert "的单元没有事项" in page.locator("#wangge-hotspot-warning-0").inner_text()
    page.screenshot(path="/tmp/wangge_hotspot_map.png")
    checker.assert_clean()


def test_clicking_a_hot_spot_lists_the_incidents_behind_it(town_page, expected, engine):
    page, checker, _ = town_page
    top = expected.sort_values("incidents", ascending=False).index[0]
    x, y = page.evaluate(
        """(id) => {
            const layer = window.wanggeHotspots.getLayers().find(l => l.feature.id === id);
            const map = window.wanggeMap;
            map.fitBounds(layer.getBounds(), {animate: false});
            const c = map.latLngToContainerPoint(layer.getCenter ? layer.getCenter() : layer.getBounds().getCenter());
            return [c.x, c.y];
        }""",
        top,
    )
    page.mouse.click(x, y)
    page.wait_for_selector(".wangge-popup table[data-unit-id]")
    unit = page.locator(".wangge-popup table[data-unit-id]").get_attribute("data-unit-id")
    assert unit == top
    popup = page.locator(".wangge-popup").inner_text()
    assert labels.HOTSPOT_BINS[3] in popup
    assert expected.loc[top, "name"] in popup
    total = int(expected.loc[top, "incidents"])
    assert labels.HOTSPOT_POPUP_INCIDENTS.format(count=total) in popup
    listed = page.locator(".wangge-hotspot-incidents li")
    assert listed.count() == min(total, 30)
    ids = {
        int(i)
        for i in page.eval_on_selector_all(
            ".wangge-hotspot-incidents li", "els => els.map(e => e.dataset.incidentId)"
        )
    }
    with engine.connect() as c:
        behind = set(
            c.execute(
                text("SELECT id FROM incident WHERE category = 'dispute' AND group_code = :g"),
                {"g": top},
            ).scalars()
        )
    assert ids <= behind
    checker.assert_clean()


def test_density_layer_is_optional_and_offline(town_page):
    page, checker, _ = town_page
    assert page.evaluate("window.wanggeMap.hasLayer(window.wanggeDensity)") is False
    page.get_by_text(labels.HOTSPOT_DENSITY_LAYER).click()
    assert page.evaluate("window.wanggeMap.hasLayer(window.wanggeDensity)") is True
    page.wait_for_function(
        "window.wanggeDensity.getElement() && window.wanggeDensity.getElement().complete"
    )
    assert page.evaluate("window.wanggeDensity.getElement().naturalWidth") == 200
    assert page.evaluate("window.wanggeDensity._url.startsWith('data:image/png')")
    page.screenshot(path="/tmp/wangge_hotspot_density.png")
    checker.assert_clean()


def test_time_window_form_reanalyses(open_as, engine):
    page, checker, status = open_as("command_center", PATH)
    assert status == 200
    page.fill("#wangge-since", "2024-01")
    page.fill("#wangge-until", "2024-06")
    with page.expect_navigation():
        page.click("#wangge-hotspot-form button[type=submit]")
    page.wait_for_function("document.documentElement.dataset.wanggeReady === '1'")
    assert "since_month=2024-01" in page.url and "until_month=2024-06" in page.url
    with engine.connect() as c:
        n = c.execute(
            text(
                "SELECT count(*) FROM incident WHERE category = 'dispute' AND occurred_at >= "
                "'2024-01-01T00:00+08:00' AND occurred_at < '2024-07-01T00:00+08:00'"
            )
        ).scalar_one()
    summary = page.locator("#wangge-hotspot-summary-0").inner_text()
    assert f"{n} 件事项" in summary
    assert page.locator("#wangge-since").input_value() == "2024-01"
    checker.assert_clean()


def test_colouring_by_emerging_category(open_as, engine):
    import datetime as dt

    from gis.db import make_sessionmaker
    from maps.hotspot_map import EMERGING_COLOURS

    tz = dt.timezone(dt.timedelta(hours=8))
    with make_sessionmaker(engine)() as s:
        result = analyse(s, None, HotspotQuery(until=dt.datetime(2024, 7, 1, tzinfo=tz)))
    categories = dict(zip(result.units["unit_id"], result.units["emerging"], strict=True))
    trending = {c for c in categories.values() if c != "no_pattern"}
    assert trending, "the window should give some emerging category"
    page, checker, status = open_as("command_center", PATH + "?until_month=2024-06")
    assert status == 200
    legend = page.locator("#wangge-legend")
    assert not legend.get_by_text(labels.HOTSPOT_EMERGING[next(iter(trending))]).is_visible()
    page.select_option("#wangge-colour-by", "emerging")
    assert page.evaluate("document.documentElement.dataset.wanggeColour") == "emerging"
    fills = {s["id"]: s["fill"] for s in page.evaluate(STYLES_JS)}
    for uid, category in categories.items():
        if category != "no_pattern":
            assert fills[uid] == EMERGING_COLOURS[category]
    for category in trending:
        assert legend.get_by_text(labels.HOTSPOT_EMERGING[category], exact=True).is_visible()
    assert not legend.get_by_text(labels.HOTSPOT_BINS[3]).is_visible()
    page.screenshot(path="/tmp/wangge_hotspot_emerging.png")
    page.select_option("#wangge-colour-by", "bins")
    fills = {s["id"]: s["fill"] for s in page.evaluate(STYLES_JS)}
    assert all(
        fills[u] == BIN_COLOURS[int(b)]
        for u, b in zip(result.units["unit_id"], result.units["bin"], strict=True)
    )
    checker.assert_clean()


def test_hexagon_units(open_as, engine):
    from gis.db import make_sessionmaker

    with make_sessionmaker(engine)() as s:
        result = analyse(s, None, HotspotQuery(unit="hexagon", hex_size_m=500))
    page, checker, status = open_as("command_center", PATH + "?units=hex500")
    assert status == 200
    styles = {s["id"]: s for s in page.evaluate(STYLES_JS)}
    assert set(styles) == set(result.units["unit_id"])
    for uid, b in zip(result.units["unit_id"], result.units["bin"], strict=True):
        assert styles[uid]["bin"] == b
    summary = page.locator("#wangge-hotspot-summary-0").inner_text()
    assert summary.startswith(labels.HOTSPOT_UNIT_HEX.format(size=500))
    assert page.locator("#wangge-units").input_value() == "hex500"
    page.screenshot(path="/tmp/wangge_hotspot_hexagons.png")
    checker.assert_clean()


def test_a_refused_analysis_says_why_and_keeps_the_form(open_as):
    page, checker, status = open_as("command_center", PATH + "?units=grid3")
    assert status == 200  # the page answers; only a malformed request is a 4xx
    message = page.locator("#wangge-hotspot-refused")
    assert message.is_visible()
    assert labels.HOTSPOT_REFUSED in message.inner_text()
    assert "30" in message.inner_text()
    assert page.locator("#wangge-hotspot-form").is_visible()
    assert page.evaluate("window.wanggeHotspots") is None
    checker.assert_clean()
    # A malformed request is a problem+json 422 naming the field, as everywhere else.
    r = page.request.get(page.url.split("?")[0] + "?units=grid4&since_month=2024-13")
    assert r.status == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["loc"] == ["query", "since_month"]


def test_grid_staff_cannot_open_another_villages_hot_spots(open_as, engine, accounts):
    with engine.connect() as c:
        other = c.execute(
            text("SELECT max(code) FROM grid WHERE level = 3 AND valid_to IS NULL")
        ).scalar_one()
    _, _, status = open_as("grid_staff", f"{PATH}?grid_code={other}")
    assert status == 403
    page, _, status = open_as("grid_staff", PATH)
    assert status == 200  # one grid is too few units for statistics: said, not drawn
    assert page.locator("#wangge-hotspot-refused").is_visible()
