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
`Accept-Encoding: gzip` through the real ASGI app (Starlette's TestClient, in process: authentication,
the version read, the statement, the audit row, gzip); (b) direct: the same statement
(`gis.tiles.*_statement`, run with its planner settings by `Statement.run`) on one connection. (a) and
(b) run in turn for each tile, `--repeat` rounds after one warm-up; medians and 95th percentiles are
over all tiles and rounds of a layer. Results are printed and written to var/bench/tiles_results.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import math
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
HOUSEHOLDS = 3_000_000
ZOOMS = range(8, 17)
LAYERS = ("grids", "incidents", "households")
GOAL_BYTES = 500 * 1024


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

            print(f"building {DB}: grids, then the incidents of {DEFAULT_CSV}", flush=True)
            frame, _ = build_city()
            load_database(url, frame)
            if not DEFAULT_CSV.exists():
                raise SystemExit(f"{DEFAULT_CSV} is missing: run `.venv/bin/python bench/city.py --skip-db` first")
            engine = create_engine(url, poolclass=NullPool)
            with transaction(engine) as session:
                import_incidents(session, open_incident_file(DEFAULT_CSV))
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


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="timed rounds per tile (after one warm-up)")
    ap.add_argument("--households", type=int, default=HOUSEHOLDS)
    ap.add_argument("--layers", default=",".join(LAYERS))
    args = ap.parse_args()

    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from api.main import create_app
    from gis.settings import Settings

    url = prepare(args.households)
    principal, token = admin_token(url)
    app = create_app(Settings(DATABASE_URL=url.render_as_string(hide_password=False)))
    engine = create_engine(url, poolclass=NullPool)
    sample = sample_tiles()
    print(f"{len(sample)} tiles at zooms {ZOOMS.start}..{ZOOMS.stop - 1}", flush=True)
    results: dict[str, Any] = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "tiles": len(sample),
                               "repeat": args.repeat, "role": "admin", "layers": {}}
    with TestClient(app, base_url="https://testserver") as client, engine.connect() as direct:
        client.headers.update({"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip"})
        for layer in args.layers.split(","):
            http_ms: list[float] = []
            sql_ms: list[float] = []
            per_zoom: dict[int, dict[str, Any]] = {}
            largest = {"bytes": 0, "gzip_bytes": 0, "tile": None}
            for round_ in range(args.repeat + 1):
                for z, x, y in sample:
                    path = f"/tiles/{layer}/{z}/{x}/{y}.pbf"
                    t = time.perf_counter()
                    with client.stream("GET", path) as r:
                        raw = b"".join(r.iter_raw())
                    h = (time.perf_counter() - t) * 1000
                    assert r.status_code in (200, 204), (path, r.status_code, raw[:200])
                    stmt = statement(layer, principal, z, x, y)
                    t = time.perf_counter()
                    row = stmt.run(direct)
                    d = (time.perf_counter() - t) * 1000
                    direct.rollback()
                    body = bytes(row[0] or b"")
                    if round_ == 0:
                        size = len(gzip.decompress(raw)) if r.headers.get("content-encoding") == "gzip" else len(raw)
                        assert size == len(body), (path, size, len(body))   # the app served that statement's tile
                        zoom = per_zoom.setdefault(z, {"largest_bytes": 0, "tiles": 0, "empty": 0})
                        zoom["tiles"] += 1
                        zoom["empty"] += size == 0
                        zoom["largest_bytes"] = max(zoom["largest_bytes"], size)
                        if size > largest["bytes"]:
                            largest = {"bytes": size, "gzip_bytes": len(raw), "tile": f"{z}/{x}/{y}"}
                        continue
                    http_ms.append(h)
                    sql_ms.append(d)
            summary = {
                "largest": largest, "within_500kb": largest["bytes"] <= GOAL_BYTES,
                "http_median_ms": round(statistics.median(http_ms), 1), "http_p95_ms": round(pct(http_ms, 0.95), 1),
                "direct_median_ms": round(statistics.median(sql_ms), 1), "direct_p95_ms": round(pct(sql_ms, 0.95), 1),
                "per_zoom": per_zoom,
            }
            summary["ratio_median"] = round(summary["http_median_ms"] / summary["direct_median_ms"], 2)
            summary["ratio_p95"] = round(summary["http_p95_ms"] / summary["direct_p95_ms"], 2)
            results["layers"][layer] = summary
            print(f"{layer:10s} largest {largest['bytes'] / 1024:7.1f} KB ({largest['gzip_bytes'] / 1024:.1f} KB gzip,"
                  f" {largest['tile']})  HTTP median {summary['http_median_ms']} ms p95 {summary['http_p95_ms']} ms | "
                  f"direct median {summary['direct_median_ms']} ms p95 {summary['direct_p95_ms']} ms | "
                  f"ratio median {summary['ratio_median']}x p95 {summary['ratio_p95']}x", flush=True)
            for z, info in sorted(per_zoom.items()):
                print(f"    z{z:<2d} {info['tiles']} tiles ({info['empty']} empty), largest "
                      f"{info['largest_bytes'] / 1024:.1f} KB", flush=True)
    engine.dispose()
    write_results(RESULTS, results)


if __name__ == "__main__":
    main()
