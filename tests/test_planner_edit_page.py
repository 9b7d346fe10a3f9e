"""Editing a draft plan on the planner's map (/maps/planner) in headless Chromium: a planner starts a draft,
clicks unit cells and paints them into a neighbouring grid (impact row checked against PostGIS), undoes and
redoes the paint, and meets a stale version as a Chinese conflict with a reload; splits a grid by a line drawn with
real mouse clicks (pieces checked against shapely's split by the line the page sent, impact against PostGIS) after
a line that cuts nothing is refused in Chinese, and undoes the split. Nothing loads from the internet."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import shapely
import shapely.ops
from shapely.geometry import shape
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.browser import serve_app_in_thread
from tests.conftest import database_copy, screenshot_path, settings_for
from tests.map_pages import opened

PATH = "/maps/planner"


def _village(eng) -> str:
    """A small village (few households, so the page is quick) that still has 3+ group grids and 20+ households."""
    with eng.connect() as c:
        return c.execute(text(
            "SELECT code FROM (SELECT v.code, (SELECT count(*) FROM grid g WHERE g.parent_code = v.code "
            "AND g.level = 4 AND g.valid_to IS NULL) AS grids, "
            "(SELECT count(*) FROM household_grid hg WHERE hg.village_code = v.code) AS homes "
            "FROM grid v WHERE v.level = 3 AND v.valid_to IS NULL) x WHERE grids >= 3 AND homes >= 20 "
            "ORDER BY homes, code LIMIT 1")).scalar_one()


def _pixel(page, lat: float, lon: float) -> tuple[float, float]:
    """Where a point of the map is on the screen (page coordinates) now."""
    x, y = page.evaluate("([lat, lon]) => { const p = window.wanggeMap.latLngToContainerPoint([lat, lon]); "
                         "const r = window.wanggeMap.getContainer().getBoundingClientRect(); "
                         "return [r.left + p.x, r.top + p.y]; }", [lat, lon])
    return x, y


def _fit(page, bounds: tuple[float, float, float, float]) -> None:
    page.evaluate("([a, b, c, d]) => window.wanggeMap.fitBounds([[b, a], [d, c]], {padding: [60, 60], animate: false})",
                  list(bounds))
    page.wait_for_timeout(300)


def _plan_grid(page, code: str):
    feats = page.evaluate("() => window.wanggePlanLayer.toGeoJSON().features.map(f => [f.properties.code, f.geometry])")
    return {c: shape(g) for c, g in feats}.get(code)


def _impact_rows(page) -> dict[tuple[str, str], int]:
    return {(r[0], r[1]): int(r[2]) for r in page.locator("#plan-moves tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.from, r.dataset.to, r.cells[2].textContent])")}


def _edits(page, n: int) -> None:
    page.wait_for_function(f"document.documentElement.dataset.planEdits === '{n}'", timeout=60_000)


@contextmanager
def _private_site(site, test_db_url, name: str) -> Iterator[tuple[Any, str, tuple[str, Any]]]:
    """A private copy of the town served by its own app: (engine, a small village, where to open pages)."""
    from api.main import create_app

    _, browser = site
    with database_copy(test_db_url, name) as url, serve_app_in_thread(create_app(settings_for(url))) as base:
        eng = create_engine(url, poolclass=NullPool)
        try:
            yield eng, _village(eng), (base, browser)
        finally:
            eng.dispose()


def test_a_planner_paints_units_into_a_neighbouring_grid_with_undo_redo_and_conflict(site, test_db_url, accounts):
    with _private_site(site, test_db_url, "planner_edit") as (eng, village, where), \
            opened(where, accounts, "planner", PATH) as (page, checker, status):
        assert status == 200
        page.wait_for_function("document.documentElement.dataset.planReady === '1'")
        page.select_option("#planner-village", village)
        page.wait_for_function("window.wanggeUnits.getLayers().length > 0")
        page.wait_for_function("document.querySelectorAll('#plan-target option').length > 2")
        page.click("#plan-new")
        page.wait_for_function("document.documentElement.dataset.planVersion !== undefined")
        assert not page.locator("#plan-editing").is_hidden()

        # A unit whose cell lies in one grid and touches a neighbouring grid of the village (shapely).
        units = page.evaluate("() => window.wanggeUnits.getLayers().map(l => "
                              "[String(l.feature.properties.unit_id), l.feature.properties.grid_code, "
                              "l.feature.properties.households, l.feature.geometry])")
        with eng.connect() as c:
            grids = {r.code: shapely.from_wkb(bytes(r.wkb)) for r in c.execute(text(
                "SELECT code, ST_AsBinary(geom) AS wkb FROM grid WHERE parent_code = :v AND level = 4 "
                "AND valid_to IS NULL"), {"v": village})}
        pick = None
        for uid, code, households, geom in units:
            cell = shape(geom)
            if households < 1 or code not in grids:
                continue
            touching = [g for g, poly in sorted(grids.items()) if g != code and poly.distance(cell) < 1e-6]
            if touching:
                pick = (uid, code, touching[0], cell)
                break
        assert pick is not None, (village, len(units))
        uid, src, dst, cell = pick
        _fit(page, cell.bounds)
        spot = cell.representative_point()
        page.mouse.click(*_pixel(page, spot.y, spot.x))
        page.wait_for_function("document.documentElement.dataset.planSelected === '1'")
        page.select_option("#plan-target", dst)
        page.click("#plan-paint")
        _edits(page, 1)
        # The impact row src -> dst: the households of src the plan's new dst holds (PostGIS).
        new_dst = _plan_grid(page, dst)
        assert new_dst is not None
        with eng.connect() as c:
            moved = c.execute(text(
                "SELECT count(*) FROM household h JOIN grid g ON g.code = :src AND g.valid_to IS NULL "
                "AND ST_Contains(g.geom, h.geom) WHERE ST_Contains(ST_GeomFromWKB(:wkb, 4326), h.geom)"),
                {"src": src, "wkb": shapely.to_wkb(new_dst)}).scalar_one()
        rows = _impact_rows(page)
        assert rows.get((src, dst)) == moved >= 1
        assert page.locator("#plan-state").inner_text()  # the validation state, in Chinese
        # Undo paints the unit back (no move left); redo paints it again.
        page.click("#plan-undo")
        _edits(page, 0)
        assert (src, dst) not in _impact_rows(page)
        page.click("#plan-redo")
        _edits(page, 1)
        assert _impact_rows(page).get((src, dst)) == moved

        # Another planner saved meanwhile: the stale version is a Chinese conflict with a reload.
        with eng.begin() as c:
            c.execute(text("UPDATE plan SET version = version + 1"))
        page.click("#plan-undo")
        page.wait_for_function("document.documentElement.dataset.planConflict === '1'")
        assert "冲突" in page.locator("#plan-conflict").inner_text()
        page.click("#plan-reload")
        page.locator("#plan-conflict").wait_for(state="hidden")
        assert _impact_rows(page).get((src, dst)) == moved  # nothing was lost or half-written

        page.screenshot(path=screenshot_path("planner-edit-desktop"))

        # The one refused request is the stale edit (409); nothing else failed or left the machine.
        problems = checker.problems()
        assert problems and all("409" in p for p in problems), problems


def test_the_editor_is_there_on_a_phone(open_as):
    page, checker, status = open_as("planner", PATH, phone=True)
    assert status == 200
    page.wait_for_function("document.documentElement.dataset.planReady === '1'")
    panel = page.locator("#plan-panel")
    if "collapsed" in (panel.get_attribute("class") or ""):
        panel.locator(".wangge-panel-head").click()
    page.locator("#plan-new").wait_for(state="visible")
    page.click("#plan-new")  # no village chosen yet: a Chinese explanation, no request
    banner = page.locator("#wangge-banner")
    banner.wait_for(state="visible")
    assert "行政村" in banner.inner_text()
    assert page.locator("#plan-editing").is_hidden()
    checker.assert_clean()


def _layer_grids(page) -> dict[str, object]:
    """The plan's grids as the page draws them (full precision)."""
    feats = page.evaluate("() => window.wanggePlanLayer.toGeoJSON(false).features"
                          ".map(f => [f.properties.code, f.geometry])")
    return {c: shape(g) for c, g in feats}


def _on_map(page, x: float, y: float) -> bool:
    """Whether a click at (x, y) lands on the map itself (not on a panel or control over it)."""
    return page.evaluate("([x, y]) => { const e = document.elementFromPoint(x, y); "
                         "return !!e && window.wanggeMap.getContainer().contains(e) "
                         "&& !e.closest('.leaflet-control'); }", [x, y])


def test_a_planner_splits_a_grid_by_a_drawn_line_and_undoes_it(site, test_db_url, accounts):
    with _private_site(site, test_db_url, "planner_split") as (eng, village, where):
        # The village's group grid with the most households, and the longitude that halves them.
        with eng.connect() as c:
            code, wkb = c.execute(text(
                "SELECT g.code, ST_AsBinary(g.geom) FROM grid g WHERE g.parent_code = :v AND g.level = 4 "
                "AND g.valid_to IS NULL ORDER BY (SELECT count(*) FROM household h "
                "WHERE ST_Contains(g.geom, h.geom)) DESC, g.code LIMIT 1"), {"v": village}).one()
            original = shapely.from_wkb(bytes(wkb))
            lons = sorted(c.execute(text(
                "SELECT ST_X(h.geom) FROM household h JOIN grid g ON g.code = :g AND g.valid_to IS NULL "
                "AND ST_Contains(g.geom, h.geom)"), {"g": code}).scalars())
        assert len(lons) >= 2, (village, code)
        with opened(where, accounts, "planner", PATH) as (page, checker, status):
            assert status == 200
            page.wait_for_function("document.documentElement.dataset.planReady === '1'")
            page.select_option("#planner-village", village)
            page.wait_for_function("window.wanggeUnits.getLayers().length > 0")
            page.wait_for_function(f"[...document.querySelectorAll('#plan-split-grid option')]"
                                   f".some(o => o.value === '{code}')")
            page.click("#plan-new")
            page.wait_for_function("document.documentElement.dataset.planVersion !== undefined")
            plan_id = int(page.evaluate("document.documentElement.dataset.planId"))
            page.select_option("#plan-split-grid", code)

            # The grid in view beside the panels; the line runs from below it to above it, through the
            # middle of its households, with a bend inside.
            left = page.evaluate("() => Math.max(0, ...[...document.querySelectorAll('.wangge-panel')]"
                                 ".map(p => p.getBoundingClientRect().right)) - "
                                 "window.wanggeMap.getContainer().getBoundingClientRect().left")
            minx, miny, maxx, maxy = original.bounds
            page.evaluate("([a, b, c, d, l]) => window.wanggeMap.fitBounds([[b, a], [d, c]], "
                          "{paddingTopLeft: [l + 60, 90], paddingBottomRight: [60, 90], animate: false})",
                          [minx, miny, maxx, maxy, left])
            mid = (lons[(len(lons) - 1) // 2] + lons[len(lons) // 2]) / 2
            bottom, top = _pixel(page, miny, mid), _pixel(page, maxy, mid)
            centre = _pixel(page, (miny + maxy) / 2, mid)
            clicks = [(bottom[0], bottom[1] + 40), (centre[0] + 3, centre[1]), (top[0], top[1] - 40)]
            assert all(_on_map(page, x, y) for x, y in clicks), clicks

            # First a short line inside the grid: it cuts nothing, so a Chinese refusal and no edit.
            inner = shapely.get_coordinates(original.representative_point())[0]
            ix, iy = _pixel(page, inner[1], inner[0])
            short = [(ix - 12, iy), (ix + 12, iy)]
            assert all(_on_map(page, x, y) for x, y in short)
            version = page.evaluate("document.documentElement.dataset.planVersion")
            page.click("#plan-draw")
            page.wait_for_function("document.documentElement.dataset.planDrawing === '1'")
            for x, y in short:
                page.mouse.click(x, y)
            with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/edits")) as sent:
                page.locator("#plan-draw-finish").click()
            assert original.contains(shape(sent.value.post_data_json["line"]))
            page.wait_for_function(f"document.documentElement.dataset.planSplitRefused === '{code}'")
            banner = page.locator("#wangge-banner")
            assert banner.is_visible() and "拆分线" in banner.inner_text()
            assert page.evaluate("document.documentElement.dataset.planVersion") == version
            assert page.locator("#plan-draw-finish").is_hidden()
            assert page.evaluate("document.documentElement.dataset.planEdits") is None

            page.click("#plan-draw")
            page.wait_for_function("document.documentElement.dataset.planDrawing === '1'")
            assert banner.is_hidden()
            for x, y in clicks:
                page.mouse.click(x, y)
            with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/edits")) as sent:
                page.locator("#plan-draw-finish").click()
            _edits(page, 1)
            page.wait_for_function("document.documentElement.dataset.planSplit !== undefined")
            created = page.evaluate("document.documentElement.dataset.planSplit").split(",")
            assert created and all(created) and code not in created
            body = sent.value.post_data_json
            assert body["kind"] == "split" and body["code"] == code
            assert len(body["line"]["coordinates"]) == 3  # the three points clicked, in that order
            line = shape(body["line"])
            for (lon, lat), (x, y) in zip(line.coords, clicks, strict=True):  # where the mouse clicked
                px, py = _pixel(page, lat, lon)
                assert abs(px - x) < 1.5 and abs(py - y) < 1.5, ((px, py), (x, y))

            # The pieces: shapely's split of the current grid by the same line, on the page and in the API.
            expected = sorted(p.area for p in shapely.ops.split(original, line).geoms if p.area > 0)
            assert len(expected) == 1 + len(created) >= 2
            drawn = _layer_grids(page)
            answer = page.request.get(f"{where[0]}/plans/{plan_id}")
            assert answer.ok, answer.status
            stored = {f["properties"]["code"]: shape(f["geometry"]) for f in answer.json()["features"]
                      if f["geometry"] is not None}
            for pieces in (drawn, stored):
                got = [pieces[c] for c in [code, *created]]
                areas = sorted(g.area for g in got)
                assert all(abs(a - b) < original.area * 1e-6 for a, b in zip(areas, expected, strict=True))
                union = shapely.union_all(got)
                assert shapely.symmetric_difference(union, original).area < original.area * 1e-6
                assert sum(g.area for g in got) - union.area < original.area * 1e-6  # no overlaps

            # The impact: each new piece takes the households of the grid that lie in it (PostGIS).
            rows = _impact_rows(page)
            moved = {}
            with eng.connect() as c:
                for new in created:
                    moved[new] = c.execute(text(
                        "SELECT count(*) FROM household h JOIN grid g ON g.code = :src AND g.valid_to IS NULL "
                        "AND ST_Contains(g.geom, h.geom) WHERE ST_Contains(ST_GeomFromWKB(:wkb, 4326), h.geom)"),
                        {"src": code, "wkb": shapely.to_wkb(stored[new])}).scalar_one()
            assert sum(moved.values()) >= 1
            assert {k: v for k, v in rows.items() if v} == {(code, new): n for new, n in moved.items() if n}

            # Undo merges the pieces back: no new grid, no move, the grid as it was.
            page.click("#plan-undo")
            _edits(page, 0)
            drawn = _layer_grids(page)
            assert not set(created) & set(drawn)
            assert not any(k[0] == code and k[1] in created for k in _impact_rows(page))
            assert shapely.symmetric_difference(drawn[code], original).area < original.area * 1e-6
            page.screenshot(path=screenshot_path("planner-split-desktop"))
            # The one refused request is the line that cut nothing (422); nothing else failed. (A grid-outline
            # request of an earlier view may be aborted when the view moved on: the checker keeps it apart.)
            problems = checker.problems()
            assert problems and all("422" in p for p in problems), "\n".join(problems)
