"""Where the fixed cost of one API request goes (issues 12 and 13): the app served by uvicorn in a thread,
one client keeping its connection alive, requests one at a time, profiled with yappi (CPU clock of every
thread of this process). The client runs in its own process (bench/http_client.py; `--client httpx`: httpx
in this process, as before 2026-12-07, when its CPU and GIL turns were charged to the server).

    .venv/bin/python bench/request_profile.py                       # GET /incidents?limit=50, /healthz, a tile
    .venv/bin/python bench/request_profile.py --db wangge_bench_list --requests 300
    .venv/bin/python bench/request_profile.py --rounds 3 --requests 100   # HTTP vs the same SQL, interleaved
    .venv/bin/python bench/request_profile.py --rounds 2 --requests 100 --client httpx   # the old, in-process client

Needs a database of bench/city.py's city with incidents (default `wangge_bench_tiles`, made by
tiles_bench.py; `wangge_bench_list` by incident_list_bench.py). Prints, per request kind, the wall time per
request and the CPU time per request of named parts (inclusive): the token check, the list's SQL and
shaping, the tile's SQL, the transaction's end, FastAPI's dependency solving, JSON, gzip, uvicorn's HTTP
parsing, the client's side. Writes nothing to the database but an account and its token.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from city import bench_url, command_center_caller  # noqa: E402
from http_client import ClientProcess  # noqa: E402

# (label, yappi full name suffix): inclusive CPU time of each part.
PARTS = [
    ("credential check run alone (CredentialCheck.run)", "CredentialCheck.run"),
    ("list: service.list_incidents_json (JSON by PostgreSQL)", "list_incidents_json"),
    ("SQL through psycopg (script_rows: the list page or the tile)", "script_rows"),
    ("tile: gis.tiles.incidents_tile", "incidents_tile"),
    ("session commit/close (Session.commit)", "Session.commit"),
    ("admission (api.deps.Admission.enter)", "Admission.enter"),
    ("FastAPI solve_dependencies", "solve_dependencies"),
    ("JSON dumps", "json.dumps"),
    ("gzip.compress", "gzip.compress"),
    ("uvicorn h11 handle_events", "handle_events"),
    ("client: httpx Client.send", "Client.send"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="wangge_bench_tiles")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=0,
                    help="instead of profiling: ROUNDS x --requests requests of each kind, each followed by the "
                         "same statements run directly (the list's page and total as incident_list_bench.py runs "
                         "them, the tile's Statement.run); medians and the median of the per-pair ratios")
    ap.add_argument("--client", choices=("process", "httpx"), default="process",
                    help="process: the client in its own process (bench/http_client.py, the default); httpx: httpx in "
                         "this process (the figures before 2026-12-07)")
    ap.add_argument("--top", type=int, default=0, help="also list the N functions with the most CPU of their own")
    args = ap.parse_args()

    import httpx
    import yappi
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from api.main import create_app
    from gis.settings import Settings
    from tests.browser import serve_app_in_thread

    url = bench_url(args.db)
    principal, token = command_center_caller(url, "bench_profile")
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as c:
        lon, lat = c.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM incident WHERE state <> 'closed' "
                                  "ORDER BY id LIMIT 1")).one()
    engine.dispose()
    import math

    z = 14
    x = int((lon + 180.0) / 360.0 * 2**z)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * 2**z)
    kinds = {"GET /healthz": "/healthz", "GET /incidents?limit=50": "/incidents?limit=50",
             f"GET /tiles/incidents/{z}/x/y.pbf": f"/tiles/incidents/{z}/{x}/{y}.pbf"}
    print(f"db {args.db}, load average {[round(v, 2) for v in os.getloadavg()]}", flush=True)
    app = create_app(Settings(DATABASE_URL=url.render_as_string(hide_password=False)))
    headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip"}
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(serve_app_in_thread(app))
        client: Any = stack.enter_context(
            ClientProcess(base, headers) if args.client == "process" else httpx.Client(base_url=base, headers=headers))
        print(f"client: {args.client}", flush=True)
        for path in kinds.values():
            for _ in range(20):
                assert client.get(path).status_code == 200, path
        if args.rounds:
            compare(client, kinds, url, principal, lon, lat, z, x, y, args)
            return
        for kind, path in kinds.items():
            walls = []
            for _ in range(args.requests):   # unprofiled: the wall time of a request
                walls.append(timed(client, path)[1])
            yappi.clear_stats()
            yappi.set_clock_type("cpu")
            yappi.start(builtins=False, profile_threads=True)
            for _ in range(args.requests):
                client.get(path)
            yappi.stop()
            stats = yappi.get_func_stats()
            total = sum(t.ttot for t in yappi.get_thread_stats())
            print(f"\n{kind}: wall median {statistics.median(walls):.2f} ms per request (unprofiled); "
                  f"CPU of all threads {total / args.requests * 1000:.2f} ms per request (profiled)")
            for label, name in PARTS:
                found = [f for f in stats if f.full_name.endswith(name) or f.name == name.split(".")[-1]
                         and name.split(".")[0] in f.full_name]
                if not found:
                    continue
                ttot = max(f.ttot for f in found)
                print(f"  {label:48s} {ttot / args.requests * 1000:6.3f} ms")
            if args.top:
                print("  own CPU (tsub), the largest:")
                for f in sorted(stats, key=lambda f: f.tsub, reverse=True)[:args.top]:
                    where = f"{Path(f.module).name}:{f.lineno}" if f.module else ""
                    print(f"    {f.tsub / args.requests * 1000:6.3f} ms  {f.name} ({where})")


def timed(client: Any, path: str) -> tuple[int, float]:
    """(status, wall ms) of one GET: timed by the client process itself, or here around httpx."""
    if isinstance(client, ClientProcess):
        r = client.get(path)
        return r.status_code, r.ms
    t = time.perf_counter()
    status = client.get(path).status_code
    return status, (time.perf_counter() - t) * 1000


def compare(client: Any, kinds: dict[str, str], url: Any, principal: Any, lon: float, lat: float, z: int, x: int,
            y: int, args: Any) -> None:
    import datetime as dt

    import psycopg
    from incident_list_bench import direct as list_direct
    from sqlalchemy import create_engine

    from gis import tiles
    from gis.incidents.service import IncidentFilter
    from gis.settings import Settings

    settings = Settings(DATABASE_URL=url.render_as_string(hide_password=False))
    raw = psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True)
    engine = create_engine(url, pool_size=1)
    conn = engine.connect()

    def tile_direct() -> None:
        stmt = tiles.incidents_statement(principal, tiles.TileAddress(z, x, y), IncidentFilter(open_only=True),
                                         tiles.tile_now())
        stmt.run(conn)
        conn.rollback()

    directs = {"GET /healthz": None,
               "GET /incidents?limit=50": lambda: list_direct(raw, principal, settings, dt.datetime.now(dt.UTC), {}),
               next(k for k in kinds if k.startswith("GET /tiles")): tile_direct}
    for kind, path in kinds.items():
        http_ms: list[float] = []
        sql_ms: list[float] = []
        for _ in range(args.rounds * args.requests):
            status, ms = timed(client, path)
            assert status == 200, (path, status)
            http_ms.append(ms)
            fn = directs[kind]
            if fn is not None:
                t = time.perf_counter()
                fn()
                sql_ms.append((time.perf_counter() - t) * 1000)
        line = f"{kind:34s} HTTP median {statistics.median(http_ms):6.2f} ms"
        if sql_ms:
            ratio = statistics.median(h / d for h, d in zip(http_ms, sql_ms, strict=True))
            line += f"  direct median {statistics.median(sql_ms):6.2f} ms  ratio (median of pairs) {ratio:.2f}x"
        print(line, flush=True)
    print(f"load average {[round(v, 2) for v in os.getloadavg()]}", flush=True)
    conn.close()
    engine.dispose()
    raw.close()


if __name__ == "__main__":
    main()
