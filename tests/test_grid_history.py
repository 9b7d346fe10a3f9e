"""History: GET /grids?as_of= returns the grids as they were, GET /grids/{code}/timeline one grid's
versions and publishes, GET /grids/publishes who published what and when — after a real publish."""

from __future__ import annotations

import datetime as dt

import shapely
from shapely.geometry import shape
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis import clock
from gis.context import Context
from gis.db import transaction
from gis.planning.publish import GridChange, publish
from tests.test_planning_publish import _grid, busiest_village, touching_pair


def _codes_and_shapes(client, village: str, **params) -> dict[str, object]:
    r = client.get("/grids", params={"parent_code": village, **params})
    assert r.status_code == 200, r.text
    return {f["properties"]["code"]: shape(f["geometry"]) for f in r.json()["features"]}


def test_as_of_timeline_and_publish_list_after_a_merge(scratch_client, scratch_db_url, accounts):
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with transaction(engine) as session:
        village, groups = busiest_village(session)
        a, b = touching_pair(session, groups)
        ga, gb = _grid(session, a), _grid(session, b)
    before_at = clock.now()
    before = _codes_and_shapes(scratch_client, village)
    assert b in before
    merged = shapely.union(ga["geom"], gb["geom"])
    with transaction(engine) as session:
        ctx = Context(principal=None, method="TEST", path="test_grid_history", actor="test:planner")
        done = publish(session, ctx, [
            GridChange(a, 4, ga["name"], village, shapely.geometry.MultiPolygon(
                [p for p in getattr(merged, "geoms", [merged])])),
            GridChange(b, 4, gb["name"], village, None),
        ], effective_at=None, base={a: ga["id"], b: gb["id"]}, name="合并测试")
    engine.dispose()

    now = _codes_and_shapes(scratch_client, village)
    assert b not in now and set(now) == set(before) - {b}
    assert now[a].equals(merged) or abs(now[a].area - merged.area) < 1e-12
    # The instant before the publish: exactly what the list said then, B included, A's old outline.
    then = _codes_and_shapes(scratch_client, village, as_of=before_at.isoformat())
    assert set(then) == set(before)
    assert all(then[c].equals_exact(before[c], 1e-9) for c in before)
    # The publish's own instant belongs to the new versions ([valid_from, valid_to)).
    at = _codes_and_shapes(scratch_client, village, as_of=done.effective_at.isoformat())
    assert set(at) == set(now)
    bad = scratch_client.get("/grids", params={"as_of": "2026-12-06T08:00:00"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", "as_of"]

    t = scratch_client.get(f"/grids/{b}/timeline")
    assert t.status_code == 200, t.text
    body = t.json()
    assert len(body["versions"]) == 1 and body["versions"][0]["valid_to"] is not None
    assert dt.datetime.fromisoformat(body["versions"][0]["valid_to"]) == done.effective_at
    assert [p["id"] for p in body["publishes"]] == [done.publish_id]
    ta = scratch_client.get(f"/grids/{a}/timeline").json()
    assert [v["valid_to"] is None for v in ta["versions"]] == [False, True]
    assert ta["versions"][1]["area_m2"] > ta["versions"][0]["area_m2"]
    assert scratch_client.get("/grids/411324105888888/timeline").status_code == 404

    listed = scratch_client.get("/grids/publishes")
    assert listed.status_code == 200, listed.text
    row = next(p for p in listed.json()["items"] if p["id"] == done.publish_id)
    assert row["status"] == "applied" and row["created_by_name"] == "test:planner" and row["name"] == "合并测试"
    assert row["changes"] == 2
    assert scratch_client.get("/grids/publishes", params={"status": "pending"}).json()["total"] == 0
