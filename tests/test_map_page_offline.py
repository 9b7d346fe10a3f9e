"""The grid map page renders in headless Chromium with no network beyond the local server."""

from __future__ import annotations

import io
import math
import re

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import Transformer
from shapely.geometry import box

from maps import labels
from maps.grid_map import build_grid_map
from maps.hillshade import hillshade_png
from maps.offline import ASSET_ROOT, DEFAULT_PREFIX, INSTALL_COMMAND, missing_assets, vendor_files
from tests.browser import OfflinePageChecker, launch_chromium, serve_app_in_thread

TOWN = "411324105"
SCREENSHOT = "/tmp/grid_map.png"
# A level-4 grid and the village it belongs to, used for the click tests.
CLICK_GRID = f"{TOWN}001002"
CLICK_VILLAGE = f"{TOWN}001000"

# 1 town split into 2 areas (west/east), each into 2 villages (north/south), each into 2 grids.
WEST, SOUTH, EAST, NORTH = 112.15, 32.95, 112.19, 32.99


def small_town() -> gpd.GeoDataFrame:
    rows = [
        {
            "code": f"{TOWN}000000",
            "name": "样例镇",
            "level": 1,
            "parent_code": None,
            "geometry": box(WEST, SOUTH, EAST, NORTH),
        }
    ]
    mid_lon, mid_lat = (WEST + EAST) / 2, (SOUTH + NORTH) / 2
    village_no = 0
    for a, (w, e) in enumerate([(WEST, mid_lon), (mid_lon, EAST)], start=1):
        area = f"{TOWN}9{a:02d}000"
        rows.append(
            {
                "code": area,
                "name": f"第{a}片区",
                "level": 2,
                "parent_code": f"{TOWN}000000",
                "geometry": box(w, SOUTH, e, NORTH),
            }
        )
        for s, n in [(mid_lat, NORTH), (SOUTH, mid_lat)]:
            village_no += 1
            village = f"{TOWN}{village_no:03d}000"
            rows.append(
                {
                    "code": village,
                    "name": f"样例{village_no}村",
                    "level": 3,
                    "parent_code": area,
                    "geometry": box(w, s, e, n),
                }
            )
            half = (w + e) / 2
            for g, (gw, ge) in enumerate([(w, half), (half, e)], start=1):
                rows.append(
                    {
                        "code": f"{village[:12]}{g:03d}",
                        "name": f"样例{village_no}村{g}组",
                        "level": 4,
                        "parent_code": village,
                        "geometry": box(gw, s, ge, n),
                    }
                )
    return gpd.GeoDataFrame(rows, crs="EPSG:4326")


def small_dem():
    """A 30 m DEM in EPSG:4546 covering the town: a west-east valley between two ridges."""
    to_gk = Transformer.from_crs("EPSG:4326", "EPSG:4546", always_xy=True)
    xs, ys = to_gk.transform([WEST, EAST, WEST, EAST], [SOUTH, SOUTH, NORTH, NORTH])
    res = 30.0
    x0, y1 = min(xs) - 600, max(ys) + 600
    cols = int((max(xs) + 600 - x0) / res)
    rows = int((y1 - (min(ys) - 600)) / res)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(float)
    valley = 40.0 * np.abs((yy - rows / 2) / (rows / 2)) ** 1.5
    hills = 25.0 * np.sin(xx / 17.0) * np.cos(yy / 13.0)
    dem = 160.0 + valley + hills
    dem[:8, :8] = -9999.0  # a nodata corner, which must come out transparent
    return dem, Affine(res, 0, x0, 0, -res, y1), "EPSG:4546"


def small_staff() -> dict[str, list[dict]]:
    return {
        CLICK_GRID: [
            {"role": "leader", "name": "张*", "phone": "138****1234"},
            {"role": "member", "name": "<b>李*</b>", "phone": "139****5678"},
        ],
        CLICK_VILLAGE: [{"role": "supervisor", "name": "王*", "phone": "137****0000"}],
    }


@pytest.fixture(scope="module")
def town() -> gpd.GeoDataFrame:
    return small_town()


@pytest.fixture(scope="module")
def page_html(town) -> str:
    dem, transform, crs = small_dem()
    households = {c: 20 + i for i, c in enumerate(town.loc[town.level == 4, "code"])}
    return build_grid_map(
        town,
        staff_by_code=small_staff(),
        household_counts=households,
        hillshade=hillshade_png(dem, transform, crs, nodata=-9999.0, z_factor=3.0),
        synthetic=True,
    )


@pytest.fixture(scope="module")
def base_url(page_html):
    missing = missing_assets()
    if missing:
        pytest.fail(
            f"{len(missing)} map asset file(s) missing (first: {missing[0]}); "
            f"run `{INSTALL_COMMAND}` in the repository root.",
            pytrace=False,
        )
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    async def index(request):
        return HTMLResponse(page_html)

    app = Starlette(
        routes=[
            Route("/", index),
            Mount(DEFAULT_PREFIX, app=StaticFiles(directory=ASSET_ROOT), name="vendor"),
        ]
    )
    with serve_app_in_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as b:
        yield b


@pytest.fixture(scope="module")
def loaded(browser, base_url):
    """The page opened once, with its network and console activity recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="zh-CN")
    page = context.new_page()
    checker = OfflinePageChecker().attach(page)
    page.goto(base_url + "/", wait_until="networkidle")
    page.wait_for_function("document.documentElement.dataset.wanggeReady === '1'")
    # Fonts load lazily; wait so a broken font URL shows up as a failed request.
    page.evaluate("document.fonts.ready.then(() => true)")
    page.wait_for_load_state("networkidle")
    yield page, checker
    context.close()


def _grid_pixel(page, code: str) -> tuple[float, float]:
    """Viewport pixel of a grid's interior point, checked to be on the map, not on a control."""
    point = page.evaluate(
        """(code) => {
            const layer = window.wanggeFindGrid(code);
            const c = layer.getBounds().getCenter();
            const p = window.wanggeMap.latLngToContainerPoint(c);
            const r = window.wanggeMap.getContainer().getBoundingClientRect();
            const x = r.left + p.x, y = r.top + p.y;
            const hit = document.elementFromPoint(x, y);
            return {x, y, tag: hit ? hit.tagName.toLowerCase() : null};
        }""",
        code,
    )
    assert point["tag"] == "path", f"grid {code} is covered by a {point['tag']} element"
    return point["x"], point["y"]


def _close_popups(page) -> None:
    page.evaluate("window.wanggeMap.closePopup()")


@pytest.mark.browser
def test_page_is_clean_offline(loaded):
    page, checker = loaded
    page.screenshot(path=SCREENSHOT)
    checker.assert_clean()
    assert any(DEFAULT_PREFIX in u for u in checker.requests), "no vendor asset was loaded"


@pytest.mark.browser
def test_font_awesome_font_loads_from_local_path(loaded):
    page, checker = loaded
    assert page.evaluate("document.fonts.check('900 16px \"Font Awesome 6 Free\"')")
    assert any(u.endswith(".woff2") and DEFAULT_PREFIX in u for u in checker.requests), (
        "the icon font was not requested from the local vendor path"
    )


@pytest.mark.browser
def test_layer_control_lists_the_four_levels(loaded):
    page, _ = loaded
    control = page.locator(".leaflet-control-layers")
    assert control.is_visible()
    text = control.inner_text()
    for level in (1, 2, 3, 4):
        assert labels.LEVEL_LAYER_NAMES[level] in text
    assert labels.HILLSHADE_LAYER in text


@pytest.mark.browser
def test_title_badge_and_legend_are_visible(loaded):
    page, _ = loaded
    assert page.title() == labels.SYNTHETIC_PAGE_TITLE
    assert page.locator("#wangge-synthetic-badge").is_visible()
    assert page.locator("#wangge-synthetic-badge").inner_text() == labels.SYNTHETIC_BADGE
    legend = page.locator("#wangge-legend")
    assert legend.is_visible()
    assert labels.LEGEND_TITLE in legend.inner_text()
    assert labels.LEVEL_LAYER_NAMES[4] in legend.inner_text()


@pytest.mark.browser
def test_hillshade_overlay_is_drawn(loaded):
    page, _ = loaded
    img = page.locator("img.wangge-hillshade")
    assert img.count() == 1
    assert img.get_attribute("src").startswith("data:image/png;base64,")
    size = img.evaluate("i => [i.naturalWidth, i.naturalHeight, i.complete]")
    assert size[0] > 0 and size[1] > 0 and size[2]
    box_ = img.bounding_box()
    assert box_["width"] > 100 and box_["height"] > 100


@pytest.mark.browser
def test_clicking_a_grid_opens_its_popup(loaded):
    page, _ = loaded
    _close_popups(page)
    x, y = _grid_pixel(page, CLICK_GRID)
    page.mouse.click(x, y)
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for(state="visible")
    text = popup.inner_text()
    assert CLICK_GRID in text
    assert "样例1村2组" in text
    assert labels.LEVEL_LAYER_NAMES[4] in text
    assert "样例1村" in text and CLICK_VILLAGE in text  # the parent
    assert "网格长 张* 138****1234" in text
    # Staff values are text, never markup.
    assert "<b>李*</b>" in text
    assert popup.locator("b").count() == 0
    assert "户" in text
    _close_popups(page)


@pytest.mark.browser
def test_hiding_level_4_lets_clicks_reach_the_village(loaded):
    page, _ = loaded
    _close_popups(page)
    x, y = _grid_pixel(page, CLICK_GRID)
    toggle = page.locator(
        ".leaflet-control-layers-overlays label", has_text=labels.LEVEL_LAYER_NAMES[4]
    )
    toggle.locator("input").uncheck()
    try:
        page.mouse.click(x, y)
        popup = page.locator(".leaflet-popup-content")
        popup.wait_for(state="visible")
        text = popup.inner_text()
        assert CLICK_VILLAGE in text and CLICK_GRID not in text
        assert labels.LEVEL_LAYER_NAMES[3] in text
        # Households of a village are the sum of its grids when not given directly.
        assert "41 户" in text
    finally:
        _close_popups(page)
        toggle.locator("input").check()


@pytest.mark.browser
def test_vendor_files_are_served(base_url):
    import httpx

    files = vendor_files()
    assert any(p.endswith("fa-solid-900.woff2") for p in files)
    with httpx.Client(base_url=base_url) as client:
        for url_path in files:
            assert client.get(url_path).status_code == 200, url_path


# --- page weight at the reference town's scale (no browser) ---------------------------------


def reference_town(n_villages: int = 20, n_grids: int = 282, seed: int = 7) -> gpd.GeoDataFrame:
    """A town of 282 wiggly grids in 20 villages and 4 areas, about 9 x 8 km.

    Boundaries carry a vertex every 10 m displaced by a smooth function of position, so shared
    edges stay shared and survive simplification much like surveyed boundaries do.
    """
    rng = np.random.default_rng(seed)
    to_gk = Transformer.from_crs("EPSG:4326", "EPSG:4546", always_xy=True)
    cx, cy = to_gk.transform(112.17, 32.97)
    angles = np.linspace(0, 2 * math.pi, 720, endpoint=False)
    radius = 4500 * (1 + 0.12 * np.sin(3 * angles) + 0.05 * np.cos(7 * angles))
    ring = np.c_[cx + radius * np.cos(angles), cy + 0.9 * radius * np.sin(angles)]
    outline = shapely.Polygon(ring)

    def seeds(n):
        pts = []
        minx, miny, maxx, maxy = outline.bounds
        while len(pts) < n:
            p = shapely.Point(rng.uniform(minx, maxx), rng.uniform(miny, maxy))
            if outline.contains(p):
                pts.append(p)
        return shapely.MultiPoint(pts)

    cells = [c.intersection(outline) for c in shapely.voronoi_polygons(seeds(n_grids)).geoms]
    village_cells = [
        c.intersection(outline) for c in shapely.voronoi_polygons(seeds(n_villages)).geoms
    ]

    def wiggle(geom):
        geom = shapely.segmentize(geom, 10.0)
        return shapely.transform(
            geom,
            lambda xy: xy + 12.0 * np.c_[np.sin(xy[:, 1] / 37.0), np.cos(xy[:, 0] / 41.0)],
        )

    village_of = [int(np.argmax([vc.intersection(c).area for vc in village_cells])) for c in cells]
    village_order = sorted(
        range(n_villages), key=lambda v: (-village_cells[v].centroid.y, village_cells[v].centroid.x)
    )
    rows = []
    town_code = f"{TOWN}000000"
    area_of = {}
    for rank, v in enumerate(village_order):
        area_of[v] = 1 + (rank * 4) // n_villages
    for a in range(1, 5):
        members = [cells[i] for i in range(n_grids) if area_of[village_of[i]] == a]
        rows.append(
            {
                "code": f"{TOWN}9{a:02d}000",
                "name": f"第{a}片区",
                "level": 2,
                "parent_code": town_code,
                "geom": shapely.union_all(members),
            }
        )
    for rank, v in enumerate(village_order, start=1):
        vcode = f"{TOWN}{rank:03d}000"
        members = [i for i in range(n_grids) if village_of[i] == v]
        rows.append(
            {
                "code": vcode,
                "name": f"参考{rank}村",
                "level": 3,
                "parent_code": f"{TOWN}9{area_of[v]:02d}000",
                "geom": shapely.union_all([cells[i] for i in members]),
            }
        )
        members.sort(key=lambda i: (-cells[i].centroid.y, cells[i].centroid.x))
        for g, i in enumerate(members, start=1):
            rows.append(
                {
                    "code": f"{vcode[:12]}{g:03d}",
                    "name": f"参考{rank}村{g}组",
                    "level": 4,
                    "parent_code": vcode,
                    "geom": cells[i],
                }
            )
    rows.insert(
        0, {"code": town_code, "name": "参考镇", "level": 1, "parent_code": None, "geom": outline}
    )
    frame = gpd.GeoDataFrame(
        [{k: v for k, v in r.items() if k != "geom"} for r in rows],
        geometry=[wiggle(r["geom"]) for r in rows],
        crs="EPSG:4546",
    )
    return frame.to_crs("EPSG:4326")


def test_reference_town_page_stays_light():
    town = reference_town()
    assert (town.level == 4).sum() == 282
    staff = {
        c: [
            {"role": "leader", "name": "张*", "phone": "138****0000"},
            {"role": "member", "name": "李*", "phone": "139****0000"},
            {"role": "party_household", "name": "王*", "phone": "137****0000"},
        ]
        for c in town.loc[town.level == 4, "code"]
    }
    households = {c: 80 for c in town.loc[town.level == 4, "code"]}
    to_gk = Transformer.from_crs("EPSG:4326", "EPSG:4546", always_xy=True)
    w, s, e, n = town.total_bounds
    (x0, x1), (y0, y1) = to_gk.transform([w, e], [s, n])
    res = 10.0  # a 10 m DEM, the finest the product expects
    cols, rows = int((x1 - x0) / res) + 1, int((y1 - y0) / res) + 1
    yy, xx = np.mgrid[0:rows, 0:cols].astype(float)
    dem = 150 + 30 * np.sin(xx / 80) * np.cos(yy / 60)
    page = build_grid_map(
        town,
        staff_by_code=staff,
        household_counts=households,
        hillshade=hillshade_png(dem, Affine(res, 0, x0, 0, -res, y1), "EPSG:4546"),
        synthetic=True,
    )
    size = len(page.encode("utf-8"))
    print(f"reference town page: {size / 1e6:.2f} MB")
    assert size < 3_000_000
    assert not re.search(r"""(src|href)=["']https?://""", page)


# --- building blocks (no browser) ------------------------------------------------------------


def test_localize_points_every_asset_at_the_prefix_and_leaves_folium_alone():
    import folium

    from maps.offline import RemoteAssetError, localize, remote_urls

    before = list(folium.Map.default_js)
    m = folium.Map(tiles=None)
    folium.Marker([32.97, 112.17], icon=folium.Icon(prefix="fa", icon="house")).add_to(m)
    localize(m, "/assets/v")
    html = m.get_root().render()
    assert remote_urls(html) == []
    assert '<script src="/assets/v/leaflet/dist/leaflet.js">' in html
    assert folium.Map.default_js == before  # class defaults untouched for other maps

    class NeedsCdn(folium.MacroElement):
        default_js = [("left_pad", "https://cdn.example.com/left-pad.js")]

    m2 = folium.Map(tiles=None)
    m2.add_child(NeedsCdn())
    with pytest.raises(RemoteAssetError, match="left_pad"):
        localize(m2)


def test_assets_are_installed_with_the_files_their_stylesheets_load():
    missing = missing_assets()
    assert missing == [], f"run `{INSTALL_COMMAND}`; missing: {missing[:5]}"
    files = vendor_files()
    for url_path, path in files.items():
        assert url_path.startswith(DEFAULT_PREFIX + "/")
        assert path.resolve() == (ASSET_ROOT / url_path[len(DEFAULT_PREFIX) + 1 :]).resolve()
    names = {p.name for p in files.values()}
    assert {"fa-solid-900.woff2", "layers.png", "markers-soft.png"} <= names


def test_hillshade_is_lit_from_the_north_west_and_placed_in_lat_lon():
    from PIL import Image
    from rasterio.warp import transform_bounds

    dem, transform, crs = small_dem()
    png, bounds = hillshade_png(dem, transform, crs, nodata=-9999.0)
    rows, cols = dem.shape
    w, s, e, n = transform_bounds(
        crs,
        "EPSG:4326",
        transform.c,
        transform.f + transform.e * rows,
        transform.c + transform.a * cols,
        transform.f,
    )
    # The warped image covers the DEM; a 30 m cell is about 3e-4 degrees.
    assert bounds[0][0] <= s + 3e-4 and bounds[0][1] <= w + 3e-4
    assert bounds[1][0] >= n - 3e-4 and bounds[1][1] >= e - 3e-4
    assert bounds[1][0] - bounds[0][0] < (n - s) + 0.01
    img = np.asarray(Image.open(io.BytesIO(png)))
    assert img.ndim == 3 and img.shape[2] == 2  # grey + alpha
    assert img[..., 1].min() == 0 and img[..., 1].max() == 255  # nodata is transparent

    # A plane rising to the south-east faces north-west: brighter than flat ground.
    yy, xx = np.mgrid[0:50, 0:50].astype(float)
    flat = np.zeros((50, 50))
    tilted = (xx + yy) * 10.0

    def grey(a):
        data, _ = hillshade_png(a, Affine(30, 0, 600000, 0, -30, 3650000), "EPSG:4546")
        return float(np.asarray(Image.open(io.BytesIO(data)))[..., 0][10:-10, 10:-10].mean())

    assert grey(tilted) > grey(flat) > grey(-tilted)


def test_large_dems_are_reduced_to_max_size():
    from PIL import Image

    yy, xx = np.mgrid[0:3000, 0:2500].astype(np.float32)
    dem = 100 + 20 * np.sin(xx / 50) + 10 * np.cos(yy / 70)
    png, _ = hillshade_png(dem, Affine(5, 0, 600000, 0, -5, 3660000), "EPSG:4546", max_size=512)
    assert max(Image.open(io.BytesIO(png)).size) <= 512


def test_online_tiles_only_when_configured(town):
    html = build_grid_map(town)
    assert "L.tileLayer" not in html
    assert "wangge-synthetic-badge" not in html
    assert "<title>网格地图 — 样例镇</title>" in html
    html = build_grid_map(
        town, tile_url="https://tiles.example.org/{z}/{x}/{y}.png", tile_attribution="示例底图"
    )
    assert "L.tileLayer" in html and "tiles.example.org" in html
    with pytest.raises(ValueError, match="attribution"):
        build_grid_map(town, tile_url="https://tiles.example.org/{z}/{x}/{y}.png")


def test_popup_escapes_markup_in_names(town):
    evil = town.copy()
    evil.loc[evil.code == CLICK_GRID, "name"] = "</script><script>alert(1)</script>"
    html = build_grid_map(evil, staff_by_code=small_staff())
    assert "<script>alert(1)" not in html
    assert html.count("</script>") == html.count("<script")
