"""Binary COPY from columns: what PostgreSQL stores is exactly what was given, NULLs included."""

from __future__ import annotations

import datetime as dt

import numpy as np
from sqlalchemy import text

from gis.bulk import BinaryColumns, Vocabulary, copy_payload


def test_every_column_kind_round_trips_through_postgresql(session):
    raw = session.connection().connection.driver_connection
    with raw.cursor() as cur:
        cur.execute("""CREATE TEMP TABLE bin_rt (i bigint, t text, c varchar(15), k varchar(5), b boolean,
                       f double precision, at timestamptz, g geometry(Point, 4326), z text)""")
    n = 2_000
    rng = np.random.default_rng(9)
    texts = np.array([None if i % 7 == 0 else f"第{i}条 \t\"引号\"\n\\反斜杠 {i}" for i in range(n)], dtype=object)
    kinds = np.array(["land", None, "wages"], dtype=object)[rng.integers(0, 3, n)]
    codes = ["410105101001001", "410105101001002", None]
    picks = rng.integers(-1, 3, n)
    floats = rng.normal(size=n)
    floats[::5] = np.nan
    micros = rng.integers(-2 * 10**15, 2 * 10**15, n)       # 1906 .. 2033, microsecond precision
    xs, ys = rng.uniform(-180, 180, n), rng.uniform(-90, 90, n)
    cols = (BinaryColumns(n).int8("i", np.arange(n) - 5).text("t", texts).choice("c", Vocabulary(codes), picks)
            .text("k", kinds).boolean("b", np.arange(n) % 2 == 0).float8("f", floats)
            .timestamptz("at", micros).points("g", xs, ys, 4326).constant("z", "常量"))
    with raw.cursor() as cur:
        copy_payload(cur, "bin_rt", cols.names, cols.payload())
    rows = session.execute(
        text("SELECT i, t, c, k, b, f, at, ST_X(g), ST_Y(g), ST_SRID(g), z FROM bin_rt ORDER BY i")
    ).all()
    assert len(rows) == n
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    for j, (i, t, c, k, b, f, at, x, y, srid, z) in enumerate(rows):
        assert i == j - 5
        assert t == texts[j]
        assert c == (codes[picks[j]] if picks[j] >= 0 else None)
        assert k == kinds[j]
        assert b == (j % 2 == 0)
        assert (f is None) if np.isnan(floats[j]) else f == floats[j]
        assert at == epoch + dt.timedelta(microseconds=int(micros[j]))
        assert (x, y, srid) == (xs[j], ys[j], 4326)
        assert z == "常量"


def test_an_empty_set_of_rows_is_a_valid_copy(session):
    raw = session.connection().connection.driver_connection
    with raw.cursor() as cur:
        cur.execute("CREATE TEMP TABLE bin_empty (i bigint, t text)")
        empty = BinaryColumns(0).int8("i", []).text("t", np.array([], dtype=object))
        copy_payload(cur, "bin_empty", empty.names, empty.payload())
    assert session.execute(text("SELECT count(*) FROM bin_empty")).scalar_one() == 0
