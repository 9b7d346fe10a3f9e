"""A tile request's fixed cost (issue 13): the planner settings, the layer's data version and the tile go to
PostgreSQL in one message (`gis.db.script_rows`), and a grid or incident tile's message also ends the request's
transaction; tiny tiles are sent without gzip. What the shortcut must not change is checked here: parameters
still quoted safely, the settings applied to the tile's plan and local to its transaction, the ETag still the
data version's, a revoked token refused on its very next tile.
"""

from __future__ import annotations

import gzip
from typing import Any

import mapbox_vector_tile
from psycopg.pq import TransactionStatus
from sqlalchemy import text

from api.tiles import GZIP_MIN_BYTES
from gis.db import make_sessionmaker, script_rows
from tests.conftest import auth, make_client, report_incident


def _status(session: Any) -> TransactionStatus:
    return session.connection().connection.driver_connection.info.transaction_status  # type: ignore[no-any-return]


def test_script_rows_one_message_in_one_transaction(engine: Any) -> None:
    with make_sessionmaker(engine)() as session:
        out = script_rows(session, [
            "SELECT set_config('work_mem', '7MB', true)",
            "SELECT current_setting('work_mem') AS mem, CAST(:n AS int) AS n, CAST(:s AS text) AS s, 'a%b' AS pct",
        ], {"n": 5, "s": "o'brien; DROP TABLE incident; --"})
        # The second statement was planned after the first ran; values come back as sent, quotes and all.
        assert out[1] == [{"mem": "7MB", "n": 5, "s": "o'brien; DROP TABLE incident; --", "pct": "a%b"}]
        assert _status(session) == TransactionStatus.INTRANS   # BEGIN went with it; the transaction stays
        session.rollback()
        # SET LOCAL-like: the setting ended with its transaction.
        assert session.execute(text("SHOW work_mem")).scalar_one() != "7MB"


def test_script_rows_on_a_connection_is_rolled_back_by_it(engine: Any) -> None:
    with engine.connect() as conn:
        assert script_rows(conn, ["SELECT set_config('work_mem', '7MB', true) AS w"], {}) == [[{"w": "7MB"}]]
        driver = conn.connection.driver_connection
        assert driver.info.transaction_status == TransactionStatus.INTRANS
        conn.rollback()   # SQLAlchemy knows of the transaction begun in the message
        assert driver.info.transaction_status == TransactionStatus.IDLE


def test_script_rows_commit_ends_the_transaction_and_the_session_commit_sends_nothing(engine: Any) -> None:
    with make_sessionmaker(engine)() as session:
        before = session.execute(text("SELECT 1")).scalar_one()   # a transaction opened the usual way
        assert before == 1 and _status(session) == TransactionStatus.INTRANS
        out = script_rows(session, ["SELECT txid_current_if_assigned() AS t", "COMMIT"], {})
        assert out == [[{"t": None}]]
        assert _status(session) == TransactionStatus.IDLE
        session.commit()   # psycopg finds nothing open: no error, nothing sent
        assert _status(session) == TransactionStatus.IDLE


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    import math

    n = 2**z
    return (int((lon + 180.0) / 360.0 * n),
            int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n))


def test_tiles_one_message_keeps_etag_gzip_rule_and_revocation(scratch_db_url: Any, accounts: Any) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with engine.connect() as c:
        points = c.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM incident WHERE state <> 'closed'")).all()
    engine.dispose()
    with make_client(scratch_db_url, "admin") as admin:
        # A busy z12 tile is large (gzipped), a single-incident z16 tile tiny (sent as it is).
        from collections import Counter

        big = Counter(_tile_of(x, y, 12) for x, y in points).most_common(1)[0][0]
        tiny = _tile_of(*points[0], 16)
        sizes = {}
        for z, (x, y) in ((12, big), (16, tiny)):
            r = admin.get(f"/tiles/incidents/{z}/{x}/{y}.pbf", headers={"Accept-Encoding": "gzip"})
            assert r.status_code == 200
            sizes[z] = len(r.content)
            assert mapbox_vector_tile.decode(r.content)["incidents"]["features"]
        assert sizes[16] < GZIP_MIN_BYTES <= sizes[12]
        with admin.stream("GET", f"/tiles/incidents/16/{tiny[0]}/{tiny[1]}.pbf",
                          headers={"Accept-Encoding": "gzip"}) as r:
            assert "content-encoding" not in r.headers
        with admin.stream("GET", f"/tiles/incidents/12/{big[0]}/{big[1]}.pbf",
                          headers={"Accept-Encoding": "gzip"}) as r:
            raw = b"".join(r.iter_raw())
            assert r.headers["content-encoding"] == "gzip" and gzip.decompress(raw)

        # The ETag made with the version read in the tile's message equals the one the 304 path reads alone,
        # and moves when a write bumps the version.
        url = f"/tiles/incidents/12/{big[0]}/{big[1]}.pbf"
        tag = admin.get(url).headers["etag"]
        assert admin.get(url, headers={"If-None-Match": tag}).status_code == 304
        grid_tag = admin.get(f"/tiles/grids/12/{big[0]}/{big[1]}.pbf").headers["etag"]
        assert admin.get(f"/tiles/grids/12/{big[0]}/{big[1]}.pbf",
                         headers={"If-None-Match": grid_tag}).status_code == 304
        lon, lat = points[0]
        posted = report_incident(admin, lon, lat)
        assert posted.status_code == 201, posted.text
        assert admin.get(url).headers["etag"] != tag

    # A token revoked between two tiles is refused on the next one (checked with every tile; what the process saw of
    # the token before is only a guess the check must confirm, api.security.Check.within).
    with make_client(scratch_db_url, None) as anon:
        headers = auth("command_center")
        tile = f"/tiles/incidents/12/{big[0]}/{big[1]}.pbf"
        assert anon.get(tile, headers=headers).status_code == 200
        engine = create_engine(scratch_db_url, poolclass=NullPool)
        with engine.begin() as c:
            c.execute(text("UPDATE api_token SET revoked_at = now() WHERE user_id = :u"),
                      {"u": accounts["command_center"]["id"]})
        engine.dispose()
        assert anon.get(tile, headers=headers).status_code == 401
