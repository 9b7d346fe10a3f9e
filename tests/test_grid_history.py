"""History: GET /grids?as_of= returns the grids as they were, GET /grids/{code}/timeline one grid's
versions and publishes, GET /grids/publishes who published what and when — after a real publish."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import shapely
from shapely.geometry import shape
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis import clock
from gis.context import Context
from gis.db import transaction
from gis.planning.publish import GridChange, publish
from tests.conftest import make_client
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


def test_the_app_and_the_cli_apply_due_publishes(scratch_db_url, accounts):
    """A publish dated two seconds ahead is applied by the app's background task at startup once its
    instant has passed; another by `wangge grids apply-due`."""
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    ctx = Context(principal=None, method="TEST", path="test_grid_history", actor="test:planner")
    ids = []
    with transaction(engine) as session:
        village, groups = busiest_village(session)
        for code, when in ((groups[0], 2), (groups[1], 2)):
            g = _grid(session, code)
            ids.append(publish(session, ctx, [GridChange(code, 4, g["name"] + "（定时）", village, g["geom"])],
                               effective_at=clock.now() + dt.timedelta(seconds=when), base=None).publish_id)
        g = _grid(session, groups[2])
        withdrawn = publish(session, ctx, [GridChange(groups[2], 4, g["name"] + "（撤回）", village, g["geom"])],
                            effective_at=clock.now() + dt.timedelta(seconds=2), base=None).publish_id
    with make_client(scratch_db_url, "planner") as client:   # startup runs one round now: nothing is due yet
        time.sleep(0.5)
        assert client.get("/grids/publishes", params={"status": "pending"}).json()["total"] == 3
        cancelled = client.post(f"/grids/publishes/{withdrawn}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        again = client.post(f"/grids/publishes/{withdrawn}/cancel")
        assert again.status_code == 409 and again.json()["publish_status"] == "cancelled"
        assert client.post("/grids/publishes/999999/cancel").status_code == 404
    time.sleep(2.5)
    cli = subprocess.run([sys.executable, "-m", "gis.cli", "grids", "apply-due"],
                         cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "DATABASE_URL": scratch_db_url.render_as_string(hide_password=False)})
    assert cli.returncode == 0, cli.stderr
    assert "2 applied, 0 failed" in cli.stdout
    with transaction(engine) as session:
        rows = session.execute(text("SELECT status, effective_at FROM grid_publish WHERE id = ANY(:i)"),
                               {"i": ids}).all()
        assert [r.status for r in rows] == ["applied", "applied"]
        starts = session.execute(text("SELECT valid_from FROM grid WHERE valid_to IS NULL AND code = ANY(:c)"),
                                 {"c": groups[:2]}).scalars().all()
        assert sorted(starts) == sorted(r.effective_at for r in rows)
        assert session.execute(text("SELECT status FROM grid_publish WHERE id = :i"),
                               {"i": withdrawn}).scalar_one() == "cancelled"
        assert not session.execute(text("SELECT 1 FROM grid WHERE code = :c AND name LIKE '%（撤回）'"),
                                   {"c": groups[2]}).first()
    engine.dispose()


def test_the_background_task_applies_a_due_publish(scratch_db_url, accounts):
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    ctx = Context(principal=None, method="TEST", path="test_grid_history", actor="test:planner")
    with transaction(engine) as session:
        village, groups = busiest_village(session)
        g = _grid(session, groups[0])
        pid = publish(session, ctx, [GridChange(groups[0], 4, g["name"] + "（后台）", village, g["geom"])],
                      effective_at=clock.now() + dt.timedelta(seconds=1), base=None).publish_id
    engine.dispose()
    time.sleep(1.5)
    with make_client(scratch_db_url) as client:
        deadline = time.monotonic() + 30
        while True:
            items = client.get("/grids/publishes").json()["items"]
            status = next(p["status"] for p in items if p["id"] == pid)
            if status != "pending" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == "applied"
        names = {f["properties"]["code"]: f["properties"]["name"]
                 for f in client.get("/grids", params={"parent_code": village}).json()["features"]}
        assert names[groups[0]].endswith("（后台）")
