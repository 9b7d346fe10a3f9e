"""Live feed: time from an intake to its event on an open stream, and what the change log costs an import.

    .venv/bin/python bench/city.py --skip-csv        # once, if wangge_bench does not exist yet
    .venv/bin/python bench/live_bench.py             # about 1 minute (plus --import-rows)

On a fresh copy of the generated city (`wangge_bench_live`, made by import_bench.clone_database,
migrated to this checkout's head), the real app is served by uvicorn (1 worker, 127.0.0.1). One
client opens `GET /events/incidents` (as a command-center account, by bearer token) beside
`--listeners` other open streams (other pages, idle), then posts `--intakes` incidents one after
another at random points of the town. For each: the time from POST /incidents returning (the
transaction committed) to its `created` event read off the open stream, and from sending the POST
to the event. Median, p95 and max in milliseconds.

With `--import-rows N` (e.g. 200000; needs var/bench/incidents_1m.csv from bench/city.py): the
first N rows of the city CSV imported by `import_incidents` (the CLI's and the API's path) into
the same database, rolled back each time, in three modes per round (`MODES`: as shipped; with the
insert trigger's transition table capturing every row; with no change log at all), `--import-rounds`
rounds: the seconds per run and the change-log rows written (one `bulk` row per import as shipped,
one per part of 100,000 rows with the capture, never one per incident).

Results are printed and written to var/bench/live_results.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import queue
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from city import DEFAULT_CSV, DEFAULT_DB, write_results  # noqa: E402
from import_bench import clone_database  # noqa: E402
from intake_bench import make_tokens, serve, stop, town_box, wait_ready  # noqa: E402

RESULTS = ROOT / "var" / "bench" / "live_results.json"


def read_stream(base: str, token: str, events: queue.Queue[tuple[float, dict[str, Any]]],
                opened: threading.Event, stop_reading: threading.Event) -> None:
    import httpx

    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                      timeout=httpx.Timeout(10.0, read=120.0)) as client, \
            client.stream("GET", "/events/incidents") as r:
        r.raise_for_status()
        opened.set()
        for line in r.iter_lines():
            if stop_reading.is_set():
                return
            if line.startswith("data: "):
                events.put((time.perf_counter(), json.loads(line[6:])))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def latency(url: Any, tokens: list[str], intakes: int, listeners: int, port: int) -> dict[str, Any]:
    import httpx
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    x0, y0, x1, y1 = town_box(engine)
    engine.dispose()
    env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)}
    proc = serve("api.main:app", port, env)
    base = f"http://127.0.0.1:{port}"
    threads, done = [], threading.Event()
    try:
        wait_ready(port, "/healthz", None)
        events: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        # The measured stream, and idle ones (other users' pages: each its own account's token).
        for n in range(listeners + 1):
            opened = threading.Event()
            sink: queue.Queue[tuple[float, dict[str, Any]]] = events if n == 0 else queue.Queue()
            t = threading.Thread(target=read_stream, args=(base, tokens[n], sink, opened, done), daemon=True)
            t.start()
            threads.append(t)
            if not opened.wait(30):
                raise RuntimeError("a stream did not open")
        rng = random.Random(13)
        after_return, after_send = [], []
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tokens[-1]}"}, timeout=30) as client:
            for k in range(intakes + 5):
                body = {"category": "environment", "description": f"实时推送测试 {k}",
                        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
                        "lon": rng.uniform(x0, x1), "lat": rng.uniform(y0, y1)}
                sent = time.perf_counter()
                r = client.post("/incidents", json=body)
                returned = time.perf_counter()
                if r.status_code != 201:   # a point in a gap outside the town: try another
                    continue
                wanted = r.json()["id"]
                while True:
                    arrived, data = events.get(timeout=30)
                    if data.get("id") == wanted:
                        break
                if k >= 5:   # the first five warm up
                    after_return.append((arrived - returned) * 1000)
                    after_send.append((arrived - sent) * 1000)
                time.sleep(0.02)
    finally:
        done.set()
        stop(proc)
    out: dict[str, Any] = {"intakes": len(after_return), "listeners": listeners + 1}
    for name, values in (("after_return_ms", after_return), ("after_send_ms", after_send)):
        out[name] = {"median": round(statistics.median(values), 1), "p95": round(pct(values, 95), 1),
                     "max": round(max(values), 1), "min": round(min(values), 1)}
    return out


MODES = {
    "shipped": "as shipped: a bulk-mode import turns the insert trigger off and logs one bulk row",
    "capture": "the trigger left on (its transition table holds every copied row): the hooks made no-ops",
    "no_log": "no change log at all: the trigger disabled and the hooks made no-ops (the figure before 0013)",
}


def import_cost(url: Any, rows: int, csv: Path, rounds: int) -> dict[str, Any]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from gis.db import make_sessionmaker
    from gis.incidents import batch
    from gis.incidents.batch import import_incidents, open_incident_file

    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, encoding="utf-8") as f, \
            csv.open(encoding="utf-8") as src:
        for n, line in enumerate(src):
            if n > rows:
                break
            f.write(line)
        part = Path(f.name)
    engine = create_engine(url, poolclass=NullPool)
    hooks = (batch.bulk_load_begins, batch.bulk_load_ends)
    runs: list[dict[str, Any]] = []
    try:
        for _ in range(rounds):
            for mode in MODES:
                if mode == "shipped":
                    batch.bulk_load_begins, batch.bulk_load_ends = hooks
                else:
                    batch.bulk_load_begins, batch.bulk_load_ends = (lambda cur: None), (lambda cur, n: None)
                with make_sessionmaker(engine)() as session:
                    if mode == "no_log":
                        session.execute(text("ALTER TABLE incident DISABLE TRIGGER incident_change_insert"))
                    before = session.execute(text("SELECT count(*) FROM incident_change")).scalar_one()
                    t0 = time.perf_counter()
                    report = import_incidents(session, open_incident_file(part, max_rows=rows + 1),
                                              source="bench:live", crs=None, outside_tolerance_m=200.0)
                    seconds = time.perf_counter() - t0
                    logged = session.execute(text("SELECT count(*) FROM incident_change")).scalar_one() - before
                    session.rollback()
                runs.append({"mode": mode, "seconds": round(seconds, 2), "created": report.created,
                             "change_rows": logged})
                print(f"import {rows} rows, {mode:8}: {seconds:6.2f} s, {report.created} created, "
                      f"{logged} change-log rows", flush=True)
    finally:
        batch.bulk_load_begins, batch.bulk_load_ends = hooks
        engine.dispose()
        part.unlink()
    best = {mode: min(r["seconds"] for r in runs if r["mode"] == mode) for mode in MODES}
    return {"rows": rows, "modes": MODES, "runs": runs, "best_s": best,
            "shipped_over_no_log": round(best["shipped"] / best["no_log"], 3),
            "capture_over_no_log": round(best["capture"] / best["no_log"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--template", default=DEFAULT_DB)
    ap.add_argument("--db", default=DEFAULT_DB + "_live")
    ap.add_argument("--intakes", type=int, default=200, help="0: skip the latency part")
    ap.add_argument("--listeners", type=int, default=10, help="other open streams besides the measured one")
    ap.add_argument("--import-rows", type=int, default=0)
    ap.add_argument("--import-rounds", type=int, default=2)
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--port", type=int, default=8811)
    args = ap.parse_args()

    url = clone_database(args.template, args.db)
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    tokens = [make_tokens(engine, 1)[0] for _ in range(args.listeners + 2)]   # an account per stream
    engine.dispose()
    results: dict[str, Any] = {"machine": {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                                           "cpus": os.cpu_count(),
                                           "loadavg_before": [round(v, 2) for v in os.getloadavg()]}}
    print(results["machine"], flush=True)
    if args.intakes:
        report_latency(results, latency(url, tokens, args.intakes, args.listeners, args.port))
    if args.import_rows:
        results["import"] = import_cost(url, args.import_rows, args.csv, args.import_rounds)
    results["machine"]["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    write_results(RESULTS, results)


def report_latency(results: dict[str, Any], lat: dict[str, Any]) -> None:
    results["latency"] = lat
    print(f"intake -> event on an open stream ({lat['intakes']} intakes, {lat['listeners']} streams open): "
          f"after the POST returned median {lat['after_return_ms']['median']} ms, "
          f"p95 {lat['after_return_ms']['p95']} ms, max {lat['after_return_ms']['max']} ms; "
          f"after it was sent median {lat['after_send_ms']['median']} ms, p95 {lat['after_send_ms']['p95']} ms",
          flush=True)


if __name__ == "__main__":
    main()
