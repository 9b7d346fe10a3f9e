"""The nearest grid of a point outside the town, against an independent oracle, on every path that
names it: GET and POST /grids/locate, the intake's refusal (and its flagged assignment within the
tolerance), and the batch import.

The oracle knows nothing of the implementation: every group grid's boundary densified to about a
metre in longitude/latitude, and the minimum of pyproj's geodesic distance (Geod.inv, WGS84) from
the point to those vertices; a planar pre-filter in EPSG:4546 with a 30 m margin (the zone's scale
error over a few kilometres is well under a metre) keeps it fast.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import WHEN, make_client, report_incident

# The audit's example: the nearest grid is ...005 at 1815.66 m, not ...004 at 1817.5 m.
EXAMPLE = (112.21900973388244, 33.01373775371531)
EXAMPLE_NEAREST = "411324105007005"
GEOD = pyproj.Geod(ellps="WGS84")


def tolerance(d: float) -> float:
    """How far the oracle itself may be off: vertices ~1.1 m apart put the true foot within 0.56 m
    of one, which lengthens the distance by at most 0.56² / 2d (plus rounding)."""
    return 0.005 + 0.16 / max(d, 1.0)


class Oracle:
    def __init__(self, groups):
        self.codes = groups["code"].to_numpy()
        geoms = groups.geometry.to_numpy()
        to_gk = pyproj.Transformer.from_crs(4326, 4546, always_xy=True)
        self.to_gk = to_gk
        self.gk = shapely.transform(
            geoms, lambda c: np.column_stack(to_gk.transform(c[:, 0], c[:, 1]))
        )
        dense = shapely.segmentize(shapely.boundary(geoms), 1e-5)
        self.vertices = [shapely.get_coordinates(g) for g in dense]
        self.vertices_gk = [
            np.column_stack(to_gk.transform(v[:, 0], v[:, 1])) for v in self.vertices
        ]

    def distances(self, lon: float, lat: float) -> dict[str, float]:
        """Geodesic distance to every grid within the planar pre-filter of the nearest one."""
        px, py = self.to_gk.transform(lon, lat)
        planar = shapely.distance(shapely.Point(px, py), self.gk)
        assert planar.min() > 0, (lon, lat)
        out = {}
        for j in np.flatnonzero(planar <= planar.min() + 30.0):
            near = (
                np.hypot(self.vertices_gk[j][:, 0] - px, self.vertices_gk[j][:, 1] - py)
                <= planar[j] + 30.0
            )
            v = self.vertices[j][near]
            out[self.codes[j]] = float(
                GEOD.inv(np.full(len(v), lon), np.full(len(v), lat), v[:, 0], v[:, 1])[2].min()
            )
        return out

    def check(
        self, lon: float, lat: float, code: str, distance: float, rounding: float = 0.0
    ) -> None:
        """The answer names the nearest grid (or one tied with it within the oracle's tolerance) at
        the right distance."""
        ds = self.distances(lon, lat)
        best = min(ds.values())
        tol = tolerance(best) + rounding
        assert code in ds and ds[code] <= best + tol, (lon, lat, code, distance, ds)
        assert abs(distance - best) <= tol, (lon, lat, code, distance, ds)


@pytest.fixture(scope="module")
def groups(engine):
    from gis.db import transaction
    from gis.grids.store import current_grids

    with transaction(engine) as s:
        return current_grids(s, level=4)


@pytest.fixture(scope="module")
def oracle(groups):
    return Oracle(groups)


def outside_points(groups, n: int, margin_deg: float, seed: int) -> np.ndarray:
    """n random points outside every group grid, in the town's box widened by margin_deg."""
    rng = np.random.default_rng(seed)
    town = shapely.union_all(groups.geometry.to_numpy())
    x0, y0, x1, y1 = town.bounds
    out = []
    while len(out) < n:
        xy = rng.uniform(
            (x0 - margin_deg, y0 - margin_deg), (x1 + margin_deg, y1 + margin_deg), (4 * n, 2)
        )
        keep = ~shapely.intersects(town, shapely.points(xy))
        out.extend(xy[keep].tolist())
    return np.array(out[:n])


def test_the_oracle_sees_the_audits_example(oracle):
    ds = oracle.distances(*EXAMPLE)
    assert min(ds, key=ds.get) == EXAMPLE_NEAREST and abs(ds[EXAMPLE_NEAREST] - 1815.66) < 0.05
    assert ds["411324105007004"] - ds[EXAMPLE_NEAREST] > 1.0


def test_locate_names_the_nearest_grid_of_1000_outside_points(client, groups, oracle):
    pts = np.vstack([[EXAMPLE], outside_points(groups, 999, 0.03, seed=13)])
    r = client.post("/grids/locate", json={"points": [{"lon": x, "lat": y} for x, y in pts]})
    assert r.status_code == 200, r.text
    answers = r.json()
    assert len(answers) == len(pts) and not any(a["inside"] for a in answers)
    for (x, y), a in zip(pts, answers, strict=True):
        oracle.check(x, y, a["nearest_code"], a["distance_m"])
    assert answers[0]["nearest_code"] == EXAMPLE_NEAREST
    # GET answers the same, rounded to 0.1 m in its 404.
    for x, y in pts[:20]:
        one = client.get("/grids/locate", params={"lon": x, "lat": y})
        assert one.status_code == 404
        body = one.json()
        oracle.check(x, y, body["nearest"]["code"], body["distance_m"], rounding=0.05)


def test_intake_and_batch_import_name_the_same_nearest_grid(
    scratch_db_url, accounts, groups, oracle
):
    near = outside_points(groups, 400, 0.002, seed=17)
    dist = np.array([min(oracle.distances(x, y).values()) for x, y in near])
    near = near[(dist > 1.0) & (dist < 190.0)][:150]
    assert len(near) >= 50
    with make_client(scratch_db_url, "admin") as admin:
        # Beyond the tolerance: refused, naming the nearest grid.
        far = report_incident(admin, EXAMPLE[0], EXAMPLE[1])
        assert far.status_code == 422, far.text
        ctx = far.json()["errors"][0]["ctx"]
        assert ctx["nearest_code"] == EXAMPLE_NEAREST
        oracle.check(*EXAMPLE, ctx["nearest_code"], ctx["distance_m"], rounding=0.05)
        # Within it: assigned to the nearest grid, flagged with the distance.
        for x, y in near[:15]:
            r = report_incident(admin, x, y)
            assert r.status_code == 201, r.text
            inc = r.json()
            assert inc["flagged"]
            oracle.check(x, y, inc["group_code"], inc["outside_distance_m"])
        # The batch import: every row placed as the oracle says.
        frame = pd.DataFrame(
            {
                "category": "environment",
                "description": [f"批量{i}" for i in range(len(near))],
                "occurred_at": WHEN,
                "lon": near[:, 0],
                "lat": near[:, 1],
                "external_id": [f"nearest-{i}" for i in range(len(near))],
            }
        )
        buf = io.BytesIO(frame.to_csv(index=False).encode())
        r = admin.post("/incidents/import", files={"file": ("near.csv", buf.getvalue())})
        assert r.status_code == 200, r.text
        assert r.json()["created"] == len(near), r.text
    eng = create_engine(scratch_db_url, poolclass=NullPool)
    with eng.connect() as c:
        rows = c.execute(
            text(
                "SELECT external_id, group_code, outside_distance_m FROM incident "
                "WHERE external_id LIKE 'nearest-%'"
            )
        ).all()
    eng.dispose()
    assert len(rows) == len(near)
    for ext, code, d in rows:
        x, y = near[int(ext.split("-")[1])]
        oracle.check(x, y, code, d)
