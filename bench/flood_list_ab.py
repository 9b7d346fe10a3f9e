"""Two versions of the code, one flood households list: which serves a page faster, on the same database.

    git worktree add /work/wt/base <rev> && ln -s $PWD/.venv $PWD/var /work/wt/base/
    .venv/bin/python bench/flood_list_ab.py /work/wt/base . --rounds 2

For each round and each tree in turn (a child process per tree and round, importing that tree's `gis` and
`api`): (a) in the process, `gis.flood.answers.list_flood_households` + commit, 300 calls after 30 warm-ups
(the list's own work: statements, shaping, its audit row); (b) over HTTP, the tree's app served by uvicorn in
a thread, asked by a client in its own process (bench/http_client.py) for the first page and the page at
offset 10,000 (200 requests each after 20) and `/healthz`. Medians in ms. The database is bench/
flood_list_bench.py's (`wangge_bench_flood_list`, extent 1, its answer stored); both trees must accept its
schema.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "wangge_bench_flood_list"


def measure(tree: str) -> dict[str, float]:
    """In a child process whose `gis` and `api` are `tree`'s."""

    sys.path.insert(0, str(ROOT / "bench"))
    from city import bench_url, command_center_caller
    from http_client import ClientProcess
    from sqlalchemy import create_engine

    # bench/city.py puts this checkout first on the path and imports from it: `tree`'s go first from here on.
    sys.path.insert(0, tree)
    for name in [m for m in sys.modules if m.split(".")[0] in ("gis", "api", "tests")]:
        del sys.modules[name]

    from api.main import create_app
    from gis.context import Context
    from gis.db import make_sessionmaker
    from gis.flood import answers
    from gis.settings import Settings
    from tests.browser import serve_app_in_thread

    assert answers.__file__.startswith(str(Path(tree).resolve())), answers.__file__
    url = bench_url(DB)
    principal, secret = command_center_caller(url, "bench_ab")
    out: dict[str, float] = {}
    sessions = make_sessionmaker(create_engine(url, pool_size=1))

    def in_process() -> None:
        with sessions() as s:
            answers.list_flood_households(s, Context(principal=principal, method="GET", path="/flood/households"),
                                          extent_id=1, limit=50)
            s.commit()

    for _ in range(30):
        in_process()
    times = []
    for _ in range(300):
        t = time.perf_counter()
        in_process()
        times.append((time.perf_counter() - t) * 1000)
    out["in_process_ms"] = round(statistics.median(times), 3)
    settings = Settings(DATABASE_URL=url.render_as_string(hide_password=False))
    headers = {"Authorization": f"Bearer {secret}", "Accept-Encoding": "gzip"}
    with serve_app_in_thread(create_app(settings)) as base, ClientProcess(base, headers) as client:
        for name, path, query in (("first_page_ms", "/flood/households", {"extent": 1, "limit": 50}),
                                  ("deep_page_ms", "/flood/households", {"extent": 1, "limit": 50, "offset": 10000}),
                                  ("healthz_ms", "/healthz", None)):
            for _ in range(20):
                assert client.get(path, params=query).status_code == 200
            out[name] = round(statistics.median(client.get(path, params=query).ms for _ in range(200)), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trees", nargs="*", help="checkouts to compare (e.g. a git worktree of the base, and .)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    if not args.trees:
        ap.error("name at least one tree")
    for k in range(args.rounds):
        for tree in args.trees:
            got = subprocess.run([sys.executable, __file__, "--child", str(Path(tree).resolve())],
                                 capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            print(f"round {k + 1}  {tree:20s} {json.loads(got)}", flush=True)


if __name__ == "__main__":
    main()
