"""The flooded-households finder: the same households as an independent shapely check, and the rows
it gives (grid path, responsible staff, priority, shelters) as the documented rules say."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, box
from sqlalchemy import text

from gis.crs import metric_crs_for, metric_transformer
from gis.flood import finder, priority


@dataclass
class Extent:
    """A stand-in flood extent with the interface of gis.flood.extent_row.FloodExtent."""

    geom: MultiPolygon
    depth_at: object = None
    id: int | None = None
    name: str = "测试范围"
    source: str = "drawn"
    stage_m: float | None = None


@pytest.fixture(scope="module")
def town(engine):
    """Every household (id, lon, lat) and the river, read once."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, ST_X(geom), ST_Y(geom) FROM household ORDER BY id")).all()
        river = shapely.from_wkb(bytes(conn.execute(
            text("SELECT ST_AsBinary(ST_LineMerge(ST_Union(geom))) FROM river")).scalar_one()))
    arr = np.array(rows, dtype=float)
    return {"ids": arr[:, 0].astype(np.int64), "lon": arr[:, 1], "lat": arr[:, 2], "river": river}


def shapely_inside(town, extent, buffer_m: float = 0.0) -> set[int]:
    """The independent answer: shapely's closed-polygon test, or distance in the local metric CRS."""
    pts = shapely.points(town["lon"], town["lat"])
    if buffer_m <= 0:
        hit = shapely.intersects(extent, pts)
    else:
        c = extent.centroid
        fwd = metric_transformer(metric_crs_for(c.x, c.y))
        ext_m = shapely.transform(extent, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))
        x, y = fwd.transform(town["lon"], town["lat"])
        hit = shapely.distance(ext_m, shapely.points(x, y)) <= buffer_m
    return set(town["ids"][hit].tolist())


def as_multi(g) -> MultiPolygon:
    g = shapely.make_valid(g)
    polys = [p for p in getattr(g, "geoms", [g]) if p.geom_type == "Polygon"]
    return MultiPolygon(polys)


def river_extent(town) -> MultiPolygon:
    """A multipart flood along the river with islands: the river buffered, cut by two dykes, holes."""
    band = town["river"].buffer(0.004, quad_segs=6)
    x0, y0, x1, y1 = band.bounds
    w = x1 - x0
    dykes = [box(x0 + w * f, y0 - 1, x0 + w * f + 0.002, y1 + 1) for f in (0.3, 0.62)]
    islands = [shapely.Point(town["river"].interpolate(f, normalized=True)).buffer(0.0012)
               for f in (0.15, 0.45, 0.8)]
    return as_multi(band.difference(shapely.union_all(dykes + islands)))


def star(rng, cx, cy, r, n):
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rr = r * rng.uniform(0.35, 1.0, n)
    return Polygon(np.column_stack([cx + rr * np.cos(ang), cy + rr * np.sin(ang)]))


def random_extent(town, seed: int) -> MultiPolygon:
    """Random parts with holes, some vertices exactly on households, some edges exactly through
    households (axis-parallel edges at a house's longitude or latitude)."""
    rng = np.random.default_rng(seed)
    x0, x1 = np.percentile(town["lon"], [5, 95])
    y0, y1 = np.percentile(town["lat"], [5, 95])
    parts = []
    for _ in range(rng.integers(2, 6)):
        cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
        r = rng.uniform(0.004, 0.02)
        outer = star(rng, cx, cy, r, int(rng.integers(12, 200)))
        holes = [star(rng, cx + rng.uniform(-r, r) / 3, cy + rng.uniform(-r, r) / 3, r / 4, 9)
                 for _ in range(rng.integers(0, 3))]
        parts.append(outer.difference(shapely.union_all(holes)) if holes else outer)
    # Vertices on houses: triangles with one corner exactly at a household.
    for i in rng.choice(len(town["ids"]), 6, replace=False):
        hx, hy = town["lon"][i], town["lat"][i]
        parts.append(Polygon([(hx, hy), (hx + 0.003, hy + 0.001), (hx + 0.001, hy + 0.003)]))
    # Edges through houses: boxes whose west or south edge passes exactly through a household.
    for k, i in enumerate(rng.choice(len(town["ids"]), 6, replace=False)):
        hx, hy = town["lon"][i], town["lat"][i]
        parts.append(box(hx, hy - 0.002, hx + 0.004, hy + 0.002) if k % 2 else
                     box(hx - 0.002, hy, hx + 0.002, hy + 0.004))
    return as_multi(shapely.union_all(parts))


def finder_ids(session, extent, buffer_m=0.0, piece_vertices=finder.PIECE_VERTICES) -> set[int]:
    return {i for i, _ in finder.household_ids_with_grids(session, extent, buffer_m, piece_vertices)}


def plain_ids(session, extent) -> set[int]:
    rows = session.execute(text("SELECT id FROM household WHERE ST_Intersects(ST_GeomFromWKB(:g, 4326), geom)"),
                           {"g": shapely.to_wkb(extent)})
    return {int(i) for (i,) in rows}


# --- the set of households ------------------------------------------------------------------------

def test_sample_town_river_flood_is_exactly_the_shapely_set(session, town):
    extent = river_extent(town)
    assert len(extent.geoms) >= 3 and sum(len(p.interiors) for p in extent.geoms) >= 1
    expected = shapely_inside(town, extent)
    assert len(expected) > 300
    assert finder_ids(session, extent) == expected
    assert plain_ids(session, extent) == expected
    # Small pieces (many cuts through the villages) give the same answer.
    assert finder_ids(session, extent, piece_vertices=8) == expected


@pytest.mark.parametrize("seed", range(10))
def test_random_multipart_polygons_with_holes(session, town, seed):
    extent = random_extent(town, seed)
    expected = shapely_inside(town, extent)
    assert expected, "the random extent should hold households"
    assert finder_ids(session, extent, piece_vertices=8 + seed) == expected
    assert plain_ids(session, extent) == expected


def test_houses_on_vertices_and_edges_are_inside(session, town):
    i, j = 100, 5000
    extent = as_multi(shapely.union_all([
        Polygon([(town["lon"][i], town["lat"][i]), (town["lon"][i] + 0.01, town["lat"][i]),
                 (town["lon"][i], town["lat"][i] + 0.01)]),
        box(town["lon"][j], town["lat"][j] - 0.003, town["lon"][j] + 0.01, town["lat"][j] + 0.003),
    ]))
    found = finder_ids(session, extent, piece_vertices=8)
    assert {int(town["ids"][i]), int(town["ids"][j])} <= found
    assert found == shapely_inside(town, extent)


@pytest.mark.parametrize(("seed", "buffer_m"), [(0, 30.0), (3, 150.0), (7, 400.0)])
def test_buffer_is_the_metric_distance(session, town, seed, buffer_m):
    extent = random_extent(town, seed)
    expected = shapely_inside(town, extent, buffer_m)
    assert finder_ids(session, extent, buffer_m) == expected
    assert expected > shapely_inside(town, extent)


def test_river_buffer_widens_the_set(session, town):
    extent = river_extent(town)
    assert finder_ids(session, extent, 100.0) == shapely_inside(town, extent, 100.0)


def test_subdivided_pieces_cover_the_extent_exactly(town):
    extent = random_extent(town, 11)
    pieces = finder.subdivide(extent, 10)
    assert max(shapely.get_num_coordinates(p) for p in pieces) <= 10
    assert shapely.union_all(pieces).symmetric_difference(extent).area < 1e-12 * extent.area


# --- the rows -------------------------------------------------------------------------------------

def depth_by_latitude(xy: np.ndarray) -> np.ndarray:
    """A made-up depth field: deeper to the south, dry north of 32.97."""
    d = (32.97 - xy[:, 1]) * 60.0
    return np.where(d > 0, d, np.nan)


@pytest.fixture(scope="module")
def flooded(engine, town):
    from gis.db import make_sessionmaker

    ext = Extent(river_extent(town), depth_at=depth_by_latitude)
    with make_sessionmaker(engine)() as s, s.begin():
        result = finder.flooded_households(s, None, ext)
        again = finder.flooded_households(s, None, ext)
        s.rollback()
    return ext, result, again


def test_rows_carry_the_grid_path_of_the_household_rule(session, flooded):
    _, result, _ = flooded
    rows = {h["id"]: h for h in result.households}
    expected = dict(session.execute(text(
        "SELECT h.id, (SELECT g.code FROM grid g WHERE g.valid_to IS NULL AND g.level = 4 "
        "AND ST_Intersects(g.geom, h.geom) ORDER BY g.code LIMIT 1) FROM household h WHERE h.id = ANY(:ids)"),
        {"ids": list(rows)}).all())
    names = dict(session.execute(text("SELECT code, name FROM grid WHERE valid_to IS NULL")).all())
    parents = dict(session.execute(text("SELECT code, parent_code FROM grid WHERE valid_to IS NULL")).all())
    for hid, h in rows.items():
        assert h["grid_code"] == expected[hid]
        assert h["grid_name"] == names[h["grid_code"]]
        assert h["village_code"] == parents[h["grid_code"]] and h["village_name"] == names[h["village_code"]]
        assert h["area_code"] == parents[h["village_code"]] and h["area_name"] == names[h["area_code"]]


def test_responsible_member_and_leader_belong_to_the_grid(session, flooded):
    _, result, _ = flooded
    staff = session.execute(text("SELECT grid_code, role, name, phone FROM staff")).all()
    members = {(c, n, p) for c, r, n, p in staff if r == "grid_member"}
    leaders = {(c, n, p) for c, r, n, p in staff if r == "grid_leader"}
    for h in result.households:
        assert (h["grid_code"], h["member_name"], h["member_phone"]) in members
        assert (h["grid_code"], h["leader_name"], h["leader_phone"]) in leaders
        assert h["member_phone"] and h["leader_phone"]


def test_members_ages_and_flags(session, flooded):
    _, result, _ = flooded
    for h in result.households[:50]:
        assert len(h["members"]) >= 1
        for m in h["members"]:
            assert ("elderly" in m["flags"]) == (m["age"] >= 65)
            assert ("child" in m["flags"]) == (m["age"] < 14)


def documented_score(h) -> float:
    """The score as the priority module's docstring states it, written again independently."""
    d = h["depth_m"]
    danger = 20.0 if d is None else 40.0 * min(max(d, 0.0), 3.0) / 3.0
    people = (12 * h["bedridden"] + 10 * h["disabled"] + 10 * h["pregnant"] + 6 * h["elderly"]
              + 4 * h["children"] + (30 if h["residents"] == 1 and h["elderly"] >= 1 else 0))
    dry_upper = h["floors"] >= 2 and (d is None or d < 3.0 * (h["floors"] - 1))
    refuge = -15 if dry_upper and h["bedridden"] == 0 else 0
    return danger + people + refuge


def test_priority_order_follows_the_documented_score_and_is_deterministic(flooded):
    _, result, again = flooded
    hs = result.households
    assert [h["priority_rank"] for h in hs] == list(range(1, len(hs) + 1))
    for h in hs:
        assert h["priority_score"] == pytest.approx(documented_score(h), abs=1e-3)
    scores = [h["priority_score"] for h in hs]
    assert scores == sorted(scores, reverse=True)
    for a, b in zip(hs, hs[1:], strict=False):
        if a["priority_score"] == b["priority_score"]:
            da = -1 if a["depth_m"] is None else a["depth_m"]
            db = -1 if b["depth_m"] is None else b["depth_m"]
            assert (da, priority.vulnerable_members(a)) >= (db, priority.vulnerable_members(b))
    assert [h["id"] for h in again.households] == [h["id"] for h in hs]
    assert any(h["depth_m"] is not None for h in hs) and any(h["depth_m"] is None for h in hs)


def test_shelters_outside_the_water_and_within_capacity(session, flooded):
    ext, result, _ = flooded
    shelters = {s["id"]: s for s in result.shelters}
    assert result.distance_kind == "road"
    wet = session.execute(text("SELECT id FROM shelter WHERE ST_Intersects(geom, ST_GeomFromWKB(:g, 4326))"),
                          {"g": shapely.to_wkb(ext.geom)}).scalars().all()
    assert not set(wet) & set(shelters)
    load: dict[int, int] = {}
    for h in result.households:
        if h["shelter_id"] is not None:
            load[h["shelter_id"]] = load.get(h["shelter_id"], 0) + h["residents"]
            assert h["shelter_distance_m"] > 0
            assert h["shelter_remaining"] == shelters[h["shelter_id"]]["remaining"]
    for sid, people in load.items():
        assert people <= shelters[sid]["capacity"]
        assert shelters[sid]["remaining"] == shelters[sid]["capacity"] - people
    placed = {h["id"] for h in result.households if h["shelter_id"] is not None}
    assert placed | {u["id"] for u in result.unplaced} == {h["id"] for h in result.households}
