"""Work on the event loop (api.deps.in_session with `on_loop`): a long computation it needs is done in a worker
thread (`gis.db.offload`), so that it stalls no other request."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from sqlalchemy.util.concurrency import greenlet_spawn

import gis.grids.locate
from gis.db import offload
from tests.conftest import auth, make_client, report_incident


def _in_a_loop_thread() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_offload_runs_in_a_worker_thread_only_for_work_on_the_event_loop() -> None:
    def work() -> tuple[int, bool, int]:
        ident, on_loop = offload(lambda: (threading.get_ident(), _in_a_loop_thread()))
        return ident, on_loop, threading.get_ident()

    async def main() -> tuple[int, bool, int]:
        return await greenlet_spawn(work)

    worker, worker_on_loop, caller = asyncio.run(main())
    assert worker != caller and not worker_on_loop
    # Called outside the event loop's greenlets (a worker thread, the CLI): right here.
    assert offload(threading.get_ident) == threading.get_ident()


def test_a_report_outside_the_town_builds_the_grid_index_off_the_loop(scratch_db_url: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[bool] = []

    class Watched(gis.grids.locate.GridIndex):
        def __init__(self, *args: Any) -> None:
            built.append(_in_a_loop_thread())
            super().__init__(*args)

    monkeypatch.setattr(gis.grids.locate, "GridIndex", Watched)
    monkeypatch.setattr(gis.grids.locate._INDEXES, "_kept", type(gis.grids.locate._INDEXES._kept)())
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with engine.connect() as c:   # the easternmost vertex of the group grids; 100 m east of it is outside
        lon, lat = c.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT (ST_DumpPoints(geom)).geom AS p FROM grid "
            "WHERE level = 4 AND valid_to IS NULL) s ORDER BY ST_X(p) DESC LIMIT 1")).one()
    engine.dispose()
    with make_client(scratch_db_url, None) as client:
        client.headers.update(auth("grid_staff"))
        answer = report_incident(client, lon + 100 / 93_000, lat)
    assert answer.status_code == 201, answer.text
    assert answer.json()["flagged"] and answer.json()["outside_distance_m"] > 50
    assert built == [False]   # built once, in a worker thread, not on the event loop
