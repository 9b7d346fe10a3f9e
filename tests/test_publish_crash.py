"""A publishing process killed with kill -9 midway through a large plan leaves the database exactly
as before (a digest of the grid, incident, staff, account and publish tables); publishing again succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parent.parent
APP_NAME = "wangge_publish_crash"

# Every group grid of the town redrawn (renamed; a new version each): every open incident placed again.
PUBLISHER = f"""
import sys
import shapely
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from gis.context import Context
from gis.db import transaction
from gis.planning.publish import GridChange, publish

engine = create_engine(sys.argv[1], poolclass=NullPool, connect_args={{"application_name": "{APP_NAME}"}})
with transaction(engine) as session:
    rows = session.execute(text("SELECT id, code, name, level, parent_code, ST_AsBinary(geom) AS wkb FROM grid "
                                "WHERE valid_to IS NULL AND level = 4 ORDER BY code")).all()
    changes = [GridChange(r.code, r.level, r.name + sys.argv[2], r.parent_code, shapely.from_wkb(bytes(r.wkb)))
               for r in rows]
    result = publish(session, Context(principal=None, method="TEST", actor="test:crash"), changes,
                     effective_at=None, base={{r.code: r.id for r in rows}}, name="crash test")
    print("published", result.publish_id, len(result.replaced), flush=True)
"""

DIGEST_SQL = {
    table: f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
    for table in ("grid", "incident", "incident_assignee", "staff", "app_user", "api_token", "grid_publish")
}


def _digest(engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {t: conn.execute(text(sql)).scalar_one() for t, sql in DIGEST_SQL.items()}


def _publisher(url, suffix: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", PUBLISHER, url.render_as_string(hide_password=False), suffix],
                            cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _writing(engine) -> bool:
    """The publisher's transaction has written (it holds a transaction id) and is still running."""
    with engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = :a AND backend_xid IS NOT NULL "
            "AND state = 'active'"), {"a": APP_NAME}).scalar_one())


def _gone(engine, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    with engine.connect() as conn:
        while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :a"),
                           {"a": APP_NAME}).scalar_one():
            assert time.monotonic() < deadline, "the killed publisher's backend never ended"
            time.sleep(0.1)


def test_kill_9_midway_leaves_the_database_as_before(scratch_db_url):
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    before = _digest(engine)
    proc = _publisher(scratch_db_url, "（重绘）")
    try:
        deadline = time.monotonic() + 120
        while not _writing(engine):
            assert proc.poll() is None, f"the publisher ended before it could be killed: {proc.communicate()}"
            assert time.monotonic() < deadline, "the publisher never started writing"
            time.sleep(0.02)
        time.sleep(0.2)   # well inside the publish: versions closed and written, incidents being placed
        assert proc.poll() is None and _writing(engine), "the publish finished before the kill: plan too small"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _gone(engine)
    assert _digest(engine) == before

    again = _publisher(scratch_db_url, "（重绘）")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert out.startswith("published")
    with engine.connect() as conn:
        groups = conn.execute(text("SELECT count(*) FROM grid WHERE valid_to IS NULL AND level = 4")).scalar_one()
        renamed = conn.execute(text("SELECT count(*) FROM grid WHERE valid_to IS NULL AND level = 4 "
                                    "AND name LIKE '%（重绘）'")).scalar_one()
        status = conn.execute(text("SELECT status FROM grid_publish")).scalars().all()
    assert renamed == groups > 0 and status == ["applied"]
    assert _digest(engine) != before
    engine.dispose()
