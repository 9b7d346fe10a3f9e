"""Map pages: interactive folium maps served with local assets only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import geopandas as gpd
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session

from api.deps import Reason, SessionDep, SettingsDep, request_context
from api.exports import require_time_zone
from api.security import require_page
from gis import households as hh
from gis.auth.principal import Principal
from gis.auth.roles import Permission, Role
from gis.codes import in_subtree
from gis.dataset_info import dataset_info
from gis.errors import InputError, NotFound, Problem
from gis.grids import store
from gis.incidents import service as incidents
from gis.incidents.categories import Category
from gis.incidents.loop import State
from gis.people import household_counts, staff_by_grid
from gis.settings import Settings

router = APIRouter(prefix="/maps", tags=["maps"])

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


@router.get("/grids", response_class=HTMLResponse, summary="Interactive map of the four grid levels")
def grid_map(
    session: SessionDep,
    settings: SettingsDep,
    _: Annotated[Principal, Depends(require_page(Permission.VIEW_GRIDS))],
) -> HTMLResponse:
    from maps.grid_map import build_grid_map

    missing = _missing_assets_page()
    if missing is not None:
        return missing
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


def _with_descendants(codes: Iterable[str], parents: Mapping[str, str | None]) -> set[str]:
    return {c for c in parents if in_subtree(c, codes, parents)}


def _scoped_focus(
    principal: Principal, grid_code: str | None, parents: Mapping[str, str | None]
) -> tuple[list[str], str | None]:
    """For grid staff and supervisors: (grids the page is about, the grid to query by)."""
    if grid_code is not None and in_subtree(grid_code, principal.scope_codes, parents):
        return [grid_code], grid_code
    # A grid outside their scope is not an error, it is simply not theirs: the page shows their
    # own grids' rows, and nothing says whether the other grid has any.
    return list(principal.scope_codes), None


def _household_focus(
    principal: Principal, grid_code: str | None, parents: Mapping[str, str | None]
) -> tuple[list[str] | None, str | None]:
    """(grids the page is about, None: those of the households shown; the grid to query by)."""
    if principal.scoped:
        return _scoped_focus(principal, grid_code, parents)
    if principal.role is Role.EMERGENCY:
        # Their rows are the households inside active emergencies, wherever those are.
        return None, grid_code
    if grid_code is None:
        raise InputError(
            Problem(
                ("query", "grid_code"),
                "choose a grid (a village or a group grid): the whole town is too many "
                "households for one map",
                "missing",
            )
        )
    return [grid_code], grid_code


def _page_options(session: Session, settings: Settings, title: str, place: str | None) -> dict[str, Any]:
    """What every point map page takes from the app: its title, assets, badge and base map."""
    return {
        "title": f"{title} — {place}" if place else title,
        "asset_prefix": ASSET_PREFIX,
        "synthetic": dataset_info(session, "sample_town") is not None,
        "tile_url": settings.tile_url,
        "tile_attribution": settings.tile_attribution,
    }


def _private_page(page: str) -> HTMLResponse:
    # Personal data: no copy may stay in a browser or proxy cache.
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


def _place_name(codes: list[str], names: Mapping[str, str]) -> str:
    shown = [names.get(c) or c for c in codes[:3]]
    return "、".join(shown) + ("等" if len(codes) > 3 else "")


class _Hierarchy:
    """The current grids with their parent links and names, as the map pages need them."""

    def __init__(self, session: Session) -> None:
        self.grids = store.current_grids(session)
        g = self.grids
        self.parents = {
            str(c): (str(p) if isinstance(p, str) and p else None)
            for c, p in zip(g["code"], g["parent_code"], strict=True)
        }
        self.names = {
            str(c): n for c, n in zip(g["code"], g["name"], strict=True) if isinstance(n, str)
        }
        self.levels = {str(c): int(v) for c, v in zip(g["code"], g["level"], strict=True)}

    def require(self, grid_code: str | None) -> None:
        if grid_code is not None and grid_code not in self.parents:
            raise NotFound(f"no current grid {grid_code}")

    def outlines(self, codes: Iterable[str], max_level: int = 4) -> gpd.GeoDataFrame:
        """The grids `codes` down to `max_level`; the town when there is nothing to outline."""
        g = self.grids
        chosen = g[g["code"].isin(set(codes)) & (g["level"] <= max_level)]
        # Nothing to outline (no row, or an empty scope): the town keeps the map readable.
        return chosen if not chosen.empty else g[g["level"] == 1]


@router.get(
    "/households",
    response_class=HTMLResponse,
    summary="Map of the households you may see, with personal fields masked as your role requires",
)
def household_map(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(require_page(Permission.VIEW_HOUSEHOLDS))],
    grid_code: HouseholdGridCode = None,
    reason: Reason = None,
) -> HTMLResponse:
    from maps import labels
    from maps.household_map import build_household_map

    missing = _missing_assets_page()
    if missing is not None:
        return missing
    town = _Hierarchy(session)
    town.require(grid_code)

    focus, query_code = _household_focus(principal, grid_code, town.parents)
    records, total = hh.list_households(
        session, principal, grid_code=query_code, limit=settings.max_features_per_page,
        ctx=request_context(request, principal, reason), fmt="map",
    )

    if focus is None:
        # Emergency teams: outline the group grids their households are in.
        outline_codes = {r["grid_code"] for r in records if r.get("grid_code")}
        place = labels.HOUSEHOLD_SCOPE_EMERGENCY
    else:
        outline_codes = _with_descendants(focus, town.parents)
        place = _place_name(focus, town.names)

    page = build_household_map(
        records,
        town.outlines(outline_codes),
        total=total,
        **_page_options(session, settings, labels.HOUSEHOLD_PAGE_TITLE, place),
    )
    return _private_page(page)


@router.get(
    "/incidents",
    response_class=HTMLResponse,
    summary="Map of the incidents you may see, coloured by category, overdue ones on top",
)
def incident_map(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(require_page(Permission.VIEW_INCIDENTS))],
    grid_code: IncidentGridCode = None,
    category: Category | None = None,
    state: State | None = None,
    since: OccurredSince = None,
    until: OccurredUntil = None,
    overdue: bool | None = None,
    reason: Reason = None,
) -> HTMLResponse:
    from maps import labels
    from maps.incident_map import build_incident_map

    require_time_zone(since=since, until=until)
    missing = _missing_assets_page()
    if missing is not None:
        return missing
    town = _Hierarchy(session)
    town.require(grid_code)
    if principal.scoped:
        focus, query_code = _scoped_focus(principal, grid_code, town.parents)
    else:
        focus = [grid_code] if grid_code else [c for c, level in town.levels.items() if level == 1]
        query_code = grid_code
    filters: dict[str, Any] = {
        "category": category.value if category else None,
        "state": state.value if state else None,
        "since": since,
        "until": until,
        "overdue": overdue,
    }
    records, total = incidents.list_incidents(
        session, request_context(request, principal, reason), grid_code=query_code,
        limit=settings.max_features_per_page, **filters,
    )

    # Group grids outline one village or grid well; under a whole area or the town there are
    # hundreds of them, heavier than the incidents they frame.
    deepest = 4 if min((town.levels.get(c, 4) for c in focus), default=4) >= 3 else 3
    place = _place_name(focus, town.names) if focus else None
    page = build_incident_map(
        records,
        town.outlines(_with_descendants(focus, town.parents), max_level=deepest),
        grid_names=town.names,
        total=total,
        reporter_masked=not incidents.reporter_shown(principal),
        filters=filters,
        **_page_options(session, settings, labels.INCIDENT_PAGE_TITLE, place),
    )
    return _private_page(page)
