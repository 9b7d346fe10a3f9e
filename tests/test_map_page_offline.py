"""The map pages' offline building blocks: vendor assets installed and served locally, folium's
assets pointed at them, the hillshade image. (The grid page itself: tests/test_map_page_api.py.)"""

from __future__ import annotations

import io

import numpy as np
import pytest
from affine import Affine
from pyproj import Transformer

from maps.hillshade import hillshade_png
from maps.offline import ASSET_ROOT, DEFAULT_PREFIX, INSTALL_COMMAND, missing_assets, vendor_files
from tests.browser import serve_app_in_thread

TOWN = "411324105"

# 1 town split into 2 areas (west/east), each into 2 villages (north/south), each into 2 grids.
WEST, SOUTH, EAST, NORTH = 112.15, 32.95, 112.19, 32.99


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


@pytest.fixture(scope="module")
def base_url():
    """The vendor files alone, served as the app mounts them."""
    missing = missing_assets()
    if missing:
        pytest.fail(
            f"{len(missing)} map asset file(s) missing (first: {missing[0]}); "
            f"run `{INSTALL_COMMAND}` in the repository root.",
            pytrace=False,
        )
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    app = Starlette(routes=[Mount(DEFAULT_PREFIX, app=StaticFiles(directory=ASSET_ROOT), name="vendor")])
    with serve_app_in_thread(app) as url:
        yield url


def test_vendor_files_are_served(base_url):
    import httpx

    files = vendor_files()
    assert any(p.endswith("fa-solid-900.woff2") for p in files)
    with httpx.Client(base_url=base_url) as client:
        for url_path in files:
            assert client.get(url_path).status_code == 200, url_path


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
