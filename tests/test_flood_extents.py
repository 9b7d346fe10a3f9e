"""Flood extents against the sample town in PostGIS: the 2023-09-23 scenario, stages in order,
caching, depth at houses, a DEM in another CRS, uploaded and drawn extents, bad input."""

from __future__ import annotations

import io
import json
import zipfile

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, mapping
from sqlalchemy import text

from gis.crs import wgs84_to_gcj02
from gis.errors import InputError, NotFound
from gis.flood import dem as flood_dem
from gis.flood import extents
from gis.flood import stages as flood_stages
from gis.sample_town import FLOODPLAIN_HOUSEHOLDS, LOW_LYING_VILLAGES
from tests.conftest import make_client

HOUSEHOLDS_IN = text(
    """
    SELECT h.id, v.name AS village
    FROM household h
    JOIN natural_village nv ON nv.id = h.natural_village_id
    JOIN grid v ON v.code = nv.village_code AND v.valid_to IS NULL
    JOIN flood_extent e ON e.id = :id
    WHERE ST_Intersects(e.geom, h.geom)
    """
)


def households_in(session, extent_id: int) -> dict[int, str]:
    return dict(session.execute(HOUSEHOLDS_IN, {"id": extent_id}).all())


def test_the_night_of_2023_09_23_floods_47_households_in_the_four_low_lying_villages(session):
    extent = flood_stages.named_scenario(session, "2023-09-23")
    assert extent.source == "model" and extent.mode == "fluvial" and extent.name == "2023-09-23"
    found = households_in(session, extent.id)
    assert abs(len(found) - FLOODPLAIN_HOUSEHOLDS) <= 3
    assert set(found.values()) == set(LOW_LYING_VILLAGES)
    # The water stands on the floodplain below the houses' floors, not metres deep.
    xy = np.array(session.execute(
        text("SELECT ST_X(geom), ST_Y(geom) FROM household WHERE id = ANY(:ids)"), {"ids": list(found)}
    ).all())
    depth = extent.depth_at(xy)
    assert np.isfinite(depth).all() and (depth > 0).all() and (depth < 1.0).all()


def test_higher_stages_reach_further_in_a_plausible_order(session):
    stages = (0.5, 1.0, 2.0, 3.0, 6.0, 10.0)
    found = {}
    area = {}
    for stage in stages:
        extent = flood_stages.scenario_extent(session, stage)
        assert extent.stage_m == stage
        found[stage] = households_in(session, extent.id)
        area[stage] = extent.area_m2
    for low, high in zip(stages, stages[1:], strict=False):
        assert area[low] < area[high], (low, high)
        assert set(found[low]) <= set(found[high]), (low, high)
    assert len(found[0.5]) == 0  # within the banks
    assert len(found[3.0]) > len(found[2.0]) > 0
    for stage in (2.0, 3.0):  # the low-lying villages go first, and alone
        assert set(found[stage].values()) == set(LOW_LYING_VILLAGES)
    # A big flood reaches villages beyond them, but the four still hold most of the water's houses.
    beyond = [v for v in found[10.0].values() if v not in LOW_LYING_VILLAGES]
    assert beyond and len(beyond) < len(found[10.0]) / 2


def test_a_scenario_is_computed_once_then_reused_with_its_depth_classes(session):
    first = flood_stages.scenario_extent(session, 2.5)
    again = flood_stages.scenario_extent(session, 2.5000001)  # the same centimetre
    assert again.id == first.id
    assert session.execute(
        text("SELECT count(*) FROM flood_extent WHERE source = 'model' AND stage_m = 2.5")
    ).scalar_one() == 1
    classes = session.execute(
        text("SELECT depth_class, area_m2, ST_Area(geom::geography) AS geo_area FROM flood_extent_class "
             "WHERE extent_id = :id"), {"id": first.id}
    ).all()
    assert {c.depth_class for c in classes} == {"0-0.5", "0.5-1", "1-2", ">2"}
    assert sum(c.area_m2 for c in classes) == pytest.approx(first.area_m2, rel=1e-9)
    # The stored polygons in lon/lat have the area the DEM grid says (projection distortion < 1 %).
    assert sum(c.geo_area for c in classes) == pytest.approx(first.area_m2, rel=0.01)
    whole = session.execute(
        text("SELECT ST_Area(geom::geography), ST_IsValid(geom) FROM flood_extent WHERE id = :id"), {"id": first.id}
    ).one()
    assert whole[1] and whole[0] == pytest.approx(first.area_m2, rel=0.01)
    listed = {e["id"]: e for e in extents.list_extents(session, "model")}
    assert listed[first.id]["stage_m"] == 2.5 and listed[first.id]["dem_name"] == "sample"
    assert extents.get_extent(session, first.id).geom.equals_exact(first.geom, 1e-9)


def test_depth_at_is_nan_where_dry_and_off_the_dem(session):
    extent = flood_stages.scenario_extent(session, 3.0)
    inside = extent.geom.geoms[0].representative_point()
    far = (100.0, 20.0)
    town = session.execute(
        text("SELECT ST_X(ST_Centroid(geom)), ST_Y(ST_Centroid(geom)) FROM grid WHERE level = 1")
    ).one()
    depth = extent.depth_at(np.array([[inside.x, inside.y], far, tuple(town)]))
    assert 0 <= depth[0] <= 3.0 and np.isnan(depth[1])
    assert np.isnan(depth[2]) == (not extent.geom.contains(shapely.Point(town)))


def test_pluvial_mode_ponds_water_away_from_the_channel(session):
    pond = flood_stages.scenario_extent(session, 0.5, mode="pluvial")
    river = flood_stages.scenario_extent(session, 0.5)
    assert pond.id != river.id and pond.mode == "pluvial" and pond.area_m2 > 0
    deeper = flood_stages.scenario_extent(session, 1.0, mode="pluvial")
    assert deeper.area_m2 >= pond.area_m2
    rivers = session.execute(text("SELECT ST_Union(geom) FROM river")).scalar_one()
    touching = session.execute(
        text("SELECT ST_Intersects(geom, :r) FROM flood_extent WHERE id = :id"), {"r": rivers, "id": pond.id}
    ).scalar_one()
    assert touching is False


def test_bad_stages_and_names_are_named_errors(session):
    for stage in (0, -1, 0.004, float("nan"), 1e6, "deep"):
        with pytest.raises(InputError) as info:
            flood_stages.scenario_extent(session, stage)
        assert info.value.problems[0].loc == ("stage_m",)
    with pytest.raises(InputError):
        flood_stages.scenario_extent(session, 1.0, mode="tidal")
    with pytest.raises(NotFound):
        flood_stages.named_scenario(session, "1998-08-01")
    with pytest.raises(NotFound):
        flood_stages.scenario_extent(session, 1.0, dem_name="no such dem")


def test_a_dem_in_another_crs_gives_the_same_flood(session, sample_town, tmp_path):
    import rasterio
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    src_path = tmp_path / "sample.tif"
    from gis.sample_town import write_dem

    write_dem(sample_town, src_path)
    utm_path = tmp_path / "utm49n.tif"
    with rasterio.open(src_path) as src:
        t, w, h = calculate_default_transform(src.crs, "EPSG:32649", src.width, src.height, *src.bounds,
                                              resolution=10.0)
        out = np.full((h, w), -9999.0, dtype=np.float32)
        reproject(rasterio.band(src, 1), out, dst_transform=t, dst_crs="EPSG:32649", dst_nodata=-9999.0,
                  resampling=Resampling.nearest)
        with rasterio.open(utm_path, "w", driver="GTiff", dtype="float32", width=w, height=h, count=1,
                           crs="EPSG:32649", transform=t, nodata=-9999.0) as dst:
            dst.write(out, 1)
    assert (out == -9999.0).any()  # the rotated grid has no-data corners
    info = flood_dem.import_dem(session, utm_path, name="utm")
    assert info["shape"] == [h, w]
    extent = flood_stages.scenario_extent(session, 2.0, dem_name="utm")
    found = households_in(session, extent.id)
    assert abs(len(found) - FLOODPLAIN_HOUSEHOLDS) <= 3
    assert set(found.values()) == set(LOW_LYING_VILLAGES)


# ----------------------------------------------------------------------------- uploaded and drawn


def _square(lon, lat, half=0.002):
    return Polygon([(lon - half, lat - half), (lon + half, lat - half), (lon + half, lat + half),
                    (lon - half, lat + half)])


def _town_point(session):
    return session.execute(
        text("SELECT ST_X(geom), ST_Y(geom) FROM household ORDER BY id LIMIT 1")
    ).one()


def test_save_extent_stores_polygons_with_metric_area(session):
    lon, lat = _town_point(session)
    geom = MultiPolygon([_square(lon, lat), _square(lon + 0.01, lat)])
    saved = extents.save_extent(session, geom, "drawn", "东片积水", user_id=None)
    assert saved.source == "drawn" and saved.depth_at is None and saved.stage_m is None
    assert saved.geom.equals_exact(geom, 1e-12)
    assert saved.area_m2 == pytest.approx(2 * 0.004 * 111_320 * 0.004 * 111_320 * np.cos(np.radians(lat)), rel=0.01)
    with pytest.raises(InputError):
        extents.save_extent(session, geom, "model", "x")
    with pytest.raises(InputError):
        bowtie = Polygon([(lon, lat), (lon + 0.01, lat + 0.01), (lon + 0.01, lat), (lon, lat + 0.01)])
        extents.save_extent(session, bowtie, "drawn", "x")
    with pytest.raises(InputError):
        extents.save_extent(session, geom, "drawn", "  ")


def _feature_collection(geom, props=None):
    return {"type": "FeatureCollection",
            "features": [{"type": "Feature", "properties": props or {"名称": "无人机航测"}, "geometry": mapping(geom)}]}


def test_api_upload_geojson_in_gcj02_gpkg_and_zipped_shapefile(scratch_db_url, accounts, tmp_path):
    with make_client(scratch_db_url, "emergency") as em, make_client(scratch_db_url, "planner") as planner:
        lon, lat = em.get("/flood/scenarios/2023-09-23").json()["features"][0]["geometry"]["coordinates"][0][0][0]
        wgs = _square(lon, lat)
        gx, gy = wgs84_to_gcj02(*np.array(wgs.exterior.coords).T)
        gcj = Polygon(np.column_stack([gx, gy]))
        body = json.dumps(_feature_collection(gcj), ensure_ascii=False).encode()
        r = em.post(
            "/flood/extents", files={"file": ("survey.geojson", body)}, data={"crs": "gcj02", "name": "航测范围"}
        )
        assert r.status_code == 201, r.text
        made = r.json()
        assert made["source"] == "upload" and made["name"] == "航测范围" and made["modelled"] is False
        stored = em.get(f"/flood/extents/{made['id']}").json()
        back = shapely.geometry.shape(stored["features"][0]["geometry"])
        # Shifted back from GCJ-02 to within a metre of where the survey was in WGS84.
        assert back.symmetric_difference(wgs).area / wgs.area < 0.01
        assert shapely.hausdorff_distance(back, wgs) < 1e-5

        frame = gpd.GeoDataFrame({"name": ["a", "b"]}, geometry=[wgs, _square(lon + 0.003, lat)], crs="EPSG:4326")
        gpkg = tmp_path / "flood.gpkg"
        frame.to_crs("EPSG:4546").to_file(gpkg, driver="GPKG")
        r = em.post("/flood/extents", files={"file": ("flood.gpkg", gpkg.read_bytes())})
        assert r.status_code == 201, r.text
        # Two overlapping squares from one survey are dissolved into one part.
        assert r.json()["parts"] == 1 and r.json()["name"] == "flood"

        shp_dir = tmp_path / "shp"
        shp_dir.mkdir()
        frame.to_crs("EPSG:32649").to_file(shp_dir / "flood.shp")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for p in shp_dir.iterdir():
                zf.write(p, p.name)
        r = em.post("/flood/extents", files={"file": ("flood.zip", buf.getvalue())})
        assert r.status_code == 201, r.text

        listed = em.get("/flood/extents", params={"source": "upload"}).json()
        assert {e["name"] for e in listed} >= {"航测范围", "flood"} and len(listed) == 3
        assert planner.post("/flood/extents", files={"file": ("x.geojson", body)}).status_code == 403
        audit = em.get("/audit")  # emergency may not read the audit; the admin checks below
        assert audit.status_code == 403
    with make_client(scratch_db_url, "admin") as admin:
        rows = admin.get("/audit", params={"action": "flood_extent_upload"}).json()
        items = rows["items"] if isinstance(rows, dict) else rows
        assert len(items) >= 3


@pytest.mark.parametrize(
    ("filename", "content", "form", "loc", "type_"),
    [
        ("x.geojson", b"{not json", {}, ["file"], "unreadable_file"),
        ("x.txt", b"hello", {}, ["body", "file"], "unsupported_format"),
        ("x.geojson", json.dumps(_feature_collection(shapely.LineString([(113, 33), (113.1, 33.1)]))).encode(),
         {}, ["features", 1, "geometry"], "bad_geometry_type"),
        ("x.geojson", json.dumps(_feature_collection(_square(113, 33))).encode(), {"crs": "EPSG:0"},
         ["crs"], "invalid_crs"),
        ("x.geojson", json.dumps(_feature_collection(_square(500_000, 3_600_000, 100))).encode(), {},
         ["file"], "wrong_crs"),
        ("x.geojson", b"", {}, ["file"], "empty_file"),
    ],
)
def test_api_upload_of_unusable_files_is_422_naming_the_problem(clients, filename, content, form, loc, type_):
    r = clients["emergency"].post("/flood/extents", files={"file": (filename, content)}, data=form)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    err = r.json()["errors"][0]
    assert err["loc"] == loc and err["type"] == type_


def test_api_drawn_extent_and_scenarios(scratch_db_url, accounts):
    with make_client(scratch_db_url, "command_center") as cc:
        scen = cc.get("/flood/scenarios").json()
        assert scen["named"][0]["name"] == "2023-09-23" and scen["standard_stages_m"] == [0.5, 1.0, 2.0, 3.0]
        fc = cc.get("/flood/scenarios/2023-09-23").json()
        assert fc["type"] == "FeatureCollection" and fc["properties"]["stage_m"] == 2.0
        kinds = [f["properties"]["kind"] for f in fc["features"]]
        assert kinds[0] == "extent" and kinds.count("depth_class") >= 2
        again = cc.get("/flood/scenarios/2.0").json()
        assert again["properties"]["id"] == fc["properties"]["id"]
        assert cc.get("/flood/scenarios").json()["dems"][0]["name"] == "sample"
        assert cc.get("/flood/scenarios/1.0", params={"mode": "pluvial"}).json()["properties"]["mode"] == "pluvial"
        assert cc.get("/flood/scenarios/unknown").status_code == 404
        bad = cc.get("/flood/scenarios/-2")
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["path", "stage_or_name"]

        lon, lat = fc["features"][0]["geometry"]["coordinates"][0][0][0]
        drawn = {"name": "村口积水", "geometry": mapping(_square(lon, lat, 0.001))}
        r = cc.post("/flood/extents/drawn", json=drawn)
        assert r.status_code == 201, r.text
        got = cc.get(f"/flood/extents/{r.json()['id']}").json()
        assert got["properties"]["source"] == "drawn" and len(got["features"]) == 1
        bowtie = {"name": "x", "geometry": {"type": "Polygon", "coordinates": [
            [[lon, lat], [lon + 0.01, lat + 0.01], [lon + 0.01, lat], [lon, lat + 0.01], [lon, lat]]]}}
        bad = cc.post("/flood/extents/drawn", json=bowtie)
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"][:2] == ["body", "geometry"]
        line = {"name": "x", "geometry": {"type": "LineString", "coordinates": [[lon, lat], [lon, lat + 0.01]]}}
        assert cc.post("/flood/extents/drawn", json=line).status_code == 422
        assert cc.get("/flood/extents/987654").status_code == 404


def test_cli_dem_import_scenario_and_bad_files(scratch_db_url, accounts, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gis import settings as settings_mod
    from gis.cli import app

    monkeypatch.setenv("DATABASE_URL", scratch_db_url.render_as_string(hide_password=False))
    settings_mod.get_settings.cache_clear()
    try:
        junk = tmp_path / "junk.tif"
        junk.write_bytes(b"II*\x00 this is not a tiff")
        bad = CliRunner().invoke(app, ["flood", "dem", "import", str(junk)])
        assert bad.exit_code == 1 and "not_a_raster" in bad.output
        ok = CliRunner().invoke(app, ["flood", "scenario", "--name", "2023-09-23"])
        assert ok.exit_code == 0, ok.output
        n = int(ok.output.split("km²,")[1].split("households")[0])
        assert abs(n - FLOODPLAIN_HOUSEHOLDS) <= 3
        neither = CliRunner().invoke(app, ["flood", "scenario"])
        assert neither.exit_code == 2
        lines = tmp_path / "lines.geojson"
        lines.write_text(json.dumps(_feature_collection(shapely.LineString([(113, 33), (113.1, 33.1)]))))
        bad_extent = CliRunner().invoke(app, ["flood", "extent", "import", str(lines)])
        assert bad_extent.exit_code == 1 and "not a polygon" in bad_extent.output
    finally:
        settings_mod.get_settings.cache_clear()


def test_a_dem_away_from_the_stored_rivers_drains_by_upstream_area(session, tmp_path):
    import rasterio

    from tests.test_hand import v_valley

    dem, _, transform, _ = v_valley(rows=600, cols=81, ridge=0.0)  # 4.9 km²
    path = tmp_path / "elsewhere.tif"
    with rasterio.open(path, "w", driver="GTiff", dtype="float32", width=dem.shape[1], height=dem.shape[0],
                       count=1, crs="EPSG:32649", transform=transform) as dst:
        dst.write(dem, 1)
    info = flood_dem.import_dem(session, path, name="elsewhere", accumulation_threshold_km2=None)
    assert info["drainage_cells"] > 20  # the lower channel, found from 1 km² of upstream area
    row = session.execute(
        text("SELECT rivers IS NULL, accumulation_threshold_km2 FROM flood_dem WHERE name = 'elsewhere'")
    ).one()
    assert row[0] is True and row[1] == 1.0
    extent = flood_stages.scenario_extent(session, 1.0, dem_name="elsewhere")
    assert extent.area_m2 > 0 and extent.depth_at is not None
    # Re-importing the same file under the same name keeps the DEM and its cached extents.
    again = flood_dem.import_dem(session, path, name="elsewhere")
    assert again["id"] == info["id"] and again["digest"] == info["digest"]
    assert flood_stages.scenario_extent(session, 1.0, dem_name="elsewhere").id == extent.id
