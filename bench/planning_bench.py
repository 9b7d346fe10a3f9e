"""Impact preview and publish of a plan touching 1,000 group grids at city scale, against the same
answers computed directly (one plain PostGIS statement; shapely's STRtree) in the same run.

    .venv/bin/python bench/planning_bench.py            # ~5 min; --villages N (default 10), --repeat N

Database `wangge_bench_planning`: a copy (CREATE DATABASE ... TEMPLATE) of the city database with
3,000,000 households and ~1,000,000 incidents (`wangge_bench_tiles`, made by bench/tiles_bench.py),
migrated to head. The plan: in each of the first N villages (100 group grids each), the group grids
are merged in pairs (001+002, 003+004, ...: the odd one takes the union, the even one is retired),
so 10 villages touch 1,000 grids (500 redrawn, 500 retired). Every publish is rolled back, so the
database stays as it was. Results: var/bench/planning_results.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from city import bench_url, write_results  # noqa: E402

DB = "wangge_bench_planning"
SOURCES = ("wangge_bench_tiles", "wangge_bench_command")
RESULTS = ROOT / "var" / "bench" / "planning_results.json"


def _households(url: Any) -> int | None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError, ProgrammingError
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as c:
            return int(c.execute(text("SELECT count(*) FROM household")).scalar_one())
    except (OperationalError, ProgrammingError):
        return None
    finally:
        engine.dispose()


def prepare() -> Any:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from gis.db import upgrade

    url = bench_url(DB)
    if (_households(url) or 0) < 3_000_000:
        from sqlalchemy.exc import OperationalError

        sources = [s for s in SOURCES if (_households(bench_url(s)) or 0) >= 3_000_000]
        if not sources:
            raise SystemExit("no city database with 3,000,000 households: run bench/tiles_bench.py first")
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))
            for source in sources:   # a template must have no other session: the first one free
                print(f"copying {source} -> {DB}", flush=True)
                t = time.perf_counter()
                try:
                    c.execute(text(f'CREATE DATABASE "{DB}" TEMPLATE "{source}"'))
                except OperationalError as e:
                    print(f"  {source} is in use: {str(e.orig).splitlines()[0]}", flush=True)
                    continue
                print(f"copied in {time.perf_counter() - t:.0f} s", flush=True)
                break
            else:
                raise SystemExit("every city database is in use; try again later")
        admin.dispose()
    engine = create_engine(url, poolclass=NullPool)
    upgrade(engine)
    with engine.connect() as c:
        c.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE grid"))
    engine.dispose()
    return url


def make_plan(session: Any, villages: int) -> tuple[list[Any], dict[str, int]]:
    import shapely
    from shapely.geometry import MultiPolygon
    from sqlalchemy import text

    from gis.planning.publish import GridChange

    first = list(session.execute(text("SELECT code FROM grid WHERE valid_to IS NULL AND level = 3 ORDER BY code "
                                      "LIMIT :n"), {"n": villages}).scalars())
    rows = session.execute(text(
        "SELECT id, code, name, parent_code, ST_AsBinary(geom) AS wkb FROM grid "
        "WHERE valid_to IS NULL AND level = 4 AND parent_code = ANY(:v) ORDER BY code"), {"v": first}).all()
    by_code = {r.code: r for r in rows}
    changes, base = [], {}
    for r in rows:
        n = int(r.code[12:])
        partner = by_code.get(f"{r.code[:12]}{n + 1:03d}")
        if n % 2 == 0 or partner is None:
            continue
        merged = shapely.union(shapely.from_wkb(bytes(r.wkb)), shapely.from_wkb(bytes(partner.wkb)))
        parts = [p for p in getattr(merged, "geoms", [merged])]
        changes.append(GridChange(r.code, 4, r.name, r.parent_code, MultiPolygon(parts)))
        changes.append(GridChange(partner.code, 4, partner.name, partner.parent_code, None))
        base[r.code], base[partner.code] = int(r.id), int(partner.id)
    return changes, base


# The same move counts by one plain statement: old group and proposed group of every household in
# the touched area by ST_Contains (the plan's grids in a temporary table), no engine.
DIRECT_SQL = """
WITH touched AS (SELECT geom FROM grid WHERE valid_to IS NULL AND code = ANY(:closing)),
hh AS (SELECT DISTINCT h.id, h.geom FROM touched t JOIN household h ON ST_Contains(t.geom, h.geom))
SELECT o.code AS before, coalesce(p.code, u.code) AS after, count(*) AS n
FROM hh
JOIN grid o ON o.valid_to IS NULL AND o.level = 4 AND ST_Contains(o.geom, hh.geom)
LEFT JOIN bench_proposed p ON ST_Contains(p.geom, hh.geom)
LEFT JOIN grid u ON p.code IS NULL AND u.valid_to IS NULL AND u.level = 4 AND NOT (u.code = ANY(:closing))
     AND ST_Contains(u.geom, hh.geom)
WHERE o.code IS DISTINCT FROM coalesce(p.code, u.code)
GROUP BY 1, 2
"""


def direct_sql(session: Any, changes: list[Any]) -> dict[tuple[str, str], int]:
    import shapely
    from sqlalchemy import text

    session.execute(text("SET LOCAL jit = off"))   # as the engine does: JIT costs more than such a plan runs
    session.execute(text("CREATE TEMP TABLE bench_proposed (code varchar(15), geom geometry(MultiPolygon, 4326)) "
                         "ON COMMIT DROP"))
    kept = [c for c in changes if c.geom is not None]
    session.execute(text("INSERT INTO bench_proposed SELECT u.c, ST_SetSRID(ST_GeomFromWKB(u.w), 4326) "
                         "FROM unnest(CAST(:c AS text[]), CAST(:w AS bytea[])) u(c, w)"),
                    {"c": [c.code for c in kept], "w": [shapely.to_wkb(c.geom) for c in kept]})
    session.execute(text("CREATE INDEX ON bench_proposed USING gist (geom)"))
    session.execute(text("ANALYZE bench_proposed"))
    closing = [c.code for c in changes]
    out = {(r.before, r.after): int(r.n) for r in session.execute(text(DIRECT_SQL), {"closing": closing})}
    session.execute(text("DROP TABLE bench_proposed"))
    return out


def direct_shapely(session: Any, changes: list[Any]) -> dict[tuple[str, str], int]:
    """The households of the touched grids read once (x, y), located in the old and the proposed
    grids with shapely's STRtree (predicate within)."""
    import numpy as np
    import shapely
    from sqlalchemy import text

    closing = [c.code for c in changes]
    old = session.execute(text("SELECT code, ST_AsBinary(geom) AS wkb FROM grid WHERE valid_to IS NULL "
                               "AND code = ANY(:c)"), {"c": closing}).all()
    xy = np.asarray(session.execute(text(
        "SELECT DISTINCT h.id, ST_X(h.geom), ST_Y(h.geom) FROM grid g JOIN household h ON ST_Contains(g.geom, h.geom) "
        "WHERE g.valid_to IS NULL AND g.code = ANY(:c)"), {"c": closing}).all(), dtype=float)
    points = shapely.points(xy[:, 1], xy[:, 2])
    old_codes = [r.code for r in old]
    old_tree = shapely.STRtree(shapely.from_wkb([bytes(r.wkb) for r in old]))
    kept = [c for c in changes if c.geom is not None]
    new_tree = shapely.STRtree([c.geom for c in kept])
    before = np.full(len(points), None, dtype=object)
    after = np.full(len(points), None, dtype=object)
    i, j = old_tree.query(points, predicate="within")
    before[i] = np.asarray(old_codes, dtype=object)[j]
    i, j = new_tree.query(points, predicate="within")
    after[i] = np.asarray([c.code for c in kept], dtype=object)[j]
    out: dict[tuple[str, str], int] = {}
    for b, a in zip(before, after, strict=True):
        if b != a:
            out[(b, a)] = out.get((b, a), 0) + 1
    return out


def direct_publish(session: Any, changes: list[Any], at: Any) -> int:
    """The writes alone, by plain statements: close, insert, re-place open incidents by ST_Contains."""
    import shapely
    from sqlalchemy import text

    closing = [c.code for c in changes]
    session.execute(text("SET LOCAL jit = off"))
    ids = list(session.execute(text("UPDATE grid SET valid_to = :at WHERE valid_to IS NULL AND code = ANY(:c) "
                                    "RETURNING id"), {"at": at, "c": closing}).scalars())
    kept = [c for c in changes if c.geom is not None]
    session.execute(text(
        "INSERT INTO grid (code, name, level, parent_code, geom, valid_from) SELECT u.c, u.n, 4, u.p, "
        "ST_SetSRID(ST_GeomFromWKB(u.w), 4326), :at FROM unnest(CAST(:c AS text[]), CAST(:n AS text[]), "
        "CAST(:p AS text[]), CAST(:w AS bytea[])) u(c, n, p, w)"),
        {"at": at, "c": [c.code for c in kept], "n": [c.name for c in kept], "p": [c.parent_code for c in kept],
         "w": [shapely.to_wkb(c.geom) for c in kept]})
    moved = session.execute(text(
        """
        UPDATE incident i SET group_code = g.code, grid_version_id = g.id
        FROM grid old JOIN incident j ON ST_Contains(old.geom, j.geom) AND j.state <> 'closed'
        JOIN grid g ON g.valid_to IS NULL AND g.level = 4 AND ST_Contains(g.geom, j.geom)
        WHERE old.id = ANY(:ids) AND i.id = j.id
        """), {"ids": ids}).rowcount
    session.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))
    return int(moved)


def timed(fn: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--villages", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from gis import clock
    from gis.context import Context
    from gis.db import make_sessionmaker
    from gis.planning.publish import impact, publish

    url = prepare()
    engine = create_engine(url, poolclass=NullPool)
    sessions = make_sessionmaker(engine)
    ctx = Context(principal=None, method="BENCH", path="bench/planning_bench.py", actor="bench")
    figures: dict[str, Any] = {}
    with sessions() as s, s.begin():
        counts = s.execute(text("SELECT (SELECT count(*) FROM grid WHERE valid_to IS NULL), "
                                "(SELECT count(*) FROM household), (SELECT count(*) FROM incident)")).one()
        changes, base = make_plan(s, args.villages)
    figures["town"] = {"grids": counts[0], "households": counts[1], "incidents": counts[2]}
    figures["plan"] = {"touched": len(changes), "redrawn": sum(c.geom is not None for c in changes),
                       "retired": sum(c.geom is None for c in changes)}
    print(figures, flush=True)

    runs: dict[str, list[float]] = {"impact": [], "direct_sql": [], "direct_shapely": [], "publish": [],
                                    "direct_publish": []}
    answers: dict[str, Any] = {}
    for _ in range(args.repeat):
        for name, fn in (("impact", lambda s: impact(s, changes)), ("direct_sql", lambda s: direct_sql(s, changes)),
                         ("direct_shapely", lambda s: direct_shapely(s, changes))):
            with sessions() as s, s.begin():
                dt_s, out = timed(lambda fn=fn, s=s: fn(s))
                s.rollback()
            runs[name].append(dt_s)
            answers[name] = out
            print(f"{name}: {dt_s:.2f} s", flush=True)
        for name, fn in (("publish", lambda s: publish(s, ctx, changes, effective_at=clock.now(), base=base)),
                         ("direct_publish", lambda s: direct_publish(s, changes, clock.now()))):
            with sessions() as s, s.begin():
                dt_s, out = timed(lambda fn=fn, s=s: fn(s))
                s.rollback()
            runs[name].append(dt_s)
            answers[name] = out
            print(f"{name}: {dt_s:.2f} s", flush=True)
    preview = {(m["from"], m["to"]): m["households"] for m in answers["impact"].moves if m["households"]}
    assert preview == answers["direct_sql"] == answers["direct_shapely"], "the three answers differ"
    result = answers["publish"]
    figures["moved_households"] = sum(preview.values())
    figures["publish"] = {"incidents_checked": result.incidents_checked, "incidents_moved": result.incidents_moved,
                          "direct_incidents_updated": answers["direct_publish"]}
    figures["median_s"] = {k: round(statistics.median(v), 3) for k, v in runs.items()}
    figures["runs_s"] = {k: [round(x, 3) for x in v] for k, v in runs.items()}
    print(figures, flush=True)
    write_results(RESULTS, figures)
    engine.dispose()


if __name__ == "__main__":
    main()
