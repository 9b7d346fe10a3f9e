"""The flooded-households finder: who is in the water, how deep, who is responsible, where to go.

Speed: a realistic flood extent has tens of thousands of vertices, and testing every candidate house
against the whole polygon is slow (each test walks the whole outline). The extent is cut into small
pieces first (at most PIECE_VERTICES vertices each, by ST_Subdivide's method: boxes halved and
clipped, done in shapely because it is ~8x faster than on the server); each piece finds its houses
through the household GIST index and tests them against a few dozen vertices only. The pieces cover
exactly the extent, so the answer is the same set as ``ST_Intersects(extent, h.geom)``
(tests/test_flood_finder.py checks it against shapely; bench/flood_finder_bench.py against the plain
query at 3,000,000 households). Each house's group grid then comes from the cached in-memory grid
index of gis/grids/locate.py (the house → grid rule of migration 0010's household_grid_at, which
the full list uses and tests/test_household_grid.py checks this against).

A buffer (metres) finds the houses within that distance of the extent: the same pieces, a bounding
box grown by the buffer in degrees to use the index, then ``ST_DWithin`` in the local metric CRS.

Access: the rows and the personal fields follow gis.households.access_for, the predicate of the
household list, detail and map: a reader gets the flooded households they could see there (grid
staff and supervisors those of their own grids, emergency teams those inside an active emergency,
the command center and admins all), personal fields shown or masked as there (masked members show
an age band, not their age); planners get counts only (/flood/risk). Priority ranks and shelters
are worked out over every household of the extent, so a household gets the same rank and shelter
whoever asks. The staff contact cards (grid member and leader, phones) are public in the service.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from shapely import wkb as shapely_wkb
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.types import BigInteger

from gis.auth.principal import Principal
from gis.clock import BEIJING
from gis.crs import metric_crs_for, metric_transformer
from gis.db import pyformat
from gis.errors import InputError, Problem
from gis.flood import priority
from gis.households import access_for, present

PIECE_VERTICES = 128
# Degrees of latitude per metre is at least 1/111,700; a grown box must be generous, never short.
_DEG_MARGIN = 1.02

_PIECES = "SELECT ST_GeomFromWKB(w, 4326) AS g FROM unnest(CAST(:pieces AS bytea[])) AS w"

# Houses inside (or on the edge of) the extent: one index probe per piece. A house exactly on a
# cut line lies in both pieces and comes twice: the caller removes the repeats (sorting in numpy is
# cheaper than a DISTINCT sort on the server).
_INSIDE = f"""
    WITH pieces AS MATERIALIZED ({_PIECES})
    SELECT h.id, h.geom FROM pieces p JOIN household h ON ST_Intersects(p.g, h.geom)
"""

_WITHIN = f"""
    WITH pieces AS MATERIALIZED (
        SELECT s.g, ST_Expand(s.g, :dlon, :dlat) AS box, ST_Transform(s.g, :srid) AS gm
        FROM ({_PIECES}) s
    )
    SELECT h.id, h.geom FROM pieces p JOIN household h
        ON h.geom && p.box AND ST_DWithin(p.gm, ST_Transform(h.geom, :srid), :buffer_m)
"""

def metric_srid(extent: Any) -> int:
    c = extent.centroid if not extent.is_empty else shapely.Point(0, 0)
    crs = metric_crs_for(c.x, c.y)
    return int(crs.split(":")[1])

if TYPE_CHECKING:
    from gis.flood.extent_row import FloodExtent


def _buffer_degrees(extent: Any, buffer_m: float) -> tuple[float, float]:
    _, min_lat, _, max_lat = extent.bounds
    worst = min(89.0, max(abs(min_lat), abs(max_lat)) + buffer_m / 110_000.0)
    dlat = buffer_m / 110_500.0 * _DEG_MARGIN + 1e-9
    dlon = buffer_m / (111_320.0 * math.cos(math.radians(worst))) * _DEG_MARGIN + 1e-9
    return dlon, dlat


def subdivide(extent: Any, max_vertices: int = PIECE_VERTICES) -> list[Any]:
    """The extent cut into polygons of at most `max_vertices` vertices that together cover exactly
    the extent: boxes halved along their longer side, clipped with GEOS's rectangle clip (the
    method of ST_Subdivide, done here because it is several times faster than on the server)."""
    # A box's corner cuts an edge into a 5-vertex piece; below 8 the halving would go on for ever.
    max_vertices = max(8, int(max_vertices))
    out: list[Any] = []
    stack: list[Any] = [extent]
    while stack:
        g = stack.pop()
        if g.is_empty:
            continue
        if shapely.get_num_coordinates(g) <= max_vertices:
            out.extend(p for p in getattr(g, "geoms", [g]) if p.geom_type == "Polygon" and not p.is_empty)
            continue
        if g.geom_type == "MultiPolygon":
            stack.extend(g.geoms)
            continue
        if g.geom_type == "GeometryCollection":
            stack.extend(p for p in g.geoms if p.geom_type in ("Polygon", "MultiPolygon"))
            continue
        x0, y0, x1, y1 = g.bounds
        if max(x1 - x0, y1 - y0) < 1e-7:   # a knot of vertices within a centimetre: keep it whole
            out.append(g)
            continue
        if x1 - x0 >= y1 - y0:
            m = (x0 + x1) / 2
            halves = ((x0, y0, m, y1), (m, y0, x1, y1))
        else:
            m = (y0 + y1) / 2
            halves = ((x0, y0, x1, m), (x0, m, x1, y1))
        stack += [_clip(g, rect) for rect in halves]
    return out


def _clip(g: Any, rect: tuple[float, float, float, float]) -> Any:
    try:
        return shapely.clip_by_rect(g, *rect)
    except shapely.errors.GEOSException:
        # The fast clip gave up on a degenerate ring; the exact overlay always works.
        return shapely.intersection(g, shapely.box(*rect))


def selection_sql(
    extent: Any, buffer_m: float = 0.0, piece_vertices: int = PIECE_VERTICES
) -> tuple[str, dict[str, Any]]:
    """SQL (and its parameters) giving (id, geom) of the households inside / within `buffer_m` of
    `extent` (a shapely (Multi)Polygon in EPSG:4326), in no order, a house on a cut line twice."""
    params: dict[str, Any] = {"pieces": shapely.to_wkb(subdivide(extent, piece_vertices)).tolist()}
    if buffer_m <= 0:
        return _INSIDE, params
    dlon, dlat = _buffer_degrees(extent, buffer_m)
    params.update(dlon=dlon, dlat=dlat, srid=metric_srid(extent), buffer_m=float(buffer_m))
    return _WITHIN, params


def _no_jit(session: Session) -> None:
    # The planner's cost estimates for spatial joins are high enough to trigger JIT compilation,
    # which costs ~1 s and saves nothing on these index-driven plans.
    session.execute(text("SET LOCAL jit = off"))
    # The DISTINCT ON sort of a city-wide flood (~10^5 rows) should stay in memory.
    session.execute(text("SET LOCAL work_mem = '64MB'"))


def household_hits(session: Session, extent: Any, buffer_m: float = 0.0,
                   piece_vertices: int = PIECE_VERTICES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, lons, lats) of the households inside / within `buffer_m` of `extent`, ordered by id."""
    _no_jit(session)
    sql, params = selection_sql(extent, buffer_m, piece_vertices)
    # Straight through the driver, in binary, as three arrays: ~10^5 rows come back in a quarter
    # of the time SQLAlchemy's row objects take. The SQL is ours; only the parameter style changes.
    query = pyformat(f"WITH hit AS ({sql}) SELECT array_agg(id), "
                                   "array_agg(ST_X(geom)), array_agg(ST_Y(geom)) FROM hit")
    raw: Any = session.connection().connection.driver_connection
    with raw.cursor(binary=True) as cur:
        cur.execute(query, params)
        ids, lons, lats = cur.fetchone()
    if ids is None:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    ids = np.array(ids, dtype=np.int64)
    ids, first = np.unique(ids, return_index=True)           # by id; a house on a cut line once
    return ids, np.array(lons, dtype=float)[first], np.array(lats, dtype=float)[first]


def group_codes(session: Session, lons: np.ndarray, lats: np.ndarray) -> list[str | None]:
    """The group grid of each point: the smallest code among the current level-4 grids whose closed
    polygon holds it (the rule of gis/households.py and gis/grids/locate.py), or None. Answered in
    memory from gis.grids.locate's cached grid index (shapely's STRtree)."""
    from concurrent.futures import ThreadPoolExecutor

    from gis.grids.locate import grid_index

    n = len(lons)
    if n == 0:
        return []
    index = grid_index(session)
    level4 = [(members, tree) for level, members, tree in index.by_level if level == 4]
    if not level4:
        return [None] * n
    members, tree = level4[0]
    pts = shapely.points(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
    best = np.full(n, len(members), dtype=np.int64)

    def match(rows: np.ndarray) -> None:
        pi, gi = tree.query(pts[rows], predicate="intersects")
        np.minimum.at(best, rows[pi], gi)   # rows are disjoint between threads

    parts = np.array_split(np.arange(n), 2 if n > 50_000 else 1)
    if len(parts) == 1:
        match(parts[0])
    else:  # shapely releases the GIL: the halves run on two cores
        with ThreadPoolExecutor(len(parts)) as pool:
            list(pool.map(match, parts))
    codes = np.full(n, None, dtype=object)
    hit = best < len(members)
    codes[hit] = index.codes[members[best[hit]]]
    return codes.tolist()


def household_ids_with_grids(session: Session, extent: Any, buffer_m: float = 0.0,
                             piece_vertices: int = PIECE_VERTICES) -> list[tuple[int, str | None]]:
    """(household id, group grid code) of every household inside / within `buffer_m` of `extent`,
    ordered by id. The query the benchmark times."""
    ids, lons, lats = household_hits(session, extent, buffer_m, piece_vertices)
    return list(zip(ids.tolist(), group_codes(session, lons, lats), strict=True))


# --- the full list ---------------------------------------------------------------------------------

@dataclass
class FinderResult:
    extent: dict[str, Any]                # id, name, source, stage_m, buffer_m
    households: list[dict[str, Any]]      # in rescue order
    unplaced: list[dict[str, Any]]        # households no shelter could take (id, household_no, residents)
    shelters: list[dict[str, Any]]        # every usable shelter with its load and remaining room
    shelter_method: str | None = None
    distance_kind: str | None = None
    totals: dict[str, Any] = field(default_factory=dict)


def extent_meta(ext: Any, buffer_m: float) -> dict[str, Any]:
    return {"id": getattr(ext, "id", None), "name": getattr(ext, "name", None),
            "source": getattr(ext, "source", None), "stage_m": getattr(ext, "stage_m", None),
            "buffer_m": buffer_m}


def _age(birth: dt.date | None, today: dt.date) -> int | None:
    if birth is None:
        return None
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


# The members of the households whose ids `{ids}` gives (an SQL array), in household then register order.
MEMBERS_SQL = ("SELECT household_id, name, gender, birth_date, relation_to_head, is_disabled, is_pregnant, "
               "is_bedridden FROM resident WHERE household_id = ANY({ids}) ORDER BY household_id, id")


def members_of(session: Session, ids: list[int], today: dt.date | None = None) -> dict[int, list[dict[str, Any]]]:
    """The members of each household with their age on `today` (Beijing) and their flags."""
    if not ids:
        return {}
    rows = session.execute(
        text(MEMBERS_SQL.format(ids=":ids")).bindparams(bindparam("ids", type_=ARRAY(BigInteger))), {"ids": ids},
    ).mappings()
    return shape_members(rows, ids, today)


def shape_members(rows: Any, ids: list[int], today: dt.date | None = None) -> dict[int, list[dict[str, Any]]]:
    """MEMBERS_SQL's rows as `members_of` gives them: per household id of `ids`, its members with their age on
    `today` (Beijing) and their flags."""
    today = today or dt.datetime.now(BEIJING).date()
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for r in rows:
        age = _age(r["birth_date"], today)
        flags = []
        if age is not None and age >= priority.ELDERLY_AGE:
            flags.append("elderly")
        if age is not None and age < priority.CHILD_AGE:
            flags.append("child")
        for col, flag in (("is_disabled", "disabled"), ("is_pregnant", "pregnant"),
                          ("is_bedridden", "bedridden")):
            if r[col]:
                flags.append(flag)
        out[r["household_id"]].append({
            "name": r["name"], "gender": r["gender"],
            "birth_date": r["birth_date"].isoformat() if r["birth_date"] else None,
            "age": age, "relation_to_head": r["relation_to_head"], "flags": flags,
        })
    return out


def _responsible(session: Session, households: list[dict[str, Any]]) -> None:
    """The grid member who answers for each household and the grid's leader, with phones.

    The data has no household-to-member list (包户), so the households of a group grid are shared
    out among its members in order of household id, in contiguous runs (member k of n takes the
    k-th n-th), which is stable as long as the grid's households and members do not change."""
    codes = sorted({h["grid_code"] for h in households if h["grid_code"]})
    if not codes:
        return
    staff: dict[str, dict[str, list[Any]]] = {}
    for role, code, name, phone in session.execute(
        text("SELECT role, grid_code, name, phone FROM staff WHERE grid_code = ANY(:c) "
             "AND role IN ('grid_member', 'grid_leader') ORDER BY id"),
        {"c": codes},
    ):
        staff.setdefault(code, {}).setdefault(role, []).append((name, phone))
    ranks = {
        int(i): (int(r), int(n), c)
        for i, r, n, c in session.execute(
            text("""
                SELECT h.id, row_number() OVER w - 1, count(*) OVER (PARTITION BY g.code), g.code
                FROM grid g JOIN household h ON ST_Intersects(g.geom, h.geom)
                CROSS JOIN LATERAL household_grid_at(h.geom) hg
                WHERE g.valid_to IS NULL AND g.level = 4 AND g.code = ANY(:c) AND hg.group_code = g.code
                WINDOW w AS (PARTITION BY g.code ORDER BY h.id)
            """),
            {"c": codes},
        )
        if c is not None
    }
    for h in households:
        code = h["grid_code"]
        people = staff.get(code, {})
        members, leaders = people.get("grid_member", []), people.get("grid_leader", [])
        h["member_name"] = h["member_phone"] = h["leader_name"] = h["leader_phone"] = None
        if members:
            rank, n, _ = ranks.get(h["id"], (0, 1, code))
            name, phone = members[min(len(members) - 1, rank * len(members) // max(n, 1))]
            h["member_name"], h["member_phone"] = name, phone
        if leaders:
            h["leader_name"], h["leader_phone"] = leaders[0]


def _depths(ext: Any, households: list[dict[str, Any]]) -> None:
    depth_at = getattr(ext, "depth_at", None)
    if depth_at is None or not households:
        for h in households:
            h["depth_m"] = None
        return
    xy = np.array([[h["lon"], h["lat"]] for h in households], dtype=float)
    depth = np.asarray(depth_at(xy), dtype=float)
    for h, d in zip(households, depth, strict=True):
        h["depth_m"] = round(float(d), 2) if np.isfinite(d) else None


def _usable_shelters(session: Session, blocked_wgs84: Any) -> list[dict[str, Any]]:
    rows = session.execute(
        text("SELECT id, name, kind, capacity, ST_X(geom) AS lon, ST_Y(geom) AS lat, "
             "NOT ST_Intersects(geom, ST_GeomFromWKB(:g, 4326)) AS dry FROM shelter ORDER BY id"),
        {"g": shapely_wkb.dumps(blocked_wgs84)},
    ).mappings()
    return [dict(r) for r in rows if r["dry"]]


def _roads(session: Session) -> list[Any]:
    return [shapely_wkb.loads(bytes(g)) for (g,) in session.execute(text("SELECT ST_AsBinary(geom) FROM road"))]


def place_in_shelters(session: Session, households: list[dict[str, Any]], extent_wgs84: Any,
                      use_roads: bool = True) -> tuple[Any, list[dict[str, Any]]]:
    """Assign `households` (in priority order) to dry shelters; fills shelter_* keys on each and
    returns (assignment, shelters)."""
    from gis.flood import shelters as sh

    srid = metric_srid(extent_wgs84)
    fwd = metric_transformer(f"EPSG:{srid}")
    usable = _usable_shelters(session, extent_wgs84)
    hx, hy = fwd.transform([h["lon"] for h in households], [h["lat"] for h in households])
    houses = np.column_stack([hx, hy]) if households else np.zeros((0, 2))
    sx, sy = fwd.transform([s["lon"] for s in usable], [s["lat"] for s in usable])
    spots = np.column_stack([sx, sy]) if usable else np.zeros((0, 2))
    roads = _roads(session) if use_roads else []
    if roads:
        metric_roads = [shapely.transform(r, lambda c: np.column_stack(fwd.transform(c[:, 0], c[:, 1])))
                        for r in roads]
        blocked = shapely.transform(extent_wgs84, lambda c: np.column_stack(fwd.transform(c[:, 0], c[:, 1])))
        dist = sh.road_distances(houses, spots, metric_roads, blocked)
        kind = "road"
    else:
        dist = sh.straight_distances(houses, spots)
        kind = "straight"
    residents = np.array([h["residents"] for h in households], dtype=np.int64)
    capacity = np.array([s["capacity"] for s in usable], dtype=np.int64)
    result = sh.assign(residents, capacity, dist.reshape(len(households), len(usable)),
                       order=np.arange(len(households)), distance_kind=kind)
    for s, load in zip(usable, result.load, strict=True):
        s["assigned"] = int(load)
        s["remaining"] = int(s["capacity"] - load)
    for i, h in enumerate(households):
        j = int(result.choice[i])
        if j < 0:
            h.update(shelter_id=None, shelter_name=None, shelter_distance_m=None, shelter_remaining=None,
                     shelter_lon=None, shelter_lat=None)
        else:
            s = usable[j]
            h.update(shelter_id=s["id"], shelter_name=s["name"],
                     shelter_distance_m=round(float(result.distance_m[i]), 1),
                     shelter_remaining=s["remaining"], shelter_lon=s["lon"], shelter_lat=s["lat"])
        h["distance_kind"] = kind
    return result, usable


_SELECT = """
    SELECT h.id, h.household_no, h.address, h.head_name, h.phone, h.residents, h.elderly, h.children,
           h.disabled, h.pregnant, h.bedridden, h.floors, nv.name AS natural_village,
           ST_X(h.geom) AS lon, ST_Y(h.geom) AS lat, hg.group_code AS grid_code, hg.group_name AS grid_name,
           hg.village_code, hg.village_name, hg.area_code, hg.area_name,
           ({visible}) AS row_visible, ({personal}) AS personal_shown
    FROM unnest(CAST(:ids AS bigint[])) AS hit(id)
    JOIN household h ON h.id = hit.id
    LEFT JOIN natural_village nv ON nv.id = h.natural_village_id
    LEFT JOIN LATERAL household_grid_at(h.geom) hg ON true
    ORDER BY h.id
"""


MAX_BUFFER_M = 5000.0


def check_buffer(buffer_m: float) -> None:
    if buffer_m < 0 or buffer_m > MAX_BUFFER_M:
        raise InputError(Problem(("query", "buffer_m"), "a buffer between 0 and 5000 metres"))


def flooded_households(session: Session, principal: Principal | None, ext: Any, buffer_m: float = 0.0,
                       *, with_members: bool = True, with_shelters: bool = True,
                       today: dt.date | None = None) -> FinderResult:
    """Every household inside / within `buffer_m` of the flood extent `ext` (a FloodExtent, or
    anything with .geom), in rescue order, with depth, people, grid path, responsible staff and
    shelter. `principal` None means a trusted caller (the CLI): personal fields shown."""
    check_buffer(buffer_m)
    geom = ext.geom
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    # The one access predicate of gis.households: which rows, and whether shown or masked.
    acc = access_for(principal) if principal is not None else None
    ids, _, _ = household_hits(session, geom, buffer_m)
    params = {**(acc.params if acc is not None else {}), "ids": ids.tolist()}
    sql = _SELECT.format(visible=acc.rows if acc is not None else "TRUE",
                         personal=acc.personal if acc is not None else "TRUE")
    households = [dict(r) for r in session.execute(text(sql), params).mappings()]
    today = today or dt.datetime.now(BEIJING).date()
    for h in households:
        h["living_alone_elderly"] = priority.living_alone_elderly(h)
        h["vulnerable"] = priority.vulnerable_members(h)
    _depths(ext, households)
    _responsible(session, households)
    households = priority.rank(households)
    for h in households:
        h["upper_floor_dry"] = priority.dry_upper_floor(int(h["floors"]), h["depth_m"])
    visible = [h for h in households if h["row_visible"]]
    result = FinderResult(extent_meta(ext, buffer_m), [], [], [])
    if with_shelters and visible:
        blocked = geom if buffer_m <= 0 else _grown(geom, buffer_m)
        assignment, usable = place_in_shelters(session, households, blocked)
        result.shelters = usable
        result.shelter_method, result.distance_kind = assignment.method, assignment.distance_kind
        result.unplaced = [{"id": households[i]["id"], "household_no": households[i]["household_no"],
                            "residents": households[i]["residents"]} for i in assignment.unplaced
                           if households[i]["row_visible"]]
    if with_members:
        members = members_of(session, [h["id"] for h in visible], today)
        for h in visible:
            h["members"] = members[h["id"]]
    for h in visible:
        del h["row_visible"]
    households = result.households = [present(h) for h in visible]
    result.totals = {
        "households": len(households),
        "residents": sum(h["residents"] for h in households),
        **{k: sum(h[k] for h in households) for k in ("elderly", "children", "disabled", "pregnant", "bedridden")},
        "living_alone_elderly": sum(h["living_alone_elderly"] for h in households),
        "unplaced_households": len(result.unplaced),
        "unplaced_residents": sum(u["residents"] for u in result.unplaced),
    }
    return result


def _grown(geom: Any, buffer_m: float) -> Any:
    srid = metric_srid(geom)
    fwd, inv = metric_transformer(f"EPSG:{srid}"), metric_transformer(f"EPSG:{srid}", inverse=True)
    m = shapely.transform(geom, lambda c: np.column_stack(fwd.transform(c[:, 0], c[:, 1])))
    return shapely.transform(m.buffer(buffer_m), lambda c: np.column_stack(inv.transform(c[:, 0], c[:, 1])))


# --- naming an extent -----------------------------------------------------------------------------

_STAGE = re.compile(r"^\d+(\.\d+)?$")


def resolve_extent(session: Session, extent_id: int | None = None, scenario: str | None = None,
                   *, compute: bool = False) -> FloodExtent:
    """The FloodExtent named by an id (stored extents) or a scenario (a name such as '2023-09-23',
    or a stage in metres such as '1.5'). A modelled stage must be stored already (readers never
    write) unless `compute` (a trusted caller: the CLI) asks to compute a missing one."""
    from gis.flood import extents, stages

    if (extent_id is None) == (scenario is None):
        raise InputError(
            Problem(("query", "extent"), "give either extent (an id) or scenario (a name or a stage in m)")
        )
    if extent_id is not None:
        return extents.get_extent(session, extent_id)
    scenario = (scenario or "").strip()
    loc = ("query", "scenario")
    if _STAGE.match(scenario):
        if compute:
            return stages.scenario_extent(session, stages.check_stage(scenario, "fluvial", loc))
        return stages.stored_scenario(session, scenario, loc=loc)
    return stages.named_scenario(session, scenario, stored_only=not compute, loc=loc)
