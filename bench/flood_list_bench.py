"""The flood households list at city scale: `GET /flood/households` (first page, a deep page) over
HTTP against the same SQL run directly, in one run, as the household table grows (issue 12).

    .venv/bin/python bench/flood_list_bench.py                          # 100,000 then 1,000,000 households
    .venv/bin/python bench/flood_list_bench.py --sizes 100000,300000     # quicker

Makes its own database (`wangge_bench_flood_list`, recreated): bench/city.py's hierarchy (60,000
group grids), then the city-scale households of bench/flood_finder_bench.py (same generator and
seed: clusters around settlements, a fifth of them by the river) loaded with COPY in slices, so the
table holds each size in turn; the river flood extent of that bench (~84,000 vertices) is stored
once through gis.flood.extents.save_extent, and after each slice its answer is stored again (the
data changed: gis.flood.answers.ensure_answer, as POST /flood/scenarios would).

At each size, for each case (first page; a deep page at offset 10,000, or the last page when fewer):
(a) the app: `GET /flood/households?extent=…&limit=50` as the command center (every row, personal
fields masked outside an emergency), over HTTP from a client that keeps its connection alive, to the
real app served by uvicorn in a thread of this process (bearer token checked against the database;
the list writes its audit row); (b) direct: the statements the list runs for a page (the stored
answer's version check, the page of stored rows with the access predicate, the members of the page)
on one psycopg connection. They run in turn (REPEAT rounds after WARMUP); a ratio is the median of
the per-round ratios to (b). Server memory: this process's peak RSS growth (VmHWM, reset through
/proc/self/clear_refs) while the app answers a size's cases. For scale, once per size: the list
with a buffer that is not stored (`buffer_m=10`), which the finder computes on the read, as every
page did before. Results are printed and written to var/bench/flood_list_results.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from city import bench_url, build_city, command_center_caller, copy_households, load_database, write_results  # noqa: E402
from flood_finder_bench import SEED, flood_extent, household_points  # noqa: E402
from incident_list_bench import _status_mb, interleaved_ms, reset_peak_rss  # noqa: E402

RESULTS = ROOT / "var" / "bench" / "flood_list_results.json"
DB = "wangge_bench_flood_list"
LIMIT = 50


def load_slice(engine, lon: np.ndarray, lat: np.ndarray, first: int) -> float:
    """Households `first`… (numbers B…), COPY with the GIST index rebuilt after the load."""
    rng = np.random.default_rng(SEED + 2 + first)
    n = len(lon)
    residents = rng.integers(1, 7, n)
    elderly = np.minimum(residents, rng.binomial(2, 0.25, n))
    floors = rng.integers(1, 4, n)
    lo, la = lon.tolist(), lat.tolist()
    t = time.perf_counter()
    copy_households(engine, (
        (f"B{first + i:010d}", f"基准镇{i % 600:03d}村{i % 97}号", "王某", "13800000000", int(residents[i]),
         int(elderly[i]), 0, 0, 0, 0, int(floors[i]), f"SRID=4326;POINT({lo[i]!r} {la[i]!r})")
        for i in range(n)))
    return time.perf_counter() - t


def direct(raw, principal, extent_id: int, offset: int, audit: bool = False) -> list:
    """The statements the list reads one page with (gis.flood.answers.stored_page_statements: the extent's row,
    the stored answer's check, the page, its members), run directly in one message as the list sends them:
    the page's ids. `audit`: then, in one more message, the list's audit row of the read (gis.audit) and the
    COMMIT, as the list ends."""
    from psycopg import ClientCursor

    from gis import audit as audit_log
    from gis.db import pyformat
    from gis.flood import answers

    statements, params, _ = answers.stored_page_statements(principal, extent_id, 0.0, None, LIMIT, offset)
    with ClientCursor(raw) as cur:
        cur.execute("BEGIN;" + ";".join(pyformat(s) for s in statements), params)
        sets = []
        while True:
            if cur.description is not None:
                sets.append(cur.fetchall())
            if not cur.nextset():
                break
        assert sets[1], "the answer is stored"
        ids = [r[3] for r in sets[2]]
        if audit:
            cur.execute(pyformat(audit_log._INSERT.text) + ";COMMIT", audit_log.params(
                principal, "read", resource="household", method="GET", path="/flood/households",
                detail={"endpoint": "flood_households", "format": "json", "households": len(ids), "shown": 0,
                        "extent": {"id": extent_id}, "offset": offset}))
        else:
            cur.execute("COMMIT")
    return ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--reuse", action="store_true",
                    help=f"measure {DB} as it is (its households and stored extent) instead of rebuilding it")
    ap.add_argument("--client", choices=("process", "httpx"), default="process",
                    help="process: the HTTP client in its own process (bench/http_client.py, the default); httpx: "
                         "httpx in this process (the figures before 2026-12-07)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from gis.db import transaction
    from gis.flood import answers
    from gis.flood.extents import get_extent, save_extent

    info = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "loadavg_before": [round(v, 2) for v in os.getloadavg()], "client": args.client}
    print(f"{info['date']}  {info['cpus']} cpus  load {info['loadavg_before']}  client {args.client}", flush=True)
    url = bench_url(DB)
    results: dict = {"machine": info, "sizes": {}}
    if args.reuse:
        engine = create_engine(url, poolclass=NullPool)
        with transaction(engine) as s:
            extent_id = s.execute(text("SELECT min(id) FROM flood_extent")).scalar_one()
            answers.ensure_answer(s, get_extent(s, extent_id))
            size = s.execute(text("SELECT count(*) FROM household")).scalar_one()
        engine.dispose()
        print(f"\n{DB}: {size:,} households, extent {extent_id}", flush=True)
        results["sizes"][size] = measure(url, extent_id, args.client)
        info["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
        write_results(RESULTS, results)
        return

    t = time.perf_counter()
    grids, _ = build_city()
    load_database(url, grids)
    print(f"city of {len(grids)} grids in {time.perf_counter() - t:.0f} s", flush=True)
    rng = np.random.default_rng(SEED)
    geom, centre = flood_extent(rng)
    lon, lat = household_points(np.random.default_rng(SEED + 1), centre, max(sizes))
    # Slices of the register in a random but fixed order, so each size is spread like the whole.
    order = np.random.default_rng(SEED + 3).permutation(len(lon))
    lon, lat = lon[order], lat[order]
    engine = create_engine(url, poolclass=NullPool)
    with transaction(engine) as s:
        extent_id = save_extent(s, geom, "upload", "基准洪水范围").id
    results["extent_vertices"] = int(sum(len(p.exterior.coords) for p in geom.geoms))
    loaded = 0
    for size in sizes:
        secs = load_slice(engine, lon[loaded:size], lat[loaded:size], loaded)
        loaded = size
        t = time.perf_counter()
        with transaction(engine) as s:
            answers.ensure_answer(s, get_extent(s, extent_id))
        store_s = time.perf_counter() - t
        print(f"\n{size:,} households ({secs:.0f} s to load); answer stored in {store_s:.1f} s", flush=True)
        results["sizes"][size] = {"load_s": round(secs, 1), "store_answer_s": round(store_s, 1),
                                  **measure(url, extent_id, args.client)}
    engine.dispose()
    info["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    write_results(RESULTS, results)


def measure(url, extent_id: int, client_kind: str) -> dict:
    """Both cases at the database's current size, app (HTTP) and direct SQL interleaved; server memory."""
    import contextlib

    import httpx
    import psycopg
    from http_client import ClientProcess
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from api.main import create_app
    from gis.settings import Settings
    from tests.browser import serve_app_in_thread

    principal, secret = command_center_caller(url, "bench_cc")
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as c:
        c.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE flood_answer_household"))
        flooded = c.execute(text("SELECT count(*) FROM flood_answer_household WHERE extent_id = :e"),
                            {"e": extent_id}).scalar_one()
    engine.dispose()
    print(f"  {flooded:,} households in the extent", flush=True)
    settings = Settings(DATABASE_URL=url.render_as_string(hide_password=False))
    headers = {"Authorization": f"Bearer {secret}", "Accept-Encoding": "gzip"}
    per_case: dict = {"flooded": flooded}
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(psycopg.connect(
            url.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True))
        base = stack.enter_context(serve_app_in_thread(create_app(settings)))
        client = stack.enter_context(ClientProcess(base, headers) if client_kind == "process"
                                     else httpx.Client(base_url=base, headers=headers, timeout=600))
        rss0 = reset_peak_rss()
        fixed = interleaved_ms(lambda: client.get("/healthz"), lambda: None, lambda: None)
        print(f"  GET /healthz (fixed cost of a request here): {fixed['app_ms']:.2f} ms", flush=True)
        per_case["healthz_ms"] = fixed["app_ms"]
        deep = max(0, min(10_000, flooded - LIMIT))
        for name, offset in (("first page", 0), (f"deep page (offset {deep:,})", deep)):
            query = {"extent": extent_id, "limit": LIMIT, "offset": offset}
            answer = client.get("/flood/households", params=query)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert [h["id"] for h in body["items"]] == direct(raw, principal, extent_id, offset), name
            assert body["total"] == flooded
            m = interleaved_ms(lambda q=query: client.get("/flood/households", params=q),
                               lambda o=offset: direct(raw, principal, extent_id, o, audit=True),
                               lambda o=offset: direct(raw, principal, extent_id, o))
            per_case[name] = {"app_ms": m["app_ms"], "sql_ms": m["sql_ms"], "app_ratio": m["app_ratio"],
                              "sql_with_audit_ms": m["service_ms"],
                              "app_ratio_to_sql_with_audit": round(m["app_ratio"] / m["service_ratio"], 2)}
            print(f"  {name:28s} app {m['app_ms']:7.2f} ms ({m['app_ratio']:4.2f}x)  sql {m['sql_ms']:6.2f} ms"
                  f"  sql + audit row + commit {m['service_ms']:6.2f} ms", flush=True)
        growth = _status_mb("VmHWM") - rss0
        per_case["rss_growth_mb"] = round(growth, 1)
        print(f"  peak RSS growth while answering: {growth:.1f} MB (RSS {rss0:.0f} MB before)", flush=True)
        t = time.perf_counter()
        r = client.get("/flood/households", params={"extent": extent_id, "limit": LIMIT, "buffer_m": 10})
        assert r.status_code == 200, r.text
        per_case["not stored (buffer_m=10), computed on read_ms"] = round((time.perf_counter() - t) * 1000)
        print(f"  not stored (buffer_m=10): {per_case['not stored (buffer_m=10), computed on read_ms']} ms, "
              f"{r.json()['total']:,} households", flush=True)
    return per_case


if __name__ == "__main__":
    main()
