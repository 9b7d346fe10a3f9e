"""One page of incidents at 10,000, 100,000 and 1,000,000 incidents: `GET /incidents` through the
ASGI app against the same SQL run directly, in one run (issue 11 item 5).

    .venv/bin/python bench/incident_list_bench.py                    # ~10 min on 2 busy cores
    .venv/bin/python bench/incident_list_bench.py --sizes 10000,100000   # quicker

Makes its own database (`wangge_bench_list`, recreated): bench/city.py's hierarchy (60,000 group
grids), then the city incidents (bench/city.py's generator, same seed) imported through
gis.incidents.batch in slices so the table holds each size in turn (VACUUM ANALYZE after each).

At each size, for each case (first page; a deep page at offset 10,000; filters incl.
overdue=true): (a) the app: `GET /incidents?limit=50&...` as the command center (sees the whole
town, reporters masked, so no audit row per read), over HTTP to the real app served by uvicorn in a
thread of this process on the service's own listening socket (bearer token checked against the
database), from a client in its OWN process keeping its connection alive (bench/http_client.py;
`--client httpx`: httpx in this process, as before 2026-12-07), timed by that client; (b) direct: the
statements the list sends, built by the same `gis.incidents.service.page_statements` and sent as the
app sends them: the page shaped as JSON by PostgreSQL and the planner's estimate of the total in ONE
message with BEGIN and COMMIT, then, only where the estimate is under `max_exact_incident_count`, the
count stopped at the cap (since 2026-12-07; before, the page's plain rows, shaped in Python by the app);
(s) between them, `service.list_incidents_json` in this process (the same statements through the
service's session). The three run in turn (REPEAT rounds after WARMUP); a ratio is the median of the
per-round ratios to (b). Server memory: this process's peak RSS (VmHWM, reset through
/proc/self/clear_refs) over its RSS before, while the app answers a size's cases and 32 deep-page
requests from 8 client processes at a time. Results are printed and written to
var/bench/incident_list_results.json.

    .venv/bin/python bench/incident_list_bench.py --reuse wangge_bench_list,wangge_bench_tiles   # as they are
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from city import bench_url, build_city, command_center_caller, incident_frame, load_database, write_results  # noqa: E402
from http_client import Answer, ClientProcess  # noqa: E402

RESULTS = ROOT / "var" / "bench" / "incident_list_results.json"
DB = "wangge_bench_list"
WARMUP, REPEAT = 3, 21
LIMIT = 50


def cases(village: str) -> dict[str, dict]:
    return {
        "first page": {},
        "deep page (offset 10,000)": {"offset": 10_000},
        "overdue=true": {"overdue": True},
        "overdue=true, deep": {"overdue": True, "offset": 10_000},
        "category+state": {"category": "dispute", "state": "handle"},
        "village subtree": {"grid_code": village},
        "since/until (2023)": {
            "since": "2023-01-01T00:00:00+08:00",
            "until": "2024-01-01T00:00:00+08:00",
        },
    }


def import_slice(engine, frame, path: Path) -> dict:
    from gis.db import transaction
    from gis.incidents.batch import import_incidents, open_incident_file

    frame.to_csv(path, index=False, encoding="utf-8")
    t0 = time.perf_counter()
    with transaction(engine) as session:
        report = import_incidents(
            session,
            open_incident_file(path, max_rows=2_000_000),
            source="bench:list",
            crs=None,
            outside_tolerance_m=200.0,
        )
    path.unlink()
    return {
        "created": report.created,
        "failed": len(report.failed),
        "seconds": time.perf_counter() - t0,
    }


def median_ms(fn) -> float:
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(REPEAT):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def interleaved_ms(app, service, sql) -> dict:
    """Medians (ms) of the three, run in turn REPEAT times after WARMUP, so a change in the
    machine's load falls on all alike; ratios are medians of the per-round ratios to `sql`. A function
    that returns an `http_client.Answer` is timed by the client process (its `ms`)."""
    fns = {"app": app, "service": service, "sql": sql}
    for _ in range(WARMUP):
        for fn in fns.values():
            fn()
    ms: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(REPEAT):
        for k, fn in fns.items():
            t = time.perf_counter()
            got = fn()
            elapsed = (time.perf_counter() - t) * 1000
            ms[k].append(got.ms if isinstance(got, Answer) else elapsed)
    out = {f"{k}_ms": round(statistics.median(v), 2) for k, v in ms.items()}
    for k in ("app", "service"):
        out[f"{k}_ratio"] = round(
            statistics.median(x / y for x, y in zip(ms[k], ms["sql"], strict=True)), 2
        )
    return out


def _filter(params: dict):
    from gis.incidents import service

    return service.IncidentFilter(**{
        k: (dt.datetime.fromisoformat(v) if k in ("since", "until") else v)
        for k, v in params.items() if k != "offset"
    })


def in_service(session, principal, settings, now, params: dict):
    """The list as the endpoint calls it (its statements and the page shaped by PostgreSQL), without HTTP or
    auth: `service.list_incidents_json`."""
    from gis.context import Context
    from gis.incidents import service

    try:
        return service.list_incidents_json(
            session, Context(principal, "GET", "/incidents"), _filter(params), limit=LIMIT,
            offset=params.get("offset", 0), now=now, count_up_to=settings.max_exact_incident_count)
    finally:
        session.rollback()


def direct(raw, principal, settings, now, params: dict):
    """The list's statements for one page, run directly and sent as the app sends them: the page (shaped as
    JSON by PostgreSQL) and the planner's estimate in ONE message with BEGIN and COMMIT (`page_statements`),
    then, only where the estimate is under the cap, the bounded count. Returns (the page's ids, the total);
    the ids are read from the JSON text only for the check, after the timing's statements."""
    from psycopg import ClientCursor
    from psycopg.pq import ExecStatus
    from psycopg.rows import dict_row

    from gis.db import pyformat
    from gis.incidents import service

    offset = params.get("offset", 0)
    cap = settings.max_exact_incident_count
    stmts = service.page_statements(principal, _filter(params), order="newest", limit=LIMIT, offset=offset,
                                    count_up_to=cap, now=now, commit=True)
    results = []
    with ClientCursor(raw, row_factory=dict_row) as cur:
        cur.execute("BEGIN;" + ";".join(pyformat(sql) for sql in stmts.statements), stmts.params)
        while True:
            if cur.pgresult is not None and cur.pgresult.status == ExecStatus.TUPLES_OK:
                results.append(cur.fetchall())
            if not cur.nextset():
                break

        def run(sql, q):
            cur.execute(pyformat(sql), q)
            return cur.fetchall()

        page = results[0][0]
        shown = int(page["shown"])
        if offset == 0 and shown < LIMIT:
            total = shown
        else:
            total, exact = service.count_matches(run, stmts.cond, stmts.params, cap, plan=results[1])
            if not exact and shown:
                total = max(total, offset + shown)
    return Ids(page["items"]), total


class Ids:
    """The page's ids, read from its JSON when first asked for (not while timing)."""

    def __init__(self, items_json: str):
        self.items_json = items_json

    def __iter__(self):
        import json

        return iter([r["id"] for r in json.loads(self.items_json)])


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak_rss() -> float:
    """Start a new peak-RSS window (Linux: clear_refs 5 resets VmHWM); the RSS now, in MB."""
    import gc

    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--reuse", metavar="DB[,DB...]",
                    help="measure these existing bench databases as they are (e.g. wangge_bench_list,"
                         "wangge_bench_tiles: 100,000 and 1,000,000 incidents) instead of building one")
    ap.add_argument("--client", choices=("process", "httpx"), default="process",
                    help="process: the HTTP client in its own process (bench/http_client.py, the default); httpx: "
                         "httpx in this process (the figures before 2026-12-07)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    info = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(v, 2) for v in os.getloadavg()],
        "client": args.client,
    }
    print(f"{info['date']}  {info['cpus']} cpus  load {info['loadavg_before']}  client {args.client}", flush=True)
    results: dict = {"machine": info, "sizes": {}}
    if args.reuse:
        for db in args.reuse.split(","):
            url = bench_url(db)
            engine = create_engine(url, poolclass=NullPool)
            with engine.connect() as c:
                stored = c.execute(text("SELECT count(*) FROM incident")).scalar_one()
                village = c.execute(text("SELECT min(code) FROM grid WHERE level = 3 AND valid_to IS NULL")
                                    ).scalar_one()
            engine.dispose()
            print(f"\n{db}: {stored:,} incidents", flush=True)
            results["sizes"][stored] = {"stored": stored, "database": db,
                                        **measure(url, village, args.client)}
        info["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
        write_results(RESULTS, results)
        return

    t = time.perf_counter()
    grids, lattice = build_city()
    url = bench_url(DB)
    load_database(url, grids)
    print(f"city of {len(grids)} grids in {time.perf_counter() - t:.0f} s", flush=True)
    frame, _ = incident_frame(lattice, max(sizes))
    engine = create_engine(url, poolclass=NullPool)
    village = grids[grids["level"] == 3]["code"].min()
    loaded = 0
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            imp = import_slice(engine, frame.iloc[loaded:size], Path(tmp) / "slice.csv")
            loaded = size
            with engine.connect() as c:
                c.execution_options(isolation_level="AUTOCOMMIT").execute(
                    text("VACUUM ANALYZE incident")
                )
                stored = c.execute(text("SELECT count(*) FROM incident")).scalar_one()
            print(f"\n{stored:,} incidents (slice imported in {imp['seconds']:.0f} s)", flush=True)
            results["sizes"][size] = {"stored": stored, "import": imp, **measure(url, village, args.client)}
    engine.dispose()
    info["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    write_results(RESULTS, results)


def measure(url, village: str, client_kind: str) -> dict:
    """Every case at the database's current size: app (HTTP) / service / sql interleaved; server memory."""
    import contextlib

    import httpx
    import psycopg
    from sqlalchemy import create_engine

    from api.main import create_app
    from gis.db import make_sessionmaker
    from gis.settings import Settings
    from tests.browser import serve_app_in_thread

    principal, secret = command_center_caller(url, "bench_cc")
    settings = Settings(DATABASE_URL=url.render_as_string(hide_password=False))
    headers = {"Authorization": f"Bearer {secret}", "Accept-Encoding": "gzip"}
    pooled = create_engine(url, pool_size=1)   # the service's session keeps its connection
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(psycopg.connect(
            url.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True))
        base = stack.enter_context(serve_app_in_thread(create_app(settings)))
        client = stack.enter_context(ClientProcess(base, headers) if client_kind == "process"
                                     else httpx.Client(base_url=base, headers=headers))
        session = stack.enter_context(make_sessionmaker(pooled)())
        now = dt.datetime.now(dt.UTC)
        rss0 = reset_peak_rss()
        # What any request costs through this client and server (HTTP, one query, thread hops).
        fixed = interleaved_ms(lambda: client.get("/healthz"), lambda: None, lambda: None)
        print(f"  GET /healthz (fixed cost of a request here): {fixed['app_ms']:.2f} ms", flush=True)
        per_case: dict = {"healthz_ms": fixed["app_ms"]}
        for name, params in cases(village).items():
            query = {"limit": LIMIT, **{k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}}
            answer = client.get("/incidents", params=query)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            ids, total = direct(raw, principal, settings, now, params)
            # The same page both ways (ids in order) and the same total.
            assert [r["id"] for r in body["items"]] == list(ids), name
            assert body["total"] == total, (name, body["total"], total)
            m = interleaved_ms(
                lambda q=query: client.get("/incidents", params=q),
                lambda p=params, t=now: in_service(session, principal, settings, t, p),
                lambda p=params, t=now: direct(raw, principal, settings, t, p),
            )
            per_case[name] = {**m, "total": body["total"], "total_exact": body["total_exact"]}
            print(
                f"  {name:26s} app {m['app_ms']:6.2f} ms ({m['app_ratio']:4.2f}x)"
                f"  service {m['service_ms']:6.2f} ms ({m['service_ratio']:4.2f}x)"
                f"  sql {m['sql_ms']:6.2f} ms"
                f"  total {body['total']:>9,}{'' if body['total_exact'] else ' (est.)'}",
                flush=True,
            )
        # 32 deep pages, 8 clients at a time (each its own process and connection).
        clients = [stack.enter_context(ClientProcess(base, headers)) for _ in range(8)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: [clients[k].get("/incidents", params={"limit": LIMIT, "offset": 10_000})
                                     for _ in range(4)], range(8)))
        growth = _status_mb("VmHWM") - rss0
        print(f"  peak RSS growth while answering: {growth:.1f} MB (RSS {rss0:.0f} MB before)", flush=True)
    pooled.dispose()
    return {"cases": per_case, "rss_growth_mb": round(growth, 1), "rss_before_mb": round(rss0)}


if __name__ == "__main__":
    main()
