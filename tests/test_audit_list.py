"""The audit list pages in SQL: oldest first, filters, a bounded count, `next` links that walk every
row once; the export goes through the one writer and is audited."""

from __future__ import annotations

import csv
import io

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis import audit
from gis.db import make_sessionmaker
from tests.conftest import make_client

ACTOR = "pager-test"


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
    with make_client(scratch_db_url) as admin:
        response = admin.get("/audit/export", params={"actor": ACTOR})
        assert response.status_code == 200
        assert response.content == audit.EXPORT.csv_bytes(
            admin.get("/audit", params={"actor": ACTOR, "limit": 100}).json()["items"]
        )
        exported = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
        assert [int(r["id"]) for r in exported] == ids
        assert response.headers["X-Total-Count"] == "12" and "X-Truncated" not in response.headers
        trail = admin.get("/audit", params={"action": "export", "resource": "audit_log"}).json()["items"]
        assert trail[-1]["detail"] == {"rows": 12, "format": "csv", "filters": {"actor": ACTOR}}
        assert trail[-1]["method"] == "GET" and trail[-1]["path"] == "/audit/export"
