"""A deterministic city-scale data set for the import, intake and tile benchmarks.

    .venv/bin/python bench/city.py                       # database wangge_bench + var/bench/incidents_1m.csv
    .venv/bin/python bench/city.py --points 200000 --csv var/bench/incidents_200k.csv --skip-db
    .venv/bin/python bench/city.py --skip-csv --households 3000000   # + 3,000,000 households (tiles)

What it makes (same seed, same bytes, every run):

* A separate database (default `wangge_bench`) on the server named by DATABASE_URL or
  var/database_url, dropped and recreated, migrated with `gis.db.upgrade`, holding one township's
  four-level hierarchy: 1 town -> 10 management areas -> 600 villages -> 60,000 group grids.
  Group grids are the cells of a jittered 300 x 200 lattice (8 vertices each: 4 jittered corners
  and 4 jittered edge midpoints), villages are 10 x 10 blocks of groups, areas 6 x 10 blocks of
  villages. Every parent's outline is built from exactly the vertices of its children, so the
  levels tile and nest exactly (no gaps, no slivers). Codes follow gis/codes.py: township
  410105101, areas 9aa, villages 001-600, groups 001-100 in each village, numbered in reading
  order. Loaded with COPY (gis.bulk.copy_rows); the database's own checks (valid geometry,
  code rules, the deferred hierarchy trigger) run at commit.
* A CSV of incidents in Wangge's import format (external_id, category, dispute_kind, description,
  occurred_at, lon, lat, state, reporter_name, reporter_phone), shuffled:
    95.0 % random points inside the town,
     2.0 % points interpolated along grid edges (on or within rounding of a shared edge),
     1.0 % exactly on lattice vertices (shared by 2-4 group grids) or on edge midpoints,
     2.0 % uniform over the bounding box grown by 300 m (most inside; some a little outside,
           within the 200 m tolerance or beyond it, which the import reports as failed rows).
  Categories are a mix of English values and the Chinese names Wangge accepts; 10 % of the
  times carry no zone (read in Asia/Shanghai).
* With --households N (bench/tiles_bench.py: 3,000,000), N households loaded with COPY, all inside
  the group grids: 80 % clustered around 3,000 settlements, 20 % scattered (`load_households`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEED = 20240601
TOWNSHIP = "410105101"          # county 410105 + township 101
NX, NY = 300, 200               # group lattice: columns (west->east), rows (south->north)
VX, VY = 10, 10                 # groups per village block
AX, AY = 6, 10                  # villages per area block
LON0, LAT0 = 113.20, 34.40      # south-west corner
DX, DY = 0.0050, 0.0040         # cell size in degrees (about 460 m x 445 m)
DEFAULT_DB = "wangge_bench"
DEFAULT_CSV = ROOT / "var" / "bench" / "incidents_1m.csv"


# --- geometry -------------------------------------------------------------------------------------

class Lattice:
    """Jittered lattice vertices and edge midpoints; all rings are cut from these arrays."""

    def __init__(self, rng: np.random.Generator):
        i = np.arange(NX + 1)[:, None]
        j = np.arange(NY + 1)[None, :]
        jx = rng.uniform(-0.2, 0.2, (NX + 1, NY + 1))
        jy = rng.uniform(-0.2, 0.2, (NX + 1, NY + 1))
        self.vx = np.round(LON0 + (i + jx) * DX, 7)        # corner (i, j)
        self.vy = np.round(LAT0 + (j + jy) * DY, 7)
        # Midpoint of the horizontal edge (i, j)-(i+1, j), pushed north/south.
        off = rng.uniform(-0.12, 0.12, (NX, NY + 1)) * DY
        self.hx = np.round((self.vx[:-1, :] + self.vx[1:, :]) / 2, 7)
        self.hy = np.round((self.vy[:-1, :] + self.vy[1:, :]) / 2 + off, 7)
        # Midpoint of the vertical edge (i, j)-(i, j+1), pushed east/west.
        off = rng.uniform(-0.12, 0.12, (NX + 1, NY)) * DX
        self.mx = np.round((self.vx[:, :-1] + self.vx[:, 1:]) / 2 + off, 7)
        self.my = np.round((self.vy[:, :-1] + self.vy[:, 1:]) / 2, 7)

    def block_ring(self, c0: int, r0: int, c1: int, r1: int) -> np.ndarray:
        """Counter-clockwise outline of cells [c0, c1) x [r0, r1), closed, as an (n, 2) array."""
        pts: list[tuple[float, float]] = []
        for c in range(c0, c1):                       # south edge, west -> east
            pts += [(self.vx[c, r0], self.vy[c, r0]), (self.hx[c, r0], self.hy[c, r0])]
        for r in range(r0, r1):                       # east edge, south -> north
            pts += [(self.vx[c1, r], self.vy[c1, r]), (self.mx[c1, r], self.my[c1, r])]
        for c in range(c1 - 1, c0 - 1, -1):           # north edge, east -> west
            pts += [(self.vx[c + 1, r1], self.vy[c + 1, r1]), (self.hx[c, r1], self.hy[c, r1])]
        for r in range(r1 - 1, r0 - 1, -1):           # west edge, north -> south
            pts += [(self.vx[c0, r + 1], self.vy[c0, r + 1]), (self.mx[c0, r], self.my[c0, r])]
        pts.append(pts[0])
        return np.array(pts)

    def cell_rings(self) -> np.ndarray:
        """All group cells at once: (NX * NY, 9, 2), cell (c, r) at index c * NY + r."""
        c = np.repeat(np.arange(NX), NY)
        r = np.tile(np.arange(NY), NX)
        xs = np.stack([self.vx[c, r], self.hx[c, r], self.vx[c + 1, r], self.mx[c + 1, r],
                       self.vx[c + 1, r + 1], self.hx[c, r + 1], self.vx[c, r + 1], self.mx[c, r],
                       self.vx[c, r]], axis=1)
        ys = np.stack([self.vy[c, r], self.hy[c, r], self.vy[c + 1, r], self.my[c + 1, r],
                       self.vy[c + 1, r + 1], self.hy[c, r + 1], self.vy[c, r + 1], self.my[c, r],
                       self.vy[c, r]], axis=1)
        return np.stack([xs, ys], axis=2)


def build_city(seed: int = SEED):
    """The hierarchy as a GeoDataFrame (code, name, level, parent_code, geometry) and the lattice."""
    import geopandas as gpd
    import shapely

    from gis.codes import area_code, group_code, town_code, village_code

    rng = np.random.default_rng(seed)
    lat = Lattice(rng)
    town = town_code(TOWNSHIP[:6], TOWNSHIP[6:])
    rows: list[tuple] = [(town, "基准镇", 1, None, shapely.Polygon(lat.block_ring(0, 0, NX, NY)))]
    n_vx, n_vy = NX // VX, NY // VY                  # 30 x 20 village blocks
    n_ax, n_ay = n_vx // AX, n_vy // AY              # 5 x 2 area blocks
    # Reading order: rows north -> south, west -> east within a row.
    for a, (ay, ax) in enumerate(((ay, ax) for ay in range(n_ay - 1, -1, -1) for ax in range(n_ax)), 1):
        ring = lat.block_ring(ax * AX * VX, ay * AY * VY, (ax + 1) * AX * VX, (ay + 1) * AY * VY)
        rows.append((area_code(town, a), f"第{a:02d}片区", 2, town, shapely.Polygon(ring)))
    area_of = {(bx, by): area_code(town, 1 + (n_ay - 1 - by // AY) * n_ax + bx // AX)
               for bx in range(n_vx) for by in range(n_vy)}
    cells = lat.cell_rings()
    cell_polys = shapely.polygons(cells)
    vnum = 0
    for by in range(n_vy - 1, -1, -1):
        for bx in range(n_vx):
            vnum += 1
            vcode = village_code(town, vnum)
            ring = lat.block_ring(bx * VX, by * VY, (bx + 1) * VX, (by + 1) * VY)
            rows.append((vcode, f"{vnum:03d}村", 3, area_of[(bx, by)], shapely.Polygon(ring)))
            g = 0
            for r in range((by + 1) * VY - 1, by * VY - 1, -1):
                for c in range(bx * VX, (bx + 1) * VX):
                    g += 1
                    rows.append((group_code(vcode, g), f"{vnum:03d}村{g:03d}组", 4, vcode,
                                 cell_polys[c * NY + r]))
    frame = gpd.GeoDataFrame(
        {"code": [r[0] for r in rows], "name": [r[1] for r in rows], "level": [r[2] for r in rows],
         "parent_code": [r[3] for r in rows]},
        geometry=[r[4] for r in rows], crs=4326,
    )
    bad = ~shapely.is_valid(frame.geometry.values)
    if bad.any():
        raise RuntimeError(f"{int(bad.sum())} invalid polygons, e.g. {frame.code[bad].iloc[0]}")
    return frame, lat


def check_tiling(frame) -> None:
    """Children cover their parent exactly (area equality to 1e-12 of the parent's area)."""
    import shapely

    by_code = dict(zip(frame.code, frame.geometry, strict=True))
    for level in (2, 3):
        kids = frame[frame.level == level + 1].groupby("parent_code").geometry.apply(
            lambda s: shapely.union_all(s.values))
        for parent, union in kids.items():
            diff = shapely.symmetric_difference(union, by_code[parent]).area
            if diff > 1e-12 * by_code[parent].area:
                raise RuntimeError(f"children of {parent} do not tile it (difference {diff:g})")


# --- database -------------------------------------------------------------------------------------

def bench_url(database: str):
    from sqlalchemy.engine import make_url

    from gis.settings import Settings

    return make_url(Settings().require_database_url()).set(database=database)


def command_center_caller(url, name: str):
    """A new command-center account in the database at `url` (a unique name starting `name`) and an API token
    of it: (its Principal, the token's secret). What the benches ask the app as: the whole town, personal fields
    masked outside an emergency."""
    import secrets

    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from gis.auth import accounts
    from gis.auth.principal import Principal
    from gis.auth.roles import Role
    from gis.db import transaction

    engine = create_engine(url, poolclass=NullPool)
    with transaction(engine) as s:
        user = accounts.create_user(s, f"{name}_{secrets.token_hex(3)}", secrets.token_urlsafe(16) + "aA1!",
                                    Role.COMMAND_CENTER)
        secret, _ = accounts.create_token(s, user.id, name)
    engine.dispose()
    return Principal(user.id, user.username, Role.COMMAND_CENTER), secret


def table_counts(url, *tables: str) -> tuple[int, ...] | None:
    """The row count of each table in the database at `url`; None when the database or a table is not there."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError, ProgrammingError
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as c:
            row = c.execute(text("SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in tables))).one()
            return tuple(int(v) for v in row)
    except (OperationalError, ProgrammingError):
        return None
    finally:
        engine.dispose()


def write_results(path: Path, results: dict) -> None:
    """A benchmark's figures as JSON (readable Chinese, dates as text) under var/bench/, and where they went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str))
    print(f"written {path}")


def recreate_database(url) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    admin.dispose()


def sample_town_database(url):
    """A fresh database at `url` (dropped first if there), migrated, holding the sample town; an engine on it."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    from gis.db import transaction, upgrade
    from gis.sample_load import load_sample_town
    from gis.sample_town import generate_sample_town

    recreate_database(url)
    engine = create_engine(url, poolclass=NullPool)
    upgrade(engine)
    with transaction(engine) as session:
        load_sample_town(session, generate_sample_town())
    return engine


def load_database(url, frame) -> dict:
    from shapely.geometry import MultiPolygon
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from gis.bulk import copy_rows, ewkt
    from gis.db import transaction, upgrade

    recreate_database(url)
    engine = create_engine(url, poolclass=NullPool)
    upgrade(engine)
    with transaction(engine) as session:
        n = copy_rows(
            session, "grid", ("code", "name", "level", "parent_code", "geom", "source"),
            ((r.code, r.name, int(r.level), r.parent_code if isinstance(r.parent_code, str) else None,
              ewkt(MultiPolygon([g])), "bench_city")
             for r, g in zip(frame.itertuples(), frame.geometry, strict=True)),
        )
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
        counts = dict(conn.execute(text(
            "SELECT level, count(*) FROM grid WHERE valid_to IS NULL GROUP BY level ORDER BY level")).all())
    engine.dispose()
    assert n == len(frame)
    return counts


# --- incidents ------------------------------------------------------------------------------------

CATEGORIES = ["dispute", "safety_hazard", "environment", "livelihood", "public_order", "disaster"]
CATEGORY_ZH = ["矛盾纠纷", "安全隐患", "环境卫生", "民生诉求", "治安", "灾害"]
KINDS = ["land", "neighbour", "family", "wages", "demolition"]
STATES = ["visit", "report", "study", "handle", "follow_up", "closed"]
WHAT = {
    "dispute": ["宅基地边界争议", "邻里噪音纠纷", "家庭赡养纠纷", "拖欠工资", "拆迁补偿争议"],
    "safety_hazard": ["电线老化裸露", "危房墙体开裂", "燃气管道异味", "路口缺少护栏"],
    "environment": ["垃圾堆放未清运", "污水直排沟渠", "秸秆焚烧", "河道漂浮物"],
    "livelihood": ["路灯损坏", "自来水停水", "医保办理咨询", "道路坑洼"],
    "public_order": ["夜间聚众喧哗", "电动车被盗", "可疑人员出没"],
    "disaster": ["强降雨积水", "山体滑坡隐患", "河堤渗水"],
}
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗")


def incident_points(lat: Lattice, n: int, rng: np.random.Generator):
    """(lon, lat, kind) for n points; kind 0 random inside, 1 along an edge, 2 vertex, 3 bbox+margin."""
    n_edge, n_vert, n_box = int(n * 0.02), int(n * 0.01), int(n * 0.02)
    n_in = n - n_edge - n_vert - n_box
    # Inside: uniform over the lattice, one cell-width away from the jittered outer edge.
    xs = rng.uniform(LON0 + DX, LON0 + (NX - 1) * DX, n_in)
    ys = rng.uniform(LAT0 + DY, LAT0 + (NY - 1) * DY, n_in)
    # Along edges: a random segment of a random cell ring, interpolated in floating point.
    rings = lat.cell_rings()
    cell = rng.integers(len(rings), size=n_edge)
    seg = rng.integers(8, size=n_edge)
    t = rng.uniform(0, 1, n_edge)
    a, b = rings[cell, seg], rings[cell, seg + 1]
    ex, ey = a[:, 0] + t * (b[:, 0] - a[:, 0]), a[:, 1] + t * (b[:, 1] - a[:, 1])
    # Exactly on vertices: lattice corners and edge midpoints (shared by 2-4 group grids).
    pool_x = np.concatenate([lat.vx.ravel(), lat.hx.ravel(), lat.mx.ravel()])
    pool_y = np.concatenate([lat.vy.ravel(), lat.hy.ravel(), lat.my.ravel()])
    pick = rng.integers(len(pool_x), size=n_vert)
    vx, vy = pool_x[pick], pool_y[pick]
    # The bounding box grown by ~300 m: near-outside points as well.
    mx, my = 300 / 92_000, 300 / 111_000
    bx = rng.uniform(LON0 - 0.2 * DX - mx, LON0 + (NX + 0.2) * DX + mx, n_box)
    by = rng.uniform(LAT0 - 0.2 * DY - my, LAT0 + (NY + 0.2) * DY + my, n_box)
    lon = np.concatenate([np.round(xs, 7), ex, vx, np.round(bx, 7)])
    lat_ = np.concatenate([np.round(ys, 7), ey, vy, np.round(by, 7)])
    kind = np.concatenate([np.zeros(n_in, np.int8), np.ones(n_edge, np.int8), np.full(n_vert, 2, np.int8),
                           np.full(n_box, 3, np.int8)])
    order = rng.permutation(n)
    return lon[order], lat_[order], kind[order]


def incident_frame(lat: Lattice, n: int, seed: int = SEED):
    import pandas as pd

    rng = np.random.default_rng(seed + 1)
    lon, la, kind = incident_points(lat, n, rng)
    cat_i = rng.choice(6, size=n, p=[0.15, 0.2, 0.25, 0.25, 0.1, 0.05])
    zh = rng.random(n) < 0.5
    cats = np.where(zh, np.array(CATEGORY_ZH, dtype=object)[cat_i], np.array(CATEGORIES, dtype=object)[cat_i])
    kinds = np.where((cat_i == 0) & (rng.random(n) < 0.8), np.array(KINDS, dtype=object)[rng.integers(5, size=n)], "")
    what = np.array([WHAT[c][k % len(WHAT[c])] for c, k in zip(np.array(CATEGORIES)[cat_i],
                                                                 rng.integers(1000, size=n), strict=True)],
                    dtype=object)
    # 2019-01-01 .. 2024-12-31 (Beijing time), whole seconds.
    start = np.datetime64("2018-12-31T16:00:00")                      # = 2019-01-01 00:00 +08:00 in UTC
    secs = rng.integers(0, 6 * 365 * 86400, size=n)
    local = (start + secs.astype("timedelta64[s]") + np.timedelta64(8, "h")).astype(str)
    naive = rng.random(n) < 0.1
    occurred = np.where(naive, np.char.replace(local, "T", " "), np.char.add(local, "+08:00"))
    has_reporter = rng.random(n) < 0.4
    names = np.array(SURNAMES, dtype=object)[rng.integers(len(SURNAMES), size=n)] + "某"
    phones = np.array([f"13{v:09d}" for v in rng.integers(0, 10**9, size=n)], dtype=object)
    frame = pd.DataFrame({
        "external_id": [f"city-{i:07d}" for i in range(n)],
        "category": cats,
        "dispute_kind": kinds,
        "description": what + "（" + np.arange(n).astype(str).astype(object) + "）",
        "occurred_at": occurred,
        "lon": [repr(float(v)) for v in lon],
        "lat": [repr(float(v)) for v in la],
        "state": np.array(STATES, dtype=object)[rng.choice(6, size=n, p=[0.1, 0.1, 0.1, 0.1, 0.1, 0.5])],
        "reporter_name": np.where(has_reporter, names, ""),
        "reporter_phone": np.where(has_reporter, phones, ""),
    })
    return frame, kind


# --- households -----------------------------------------------------------------------------------

HOUSEHOLD_SETTLEMENTS = 3000


def household_points(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) of n households, all inside the group grids (one cell-width in from the jittered
    outer edge): 80 % in Gaussian clusters around settlements (villages, 200-700 m across), 20 %
    scattered; in register order (village block by village block, shuffled inside one)."""
    rng = np.random.default_rng(seed + 3)
    x0, x1 = LON0 + DX, LON0 + (NX - 1) * DX
    y0, y1 = LAT0 + DY, LAT0 + (NY - 1) * DY
    n_cluster = int(n * 0.8)
    sx = rng.uniform(x0, x1, HOUSEHOLD_SETTLEMENTS)
    sy = rng.uniform(y0, y1, HOUSEHOLD_SETTLEMENTS)
    which = rng.integers(HOUSEHOLD_SETTLEMENTS, size=n_cluster)
    spread = rng.uniform(0.001, 0.004, HOUSEHOLD_SETTLEMENTS)[which]
    lon = np.concatenate([sx[which] + rng.normal(0, 1, n_cluster) * spread, rng.uniform(x0, x1, n - n_cluster)])
    lat = np.concatenate([sy[which] + rng.normal(0, 1, n_cluster) * spread, rng.uniform(y0, y1, n - n_cluster)])
    lon, lat = np.clip(lon, x0, x1), np.clip(lat, y0, y1)
    vx = ((lon - LON0) // (DX * VX)).astype(np.int64)
    vy = ((lat - LAT0) // (DY * VY)).astype(np.int64)
    order = np.lexsort((rng.permutation(n), vx, -vy))
    return np.round(lon[order], 7), np.round(lat[order], 7)


HOUSEHOLD_COPY_COLUMNS = ("household_no", "address", "head_name", "phone", "residents", "elderly", "children",
                          "disabled", "pregnant", "bedridden", "floors", "geom")


def copy_households(engine, rows, *, truncate: bool = False) -> int:
    """COPY synthetic households (tuples of HOUSEHOLD_COPY_COLUMNS, geom as EWKT) into the database of
    `engine` with its GiST index dropped for the load and built once after it, then VACUUM ANALYZE; returns
    how many were loaded. `truncate`: the households there before (and what points to them) go first."""
    from sqlalchemy import text

    from gis.bulk import copy_rows
    from gis.db import transaction

    with transaction(engine) as session:
        if truncate:
            session.execute(text("TRUNCATE household CASCADE"))
        session.execute(text("DROP INDEX idx_household_geom"))
        loaded = copy_rows(session, "household", HOUSEHOLD_COPY_COLUMNS, rows)
        session.execute(text("CREATE INDEX idx_household_geom ON household USING gist (geom)"))
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE household"))
    return loaded


def load_households(url, n: int, seed: int = SEED) -> int:
    """Replace the households of the database at `url` with n deterministic ones (COPY, then the GiST
    index built once, VACUUM ANALYZE); returns how many were loaded."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    lon, lat = household_points(n, seed)
    rng = np.random.default_rng(seed + 4)
    residents = rng.integers(1, 7, n)
    elderly = np.minimum(residents, rng.binomial(2, 0.25, n))
    children = np.minimum(residents - elderly, rng.binomial(2, 0.2, n))
    floors = rng.integers(1, 4, n)
    surname = np.array(SURNAMES, dtype=object)[rng.integers(len(SURNAMES), size=n)]
    phone = rng.integers(0, 10**9, size=n)
    xs, ys = lon.tolist(), lat.tolist()
    engine = create_engine(url, poolclass=NullPool)
    loaded = copy_households(
        engine,
        ((f"C{i:010d}", f"基准镇{i % 600 + 1:03d}村{i % 97 + 1}号", f"{surname[i]}某某", f"13{phone[i]:09d}",
          int(residents[i]), int(elderly[i]), int(children[i]), 0, 0, 0, int(floors[i]),
          f"SRID=4326;POINT({xs[i]!r} {ys[i]!r})")
         for i in range(n)),
        truncate=True,
    )
    engine.dispose()
    return loaded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default=DEFAULT_DB, help="database to (re)create on the same server")
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--skip-db", action="store_true", help="only write the CSV")
    ap.add_argument("--skip-csv", action="store_true", help="only (re)build the database")
    ap.add_argument("--check-tiling", action="store_true", help="also prove the exact nesting with unions (slow)")
    ap.add_argument("--households", type=int, default=0,
                    help="also load this many households into the database (the tile benchmark uses 3000000)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    frame, lat = build_city()
    print(f"hierarchy: {len(frame)} grids built in {time.perf_counter() - t0:.1f} s", flush=True)
    if args.check_tiling:
        t = time.perf_counter()
        check_tiling(frame)
        print(f"tiling checked in {time.perf_counter() - t:.1f} s", flush=True)
    if not args.skip_db:
        t = time.perf_counter()
        url = bench_url(args.db)
        counts = load_database(url, frame)
        print(f"database {args.db}: grids per level {counts}, loaded in {time.perf_counter() - t:.1f} s", flush=True)
    if args.households and not args.skip_db:
        t = time.perf_counter()
        n = load_households(bench_url(args.db), args.households)
        print(f"database {args.db}: {n} households loaded in {time.perf_counter() - t:.1f} s", flush=True)
    if not args.skip_csv:
        t = time.perf_counter()
        incidents, kind = incident_frame(lat, args.points)
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        incidents.to_csv(args.csv, index=False, encoding="utf-8")
        size = args.csv.stat().st_size / 1e6
        counts = np.bincount(kind, minlength=4)
        print(f"{args.csv}: {len(incidents)} incidents ({size:.0f} MB; inside {counts[0]}, edges {counts[1]}, "
              f"vertices {counts[2]}, box {counts[3]}) in {time.perf_counter() - t:.1f} s", flush=True)
    print(f"total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
