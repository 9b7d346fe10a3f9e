"""Possible duplicates (`incident_near`, migration 0020) keep to the GiST index however stale the statistics.

The intake statement is prepared, and PostgreSQL keeps its generic plan per connection until the incident
table is next analysed. The test makes that happen on purpose: the table emptied and analysed (as a new
town's), a plan made and cached, then 20,000 incidents written without an analyse. Through the function the
search then reads a handful of pages; written inline, as before migration 0020, the cached plan reads the
whole table (the counter-check: the hazard is real, so the first assertion could fail).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg

from gis.incidents.service import _intake_inside_sql

SEARCH = {
    "function": "SELECT count(*) FROM incident_near(ST_SetSRID(ST_MakePoint($1, $2), 4326), $3, $4, $5, $6)",
    "inline": """SELECT count(*) FROM incident o
                 WHERE o.category = $3 AND o.state <> 'closed'
                   AND o.geom && ST_Expand(ST_SetSRID(ST_MakePoint($1, $2), 4326), $5 / 80000.0)
                   AND ST_DWithin(ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography, o.geom::geography, $5)
                   AND abs(extract(epoch FROM o.occurred_at - $4)) <= $6 * 3600""",
}
TYPES = "(float8, float8, text, timestamptz, float8, float8)"


def _pages_read(conn: psycopg.Connection[Any], name: str, args: tuple[Any, ...]) -> tuple[int, int]:
    """(pages the cached plan of `name` touched, rows it counted)."""
    cur = psycopg.ClientCursor(conn)   # the arguments of EXECUTE bound here: a utility statement takes no $n
    plan = cur.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {name}(%s, %s, %s, %s, %s, %s)",
                       args).fetchone()[0][0]["Plan"]   # type: ignore[index]
    count = cur.execute(f"EXECUTE {name}(%s, %s, %s, %s, %s, %s)", args).fetchone()[0]   # type: ignore[index]
    return plan["Shared Hit Blocks"] + plan["Shared Read Blocks"], count


def test_the_duplicate_search_keeps_its_index_when_the_table_outgrows_its_statistics(scratch_db_url: Any) -> None:
    dsn = scratch_db_url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'incident' "
            "AND is_generated = 'NEVER' AND column_name NOT IN ('id', 'external_id', 'geom', 'occurred_at') "
            "ORDER BY ordinal_position")]
        listed = ", ".join(columns)
        conn.execute(f"CREATE TEMP TABLE model AS SELECT {listed}, geom, occurred_at FROM incident "
                     "WHERE state <> 'closed' ORDER BY id LIMIT 1")
        lon, lat, category, at = conn.execute(
            "SELECT ST_X(geom), ST_Y(geom), category, occurred_at FROM model").fetchone()   # type: ignore[misc]
        for (table,) in conn.execute(   # the history's guards refuse a TRUNCATE (a scratch copy: set aside)
                "SELECT DISTINCT tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal").fetchall():
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        conn.execute("TRUNCATE incident CASCADE")
        conn.execute("ANALYZE incident")   # a new town: the statistics say the table is empty
        conn.execute("SET plan_cache_mode = force_generic_plan")   # as a prepared statement ends up
        args = (lon, lat, category, at, 100.0, 72.0)
        for name, sql in SEARCH.items():
            conn.execute(f"PREPARE {name}{TYPES} AS {sql}")
            assert _pages_read(conn, name, args)[1] == 0   # planned and cached while the table is empty

        # 20,000 open incidents of the category, 2 within 100 m and the time window, the rest far off.
        conn.execute(f"""
            INSERT INTO incident ({listed}, geom, occurred_at)
            SELECT {listed},
                   CASE WHEN n <= 2 THEN ST_Translate(geom, 0.0002 * n, 0)
                        ELSE ST_Translate(geom, 0.05 + 0.00001 * n, 0.05) END,
                   occurred_at
            FROM model, generate_series(1, 20000) n""")
        pages = {}
        for name in SEARCH:
            pages[name], found = _pages_read(conn, name, args)
            assert found == 2, name
        table_pages = conn.execute("SELECT pg_relation_size('incident') / current_setting('block_size')::int"
                                   ).fetchone()[0]   # type: ignore[index]
        # The function: index pages, the two rows' heap pages and the catalog reads of planning its query.
        assert pages["function"] < table_pages / 4, (pages, table_pages)
        assert pages["inline"] >= table_pages * 0.9, (pages, table_pages)   # the stale plan read it all


def test_the_intake_statement_finds_duplicates_through_the_function() -> None:
    sql = _intake_inside_sql()
    assert "incident_near(" in sql and "JOIN incident o" not in sql
    assert json.dumps(sql)   # text, no template left unfilled
    assert "{" not in sql.split("duplicates AS", 1)[1].split("audited AS", 1)[0]
