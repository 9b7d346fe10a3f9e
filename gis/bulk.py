"""Fast bulk writes with PostgreSQL COPY inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.orm import Session


def ewkt(geom, srid: int = 4326) -> str:
    """A shapely geometry as EWKT, the text form COPY accepts for a geometry column."""
    return f"SRID={srid};{geom.wkt}"


def copy_rows(session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> int:
    """COPY rows into `table`; table and column names come from our code, never from clients."""
    raw = session.connection().connection.driver_connection
    n = 0
    cols = ", ".join(columns)
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n
