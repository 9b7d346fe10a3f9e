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

from tests.conftest import database_copy, live_site, make_client, screenshot_path


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


def open_command(open_as: Any, phone: bool) -> tuple[Any, Any]:
    page, checker, status = open_as("command_center", "/maps/command", phone=phone)
    assert status == 200
    page.wait_for_function("document.documentElement.dataset.commandReady === '1'")
    return page, checker


def summary_seq(page: Any) -> int:
    return int(page.evaluate("Number(document.documentElement.dataset.summarySeq || 0)"))


@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_the_page_loads_clean_small_and_with_numbers(open_as: Any, db: Any, phone: bool) -> None:
    page, checker = open_command(open_as, phone)
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
def test_searching_a_village_moves_the_map_there(open_as: Any, db: Any, phone: bool) -> None:
    # A village whose extent's centre lies inside it (the map fits the extent).
    village = sql(db, "SELECT code, name FROM grid WHERE level = 3 AND valid_to IS NULL AND ST_Contains(geom, "
                      "ST_Centroid(ST_Envelope(geom))) ORDER BY code DESC LIMIT 1")[0]
    page, checker = open_command(open_as, phone)
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
def test_a_filter_changes_the_numbers_as_the_oracle_says(open_as: Any, db: Any, phone: bool) -> None:
    page, checker = open_command(open_as, phone)
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
