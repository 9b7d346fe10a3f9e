"""The hot-spot map (/maps/hotspots) in headless Chromium: colours, legend, popups in plain words with
the statistics and the incidents behind a unit one click away, "in a hot area", the density layer,
the time-window form, refusals in Chinese, scope, a phone — and nothing remote."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from gis.hotspots.service import HotspotQuery, analyse
from maps import labels
from maps.hotspot_map import BIN_COLOURS, unit_style
from tests.conftest import screenshot_path
from tests.map_pages import open_loaded

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
    return open_loaded(open_as, "command_center", PATH)


def _open_unit(page, uid: str) -> None:
    """Click unit `uid` as a user does (zoomed onto it) and wait for its popup."""
    page.evaluate("window.wanggeMap.closePopup()")
    x, y = page.evaluate(
        """(id) => {
            const layer = window.wanggeHotspots.getLayers().find(l => l.feature.id === id);
            const map = window.wanggeMap;
            map.fitBounds(layer.getBounds(), {animate: false});
            const c = map.latLngToContainerPoint(layer.getCenter ? layer.getCenter() : layer.getBounds().getCenter());
            const r = map.getContainer().getBoundingClientRect();
            return [r.left + c.x, r.top + c.y];
        }""",
        uid,
    )
    page.mouse.click(x, y)
    page.wait_for_selector(f".wangge-hotspot-popup[data-unit-id='{uid}']")


def test_units_are_coloured_hot_to_cold_as_the_analysis_says(town_page, expected):
    page, checker, status = town_page
    assert status == 200
    styles = page.evaluate(STYLES_JS)
    assert len(styles) == len(expected) == 282
    for s in styles:
        row = expected.loc[s["id"]]
        assert s["bin"] == row["bin"]
        assert s["fill"] == unit_style(row.to_dict())["fillColor"]
        if row["incidents"] > 0 or row["bin"] <= 0:
            assert s["fill"] == BIN_COLOURS[int(row["bin"])] or row["island"]
    hot = [s for s in styles if s["significant"] and s["bin"] == 3 and expected.loc[s["id"], "incidents"] > 0]
    assert hot and all(s["fill"] == "#d62f27" for s in hot)
    legend = page.locator("#wangge-legend").inner_text()
    for text_ in labels.HOTSPOT_BINS.values():
        assert text_ in legend
    assert labels.HOTSPOT_OUTLIER_LEGEND in legend
    assert labels.HOTSPOT_LEGEND_HOT_AREA in legend
    assert "282" in page.locator("#wangge-hotspot-summary-0").inner_text()
    assert labels.SYNTHETIC_BADGE in page.locator("#wangge-synthetic-badge").inner_text()
    assert labels.HOTSPOT_PAGE_TITLE in page.title()
    # Warnings speak Chinese too (most group grids had no dispute in two years).
    assert "的单元没有事项" in page.locator("#wangge-hotspot-warning-0").inner_text()
    page.screenshot(path=screenshot_path("hotspot_map"))
    checker.assert_clean()


def test_a_hot_spot_speaks_plain_words_with_the_statistics_and_incidents_one_click_away(town_page, expected,
                                                                                       engine):
    page, checker, _ = town_page
    top = expected.sort_values("incidents", ascending=False).index[0]
    assert expected.loc[top, "bin"] > 0
    _open_unit(page, top)
    popup = page.locator(".wangge-hotspot-popup")
    assert popup.locator(".wangge-hotspot-headline").inner_text() == "矛盾纠纷热点"
    story = popup.locator(".wangge-hotspot-story").all_inner_texts()
    total = int(expected.loc[top, "incidents"])
    assert expected.loc[top, "name"] in story[0] and f"{total} 件" in story[0] and "明显偏多" in story[0]
    assert story[1].startswith("判断把握")
    # The statistics are there but folded: nothing of Gi* shows until asked.
    stats = popup.locator(".wangge-hotspot-details table")
    assert not stats.is_visible()
    assert "Gi*" not in popup.inner_text()
    popup.locator(".wangge-hotspot-details summary").click()
    assert stats.is_visible()
    assert f"{expected.loc[top, 'gi_z']:.2f}" in stats.inner_text()
    assert labels.HOTSPOT_BINS[int(expected.loc[top, "bin"])] in stats.inner_text()
    page.screenshot(path=screenshot_path("hotspot_popup_statistics"))
    # The incidents behind it, on request.
    popup.locator(".wangge-hotspot-show-incidents").click()
    page.wait_for_selector(".wangge-hotspot-incidents li")
    assert labels.HOTSPOT_POPUP_INCIDENTS.format(count=total) in popup.inner_text()
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
    page.screenshot(path=screenshot_path("hotspot_popup_incidents"))
    page.evaluate("window.wanggeMap.closePopup()")
    checker.assert_clean()


def test_a_unit_without_disputes_in_a_hot_cluster_is_said_to_be_in_a_hot_area(town_page, expected):
    page, checker, _ = town_page
    empty_hot = expected[(expected["bin"] > 0) & (expected["incidents"] == 0)]
    statuses = page.evaluate("window.wanggeHotspots.getLayers().map(l => [l.feature.id, l.feature.properties.status])")
    assert {u for u, s in statuses if s == "hot_area"} == set(empty_hot.index)
    if len(empty_hot):
        uid = empty_hot.index[0]
        _open_unit(page, uid)
        popup = page.locator(".wangge-hotspot-popup")
        assert popup.locator(".wangge-hotspot-headline").inner_text() == "位于热点区域"
        assert "本身没有矛盾纠纷" in popup.inner_text()
        assert popup.locator(".wangge-hotspot-show-incidents").count() == 0
        page.screenshot(path=screenshot_path("hotspot_popup_hot_area"))
        page.evaluate("window.wanggeMap.closePopup()")
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
    page.screenshot(path=screenshot_path("hotspot_density"))
    checker.assert_clean()


def test_time_window_form_reanalyses(open_as, engine):
    page, checker, status = open_loaded(open_as, "command_center", PATH)
    assert status == 200
    page.fill("#wangge-since", "2024-01")
    page.fill("#wangge-until", "2024-06")
    with page.expect_navigation():
        page.click("#wangge-hotspot-form button[type=submit]")
    page.wait_for_function("document.documentElement.dataset.wanggeLoaded === '1'")
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
    page, checker, status = open_loaded(open_as, "command_center", PATH + "?until_month=2024-06")
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
    page.screenshot(path=screenshot_path("hotspot_emerging"))
    page.select_option("#wangge-colour-by", "bins")
    fills = {s["id"]: s["fill"] for s in page.evaluate(STYLES_JS)}
    records = result.units.set_index("unit_id")
    assert all(fills[u] == unit_style(records.loc[u].to_dict())["fillColor"] for u in records.index)
    checker.assert_clean()


def test_hexagon_units(open_as, engine):
    from gis.db import make_sessionmaker

    with make_sessionmaker(engine)() as s:
        result = analyse(s, None, HotspotQuery(unit="hexagon", hex_size_m=500))
    page, checker, status = open_loaded(open_as, "command_center", PATH + "?units=hex500")
    assert status == 200
    styles = {s["id"]: s for s in page.evaluate(STYLES_JS)}
    assert set(styles) == set(result.units["unit_id"])
    for uid, b in zip(result.units["unit_id"], result.units["bin"], strict=True):
        assert styles[uid]["bin"] == b
    summary = page.locator("#wangge-hotspot-summary-0").inner_text()
    assert summary.startswith(labels.HOTSPOT_UNIT_HEX.format(size=500))
    assert page.locator("#wangge-units").input_value() == "hex500"
    page.screenshot(path=screenshot_path("hotspot_hexagons"))
    checker.assert_clean()


def test_a_refused_analysis_says_why_in_chinese_and_keeps_the_form(open_as):
    page, checker, status = open_loaded(open_as, "command_center", PATH + "?units=grid3")
    assert status == 200  # the page answers; only a malformed request is a 4xx
    message = page.locator("#wangge-hotspot-refused")
    assert message.is_visible()
    assert labels.HOTSPOT_REFUSED in message.inner_text()
    assert "30" in message.inner_text() and "20 个单元" in message.inner_text()
    assert "units" not in message.inner_text()
    assert page.locator("#wangge-hotspot-form").is_visible()
    assert page.evaluate("window.wanggeHotspots") is None
    page.screenshot(path=screenshot_path("hotspot_refused"))
    checker.assert_clean()
    # A malformed request: the page is a Chinese 422 page, its data a problem+json naming the field.
    base = page.url.split("/maps/")[0]
    r = page.request.get(base + PATH + "?units=grid4&since_month=2024-13")
    assert r.status == 422 and r.headers["content-type"].startswith("text/html")
    r = page.request.get(base + "/hotspots/map?units=grid4&since_month=2024-13")
    assert r.status == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["loc"] == ["query", "since_month"]


def test_grid_staff_cannot_open_another_villages_hot_spots(open_as, engine, accounts):
    with engine.connect() as c:
        other = c.execute(
            text("SELECT max(code) FROM grid WHERE level = 3 AND valid_to IS NULL")
        ).scalar_one()
    _, _, status = open_as("grid_staff", f"{PATH}?grid_code={other}")
    assert status == 403
    page, _, status = open_loaded(open_as, "grid_staff", PATH)
    assert status == 200  # one grid is too few units for statistics: said, not drawn
    assert page.locator("#wangge-hotspot-refused").is_visible()


def test_on_a_phone(open_as):
    page, checker, status = open_loaded(open_as, "command_center", PATH, phone=True)
    assert status == 200
    assert len(page.evaluate("window.wanggeHotspots.getLayers().map(l => l.feature.id)")) == 282
    zoom = page.locator(".leaflet-control-zoom").bounding_box()
    bar = page.locator("#wangge-title").bounding_box()
    assert zoom["y"] >= bar["y"] + bar["height"]
    legend = page.locator("#wangge-legend").bounding_box()
    assert legend["width"] * legend["height"] < 0.1 * 390 * 844
    page.screenshot(path=screenshot_path("hotspot_map_phone"))
    checker.assert_clean()
