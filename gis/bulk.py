"""Fast bulk writes with PostgreSQL COPY inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sqlalchemy.orm import Session


def ewkt(geom: Any, srid: int = 4326) -> str:
    """A shapely geometry as EWKT, the text form COPY accepts for a geometry column."""
    return f"SRID={srid};{geom.wkt}"


def copy_rows(session: Session, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """COPY rows into `table`; table and column names come from our code, never from clients."""
    raw = cast(Any, session.connection().connection.driver_connection)   # a psycopg connection
    n = 0
    cols = ", ".join(columns)
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


# --- columnar binary COPY ---------------------------------------------------------------------------
# PostgreSQL's binary COPY format (manual, "COPY", File Formats → Binary Format): a signature and
# two zero int32s, then per row an int16 field count and per field an int32 length (-1 = NULL) and
# the value in the type's binary "send" form (network byte order), then an int16 -1. Rows are made
# here from whole columns by one compiled pass, without a Python object per value, and the server
# parses no text, timestamps or hex for them.

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_EPOCH_2000_US = 946_684_800_000_000          # 2000-01-01 UTC in microseconds since 1970


class Vocabulary:
    """Strings (or None) encoded once, for columns that pick among them (`BinaryColumns.choice`)."""

    def __init__(self, values: Sequence[str | None]):
        encoded = [b"" if v is None else v.encode() for v in values]
        self.lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        self.data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self.is_none = np.fromiter((v is None for v in values), dtype=bool, count=len(encoded))
        self.has_none = bool(self.is_none.any())


class BinaryColumns:
    """Columns of `n` rows, added in the table's column order, encoded by `payload()` as one binary
    COPY stream. Each column keeps its values once as bytes ("entries") and, per row, the entry it
    holds or -1 for NULL, so repeated values (codes, categories, constants) are stored once."""

    def __init__(self, n: int):
        self.n = n
        self.names: list[str] = []
        self._data: list[np.ndarray] = []        # uint8, the column's entries back to back
        self._lengths: list[np.ndarray] = []     # int64, the length of each entry
        self._rows: list[np.ndarray] = []        # int64, the entry of each row, -1 = NULL

    def _add(self, name: str, data: np.ndarray, lengths: np.ndarray, rows: np.ndarray) -> BinaryColumns:
        self.names.append(name)
        self._data.append(data)
        self._lengths.append(lengths)
        self._rows.append(rows)
        return self

    def _fixed(self, name: str, values: ArrayLike, dtype: str, null: np.ndarray | None = None) -> BinaryColumns:
        raw = np.ascontiguousarray(np.asarray(values).astype(dtype)).view(np.uint8)
        rows = np.arange(self.n, dtype=np.int64)
        if null is not None:
            rows[null] = -1
        return self._add(name, raw, np.full(self.n, np.dtype(dtype).itemsize, dtype=np.int64), rows)

    def int8(self, name: str, values: ArrayLike) -> BinaryColumns:
        return self._fixed(name, values, ">i8")

    def float8(self, name: str, values: ArrayLike) -> BinaryColumns:
        """NaN is NULL."""
        floats = np.asarray(values, dtype=float)
        return self._fixed(name, floats, ">f8", null=np.isnan(floats))

    def boolean(self, name: str, values: ArrayLike) -> BinaryColumns:
        return self._fixed(name, np.asarray(values, dtype=bool), "u1")

    def timestamptz(self, name: str, micros: ArrayLike) -> BinaryColumns:
        """Microseconds since 1970-01-01 UTC."""
        return self._fixed(name, np.asarray(micros, dtype=np.int64) - _EPOCH_2000_US, ">i8")

    def text(self, name: str, values: ArrayLike) -> BinaryColumns:
        """str or None per row; a column of few distinct values keeps each once."""
        texts = np.asarray(values, dtype=object)
        if len(pd.unique(texts[:1000])) < 100:
            codes, uniques = pd.factorize(texts, use_na_sentinel=True)
            if len(uniques) * 4 <= self.n:
                return self.choice(name, Vocabulary(list(uniques)), codes)
        return self.choice(name, Vocabulary(texts.tolist()), np.arange(self.n, dtype=np.int64))

    def choice(self, name: str, vocabulary: Vocabulary, codes: ArrayLike) -> BinaryColumns:
        """Row i holds vocabulary[codes[i]]; a code of -1 (or a None in the vocabulary) is NULL."""
        rows = np.asarray(codes, dtype=np.int64)
        if vocabulary.has_none:
            rows = np.where((rows >= 0) & vocabulary.is_none[np.maximum(rows, 0)], -1, rows)
        return self._add(name, vocabulary.data, vocabulary.lengths, rows)

    def constant(self, name: str, value: str | None) -> BinaryColumns:
        return self.choice(name, Vocabulary([value]), np.zeros(self.n, dtype=np.int64))

    def points(self, name: str, xs: ArrayLike, ys: ArrayLike, srid: int) -> BinaryColumns:
        """Points as little-endian EWKB with SRID, which PostGIS's geometry receive function reads."""
        wkb = np.empty((self.n, 25), dtype=np.uint8)
        wkb[:, 0] = 1
        wkb[:, 1:5] = np.frombuffer((0x20000001).to_bytes(4, "little"), dtype=np.uint8)
        wkb[:, 5:9] = np.frombuffer(int(srid).to_bytes(4, "little"), dtype=np.uint8)
        xy = np.empty((self.n, 2), dtype="<f8")
        xy[:, 0], xy[:, 1] = xs, ys
        wkb[:, 9:] = xy.view(np.uint8).reshape(self.n, 16)
        return self._add(name, wkb.reshape(-1), np.full(self.n, 25, dtype=np.int64),
                         np.arange(self.n, dtype=np.int64))

    def payload(self) -> bytes:
        """The whole binary COPY stream: signature, rows, trailer."""
        from gis.bulk_kernels import encode_rows

        bases = np.cumsum([0] + [len(lengths) for lengths in self._lengths])
        starts = np.zeros(bases[-1] + 1, dtype=np.int64)
        if self._lengths:
            np.cumsum(np.concatenate(self._lengths), out=starts[1:])
        entries = np.empty((self.n, len(self._rows)), dtype=np.int64)
        for j, rows in enumerate(self._rows):
            entries[:, j] = np.where(rows >= 0, rows + bases[j], -1)
        data = np.concatenate(self._data) if self._data else np.zeros(0, dtype=np.uint8)
        stream: np.ndarray = encode_rows(np.frombuffer(_SIGNATURE, dtype=np.uint8), data, starts, entries)
        return stream.tobytes()


def copy_payload(cur: Any, table: str, names: Sequence[str], payload: bytes) -> None:
    """COPY an encoded `BinaryColumns.payload()` into `table`'s columns `names` (from our code, never
    from clients); encoding and sending are apart so that they can run on different threads."""
    with cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(payload)
