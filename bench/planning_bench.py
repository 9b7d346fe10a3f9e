"""Validation, impact preview and publish of a plan touching 1,000 group grids at city scale, against the
same answers computed directly (plain PostGIS statements; shapely's STRtree) in the same run.

    .venv/bin/python bench/planning_bench.py            # ~5 min; --villages N (default 10), --repeat N

Database `wangge_bench_planning`: a copy (CREATE DATABASE ... TEMPLATE) of the city database with
3,000,000 households and ~1,000,000 incidents (`wangge_bench_tiles`, made by bench/tiles_bench.py),
migrated to head. The plan: in each of the first N villages (100 group grids each), the group grids
are merged in pairs (001+002, 003+004, ...: the odd one takes the union, the even one is retired),
so 10 villages touch 1,000 grids (500 redrawn, 500 retired). Every publish is rolled back, so the
database stays as it was. Validation runs on the plan stored as the engine stores it (create_plan, in
the run's transaction, rolled back): `validate` (Draft + validate_plan, as GET /plans/{id}/validation)
against `direct_validate` (the same checks as plain PostGIS statements), on the plan and on a variant
with one planted problem of each kind (`make_planted`); both must find the same problems.
Results: var/bench/planning_results.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from city import bench_url, table_counts, write_results  # noqa: E402

DB = "wangge_bench_planning"
SOURCES = ("wangge_bench_tiles", "wangge_bench_command")
RESULTS = ROOT / "var" / "bench" / "planning_results.json"


def _households(url: Any) -> int | None:
    counts = table_counts(url, "household")
    return counts[0] if counts else None


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


# --- validation ------------------------------------------------------------------------------------

PLANTED = {"overlap", "outside_parent", "gap", "invalid_geometry", "non_contiguous", "bad_parent", "empty_geometry",
           "bad_code"}


def make_planted(session: Any, changes: list[Any]) -> list[Any]:
    """The same plan with one problem of each kind a plan drawn this way can have, on grids of the
    first village: a grid grown 50 m past its siblings and its village (overlap, outside_parent), one
    shrunk 20 m (gap), a bow-tie (invalid_geometry), one with a far-off second piece (non_contiguous),
    one given another village as parent (bad_parent), one emptied (empty_geometry), and a new grid with a
    malformed code inside a sibling (bad_code). duplicate_code cannot be planted through create_plan (it
    refuses a code in use)."""
    import dataclasses

    import shapely
    from shapely.geometry import MultiPolygon, Polygon
    from sqlalchemy import text

    from gis.planning.changes import GridChange

    kept = [i for i, c in enumerate(changes) if c.geom is not None]
    village, other = sorted({changes[i].parent_code for i in kept})[:2]
    vgeom = shapely.from_wkb(bytes(session.execute(text(
        "SELECT ST_AsBinary(geom) FROM grid WHERE valid_to IS NULL AND code = :c"), {"c": village}).scalar_one()))
    mine = [i for i in kept if changes[i].parent_code == village]
    edge = next(i for i in mine if changes[i].geom.intersects(vgeom.boundary))
    rest = [i for i in mine if i != edge and not changes[i].geom.intersects(changes[edge].geom.buffer(0.001))]
    out = list(changes)

    def put(i: int, **kw: Any) -> None:
        out[i] = dataclasses.replace(changes[i], **kw)

    def multi(g: Any) -> MultiPolygon:
        return MultiPolygon(list(shapely.get_parts(g)))

    put(edge, geom=multi(changes[edge].geom.buffer(0.0005)))
    shrink, bowtie, split, orphan = rest[0], rest[len(rest) // 4], rest[len(rest) // 2], rest[3 * len(rest) // 4]
    put(shrink, geom=multi(changes[shrink].geom.buffer(-0.0002)))
    x0, y0, x1, y1 = changes[bowtie].geom.bounds
    put(bowtie, geom=MultiPolygon([Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1), (x0, y0)])]))
    x0, y0, x1, y1 = changes[split].geom.bounds
    far = Polygon([(x1 + 0.002, y0), (x1 + 0.003, y0), (x1 + 0.003, y0 + 0.001), (x1 + 0.002, y0 + 0.001)])
    put(split, geom=multi(shapely.union(changes[split].geom, far)))
    put(orphan, parent_code=other)
    put(rest[-1], geom=MultiPolygon())
    c = changes[rest[len(rest) // 8]].geom.centroid
    box = shapely.box(c.x - 1e-4, c.y - 1e-4, c.x + 1e-4, c.y + 1e-4)
    out.append(GridChange(f"{village[:12]}0a1", 4, "坏码", village, MultiPolygon([box])))
    return out


def engine_validate(session: Any, plan: Any) -> set[tuple[str, Any]]:
    """GET /plans/{id}/validation's work: the stored plan read (Draft) and validated."""
    from gis.planning.plans import Draft
    from gis.planning.validate import validate_plan

    v = validate_plan(Draft(session, plan))
    return {problem_key(p.type, str(p.loc[1]), p.ctx or {}) for p in v.problems}


def problem_key(kind: str, code: str, ctx: dict[str, Any]) -> tuple[str, Any]:
    """What a problem is about, however it is reported: an overlap by its pair, a gap by its parent."""
    if kind == "overlap":
        return kind, tuple(sorted((code, str(ctx["other_code"]))))
    if kind == "gap":
        return kind, str(ctx["parent_code"])
    return kind, code


# The proposed state around the plan in one temp table: the plan's rows (not retired; invalid ones
# repaired, as the engine judges the rest on a repaired copy) and the current grids they are judged
# with (their parents, siblings and children) that the plan does not stand for.
DIRECT_STATE = """
CREATE TEMP TABLE bv_state ON COMMIT DROP AS
WITH pr AS (SELECT * FROM plan_grid WHERE plan_id = :plan AND NOT retired),
shadow AS (SELECT coalesce(r.old_code, r.code) AS code FROM plan_grid r WHERE r.plan_id = :plan
           AND (r.old_code IS NOT NULL OR r.code IN (SELECT jsonb_object_keys(base) FROM plan WHERE id = :plan)))
SELECT code, level, parent_code, true AS planned,
       CASE WHEN ST_IsValid(geom) THEN geom ELSE ST_CollectionExtract(ST_MakeValid(geom), 3) END AS geom
FROM pr WHERE geom IS NOT NULL AND NOT ST_IsEmpty(geom)
UNION ALL
SELECT g.code, g.level, g.parent_code, false, g.geom FROM grid g
WHERE g.valid_to IS NULL AND g.code NOT IN (SELECT code FROM shadow)
  AND (g.code IN (SELECT parent_code FROM pr) OR g.parent_code IN (SELECT parent_code FROM pr)
       OR g.parent_code IN (SELECT code FROM pr))
"""

# The parts of a lon/lat shape X wider than the boundary tolerance, their area in m² (the engine's
# rule: a part is wider than w when a -w/2 buffer leaves something; metric CRS :srid).
_WIDE = ("(SELECT coalesce(sum(ST_Area(m)), 0) FROM (SELECT ST_Transform(d.geom, :srid) AS m "
         "FROM ST_Dump(ST_CollectionExtract({x}, 3)) d) q WHERE NOT ST_IsEmpty(ST_Buffer(m, -:half)))")

DIRECT_CHECKS = {
    "empty_geometry": "SELECT code FROM plan_grid WHERE plan_id = :plan AND NOT retired "
                      "AND (geom IS NULL OR ST_IsEmpty(geom))",
    "invalid_geometry": "SELECT code FROM plan_grid WHERE plan_id = :plan AND NOT retired AND geom IS NOT NULL "
                        "AND NOT ST_IsEmpty(geom) AND NOT ST_IsValid(geom)",
    "duplicate_code": """
        SELECT r.code FROM plan_grid r JOIN grid g ON g.valid_to IS NULL AND g.code = r.code
        WHERE r.plan_id = :plan AND NOT r.retired AND (r.old_code IS NOT NULL
              OR r.code NOT IN (SELECT jsonb_object_keys(base) FROM plan WHERE id = :plan))
          AND r.code NOT IN (SELECT coalesce(old_code, code) FROM plan_grid WHERE plan_id = :plan)""",
    "bad_code": "SELECT code FROM plan_grid WHERE plan_id = :plan AND NOT retired AND (code !~ CASE level "
                "WHEN 1 THEN '^[0-9]{9}000000$' WHEN 2 THEN '^[0-9]{9}9[0-9]{2}000$' "
                "WHEN 3 THEN '^[0-9]{9}[0-8][0-9]{2}000$' WHEN 4 THEN '^[0-9]{9}[0-8][0-9]{5}$' ELSE '^$' END "
                "OR (level = 3 AND substr(code, 10, 3) = '000') OR (level = 4 AND right(code, 3) = '000'))",
    "bad_parent": """
        SELECT r.code FROM plan_grid r LEFT JOIN bv_state p ON p.code = r.parent_code AND p.level = r.level - 1
        WHERE r.plan_id = :plan AND NOT r.retired AND r.level > 1
          AND (p.code IS NULL OR left(r.parent_code, 9) <> left(r.code, 9)
               OR (r.level = 4 AND left(r.parent_code, 12) <> left(r.code, 12)))""",
    "outside_parent": f"""
        SELECT c.code FROM bv_state c JOIN bv_state p ON p.code = c.parent_code AND p.level = c.level - 1
        WHERE c.planned AND left(c.parent_code, 9) = left(c.code, 9)
          AND (c.level <> 4 OR left(c.parent_code, 12) = left(c.code, 12))
          AND {_WIDE.format(x="ST_Difference(c.geom, p.geom)")} > :tol""",
    "overlap": f"""
        SELECT a.code, b.code FROM bv_state a JOIN bv_state b ON a.parent_code = b.parent_code AND a.code <> b.code
             AND (NOT b.planned OR a.code < b.code) AND ST_Intersects(a.geom, b.geom)
        WHERE a.planned AND {_WIDE.format(x="ST_Intersection(a.geom, b.geom)")} > :tol""",
    "gap": f"""
        SELECT p.code FROM bv_state p
        JOIN LATERAL (SELECT ST_Union(k.geom) AS u FROM bv_state k WHERE k.parent_code = p.code) kids ON true
        WHERE kids.u IS NOT NULL AND (p.planned OR p.code IN (SELECT parent_code FROM bv_state WHERE planned))
          AND {_WIDE.format(x="ST_Difference(p.geom, kids.u)")} > :tol""",
    "non_contiguous": """
        SELECT r.code FROM plan_grid r WHERE r.plan_id = :plan AND NOT r.retired AND NOT r.allow_parts
          AND (SELECT count(*) FROM ST_Dump(r.geom) d WHERE ST_Area(ST_Transform(d.geom, :srid)) > :tol) > 1""",
    "staff": """
        SELECT r.code, bool_or(s.role = 'grid_leader'), bool_or(s.role = 'grid_member')
        FROM plan_grid r LEFT JOIN staff s ON s.grid_code = coalesce(r.old_code, r.code)
        WHERE r.plan_id = :plan AND NOT r.retired AND r.level = 4 AND r.geom IS NOT NULL AND NOT ST_IsEmpty(r.geom)
        GROUP BY r.code""",
}


def direct_validate(session: Any, plan: Any) -> set[tuple[str, Any]]:
    """The same checks by plain PostGIS statements on the stored plan (plan_grid) and the live grids
    around it, in the engine's metric CRS with its default tolerances (1 m², 0.1 m wide)."""
    from sqlalchemy import text

    from gis.crs import metric_crs_for
    from gis.grids.validate import DEFAULT_TOLERANCE_M

    session.execute(text("SET LOCAL jit = off"))
    lon, lat = session.execute(text("SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(ST_Extent(geom)) c "
                                    "FROM plan_grid WHERE plan_id = :plan) q"), {"plan": plan.id}).one()
    srid = int(metric_crs_for(lon, lat).split(":")[1])
    session.execute(text(DIRECT_STATE), {"plan": plan.id})
    session.execute(text("CREATE INDEX ON bv_state (parent_code)"))
    session.execute(text("CREATE INDEX ON bv_state USING gist (geom)"))
    session.execute(text("ANALYZE bv_state"))
    args = {"plan": plan.id, "srid": srid, "half": DEFAULT_TOLERANCE_M / 2, "tol": 1.0}
    found: set[tuple[str, Any]] = set()
    bad_code: set[str] = set()
    for kind, sql in DIRECT_CHECKS.items():
        rows = session.execute(text(sql), {k: v for k, v in args.items() if f":{k}" in sql}).all()
        if kind == "staff":
            for code, leader, member in rows:
                found |= {("no_leader", code)} if not leader else set()
                found |= {("no_members", code)} if not member else set()
        elif kind == "overlap":
            found |= {(kind, tuple(sorted(r))) for r in rows}
        else:
            codes = {r[0] for r in rows}
            if kind == "bad_code":
                bad_code = codes
            # A grid with a malformed code is judged no further against its parent (as the engine does).
            found |= {(kind, c) for c in codes - (bad_code if kind in ("bad_parent", "outside_parent") else set())}
    session.execute(text("DROP TABLE bv_state"))
    return found


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
    from gis.planning.plans import create_plan
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
                                    "direct_publish": [], "validate": [], "direct_validate": [],
                                    "validate_planted": [], "direct_validate_planted": []}
    answers: dict[str, Any] = {}
    with sessions() as s, s.begin():
        planted = make_planted(s, changes)
    for _ in range(args.repeat):
        # Validation: the plan stored as the engine stores it (create_plan, not timed), then read and
        # checked; each run in its own transaction, rolled back.
        for suffix, plan_changes in (("", changes), ("_planted", planted)):
            for name, check in (("validate", engine_validate), ("direct_validate", direct_validate)):
                with sessions() as s, s.begin():
                    plan = create_plan(s, ctx, "bench", plan_changes)
                    dt_s, out = timed(lambda check=check, s=s, plan=plan: check(s, plan))
                    s.rollback()
                runs[name + suffix].append(dt_s)
                answers[name + suffix] = out
                print(f"{name + suffix}: {dt_s:.2f} s ({len(out)} problems)", flush=True)
        for name, fn in (("impact", lambda s: impact(s, changes)), ("direct_sql", lambda s: direct_sql(s, changes)),
                         ("direct_shapely", lambda s: direct_shapely(s, changes)),
                         ("publish", lambda s: publish(s, ctx, changes, effective_at=clock.now(), base=base)),
                         ("direct_publish", lambda s: direct_publish(s, changes, clock.now()))):
            with sessions() as s, s.begin():
                dt_s, out = timed(lambda fn=fn, s=s: fn(s))
                s.rollback()
            runs[name].append(dt_s)
            answers[name] = out
            print(f"{name}: {dt_s:.2f} s", flush=True)
    preview = {(m["from"], m["to"]): m["households"] for m in answers["impact"].moves if m["households"]}
    assert preview == answers["direct_sql"] == answers["direct_shapely"], "the three answers differ"
    for suffix in ("", "_planted"):
        a, b = answers["validate" + suffix], answers["direct_validate" + suffix]
        assert a == b, f"validate{suffix} and direct_validate{suffix} differ: {sorted(a ^ b)[:10]}"
    kinds = {k for k, _ in answers["validate_planted"] - answers["validate"]}
    assert kinds >= PLANTED, f"planted problems not found: {sorted(PLANTED - kinds)}"
    figures["validation"] = {v: dict(sorted(Counter(k for k, _ in answers[v]).items()))
                             for v in ("validate", "validate_planted")}
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
