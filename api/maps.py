"""Map pages: folium pages in the shell, served with local assets only, whose layers come by URL
(the grid, incident and household lists by view; the hot-spot page's own data route)."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.orm import Session

from api import schemas
from api.deps import Reason, SessionDep, SettingsDep
from api.exports import require_time_zone
from api.security import require_page, requires
from gis.auth.principal import Principal
from gis.auth.roles import Permission, Role
from gis.dataset_info import dataset_info
from gis.errors import NotFound
from gis.incidents import service as incidents
from gis.incidents.categories import Category
from gis.incidents.loop import State
from gis.settings import Settings
from maps import labels

router = APIRouter(prefix="/maps", tags=["maps"])
# The grid map's own data (JSON and an image): outside /maps, whose refusals are answered as pages.
data_router = APIRouter(prefix="/grids", tags=["maps"])

ASSET_PREFIX = "/static/vendor"


GRID_CODE_PATTERN = r"^\d{15}$"
HouseholdGridCode = Annotated[
    str | None, Query(pattern=GRID_CODE_PATTERN, description="a grid of any level; required for town-wide roles")
]
IncidentGridCode = Annotated[
    str | None, Query(pattern=GRID_CODE_PATTERN, description="a grid of any level: its whole subtree")
]


OccurredSince = Annotated[
    dt.datetime | None, Query(description="occurred at or after this time (with a time zone)")
]
OccurredUntil = Annotated[
    dt.datetime | None, Query(description="occurred before this time (with a time zone)")
]


def mount_assets(app: FastAPI) -> None:
    from maps.offline import ASSET_ROOT

    # check_dir=False: the app must import even before `npm ci`; the map page reports missing files.
    app.mount(ASSET_PREFIX, StaticFiles(directory=ASSET_ROOT, check_dir=False), name="vendor")


@lru_cache(maxsize=4)
def _hillshade_for(path: str, mtime: float) -> tuple[bytes, list[list[float]]]:
    import rasterio

    from maps.hillshade import hillshade_png

    with rasterio.open(path) as src:
        dem = src.read(1, masked=True).filled(float("nan"))
        return hillshade_png(dem, src.transform, src.crs)


def hillshade_layer(session: Session) -> tuple[bytes, list[list[float]]] | None:
    info = dataset_info(session, "dem")
    if not info:
        return None
    path = Path(info["path"])
    if not path.exists():
        return None
    return _hillshade_for(str(path), path.stat().st_mtime)


def _missing_assets_page() -> HTMLResponse | None:
    from maps.offline import missing_assets

    missing = missing_assets()
    if not missing:
        return None
    # A page without its scripts would fail silently in the browser; say what is wrong instead.
    return HTMLResponse(
        "<h1>地图资源未安装</h1><p>Map assets are missing; run <code>make setup</code>.</p><pre>"
        + "\n".join(missing[:20])
        + "</pre>",
        status_code=503,
    )


def _synthetic(session: Session) -> bool:
    return dataset_info(session, "sample_town") is not None


def _shell(session: Session, principal: Principal, path: str) -> Any:
    from maps.shell import page_shell

    return page_shell(session, principal, current=path)


def _page(page: str) -> HTMLResponse:
    # No data in the page itself; still no caching: the shell names who is logged in.
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


def _data_map(session: Session, settings: Settings, principal: Principal, path: str, *, title: str, script: str,
              config: dict[str, Any], bounds: Any, badge_hint: str, synthetic: bool) -> HTMLResponse:
    """A map page whose data comes by URL (grids, households, incidents): the shell for `principal` at `path`,
    the configured base map, the vector-tile plugin."""
    from maps.offline import ASSET_PATHS
    from maps.points import data_map_page

    return _page(data_map_page(
        title=title, shell=_shell(session, principal, path), script=script, config=config, bounds=bounds,
        badge_hint=badge_hint, synthetic=synthetic, tile_url=settings.tile_url,
        tile_attribution=settings.tile_attribution, scripts=[f"{ASSET_PREFIX}/{ASSET_PATHS['vectorGrid']}"],
    ))


@router.get("/grids", response_class=HTMLResponse, summary="Interactive map of the four grid levels")
def grid_map(
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(require_page(Permission.VIEW_GRIDS))],
) -> HTMLResponse:
    from maps import grid_map as page
    from maps.points import grid_bounds

    missing = _missing_assets_page()
    if missing is not None:
        return missing
    synthetic = _synthetic(session)
    hillshade = hillshade_layer(session)
    title = page.title(session, synthetic)
    return _data_map(
        session, settings, principal, "/maps/grids", title=title, script="grids.js",
        config=page.page_config(limit=settings.max_features_per_page,
                                hillshade_bounds=hillshade[1] if hillshade else None, synthetic=synthetic),
        bounds=grid_bounds(session, None), badge_hint=labels.SYNTHETIC_BADGE_HINT, synthetic=synthetic,
    )


@data_router.get("/hillshade.png", summary="The grid map's hillshade of the town's DEM (PNG)",
            response_class=Response, responses={200: {"content": {"image/png": {}}}, 404: {}})
def grid_map_hillshade(
    session: SessionDep,
    _: Annotated[Principal, requires(Permission.VIEW_GRIDS)],
) -> Response:
    hillshade = hillshade_layer(session)
    if hillshade is None:
        raise NotFound("no DEM has been imported")
    return Response(hillshade[0], media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


class StaffContact(BaseModel):
    role: str
    name: str | None
    phone: str | None


class GridCard(BaseModel):
    """One grid as its popup on the grid map shows it (staff contacts are public: the grid's board)."""

    code: schemas.GridCode
    name: str | None
    level: schemas.Level
    parent_code: schemas.GridCode | None
    parent_name: str | None
    staff: list[StaffContact]
    households: int = Field(description="households served (a house counts in its own grid and above)")


@data_router.get("/{code}/card", summary="One grid's card on the grid map: its staff and households",
            response_model=GridCard, **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def grid_card(
    session: SessionDep,
    _: Annotated[Principal, requires(Permission.VIEW_GRIDS)],
    code: Annotated[str, PathParam(pattern=GRID_CODE_PATTERN)],
) -> Any:
    from maps.grid_map import grid_card as card

    return card(session, code)


def _require_grid(session: Session, grid_code: str | None) -> None:
    if grid_code is not None and not ancestors(session, grid_code):
        raise NotFound(f"no current grid {grid_code}")


def ancestors(session: Session, code: str) -> list[str]:
    """Current grid `code` and the grids above it (empty: no such current grid)."""
    return list(session.execute(text(
        "WITH RECURSIVE up(code, parent_code, depth) AS ("
        "SELECT code, parent_code, 0 FROM grid WHERE code = :code AND valid_to IS NULL "
        "UNION ALL SELECT g.code, g.parent_code, up.depth + 1 FROM grid g JOIN up ON g.code = up.parent_code "
        "AND g.valid_to IS NULL WHERE up.depth < 8) SELECT code FROM up"), {"code": code}).scalars())


def _scoped_focus(session: Session, principal: Principal, grid_code: str | None) -> tuple[list[str], str | None]:
    """For grid staff and supervisors: (grids the page is about, the grid to query by)."""
    if grid_code is not None and set(ancestors(session, grid_code)) & set(principal.scope_codes):
        return [grid_code], grid_code
    # A grid outside their scope is not an error, it is simply not theirs: the page shows their
    # own grids' rows, and nothing says whether the other grid has any.
    return list(principal.scope_codes), None


def _focus(session: Session, principal: Principal, grid_code: str | None) -> tuple[str | None, Any]:
    """(the grid a household or incident map queries by, the map's bounds). Grid staff and supervisors: see
    _scoped_focus. Others: `grid_code`, or without one (the menu's link) the whole town, whose rows come by
    view, at most `limit` at a time, with a note to zoom in or choose a grid when there are more."""
    from maps.points import grid_bounds

    if principal.scoped:
        focus, query_code = _scoped_focus(session, principal, grid_code)
        return query_code, grid_bounds(session, focus)
    return grid_code, grid_bounds(session, [grid_code] if grid_code else None)


def _emergency_bounds(session: Session) -> list[list[float]] | None:
    row = session.execute(text(
        "SELECT ST_XMin(e) AS w, ST_YMin(e) AS s, ST_XMax(e) AS e, ST_YMax(e) AS n FROM "
        "(SELECT ST_Extent(extent) AS e FROM emergency WHERE closed_at IS NULL) x")).one()
    return None if row.w is None else [[float(row.s), float(row.w)], [float(row.n), float(row.e)]]


@router.get(
    "/households",
    response_class=HTMLResponse,
    summary="Map of the households you may see, with personal fields masked as your role requires",
)
def household_map(
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(require_page(Permission.VIEW_HOUSEHOLDS))],
    grid_code: HouseholdGridCode = None,
    reason: Reason = None,
) -> HTMLResponse:
    from maps import household_map as page
    from maps.points import grid_bounds

    missing = _missing_assets_page()
    if missing is not None:
        return missing
    _require_grid(session, grid_code)
    if principal.role is Role.EMERGENCY and not principal.scoped:
        # Their rows are the households inside active emergencies, wherever those are.
        query_code = grid_code
        bounds = grid_bounds(session, [grid_code]) if grid_code else (
            _emergency_bounds(session) or grid_bounds(session, None))
    else:
        query_code, bounds = _focus(session, principal, grid_code)
    return _data_map(
        session, settings, principal, "/maps/households", title=labels.HOUSEHOLD_PAGE_TITLE, script="households.js",
        config=page.page_config(query_code=query_code, reason=reason, limit=settings.max_features_per_page),
        bounds=bounds, badge_hint=labels.HOUSEHOLD_SYNTHETIC_HINT, synthetic=_synthetic(session),
    )


IncidentPageState = Annotated[
    State | Literal["all"] | None,
    Query(description="a loop state, or all (closed ones too); without it the open ones"),
]


@router.get(
    "/incidents",
    response_class=HTMLResponse,
    summary="Map of the incidents you may see: open ones by default, newest first, with filter controls",
)
def incident_map(
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(require_page(Permission.VIEW_INCIDENTS))],
    grid_code: IncidentGridCode = None,
    category: Category | None = None,
    state: IncidentPageState = None,
    since: OccurredSince = None,
    until: OccurredUntil = None,
    overdue: bool | None = None,
    reason: Reason = None,
) -> HTMLResponse:
    from maps import incident_map as page

    require_time_zone(since=since, until=until)
    missing = _missing_assets_page()
    if missing is not None:
        return missing
    _require_grid(session, grid_code)
    query_code, bounds = _focus(session, principal, grid_code)
    filters: dict[str, Any] = {
        "category": category.value if category else None,
        "state": state.value if isinstance(state, State) else state,
        "since": since,
        "until": until,
        "overdue": overdue,
    }
    return _data_map(
        session, settings, principal, "/maps/incidents", title=labels.INCIDENT_PAGE_TITLE, script="incidents.js",
        config=page.page_config(query_code=query_code, reason=reason, filters=filters,
                                limit=settings.max_features_per_page,
                                reporter_masked=not incidents.reporter_shown(principal)),
        bounds=bounds, badge_hint=labels.INCIDENT_SYNTHETIC_HINT, synthetic=_synthetic(session),
    )
