"""The floor under a request's fixed cost (issues 12 and 13): the same client process (bench/http_client.py)
against a bare ASGI app, a one-route FastAPI app (async, and through the thread pool), Wangge's 404 (its
middleware and routing, no route) and Wangge's /healthz (plus a session and one query), all under uvicorn in a
thread of this process. Medians of 400 keep-alive requests after 50 warm-ups.

    flock /work/wt/bench.lock .venv/bin/python bench/request_floor.py [--db wangge_bench_tiles] [--interleaved]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from city import bench_url  # noqa: E402
from http_client import ClientProcess  # noqa: E402


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="wangge_bench_tiles")
    ap.add_argument("--interleaved", action="store_true",
                    help="run a 30,000-row generate_series on another connection between requests (as the benches "
                         "that compare with a direct statement do), and add a route making one SELECT 1 in the thread")
    args = ap.parse_args()

    from fastapi import FastAPI
    from starlette.concurrency import run_in_threadpool

    from api.main import create_app
    from gis.settings import Settings
    from tests.browser import serve_app_in_thread

    one = FastAPI()

    @one.get("/a")
    async def in_loop() -> dict[str, int]:
        return {"ok": 1}

    @one.get("/t")
    async def in_thread() -> dict[str, int]:
        return await run_in_threadpool(lambda: {"ok": 1})

    import psycopg

    dsn = bench_url(args.db).set(drivername="postgresql").render_as_string(hide_password=False)
    route_db = psycopg.connect(dsn, autocommit=True)
    other = psycopg.connect(dsn, autocommit=True)

    @one.get("/tdb")
    async def in_thread_db() -> dict[str, int]:
        return await run_in_threadpool(lambda: {"ok": route_db.execute("SELECT 1").fetchone()[0]})  # type: ignore[index]

    def between() -> None:
        if args.interleaved:
            other.execute("SELECT count(*) FROM generate_series(1, 30000)").fetchall()

    wangge = create_app(Settings(DATABASE_URL=bench_url(args.db).render_as_string(hide_password=False)))
    mode = "interleaved" if args.interleaved else "back to back"
    print(f"load average {[round(v, 2) for v in os.getloadavg()]}, {mode}", flush=True)
    for name, app, path, status in (("bare ASGI", bare, "/", 200), ("FastAPI, async route", one, "/a", 200),
                                    ("FastAPI, thread pool", one, "/t", 200),
                                    ("FastAPI, SELECT 1 in thread", one, "/tdb", 200),
                                    ("Wangge 404", wangge, "/nope", 404), ("Wangge /healthz", wangge, "/healthz", 200)):
        with serve_app_in_thread(app) as base, ClientProcess(base) as client:
            for _ in range(50):
                assert client.get(path).status_code == status, (name, path)
            ms = []
            for _ in range(400):
                ms.append(client.get(path).ms)
                between()
            print(f"{name:28s} {statistics.median(ms):.3f} ms", flush=True)
    print(f"load average {[round(v, 2) for v in os.getloadavg()]}", flush=True)


if __name__ == "__main__":
    main()
