"""Register import at county scale (issue 14): the whole import against a plain COPY of the same rows, one run.

    .venv/bin/python bench/register_import_bench.py --households 300000    # the issue's size (~1,000,000 residents)
    .venv/bin/python bench/register_import_bench.py --households 20000     # a short run on a shared machine

The town: a fresh database `wangge_regbench` (next to `wangge` on the server of DATABASE_URL / var/database_url),
migrated, holding the sample town's grids, natural villages, shelters and roads, with no household or staff.
The register: two UTF-8 CSV files written once per size under var/bench/ (a households file with 户号,
户主姓名, 联系电话, 门牌号, 人数, 经度, 纬度 …; a residents file with 户号, 姓名, 身份证号 (valid GB 11643),
性别, 出生日期, 与户主关系 …),
3.33 residents per household on average; 2/3 of the households carry coordinates (points inside the group grids),
1/3 only an address "<village><n>组<k>号" that the import places by the gazetteer.

Contestants, each in its own process (so its peak memory is its own), each into the empty tables, each committed:
(a) baseline: read the same two files with the csv module and COPY the rows into household and resident (the
    address-only households with the point the generator knows: a plain load that checks and locates nothing);
(b) Wangge: `gis.register.households.import_households` (mode all_or_nothing): every row checked (ID numbers,
    dates, phones, counts, duplicates), every household placed (coordinates, or the address), written, history.
Timed from opening the files to the commit. Figures: seconds, rows per second, the ratio (b)/(a) (goal: <= 3),
peak RSS of each process (goal for (b): < 1 GiB). Written to var/bench/register_import_results.json.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DB = "wangge_regbench"
OUT = ROOT / "var" / "bench"
RESULTS = OUT / "register_import_results.json"
SEED = 20261206
HH_HEADER = ["户号", "户主姓名", "联系电话", "行政村", "村民小组", "门牌号", "人数", "经度", "纬度"]
RES_HEADER = ["户号", "姓名", "身份证号", "性别", "出生日期", "与户主关系"]
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def bench_url(database: str):  # type: ignore[no-untyped-def]
    from city import bench_url as url

    return url(database)


def make_town() -> None:
    """The sample town without households (grids, natural villages, shelters, roads; the staff go with the
    households they point to), migrated."""
    from city import recreate_database
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from gis.db import transaction, upgrade
    from gis.sample_load import load_sample_town
    from gis.sample_town import generate_sample_town

    url = bench_url(DB)
    recreate_database(url)
    engine = create_engine(url, poolclass=NullPool)
    upgrade(engine)
    with transaction(engine) as session:
        load_sample_town(session, generate_sample_town())
    engine.dispose()
    truncate()


def _id_number(serial: int, born: dt.date, male: bool) -> str:
    # (region, sequence) from a running number: no two residents share an ID number, whatever their birth dates.
    seq = serial % 500 * 2 + (1 if male else 0)
    first = f"{410000 + serial // 500 % 10000:06d}{born:%Y%m%d}{seq:03d}"
    return first + _CHECK[sum(int(d) * w for d, w in zip(first, _WEIGHTS, strict=True)) % 11]


def write_files(n: int) -> tuple[Path, Path, Path]:
    """households.csv, residents.csv (what the import reads) and truth.csv (every point, for the baseline)."""
    import shapely
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    OUT.mkdir(parents=True, exist_ok=True)
    hh_path, res_path, truth_path = (OUT / f"register_{n}_{k}.csv" for k in ("households", "residents", "truth"))
    if hh_path.exists() and res_path.exists() and truth_path.exists():
        return hh_path, res_path, truth_path
    engine = create_engine(bench_url(DB), poolclass=NullPool)
    with engine.connect() as c:
        groups = c.execute(text(
            "SELECT g.name, v.name AS village, ST_AsBinary(g.geom) AS geom FROM grid g "
            "JOIN grid v ON v.code = g.parent_code AND v.valid_to IS NULL "
            "WHERE g.level = 4 AND g.valid_to IS NULL ORDER BY g.code")).all()
    engine.dispose()
    from gis.incidents.gazetteer import canonical

    rng = np.random.default_rng(SEED)
    polys = [shapely.from_wkb(bytes(g.geom)) for g in groups]
    # Group number as the gazetteer reads the grid's name ("第三网格" -> "3组").
    group_no = [canonical(g.name).removeprefix(canonical(g.village)) for g in groups]
    which = rng.integers(0, len(groups), n)
    surnames = list("王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗")
    given = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华")
    today = dt.date(2026, 6, 1)
    serial = 0
    with (hh_path.open("w", newline="", encoding="utf-8") as fh,
          res_path.open("w", newline="", encoding="utf-8") as fr,
          truth_path.open("w", newline="", encoding="utf-8") as ft):
        wh, wr, wt = csv.writer(fh), csv.writer(fr), csv.writer(ft)
        wh.writerow(HH_HEADER)
        wr.writerow(RES_HEADER)
        for i in range(n):
            g = int(which[i])
            poly = polys[g]
            x0, y0, x1, y1 = poly.bounds
            while True:
                x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
                if poly.contains(shapely.Point(x, y)):
                    break
            hno = f"41132410{g:04d}{i:07d}"  # 19 digits, unique
            size = int(rng.choice([1, 2, 3, 4, 5, 6], p=[0.1, 0.2, 0.25, 0.25, 0.12, 0.08]))
            head = surnames[int(rng.integers(len(surnames)))] + given[int(rng.integers(len(given)))]
            phone = f"13{int(rng.integers(0, 10**9)):09d}"
            address = f"{groups[g].village}{group_no[g]}{i % 200 + 1}号"
            by_address = i % 3 == 2
            wh.writerow([hno, head, phone, groups[g].village, group_no[g], address, size,
                         "" if by_address else f"{x:.7f}", "" if by_address else f"{y:.7f}"])
            wt.writerow([hno, f"{x:.7f}", f"{y:.7f}"])
            for k in range(size):
                male = bool(rng.integers(0, 2))
                born = today - dt.timedelta(days=int(rng.integers(365, 90 * 365)))
                name = head if k == 0 else head[0] + given[int(rng.integers(len(given)))]
                serial += 1
                wr.writerow([hno, name, _id_number(serial, born, male), "男" if male else "女", born.isoformat(),
                             "户主" if k == 0 else "家庭成员"])
    return hh_path, res_path, truth_path


def run_copy(hh_path: Path, res_path: Path, truth_path: Path) -> dict[str, float]:
    """(a): the rows as they are, COPY'd; household ids from a sequence read once."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from gis.bulk import copy_rows
    from gis.db import transaction

    engine = create_engine(bench_url(DB), poolclass=NullPool)
    t0 = time.perf_counter()
    with transaction(engine) as session:
        with truth_path.open(encoding="utf-8") as ft:
            points = {r[0]: (r[1], r[2]) for r in csv.reader(ft)}
        first = session.execute(text("SELECT nextval(pg_get_serial_sequence('household', 'id'))")).scalar_one()
        ids: dict[str, int] = {}

        def households():  # type: ignore[no-untyped-def]
            with hh_path.open(encoding="utf-8") as f:
                rows = csv.reader(f)
                next(rows)
                for r in rows:
                    ids[r[0]] = first + len(ids)
                    x, y = points[r[0]]
                    yield (ids[r[0]], r[0], r[5], r[1], r[2], int(r[6]), 0, 0, 0, 0, 0, 1,
                           f"SRID=4326;POINT({x} {y})")

        n_hh = copy_rows(session, "household", ("id", "household_no", "address", "head_name", "phone", "residents",
                                                 "elderly", "children", "disabled", "pregnant", "bedridden", "floors",
                                                 "geom"), households())
        session.execute(text("SELECT setval(pg_get_serial_sequence('household', 'id'), :v)"), {"v": first + n_hh})

        def residents():  # type: ignore[no-untyped-def]
            with res_path.open(encoding="utf-8") as f:
                rows = csv.reader(f)
                next(rows)
                for r in rows:
                    yield (ids[r[0]], r[1], r[3], r[4], r[2], r[5], False, False, False)

        n_res = copy_rows(session, "resident", ("household_id", "name", "gender", "birth_date", "id_number",
                                                "relation_to_head", "is_disabled", "is_pregnant", "is_bedridden"),
                          residents())
    seconds = time.perf_counter() - t0
    engine.dispose()
    return {"seconds": seconds, "households": n_hh, "residents": n_res}


def run_import(hh_path: Path, res_path: Path) -> dict[str, float]:
    """(b): the register import of the CLI and the API, all checks and locating included."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from gis.context import Context
    from gis.db import transaction
    from gis.register import households as register

    engine = create_engine(bench_url(DB), poolclass=NullPool)
    t0 = time.perf_counter()
    with transaction(engine) as session:
        report = register.import_households(session, Context.cli("bench"), hh_path, hh_path.name,
                                            residents=(res_path, res_path.name),
                                            options=register.ImportOptions(as_of=dt.date(2026, 6, 1))).as_dict()
    seconds = time.perf_counter() - t0
    engine.dispose()
    summary = {k: v for k, v in report.items() if isinstance(v, (int, float, str, bool))}
    summary["first_problems"] = report.get("problems", [])[:5]
    return {"seconds": seconds, **summary}


def truncate() -> None:
    """Empty the register: households and everything hanging off them, and the register's history (each
    contestant loads a town's first register; earlier runs' tenure periods and change log would otherwise
    pile up, 1,000,000 periods a run)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(bench_url(DB), poolclass=NullPool)
    with engine.begin() as c:
        c.execute(text("TRUNCATE household, resident_period, register_change, register_import CASCADE"))
    engine.dispose()


def peak_rss_mib() -> float:
    """This process's own peak resident memory: VmHWM of its address space. (ru_maxrss is not: Linux keeps
    across exec the peak of the address space the child was forked with, i.e. the parent's.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(which: str, n: int) -> None:
    """One contestant in this process; prints its figures (with the peak RSS) as JSON."""
    hh_path, res_path, truth_path = (OUT / f"register_{n}_{k}.csv" for k in ("households", "residents", "truth"))
    out = run_copy(hh_path, res_path, truth_path) if which == "copy" else run_import(hh_path, res_path)
    out["peak_rss_mib"] = peak_rss_mib()
    print("RESULT " + json.dumps(out, ensure_ascii=False, default=str))


def contest(which: str, n: int) -> dict[str, float]:
    proc = subprocess.run([sys.executable, __file__, "--child", which, "--households", str(n)],
                          capture_output=True, text=True, env=os.environ.copy(), check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{which} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result: dict[str, float] = json.loads(line.removeprefix("RESULT "))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=300_000)
    parser.add_argument("--child", choices=("copy", "import"))
    parser.add_argument("--reuse-town", action="store_true", help="keep wangge_regbench from an earlier run")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.households)
        return
    if not args.reuse_town:
        print("making the town (sample grids, no households) ...", flush=True)
        make_town()
    truncate()
    t = time.perf_counter()
    hh_path, res_path, _ = write_files(args.households)
    print(f"register files ready ({time.perf_counter() - t:.0f} s): {hh_path.name}, {res_path.name}", flush=True)
    copy = contest("copy", args.households)
    print(f"(a) plain COPY: {copy['seconds']:.1f} s, peak {copy['peak_rss_mib']:.0f} MiB", flush=True)
    truncate()
    wangge = contest("import", args.households)
    print(f"(b) register import: {wangge['seconds']:.1f} s, peak {wangge['peak_rss_mib']:.0f} MiB, "
          f"written: {wangge.get('written')}", flush=True)
    if not wangge.get("written"):
        print(f"  NOT WRITTEN: {wangge.get('problem_count')} problems, e.g. {wangge.get('first_problems')}", flush=True)
    ratio = wangge["seconds"] / copy["seconds"]
    print(f"ratio (b)/(a): {ratio:.2f} (goal <= 3); residents {copy['residents']}", flush=True)
    from city import write_results

    write_results(RESULTS, {"households": args.households, "copy": copy, "import": wangge, "ratio": ratio,
                            "when": dt.datetime.now(dt.UTC).isoformat(), "cpus": os.cpu_count()})


if __name__ == "__main__":
    main()
