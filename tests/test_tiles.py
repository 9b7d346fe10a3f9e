"""Vector tiles (/tiles/{layer}/{z}/{x}/{y}.pbf): contents against an oracle, caching, gzip, bad addresses.

Tiles are decoded with a real MVT decoder (mapbox-vector-tile) and compared with what the stored rows
say, worked out here in Python (Web Mercator tile maths, the README's access rules): every incident in
a point tile's (buffered) box appears exactly once; at low zoom the aggregate blocks of the tiles over
the town add up to the number of visible incidents and households (nothing dropped, nothing counted
twice); grid levels follow the zoom.
"""

from __future__ import annotations

import datetime as dt
import gzip
import math
from collections import Counter
from typing import Any

import mapbox_vector_tile
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from api.compression import gzip_bytes
from tests.conftest import database_copy, make_client, report_incident

HALF = 20037508.342789244   # half the Web Mercator world, metres
R = 6378137.0
BUFFER = 64 / 4096


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y


def mercator(lon: float, lat: float) -> tuple[float, float]:
    return R * math.radians(lon), R * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))


def in_tile(lon: float, lat: float, z: int, x: int, y: int, buffer: float = BUFFER, slack: float = 0.0) -> bool:
    """Whether (lon, lat) lies in tile z/x/y grown by `buffer` (a fraction of its side) + `slack` units."""
    size = 2 * HALF / 2**z
    x0, y1 = -HALF + x * size, HALF - y * size
    mx, my = mercator(lon, lat)
    b = size * buffer + slack * size / 4096
    return x0 - b <= mx <= x0 + size + b and y1 - size - b <= my <= y1 + b


def boxed(rows: list[dict[str, Any]], z: int, x: int, y: int) -> tuple[dict[int, Any], set[int]]:
    """(rows surely in the buffered tile, ids on its edge): a point is snapped to the tile's 4096-unit grid
    before the buffer clips it, so one within a unit of the buffer's edge may fall either way."""
    sure = {r["id"]: r for r in rows if in_tile(r["lon"], r["lat"], z, x, y, slack=-1)}
    edge = {r["id"] for r in rows if in_tile(r["lon"], r["lat"], z, x, y, slack=1)} - set(sure)
    return sure, edge


def same_ids(got: list[int], sure: dict[int, Any], edge: set[int]) -> None:
    """Each id at most once; every sure one there; nothing but sure and edge ones."""
    assert len(got) == len(set(got))
    assert set(sure) <= set(got) <= set(sure) | edge


def decode(content: bytes) -> dict[str, Any]:
    return mapbox_vector_tile.decode(content)  # type: ignore[no-any-return]


def features(response: Any, layer: str) -> list[dict[str, Any]]:
    """The features of `layer` in a tile answer (204: none)."""
    if response.status_code == 204:
        assert response.content == b""
        return []
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    tile = decode(response.content)
    assert set(tile) <= {layer}
    return tile[layer]["features"] if tile else []


@pytest.fixture(scope="module")
def town(test_db_url: Any, accounts: dict[str, dict[str, Any]]) -> Any:
    """A private copy of the sample town (the tests report incidents) and its rows, read directly."""
    with database_copy(test_db_url, "tiles") as url:
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as c:
            incidents = [dict(r) for r in c.execute(text(
                "SELECT id, category, state, stage_deadline, ST_X(geom) AS lon, ST_Y(geom) AS lat, group_code, "
                "village_code, on_boundary, outside_distance_m, created_by FROM incident")).mappings()]
            households = [dict(r) for r in c.execute(text(
                "SELECT id, head_name, phone, address, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM household"
            )).mappings()]
            grids = [dict(r) for r in c.execute(text(
                "SELECT code, level, ST_XMin(geom) AS x0, ST_YMin(geom) AS y0, ST_XMax(geom) AS x1, "
                "ST_YMax(geom) AS y1 FROM grid WHERE valid_to IS NULL")).mappings()]
        engine.dispose()
        yield {"url": url, "incidents": incidents, "households": households, "grids": grids}


@pytest.fixture(scope="module")
def admin(town: Any) -> Any:
    with make_client(town["url"], "admin") as c:
        yield c


def town_tiles(rows: list[dict[str, Any]], z: int) -> list[tuple[int, int]]:
    """Every tile at zoom z over the rows' box."""
    xs0, ys1 = tile_of(min(r["lon"] for r in rows), min(r["lat"] for r in rows), z)
    xs1, ys0 = tile_of(max(r["lon"] for r in rows), max(r["lat"] for r in rows), z)
    return [(x, y) for x in range(xs0, xs1 + 1) for y in range(ys0, ys1 + 1)]


def busiest_tile(rows: list[dict[str, Any]], z: int) -> tuple[int, int]:
    return Counter(tile_of(r["lon"], r["lat"], z) for r in rows).most_common(1)[0][0]


def is_open(r: dict[str, Any]) -> bool:
    return bool(r["state"] != "closed")


def is_overdue(r: dict[str, Any], now: dt.datetime) -> bool:
    return r["stage_deadline"] is not None and r["stage_deadline"] < now


def is_flagged(r: dict[str, Any]) -> bool:
    return bool(r["on_boundary"] or r["outside_distance_m"] is not None or r["village_code"] is None
                or r["group_code"] == r["village_code"])


# --- incidents ------------------------------------------------------------------------------------------

def test_incident_point_tile_holds_every_open_incident_in_its_box_once(town: Any, admin: Any) -> None:
    now = dt.datetime.now(dt.UTC)
    open_rows = [r for r in town["incidents"] if is_open(r)]
    x, y = busiest_tile(open_rows, 14)
    feats = features(admin.get(f"/tiles/incidents/14/{x}/{y}.pbf"), "incidents")
    ids = [f["properties"]["id"] for f in feats]
    expected, edge = boxed(open_rows, 14, x, y)
    assert len(expected) >= 5
    same_ids(ids, expected, edge)            # each exactly once, none missing, no closed one
    by_id = {r["id"]: r for r in open_rows}
    for f in feats:
        r, p = by_id[f["properties"]["id"]], f["properties"]
        assert set(p) == {"id", "category", "state", "overdue", "flagged"}
        assert (p["category"], p["state"]) == (r["category"], r["state"])
        assert p["overdue"] == is_overdue(r, now) and p["flagged"] == is_flagged(r)
        assert f["geometry"]["type"] == "Point"


def test_incident_filters_apply_inside_the_tile(town: Any, admin: Any) -> None:
    rows = town["incidents"]
    x, y = busiest_tile(rows, 14)
    sure, edge = boxed(rows, 14, x, y)

    def ids(**params: str) -> list[int]:
        return [f["properties"]["id"] for f in features(admin.get(f"/tiles/incidents/14/{x}/{y}.pbf", params=params),
                                                         "incidents")]

    def where(keep: Any) -> dict[int, Any]:
        return {i: r for i, r in sure.items() if keep(r)}

    same_ids(ids(open="false"), sure, edge)
    closed = where(lambda r: r["state"] == "closed")
    assert closed
    same_ids(ids(state="closed"), closed, edge)
    category = Counter(r["category"] for r in sure.values()).most_common(1)[0][0]
    same_ids(ids(open="false", category=category), where(lambda r: r["category"] == category), edge)
    got = set(ids(open="false", category=category))
    assert all(r["category"] == category for r in rows if r["id"] in got)


@pytest.mark.parametrize("z", [8, 10, 12, 13])
def test_incident_aggregates_count_every_visible_incident_once(town: Any, admin: Any, z: int) -> None:
    now = dt.datetime.now(dt.UTC)
    for params, rows in (({}, [r for r in town["incidents"] if is_open(r)]),
                         ({"open": "false"}, town["incidents"])):
        total = Counter[str]()
        blocks = 0
        for x, y in town_tiles(town["incidents"], z):
            for f in features(admin.get(f"/tiles/incidents/{z}/{x}/{y}.pbf", params=params), "incidents"):
                p = f["properties"]
                assert set(p) == {"count", "open", "overdue"} and p["count"] >= 1
                assert 0 <= f["geometry"]["coordinates"][0] <= 4096 and 0 <= f["geometry"]["coordinates"][1] <= 4096
                total.update(p)
                blocks += 1
        assert total["count"] == len(rows)
        assert total["open"] == sum(is_open(r) for r in rows)
        assert total["overdue"] == sum(is_overdue(r, now) for r in rows)
        assert blocks < len(rows)        # aggregated, not one feature per incident


# --- grids ----------------------------------------------------------------------------------------------

def test_grid_levels_follow_the_zoom(town: Any, admin: Any) -> None:
    grids = town["grids"]
    seen: dict[int, set[int]] = {}
    for z in (8, 10, 12):
        levels: set[int] = set()
        for x, y in town_tiles([{"lon": g["x0"], "lat": g["y0"]} for g in grids]
                               + [{"lon": g["x1"], "lat": g["y1"]} for g in grids], z):
            for f in features(admin.get(f"/tiles/grids/{z}/{x}/{y}.pbf"), "grids"):
                assert set(f["properties"]) == {"code", "name", "level"}
                assert f["geometry"]["type"] in ("Polygon", "MultiPolygon")
                levels.add(f["properties"]["level"])
        seen[z] = levels
    assert seen == {8: {1, 2}, 10: {1, 2, 3}, 12: {1, 2, 3, 4}}


def test_group_grid_tile_holds_every_grid_that_reaches_it(town: Any, admin: Any) -> None:
    groups = [g for g in town["grids"] if g["level"] == 4]
    x, y = busiest_tile([{"lon": (g["x0"] + g["x1"]) / 2, "lat": (g["y0"] + g["y1"]) / 2} for g in groups], 14)
    codes = [f["properties"]["code"] for f in features(admin.get(f"/tiles/grids/14/{x}/{y}.pbf"), "grids")]
    assert len(codes) == len(set(codes))
    # A grid whose box lies inside the tile must be there; one whose box misses the buffered tile must not.
    inside = {g["code"] for g in groups
              if in_tile(g["x0"], g["y0"], 14, x, y, 0) and in_tile(g["x1"], g["y1"], 14, x, y, 0)}
    far = {g["code"] for g in groups if not any(
        in_tile(lon, lat, 14, x, y, 0.5) for lon in (g["x0"], g["x1"], (g["x0"] + g["x1"]) / 2)
        for lat in (g["y0"], g["y1"], (g["y0"] + g["y1"]) / 2))}
    assert inside <= set(codes)
    assert not far & set(codes)
    assert sum(1 for c in codes if len(c) == 15 and not c.endswith("000")) >= 3


# --- households -----------------------------------------------------------------------------------------

def test_household_points_carry_personal_fields_for_admin_and_are_audited(town: Any, admin: Any) -> None:
    x, y = busiest_tile(town["households"], 15)
    expected, edge = boxed(town["households"], 15, x, y)
    by_id = {r["id"]: r for r in town["households"]}
    engine = create_engine(town["url"], poolclass=NullPool)
    with engine.connect() as c:
        before = c.execute(text("SELECT coalesce(max(id), 0) FROM audit_log")).scalar_one()
    r = admin.get(f"/tiles/households/15/{x}/{y}.pbf")
    feats = features(r, "households")
    assert r.headers["cache-control"] == "private, no-store"
    same_ids([f["properties"]["id"] for f in feats], expected, edge)
    for f in feats:
        p, truth = f["properties"], by_id[f["properties"]["id"]]
        assert (p["head_name"], p.get("phone"), p["address"]) == (truth["head_name"], truth["phone"], truth["address"])
        assert len(p["group_code"]) == 15
    with engine.connect() as c:
        rows = c.execute(text("SELECT action, resource, resource_ids, detail FROM audit_log WHERE id > :b"),
                         {"b": before}).mappings().all()
    engine.dispose()
    assert len(rows) == 1
    assert (rows[0]["action"], rows[0]["resource"]) == ("read_personal", "household")
    assert sorted(int(i) for i in rows[0]["resource_ids"]) == sorted(f["properties"]["id"] for f in feats)


@pytest.mark.parametrize("z", [10, 13, 14])
def test_household_aggregates_count_every_household_once(town: Any, admin: Any, z: int) -> None:
    total = 0
    for x, y in town_tiles(town["households"], z):
        for f in features(admin.get(f"/tiles/households/{z}/{x}/{y}.pbf"), "households"):
            assert set(f["properties"]) == {"count"}
            total += f["properties"]["count"]
    assert total == len(town["households"])


# --- caching and compression ----------------------------------------------------------------------------

def test_etag_304_and_invalidation_by_an_intake(town: Any, admin: Any) -> None:
    rows = [r for r in town["incidents"] if is_open(r)]
    x, y = busiest_tile(rows, 14)
    url = f"/tiles/incidents/14/{x}/{y}.pbf"
    first = admin.get(url)
    tag = first.headers["etag"]
    assert tag.startswith('W/"') and first.headers["cache-control"] == "private, no-cache"
    again = admin.get(url, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    grid_url = f"/tiles/grids/14/{x}/{y}.pbf"
    grid_tag = admin.get(grid_url).headers["etag"]
    # Other filters are another tile.
    assert admin.get(url, params={"open": "false"}, headers={"If-None-Match": tag}).status_code == 200
    # A new incident in the tile: the old copy is stale, the new tile holds it.
    lon, lat = next((r["lon"], r["lat"]) for r in rows if tile_of(r["lon"], r["lat"], 14) == (x, y))
    made = report_incident(admin, lon + 1e-5, lat + 1e-5)
    assert made.status_code == 201, made.text
    fresh = admin.get(url, headers={"If-None-Match": tag})
    assert fresh.status_code == 200 and fresh.headers["etag"] != tag
    assert made.json()["id"] in {f["properties"]["id"] for f in features(fresh, "incidents")}
    # The grids did not change: their copy is still current.
    assert admin.get(grid_url, headers={"If-None-Match": grid_tag}).status_code == 304


def test_304_does_not_build_the_tile(town: Any, admin: Any) -> None:
    """A revalidated household tile is not read again: no audit row for a 304."""
    x, y = busiest_tile(town["households"], 15)
    url = f"/tiles/households/15/{x}/{y}.pbf"
    tag = admin.get(url).headers["etag"]
    engine = create_engine(town["url"], poolclass=NullPool)
    with engine.connect() as c:
        before = c.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
        assert admin.get(url, headers={"If-None-Match": tag}).status_code == 304
        after = c.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
    engine.dispose()
    assert after == before


def _raw(client: Any, url: str, encoding: str) -> tuple[Any, bytes]:
    with client.stream("GET", url, headers={"Accept-Encoding": encoding}) as r:
        return r, b"".join(r.iter_raw())


def test_gzip_is_set_once_and_decodes_as_mvt(town: Any, admin: Any) -> None:
    x, y = busiest_tile(town["grids"] and [{"lon": g["x0"], "lat": g["y0"]} for g in town["grids"]], 12)
    url = f"/tiles/grids/12/{x}/{y}.pbf"
    plain_r, plain = _raw(admin, url, "identity")
    assert "content-encoding" not in plain_r.headers
    zipped_r, zipped = _raw(admin, url, "gzip, deflate")
    assert zipped_r.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in zipped_r.headers["vary"].lower()
    assert zipped[:2] == b"\x1f\x8b" and len(zipped) < len(plain)
    once = gzip.decompress(zipped)
    assert once == plain                      # compressed once: one gunzip gives the tile
    assert zipped == gzip_bytes(plain)        # by ISA-L (api.compression), not zlib
    assert decode(once)["grids"]["features"]
    assert zipped_r.headers["etag"] == plain_r.headers["etag"]


def test_empty_tile_is_204(admin: Any) -> None:
    r = admin.get("/tiles/incidents/14/0/0.pbf")
    assert r.status_code == 204 and r.content == b"" and r.headers["etag"]


# --- refusals -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "field"), [
    ("/tiles/grids/23/0/0.pbf", "z"),
    ("/tiles/grids/-1/0/0.pbf", "z"),
    ("/tiles/grids/3/8/0.pbf", "x"),
    ("/tiles/incidents/3/0/8.pbf", "y"),
    ("/tiles/households/0/0/1.pbf", "y"),
    ("/tiles/grids/3/a/0.pbf", "x"),
    ("/tiles/grids/3/0/-1.pbf", "y"),
])
def test_bad_tile_address_is_refused_naming_the_field(admin: Any, path: str, field: str) -> None:
    r = admin.get(path)
    assert r.status_code == 422, r.text
    body = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert any(e["loc"][-1] == field for e in body["errors"]), body


def test_unknown_layer_is_404(admin: Any) -> None:
    assert admin.get("/tiles/roads/3/0/0.pbf").status_code == 404


def test_tiles_need_a_login_and_the_layer_permission(town: Any) -> None:
    with make_client(town["url"], None) as anonymous, make_client(town["url"], "planner") as planner:
        for layer in ("grids", "incidents", "households"):
            assert anonymous.get(f"/tiles/{layer}/0/0/0.pbf").status_code == 401
        assert planner.get("/tiles/grids/0/0/0.pbf").status_code == 200
        assert planner.get("/tiles/incidents/0/0/0.pbf").status_code == 403
        assert planner.get("/tiles/households/0/0/0.pbf").status_code == 403
        assert [layer["name"] for layer in planner.get("/tiles/layers").json()["layers"]] == ["grids"]
        assert anonymous.get("/tiles/layers").status_code == 401


def test_layers_metadata(admin: Any) -> None:
    body = admin.get("/tiles/layers").json()
    by_name = {layer["name"]: layer for layer in body["layers"]}
    assert set(by_name) == {"grids", "incidents", "households"}
    assert by_name["incidents"]["url"] == "/tiles/incidents/{z}/{x}/{y}.pbf"
    assert by_name["incidents"]["point_minzoom"] == 14 and by_name["households"]["point_minzoom"] == 15
    assert "count" in by_name["incidents"]["aggregate_fields"]
    assert by_name["grids"]["level_minzoom"]["4"] > by_name["grids"]["level_minzoom"]["3"]
    assert body["extent"] == 4096
