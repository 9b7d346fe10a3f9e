"""One page of incidents at 10,000, 100,000 and 1,000,000 incidents: `GET /incidents` through the
ASGI app against the same SQL run directly, in one run (issue 11 item 5).

    .venv/bin/python bench/incident_list_bench.py                    # ~10 min on 2 busy cores
    .venv/bin/python bench/incident_list_bench.py --sizes 10000,100000   # quicker

Makes its own database (`wangge_bench_list`, recreated): bench/city.py's hierarchy (60,000 group
grids), then the city incidents (bench/city.py's generator, same seed) imported through
gis.incidents.batch in slices so the table holds each size in turn (VACUUM ANALYZE after each).

At each size, for each case (first page; a deep page at offset 10,000; filters incl.
overdue=true): (a) the app: `GET /incidents?limit=50&...` as the command center (sees the whole
town, reporters masked, so no audit row per read), over HTTP from a client that keeps its
connection alive, to the real app served by uvicorn in a thread of this process on the
service's own listening socket (bearer token checked against the database); (b) direct: the
statements the list runs (page, then the count: exact up to `max_exact_incident_count`, beyond it
the planner's estimate) built by the same `gis.incidents.service.incident_filter` and run on one
psycopg connection; (s) between them, `service.list_incidents` in this process (the SQL plus
shaping the rows: what the endpoint adds before HTTP, auth and JSON). The three run in turn
(REPEAT rounds after WARMUP); a ratio is the median of the per-round ratios to (b). Server
memory: this process's peak RSS (VmHWM, reset through /proc/self/clear_refs) over its RSS before,
while the app answers a size's cases and 32 deep-page requests 8 at a time. Results are printed
and written to var/bench/incident_list_results.json.
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

from city import bench_url, build_city, incident_frame, load_database, write_results  # noqa: E402

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
    machine's load falls on all alike; ratios are medians of the per-round ratios to `sql`."""
    fns = {"app": app, "service": service, "sql": sql}
    for _ in range(WARMUP):
        for fn in fns.values():
            fn()
    ms: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(REPEAT):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            ms[k].append((time.perf_counter() - t) * 1000)
    out = {f"{k}_ms": round(statistics.median(v), 2) for k, v in ms.items()}
    for k in ("app", "service"):
        out[f"{k}_ratio"] = round(
            statistics.median(x / y for x, y in zip(ms[k], ms["sql"], strict=True)), 2
        )
    return out


def in_service(session, principal, settings, now, params: dict):
    """The list as the endpoint calls it (SQL plus shaping each row), without HTTP or auth."""
    from gis.incidents import service

    filters = {
        k: (dt.datetime.fromisoformat(v) if k in ("since", "until") else v)
        for k, v in params.items()
    }
    try:
        return service.list_incidents(
            session,
            principal,
            limit=LIMIT,
            now=now,
            count_up_to=settings.max_exact_incident_count,
            **filters,
        )
    finally:
        session.rollback()


def direct(raw, principal, settings, now, params: dict):
    """The list's statements for one page, run directly: (page rows, total)."""
    from gis.db import pyformat
    from gis.incidents import service

    filters = {
        k: (dt.datetime.fromisoformat(v) if k in ("since", "until") else v)
        for k, v in params.items()
        if k not in ("offset",)
    }
    with raw.transaction(), raw.cursor() as cur:
        cond, p = service.incident_filter(None, principal, now=now, **filters)
        p.update(limit=LIMIT, offset=params.get("offset", 0))
        cur.execute(pyformat(service.PAGE_SQL.format(cond=cond)), p)
        rows = cur.fetchall()

        def run(sql, q):
            cur.execute(pyformat(sql), q)
            names = [d.name for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

        offset = params.get("offset", 0)
        if offset == 0 and len(rows) < LIMIT:
            return rows, len(rows)
        total, exact = service.count_matches(run, cond, p, settings.max_exact_incident_count)
        if not exact and rows:
            total = max(total, offset + len(rows))
    return rows, total


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
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    import httpx
    import psycopg
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from api.main import create_app
    from gis.auth import accounts
    from gis.auth.roles import Role
    from gis.db import transaction
    from gis.settings import Settings

    info = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(v, 2) for v in os.getloadavg()],
    }
    print(f"{info['date']}  {info['cpus']} cpus  load {info['loadavg_before']}", flush=True)
    t = time.perf_counter()
    grids, lattice = build_city()
    url = bench_url(DB)
    load_database(url, grids)
    print(f"city of {len(grids)} grids in {time.perf_counter() - t:.0f} s", flush=True)
    frame, _ = incident_frame(lattice, max(sizes))
    engine = create_engine(url, poolclass=NullPool)
    with transaction(engine) as s:
        user = accounts.create_user(
            s, "bench_cc", "correct-horse-battery-staple", Role.COMMAND_CENTER
        )
        secret, _ = accounts.create_token(s, user.id, "bench")
    village = grids[grids["level"] == 3]["code"].min()
    settings = Settings(DATABASE_URL=url.render_as_string(hide_password=False))
    from gis.auth.principal import Principal

    principal = Principal(user.id, "bench_cc", Role.COMMAND_CENTER)
    raw = psycopg.connect(
        url.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True
    )
    results: dict = {"machine": info, "sizes": {}}
    loaded = 0
    from gis.db import make_sessionmaker

    pooled = create_engine(url, pool_size=1)   # the service's session keeps its connection

    from tests.browser import serve_app_in_thread

    with (
        tempfile.TemporaryDirectory() as tmp,
        serve_app_in_thread(create_app(settings)) as base,
        httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}) as client,
        make_sessionmaker(pooled)() as session,
    ):
        for size in sizes:
            imp = import_slice(engine, frame.iloc[loaded:size], Path(tmp) / "slice.csv")
            loaded = size
            with engine.connect() as c:
                c.execution_options(isolation_level="AUTOCOMMIT").execute(
                    text("VACUUM ANALYZE incident")
                )
                stored = c.execute(text("SELECT count(*) FROM incident")).scalar_one()
            print(f"\n{stored:,} incidents (slice imported in {imp['seconds']:.0f} s)", flush=True)
            now = dt.datetime.now(dt.UTC)
            rss0 = reset_peak_rss()
            # What any request costs through this client and server (HTTP, one query, thread
            # hops): the part of `app` that no list query can remove.
            fixed_ms = median_ms(lambda: client.get("/healthz"))
            print(f"  GET /healthz (fixed cost of a request here): {fixed_ms:.2f} ms", flush=True)
            per_case = {"healthz_ms": round(fixed_ms, 2)}
            for name, params in cases(village).items():
                query = {
                    "limit": LIMIT,
                    **{k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()},
                }
                answer = client.get("/incidents", params=query)
                assert answer.status_code == 200, answer.text
                body = answer.json()
                rows, total = direct(raw, principal, settings, now, params)
                # The same page both ways (ids in order) and the same total.
                assert [r["id"] for r in body["items"]] == [r[0] for r in rows], name
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
            with ThreadPoolExecutor(8) as pool:
                list(
                    pool.map(
                        lambda _: client.get(
                            "/incidents", params={"limit": LIMIT, "offset": 10_000}
                        ),
                        range(32),
                    )
                )
            peak = _status_mb("VmHWM")
            growth = peak - rss0
            print(
                f"  peak RSS growth while answering: {growth:.1f} MB (RSS {rss0:.0f} MB before)",
                flush=True,
            )
            results["sizes"][size] = {
                "stored": stored,
                "import": imp,
                "cases": per_case,
                "rss_growth_mb": round(growth, 1),
                "rss_before_mb": round(rss0),
            }
    raw.close()
    pooled.dispose()
    engine.dispose()
    write_results(RESULTS, results)


if __name__ == "__main__":
    main()
