"""The audit list pages in SQL: oldest first, filters, a bounded count, `next` links that walk every
row once; the export goes through the one writer and is audited."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis import audit
from gis.db import make_sessionmaker
from tests.conftest import audit_rows_from_now, make_client

ACTOR = "pager-test"
ROOT = Path(__file__).resolve().parent.parent


def _fill(url, n: int) -> list[int]:
    """n audit rows of ACTOR (every third one an 'export' of resource 'grid' with its own id)."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as conn:
        ids = conn.execute(
            text(
                "INSERT INTO audit_log (actor, action, resource, resource_ids) "
                "SELECT :actor, CASE WHEN i % 3 = 0 THEN 'export' ELSE 'read' END, 'grid', ARRAY['g' || i] "
                "FROM generate_series(1, :n) AS i RETURNING id"
            ),
            {"actor": ACTOR, "n": n},
        ).scalars().all()
    engine.dispose()
    return sorted(ids)


def _walk(client, url: str | None) -> tuple[list[dict], list[dict]]:
    rows, bodies = [], []
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        bodies.append(body)
        rows += body["items"]
        url = body["next"]
    return rows, bodies


def test_next_links_walk_every_matching_row_once_in_order(scratch_db_url, accounts):
    ids = _fill(scratch_db_url, 230)
    with make_client(scratch_db_url) as admin:
        rows, bodies = _walk(admin, f"/audit?actor={ACTOR}&limit=50")
        assert [r["id"] for r in rows] == ids
        assert len(bodies) == 5 and all(b["total"] == 230 and b["total_exact"] for b in bodies)
        assert [len(b["items"]) for b in bodies] == [50, 50, 50, 50, 30]
        assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
        exports, _ = _walk(admin, f"/audit?actor={ACTOR}&action=export&limit=20")
        assert [r["id"] for r in exports] == ids[2::3]
        one = admin.get("/audit", params={"resource_id": "g7"}).json()
        assert [r["resource_ids"] for r in one["items"]] == [["g7"]] and one["total"] == 1 and one["next"] is None


def test_offset_still_pages_and_after_continues(scratch_db_url, accounts):
    ids = _fill(scratch_db_url, 30)
    with make_client(scratch_db_url) as admin:
        page = admin.get("/audit", params={"actor": ACTOR, "limit": 10, "offset": 10}).json()
        assert [r["id"] for r in page["items"]] == ids[10:20]
        after = admin.get("/audit", params={"actor": ACTOR, "limit": 10, "after": ids[19]}).json()
        assert [r["id"] for r in after["items"]] == ids[20:30] and after["next"] is None
        assert admin.get("/audit", params={"after": 0}).status_code == 422


def test_count_stops_at_its_limit(scratch_db_url, accounts):
    _fill(scratch_db_url, 40)
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with make_sessionmaker(engine)() as session:
        page = audit.list_audit(session, audit.AuditFilters(actor=ACTOR), limit=5, count_up_to=25)
        assert (page.total, page.total_exact, len(page.items)) == (25, False, 5)
        page = audit.list_audit(session, audit.AuditFilters(actor=ACTOR), limit=5, count_up_to=40)
        assert (page.total, page.total_exact) == (40, True)
    engine.dispose()


def test_export_is_written_by_the_one_writer_and_audited(scratch_db_url, accounts):
    ids = _fill(scratch_db_url, 12)
    since = audit_rows_from_now(scratch_db_url)
    with make_client(scratch_db_url) as admin:
        response = admin.get("/audit/export", params={"actor": ACTOR})
        assert response.status_code == 200
        assert response.content == audit.EXPORT.csv_bytes(
            admin.get("/audit", params={"actor": ACTOR, "limit": 100}).json()["items"]
        )
        exported = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
        assert [int(r["id"]) for r in exported] == ids
        assert response.headers["X-Total-Count"] == "12" and "X-Truncated" not in response.headers
        trail = admin.get("/audit", params={"action": "export", "resource": "audit_log", **since}).json()["items"]
        assert trail[-1]["detail"] == {"rows": 12, "format": "csv", "filters": {"actor": ACTOR}}
        assert trail[-1]["method"] == "GET" and trail[-1]["path"] == "/audit/export"


def test_api_and_cli_exports_are_the_same_bytes(scratch_db_url, accounts, tmp_path):
    _fill(scratch_db_url, 25)
    env = {**os.environ, "DATABASE_URL": scratch_db_url.render_as_string(hide_password=False)}
    # Only the exports made here: the copied test database holds other tests' already.
    trail_query = {"action": "export", "resource": "audit_log", **audit_rows_from_now(scratch_db_url)}
    with make_client(scratch_db_url) as admin:
        for suffix in ("csv", "xlsx"):
            api = admin.get("/audit/export", params={"actor": ACTOR, "action": "export", "format": suffix})
            assert api.status_code == 200
            out = tmp_path / f"audit.{suffix}"
            cli = subprocess.run(
                [sys.executable, "-m", "gis.cli", "audit", "export", str(out), "--actor", ACTOR, "--action", "export"],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
            )
            assert cli.returncode == 0, cli.stderr
            assert "8 audit rows" in cli.stdout
            if suffix == "csv":
                assert out.read_bytes() == api.content
            else:
                assert _xlsx_cells(out.read_bytes()) == _xlsx_cells(api.content)
        trail = admin.get("/audit", params=trail_query).json()["items"]
    assert [(r["method"], r["detail"]["format"]) for r in trail] == [
        ("GET", "csv"), ("CLI", "csv"), ("GET", "xlsx"), ("CLI", "xlsx")
    ]
    assert all(r["detail"]["rows"] == 8 for r in trail)


def _xlsx_cells(data: bytes) -> list[tuple]:
    """The cells of the first sheet (a workbook's zip carries its write time, so bytes differ)."""
    from openpyxl import load_workbook

    return [tuple(row) for row in load_workbook(io.BytesIO(data)).active.iter_rows(values_only=True)]
