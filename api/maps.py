"""Map pages: interactive folium maps served with local assets only."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from typing import Annotated

from fastapi import Depends

from api.deps import SessionDep, SettingsDep
from api.security import require_page
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.grids import store
from gis.people import household_counts, staff_by_grid
from gis.sample_load import dataset_info

router = APIRouter(prefix="/maps", tags=["maps"])

ASSET_PREFIX = "/static/vendor"


def mount_assets(app: FastAPI) -> None:
    from maps.offline import ASSET_ROOT

    # check_dir=False: the app must import even before `npm ci`; the map page reports missing files.
    app.mount(ASSET_PREFIX, StaticFiles(directory=ASSET_ROOT, check_dir=False), name="vendor")


@lru_cache(maxsize=4)
def _hillshade_for(path: str, mtime: float):
    import rasterio

    from maps.hillshade import hillshade_png

    with rasterio.open(path) as src:
        dem = src.read(1, masked=True).filled(float("nan"))
        return hillshade_png(dem, src.transform, src.crs)


def hillshade_layer(session) -> tuple[bytes, tuple] | None:
    info = dataset_info(session, "dem")
    if not info:
        return None
    path = Path(info["path"])
    if not path.exists():
        return None
    return _hillshade_for(str(path), path.stat().st_mtime)


@router.get("/grids", response_class=HTMLResponse, summary="Interactive map of the four grid levels")
def grid_map(
    session: SessionDep,
    settings: SettingsDep,
    _: Annotated[Principal, Depends(require_page(Permission.VIEW_GRIDS))],
):
    from maps.grid_map import build_grid_map
    from maps.offline import missing_assets

    missing = missing_assets()
    if missing:
        # A page without its scripts would fail silently in the browser; say what is wrong instead.
        return HTMLResponse(
            "<h1>地图资源未安装</h1><p>Map assets are missing; run <code>make setup</code>.</p><pre>"
            + "\n".join(missing[:20])
            + "</pre>",
            status_code=503,
        )
    grids = store.current_grids(session)
    counts = household_counts(session)
    html = build_grid_map(
        grids,
        staff_by_code=staff_by_grid(session),
        household_counts={code: c["households"] for code, c in counts.items()},
        hillshade=hillshade_layer(session),
        tile_url=settings.tile_url,
        tile_attribution=settings.tile_attribution,
        asset_prefix=ASSET_PREFIX,
        synthetic=dataset_info(session, "sample_town") is not None,
    )
    return HTMLResponse(html)
