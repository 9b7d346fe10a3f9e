"""Large imports rebuild indexes and foreign keys at the end: same schema after, nothing lost on failure."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import shapely
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from gis.incidents import batch
from tests.conftest import schema_of


def schema(conn) -> list[tuple]:
    return schema_of(conn, batch.BULK_TABLES)


def counts(conn) -> tuple[int, int, int]:
    return conn.execute(text(
        "SELECT (SELECT count(*) FROM incident), (SELECT count(*) FROM incident_event), "
        "(SELECT count(*) FROM incident_assignee)")).one()


@pytest.fixture()
def bulk_db(scratch_db_url, monkeypatch):
    # The scratch town holds 5,000 incidents: a 6,000-row file is "at least as many as the table holds".
    monkeypatch.setattr(batch, "BULK_MIN_ROWS", 1_000)
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def town_rows(engine, n: int, seed: int) -> pd.DataFrame:
    with engine.connect() as c:
        wkb = c.execute(text("SELECT ST_AsBinary(ST_Union(geom)) FROM grid WHERE level = 4 AND valid_to IS NULL")
                        ).scalar_one()
    town = shapely.from_wkb(bytes(wkb))
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = town.bounds
    pts = []
    while len(pts) < n:
        cand = shapely.points(rng.uniform(x0, x1, 4 * n), rng.uniform(y0, y1, 4 * n))
        pts.extend(cand[shapely.contains(town, cand)][: n - len(pts)])
    return pd.DataFrame({
        "external_id": [f"bulk-{seed}-{i}" for i in range(n)],
        "category": rng.choice(["dispute", "environment", "safety_hazard"], n),
        "dispute_kind": "",
        "description": "批量导入测试",
        "occurred_at": "2024-03-01T08:00:00+08:00",
        "lon": [p.x for p in pts], "lat": [p.y for p in pts],
    }).assign(dispute_kind=lambda f: np.where(f["category"] == "dispute", "neighbour", ""))


def test_bulk_import_stores_everything_and_leaves_the_same_indexes_and_keys(bulk_db, caplog):
    frame = town_rows(bulk_db, 6_000, seed=1)
    with bulk_db.connect() as c:
        before_schema, before = schema(c), counts(c)
    assert any(kind == "constraint" and "FOREIGN KEY" in d for kind, _, d in before_schema)
    with caplog.at_level(logging.INFO, logger="wangge.incidents"), Session(bulk_db) as session:
        report = batch.import_incidents(session, frame, source="bulk-test")
        session.commit()
    assert "bulk_rebuild" in caplog.text, caplog.text
    assert report.created == 6_000 and not report.failed
    with bulk_db.connect() as c:
        assert schema(c) == before_schema
        after = counts(c)
        assert after[0] == before[0] + 6_000 and after[1] == before[1] + 6_000 and after[2] > before[2]
        # Every new row reachable through the rebuilt indexes (an index scan, not the heap).
        c.execute(text("SET enable_seqscan = off"))
        by_index = c.execute(text("SELECT count(*) FROM incident WHERE external_id LIKE 'bulk-1-%' "
                                  "AND occurred_at = '2024-03-01T00:00:00Z'")).scalar_one()
        in_town = c.execute(text(
            "SELECT count(*) FROM incident i JOIN grid g ON g.code = i.group_code AND g.valid_to IS NULL "
            "WHERE i.external_id LIKE 'bulk-1-%' AND ST_Intersects(g.geom, i.geom)")).scalar_one()
    assert by_index == 6_000 and in_town == 6_000


def test_a_failing_bulk_import_leaves_rows_indexes_and_keys_untouched(bulk_db, monkeypatch):
    frame = town_rows(bulk_db, 6_000, seed=2)
    with bulk_db.connect() as c:
        before_schema, before = schema(c), counts(c)

    def broken_route(*args, **kwargs):
        raise RuntimeError("routing failed half way")

    monkeypatch.setattr(batch, "_route", broken_route)
    with Session(bulk_db) as session, pytest.raises(RuntimeError):
        batch.import_incidents(session, frame, source="bulk-test")
    with bulk_db.connect() as c:
        assert schema(c) == before_schema
        assert counts(c) == before
