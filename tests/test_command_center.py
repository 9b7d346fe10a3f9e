"""The command center page (/maps/command) in headless Chromium, on a desktop and a phone: it loads
clean and offline, embeds no data, searching a village moves the map there, a filter changes the
numbers as an oracle over the incident rows says."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.browser import OfflinePageChecker
from tests.conftest import DESKTOP, PHONE, database_copy, live_site, make_client, screenshot_path


@pytest.fixture(scope="module")
def db(test_db_url: Any, accounts: dict[str, Any]) -> Iterator[Any]:
    with database_copy(test_db_url, "command") as url:
        yield url


@pytest.fixture(scope="module")
def site(db: Any) -> Iterator[tuple[str, object]]:
    with live_site(db) as served:
        yield served


def sql(db: Any, query: str, **params: Any) -> list[dict[str, Any]]:
    eng = create_engine(db, poolclass=NullPool)
    try:
        with eng.connect() as c:
            return [dict(r) for r in c.execute(text(query), params).mappings()]
    finally:
        eng.dispose()


@pytest.fixture
def open_command(site: Any, accounts: dict[str, Any]) -> Iterator[Any]:
    """Log in as the command center (the login form, sent on to the page) and open /maps/command once,
    on a desktop or a phone screen: (page, checker). The page's live stream stays open until the test
    ends (its context is closed then: streams per account are limited)."""
    base, browser = site
    contexts = []

    def _open(phone: bool) -> tuple[Any, Any]:
        context = browser.new_context(**(PHONE if phone else DESKTOP))
        contexts.append(context)
        page = context.new_page()
        checker = OfflinePageChecker().attach(page)
        page.goto(base + "/login?next=/maps/command", wait_until="networkidle")
        page.fill("#username", accounts["command_center"]["username"])
        page.fill("#password", accounts["command_center"]["password"])
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert page.url.endswith("/maps/command")
        page.wait_for_function("document.documentElement.dataset.commandReady === '1'")
        return page, checker

    yield _open
    for context in contexts:
        context.close()


def summary_seq(page: Any) -> int:
    return int(page.evaluate("Number(document.documentElement.dataset.summarySeq || 0)"))


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_the_page_loads_clean_small_and_with_numbers(open_command: Any, db: Any, phone: bool) -> None:
    page, checker = open_command(phone)
    total = int(page.text_content("#num-total") or "-1")
    assert total > 0
    page.wait_for_load_state("networkidle")
    # Grids and incidents come as vector tiles; incidents with the page's filters (open ones by default).
    assert any("/tiles/grids/" in u for u in checker.requests)
    incident_tiles = [u for u in checker.requests if "/tiles/incidents/" in u]
    assert incident_tiles and all("open=false" not in u for u in incident_tiles)
    page.screenshot(path=screenshot_path(f"command_center_{'phone' if phone else 'desktop'}"))
    checker.assert_clean()
    # The controls of the map stay usable: the zoom buttons are not covered by the bar or the panel.
    box = page.locator(".leaflet-control-zoom-in").bounding_box()
    assert box is not None
    hit = page.evaluate("([x, y]) => document.elementFromPoint(x, y).closest('.leaflet-control-zoom-in') !== null",
                        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2])
    assert hit


def test_the_page_embeds_no_data_and_refuses_other_roles(db: Any, accounts: dict[str, Any]) -> None:
    with make_client(db, "command_center") as c:
        r = c.get("/maps/command")
    assert r.status_code == 200
    html = r.text
    assert len(html.encode()) < 40_000
    assert "FeatureCollection" not in html and '"features"' not in html
    some_name = sql(db, "SELECT name FROM grid WHERE level = 4 AND valid_to IS NULL LIMIT 1")[0]["name"]
    assert some_name not in html
    with make_client(db, "grid_staff") as c:
        refused = c.get("/maps/command", headers={"Accept": "text/html"})
    assert refused.status_code == 403 and "无权" in refused.text


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_searching_a_village_moves_the_map_there(open_command: Any, db: Any, phone: bool) -> None:
    # A village whose extent's centre lies inside it (the map fits the extent).
    village = sql(db, "SELECT code, name FROM grid WHERE level = 3 AND valid_to IS NULL AND ST_Contains(geom, "
                      "ST_Centroid(ST_Envelope(geom))) ORDER BY code DESC LIMIT 1")[0]
    page, checker = open_command(phone)
    page.fill("#command-search-input", village["name"])
    page.press("#command-search-input", "Enter")
    page.wait_for_function(f"document.documentElement.dataset.commandFlown === 'grid:{village['code']}'",
                           timeout=10_000)
    lat, lon = page.evaluate("(() => { const c = window.wanggeMap.getCenter(); return [c.lat, c.lng]; })()")
    inside = sql(db, "SELECT ST_Contains(geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326)) AS yes FROM grid "
                     "WHERE code = :c AND valid_to IS NULL", x=lon, y=lat, c=village["code"])[0]["yes"]
    assert inside, (village, lon, lat)
    assert village["name"] in (page.text_content("#command-search-results") or "")
    page.screenshot(path=screenshot_path(f"command_center_search_{'phone' if phone else 'desktop'}"))
    checker.assert_clean()


def oracle_counts(db: Any, query: str, now: dt.datetime) -> dict[str, int]:
    """Totals of the incidents the command center sees for the page's summary query, in Python."""
    params = {k: v[0] for k, v in parse_qs(query).items()}
    x0, y0, x1, y1 = (float(v) for v in params["bbox"].split(","))
    rows = sql(db, "SELECT category, state, stage_deadline, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM incident")
    chosen = [r for r in rows if x0 <= r["lon"] <= x1 and y0 <= r["lat"] <= y1
              and ("category" not in params or r["category"] == params["category"])
              and ("state" in params or params.get("open") == "false" or r["state"] != "closed")
              and ("state" not in params or r["state"] == params["state"])
              and ("overdue" not in params or (r["stage_deadline"] is not None and r["stage_deadline"] < now))]
    return {"total": len(chosen),
            "overdue": sum(1 for r in chosen if r["stage_deadline"] is not None and r["stage_deadline"] < now)}


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_a_filter_changes_the_numbers_as_the_oracle_says(open_command: Any, db: Any, phone: bool) -> None:
    page, checker = open_command(phone)
    if phone:
        page.click("#command-panel-toggle")   # the drawer opens
    before_total = int(page.text_content("#num-total") or "-1")
    query = page.evaluate("document.documentElement.dataset.summaryQuery")
    assert oracle_counts(db, query, dt.datetime.now(dt.UTC))["total"] == before_total
    for select, value in (("#filter-category", "dispute"), ("#filter-closed", None), ("#filter-overdue", None)):
        seq = summary_seq(page)
        if value is None:
            page.check(select)
        else:
            page.select_option(select, value)
        page.wait_for_function(f"Number(document.documentElement.dataset.summarySeq) > {seq}")
        page.wait_for_load_state("networkidle")
        query = page.evaluate("document.documentElement.dataset.summaryQuery")
        want = oracle_counts(db, query, dt.datetime.now(dt.UTC))
        assert int(page.text_content("#num-total") or "-1") == want["total"], query
        assert int(page.text_content("#num-overdue") or "-1") == want["overdue"], query
    assert "category=dispute" in query and "open=false" in query and "overdue=true" in query
    assert want["total"] != before_total
    page.screenshot(path=screenshot_path(f"command_center_filtered_{'phone' if phone else 'desktop'}"))
    checker.assert_clean()


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_a_new_incident_posted_elsewhere_appears_within_two_seconds(open_command: Any, site: Any, db: Any,
                                                                    accounts: dict[str, Any], phone: bool) -> None:
    import time

    import httpx

    page, checker = open_command(phone)
    page.wait_for_function("document.documentElement.dataset.liveStatus === 'open'", timeout=10_000)
    before = int(page.text_content("#num-total") or "-1")
    base = site[0]
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {accounts['grid_staff']['token']}"}) as c:
        # Another client (a grid member's phone, say) reports inside the town, in the view.
        grid = sql(db, "SELECT ST_X(p) AS lon, ST_Y(p) AS lat FROM (SELECT ST_PointOnSurface(geom) p FROM grid "
                       "WHERE code = :c AND valid_to IS NULL) s", c=accounts["grid_staff"]["scope_codes"][0])[0]
        t0 = time.monotonic()
        r = c.post("/incidents", json={"category": "safety_hazard", "description": "电线裸露",
                                       "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
                                       "lon": grid["lon"], "lat": grid["lat"]})
        assert r.status_code == 201, r.text
        new_id = r.json()["id"]
        page.wait_for_function(f"!!(window.commandLive || {{}})[{new_id}]", timeout=2_000, polling=20)
        appeared = time.monotonic() - t0
        page.wait_for_function(f"Number(document.getElementById('num-total').textContent) === {before + 1}",
                               timeout=2_000)
    assert appeared < 2.0
    marker = page.evaluate(f"(() => {{ const m = window.commandLive[{new_id}].getLatLng(); "
                           "return [m.lng, m.lat]; })()")
    assert marker == pytest.approx([grid["lon"], grid["lat"]], abs=1e-9)
    page.screenshot(path=screenshot_path(f"command_center_live_{'phone' if phone else 'desktop'}"))
    checker.assert_clean()
