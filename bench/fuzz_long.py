"""A long fuzzing run of the whole API: the driver of tests/test_fuzz.py, many more requests.

    .venv/bin/python bench/fuzz_long.py                      # 20,000 requests, a random seed
    .venv/bin/python bench/fuzz_long.py --seed 1234 --requests 50000
    .venv/bin/python bench/fuzz_long.py --seed 1234 --only "POST /grids/import"

It makes its own database next to DATABASE_URL (or var/database_url): migrated, the sample town
loaded, one account and token per role; and drops it at the end (--keep-db keeps it). The seed is
printed first, so a failing run can be repeated exactly. Exit status 1 when any response was a 5xx
or a 4xx that is not problem+json; every distinct failure is listed with its request.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_database(dem_dir: Path):
    """A fresh database like the tests' one: schema, sample town (its DEM in `dem_dir`), test
    accounts. Returns (url, accounts)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    from gis.db import transaction, upgrade
    from gis.sample_load import load_sample_town
    from gis.sample_town import generate_sample_town, write_dem
    from gis.settings import Settings
    from tests.conftest import create_database, create_test_accounts

    base = make_url(Settings().require_database_url())
    url = base.set(database=f"{base.database}_fuzz_{uuid.uuid4().hex[:8]}")
    create_database(url)
    engine = create_engine(url, poolclass=NullPool)
    try:
        upgrade(engine)
        town = generate_sample_town()
        dem = write_dem(town, dem_dir / "sample_dem.tif")
        with transaction(engine) as session:
            load_sample_town(session, town, dem_path=dem)
            accounts = create_test_accounts(session)
    finally:
        engine.dispose()
    return url, accounts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    parser.add_argument("--requests", type=int, default=20_000,
                        help="at least this many requests (default 20000)")
    parser.add_argument("--anonymous-share", type=float, default=0.05,
                        help="share of the requests sent without credentials (default 0.05)")
    parser.add_argument("--only", action="append", metavar="'METHOD /path'",
                        help="fuzz only this operation (repeatable)")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    parser.add_argument("--quiet", action="store_true", help="no per-operation progress lines")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"seed {seed}  (repeat with: .venv/bin/python bench/fuzz_long.py --seed {seed} "
          f"--requests {args.requests})", flush=True)

    from gis.settings import Settings
    from tests.conftest import drop_database
    from tests.test_fuzz import FuzzResult, fuzz, load_schema, load_town, operations, protector, stop_app

    started = time.perf_counter()
    dem_dir = Path(tempfile.mkdtemp(prefix="wangge-fuzz-dem-"))
    try:
        url, accounts = make_database(dem_dir)
    except BaseException:
        shutil.rmtree(dem_dir, ignore_errors=True)
        raise
    print(f"database {url.database} ready in {time.perf_counter() - started:.0f}s", flush=True)
    from api.main import create_app

    app = create_app(Settings(DATABASE_URL=url.render_as_string(hide_password=False), database_pool_size=2))
    progress = None if args.quiet else (lambda line: print("  " + line, flush=True))
    totals: list[tuple[str, FuzzResult]] = []
    try:
        schema = load_schema(app)
        labels = [f"{op.method.upper()} {op.path}" for op in operations(schema)]
        only = set(args.only) if args.only else None
        if only and (unknown := only - set(labels)):
            parser.error(f"no such operation: {', '.join(sorted(unknown))}; the API has: {', '.join(labels)}")
        n_ops = len(only or labels)
        town = load_town(url)
        protect = protector(url, accounts["admin"]["username"])
        target_admin = int(args.requests * (1 - args.anonymous_share))
        target_anon = args.requests - target_admin

        def run(title, target, modes, headers, round_seed, **kw):
            # Rounds with fresh seeds until the target is met (small operations run out of inputs).
            result, rnd = FuzzResult(), 0
            while result.requests < target:
                budget = max(5, -(-(target - result.requests) // (n_ops * len(modes))))
                print(f"{title} round {rnd}: budget {budget} per operation and mode", flush=True)
                part = fuzz(schema, budget=budget, seed=round_seed + rnd, headers=headers, modes=modes,
                            only=only, progress=progress, **kw)
                _merge(result, part)
                rnd += 1
            totals.append((title, result))

        run("admin", target_admin, ("positive", "negative"),
            {"Authorization": f"Bearer {accounts['admin']['token']}"}, seed, protect=protect, town=town)
        if target_anon > 0:
            run("anonymous", target_anon, ("positive", "negative"), None, seed + 1_000_003)
    finally:
        stop_app(app)
        if args.keep_db:
            print(f"kept database {url.database} (its DEM: {dem_dir})")
        else:
            drop_database(url)
            shutil.rmtree(dem_dir, ignore_errors=True)

    failed = False
    for title, result in totals:
        print(result.report(title))
        failed = failed or bool(result.failures)
    total = sum(r.requests for _, r in totals)
    print(f"total: {total} requests, {sum(len(r.failures) for _, r in totals)} failing, "
          f"in {time.perf_counter() - started:.0f}s; seed {seed}")
    return 1 if failed else 0


def _merge(into, part) -> None:
    into.requests += part.requests
    into.grounded += part.grounded
    into.by_status.update(part.by_status)
    into.by_operation.update(part.by_operation)
    into.by_operation_status.update(part.by_operation_status)
    into.seconds_by_operation.update(part.seconds_by_operation)
    into.failures += part.failures
    into.errors += part.errors
    into.seconds += part.seconds


if __name__ == "__main__":
    sys.exit(main())
