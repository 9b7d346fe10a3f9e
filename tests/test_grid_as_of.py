"""The grids as they were: `as_of` on the grid vector tiles (GET /tiles/grids/{z}/{x}/{y}.pbf), after a real
publish (two touching group grids merged: B retired, A grown over it). Checked against a plain SQL query on
the grid periods, not against the tile code."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyogrio
import shapely
from shapely.geometry import MultiPolygon, shape
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis import clock
from gis.context import Context
from gis.db import transaction
from gis.planning.publish import GridChange, publish
from tests.test_planning_publish import _grid, busiest_village, touching_pair
from tests.test_tiles import decode, tile_of

Z = 14
BEIJING = dt.timezone(dt.timedelta(hours=8))


def _tile(client: Any, x: int, y: int, **params: Any) -> Any:
    return client.get(f"/tiles/grids/{Z}/{x}/{y}.pbf", params=params)


def _features(response: Any) -> dict[str, Any]:
    """code -> the feature's polygon (tile units) of a grid tile answer."""
    if response.status_code == 204:
        return {}
    assert response.status_code == 200, response.text
    return {f["properties"]["code"]: shape(f["geometry"]) for f in decode(response.content)["grids"]["features"]}


def _sql_codes(engine: Any, x: int, y: int, at: dt.datetime, grow_m: float) -> set[str]:
    """Codes of the versions valid at `at` (by their period alone) whose polygon meets the tile grown by
    `grow_m` metres (Web Mercator): negative -> the ones surely in the tile, positive -> every possible one."""
    with engine.connect() as c:
        return set(c.execute(text(
            "SELECT code FROM grid WHERE valid_from <= :t AND :t < coalesce(valid_to, 'infinity') AND level <= 4 "
            "AND ST_Intersects(ST_Transform(geom, 3857), ST_Expand(ST_TileEnvelope(:z, :x, :y), :d))"),
            {"t": at, "z": Z, "x": x, "y": y, "d": grow_m}).scalars())


def _sql_village(engine: Any, village: str, at: dt.datetime) -> set[str]:
    with engine.connect() as c:
        return set(c.execute(text(
            "SELECT code FROM grid WHERE valid_from <= :t AND :t < coalesce(valid_to, 'infinity') "
            "AND parent_code = :v"), {"t": at, "v": village}).scalars())


def _exported(monkeypatch: Any, url: Any, out: Path, *args: str) -> Any:
    """`wangge grids export OUT --level 4 ARGS` on the database at `url`: (exit code, output)."""
    from typer.testing import CliRunner

    from gis import settings as settings_mod
    from gis.cli import app

    monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
    settings_mod.get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["grids", "export", str(out), "--level", "4", *args])
    finally:
        settings_mod.get_settings.cache_clear()
    return result


def test_grid_tiles_as_of_show_the_grids_before_a_publish(scratch_client: Any, scratch_db_url: Any,
                                                          monkeypatch: Any, tmp_path: Path) -> None:
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with transaction(engine) as session:
        village, groups = busiest_village(session)
        a, b = touching_pair(session, groups)
        ga, gb = _grid(session, a), _grid(session, b)
    point = gb["geom"].representative_point()
    x, y = tile_of(point.x, point.y, Z)
    unit = 2 * 20037508.342789244 / 2**Z / 4096          # one tile unit in metres
    before_at = clock.now()
    before = _features(_tile(scratch_client, x, y))
    assert b in before and a in before

    merged = shapely.union(ga["geom"], gb["geom"])
    with transaction(engine) as session:
        ctx = Context(principal=None, method="TEST", path="test_grid_as_of", actor="test:planner")
        done = publish(session, ctx, [
            GridChange(a, 4, ga["name"], village, MultiPolygon([p for p in getattr(merged, "geoms", [merged])])),
            GridChange(b, 4, gb["name"], village, None),
        ], effective_at=None, base={a: ga["id"], b: gb["id"]}, name="合并测试")

    now_answer = _tile(scratch_client, x, y)
    now = _features(now_answer)
    assert b not in now and a in now
    assert now[a].area > before[a].area          # A took B's part of the tile
    then_answer = _tile(scratch_client, x, y, as_of=before_at.isoformat())
    then = _features(then_answer)
    assert set(then) == set(before)
    assert then[a].equals_exact(before[a], 0) and then[b].equals_exact(before[b], 0)
    # The publish's own instant belongs to the new versions ([valid_from, valid_to)).
    assert set(_features(_tile(scratch_client, x, y, as_of=done.effective_at.isoformat()))) == set(now)
    # Independently: the periods say which codes lie in the tile at each instant (edge ones either way).
    for got, at in ((then, before_at), (now, done.effective_at)):
        sure, possible = _sql_codes(engine, x, y, at, -unit), _sql_codes(engine, x, y, at, 70 * unit)
        assert sure <= set(got) <= possible, (sure - set(got), set(got) - possible)

    # The cache key covers the instant: a past tile's ETag never answers for today's, nor the reverse.
    assert then_answer.headers["etag"] != now_answer.headers["etag"]
    again = scratch_client.get(f"/tiles/grids/{Z}/{x}/{y}.pbf", headers={"If-None-Match": then_answer.headers["etag"]})
    assert again.status_code == 200 and b not in _features(again)
    same = scratch_client.get(f"/tiles/grids/{Z}/{x}/{y}.pbf", params={"as_of": before_at.isoformat()},
                              headers={"If-None-Match": then_answer.headers["etag"]})
    assert same.status_code == 304
    # The same instant written in another offset is the same tile.
    local = before_at.astimezone(dt.timezone(dt.timedelta(hours=8))).isoformat()
    assert _tile(scratch_client, x, y, as_of=local).headers["etag"] == then_answer.headers["etag"]
    # An instant over an hour past may be kept a day (it does not change); today's and the last hour's (a
    # scheduled publish applied late could still reach into it) are revalidated every time.
    assert now_answer.headers["cache-control"] == then_answer.headers["cache-control"] == "private, no-cache"
    long_ago = before_at - dt.timedelta(hours=2)
    old = _tile(scratch_client, x, y, as_of=long_ago.isoformat())
    assert old.headers["cache-control"] == "private, max-age=86400"
    got = set(_features(old))
    assert _sql_codes(engine, x, y, long_ago, -unit) <= got <= _sql_codes(engine, x, y, long_ago, 70 * unit)

    # The grids' GeoPackage export (wangge grids export) takes the instant too: read back with pyogrio.
    for name, at, args in (("then", before_at, ["--as-of", before_at.astimezone(BEIJING).isoformat()]),
                           ("now", done.effective_at, [])):
        out = tmp_path / f"{name}.gpkg"
        result = _exported(monkeypatch, scratch_db_url, out, *args)
        assert result.exit_code == 0, result.output
        frame = pyogrio.read_dataframe(out)
        codes = set(frame.loc[frame["parent_code"] == village, "code"])
        assert codes == _sql_village(engine, village, at)
        assert (b in codes) == (name == "then")
        grown = shapely.area(frame.loc[frame["code"] == a, "geometry"].iloc[0])
        assert (grown > ga["geom"].area * 1.0001) == (name == "now")
    bad = _exported(monkeypatch, scratch_db_url, tmp_path / "bad.gpkg", "--as-of", "2026-12-06T08:00:00")
    assert bad.exit_code == 2 and "--as-of" in bad.output and not (tmp_path / "bad.gpkg").exists()
    engine.dispose()


def test_grid_tile_as_of_needs_a_time_zone(client: Any) -> None:
    bad = client.get("/tiles/grids/14/13000/6000.pbf", params={"as_of": "2026-12-06T08:00:00"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["query", "as_of"]
    assert "time zone" in bad.json()["errors"][0]["msg"]
    junk = client.get("/tiles/grids/14/13000/6000.pbf", params={"as_of": "yesterday"})
    assert junk.status_code == 422 and junk.json()["errors"][0]["loc"] == ["query", "as_of"]
