"""One page of `/households` (the count and the page, as gis.households.list_households runs them), before
and after issue 13's fix, in the same run on the same database (issue 13, hhperf).

    .venv/bin/python bench/household_list_bench.py               # sample town, ~2 min on 2 busy cores
    .venv/bin/python bench/household_list_bench.py --copies 10 --rounds 1 --roles command_center,supervisor

Makes its own database (`wangge_bench_hhperf`, recreated): the sample town (17,977 households), plus
`--copies - 1` jittered copies of every household (within ~30 m, so some cross grid edges), VACUUM
ANALYZE. For each role (command center, supervisor of the first village, grid staff of its first
group, emergency team with one active emergency over that village) and each page (village, group,
bbox around the group, village+bbox — what /maps/households asks — and the role's whole scope), it
times the two statements of a 100-row page built by `gis.households.list_statements`: "before" as they
were (`before=True`: IN_GRID_BEFORE, a polygon and house->grid test per row, no start list),
"after" as the list runs now; medians over rounds, checks both give the same rows, and writes
var/bench/household_list_results.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from city import bench_url, sample_town_database, write_results  # noqa: E402

RESULTS = ROOT / "var" / "bench" / "household_list_results{}.json"
DB = "wangge_bench_hhperf"


def build(copies: int):
    from sqlalchemy import text

    from gis.auth import accounts
    from gis.auth.roles import Role
    from gis.db import transaction

    engine = sample_town_database(bench_url(DB))
    with transaction(engine) as s:
        for k in range(1, copies):
            s.execute(text(
                "INSERT INTO household (household_no, address, head_name, phone, residents, elderly, children, "
                "disabled, pregnant, bedridden, floors, natural_village_id, geom) SELECT household_no || '-c' || :k, "
                "address, head_name, phone, residents, elderly, children, disabled, pregnant, bedridden, floors, "
                "natural_village_id, ST_Translate(geom, (random() - 0.5) * 0.0006, (random() - 0.5) * 0.0006) "
                "FROM household WHERE household_no NOT LIKE '%-c%'"), {"k": k})
        accounts.create_user(s, "bench_admin", "bench-password-not-secret", Role.ADMIN)
    with engine.connect() as c:
        c.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    return engine


def main() -> None:
    from sqlalchemy import text

    from gis.auth.principal import Principal
    from gis.auth.roles import Role
    from gis.households import list_statements

    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--roles", default="command_center,supervisor,grid_staff,emergency")
    args = ap.parse_args()
    engine = build(args.copies)
    results: dict = {"copies": args.copies, "rounds": args.rounds, "cases": []}
    with engine.connect() as c:
        results["households"] = c.execute(text("SELECT count(*) FROM household")).scalar_one()
        group = c.execute(text("SELECT min(code) FROM grid WHERE level = 4 AND valid_to IS NULL")).scalar_one()
        village = group[:12] + "000"
        c.execute(text(
            "INSERT INTO emergency (title, reason, extent, declared_by) SELECT 'bench', 'bench', "
            "ST_Multi(ST_Buffer(ST_Centroid(geom), 0.012)), (SELECT min(id) FROM app_user) "
            "FROM grid WHERE code = :v AND valid_to IS NULL"), {"v": village})
        c.commit()
        env = c.execute(text("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Envelope(geom) e "
                             "FROM grid WHERE code = :g AND valid_to IS NULL) s"), {"g": group}).one()
        bbox = (env[0] - 0.002, env[1] - 0.002, env[2] + 0.002, env[3] + 0.002)
        roles = {
            "command_center": Principal(1, "bench", Role.COMMAND_CENTER),
            "supervisor": Principal(1, "bench", Role.SUPERVISOR, (village,)),
            "grid_staff": Principal(1, "bench", Role.GRID_STAFF, (group,)),
            "emergency": Principal(1, "bench", Role.EMERGENCY),
        }
        pages = {
            "village": {"grid_code": village},
            "group": {"grid_code": group},
            "bbox": {"bbox": bbox},
            "village+bbox": {"grid_code": village, "bbox": bbox},
            "scope": {},
        }
        print(f"{results['households']} households; median ms per page (count + 100 rows), {args.rounds} rounds")
        print(f"{'role':15s} {'page':13s} {'rows':>6s} {'before':>10s} {'after':>9s} {'ratio':>7s}")
        for rn, p in roles.items():
            if rn not in args.roles.split(","):
                continue
            for pn, kw in pages.items():
                if pn == "scope" and rn == "command_center":
                    continue
                times: dict[str, list[float]] = {"before": [], "after": []}
                answers = {}
                for _ in range(args.rounds):
                    for label in ("before", "after"):
                        count_sql, page_sql, params = list_statements(p, limit=100, before=label == "before", **kw)
                        t0 = time.perf_counter()
                        total = c.execute(text(count_sql), params).scalar_one()
                        ids = [r.id for r in c.execute(text(page_sql), params)]
                        times[label].append((time.perf_counter() - t0) * 1000)
                        answers[label] = (total, ids)
                assert answers["before"] == answers["after"], (rn, pn)
                b, a = statistics.median(times["before"]), statistics.median(times["after"])
                row = {"role": rn, "page": pn, "total": answers["after"][0], "before_ms": round(b, 2),
                       "after_ms": round(a, 2), "ratio": round(b / a, 1)}
                results["cases"].append(row)
                print(f"{rn:15s} {pn:13s} {row['total']:6d} {b:10.1f} {a:9.1f} {b / a:7.1f}x")
    write_results(Path(str(RESULTS).format("" if args.copies == 1 else f"_x{args.copies}")), results)


if __name__ == "__main__":
    main()
