"""Point to grid, checked against an independent shapely computation on the same polygons."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import shapely

from gis.grids.locate import locate_points
from gis.grids.store import current_grids

GEOD = pyproj.Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def groups(engine):
    from gis.db import transaction

    with transaction(engine) as s:
        frame = current_grids(s, level=4)
    return frame.sort_values("code").reset_index(drop=True)


def expected_codes(groups, xs, ys):
    """Shapely's answer: the smallest code among the group grids whose closed polygon holds the point."""
    pts = shapely.points(xs, ys)
    tree = shapely.STRtree(groups.geometry.values)
    pi, gi = tree.query(pts, predicate="intersects")
    out: list[str | None] = [None] * len(xs)
    codes = groups["code"].to_numpy()
    for p, g in zip(pi, gi, strict=True):
        if out[p] is None or codes[g] < out[p]:
            out[p] = codes[g]
    return out


def test_ten_thousand_random_points_match_shapely(session, groups):
    x0, y0, x1, y1 = groups.total_bounds
    rng = np.random.default_rng(7)
    # A margin around the town so that some points fall outside.
    xs = rng.uniform(x0 - 0.01, x1 + 0.01, 10_000)
    ys = rng.uniform(y0 - 0.01, y1 + 0.01, 10_000)
    got = locate_points(session, xs, ys)
    want = expected_codes(groups, xs, ys)
    inside = [w is not None for w in want]
    assert 3_000 < sum(inside) < 9_000  # both kinds of point are exercised
    mismatches = [
        (i, g.deepest.code if g.inside else None, w)
        for i, (g, w) in enumerate(zip(got, want, strict=True))
        if (g.deepest.code if g.inside else None) != w
    ]
    assert mismatches == []
    # Every inside answer has a full, consistent path town -> area -> village -> group.
    for g in got:
        if g.inside:
            assert sorted(g.path) == [1, 2, 3, 4]
            assert g.path[4].parent_code == g.path[3].code
            assert g.path[3].parent_code == g.path[2].code
            assert g.path[2].parent_code == g.path[1].code


def test_outside_points_name_the_nearest_grid_and_distance(session, groups):
    x0, y0, x1, y1 = groups.total_bounds
    xs = np.array([x0 - 0.005, x1 + 0.003, (x0 + x1) / 2])
    ys = np.array([(y0 + y1) / 2, y0 - 0.002, y1 + 0.004])
    got = locate_points(session, xs, ys)
    to_m = pyproj.Transformer.from_crs(4326, 4546, always_xy=True)
    polys = shapely.transform(groups.geometry.values, lambda c: np.column_stack(to_m.transform(c[:, 0], c[:, 1])))
    for g, x, y in zip(got, xs, ys, strict=True):
        assert not g.inside
        px, py = to_m.transform(x, y)
        d = shapely.distance(polys, shapely.Point(px, py))
        assert g.nearest.code == groups["code"].iloc[int(np.argmin(d))]
        # Gauss-Kruger vs geodesic distance: agree within 0.5 % at this range.
        assert g.distance_m == pytest.approx(float(d.min()), rel=5e-3)


def test_points_on_shared_vertices_and_edges_follow_the_smallest_code_rule(session, groups):
    # Vertices shared by two or more group grids, and midpoints of segments shared by two grids.
    coords, owner = shapely.get_coordinates(groups.geometry.values, return_index=True)
    # Distinct (vertex, grid) pairs first, since a closed ring repeats its first vertex.
    table = np.unique(np.column_stack([coords, owner]), axis=0)
    uniq, counts = np.unique(table[:, :2], axis=0, return_counts=True)
    shared = uniq[counts >= 2]
    rng = np.random.default_rng(11)
    vertices = shared[rng.choice(len(shared), size=min(400, len(shared)), replace=False)]
    boundaries = shapely.boundary(groups.geometry.values)
    pairs = shapely.STRtree(groups.geometry.values).query(groups.geometry.values, predicate="touches")
    edges = []
    for a, b in zip(*pairs, strict=True):
        if a < b:
            line = shapely.intersection(boundaries[a], boundaries[b])
            segs = shapely.get_parts(shapely.line_merge(line)) if not line.is_empty else []
            for s in segs:
                if s.geom_type == "LineString" and s.length > 0:
                    edges.append(np.asarray(s.coords)[0] / 2 + np.asarray(s.coords)[1] / 2)
        if len(edges) >= 400:
            break
    pts = np.vstack([vertices, np.array(edges)])
    got = locate_points(session, pts[:, 0], pts[:, 1])
    want = expected_codes(groups, pts[:, 0], pts[:, 1])
    assert len(pts) > 500
    assert [g.deepest.code for g in got] == want
    # Shared vertices lie on two or more grids' boundaries, so they are all flagged.
    assert all(g.on_boundary for g in got[: len(vertices)])
    multi = sum(g.candidates > 1 for g in got)
    assert multi > len(pts) * 0.5


def interior_point(groups, i=0):
    p = groups.geometry.iloc[i].representative_point()
    return p.x, p.y, groups["code"].iloc[i]


def test_api_locate_returns_every_level_with_staff(client, groups):
    x, y, code = interior_point(groups, 5)
    r = client.get("/grids/locate", params={"lon": x, "lat": y})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["grids"]["4"]["code"] == code
    assert body["grids"]["3"]["code"] == code[:12] + "000"
    assert [body["grids"][k]["level"] for k in "1234"] == [1, 2, 3, 4]
    roles = [p["role"] for p in body["grids"]["4"]["staff"]]
    assert roles[0] == "grid_leader" and "grid_member" in roles
    assert body["on_boundary"] is False


@pytest.mark.parametrize("system", ["gcj02", "bd09"])
def test_shifted_input_lands_within_two_metres(client, groups, system):
    from gis.crs import wgs84_to_bd09, wgs84_to_gcj02

    shift = {"gcj02": wgs84_to_gcj02, "bd09": wgs84_to_bd09}[system]
    for i in (3, 50, 120, 260):
        x, y, code = interior_point(groups, i)
        sx, sy = shift(np.array([x]), np.array([y]))
        # The shift itself is hundreds of metres, so landing within 2 m proves the conversion ran.
        assert GEOD.inv(x, y, float(sx[0]), float(sy[0]))[2] > 100
        r = client.get("/grids/locate", params={"lon": float(sx[0]), "lat": float(sy[0]), "crs": system})
        assert r.status_code == 200, r.text
        body = r.json()
        assert GEOD.inv(x, y, body["lon"], body["lat"])[2] < 2.0
        assert body["grids"]["4"]["code"] == code


def test_api_outside_point_is_404_with_nearest_grid(client, groups):
    x0, y0, x1, y1 = groups.total_bounds
    r = client.get("/grids/locate", params={"lon": x1 + 0.02, "lat": (y0 + y1) / 2})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["nearest"]["code"] in set(groups["code"])
    assert 1000 < body["distance_m"] < 5000
    assert "nearest grid" in body["detail"]


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"lon": 32.97, "lat": 112.17}, "lon", "swapped"),
        ({"lon": "nan", "lat": 32.9}, "lon", ""),
        ({"lon": 112.1, "lat": "inf"}, "lat", ""),
        ({"lon": 181, "lat": 32.9}, "lon", ""),
        ({"lon": 112.1, "lat": -91}, "lat", ""),
        ({"lon": "abc", "lat": 32.9}, "lon", ""),
        ({"lat": 32.9}, "lon", ""),
        ({"lon": 112.1, "lat": 32.9, "crs": "EPSG:999999"}, "crs", ""),
        ({"lon": 112.1, "lat": 32.9, "crs": "mars"}, "crs", ""),
    ],
)
def test_api_locate_bad_input_is_422_naming_the_field(client, params, field, words):
    r = client.get("/grids/locate", params=params)
    assert r.status_code == 422, r.text
    body = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    locs = [e["loc"] for e in body["errors"]]
    assert any(field in loc for loc in locs), body
    assert words in " ".join(e["msg"] for e in body["errors"]).lower()


def test_api_bulk_locate_agrees_with_single(client, groups):
    pts = [interior_point(groups, i) for i in (1, 2, 3)]
    body = {"points": [{"lon": x, "lat": y} for x, y, _ in pts] + [{"lon": 100.0, "lat": 30.0}]}
    r = client.post("/grids/locate", json=body)
    assert r.status_code == 200, r.text
    items = r.json()
    assert [i["answer"]["grids"]["4"]["code"] for i in items[:3]] == [c for _, _, c in pts]
    assert items[3]["inside"] is False and items[3]["distance_m"] > 100_000
