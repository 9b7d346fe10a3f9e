"""The synthetic sample town: reference counts, exact tiling, codes, terrain and determinism."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from datetime import date

import geopandas as gpd
import numpy as np
import pytest
import shapely

from gis.codes import code_problem, parent_problem, reading_order
from gis.sample_town import (
    LOW_LYING_VILLAGES,
    METRIC_CRS,
    REFERENCE_DATE,
    SEED,
    SYNTHETIC_NOTICE,
    TOWN_CODE,
    TOWN_NAME,
    SampleTown,
    generate_sample_town,
    write_boundaries,
    write_dem,
)

CHINESE_NAME = re.compile(r"^[\u4e00-\u9fff]{2,4}$")
MOBILE = re.compile(r"^1[3-9]\d{9}$")
ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


@pytest.fixture(scope="module")
def town() -> SampleTown:
    return generate_sample_town()


@pytest.fixture(scope="module")
def grids_m(town):
    return town.grids.to_crs(METRIC_CRS)


@pytest.fixture(scope="module")
def households_m(town):
    return town.households.to_crs(METRIC_CRS)


def _dem_at(town: SampleTown, xy: np.ndarray) -> np.ndarray:
    t = town.dem_transform
    col = np.floor((xy[:, 0] - t.c) / t.a).astype(int)
    row = np.floor((xy[:, 1] - t.f) / t.e).astype(int)
    assert (row >= 0).all() and (row < town.dem.shape[0]).all()
    assert (col >= 0).all() and (col < town.dem.shape[1]).all()
    return town.dem[row, col].astype(float)


def _height_above_river(town: SampleTown, xy: np.ndarray) -> np.ndarray:
    """DEM at the points minus DEM where the river line passes nearest to them."""
    river = town.rivers.to_crs(METRIC_CRS).geometry.iloc[0]
    foot = shapely.line_interpolate_point(
        river, shapely.line_locate_point(river, shapely.points(xy))
    )
    return _dem_at(town, xy) - _dem_at(town, shapely.get_coordinates(foot))


def _village_of(grid_code: str) -> str:
    return grid_code[:12] + "000"


# ----------------------------------------------------------------------------- counts


def test_reference_counts(town):
    levels = Counter(town.grids["level"].tolist())
    assert levels == {1: 1, 2: 4, 3: 20, 4: 282}
    assert len(town.natural_villages) == 92
    assert len(town.residents) == 62_600
    assert int(town.households["residents"].sum()) == 62_600
    assert 17_500 <= len(town.households) <= 18_500
    roles = Counter(town.staff["role"].tolist())
    assert roles == {
        "grid_leader": 307,
        "grid_member": 3_087,
        "party_household": 487,
        "supervisor": 20,
    }


def test_village_names_and_grid_counts(town):
    villages = town.grids[town.grids["level"] == 3]
    names = villages["name"].tolist()
    assert len(set(names)) == 20
    for required in ("李邦相村", "尹营村", "岁坡村", "小岗村", *LOW_LYING_VILLAGES):
        assert required in names
    assert all(n.endswith("村") and 3 <= len(n) <= 4 for n in names)
    per_village = town.grids[town.grids["level"] == 4].groupby("parent_code").size()
    assert per_village.sum() == 282 and len(per_village) == 20
    assert per_village.nunique() > 3, "grid counts should vary between villages"
    assert town.grids.loc[town.grids["level"] == 1, "name"].str.contains("示例").all()
    assert (
        town.grids.loc[town.grids["level"] == 2, "name"]
        .str.match(r"^第[一二三四]片区（.+片区）$")
        .all()
    )


# ----------------------------------------------------------------------------- geometry


def test_geometries_valid_multipolygons_in_wgs84(town, grids_m):
    assert town.grids.crs.to_epsg() == 4326
    assert set(town.grids.geom_type) == {"MultiPolygon"}
    assert shapely.is_valid(town.grids.geometry.values).all()
    assert shapely.is_valid(grids_m.geometry.values).all()
    for frame in (town.natural_villages, town.households, town.shelters, town.roads, town.rivers):
        assert frame.crs.to_epsg() == 4326
    assert set(town.natural_villages.geom_type) == {"Point"}
    assert set(town.roads.geom_type) == {"LineString"}
    assert set(town.rivers.geom_type) == {"LineString"}


def test_town_size_and_place(town, grids_m):
    outline = grids_m[grids_m["level"] == 1].geometry.iloc[0]
    assert 80e6 <= outline.area <= 120e6
    # irregular: clearly less compact than a circle of the same area
    compactness = 4 * np.pi * outline.area / outline.length**2
    assert compactness < 0.9
    c = town.grids[town.grids["level"] == 1].geometry.iloc[0].centroid
    assert abs(c.x - 112.17) < 0.03 and abs(c.y - 32.97) < 0.03
    # south-west of the Zhenping county seat (about 112.24 E, 33.04 N)
    assert c.x < 112.24 and c.y < 33.04


def _area_m2(geoms) -> np.ndarray:
    """Area in m² of geometries cut out in EPSG:4326, the storage CRS: the difference is taken
    where the data lives and only then projected (projecting whole polygons first would bend
    long parent edges and their split halves differently and invent slivers)."""
    return gpd.GeoSeries(list(geoms), crs="EPSG:4326").to_crs(METRIC_CRS).area.to_numpy()


@pytest.mark.parametrize("level", [2, 3, 4])
def test_children_tile_parent_exactly(town, level):
    children = town.grids[town.grids["level"] == level]
    parents = town.grids.set_index("code")
    for parent_code, group in children.groupby("parent_code"):
        parent = parents.loc[parent_code, "geometry"]
        union = shapely.union_all(group.geometry.values)
        assert _area_m2([shapely.symmetric_difference(union, parent)])[0] < 1.0, parent_code
        geoms = group.geometry.values
        left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
        pairs = left < right
        if pairs.any():
            overlap = _area_m2(shapely.intersection(geoms[left[pairs]], geoms[right[pairs]]))
            assert overlap.max() < 0.01, parent_code


def test_each_grid_is_one_connected_piece(grids_m):
    assert (shapely.get_num_geometries(grids_m.geometry.values) == 1).all()


# ----------------------------------------------------------------------------- codes


def test_codes_and_parents(town):
    g = town.grids
    assert g["code"].is_unique
    assert g.loc[g["level"] == 1, "code"].tolist() == [TOWN_CODE]
    level_of = dict(zip(g["code"], g["level"], strict=True))
    for code, level, parent in zip(g["code"], g["level"], g["parent_code"], strict=True):
        assert code_problem(code, level) is None, code
        assert parent_problem(code, level, parent) is None, code
        if level == 1:
            assert parent is None
        else:
            assert level_of[parent] == level - 1
    areas = sorted(g.loc[g["level"] == 2, "code"].str[9:12].tolist())
    assert areas == ["901", "902", "903", "904"]
    villages = sorted(int(c[9:12]) for c in g.loc[g["level"] == 3, "code"])
    assert villages == list(range(1, 21))
    for parent, group in g[g["level"] == 4].groupby("parent_code"):
        numbers = sorted(int(c[12:]) for c in group["code"])
        assert numbers == list(range(1, len(numbers) + 1)), parent


def test_siblings_numbered_in_reading_order(grids_m):
    parents = grids_m.set_index("code")
    checked = 0
    for level in (2, 3, 4):
        children = grids_m[grids_m["level"] == level]
        for parent_code, group in children.groupby("parent_code"):
            group = group.sort_values("code")
            parent = parents.loc[parent_code, "geometry"]
            pts = shapely.get_coordinates(shapely.centroid(group.geometry.values))
            height = (parent.bounds[3] - parent.bounds[1]) / 3
            order = reading_order(pts[:, 0], pts[:, 1], height)
            assert order.tolist() == list(range(len(group))), parent_code
            checked += 1
    assert checked == 1 + 4 + 20


def test_grid_names(town):
    grid4 = town.grids[town.grids["level"] == 4]
    vname = dict(zip(town.grids["code"], town.grids["name"], strict=True))
    for code, name in zip(grid4["code"], grid4["name"], strict=True):
        assert name.startswith(vname[_village_of(code)]) and name.endswith("网格")
    assert "尹营村第三网格" in set(grid4["name"])


# ----------------------------------------------------------------------------- settlements


def test_natural_villages_inside_their_village(town, grids_m):
    nv = town.natural_villages.to_crs(METRIC_CRS)
    assert nv["name"].is_unique
    villages = grids_m[grids_m["level"] == 3].set_index("code")
    assert set(nv["village_code"]) == set(villages.index)
    for code, pt in zip(nv["village_code"], nv.geometry, strict=True):
        assert villages.loc[code, "geometry"].contains(pt)


def test_households_inside_their_grid(town, grids_m, households_m):
    hh = households_m
    assert hh["household_no"].is_unique
    assert hh["household_no"].str.match(r"^\d{19}$").all()
    assert (hh["household_no"].str[:15] == hh["grid_code"].map(_village_of)).all()
    grids = grids_m.set_index("code").geometry
    polys = grids.loc[hh["grid_code"]].values
    assert shapely.contains(polys, hh.geometry.values).all()
    town_poly = grids.loc[TOWN_CODE]
    assert shapely.contains(town_poly, hh.geometry.values).all()
    per_grid = hh.groupby("grid_code").size()
    assert set(per_grid.index) == set(town.grids.loc[town.grids["level"] == 4, "code"])
    assert per_grid.min() >= 15  # a villager group, not a stray house
    nv_village = dict(
        zip(town.natural_villages["name"], town.natural_villages["village_code"], strict=True)
    )
    assert (hh["natural_village"].map(nv_village) == hh["grid_code"].map(_village_of)).all()


def test_households_are_clustered_not_uniform(households_m, grids_m):
    # Clustered settlements: the mean nearest-neighbour distance is well below that of uniform
    # points at the same density (0.5 / sqrt(density)).
    xy = shapely.get_coordinates(households_m.geometry.values)
    from scipy.spatial import cKDTree

    d, _ = cKDTree(xy).query(xy, k=2)
    area = grids_m[grids_m["level"] == 1].area.iloc[0]
    assert d[:, 1].mean() < 0.7 * 0.5 / np.sqrt(len(xy) / area)


def test_household_attributes(town):
    hh = town.households
    vname = dict(zip(town.grids["code"], town.grids["name"], strict=True))
    for address, code in zip(hh["address"], hh["grid_code"], strict=True):
        assert re.fullmatch(
            re.escape(vname[_village_of(code)]) + r"[一二三四五六七八九十]+组\d+号", address
        ), address
    assert hh["address"].is_unique
    assert hh["floors"].between(1, 3).all() and set(hh["floors"]) == {1, 2, 3}
    assert hh["phone"].str.match(MOBILE).all() and hh["phone"].is_unique
    assert hh["head_name"].str.match(CHINESE_NAME).all()
    assert hh["residents"].between(1, 8).all()
    assert 3.3 < hh["residents"].mean() < 3.7


def test_residents_consistent_with_households(town):
    res, hh = town.residents, town.households.set_index("household_no")
    assert set(res["household_no"]) == set(hh.index)
    assert (res.groupby("household_no").size().reindex(hh.index) == hh["residents"]).all()
    heads = res[res["relation_to_head"] == "户主"]
    assert heads["household_no"].is_unique and len(heads) == len(hh)
    assert (heads.set_index("household_no")["name"].reindex(hh.index) == hh["head_name"]).all()
    assert set(res["relation_to_head"]) <= {
        "户主",
        "配偶",
        "子女",
        "父母",
        "孙辈",
        "儿媳",
        "兄弟姐妹",
        "其他",
    }
    assert set(res["gender"]) == {"男", "女"}
    assert res["name"].str.match(CHINESE_NAME).all()

    age = np.array(
        [
            (REFERENCE_DATE.year - b.year)
            - ((REFERENCE_DATE.month, REFERENCE_DATE.day) < (b.month, b.day))
            for b in res["birth_date"]
        ]
    )
    assert age.min() >= 0 and age.max() <= 100
    frame = res.assign(elderly=age >= 65, children=age < 14)  # the brief: elderly = 65+
    sums = frame.groupby("household_no")[
        ["elderly", "children", "is_disabled", "is_pregnant", "is_bedridden"]
    ].sum()
    sums.columns = ["elderly", "children", "disabled", "pregnant", "bedridden"]
    assert (sums.reindex(hh.index) == hh[sums.columns]).all().all()
    # plausible shares for a rural Henan township
    assert 0.08 < (age >= 65).mean() < 0.30
    assert 0.08 < (age < 14).mean() < 0.25
    assert not res.loc[res["gender"] == "男", "is_pregnant"].any()
    for flag in ("is_disabled", "is_pregnant", "is_bedridden"):
        assert 0 < res[flag].sum() < 0.1 * len(res)


def test_resident_id_numbers(town):
    res = town.residents
    assert res["id_number"].is_unique
    for id_number, birth, gender in zip(
        res["id_number"], res["birth_date"], res["gender"], strict=True
    ):
        assert len(id_number) == 18 and id_number.startswith("411324")
        assert isinstance(birth, date) and id_number[6:14] == birth.strftime("%Y%m%d")
        assert (int(id_number[16]) % 2 == 1) == (gender == "男")
        check = "10X98765432"[
            sum(int(c) * w for c, w in zip(id_number[:17], ID_WEIGHTS, strict=True)) % 11
        ]
        assert id_number[17] == check


# ----------------------------------------------------------------------------- staff


def test_staff(town):
    staff, grids, hh = town.staff, town.grids, town.households
    assert staff["name"].str.match(CHINESE_NAME).all()
    assert staff["phone"].str.match(MOBILE).all()
    leaders = staff[staff["role"] == "grid_leader"]
    assert sorted(leaders["grid_code"]) == sorted(
        grids["code"]
    )  # exactly one per grid, every level
    level = dict(zip(grids["code"], grids["level"], strict=True))
    members = staff[staff["role"] == "grid_member"]
    assert {level[c] for c in members["grid_code"]} == {4}
    assert set(members["grid_code"]) == set(grids.loc[grids["level"] == 4, "code"])
    party = staff[staff["role"] == "party_household"]
    assert party["household_no"].is_unique and party["household_no"].notna().all()
    by_no = hh.set_index("household_no")
    assert (
        by_no.loc[party["household_no"], "grid_code"].to_numpy() == party["grid_code"].to_numpy()
    ).all()
    assert (
        by_no.loc[party["household_no"], "head_name"].to_numpy() == party["name"].to_numpy()
    ).all()
    assert set(party["grid_code"]) == set(grids.loc[grids["level"] == 4, "code"])
    supervisors = staff[staff["role"] == "supervisor"]
    assert sorted(supervisors["grid_code"]) == sorted(grids.loc[grids["level"] == 3, "code"])
    others = staff[staff["role"] != "party_household"]
    assert others["household_no"].isna().all()
    assert others["phone"].is_unique and not set(others["phone"]) & set(hh["phone"])


# ----------------------------------------------------------------------------- terrain and flood


def test_dem_grid(town, grids_m):
    assert town.dem.dtype == np.float32
    assert np.isfinite(town.dem).all()
    assert town.dem_crs == METRIC_CRS
    t = town.dem_transform
    assert t.a == 10.0 and t.e == -10.0 and t.b == 0 and t.d == 0
    minx, miny, maxx, maxy = grids_m[grids_m["level"] == 1].total_bounds
    right = t.c + t.a * town.dem.shape[1]
    bottom = t.f + t.e * town.dem.shape[0]
    assert t.c <= minx - 500 and right >= maxx + 500 and t.f >= maxy + 500 and bottom <= miny - 500


def test_dem_relief(town, grids_m):
    outline = grids_m[grids_m["level"] == 1].geometry.iloc[0]
    t = town.dem_transform
    rows, cols = np.mgrid[0 : town.dem.shape[0] : 7, 0 : town.dem.shape[1] : 7]
    x = t.c + (cols + 0.5) * t.a
    y = t.f + (rows + 0.5) * t.e
    inside = shapely.contains_xy(outline, x, y)
    z = town.dem[rows, cols][inside]
    assert 90 < z.min() < 115 and 200 < z.max() < 300
    cx, cy = outline.centroid.x, outline.centroid.y
    xs, ys = x[inside], y[inside]
    northwest = z[(xs < cx) & (ys > cy)].mean()
    southeast = z[(xs > cx) & (ys < cy)].mean()
    assert northwest > southeast + 30


def test_river_crosses_town_flowing_east(town, grids_m):
    river = town.rivers.to_crs(METRIC_CRS).geometry.iloc[0]
    outline = grids_m[grids_m["level"] == 1].geometry.iloc[0]
    (x0, y0), (x1, y1) = river.coords[0], river.coords[-1]
    assert not outline.contains(shapely.Point(x0, y0)) and not outline.contains(
        shapely.Point(x1, y1)
    )
    assert river.intersection(outline).length > 8000
    assert x1 - x0 > 8000 and y1 < y0  # towards the east / south-east
    assert river.length > 1.12 * np.hypot(x1 - x0, y1 - y0)  # it meanders
    assert river.is_simple


def test_river_runs_on_the_valley_floor(town):
    river = town.rivers.to_crs(METRIC_CRS).geometry.iloc[0]
    s = np.arange(100.0, river.length - 100.0, 200.0)
    on = shapely.get_coordinates(shapely.line_interpolate_point(river, s))
    ahead = shapely.get_coordinates(shapely.line_interpolate_point(river, s + 5.0))
    tangent = (ahead - on) / np.hypot(*(ahead - on).T)[:, None]
    normal = np.column_stack([-tangent[:, 1], tangent[:, 0]])
    z = _dem_at(town, on)
    left, right = _dem_at(town, on + 100 * normal), _dem_at(town, on - 100 * normal)
    assert ((z < left) & (z < right)).mean() > 0.95
    # the burned-in channel sits 1-3 m below its banks
    bank = np.minimum(_dem_at(town, on + 30 * normal), _dem_at(town, on - 30 * normal)) - z
    assert 0.9 < np.median(bank) < 3.0
    # and the bed falls downstream
    assert z[0] - z[-1] > 20
    assert (np.diff(z) < 0.2).all()


def test_low_lying_villages_are_lowest(town, households_m):
    xy = shapely.get_coordinates(households_m.geometry.values)
    z = _dem_at(town, xy)
    vname = dict(zip(town.grids["code"], town.grids["name"], strict=True))
    village = households_m["grid_code"].map(lambda c: vname[_village_of(c)]).to_numpy()
    means = {name: z[village == name].mean() for name in np.unique(village)}
    lowest_other = min(m for name, m in means.items() if name not in LOW_LYING_VILLAGES)
    for name in LOW_LYING_VILLAGES:
        assert means[name] < lowest_other, name


def test_low_lying_villages_lie_beside_the_lower_river(town, grids_m):
    river = town.rivers.to_crs(METRIC_CRS).geometry.iloc[0]
    villages = grids_m[grids_m["level"] == 3].set_index("name")
    chain = {}
    for name, poly in villages.geometry.items():
        near = river.intersection(poly.buffer(150))
        if not near.is_empty:
            chain[name] = river.project(near.interpolate(0.5, normalized=True))
    for name in LOW_LYING_VILLAGES:
        assert name in chain, f"{name} does not touch the river"
    others = [c for n, c in chain.items() if n not in LOW_LYING_VILLAGES]
    assert np.median([chain[n] for n in LOW_LYING_VILLAGES]) > np.median(others)


def test_only_low_lying_households_on_the_floodplain(town, households_m):
    xy = shapely.get_coordinates(households_m.geometry.values)
    hand = _height_above_river(town, xy)
    vname = dict(zip(town.grids["code"], town.grids["name"], strict=True))
    village = households_m["grid_code"].map(lambda c: vname[_village_of(c)]).to_numpy()
    low = np.isin(village, LOW_LYING_VILLAGES)
    flooded = hand < 1.5
    assert 40 <= flooded.sum() <= 60
    assert not flooded[~low].any()
    assert hand[~low].min() >= 4.0
    assert set(village[flooded]) == set(LOW_LYING_VILLAGES)
    # a stage anywhere from 1.5 m to 2 m above the channel floods the same households
    assert (hand < 2.0).sum() == flooded.sum()
    assert hand.min() > 0.3


# ----------------------------------------------------------------------------- shelters and roads


def test_shelters(town, grids_m):
    sh = town.shelters.to_crs(METRIC_CRS)
    assert sh["capacity"].between(100, 1500).all()
    assert sh["capacity"].sum() > 0.2 * 62_600
    assert set(sh["kind"]) >= {"学校", "村委会", "镇政府"}
    assert (sh["kind"] == "镇政府").sum() == 1
    assert 2 <= sh["name"].str.startswith(TOWN_NAME[:3]).sum() <= 4  # town-level shelters
    villages = set(grids_m.loc[grids_m["level"] == 3, "code"])
    assert {_village_of(c) for c in sh["grid_code"]} == villages
    assert (sh["kind"] == "村委会").sum() == 20
    grids = grids_m.set_index("code").geometry
    assert shapely.contains(grids.loc[sh["grid_code"]].values, sh.geometry.values).all()
    # shelters stand on dry ground
    assert _height_above_river(town, shapely.get_coordinates(sh.geometry.values)).min() >= 3.0


def test_roads_form_one_connected_network(town):
    roads = town.roads
    assert set(roads["road_class"]) == {"县道", "乡道", "村道"}
    assert roads["name"].str.len().gt(0).all()
    parent: dict = {}

    def find(a):
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for line in roads.geometry:
        a, b = line.coords[0], line.coords[-1]
        assert a != b
        parent[find(a)] = find(b)
    assert len({find(p) for p in list(parent)}) == 1
    ends = np.array(list(parent))
    for pt in list(town.natural_villages.geometry) + list(town.shelters.geometry):
        assert np.abs(ends - [pt.x, pt.y]).max(axis=1).min() < 1e-9
    county = roads[roads["road_class"] == "县道"]
    seat = town.shelters.loc[town.shelters["kind"] == "镇政府"].to_crs(METRIC_CRS).geometry.iloc[0]
    assert county.to_crs(METRIC_CRS).distance(seat).min() < 1500


# ----------------------------------------------------------------------- files and determinism


def test_write_boundaries_rfc7946_and_byte_identical(town, tmp_path):
    first = write_boundaries(town, tmp_path / "a")
    second = write_boundaries(town, tmp_path / "b")
    names = [p.name for p in first]
    assert names == [
        "town.geojson",
        "areas.geojson",
        "villages.geojson",
        "grids.geojson",
        "rivers.geojson",
        "roads.geojson",
        "shelters.geojson",
    ]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    counts = {"town.geojson": 1, "areas.geojson": 4, "villages.geojson": 20, "grids.geojson": 282}
    for path in first:
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert doc["type"] == "FeatureCollection" and "crs" not in doc
        assert doc["description"] == SYNTHETIC_NOTICE
        if path.name in counts:
            assert len(doc["features"]) == counts[path.name]
            for f in doc["features"]:
                assert set(f["properties"]) == {"code", "name", "level", "parent_code"}
                assert f["geometry"]["type"] == "MultiPolygon"
                ring = np.array(f["geometry"]["coordinates"][0][0])
                assert (ring[0] == ring[-1]).all()
                area2 = np.sum(ring[:-1, 0] * ring[1:, 1] - ring[1:, 0] * ring[:-1, 1])
                assert area2 > 0, "exterior rings must be counter-clockwise (RFC 7946)"
                assert ring[:, 0].min() > 112.0 and ring[:, 0].max() < 112.4
                assert ring[:, 1].min() > 32.8 and ring[:, 1].max() < 33.1
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\d\.\d{8,}", text), "coordinates are rounded to 7 decimals"


def test_write_dem(town, tmp_path):
    import rasterio

    path = write_dem(town, tmp_path / "dem.tif")
    with rasterio.open(path) as src:
        assert src.crs.to_epsg() == 4546
        assert src.nodata is not None
        assert src.profile["compress"].lower() == "deflate"
        assert src.transform == town.dem_transform
        tags = src.tags()
        assert tags["NOTICE"] == SYNTHETIC_NOTICE and tags["SYNTHETIC"] == "true"
        assert np.array_equal(src.read(1), town.dem)


def _fingerprint(t: SampleTown) -> str:
    h = hashlib.sha256()
    for wkb in shapely.to_wkb(t.grids.geometry.values):
        h.update(wkb)
    h.update(t.households.drop(columns="geometry").to_csv().encode())
    for wkb in shapely.to_wkb(t.households.geometry.values):
        h.update(wkb)
    h.update(t.residents.to_csv().encode())
    h.update(t.staff.to_csv().encode())
    h.update(t.dem.tobytes())
    return h.hexdigest()


def test_same_seed_same_town_and_files(town, tmp_path):
    again = generate_sample_town(SEED)
    assert (
        shapely.to_wkb(again.grids.geometry.values).tolist()
        == shapely.to_wkb(town.grids.geometry.values).tolist()
    )
    assert again.households.drop(columns="geometry").equals(
        town.households.drop(columns="geometry")
    )
    assert _fingerprint(again) == _fingerprint(town)
    for a, b in zip(
        write_boundaries(town, tmp_path / "a"), write_boundaries(again, tmp_path / "b"), strict=True
    ):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_other_seed_other_town(town):
    assert generate_sample_town.__defaults__ == (SEED,)
    other = generate_sample_town(SEED + 1)
    assert Counter(other.grids["level"].tolist()) == {1: 1, 2: 4, 3: 20, 4: 282}
    assert len(other.residents) == 62_600
    assert other.grids.geometry.iloc[0].wkb != town.grids.geometry.iloc[0].wkb
    assert not other.households["head_name"].equals(town.households["head_name"])


def test_committed_boundary_files_are_the_generator_output(town, tmp_path):
    """data/boundaries/ must be regenerated (`wangge sample write-boundaries`) when the generator changes."""
    from pathlib import Path

    committed = Path(__file__).resolve().parent.parent / "data" / "boundaries"
    written = write_boundaries(town, tmp_path)
    assert written, "nothing written"
    for path in written:
        assert (committed / path.name).read_bytes() == path.read_bytes(), path.name
