"""Editing a draft plan on the planner's map (/maps/planner) in headless Chromium: a planner starts a draft,
clicks unit cells and paints them into a neighbouring grid (impact row checked against PostGIS), undoes and
redoes the paint, and meets a stale version as a Chinese conflict with a reload. Nothing loads from the internet."""

from __future__ import annotations

import shapely
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


def test_a_planner_paints_units_into_a_neighbouring_grid_with_undo_redo_and_conflict(site, test_db_url, accounts):
    from api.main import create_app

    _, browser = site
    with database_copy(test_db_url, "planner_edit") as url, serve_app_in_thread(create_app(settings_for(url))) as base:
        eng = create_engine(url, poolclass=NullPool)
        try:
            village = _village(eng)
            with opened((base, browser), accounts, "planner", PATH) as (page, checker, status):
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
        finally:
            eng.dispose()


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
