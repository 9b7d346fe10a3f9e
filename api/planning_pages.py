"""The planner's map page (/maps/planner); its data comes from /grids and /plans/suggestions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from api.deps import SessionDep, SettingsDep
from api.security import require_page
from gis.auth.principal import Principal
from gis.auth.roles import Permission

router = APIRouter(tags=["planning"])


@router.get("/maps/planner", response_class=HTMLResponse, include_in_schema=False)
def planner_page(
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(require_page(Permission.PLAN_GRIDS))],
) -> HTMLResponse:
    """Pick a village, ask for balanced regroupings, compare them with the current grids on the map."""
    from api.maps import ASSET_PREFIX, _missing_assets_page
    from gis.dataset_info import dataset_info
    from maps import planner_map
    from maps.offline import ASSET_PATHS
    from maps.points import STATIC, data_map_page, grid_bounds
    from maps.shell import page_shell

    missing = _missing_assets_page()
    if missing is not None:
        return missing
    page = data_map_page(
        title=planner_map.TITLE, shell=page_shell(session, principal, current="/maps/planner"),
        script="planner.js", config=planner_map.page_config(can_plan=principal.can(Permission.PLAN_GRIDS),
                                       can_publish=principal.can(Permission.EDIT_GRIDS)),
        bounds=grid_bounds(session, None), badge_hint=planner_map.SYNTHETIC_HINT,
        synthetic=dataset_info(session, "sample_town") is not None,
        tile_url=settings.tile_url, tile_attribution=settings.tile_attribution,
        scripts=[f"{ASSET_PREFIX}/{ASSET_PATHS['leaflet_geoman_js']}", STATIC + "planner_edit.js"],
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})
