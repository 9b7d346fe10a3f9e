"""One point → grid rule on every intake path: the same points give the same answers everywhere.

For points drawn by hypothesis — random inside the town, exactly on vertices shared by grids, on
grid edges, just outside the town (within and beyond the tolerance) — each given in every input
system the intake accepts (WGS84, GCJ-02, BD-09, the projected EPSG:4546), the single intake
(POST /incidents through the ASGI app, the one-statement path), the general intake path
(`service.intake(..., one_statement=False)`) and the batch import (a CSV per system through
`import_incidents`) must store the same WGS84 point, the same grid at every level, the same
on_boundary and outside flags (with the same nearest grid and distance) and route to the same
staff; points beyond the tolerance are refused by all three. The answers are also held against
the SQL function `grid_at` (migration 0008) on the stored point, the nearest group grid by
PostGIS's spheroid distance, and the routing rule written out here by hand.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.auth.principal import Principal
from gis.auth.roles import Role
from gis.context import Context
from gis.crs import wgs84_to_bd09, wgs84_to_gcj02
from gis.db import transaction
from gis.errors import InputError
from gis.grids.store import current_grids
from gis.incidents import service
from gis.incidents.batch import import_incidents, open_incident_file
from tests.conftest import make_client

TOLERANCE_M = 200.0
SYSTEMS = ("wgs84", "gcj02", "bd09", "EPSG:4546")
KINDS = ("inside", "vertex", "edge", "near_outside", "far_outside")
_TO_4546 = pyproj.Transformer.from_crs(4326, 4546, always_xy=True)


@pytest.fixture(scope="module")
def world(test_db_url, accounts):
    """A private copy of the sample database, its group grids and the shapes the points come from."""
    from tests.conftest import database_copy

    with database_copy(test_db_url, "paths") as url:
        engine = create_engine(url, poolclass=NullPool)
        with transaction(engine) as s:
            grids = current_grids(s)
        groups = grids[grids["level"] == 4].reset_index(drop=True)
        geoms = groups.geometry.values
        coords, owner = shapely.get_coordinates(geoms, return_index=True)
        table = np.unique(np.column_stack([coords, owner]), axis=0)
        uniq, counts = np.unique(table[:, :2], axis=0, return_counts=True)
        outline = shapely.union_all(geoms)
        admin = Principal(accounts["admin"]["id"], accounts["admin"]["username"], Role.ADMIN)
        with make_client(url) as client:
            yield {
                "url": url, "engine": engine, "client": client, "admin": admin,
                "geoms": geoms, "rings": shapely.boundary(geoms),
                "shared_vertices": uniq[counts >= 2],
                "outline": outline, "outer": shapely.boundary(outline),
                "centre": np.array(outline.centroid.coords[0]),
            }
        engine.dispose()


def wgs84_point(w, kind: str, i: int, f: float) -> tuple[float, float]:
    """A WGS84 point of the given kind, picked by an integer and a fraction in [0, 1)."""
    if kind == "vertex":
        v = w["shared_vertices"][i % len(w["shared_vertices"])]
        return float(v[0]), float(v[1])
    if kind == "edge":
        ring = w["rings"][i % len(w["rings"])]
        p = shapely.line_interpolate_point(ring, f, normalized=True)
        return p.x, p.y
    if kind == "inside":
        geom = w["geoms"][i % len(w["geoms"])]
        inner = shapely.point_on_surface(geom)
        edge = shapely.line_interpolate_point(shapely.boundary(geom), f, normalized=True)
        t = 0.05 + 0.9 * ((i * 0.618034) % 1.0)           # somewhere between the inner point and the edge
        return inner.x + t * (edge.x - inner.x), inner.y + t * (edge.y - inner.y)
    # Outside: a point of the town's outline moved away from the town's centre.
    p = shapely.line_interpolate_point(w["outer"], f, normalized=True)
    metres = 5 + (i % 150) if kind == "near_outside" else TOLERANCE_M + 60 + (i % 400)
    away = np.array([p.x, p.y]) - w["centre"]
    away /= np.hypot(*away)
    per_deg = np.array([111_320 * np.cos(np.radians(p.y)), 110_574])
    q = np.array([p.x, p.y]) + away * metres / per_deg
    return float(q[0]), float(q[1])


def given_in(system: str, x: float, y: float) -> tuple[float, float]:
    """The WGS84 point written in `system`, as a client of that system would send it."""
    if system == "gcj02":
        gx, gy = wgs84_to_gcj02(np.array([x]), np.array([y]))
        return float(gx[0]), float(gy[0])
    if system == "bd09":
        bx, by = wgs84_to_bd09(np.array([x]), np.array([y]))
        return float(bx[0]), float(by[0])
    if system == "EPSG:4546":
        ex, ey = _TO_4546.transform(x, y)
        return float(ex), float(ey)
    return x, y


def _stored(engine, ids: list[int]) -> dict[int, dict]:
    """id -> what the intake decided: the stored point, grids, flags and routed staff."""
    with engine.connect() as c:
        rows = c.execute(text(
            "SELECT i.id, ST_X(i.geom) AS x, ST_Y(i.geom) AS y, i.group_code, i.village_code, i.area_code, "
            "i.town_code, i.on_boundary, i.outside_distance_m, i.grid_version_id, "
            "(SELECT array_agg(a.staff_id::text || ':' || a.duty ORDER BY a.staff_id, a.duty) "
            " FROM incident_assignee a WHERE a.incident_id = i.id) AS staff "
            "FROM incident i WHERE i.id = ANY(:ids)"), {"ids": ids}).mappings().all()
    return {r["id"]: dict(r) for r in rows}


def _answer(row: dict | None) -> tuple | None:
    """What must agree between the paths (None: the point was refused)."""
    if row is None:
        return None
    out = row["outside_distance_m"]
    return (row["x"], row["y"], row["group_code"], row["village_code"], row["area_code"], row["town_code"],
            row["grid_version_id"], row["on_boundary"], None if out is None else round(out, 6),
            tuple(sorted(row["staff"] or ())))


def _reference(engine, row: dict) -> dict:
    """grid_at on the stored point, its path to the town, the nearest group grid by PostGIS and the
    staff the routing rule names, written out independently of gis.incidents.routing."""
    with engine.connect() as c:
        at = c.execute(text(
            "SELECT g.code, g.on_boundary FROM grid_at(ST_SetSRID(ST_MakePoint(:x, :y), 4326)) g"),
            row).mappings().first()
        near = c.execute(text(
            "SELECT code, ST_Distance(geom::geography, ST_SetSRID(ST_MakePoint(:x, :y), 4326)::geography) AS d "
            "FROM grid WHERE valid_to IS NULL AND level = 4 ORDER BY 2, code LIMIT 1"), row).mappings().first()
        group = at["code"] if at else near["code"]
        path = c.execute(text(
            "WITH RECURSIVE up AS (SELECT code, parent_code, level FROM grid WHERE code = :g AND valid_to IS NULL "
            "UNION SELECT g.code, g.parent_code, g.level FROM grid g JOIN up ON g.code = up.parent_code "
            "AND g.valid_to IS NULL) SELECT level, code FROM up"), {"g": group}).all()
        levels = dict(path)
        staff = c.execute(text(
            "SELECT id::text || ':' || CASE role WHEN 'grid_leader' THEN 'leader' WHEN 'grid_member' THEN 'member' "
            "ELSE 'supervisor' END FROM staff WHERE (grid_code = :g AND role IN ('grid_leader', 'grid_member')) "
            "OR (grid_code = :v AND role = 'supervisor') ORDER BY 1"),
            {"g": group, "v": levels.get(3)}).scalars().all()
    return {"grid_at": dict(at) if at else None, "near": dict(near), "levels": levels, "staff": staff}


_counter = itertools.count()

point_draws = st.lists(
    st.tuples(st.sampled_from(KINDS), st.sampled_from(SYSTEMS), st.integers(0, 10_000),
              st.floats(0, 1, exclude_max=True)),
    min_size=1, max_size=6)


@settings(max_examples=25, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(points=point_draws)
@example(points=[(kind, system, 7, 0.37) for kind in KINDS for system in SYSTEMS])
def test_single_general_and_batch_intake_agree_with_grid_at(world, points):
    run = next(_counter)
    when = "2024-05-01T08:00:00+08:00"
    inputs = []
    for k, (kind, system, i, f) in enumerate(points):
        x, y = wgs84_point(world, kind, i, f)
        inputs.append((k, kind, system, *given_in(system, x, y)))

    # 1. The single intake: POST /incidents through the real app.
    single: dict[int, int | None] = {}
    for k, _kind, system, gx, gy in inputs:
        r = world["client"].post("/incidents", json={
            "category": "livelihood", "description": "路径一致性", "occurred_at": when, "lon": gx, "lat": gy,
            "crs": system, "external_id": f"s-{run}-{k}"})
        if r.status_code == 422:
            assert r.json()["errors"][0]["type"] == "outside_town", r.text
            single[k] = None
        else:
            assert r.status_code == 201, r.text
            single[k] = r.json()["id"]

    # 2. The general path (no one-statement shortcut), in one transaction per incident.
    general: dict[int, int | None] = {}
    ctx = Context(principal=world["admin"], method="TEST", path="property")
    for k, _kind, system, gx, gy in inputs:
        req = service.IntakeRequest(category="livelihood", description="路径一致性", occurred_at=when,
                                    lon=gx, lat=gy, crs=system, external_id=f"g-{run}-{k}")
        try:
            with transaction(world["engine"]) as s:
                general[k] = service.intake(
                    s, ctx, req, outside_tolerance_m=TOLERANCE_M, duplicate_radius_m=100,
                    duplicate_window_hours=72, one_statement=False).id
        except InputError as exc:
            assert exc.problems[0].type == "outside_town", exc.problems
            general[k] = None

    # 3. The batch import: one CSV per input system, the rows' own numbers as external ids.
    batch: dict[int, int | None] = {}
    for system in SYSTEMS:
        rows = [(k, gx, gy) for k, _kind, s_, gx, gy in inputs if s_ == system]
        if not rows:
            continue
        frame = pd.DataFrame({
            "external_id": [f"b-{run}-{k}" for k, _, _ in rows], "category": "livelihood",
            "description": "路径一致性", "occurred_at": when,
            "lon": [repr(gx) for _, gx, _ in rows], "lat": [repr(gy) for _, _, gy in rows]})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "points.csv"
            frame.to_csv(path, index=False)
            with transaction(world["engine"]) as s:
                report = import_incidents(s, open_incident_file(path, max_rows=1_000), source="property",
                                          crs=system, outside_tolerance_m=TOLERANCE_M)
        refused = {f["row"] - 2 for f in report.failed}
        assert all("outside the town" in f["reason"] for f in report.failed), report.failed
        with world["engine"].connect() as c:
            ids = dict(c.execute(text(
                "SELECT external_id, id FROM incident WHERE coalesce(created_by, 0) = 0 AND external_id = ANY(:e)"),
                {"e": [f"b-{run}-{k}" for k, _, _ in rows]}).all())
        for n, (k, _, _) in enumerate(rows):
            batch[k] = None if n in refused else ids[f"b-{run}-{k}"]

    stored = _stored(world["engine"], [i for d in (single, general, batch) for i in d.values() if i is not None])
    for k, kind, system, gx, gy in inputs:
        a, b, c = (_answer(stored.get(d[k])) if d[k] is not None else None for d in (single, general, batch))
        where = f"point {k}: {kind} given in {system} ({gx!r}, {gy!r})"
        assert a == b == c, f"{where}: single {a}, general {b}, batch {c}"
        row = stored.get(single[k]) if single[k] is not None else None
        if row is None:
            # Refused by all three: the reference agrees it lies beyond the tolerance.
            x, y = wgs84_point(world, kind, points[k][2], points[k][3])
            ref = _reference(world["engine"], {"x": x, "y": y})
            assert ref["grid_at"] is None and ref["near"]["d"] > TOLERANCE_M - 1, (where, ref)
            continue
        ref = _reference(world["engine"], row)
        if ref["grid_at"] is not None:
            assert row["outside_distance_m"] is None, where
            assert (row["group_code"], row["on_boundary"]) == (ref["grid_at"]["code"], ref["grid_at"]["on_boundary"]), (
                where, ref)
        else:
            # Outside every grid: the nearest group grid, its distance to the centimetre.
            assert not row["on_boundary"] and row["group_code"] == ref["near"]["code"], (where, ref)
            assert abs(row["outside_distance_m"] - ref["near"]["d"]) < 0.01 + 1e-4 * ref["near"]["d"], (where, ref)
        assert (row["town_code"], row["area_code"], row["village_code"], row["group_code"]) == tuple(
            ref["levels"].get(level) for level in (1, 2, 3, 4)), (where, ref)
        assert sorted(row["staff"] or []) == sorted(ref["staff"]) and ref["staff"], (where, ref)
        if kind == "vertex" and system == "wgs84":
            assert row["on_boundary"], where          # a vertex shared by grids lies on their edges
        assert row["outside_distance_m"] is None or row["outside_distance_m"] <= TOLERANCE_M, where
