"""Tests for gis.grids.io: every format, CRS handling, column aliases and upload limits."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Geod
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box

from gis.crs import wgs84_to_gcj02
from gis.errors import InputError
from gis.grids.io import read_grid_file
from gis.vector_files import ReadLimits

GEOD = Geod(ellps="WGS84")
TOWN = "411324105000000"

# The formats tests write grid files in, by file ending.
FILE_DRIVERS = {".geojson": "GeoJSON", ".gpkg": "GPKG", ".kml": "LIBKML"}


def hierarchy() -> gpd.GeoDataFrame:
    """A square town around 112.17E 32.97N: 2 areas (west/east), 4 villages, 8 grids."""
    x0, x2, x4 = 112.15, 112.17, 112.19
    y0, y1, y2 = 32.95, 32.97, 32.99
    rows = [(TOWN, "杨营镇", 1, None, box(x0, y0, x4, y2))]
    rows += [
        ("411324105901000", "西片区", 2, TOWN, box(x0, y0, x2, y2)),
        ("411324105902000", "东片区", 2, TOWN, box(x2, y0, x4, y2)),
    ]
    villages = [  # reading order: north row west->east, then south row
        ("411324105001000", "李邦相村", "411324105901000", (x0, y1, x2, y2)),
        ("411324105002000", "尹营村", "411324105902000", (x2, y1, x4, y2)),
        ("411324105003000", "岁坡村", "411324105901000", (x0, y0, x2, y1)),
        ("411324105004000", "小岗村", "411324105902000", (x2, y0, x4, y1)),
    ]
    for code, name, parent, (a, b, c, d) in villages:
        rows.append((code, name, 3, parent, box(a, b, c, d)))
        mid = (a + c) / 2
        rows.append((code[:12] + "001", name + "一组", 4, code, box(a, b, mid, d)))
        rows.append((code[:12] + "002", name + "二组", 4, code, box(mid, b, c, d)))
    return gpd.GeoDataFrame(
        {
            "code": [r[0] for r in rows],
            "name": [r[1] for r in rows],
            "level": [r[2] for r in rows],
            "parent_code": pd.Series([r[3] for r in rows], dtype=object),
        },
        geometry=[r[4] for r in rows],
        crs="EPSG:4326",
    )


def max_vertex_distance_m(a, b) -> float:
    ca = shapely.get_coordinates(np.asarray(list(a), dtype=object))
    cb = shapely.get_coordinates(np.asarray(list(b), dtype=object))
    assert ca.shape == cb.shape
    _, _, d = GEOD.inv(ca[:, 0], ca[:, 1], cb[:, 0], cb[:, 1])
    return float(np.max(d))


def assert_same_grids(got: gpd.GeoDataFrame, want: gpd.GeoDataFrame, tol_m: float = 0.01):
    assert list(got.columns) == ["code", "name", "level", "parent_code", "geometry", "row"]
    assert got.crs.to_epsg() == 4326
    assert list(got["code"]) == list(want["code"])
    assert list(got["name"]) == list(want["name"])
    assert list(got["level"]) == list(want["level"])
    assert got["level"].dtype == np.int64
    assert list(got["parent_code"]) == list(want["parent_code"])
    assert got["parent_code"].iloc[0] is None
    assert list(got["row"]) == list(range(1, len(want) + 1))
    assert set(got.geom_type) == {"MultiPolygon"}
    # Compare as shapes, since writers may reorder ring vertices (shapefile rings run clockwise);
    # one degree is at most ~111 km here, so degrees * 1.2e5 bounds metres.
    worst = max(
        shapely.hausdorff_distance(g, w) for g, w in zip(got.geometry, want.geometry, strict=True)
    )
    assert worst * 1.2e5 < tol_m


def write_file(folder: Path, gdf: gpd.GeoDataFrame, name: str, **kw) -> Path:
    """`gdf` written to `folder`/`name` in the format its ending names (GeoJSON, GeoPackage, KML)."""
    path = folder / name
    gdf.to_file(path, driver=FILE_DRIVERS[path.suffix], engine="pyogrio", **kw)
    return path


def assert_reads_back(folder: Path, name: str, **kw) -> None:
    """The synthetic hierarchy written as `folder`/`name` reads back as the same grids."""
    g = hierarchy()
    assert_same_grids(read_grid_file(write_file(folder, g, name, **kw)), g)


def write_zip(
    folder: Path, gdf: gpd.GeoDataFrame, name: str = "grids", drop: tuple = (), **kw
) -> Path:
    shp_dir = folder / f"{name}_shp"
    shp_dir.mkdir()
    # DBF field names stop at 10 characters, as real shapefiles' do.
    gdf = gdf.rename(columns={"parent_code": "parent_cod"})
    gdf.to_file(shp_dir / f"{name}.shp", engine="pyogrio", **kw)
    zpath = folder / f"{name}.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(shp_dir.iterdir()):
            if p.suffix.lower() not in drop:
                zf.write(p, p.name)
    return zpath


def problems_of(exc: pytest.ExceptionInfo) -> list:
    return exc.value.problems


# --- formats ------------------------------------------------------------------------------


def test_geojson(tmp_path):
    assert_reads_back(tmp_path, "grids.geojson")


def test_json_extension_without_crs_member_is_wgs84(tmp_path):
    g = hierarchy()
    p = tmp_path / "grids.json"
    doc = json.loads(g.to_json())
    doc.pop("crs", None)
    p.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    assert_same_grids(read_grid_file(p), g)


def test_gpkg(tmp_path):
    assert_reads_back(tmp_path, "grids.gpkg", layer="grids")


def test_zipped_shapefile_with_chinese_names(tmp_path):
    g = hierarchy()
    assert_same_grids(read_grid_file(write_zip(tmp_path, g)), g)


def test_zipped_shapefile_gbk_without_cpg(tmp_path):
    # Chinese desktop GIS writes GBK .dbf files without a .cpg; names must not come back garbled.
    g = hierarchy()
    cn = g.rename(
        columns={"code": "网格编码", "name": "名称", "level": "层级", "parent_code": "上级编码"}
    )
    got = read_grid_file(write_zip(tmp_path, cn, drop=(".cpg",), encoding="GBK"))
    assert list(got["name"]) == list(g["name"])
    assert list(got["parent_code"]) == list(g["parent_code"])


def test_zipped_shapefile_numeric_codes(tmp_path):
    g = hierarchy()
    g["code"] = g["code"].astype("int64")
    g["parent_code"] = [float(p) if p else None for p in g["parent_code"]]
    got = read_grid_file(write_zip(tmp_path, g))
    assert got["code"].iloc[3] == "411324105001000"
    assert got["parent_code"].iloc[4] == "411324105001000"


def test_kml(tmp_path):
    assert_reads_back(tmp_path, "grids.kml")


def test_kml_with_several_folders_reads_all(tmp_path):
    g = hierarchy()
    p = tmp_path / "grids.kml"
    g.iloc[:7].to_file(p, driver="LIBKML", layer="upper", engine="pyogrio")
    g.iloc[7:].to_file(p, driver="LIBKML", layer="lower", engine="pyogrio", mode="a")
    got = read_grid_file(p)
    assert sorted(got["code"]) == sorted(g["code"])
    assert list(got["row"]) == list(range(1, 16))


# --- coordinate systems ----------------------------------------------------------------------


def test_geojson_in_gauss_kruger_4546(tmp_path):
    g = hierarchy()
    p = write_file(tmp_path, g.to_crs(4546), "gk.geojson")
    got = read_grid_file(p)
    assert_same_grids(got, g)
    assert max_vertex_distance_m(got.geometry, [MultiPolygon([p]) for p in g.geometry]) < 0.01


def test_gpkg_in_utm_32649(tmp_path):
    g = hierarchy()
    p = write_file(tmp_path, g.to_crs(32649), "utm.gpkg")
    got = read_grid_file(p)
    assert_same_grids(got, g)


def test_gpkg_in_cgcs2000_geographic(tmp_path):
    g = hierarchy().set_crs(4490, allow_override=True)
    p = write_file(tmp_path, g, "cgcs.gpkg")
    got = read_grid_file(p)
    assert got.crs.to_epsg() == 4326
    assert shapely.equals_exact(
        got.geometry.iloc[0], MultiPolygon([g.geometry.iloc[0]]), tolerance=0
    )


def test_gcj02_geojson_lands_near_original(tmp_path):
    g = hierarchy()
    shifted = g.copy()
    shifted["geometry"] = shapely.transform(
        np.asarray(g.geometry.array), lambda x, y: wgs84_to_gcj02(x, y), interleaved=False
    )
    p = write_file(tmp_path, shifted, "amap.geojson")
    # Read as if it were WGS84 it sits hundreds of metres off ...
    naive = read_grid_file(p)
    assert max_vertex_distance_m(naive.geometry, [MultiPolygon([p]) for p in g.geometry]) > 100
    # ... told it is GCJ-02 it lands back on the original.
    got = read_grid_file(p, crs="gcj02")
    assert list(got["code"]) == list(g["code"])
    assert max_vertex_distance_m(got.geometry, [MultiPolygon([p]) for p in g.geometry]) < 2


def test_crs_argument_states_crs_of_prj_less_shapefile(tmp_path):
    g = hierarchy().to_crs(4546)
    z = write_zip(tmp_path, g, drop=(".prj",))
    with pytest.raises(InputError) as ei:
        read_grid_file(z)
    (p,) = problems_of(ei)
    assert p.type == "no_crs" and p.loc == ("file",)
    assert "crs=" in p.msg
    got = read_grid_file(z, crs="EPSG:4546")
    assert_same_grids(got, hierarchy())


def test_projected_coordinates_declared_4326(tmp_path):
    g = hierarchy().to_crs(4546).set_crs(4326, allow_override=True)
    p = write_file(tmp_path, g, "wrong.geojson")
    with pytest.raises(InputError) as ei:
        read_grid_file(p)
    (prob,) = problems_of(ei)
    assert prob.type == "wrong_crs"
    assert prob.msg == "coordinates look projected (metres) but the file declares EPSG:4326"


def test_lonlat_coordinates_declared_projected(tmp_path):
    g = hierarchy().set_crs(4546, allow_override=True)
    p = write_file(tmp_path, g, "wrong.gpkg")
    with pytest.raises(InputError) as ei:
        read_grid_file(p)
    assert problems_of(ei)[0].type == "wrong_crs"
    assert "EPSG:4546" in problems_of(ei)[0].msg


def test_swapped_axes_detected(tmp_path):
    g = hierarchy()
    g["geometry"] = shapely.transform(np.asarray(g.geometry.array), lambda c: c[:, ::-1])
    p = write_file(tmp_path, g, "swapped.geojson")
    with pytest.raises(InputError) as ei:
        read_grid_file(p)
    assert "swapped" in problems_of(ei)[0].msg


def test_bad_crs_argument(tmp_path):
    p = write_file(tmp_path, hierarchy(), "grids.geojson")
    with pytest.raises(InputError) as ei:
        read_grid_file(p, crs="EPSG:123456")
    assert problems_of(ei)[0].loc == ("crs",)


# --- columns and geometries -----------------------------------------------------------------


def test_chinese_column_names_and_derived_level_and_parent(tmp_path):
    g = hierarchy()
    # Group and area parents follow from the code; villages' parents need the column.
    g["上级编码"] = g["parent_code"]
    g.loc[g["level"].isin([2, 4]), "上级编码"] = None
    alt = gpd.GeoDataFrame(
        {"网格编码": g["code"], "网格名称": g["name"], "上级编码": g["上级编码"], "备注": "x"},
        geometry=g.geometry,
        crs=4326,
    )
    p = write_file(tmp_path, alt, "cn.geojson")
    got = read_grid_file(p)
    assert list(got["level"]) == list(g["level"])
    assert list(got["parent_code"]) == list(g["parent_code"])
    assert "备注" not in got.columns


def test_english_alternatives_case_insensitive(tmp_path):
    g = hierarchy().rename(
        columns={"code": "GRID_CODE", "name": "Name", "level": "LEVEL", "parent_code": "Parent"}
    )
    p = write_file(tmp_path, g, "alt.gpkg")
    assert_same_grids(read_grid_file(p), hierarchy())


def test_missing_columns_listed(tmp_path):
    g = hierarchy()[["level", "geometry"]]
    p = write_file(tmp_path, g, "nocols.geojson")
    with pytest.raises(InputError) as ei:
        read_grid_file(p)
    (prob,) = problems_of(ei)
    assert prob.type == "missing_columns"
    assert prob.ctx["missing"] == ["code", "name"]
    assert "code" in prob.msg and "name" in prob.msg


def test_missing_parent_column_needed_for_villages(tmp_path):
    g = hierarchy().drop(columns=["parent_code"])
    p = write_file(tmp_path, g, "noparent.geojson")
    with pytest.raises(InputError) as ei:
        read_grid_file(p)
    assert "parent_code" in problems_of(ei)[0].msg


def test_non_polygon_geometries_reported_per_row(tmp_path):
    g = hierarchy()
    geoms = list(g.geometry)
    geoms[4] = Point(112.16, 32.98)
    geoms[9] = LineString([(112.16, 32.98), (112.17, 32.98)])
    g = g.set_geometry(geoms)
    p = write_file(tmp_path, g, "mixed.gpkg", geometry_type="Unknown")
    with pytest.raises(InputError) as ei:
        read_grid_file(p)
    probs = problems_of(ei)
    assert [(q.loc, q.type) for q in probs] == [
        (("features", 5, "geometry"), "bad_geometry_type"),
        (("features", 10, "geometry"), "bad_geometry_type"),
    ]
    assert "Point" in probs[0].msg and "LineString" in probs[1].msg


def test_polygon_with_z_is_flattened_and_promoted(tmp_path):
    g = hierarchy()
    g = g.set_geometry(shapely.force_3d(np.asarray(g.geometry.array)))
    p = write_file(tmp_path, g, "z.geojson")
    got = read_grid_file(p)
    assert not any(shapely.has_z(np.asarray(got.geometry.array)))
    assert set(got.geom_type) == {"MultiPolygon"}


def test_unparseable_level_reported(tmp_path):
    g = hierarchy()
    g["level"] = g["level"].astype(str)
    g.loc[2, "level"] = "片区"
    p = write_file(tmp_path, g, "lvl.geojson")
    with pytest.raises(InputError) as ei:
        read_grid_file(p)
    (prob,) = problems_of(ei)
    assert prob.loc == ("features", 3, "level") and prob.type == "bad_level"


# --- bad files and limits -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content, type_",
    [
        ("garbage.geojson", b"{not json at all", "unreadable_file"),
        ("empty.geojson", b'{"type": "FeatureCollection", "features": []}', "empty_file"),
        ("zero.geojson", b"", "empty_file"),
        ("fake.gpkg", b"SQLite format 3\x00 but not really", "unreadable_file"),
        ("fake.zip", b"PK\x03\x04 broken", "unreadable_file"),
        ("fake.kml", b"<kml><Document>", "unreadable_file"),
        ("grids.txt", b"hello", "unsupported_format"),
    ],
)
def test_bad_files_raise_input_error(tmp_path, name, content, type_):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(InputError) as ei:
        read_grid_file(p)
    assert problems_of(ei)[0].type == type_
    assert problems_of(ei)[0].loc == ("file",)


def test_zip_without_shapefile(tmp_path):
    z = tmp_path / "x.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "no shapes here")
    with pytest.raises(InputError) as ei:
        read_grid_file(z)
    assert problems_of(ei)[0].type == "no_shapefile"


def test_gpkg_with_several_layers_needs_layer(tmp_path):
    g = hierarchy()
    p = tmp_path / "two.gpkg"
    g.to_file(p, layer="a", driver="GPKG", engine="pyogrio")
    g.iloc[:1].to_file(p, layer="b", driver="GPKG", engine="pyogrio")
    with pytest.raises(InputError) as ei:
        read_grid_file(p)
    assert problems_of(ei)[0].type == "several_layers"
    assert len(read_grid_file(p, layer="a")) == 15
    assert len(read_grid_file(p, layer="b")) == 1
    with pytest.raises(InputError) as ei:
        read_grid_file(p, layer="c")
    assert problems_of(ei)[0].loc == ("layer",)


def test_oversize_file(tmp_path):
    p = write_file(tmp_path, hierarchy(), "grids.geojson")
    with pytest.raises(InputError) as ei:
        read_grid_file(p, limits=ReadLimits(max_file_bytes=1000))
    (prob,) = problems_of(ei)
    assert prob.type == "file_too_large" and prob.ctx["bytes"] == p.stat().st_size


def test_too_many_features(tmp_path):
    p = write_file(tmp_path, hierarchy(), "grids.geojson")
    with pytest.raises(InputError) as ei:
        read_grid_file(p, limits=ReadLimits(max_features=10))
    (prob,) = problems_of(ei)
    assert prob.type == "too_many_features" and prob.ctx["features"] == 15


def test_too_many_vertices_names_row(tmp_path):
    g = hierarchy()
    limit = 50
    ring = [
        (112.16 + 0.005 * np.cos(t), 32.98 + 0.005 * np.sin(t))
        for t in np.linspace(0, 2 * np.pi, 10 * limit)
    ]
    geoms = list(g.geometry)
    geoms[6] = Polygon(ring)
    g = g.set_geometry(geoms)
    p = write_file(tmp_path, g, "dense.geojson")
    with pytest.raises(InputError) as ei:
        read_grid_file(p, limits=ReadLimits(max_vertices_per_geometry=limit))
    (prob,) = problems_of(ei)
    assert prob.type == "too_many_vertices"
    assert prob.loc == ("features", 7, "geometry")
    assert prob.ctx["vertices"] >= 10 * limit


# --- zip safety -------------------------------------------------------------------------------


def _assert_unsafe(path: Path, limits: ReadLimits | None = None) -> str:
    with pytest.raises(InputError) as ei:
        read_grid_file(path, limits=limits)
    (prob,) = problems_of(ei)
    assert prob.type == "unsafe_archive" and prob.loc == ("file",)
    return prob.msg


def test_zip_bomb_refused_before_extraction(tmp_path, monkeypatch):
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("grids.shp", b"")
        with zf.open("grids.dbf", "w", force_zip64=True) as f:
            zero = bytes(1 << 22)
            for _ in range(75):  # 300 MB of zeros, a few hundred KB compressed
                f.write(zero)
    assert z.stat().st_size < 2_000_000

    # Nothing may be read out of the archive once its directory gives it away.
    def no_open(*a, **k):
        raise AssertionError("extraction started")

    monkeypatch.setattr(zipfile.ZipFile, "open", no_open)
    msg = _assert_unsafe(z)
    assert "MB" in msg or "zip bomb" in msg


def test_high_ratio_entry_refused_even_under_size_limit(tmp_path):
    z = tmp_path / "ratio.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("grids.dbf", bytes(20 << 20))
    assert "zip bomb" in _assert_unsafe(z)


def test_lying_sizes_refused_while_extracting(tmp_path):
    # An entry that under-declares its size passes the directory checks, so extraction
    # itself must stop it with an InputError rather than write more or crash.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("grids.shp", b"A" * 5000)
    data = bytearray(buf.getvalue())
    # Patch the central directory's uncompressed size (offset 24 in the header) to 10 bytes.
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24 : cd + 28] = (10).to_bytes(4, "little")
    z = tmp_path / "liar.zip"
    z.write_bytes(bytes(data))
    with pytest.raises(InputError) as ei:
        read_grid_file(z)
    assert problems_of(ei)[0].type in {"unsafe_archive", "unreadable_file"}


@pytest.mark.parametrize(
    "entry", ["../evil.shp", "/etc/evil.shp", "sub/../../evil.shp", "C:/evil.shp", "..\\evil.shp"]
)
def test_path_traversal_refused(tmp_path, entry):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr(zipfile.ZipInfo(entry), b"x")
    assert "outside" in _assert_unsafe(z)
    assert not (tmp_path.parent / "evil.shp").exists()


def test_symlink_entry_refused(tmp_path):
    z = tmp_path / "link.zip"
    info = zipfile.ZipInfo("grids.shp")
    info.external_attr = 0o120777 << 16
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    assert "symbolic link" in _assert_unsafe(z)


def test_too_many_entries_refused(tmp_path):
    z = tmp_path / "many.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for i in range(12):
            zf.writestr(f"f{i}.txt", b"x")
    msg = _assert_unsafe(z, ReadLimits(max_zip_entries=10))
    assert "12 entries" in msg


def test_unzipped_total_over_limit_refused(tmp_path):
    g = hierarchy()
    z = write_zip(tmp_path, g)
    msg = _assert_unsafe(z, ReadLimits(max_unzipped_bytes=1000))
    assert "expands to" in msg
