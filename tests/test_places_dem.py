"""DEM upload through the API (issue 14): a GeoTIFF in any CRS, conditioned as a job the client polls."""

from __future__ import annotations

import time

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import auth


def small_dem_bytes(crs: str = "EPSG:32649", nodata: float | None = -9999.0) -> bytes:
    """A 4.9 km² V-shaped valley (tests/test_hand.py) as GeoTIFF bytes, a no-data corner included."""
    from rasterio.io import MemoryFile

    from tests.test_hand import v_valley

    dem, _, transform, _ = v_valley(rows=600, cols=81, ridge=0.0)
    if nodata is not None:
        dem = dem.copy()
        dem[:3, :3] = nodata
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", dtype="float32", width=dem.shape[1], height=dem.shape[0], count=1,
                      crs=crs, transform=transform, nodata=nodata) as dst:
            dst.write(dem, 1)
        return bytes(mem.read())


def wait_for_job(client, job: dict, timeout_s: float = 180.0) -> dict:
    """Poll GET /flood/dem/jobs/{id} until the job is done or failed; every answer's progress never falls."""
    seen = [job["progress"]]
    deadline = time.monotonic() + timeout_s
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
        r = client.get(f"/flood/dem/jobs/{job['id']}")
        assert r.status_code == 200, r.text
        job = r.json()
        seen.append(job["progress"])
    assert seen == sorted(seen)
    return job


def test_a_dem_uploaded_is_conditioned_as_a_job_and_its_stages_computed(scratch_client, scratch_db_url):
    r = scratch_client.post("/flood/dem", files={"file": ("valley.tif", small_dem_bytes())},
                            data={"name": "上传的地形"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["name"] == "上传的地形" and job["state"] in ("queued", "running", "done")
    job = wait_for_job(scratch_client, job)
    assert job["state"] == "done", job
    result = job["result"]
    assert result["shape"] == [600, 81] and result["drainage_cells"] > 20 and result["stages_m"]

    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with engine.connect() as c:
        dem = c.execute(text("SELECT id, width, height FROM flood_dem WHERE name = '上传的地形'")).one()
        assert (dem.id, dem.height, dem.width) == (result["id"], 600, 81)
        stages = c.execute(text("SELECT count(*) FROM flood_extent WHERE dem_id = :d"), {"d": dem.id}).scalar_one()
        assert stages >= 1
        actions = c.execute(text("SELECT action, resource, detail->>'file' FROM audit_log "
                                 "WHERE resource IN ('dem_job', 'flood_dem') ORDER BY id")).all()
    engine.dispose()
    assert [(a, r) for a, r, _ in actions] == [("upload", "dem_job"), ("import", "flood_dem")]
    assert actions[0][2] == actions[1][2] == "valley.tif"
    # The scenarios list offers the new DEM.
    names = [d["name"] for d in scratch_client.get("/flood/scenarios").json()["dems"]]
    assert "上传的地形" in names


def test_an_upload_that_is_not_a_usable_geotiff_is_422_and_starts_no_job(scratch_client, scratch_db_url):
    not_tiff = scratch_client.post("/flood/dem", files={"file": ("dem.tif", b"ncols 3\nnrows 3\n1 2 3\n")})
    assert not_tiff.status_code == 422
    assert not_tiff.json()["errors"][0]["type"] == "not_a_geotiff"
    no_crs = scratch_client.post("/flood/dem", files={"file": ("dem.tif", small_dem_bytes(crs=None))})
    assert no_crs.status_code == 422
    assert no_crs.json()["errors"][0]["type"] == "no_crs"
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM dem_job")).scalar_one() == 0
    engine.dispose()


def test_only_admin_and_command_center_may_upload_or_poll(scratch_client):
    data = small_dem_bytes()
    for role in ("planner", "emergency", "grid_staff", "supervisor"):
        r = scratch_client.post("/flood/dem", files={"file": ("v.tif", data)}, headers=auth(role))
        assert r.status_code == 403
        assert scratch_client.get("/flood/dem/jobs/1", headers=auth(role)).status_code == 403
    assert scratch_client.get("/flood/dem/jobs/987654", headers=auth("command_center")).status_code == 404


def test_an_oversized_upload_is_413(scratch_db_url, accounts):
    from tests.conftest import make_client

    with make_client(scratch_db_url, max_upload_bytes=10_000) as client:
        r = client.post("/flood/dem", files={"file": ("big.tif", small_dem_bytes() + np.zeros(20_000).tobytes())})
    assert r.status_code == 413


def test_a_job_whose_worker_stopped_is_answered_as_failed_without_a_write(scratch_client, scratch_db_url):
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with engine.begin() as c:
        lost = c.execute(text(
            "INSERT INTO dem_job (state, progress, step, name, file_name, created_at, heartbeat_at) VALUES "
            "('running', 0.5, 'stages', 'lost', 'lost.tif', now() - interval '1 hour', now() - interval '50 minutes') "
            "RETURNING id")).scalar_one()
        alive = c.execute(text(
            "INSERT INTO dem_job (state, progress, step, name, file_name, created_at, heartbeat_at) VALUES "
            "('running', 0.5, 'stages', 'alive', 'alive.tif', now() - interval '1 hour', now()) RETURNING id")
        ).scalar_one()
    job = scratch_client.get(f"/flood/dem/jobs/{lost}").json()
    assert job["state"] == "failed" and job["problems"][0]["type"] == "job_lost"
    assert scratch_client.get(f"/flood/dem/jobs/{alive}").json()["state"] == "running"
    with engine.connect() as c:
        assert c.execute(text("SELECT state FROM dem_job WHERE id = :i"), {"i": lost}).scalar_one() == "running"
    engine.dispose()
