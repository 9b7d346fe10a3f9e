"""Batch import at city scale: Wangge's own path against a plain PostGIS join, in one run.

    .venv/bin/python bench/city.py              # once: database wangge_bench + var/bench/incidents_1m.csv
    .venv/bin/python bench/import_bench.py      # about 2-4 minutes on 2 cores

Both contestants start from the same fresh copy of the generated database (`wangge_bench_run`,
made with CREATE DATABASE ... TEMPLATE wangge_bench, no incidents) and read the same CSV:

(a) baseline, PostGIS set-based: read lon/lat from the CSV, COPY the points into a table
    (hex EWKB), ANALYZE it, then
        CREATE TABLE bench_baseline AS SELECT pts.i, g.code, g.id FROM bench_pts pts JOIN grid g
          ON g.level = 4 AND g.valid_to IS NULL AND ST_Contains(g.geom, pts.geom)
    using the grid's GIST index; committed. Timed from opening the file to the commit. It only
    answers "which group grid holds each point" (nothing is validated, stored, routed or logged).
(b) Wangge: `import_incidents(open_incident_file(csv))` — the path of the CLI and the API: the file
    streamed in parts, every row validated, every point located by the rule in
    gis/grids/locate.py, the incidents written with their four grid codes, grid version, boundary /
    outside flags, history and routing, committed. Timed the same way.

Then, untimed, the answers are checked: every point the baseline put in exactly one group grid
must have that group in Wangge's row, and a sample of 50,000 rows plus every boundary, outside
or multiply-contained point must match the SQL rule (`locate_points_sql`) exactly.

Figures are points per second over all rows of the file (1,000,000 by default); the ratio is
Wangge / baseline. Results are printed and written to var/bench/import_results.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from city import DEFAULT_CSV, DEFAULT_DB, bench_url, write_results  # noqa: E402

RESULTS = ROOT / "var" / "bench" / "import_results.json"


def clone_database(template: str, name: str):
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    url = bench_url(name)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    # The template was built by an earlier checkout: bring the copy to this checkout's schema.
    from gis.db import upgrade

    engine = create_engine(url, poolclass=NullPool)
    upgrade(engine)
    engine.dispose()
    return url


def drop_database(name: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    admin = create_engine(bench_url(name).set(database="postgres"), isolation_level="AUTOCOMMIT",
                          poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def run_baseline(engine, csv: Path) -> dict:
    import shapely

    t0 = time.perf_counter()
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        xy = pd.read_csv(csv, usecols=["lon", "lat"], dtype=np.float64, encoding="utf-8-sig")
        n = len(xy)
        hexes = shapely.to_wkb(shapely.set_srid(shapely.points(xy["lon"].to_numpy(), xy["lat"].to_numpy()), 4326),
                               hex=True, include_srid=True)
        t_read = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE bench_pts (i bigint, geom geometry(Point, 4326))")
            with cur.copy("COPY bench_pts (i, geom) FROM STDIN") as copy:
                step = 100_000
                for k in range(0, n, step):
                    part = hexes[k:k + step]
                    copy.write("".join(f"{k + j + 1}\t{h}\n" for j, h in enumerate(part)).encode())
            cur.execute("ANALYZE bench_pts")
            t_copy = time.perf_counter()
            cur.execute(
                "CREATE TABLE bench_baseline AS SELECT pts.i, g.code, g.id FROM bench_pts pts JOIN grid g "
                "ON g.level = 4 AND g.valid_to IS NULL AND ST_Contains(g.geom, pts.geom)")
            matched = cur.rowcount
        conn.commit()
    finally:
        raw.close()
    t1 = time.perf_counter()
    return {"rows": n, "matched_pairs": matched, "seconds": t1 - t0, "read_s": t_read - t0,
            "copy_s": t_copy - t_read, "join_s": t1 - t_copy, "points_per_s": n / (t1 - t0)}


def run_wangge(engine, csv: Path) -> dict:
    from gis.db import transaction
    from gis.incidents.batch import import_incidents, open_incident_file
    from gis.settings import get_settings

    settings = get_settings()
    t0 = time.perf_counter()
    with transaction(engine) as session:
        report = import_incidents(session, open_incident_file(csv, max_rows=settings.max_incident_rows_per_file),
                                  source=f"bench:{csv.name}", crs=None,
                                  outside_tolerance_m=settings.incident_outside_tolerance_m)
        t_import = time.perf_counter()
    t1 = time.perf_counter()
    reasons: dict[str, int] = {}
    for f in report.failed:
        key = f"{f['column']}: {f['reason'].split(' (')[0].split(':')[0]}"
        reasons[key] = reasons.get(key, 0) + 1
    return {"rows": report.rows, "created": report.created, "already_present": report.already_present,
            "failed": len(report.failed), "failed_by_reason": reasons, "seconds": t1 - t0,
            "import_s": t_import - t0, "commit_s": t1 - t_import,
            "points_per_s": report.rows / (t1 - t0)}


def verify(engine, csv: Path, sample: int = 50_000) -> dict:
    """Wangge's stored answers against the baseline join and against the SQL rule."""
    from sqlalchemy import text

    from gis.db import transaction
    from gis.grids.locate import locate_points_sql

    ids = pd.read_csv(csv, usecols=["external_id", "lon", "lat"], dtype={"external_id": str},
                      encoding="utf-8-sig")
    with engine.connect() as conn:
        base = pd.DataFrame(conn.execute(text("SELECT i, code FROM bench_baseline")).all(), columns=["i", "code"])
        stored = pd.DataFrame(conn.execute(text(
            "SELECT external_id, group_code, on_boundary, outside_distance_m IS NOT NULL AS outside, "
            "ST_X(geom) AS x, ST_Y(geom) AS y FROM incident")).all(),
            columns=["external_id", "group_code", "on_boundary", "outside", "x", "y"])
        events = conn.execute(text("SELECT count(*) FROM incident_event WHERE action = 'import'")).scalar_one()
    per_point = base.groupby("i")["code"].agg(["count", "first"])
    ids["i"] = np.arange(1, len(ids) + 1)
    merged = ids.merge(stored, on="external_id", how="inner").merge(per_point, left_on="i", right_index=True,
                                                                     how="left")
    single = merged[merged["count"] == 1]
    baseline_disagree = int((single["first"] != single["group_code"]).sum())
    # Exact coordinates survive the trip through the database.
    moved = int(((merged["x"] != merged["lon"]) | (merged["y"] != merged["lat"])).sum())
    special = merged[(merged["count"] != 1) | merged["on_boundary"] | merged["outside"]]
    rng = np.random.default_rng(1)
    pick = merged.iloc[rng.choice(len(merged), size=min(sample, len(merged)), replace=False)]
    check = pd.concat([special, pick]).drop_duplicates("external_id")
    with transaction(engine) as session:
        locs = locate_points_sql(session, check["x"].to_numpy(), check["y"].to_numpy())
    want_code = [loc.deepest.code if loc.inside else (loc.nearest.code if loc.nearest else None) for loc in locs]
    want_edge = [bool(loc.on_boundary) if loc.inside else False for loc in locs]
    rule_code = int((check["group_code"].to_numpy() != np.array(want_code, dtype=object)).sum())
    rule_edge = int((check["on_boundary"].to_numpy() != np.array(want_edge)).sum())
    return {"stored": len(stored), "events": int(events), "baseline_single": len(single),
            "baseline_disagreements": baseline_disagree, "coordinates_changed": moved,
            "rule_checked": len(check), "rule_checked_special": len(special),
            "rule_code_mismatches": rule_code, "rule_boundary_mismatches": rule_edge,
            "on_boundary": int(merged["on_boundary"].sum()), "outside_within_tolerance": int(merged["outside"].sum())}


def machine() -> dict:
    load = os.getloadavg()
    return {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform(),
            "loadavg_before": [round(v, 2) for v in load]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--template", default=DEFAULT_DB, help="the database bench/city.py made")
    ap.add_argument("--db", default=DEFAULT_DB + "_run", help="scratch copy used by this run (recreated)")
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--drop", action="store_true", help="drop the scratch copy at the end")
    ap.add_argument("--order", choices=("baseline-first", "wangge-first"), default="baseline-first")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="    %(message)s")
    logging.getLogger("wangge.incidents.batch").setLevel(logging.INFO)

    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    info = machine()
    print(f"{info['date']}  {info['cpus']} cpus  load {info['loadavg_before']}", flush=True)
    url = clone_database(args.template, args.db)
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        info["postgres"] = conn.execute(text("SELECT version()")).scalar_one().split(" on ")[0]
        info["postgis"] = conn.execute(text("SELECT postgis_lib_version()")).scalar_one()
        info["grids"] = dict(conn.execute(text(
            "SELECT level, count(*) FROM grid WHERE valid_to IS NULL GROUP BY level ORDER BY level")).all())
    print(f"database {args.db}: grids per level {info['grids']}", flush=True)
    results: dict = {"machine": info}
    steps = [("baseline", run_baseline), ("wangge", run_wangge)]
    if args.order == "wangge-first":
        steps.reverse()
    for name, fn in steps:
        print(f"{name} ...", flush=True)
        results[name] = r = fn(engine, args.csv)
        print(f"{name}: {r['rows']} points in {r['seconds']:.1f} s = {r['points_per_s']:,.0f} points/s  "
              + "  ".join(f"{k}={v:.1f}" for k, v in r.items() if k.endswith("_s")), flush=True)
    results["ratio"] = results["wangge"]["points_per_s"] / results["baseline"]["points_per_s"]
    print(f"wangge created {results['wangge']['created']}, failed {results['wangge']['failed']} "
          f"{results['wangge']['failed_by_reason']}")
    print(f"RATIO wangge / baseline = {results['ratio']:.2f}  (goal >= 1.5)", flush=True)
    if not args.no_verify:
        t = time.perf_counter()
        results["verify"] = v = verify(engine, args.csv)
        print(f"verify ({time.perf_counter() - t:.0f} s): {v}", flush=True)
    engine.dispose()
    if args.drop:
        drop_database(args.db)
    write_results(RESULTS, results)


if __name__ == "__main__":
    main()
