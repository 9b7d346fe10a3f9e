"""Vector tiles at city scale: the largest tile per layer and the time of a tile over HTTP through the app
against the same `ST_AsMVT` statement run directly in PostGIS, in one run (issue 13).

    .venv/bin/python bench/tiles_bench.py                 # ~10 min on 2 busy cores (after the data exist)
    .venv/bin/python bench/tiles_bench.py --repeat 2      # quicker

Data (database `wangge_bench_tiles`, reused when it already holds them): bench/city.py's 60,000 group
grids and 1,000,000 incidents (a copy of `wangge_bench_list` or `wangge_bench_run`, which
bench/incident_list_bench.py and bench/import_bench.py make; else the grids are built and the city's
incident CSV imported here), migrated to head, plus 3,000,000 households (bench/city.py
`load_households`, COPY).

Tiles: a fixed sample at each zoom 8..16 — the 3 × 3 tiles around the city's centre and 4 more drawn
with a fixed seed anywhere over the city (those that touch it). For every tile of every layer, as the
admin (who sees every row and every personal field: the largest tiles, and an audit row per household
point tile): (a) HTTP: `GET /tiles/{layer}/{z}/{x}/{y}.pbf` with a bearer token and
`Accept-Encoding: gzip` through the real app served by uvicorn in a thread of this process, from a client in
its own process keeping its connection alive (bench/http_client.py; `--client httpx`: httpx in this process,
as before 2026-12-07; `--client testclient`: Starlette's TestClient, as before 2026-12-06 19:30;
authentication, the version read, the statement, the audit row, gzip); (b) direct: the same statement
(`gis.tiles.*_statement`, run with its planner settings by `Statement.run`) on one connection. (a) and
(b) run in turn for each tile, `--repeat` rounds after one warm-up; medians and 95th percentiles are
over all tiles and rounds of a layer. Results are printed and written to var/bench/tiles_results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from city import (  # noqa: E402
    DEFAULT_CSV,
    DX,
    DY,
    LAT0,
    LON0,
    NX,
    NY,
    bench_url,
    build_city,
    load_database,
    load_households,
    write_results,
)

DB = "wangge_bench_tiles"
SOURCES = ("wangge_bench_list", "wangge_bench_run")   # databases that already hold the city's incidents
RESULTS = ROOT / "var" / "bench" / "tiles_results.json"
RENDER_RESULTS = ROOT / "var" / "bench" / "tiles_render_results.json"
SHOTS = ROOT / "var" / "artifacts" / "screenshots"
HOUSEHOLDS = 3_000_000
ZOOMS = range(8, 17)
LAYERS = ("grids", "incidents", "households")
GOAL_BYTES = 500 * 1024
MVT = "application/vnd.mapbox-vector-tile"


def _counts(url: Any) -> tuple[int, int, int] | None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as c:
            row = c.execute(text("SELECT (SELECT count(*) FROM grid), (SELECT count(*) FROM incident), "
                                 "(SELECT count(*) FROM household)")).one()
            return int(row[0]), int(row[1]), int(row[2])
    except OperationalError:
        return None
    finally:
        engine.dispose()


def prepare(households: int) -> Any:
    """The benchmark database with the city's grids, incidents and households, migrated to head."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from gis.db import transaction, upgrade

    url = bench_url(DB)
    counts = _counts(url)
    if counts is None or counts[1] < 900_000:
        source = next((s for s in SOURCES if (_counts(bench_url(s)) or (0, 0, 0))[1] >= 900_000), None)
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))
            if source is not None:
                print(f"copying {source} -> {DB}", flush=True)
                c.execute(text(f'CREATE DATABASE "{DB}" TEMPLATE "{source}"'))
        admin.dispose()
        if source is None:
            from gis.incidents.batch import import_incidents, open_incident_file
            from gis.settings import get_settings

            print(f"building {DB}: grids, then the incidents of {DEFAULT_CSV}", flush=True)
            frame, _ = build_city()
            load_database(url, frame)
            if not DEFAULT_CSV.exists():
                raise SystemExit(f"{DEFAULT_CSV} is missing: run `.venv/bin/python bench/city.py --skip-db` first")
            engine = create_engine(url, poolclass=NullPool)
            with transaction(engine) as session:
                import_incidents(session, open_incident_file(DEFAULT_CSV, max_rows=2_000_000),
                                 source=f"bench:{DEFAULT_CSV.name}", crs=None,
                                 outside_tolerance_m=get_settings().incident_outside_tolerance_m)
            engine.dispose()
    engine = create_engine(url, poolclass=NullPool)
    upgrade(engine)
    engine.dispose()
    counts = _counts(url)
    assert counts is not None
    if counts[2] != households:
        t = time.perf_counter()
        load_households(url, households)
        print(f"{households} households loaded in {time.perf_counter() - t:.0f} s", flush=True)
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as c:
        c.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    engine.dispose()
    print(f"{DB}: grids, incidents, households = {_counts(url)}", flush=True)
    return url


def admin_token(url: Any) -> tuple[Any, str]:
    """(principal, bearer token) of a benchmark admin account (made if missing)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from gis.auth import accounts
    from gis.auth.principal import Principal
    from gis.auth.roles import Role
    from gis.db import transaction

    engine = create_engine(url, poolclass=NullPool)
    with transaction(engine) as s:
        uid = s.execute(text("SELECT id FROM app_user WHERE username = 'bench_tiles_admin'")).scalar()
        if uid is None:
            uid = accounts.create_user(s, "bench_tiles_admin", "bench-tiles-password", Role.ADMIN).id
        secret, _ = accounts.create_token(s, uid, "tiles bench")
    engine.dispose()
    return Principal(int(uid), "bench_tiles_admin", Role.ADMIN), secret


def tile_xy(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    return (int((lon + 180.0) / 360.0 * n),
            int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n))


def sample_tiles() -> list[tuple[int, int, int]]:
    """The fixed sample: per zoom the 3 x 3 tiles round the centre and 4 seeded ones over the city."""
    rng = np.random.default_rng(13)
    lon0, lon1, lat0, lat1 = LON0, LON0 + NX * DX, LAT0, LAT0 + NY * DY
    cx, cy = (lon0 + lon1) / 2, (lat0 + lat1) / 2
    out: list[tuple[int, int, int]] = []
    for z in ZOOMS:
        xa, ya = tile_xy(lon0, lat1, z)
        xb, yb = tile_xy(lon1, lat0, z)
        x, y = tile_xy(cx, cy, z)
        picked = {(x + dx, y + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
        picked |= {tile_xy(float(rng.uniform(lon0, lon1)), float(rng.uniform(lat0, lat1)), z) for _ in range(4)}
        out += [(z, tx, ty) for tx, ty in sorted(picked) if xa <= tx <= xb and ya <= ty <= yb]
    return out


def statement(layer: str, principal: Any, z: int, x: int, y: int) -> Any:
    from gis import tiles
    from gis.incidents.service import IncidentFilter

    address = tiles.TileAddress.checked(z, x, y)
    if layer == "grids":
        return tiles.grids_statement(address)
    if layer == "incidents":
        return tiles.incidents_statement(principal, address, IncidentFilter(open_only=True), tiles.tile_now())
    return tiles.households_statement(principal, address)


def features_of(tile: bytes) -> list[str]:
    import mapbox_vector_tile

    decoded = mapbox_vector_tile.decode(tile) if tile else {}
    return sorted(repr((name, sorted(f["properties"].items()), f["geometry"]))
                  for name, layer in decoded.items() for f in layer["features"])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --- rendering: Leaflet.VectorGrid (canvas) vs MapLibre GL inside Leaflet ------------------------------

RENDER_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="/static/vendor/leaflet/dist/leaflet.css">{css}
<style>html, body, #map {{ margin: 0; height: 100%; }}</style></head>
<body><div id="map"></div>
<script src="/static/vendor/leaflet/dist/leaflet.js"></script>{scripts}
<script>
const VIEW = {view}, LAYERS = {layers}, AUTH = {{Authorization: "Bearer " + {token}}};
const map = L.map("map", {{zoomControl: false, fadeAnimation: false}}).setView([VIEW.lat, VIEW.lon], VIEW.z);
const t0 = performance.now();
{code}
</script></body></html>"""

VECTORGRID_CODE = """
const styles = {
  grids: {weight: 1, color: "#555", fill: false},
  incidents: p => ({radius: p.count ? Math.min(14, 2 + Math.sqrt(p.count)) : 3, weight: 0, fill: true,
                    fillColor: "#d33", fillOpacity: 0.7}),
  households: p => ({radius: p.count ? Math.min(14, 2 + Math.sqrt(p.count) / 2) : 2, weight: 0, fill: true,
                     fillColor: "#36c", fillOpacity: 0.6}),
};
let pending = LAYERS.length;
for (const name of LAYERS) {
  const layer = L.vectorGrid.protobuf("/tiles/" + name + "/{z}/{x}/{y}.pbf", {
    rendererFactory: L.canvas.tile, vectorTileLayerStyles: {[name]: styles[name]},
    fetchOptions: {headers: AUTH}, maxNativeZoom: 22});
  layer.once("load", () => { if (--pending === 0) window.renderMs = performance.now() - t0; });
  layer.addTo(map);
}
"""

MAPLIBRE_CODE = """
const sources = {}, layers = [];
for (const name of LAYERS) {
  sources[name] = {type: "vector", tiles: [location.origin + "/tiles/" + name + "/{z}/{x}/{y}.pbf"], maxzoom: 22};
}
const paint = {
  grids: {id: "grids", type: "line", source: "grids", "source-layer": "grids",
          paint: {"line-color": "#555", "line-width": 1}},
  incidents: {id: "incidents", type: "circle", source: "incidents", "source-layer": "incidents",
              paint: {"circle-color": "#d33", "circle-opacity": 0.7,
                      "circle-radius": ["min", 14, ["+", 2, ["sqrt", ["coalesce", ["get", "count"], 1]]]]}},
  households: {id: "households", type: "circle", source: "households", "source-layer": "households",
               paint: {"circle-color": "#36c", "circle-opacity": 0.6,
                       "circle-radius": ["min", 14, ["+", 2, ["/", ["sqrt", ["coalesce", ["get", "count"], 1]], 2]]]}},
};
for (const name of LAYERS) layers.push(paint[name]);
const gl = L.maplibreGL({style: {version: 8, sources, layers},
                         transformRequest: url => ({url, headers: AUTH})}).addTo(map);
gl.getMaplibreMap().once("idle", () => { window.renderMs = performance.now() - t0; });
"""

V = "/static/vendor/"
RENDERERS = {
    "vectorgrid_canvas": ("", f'\n<script src="{V}leaflet.vectorgrid/dist/Leaflet.VectorGrid.bundled.min.js"></script>',
                          VECTORGRID_CODE),
    "maplibre_gl_leaflet": (f'\n<link rel="stylesheet" href="{V}maplibre-gl/dist/maplibre-gl.css">',
                            f'\n<script src="{V}maplibre-gl/dist/maplibre-gl.js"></script>'
                            f'\n<script src="{V}@maplibre/maplibre-gl-leaflet/leaflet-maplibre-gl.js"></script>',
                            MAPLIBRE_CODE),
}


def render_bench(url: Any, token: str, rounds: int) -> dict[str, Any]:
    """Time from adding the layers to the map to the last tile drawn, for each renderer, in headless Chromium
    (1280 x 800). Tiles are fetched from the app once (the first load of each view and renderer) and then
    served from memory, so the times are the browser's (requests, decoding, drawing), not the database's."""
    import json as jsonlib

    from playwright.sync_api import sync_playwright

    from api.main import create_app
    from gis.settings import Settings
    from tests.browser import CHROMIUM_PATH, serve_app_in_thread

    lon, lat = LON0 + NX * DX / 2, LAT0 + NY * DY / 2
    views = {"city (z10)": {"lon": lon, "lat": lat, "z": 10}, "village (z14)": {"lon": lon, "lat": lat, "z": 14}}
    # A long admission wait: the first load asks for every city-wide tile at once (seconds each here).
    app = create_app(Settings(DATABASE_URL=url.render_as_string(hide_password=False), database_pool_size=8,
                              database_pool_timeout_s=300))
    cache: dict[str, bytes] = {}
    out: dict[str, Any] = {}
    with serve_app_in_thread(app) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM_PATH, headless=True,
                                     args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])

        def route_tiles(route: Any) -> None:
            if route.request.url in cache:
                route.fulfill(status=200, body=cache[route.request.url], content_type=MVT)
                return
            response = route.fetch()
            body = response.body()
            if response.status == 200:
                cache[route.request.url] = body
            route.fulfill(response=response, body=body)

        def serve(html: str) -> Any:
            return lambda route: route.fulfill(status=200, body=html, content_type="text/html; charset=utf-8")

        for view_name, view in views.items():
            for name, (css, scripts, code) in RENDERERS.items():
                html = RENDER_PAGE.format(css=css, scripts=scripts, code=code, view=jsonlib.dumps(view),
                                          layers=jsonlib.dumps(list(LAYERS)), token=jsonlib.dumps(token))
                times: list[float] = []
                errors: list[str] = []
                for _ in range(rounds + 1):     # the first round fills the tile cache
                    context = browser.new_context(viewport={"width": 1280, "height": 800})
                    page = context.new_page()
                    page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                    page.route(base + "/bench/render.html", serve(html))
                    page.route("**/tiles/**", route_tiles)
                    page.goto(base + "/bench/render.html")
                    page.wait_for_function("window.renderMs !== undefined", timeout=300_000)
                    times.append(page.evaluate("window.renderMs"))
                    SHOTS.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(SHOTS / f"tiles_render_z{view['z']}_{name}.png"))
                    context.close()
                result = {"median_ms": round(statistics.median(times[1:]), 1), "runs_ms": [round(t) for t in times[1:]],
                          "first_load_ms": round(times[0]), "errors": errors[:3]}
                out.setdefault(view_name, {})[name] = result
                print(f"render {view_name:14s} {name:20s} median {result['median_ms']} ms "
                      f"(first load, tiles from the app: {result['first_load_ms']} ms) {errors[:1]}", flush=True)
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="timed rounds per tile (after one warm-up)")
    ap.add_argument("--households", type=int, default=HOUSEHOLDS)
    ap.add_argument("--layers", default=",".join(LAYERS))
    ap.add_argument("--client", choices=("process", "httpx", "testclient"), default="process",
                    help="process: the app under uvicorn in a thread, the client in its own process keeping its "
                         "connection alive (bench/http_client.py, the default); httpx: httpx in this process (before "
                         "2026-12-07); testclient: Starlette's TestClient in process (before 2026-12-06 19:30)")
    ap.add_argument("--render", type=int, default=0, metavar="ROUNDS",
                    help="only time drawing a city view in headless Chromium: VectorGrid vs MapLibre, ROUNDS each")
    args = ap.parse_args()

    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from api.main import create_app
    from gis.settings import Settings

    url = prepare(args.households)
    principal, token = admin_token(url)
    if args.render:
        write_results(RENDER_RESULTS, render_bench(url, token, args.render))
        return
    app = create_app(Settings(DATABASE_URL=url.render_as_string(hide_password=False)))
    engine = create_engine(url, poolclass=NullPool)
    sample = sample_tiles()
    print(f"{len(sample)} tiles at zooms {ZOOMS.start}..{ZOOMS.stop - 1}", flush=True)
    results: dict[str, Any] = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "tiles": len(sample),
                               "repeat": args.repeat, "role": "admin", "layers": {}}
    with contextlib.ExitStack() as stack:
        if args.client == "process":
            from http_client import ClientProcess

            from tests.browser import serve_app_in_thread

            base = stack.enter_context(serve_app_in_thread(app))
            client = stack.enter_context(ClientProcess(base))
        elif args.client == "httpx":
            import httpx

            from tests.browser import serve_app_in_thread

            base = stack.enter_context(serve_app_in_thread(app))
            client = stack.enter_context(httpx.Client(base_url=base))
        else:
            client = stack.enter_context(TestClient(app, base_url="https://testserver"))
        direct = stack.enter_context(engine.connect())
        client.headers.update({"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip"})
        results["client"] = args.client
        results["loadavg_before"] = [round(v, 2) for v in os.getloadavg()]
        print(f"client {args.client}, load average {results['loadavg_before']}", flush=True)
        for layer in args.layers.split(","):
            http_ms: list[float] = []
            sql_ms: list[float] = []
            extra_ms: list[float] = []
            per_zoom: dict[int, dict[str, Any]] = {}
            largest = {"bytes": 0, "gzip_bytes": 0, "tile": None}
            for round_ in range(args.repeat + 1):
                for z, x, y in sample:
                    path = f"/tiles/{layer}/{z}/{x}/{y}.pbf"
                    stmt = statement(layer, principal, z, x, y)

                    def over_http(path: str = path) -> tuple[Any, bytes, float]:
                        if args.client == "process":   # timed by the client process
                            answer = client.get(path)
                            return answer, answer.raw, answer.ms
                        t = time.perf_counter()
                        with client.stream("GET", path) as r:
                            raw = b"".join(r.iter_raw())
                        return r, raw, (time.perf_counter() - t) * 1000

                    def in_postgis(stmt: Any = stmt) -> tuple[tuple[Any, ...], float]:
                        t = time.perf_counter()
                        row = stmt.run(direct)
                        d = (time.perf_counter() - t) * 1000
                        direct.rollback()
                        return row, d

                    # Who goes first alternates by round: the second reads pages the first brought into the
                    # caches.
                    if round_ % 2:
                        row, d = in_postgis()
                        r, raw, h = over_http()
                    else:
                        r, raw, h = over_http()
                        row, d = in_postgis()
                    assert r.status_code in (200, 204), (path, r.status_code, raw[:200])
                    body = bytes(row[0] or b"")
                    if round_ == 0:
                        served = gzip.decompress(raw) if r.headers.get("content-encoding") == "gzip" else raw
                        size = len(served)
                        # The app served that statement's tile (feature order, so bytes, may vary: compare features).
                        assert features_of(served) == features_of(body), path
                        zoom = per_zoom.setdefault(z, {"largest_bytes": 0, "tiles": 0, "empty": 0})
                        zoom["tiles"] += 1
                        zoom["empty"] += size == 0
                        zoom["largest_bytes"] = max(zoom["largest_bytes"], size)
                        if size > largest["bytes"]:
                            largest = {"bytes": size, "gzip_bytes": len(raw), "tile": f"{z}/{x}/{y}"}
                        continue
                    http_ms.append(h)
                    sql_ms.append(d)
                    extra_ms.append(h - d)
                    per_zoom[z].setdefault("http_ms", []).append(round(h, 1))
                    per_zoom[z].setdefault("direct_ms", []).append(round(d, 1))
            summary = {
                "largest": largest, "within_500kb": largest["bytes"] <= GOAL_BYTES,
                "http_median_ms": round(statistics.median(http_ms), 1), "http_p95_ms": round(pct(http_ms, 0.95), 1),
                "direct_median_ms": round(statistics.median(sql_ms), 1), "direct_p95_ms": round(pct(sql_ms, 0.95), 1),
                "http_minus_direct_median_ms": round(statistics.median(extra_ms), 1),
                "per_zoom": per_zoom,
            }
            summary["ratio_median"] = round(summary["http_median_ms"] / summary["direct_median_ms"], 2)
            summary["ratio_p95"] = round(summary["http_p95_ms"] / summary["direct_p95_ms"], 2)
            results["layers"][layer] = summary
            print(f"{layer:10s} largest {largest['bytes'] / 1024:7.1f} KB ({largest['gzip_bytes'] / 1024:.1f} KB gzip,"
                  f" {largest['tile']})  HTTP median {summary['http_median_ms']} ms p95 {summary['http_p95_ms']} ms | "
                  f"direct median {summary['direct_median_ms']} ms p95 {summary['direct_p95_ms']} ms | "
                  f"ratio median {summary['ratio_median']}x p95 {summary['ratio_p95']}x | HTTP - direct per tile "
                  f"median {summary['http_minus_direct_median_ms']} ms", flush=True)
            for z, info in sorted(per_zoom.items()):
                print(f"    z{z:<2d} {info['tiles']} tiles ({info['empty']} empty), largest "
                      f"{info['largest_bytes'] / 1024:.1f} KB; median HTTP {statistics.median(info['http_ms']):.1f}"
                      f" ms, direct {statistics.median(info['direct_ms']):.1f} ms", flush=True)
    results["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    print(f"load average after {results['loadavg_after']}", flush=True)
    engine.dispose()
    write_results(RESULTS, results)


if __name__ == "__main__":
    main()
