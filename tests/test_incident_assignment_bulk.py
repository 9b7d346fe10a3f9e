"""100,000 incidents through the batch intake path, assigned at every level, checked against shapely."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyproj
import shapely
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.crs import wgs84_to_bd09, wgs84_to_gcj02
from gis.db import transaction
from gis.grids.store import current_grids
from gis.incidents.batch import import_incidents

GEOD = pyproj.Geod(ellps="WGS84")


def expected_group(groups, xs, ys):
    tree = shapely.STRtree(groups.geometry.values)
    pi, gi = tree.query(shapely.points(xs, ys), predicate="intersects")
    codes = groups["code"].to_numpy()
    out = np.full(len(xs), None, dtype=object)
    for p, g in zip(pi, gi, strict=True):
        if out[p] is None or codes[g] < out[p]:
            out[p] = codes[g]
    return out


def frame(xs, ys, prefix):
    return pd.DataFrame({
        "external_id": [f"{prefix}-{i}" for i in range(len(xs))], "category": "livelihood",
        "description": "bulk check", "occurred_at": "2024-03-01T08:00:00+08:00", "lon": xs, "lat": ys,
    })


def test_hundred_thousand_incidents_match_shapely_at_every_level(scratch_db_url):
    eng = create_engine(scratch_db_url, poolclass=NullPool)
    with transaction(eng) as s:
        grids = current_grids(s)
    groups = grids[grids["level"] == 4].reset_index(drop=True)
    parent = dict(zip(grids["code"], grids["parent_code"], strict=True))
    outline = shapely.union_all(groups.geometry.values)
    rng = np.random.default_rng(2024)
    x0, y0, x1, y1 = groups.total_bounds
    # Random points kept inside the town (outside points are refused or flagged, tested elsewhere).
    cand = rng.uniform([x0, y0], [x1, y1], size=(160_000, 2))
    inside = shapely.contains_xy(outline, cand[:, 0], cand[:, 1])
    # Plus 1,000 points on grid boundaries: every vertex shared by two or more group grids, topped
    # up with points interpolated along the grids' edges.
    coords, owner = shapely.get_coordinates(groups.geometry.values, return_index=True)
    table = np.unique(np.column_stack([coords, owner]), axis=0)
    uniq, counts = np.unique(table[:, :2], axis=0, return_counts=True)
    shared = uniq[counts >= 2]
    vertices = shared[: min(len(shared), 1000)]
    n_edge = 1000 - len(vertices)
    rings = shapely.boundary(groups.geometry.values)
    on_edges = shapely.get_coordinates(shapely.line_interpolate_point(
        rings[rng.integers(len(rings), size=n_edge)], rng.uniform(0, 1, n_edge), normalized=True))
    pts = cand[inside][:99_000]
    wgs = np.vstack([pts[:33_000], vertices, on_edges])
    gcj = pts[33_000:66_000]
    bd = pts[66_000:]
    gx, gy = wgs84_to_gcj02(gcj[:, 0], gcj[:, 1])
    bx, by = wgs84_to_bd09(bd[:, 0], bd[:, 1])
    with transaction(eng) as s:
        for f, crs in ((frame(wgs[:, 0], wgs[:, 1], "w"), None), (frame(gx, gy, "g"), "gcj02"),
                       (frame(bx, by, "b"), "bd09")):
            report = import_incidents(s, f, source="test", crs=crs, all_or_nothing=True)
            assert report.failed == [] and report.created == len(f)
    with eng.connect() as c:
        stored = pd.DataFrame(c.execute(text(
            "SELECT external_id, ST_X(geom) AS x, ST_Y(geom) AS y, group_code, village_code, area_code, town_code, "
            "on_boundary, outside_distance_m FROM incident WHERE external_id ~ '^[wgb]-'")).mappings().all())
    eng.dispose()
    assert len(stored) == 100_000
    # Shifted inputs land within 5 cm of the WGS84 truth.
    for prefix, src in (("g", gcj), ("b", bd)):
        part = stored[stored["external_id"].str.startswith(prefix + "-")]
        idx = part["external_id"].str[2:].astype(int).to_numpy()
        _, _, d = GEOD.inv(part["x"].to_numpy(), part["y"].to_numpy(), src[idx, 0], src[idx, 1])
        assert d.max() < 0.05, (prefix, d.max())
    # Assignment at level 4 equals shapely's answer on the stored point; levels above follow parents.
    want = expected_group(groups, stored["x"].to_numpy(), stored["y"].to_numpy())
    # A point interpolated on the town's outer edge may fall a hair outside: then the rule is the
    # nearest group grid, flagged with its (tiny) distance.
    outside = np.array([w is None for w in want])
    assert outside.sum() < 50
    for i in np.flatnonzero(outside):
        d = shapely.distance(groups.geometry.values, shapely.Point(stored["x"].iat[i], stored["y"].iat[i]))
        want[i] = groups["code"].iat[int(np.argmin(d))]
        assert stored["outside_distance_m"].iat[i] < 0.01
    assert stored["outside_distance_m"][~outside].isna().all()
    bad = stored[stored["group_code"].to_numpy() != want]
    assert bad.empty, bad.head(10).to_string()
    assert (stored["village_code"] == stored["group_code"].map(parent)).all()
    assert (stored["area_code"] == stored["village_code"].map(parent)).all()
    assert (stored["town_code"] == stored["area_code"].map(parent)).all()
    on_vertices = stored[stored["external_id"].str.startswith("w-")]
    ordinal = on_vertices["external_id"].str[2:].astype(int)
    on_vertices = on_vertices[(ordinal >= 33_000) & (ordinal < 33_000 + len(vertices))]
    assert len(vertices) > 300 and len(on_vertices) == len(vertices) and on_vertices["on_boundary"].all()
