"""Places from a town's own files: shelters, roads, rivers and natural villages (issue 14)."""

from __future__ import annotations

import json
import zipfile

import geopandas as gpd
import pytest
import shapely
from shapely.geometry import LineString, Point, Polygon
from sqlalchemy import text

from gis.context import Context
from gis.errors import InputError
from gis.register.places import import_place_file

CTX = Context.cli("test places")


def _village(session, offset: int = 0):
    """(code, name, an inside point) of a current administrative village."""
    row = session.execute(text(
        "SELECT code, name, ST_X(ST_PointOnSurface(geom)) AS x, ST_Y(ST_PointOnSurface(geom)) AS y FROM grid "
        "WHERE level = 3 AND valid_to IS NULL ORDER BY code OFFSET :o LIMIT 1"), {"o": offset}).one()
    return row.code, row.name, row.x, row.y


def _write(frame: gpd.GeoDataFrame, path, crs="EPSG:4326", driver=None):
    frame = frame.set_crs("EPSG:4326").to_crs(crs)
    frame.to_file(path, driver=driver) if driver else frame.to_file(path)
    return path


def _count(session, table: str) -> int:
    return session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_shelters_from_a_projected_geopackage_then_a_rerun_changes_nothing(session, tmp_path):
    _, _, x, y = _village(session)
    frame = gpd.GeoDataFrame(
        {"场所名称": ["测试小学", "测试村部", "测试广场"], "类型": ["学校", "村委会", None],
         "可容纳人数": [300, 120, 80]},
        geometry=[Point(x, y), Point(x + 0.001, y), Point(x, y + 0.001)])
    path = _write(frame, tmp_path / "shelters.gpkg", "EPSG:32649", "GPKG")
    before = _count(session, "shelter")
    version = session.execute(text("SELECT version FROM flood_data_version")).scalar_one()

    report = import_place_file(session, CTX, "shelters", path)
    assert (report.rows, report.inserted, report.updated, report.unchanged) == (3, 3, 0, 0)
    assert _count(session, "shelter") == before + 3
    stored = session.execute(text(
        "SELECT kind, capacity, ST_X(geom), ST_Y(geom) FROM shelter WHERE name = '测试小学'")).one()
    assert stored[:2] == ("学校", 300)
    assert stored[2] == pytest.approx(x, abs=1e-6) and stored[3] == pytest.approx(y, abs=1e-6)
    assert session.execute(text("SELECT kind FROM shelter WHERE name = '测试广场'")).scalar_one() == "避难场所"
    # The flood finder's stored answers are stale now (the shelter table bumps the data version).
    assert session.execute(text("SELECT version FROM flood_data_version")).scalar_one() > version

    again = import_place_file(session, CTX, "shelters", path)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
    assert _count(session, "shelter") == before + 3

    frame.loc[1, "可容纳人数"] = 150
    changed = import_place_file(session, CTX, "shelters", _write(frame, tmp_path / "v2.geojson"))
    assert (changed.inserted, changed.updated, changed.unchanged) == (0, 1, 2)
    assert session.execute(text("SELECT capacity FROM shelter WHERE name = '测试村部'")).scalar_one() == 150
    audit = session.execute(text(
        "SELECT detail FROM audit_log WHERE action = 'import' AND resource = 'shelter' ORDER BY id DESC LIMIT 1")
    ).scalar_one()
    assert audit["file"] == "v2.geojson" and audit["rows"] == 3 and audit["updated"] == 1


def test_bad_features_are_named_by_row_and_column_and_nothing_is_written(session, tmp_path):
    _, _, x, y = _village(session)
    frame = gpd.GeoDataFrame(
        {"名称": ["好", "坏容量", "是线", "在外", "好"], "容量": ["50", "很多", "30", "30", "60"]},
        geometry=[Point(x, y), Point(x, y), LineString([(x, y), (x + 0.01, y)]), Point(100.0, 30.0),
                  Point(x + 0.002, y)])
    path = _write(frame, tmp_path / "bad.geojson")
    before = _count(session, "shelter")
    with pytest.raises(InputError) as err:
        import_place_file(session, CTX, "shelters", path)
    locs = {tuple(p.loc): p.type for p in err.value.problems}
    assert locs == {
        ("file", "bad.geojson", 2, "容量"): "bad_capacity",
        ("file", "bad.geojson", 3, "geometry"): "wrong_geometry",
        ("file", "bad.geojson", 4, "geometry"): "outside_town",
        ("file", "bad.geojson", 5, "名称"): "duplicate",  # the same name and kind as row 1
    }
    assert _count(session, "shelter") == before

    # The good rows in, the others reported.
    report = import_place_file(session, CTX, "shelters", path, mode="good_rows")
    assert (report.inserted, report.skipped) == (1, 4)
    assert {tuple(p.loc) for p in report.problems} == set(locs)
    assert _count(session, "shelter") == before + 1


def test_a_dry_run_reports_and_writes_nothing(session, tmp_path):
    _, _, x, y = _village(session)
    frame = gpd.GeoDataFrame({"name": ["演练点"], "capacity": [40]}, geometry=[Point(x, y)])
    path = _write(frame, tmp_path / "dry.geojson")
    before = _count(session, "shelter")
    audits = _count(session, "audit_log")
    report = import_place_file(session, CTX, "shelters", path, dry_run=True)
    assert report.inserted == 1 and report.dry_run
    assert _count(session, "shelter") == before and _count(session, "audit_log") == audits


def test_roads_from_a_zipped_shapefile_replace_the_stored_network(session, tmp_path):
    _, _, x, y = _village(session)
    lines = [LineString([(x, y), (x + 0.01, y)]), LineString([(x, y), (x, y + 0.01), (x + 0.005, y + 0.012)])]
    frame = gpd.GeoDataFrame({"NAME": ["东西路", "南北路"], "fclass": ["县道", "村道"]}, geometry=lines)
    shp = tmp_path / "shp"
    shp.mkdir()
    _write(frame, shp / "roads.shp", "EPSG:4546")
    archive = tmp_path / "roads.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in shp.iterdir():
            zf.write(part, part.name)
    assert _count(session, "road") > 2
    report = import_place_file(session, CTX, "roads", archive, replace=True)
    assert report.inserted == 2 and report.deleted > 0
    rows = session.execute(text("SELECT name, road_class, ST_AsBinary(geom) FROM road ORDER BY name")).all()
    assert [(r[0], r[1]) for r in rows] == [("东西路", "县道"), ("南北路", "村道")]
    for (_, _, wkb), line in zip(rows, lines, strict=True):
        assert shapely.from_wkb(bytes(wkb)).hausdorff_distance(line) < 1e-6  # back from CGCS2000 GK metres
    again = import_place_file(session, CTX, "roads", archive, replace=True)
    assert (again.inserted, again.unchanged, again.deleted) == (0, 2, 0)


def test_rivers_in_say_which_dem_was_conditioned_with_other_rivers(session, tmp_path):
    _, _, x, y = _village(session)
    frame = gpd.GeoDataFrame({"河流名称": ["新河"]}, geometry=[LineString([(x, y), (x + 0.02, y + 0.01)])])
    report = import_place_file(session, CTX, "rivers", _write(frame, tmp_path / "rivers.geojson"))
    assert report.inserted == 1
    assert "sample" in report.terrain_stale  # the sample DEM burned the rivers stored at its import


def test_natural_villages_by_village_name_code_or_location(session, tmp_path):
    code, name, x, y = _village(session)
    other_code, _, ox, oy = _village(session, 1)
    frame = gpd.GeoDataFrame(
        {"自然村": ["甲庄", "乙庄", "丙庄", "丁庄"], "行政村": [name, None, None, "没有这个村"],
         "村代码": [None, other_code, None, None]},
        geometry=[Point(x, y), Point(ox, oy), Point(x + 0.0005, y), Point(x, y)])
    path = _write(frame, tmp_path / "nv.geojson")
    with pytest.raises(InputError) as err:
        import_place_file(session, CTX, "natural_villages", path)
    assert [(tuple(p.loc), p.type) for p in err.value.problems] == [
        (("file", "nv.geojson", 4, "行政村"), "unknown_grid")]
    report = import_place_file(session, CTX, "natural_villages", path, mode="good_rows")
    assert report.inserted == 3
    stored = dict(session.execute(text(
        "SELECT name, village_code FROM natural_village WHERE name IN ('甲庄', '乙庄', '丙庄')")).all())
    assert stored == {"甲庄": code, "乙庄": other_code, "丙庄": code}


def test_a_file_that_is_not_what_its_name_says_is_refused(session, tmp_path):
    path = tmp_path / "shelters.gpkg"
    path.write_bytes(b"name,capacity\nx,1\n")
    with pytest.raises(InputError) as err:
        import_place_file(session, CTX, "shelters", path)
    assert err.value.problems[0].type == "unreadable_file"
    roads = tmp_path / "roads.geojson"
    roads.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "x"},
         "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}]}))
    with pytest.raises(InputError) as err:
        import_place_file(session, CTX, "roads", roads)
    assert [(tuple(p.loc), p.type) for p in err.value.problems] == [
        (("file", "roads.geojson", 1, "geometry"), "wrong_geometry")]


def test_the_api_imports_for_the_roles_allowed(scratch_client, clients, tmp_path):
    from tests.conftest import auth

    town = scratch_client.get("/grids", params={"level": 3, "limit": 1}).json()["features"][0]
    x, y = shapely.geometry.shape(town["geometry"]).representative_point().coords[0]
    body = gpd.GeoDataFrame({"name": ["接口避难所"], "capacity": [90]},
                            geometry=[Polygon([(x, y), (x + 1e-4, y), (x, y + 1e-4)])]).set_crs("EPSG:4326")
    data = body.to_json().encode()
    r = scratch_client.post("/places/shelters/import", files={"file": ("s.geojson", data)},
                            data={"mode": "good_rows"})
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == 1 and r.json()["problems"] == []
    again = scratch_client.post("/places/shelters/import", files={"file": ("s.geojson", data)})
    assert again.json()["unchanged"] == 1
    r = scratch_client.post("/places/shelters/import", files={"file": ("s.txt", data)})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "file"]
    nameless = body.drop(columns=["name"]).to_json().encode()
    bad = scratch_client.post("/places/natural-villages/import", files={"file": ("nv.geojson", nameless)})
    assert bad.status_code == 422
    assert bad.json()["errors"] == [{"loc": ["file", "nv.geojson", 1, "名称"], "type": "missing_column",
                                     "msg": bad.json()["errors"][0]["msg"]}]
    for role in ("planner", "emergency", "grid_staff"):
        refused = scratch_client.post("/places/shelters/import", files={"file": ("s.geojson", data)},
                                      headers=auth(role))
        assert refused.status_code == 403


def test_shelters_from_a_gbk_csv_in_gcj02_and_swapped_coordinates_refused(session, tmp_path):
    from gis.crs import wgs84_to_gcj02
    from tests.register_files import csv_bytes

    _, _, x, y = _village(session)
    gx, gy = wgs84_to_gcj02(x, y)
    rows = [["高德避难所", "学校", 200, f"{gx:.7f}", f"{gy:.7f}"],
            ["反了的", "学校", 100, f"{y:.7f}", f"{x:.7f}"],
            ["没坐标", "学校", 100, "", ""]]
    path = tmp_path / "避难场所.csv"
    path.write_bytes(csv_bytes(["名称", "类型", "容纳人数", "经度", "纬度"], rows, encoding="gbk"))
    with pytest.raises(InputError) as err:
        import_place_file(session, CTX, "shelters", path, crs="gcj02")
    assert {(tuple(p.loc), p.type) for p in err.value.problems} == {
        (("file", "避难场所.csv", 3, "经度"), "swapped_lonlat"), (("file", "避难场所.csv", 4, "经度"), "not_finite")}
    report = import_place_file(session, CTX, "shelters", path, crs="gcj02", mode="good_rows")
    assert report.inserted == 1
    sx, sy = session.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM shelter WHERE name = '高德避难所'")).one()
    # Shifted back to WGS84: within a metre of the true point (GCJ-02 alone is hundreds of metres off).
    assert abs(sx - x) < 1e-5 and abs(sy - y) < 1e-5
    assert abs(gx - x) + abs(gy - y) > 1e-3


def test_natural_villages_from_an_xlsx_with_title_rows(session, tmp_path):
    from tests.register_files import xlsx_bytes

    code, _, x, y = _village(session)
    data = xlsx_bytes({"自然村": (("自然村名称", "行政村代码", ("位置", "经度"), ("位置", "纬度")),
                                  [["表中庄", code, x, y]])}, title_rows=("某镇自然村一览",), total_row=True)
    path = tmp_path / "自然村.xlsx"
    path.write_bytes(data)
    report = import_place_file(session, CTX, "natural_villages", path)
    assert (report.rows, report.inserted) == (1, 1)
    assert session.execute(text("SELECT village_code FROM natural_village WHERE name = '表中庄'")).scalar_one() == code
    lines = tmp_path / "roads.csv"
    lines.write_bytes(b"name,lon,lat\nx,1,2\n")
    with pytest.raises(InputError) as err:
        import_place_file(session, CTX, "roads", lines)
    assert err.value.problems[0].type == "unsupported_format"


def test_the_cli_imports_places_and_a_roster(scratch_db_url, tmp_path, monkeypatch):
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool
    from typer.testing import CliRunner

    from gis import cli as cli_mod
    from gis.cli import app
    from gis.settings import get_settings
    from tests.register_files import csv_bytes

    monkeypatch.setenv("DATABASE_URL", scratch_db_url.render_as_string(hide_password=False))
    # Connections that close after each command (as tests/test_api_cli_identity.py does).
    monkeypatch.setattr(cli_mod, "_engine", lambda: create_engine(scratch_db_url, poolclass=NullPool))
    get_settings.cache_clear()
    try:
        engine = create_engine(scratch_db_url, poolclass=NullPool)
        with engine.connect() as c:
            code, x, y = c.execute(text(
                "SELECT code, ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM grid "
                "WHERE level = 4 AND valid_to IS NULL ORDER BY code LIMIT 1")).one()
        path = tmp_path / "s.csv"
        path.write_bytes(csv_bytes(["名称", "容量", "经度", "纬度"], [["命令行避难所", 70, x, y]], encoding="utf-8"))
        runner = CliRunner()
        result = runner.invoke(app, ["places", "import", "shelters", str(path), "--dry-run"])
        assert result.exit_code == 0, result.output
        assert "would write: 1 new" in result.output
        result = runner.invoke(app, ["places", "import", "shelters", str(path)])
        assert result.exit_code == 0 and "wrote: 1 new" in result.output
        roster_csv = tmp_path / "r.csv"
        roster_csv.write_bytes(csv_bytes(["姓名", "联系电话", "职务", "网格编码"],
                                         [["命令行", "13655556666", "网格员", "411324999999999"]]))
        bad = runner.invoke(app, ["roster", "import", str(roster_csv), "--partial"])
        assert bad.exit_code == 1 and "unknown_grid" in bad.output
        roster_csv.write_bytes(csv_bytes(["姓名", "联系电话", "职务", "网格编码"],
                                         [["命令行", "13655556666", "网格员", code]]))
        ok = runner.invoke(app, ["roster", "import", str(roster_csv), "--partial", "--effective", "2031-01-01"])
        assert ok.exit_code == 0, ok.output
        assert "1 joined" in ok.output
        served = runner.invoke(app, ["roster", "served", code, "--on", "2031-01-01"])
        assert "命令行" in served.output
        with engine.connect() as c:
            assert c.execute(text("SELECT count(*) FROM shelter WHERE name = '命令行避难所'")).scalar_one() == 1
            actors = c.execute(text("SELECT DISTINCT resource FROM audit_log WHERE actor LIKE 'cli%' "
                                    "AND action = 'import'")).scalars().all()
        assert {"shelter", "staff"} <= set(actors)
        engine.dispose()
    finally:
        get_settings.cache_clear()


def test_new_rivers_can_rebuild_the_terrain_they_drain(session, tmp_path):
    """A DEM in the town conditioned without rivers; rivers imported with rebuild: the DEM is conditioned
    again with them burned in (its digest changes, its stored rivers are the new ones)."""
    import pyproj
    import rasterio
    from affine import Affine

    from gis.flood import dem as flood_dem
    from tests.test_hand import CELL, v_valley

    _, _, x, y = _village(session)
    ex, ny = pyproj.Transformer.from_crs(4326, 32649, always_xy=True).transform(x, y)
    z, _, _, _ = v_valley(rows=200, cols=81, ridge=0.0)
    transform = Affine(CELL, 0, ex - 40.5 * CELL, 0, -CELL, ny + 100 * CELL)
    path = tmp_path / "town_valley.tif"
    with rasterio.open(path, "w", driver="GTiff", dtype="float32", width=81, height=200, count=1,
                       crs="EPSG:32649", transform=transform) as dst:
        dst.write(z, 1)
    session.execute(text("DELETE FROM flood_dem"))   # only this DEM: rebuilding the sample's is slow
    session.execute(text("DELETE FROM river"))
    before = flood_dem.import_dem(session, path, name="谷地", precompute=False)
    channel = pyproj.Transformer.from_crs(32649, 4326, always_xy=True)
    cx = ex  # the valley's channel runs north-south through the middle column
    line = LineString([channel.transform(cx, ny + 95 * CELL), channel.transform(cx, ny - 95 * CELL)])
    frame = gpd.GeoDataFrame({"名称": ["谷河"]}, geometry=[line])
    report = import_place_file(session, CTX, "rivers", _write(frame, tmp_path / "r.geojson"), rebuild=True)
    assert report.terrain_rebuilt == ["谷地"] and report.terrain_stale == []
    row = session.execute(text("SELECT digest, rivers IS NOT NULL FROM flood_dem WHERE name = '谷地'")).one()
    assert row[0] != before["digest"] and row[1] is True
