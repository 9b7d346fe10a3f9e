"""Concurrent duplicates, a busy database: no request waits holding a connection (issue 11, 4).

Served by a live uvicorn with the production pool (5 + 10 connections), as `make serve` runs it:
50 parallel POSTs of one external_id, accepted or refused as outside the town, must answer
201/200 or the same 4xx, store one incident at most, and leave an unrelated request answering in
under a second. A database that stays busy answers 503 with Retry-After, quickly, never 500.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from api.problems import BUSY_DETAIL
from gis.settings import Settings
from tests.browser import serve_app_in_thread
from tests.conftest import WHEN, auth

PARALLEL = 50


def pooled_settings(url, **overrides) -> Settings:
    """Settings with a real connection pool (the tests' default is none)."""
    return Settings(DATABASE_URL=url.render_as_string(hide_password=False), **overrides)


@pytest.fixture
def served(scratch_db_url, accounts):
    """(base URL, engine on the same database) of the real app with a real connection pool."""
    from api.main import create_app

    settings = pooled_settings(scratch_db_url, database_pool_size=5, database_pool_max_overflow=10)
    eng = create_engine(scratch_db_url, poolclass=NullPool)
    with serve_app_in_thread(create_app(settings)) as base:
        yield base, eng
    eng.dispose()


def _points(eng) -> dict:
    with eng.connect() as c:
        inside = c.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM grid "
                "WHERE level = 4 AND valid_to IS NULL ORDER BY code LIMIT 1) q"
            )
        ).one()
        east, mid = c.execute(
            text(
                "SELECT ST_XMax(geom), (ST_YMin(geom) + ST_YMax(geom)) / 2 FROM grid "
                "WHERE level = 1 AND valid_to IS NULL"
            )
        ).one()
    # 0.05° (~4.7 km) east of the town: far beyond the 200 m tolerance.
    return {"inside": (inside[0], inside[1]), "outside": (east + 0.05, mid)}


def _storm(base: str, lon: float, lat: float, external_id: str):
    """PARALLEL posts of one external_id at once, and an unrelated GET issued while they run:
    (answers of the posts, seconds the GET took, its status)."""
    body = {
        "category": "dispute",
        "description": "同一编号并发上报",
        "occurred_at": WHEN,
        "lon": lon,
        "lat": lat,
        "external_id": external_id,
    }
    start = threading.Barrier(PARALLEL + 1)
    limits = httpx.Limits(max_connections=PARALLEL + 5)
    with httpx.Client(
        base_url=base, headers=auth("command_center"), timeout=60, limits=limits
    ) as client:

        def one(_):
            start.wait()
            r = client.post("/incidents", json=body)
            return r.status_code, r.json()

        with ThreadPoolExecutor(PARALLEL) as pool:
            answers = pool.map(one, range(PARALLEL))
            start.wait()
            time.sleep(0.05)  # the posts are in flight
            t0 = time.monotonic()
            other = client.get(
                "/incidents", params={"limit": 1, "category": "environment"}, headers=auth("admin")
            )
            took = time.monotonic() - t0
            answers = list(answers)
    return answers, took, other.status_code


def _stored(eng, external_id: str) -> int:
    with eng.connect() as c:
        return c.execute(
            text("SELECT count(*) FROM incident WHERE external_id = :x"), {"x": external_id}
        ).scalar_one()


def test_fifty_concurrent_posts_of_one_accepted_id_make_one_incident_and_stall_nobody(served):
    base, eng = served
    lon, lat = _points(eng)["inside"]
    answers, took, other = _storm(base, lon, lat, "storm-accepted")
    statuses = sorted(s for s, _ in answers)
    assert statuses.count(201) == 1 and statuses.count(200) == PARALLEL - 1, statuses
    assert len({body["id"] for _, body in answers}) == 1
    assert _stored(eng, "storm-accepted") == 1
    assert other == 200 and took < 1.0, f"an unrelated GET took {took:.2f} s"


def test_fifty_concurrent_posts_of_one_refused_id_are_refused_alike_and_stall_nobody(served):
    base, eng = served
    lon, lat = _points(eng)["outside"]
    answers, took, other = _storm(base, lon, lat, "storm-outside")
    assert {s for s, _ in answers} == {422}, sorted(s for s, _ in answers)
    assert {body["errors"][0]["type"] for _, body in answers} == {"outside_town"}
    assert _stored(eng, "storm-outside") == 0
    assert other == 200 and took < 1.0, f"an unrelated GET took {took:.2f} s"


def test_a_busy_database_answers_503_with_retry_after_quickly(scratch_db_url, accounts):
    """One place (pool of 1): a request stuck behind a row lock keeps it; the next request waits
    its pool timeout and gets 503; the stuck one ends at the lock timeout with 503 too."""
    from api.main import create_app

    settings = pooled_settings(
        scratch_db_url,
        database_pool_size=1,
        database_pool_max_overflow=0,
        database_pool_timeout_s=0.5,
        database_lock_timeout_ms=1500,
    )
    eng = create_engine(scratch_db_url, poolclass=NullPool)
    with eng.connect() as c:
        incident_id = c.execute(
            text("SELECT min(id) FROM incident WHERE state = 'visit'")
        ).scalar_one()
    with (
        serve_app_in_thread(create_app(settings)) as base,
        eng.connect() as holder,
        httpx.Client(base_url=base, headers=auth("admin"), timeout=30) as client,
    ):
        holder.execute(text("SELECT 1 FROM incident WHERE id = :i FOR UPDATE"), {"i": incident_id})
        with ThreadPoolExecutor(1) as pool:
            stuck = pool.submit(
                client.post, f"/incidents/{incident_id}/transitions", json={"action": "advance"}
            )
            time.sleep(0.4)  # the transition holds the one place, waiting for the row lock
            t0 = time.monotonic()
            other = client.get("/incidents", params={"limit": 1})
            took = time.monotonic() - t0
            moved = stuck.result()
        holder.rollback()
        after = client.get("/incidents", params={"limit": 1})
    eng.dispose()
    for r in (other, moved):
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"].isdigit()
        assert r.json()["detail"] == BUSY_DETAIL
    assert took < 2.0, f"the 503 took {took:.2f} s"
    assert after.status_code == 200  # nothing stays stuck
