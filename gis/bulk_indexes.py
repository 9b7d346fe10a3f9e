"""A large import's index drop and rebuild: tables loaded the way PostgreSQL's manual advises (indexes and
keys dropped, rows written, everything re-created before the commit). Used by the incident batch import
(gis.incidents.batch) and the register import (gis.register.history)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

# A load in bulk mode brings at least this many rows, and at least as many as the table holds.
BULK_MIN_ROWS = 50_000


def worth_rebuilding(adding: int, holding: int, min_rows: int = BULK_MIN_ROWS) -> bool:
    """Whether a load of `adding` rows into a table of `holding` rows should drop and rebuild its indexes:
    the rebuild costs time in proportion to the whole table, maintaining the indexes row by row several
    times the load's own."""
    return adding >= min_rows and adding >= holding


def drop_indexes(cur: Any, tables: Sequence[str]) -> list[str]:
    """For a large load, drop the indexes and keys of `tables`; the statements that re-create them are
    returned for `rebuild_indexes`.

    PostgreSQL's own advice for populating a table ("Populating a Database" in its manual): building
    an index over loaded rows sorts once, maintaining it row by row costs several times more, and a
    foreign key added afterwards is checked by one join instead of one lookup per row. Used when the
    file brings at least BULK_MIN_ROWS incidents and at least as many as the table already holds (the
    rebuild costs time in proportion to the whole table: `worth_rebuilding`). Everything goes: secondary
    indexes, primary keys and unique constraints of the tables, and every foreign key from or to them
    (also those of tables the load does not write, e.g. attachments or staff). The tables are locked (ACCESS EXCLUSIVE)
    first, so no other transaction reads or writes them until the import commits, and it all
    happens inside the import's transaction: the definitions are read from the catalogue, dropped,
    and re-created before the commit — a failure anywhere leaves them exactly as they were, and the
    re-created primary keys and unique constraints check the loaded rows once more.
    """
    cur.execute("LOCK TABLE " + ", ".join(tables) + " IN ACCESS EXCLUSIVE MODE")
    cur.execute(
        """SELECT 1 AS drop_order, 3 AS create_order,
                  format('ALTER TABLE %%s DROP CONSTRAINT %%I', c.conrelid::regclass, c.conname),
                  format('ALTER TABLE %%s ADD CONSTRAINT %%I %%s', c.conrelid::regclass, c.conname,
                         pg_get_constraintdef(c.oid))
           FROM pg_constraint c
           WHERE c.contype = 'f' AND (c.conrelid = ANY(%(t)s::regclass[]) OR c.confrelid = ANY(%(t)s::regclass[]))
           UNION ALL
           SELECT 2, 1, format('ALTER TABLE %%s DROP CONSTRAINT %%I', c.conrelid::regclass, c.conname),
                  format('ALTER TABLE %%s ADD CONSTRAINT %%I %%s', c.conrelid::regclass, c.conname,
                         pg_get_constraintdef(c.oid))
           FROM pg_constraint c
           WHERE c.contype IN ('p', 'u') AND c.conrelid = ANY(%(t)s::regclass[])
           UNION ALL
           SELECT 3, 2, format('DROP INDEX %%s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)
           FROM pg_index i
           WHERE i.indrelid = ANY(%(t)s::regclass[])
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)""",
        {"t": list(tables)},
    )
    statements = cur.fetchall()
    for _, _, drop, _ in sorted(statements, key=lambda r: (r[0], r[2])):
        cur.execute(drop)
    return [create for _, _, _, create in sorted(statements, key=lambda r: (r[1], r[3]))]


def rebuild_indexes(cur: Any, statements: list[str], tables: Sequence[str],
                    timings: dict[str, float] | None = None) -> None:
    """Keys and unique constraints, then the other indexes, then the foreign keys; then ANALYZE."""
    cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
    for create in statements + [f"ANALYZE {table}" for table in tables]:
        t0 = time.perf_counter()
        cur.execute(create)
        if timings is not None:
            timings[create] = time.perf_counter() - t0
