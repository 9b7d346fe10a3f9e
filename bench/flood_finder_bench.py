"""The flooded-households finder at city scale: subdivided extent vs the plain ST_Intersects query.

    .venv/bin/python bench/flood_finder_bench.py               # build wangge_flood_bench, then time
    .venv/bin/python bench/flood_finder_bench.py --reuse       # time only (database already built)

Data (deterministic, seed below), in its own database `wangge_flood_bench` on the same server:
* the city of bench/city.py: 60,000 group grids in 600 villages (about 138 km x 89 km);
* 3,000,000 households, loaded with COPY (gis.bulk.copy_rows): 80 % in Gaussian clusters around
  2,000 settlements (a fifth of them near the river, as villages are), 20 % scattered; the rows in
  register order (village by village, random inside a village), the GIST index built after the load;
* a flood extent of about 90,000 vertices: a buffer along a meandering river across the whole city,
  its width varying smoothly (350 m - 1.6 km) and roughened at every vertex (field edges, embankments),
  cut into reaches (multipart), with islands (holes) and detached ponds.

Timed, same run, same database, after a warm-up scan:
* finder — gis.flood.finder.household_ids_with_grids: ST_Subdivide into <= 64-vertex pieces, an index
  join per piece, then each house's group grid (median of 3 runs);
* plain — `SELECT h.id, grp.code FROM household h LEFT JOIN LATERAL (group grid) ... WHERE
  ST_Intersects(<extent passed whole>, h.geom)`, run once, bounded by --plain-timeout seconds.
The two answers (id and grid code of every house) are asserted identical.
Results are printed and written to var/bench/flood_finder_results.json (…_serial.json with
--serial, where neither query may use PostgreSQL's parallel workers).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from city import DX, DY, LAT0, LON0, NX, NY, VX, VY, bench_url, build_city, copy_households, load_database  # noqa: E402

SEED = 20230923
DB = "wangge_flood_bench"
N_HOUSEHOLDS = 3_000_000
RESULTS = ROOT / "var" / "bench" / "flood_finder_results.json"
M_PER_DEG_LAT = 110_940.0


def _m_per_deg_lon(lat: float) -> float:
    return 111_320.0 * np.cos(np.radians(lat))


def river_centreline(rng: np.random.Generator, n: int = 6000) -> np.ndarray:
    """A meandering river flowing west -> east across the city, as (n, 2) lon/lat."""
    t = np.linspace(0.0, 1.0, n)
    lon = LON0 + DX * (2 + t * (NX - 4))
    mid = LAT0 + DY * NY * 0.5
    y = np.zeros(n)
    for k, amp in ((2.0, 0.12), (7.0, 0.035), (19.0, 0.012), (43.0, 0.004)):
        y += amp * np.sin(2 * np.pi * k * t + rng.uniform(0, 2 * np.pi))
    # Meander loops: a second-order wiggle along x as well, so bends fold back a little.
    x_wiggle = 0.006 * np.sin(2 * np.pi * 31 * t + rng.uniform(0, 2 * np.pi))
    return np.column_stack([lon + x_wiggle, mid + y])


def flood_extent(rng: np.random.Generator, target_vertices: int = 84_000):
    """The roughened multipart buffer along the river (a valid MultiPolygon in EPSG:4326)."""
    import shapely
    from shapely.geometry import MultiPolygon, Polygon

    lat0 = LAT0 + DY * NY * 0.5
    kx, ky = _m_per_deg_lon(lat0), M_PER_DEG_LAT
    c = river_centreline(rng)
    xy = np.column_stack([(c[:, 0] - LON0) * kx, (c[:, 1] - LAT0) * ky])    # local metres
    line = shapely.LineString(xy)
    length = line.length
    # A buffer whose width varies along the river: short pieces, each with its own width.
    n_pieces = 400
    edges = np.linspace(0, length, n_pieces + 1)
    u = (edges[:-1] + edges[1:]) / 2 / length
    width = 350 + 1250 * np.sin(2 * np.pi * (5 * u + rng.uniform())) ** 2 * rng.uniform(0.7, 1.0, n_pieces)
    # Reaches separated by gaps (high banks, a dyke): the extent is multipart.
    gap = np.zeros(n_pieces, bool)
    gap[rng.choice(np.arange(10, n_pieces - 10), 7, replace=False)] = True
    pieces = []
    for a, b, w, g in zip(edges[:-1], edges[1:], width, gap, strict=True):
        if not g:
            reach = shapely.line_interpolate_point(line, np.linspace(a, b, 12))
            pieces.append(shapely.buffer(shapely.LineString(shapely.get_coordinates(reach)), w, quad_segs=4))
    flood = shapely.union_all(pieces)

    def blob(cx, cy, r, n):
        ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
        rr = r * (1 + 0.15 * rng.uniform(-1, 1, n))
        return Polygon(np.column_stack([cx + rr * np.cos(ang), cy + rr * np.sin(ang)]))

    on_river = shapely.get_coordinates(shapely.line_interpolate_point(line, rng.uniform(0, length, 60)))
    flood = flood.difference(shapely.union_all([blob(x, y, rng.uniform(60, 180), 24) for x, y in on_river]))
    ponds = [blob(x, y + rng.uniform(2500, 6000) * rng.choice([-1, 1]), rng.uniform(150, 500), 24)
             for x, y in on_river[:40]]
    flood = shapely.union_all([flood, *ponds])
    # Roughen: densify every ring to the spacing that gives the target vertex count, then move each
    # vertex across the ring by up to a third of the spacing (field edges, embankments).
    spacing = shapely.length(flood) / target_vertices
    def rough(ring):
        pts = shapely.get_coordinates(shapely.segmentize(ring, spacing))[:-1]
        d = np.roll(pts, -1, axis=0) - np.roll(pts, 1, axis=0)
        nrm = np.column_stack([-d[:, 1], d[:, 0]]) / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
        pts = pts + nrm * rng.uniform(-spacing / 3, spacing / 3, len(pts))[:, None]
        return np.vstack([pts, pts[:1]])

    polys = []
    for p in getattr(flood, "geoms", [flood]):
        polys.append(Polygon(rough(p.exterior), [rough(r) for r in p.interiors]))
    flood = shapely.make_valid(MultiPolygon(polys))
    polys = [g for g in getattr(flood, "geoms", [flood]) if g.geom_type == "Polygon" and g.area > 1.0]
    metric = MultiPolygon(polys)
    lonlat = shapely.transform(metric, lambda p: np.column_stack([LON0 + p[:, 0] / kx, LAT0 + p[:, 1] / ky]))
    lonlat = shapely.set_precision(lonlat, 1e-7)
    if lonlat.geom_type == "Polygon":
        lonlat = MultiPolygon([lonlat])
    assert lonlat.is_valid, shapely.is_valid_reason(lonlat)
    return lonlat, c


def household_points(rng: np.random.Generator, centre: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    n_cluster = int(n * 0.8)
    n_sett = 2000
    x0, x1 = LON0 + DX, LON0 + (NX - 1) * DX
    y0, y1 = LAT0 + DY, LAT0 + (NY - 1) * DY
    sx = rng.uniform(x0, x1, n_sett)
    sy = rng.uniform(y0, y1, n_sett)
    # A fifth of the settlements within a few km of the river, as villages sit by water.
    k = n_sett // 5
    along = rng.integers(len(centre), size=k)
    sx[:k] = centre[along, 0]
    sy[:k] = centre[along, 1] + rng.normal(0, 0.04, k)
    which = rng.integers(n_sett, size=n_cluster)
    spread = rng.uniform(0.002, 0.008, n_sett)[which]
    cx = sx[which] + rng.normal(0, 1, n_cluster) * spread
    cy = sy[which] + rng.normal(0, 1, n_cluster) * spread
    ux = rng.uniform(x0, x1, n - n_cluster)
    uy = rng.uniform(y0, y1, n - n_cluster)
    lon = np.clip(np.concatenate([cx, ux]), x0, x1)
    lat = np.clip(np.concatenate([cy, uy]), y0, y1)
    # Rows in register order, as a household register is kept: village by village (the city's
    # 10 x 10-group village blocks in code order), households in random order inside a village.
    vx = ((lon - LON0) // (DX * VX)).astype(np.int64)
    vy = ((lat - LAT0) // (DY * VY)).astype(np.int64)
    order = np.lexsort((rng.permutation(n), vx, -vy))
    return np.round(lon[order], 7), np.round(lat[order], 7)


def load_households(url, lon: np.ndarray, lat: np.ndarray, rng: np.random.Generator) -> float:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    n = len(lon)
    lon, lat = lon.tolist(), lat.tolist()
    residents = rng.integers(1, 7, n)
    elderly = np.minimum(residents, rng.binomial(2, 0.25, n))
    children = np.minimum(residents - elderly, rng.binomial(2, 0.2, n))
    floors = rng.integers(1, 4, n)
    engine = create_engine(url, poolclass=NullPool)
    t = time.perf_counter()
    copy_households(engine, (
        (f"B{i:010d}", f"基准镇{i % 600:03d}村{i % 97}号", "王某", None, int(residents[i]),
         int(elderly[i]), int(children[i]), 0, 0, 0, int(floors[i]), f"SRID=4326;POINT({lon[i]!r} {lat[i]!r})")
        for i in range(n)))
    engine.dispose()
    return time.perf_counter() - t


PLAIN_SQL = """
    SELECT h.id, grp.code FROM household h
    LEFT JOIN LATERAL (
        SELECT g.code FROM grid g
        WHERE g.valid_to IS NULL AND g.level = 4 AND ST_Intersects(g.geom, h.geom)
        ORDER BY g.code LIMIT 1
    ) grp ON true
    WHERE ST_Intersects(ST_GeomFromWKB(:extent, 4326), h.geom)
    ORDER BY h.id
"""


def main() -> None:
    import shapely
    from shapely import wkb as shapely_wkb
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from gis.db import make_sessionmaker
    from gis.flood.finder import PIECE_VERTICES, household_ids_with_grids

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default=DB)
    ap.add_argument("--households", type=int, default=N_HOUSEHOLDS)
    ap.add_argument("--reuse", action="store_true", help="use the database as it is")
    ap.add_argument("--plain-timeout", type=int, default=1200, help="seconds; the plain query runs once")
    ap.add_argument("--finder-runs", type=int, default=3)
    ap.add_argument("--serial", action="store_true",
                    help="both queries without parallel workers (max_parallel_workers_per_gather = 0)")
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    url = bench_url(args.db)
    extent, centre = flood_extent(rng)
    vertices = int(shapely.get_num_coordinates(extent))
    print(f"extent: {len(extent.geoms)} parts, {sum(len(p.interiors) for p in extent.geoms)} holes, "
          f"{vertices} vertices", flush=True)
    out: dict = {"households": args.households, "serial": args.serial, "extent_vertices": vertices,
                 "extent_parts": len(extent.geoms), "piece_vertices": PIECE_VERTICES,
                 "machine": platform.platform(), "cpus": __import__("os").cpu_count()}
    if not args.reuse:
        t = time.perf_counter()
        frame, _ = build_city()
        load_database(url, frame)
        print(f"grids loaded in {time.perf_counter() - t:.0f} s", flush=True)
        lon, lat = household_points(np.random.default_rng(SEED + 1), centre, args.households)
        secs = load_households(url, lon, lat, np.random.default_rng(SEED + 2))
        print(f"{args.households} households loaded (COPY + index) in {secs:.0f} s", flush=True)
        out["load_s"] = round(secs, 1)
    engine = create_engine(url, poolclass=NullPool)
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        n = s.execute(text("SELECT count(*) FROM household")).scalar_one()
        assert n == args.households, f"{n} households in {args.db}"
        s.execute(text("SELECT count(*) FROM grid WHERE ST_NPoints(geom) > 0")).scalar_one()
    finder_times, answer = [], None
    for _ in range(args.finder_runs):
        with sessions() as s:
            if args.serial:
                s.execute(text("SET max_parallel_workers_per_gather = 0"))
            t = time.perf_counter()
            answer = household_ids_with_grids(s, extent)
            finder_times.append(time.perf_counter() - t)
        print(f"finder: {len(answer)} households in {finder_times[-1]:.2f} s", flush=True)
    finder_s = statistics.median(finder_times)
    with sessions() as s:
        s.execute(text(f"SET LOCAL statement_timeout = '{args.plain_timeout}s'"))
        if args.serial:
            s.execute(text("SET max_parallel_workers_per_gather = 0"))
        t = time.perf_counter()
        plain = [(int(i), c) for i, c in s.execute(text(PLAIN_SQL), {"extent": shapely_wkb.dumps(extent)})]
        plain_s = time.perf_counter() - t
    print(f"plain:  {len(plain)} households in {plain_s:.1f} s", flush=True)
    assert plain == answer, "the finder and the plain query disagree"
    print(f"identical answers ({len(answer)} households, {len({c for _, c in answer})} group grids); "
          f"finder {finder_s:.2f} s (median of {len(finder_times)}), plain {plain_s:.1f} s: "
          f"{plain_s / finder_s:.0f}x faster", flush=True)
    out.update(found=len(answer), grids=len({c for _, c in answer}),
               finder_s=[round(x, 3) for x in finder_times], finder_median_s=round(finder_s, 3),
               plain_s=round(plain_s, 1), speedup=round(plain_s / finder_s, 1))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    results = RESULTS.with_name(RESULTS.stem + ("_serial" if args.serial else "") + RESULTS.suffix)
    results.write_text(json.dumps(out, indent=2))
    engine.dispose()


if __name__ == "__main__":
    main()
