"""Map pages: interactive folium maps served with local assets only."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from typing import Annotated

from fastapi import Depends

from api.deps import SessionDep, SettingsDep
from api.households import Reason, _audit_read
from api.security import require_page
from gis import households as hh
from gis.auth.principal import Principal
from gis.auth.roles import Permission, Role
from gis.errors import InputError, NotFound, Problem
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
):
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


def _within(code: str, ancestors: Iterable[str], parents: Mapping[str, str | None]) -> bool:
    """Whether grid `code` is one of `ancestors` or lies below one of them in the hierarchy."""
    targets, seen = set(ancestors), set()
    current: str | None = code
    while current and current not in seen:
        if current in targets:
            return True
        seen.add(current)
        current = parents.get(current)
    return False


def _with_descendants(codes: Iterable[str], parents: Mapping[str, str | None]) -> set[str]:
    return {c for c in parents if _within(c, codes, parents)}


def _household_focus(
    principal: Principal, grid_code: str | None, parents: Mapping[str, str | None]
) -> tuple[list[str] | None, str | None]:
    """(grids the page is about, None: those of the households shown; the grid to query by)."""
    if principal.scoped:
        if grid_code is not None and _within(grid_code, principal.scope_codes, parents):
            return [grid_code], grid_code
        # A grid outside their scope is not an error, it is simply not theirs: the page shows
        # their own households, and nothing says whether the other grid has any.
        return list(principal.scope_codes), None
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


def _place_name(codes: list[str], names: Mapping[str, str]) -> str:
    shown = [names.get(c) or c for c in codes[:3]]
    return "、".join(shown) + ("等" if len(codes) > 3 else "")


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
    grid_code: Annotated[
        str | None,
        Query(pattern=r"^\d{15}$", description="a grid of any level; required for town-wide roles"),
    ] = None,
    reason: Reason = None,
):
    from maps import labels
    from maps.household_map import build_household_map

    missing = _missing_assets_page()
    if missing is not None:
        return missing
    grids = store.current_grids(session)
    parents = {
        str(c): (str(p) if isinstance(p, str) and p else None)
        for c, p in zip(grids["code"], grids["parent_code"], strict=True)
    }
    names = {
        str(c): n for c, n in zip(grids["code"], grids["name"], strict=True) if isinstance(n, str)
    }
    if grid_code is not None and grid_code not in parents:
        raise NotFound(f"no current grid {grid_code}")

    focus, query_code = _household_focus(principal, grid_code, parents)
    records, total = hh.list_households(
        session, principal, grid_code=query_code, limit=settings.max_features_per_page
    )
    _audit_read(session, principal, request, records, reason, "map")

    if focus is None:
        # Emergency teams: outline the group grids their households are in.
        outline_codes = {r["grid_code"] for r in records if r.get("grid_code")}
        place = labels.HOUSEHOLD_SCOPE_EMERGENCY
    else:
        outline_codes = _with_descendants(focus, parents)
        place = _place_name(focus, names)
    outlines = grids[grids["code"].isin(outline_codes)]
    if outlines.empty:
        # Nothing to outline (no household, or an empty scope): the town keeps the map readable.
        outlines = grids[grids["level"] == 1]

    page = build_household_map(
        records,
        outlines,
        title=f"{labels.HOUSEHOLD_PAGE_TITLE} — {place}" if place else labels.HOUSEHOLD_PAGE_TITLE,
        total=total,
        asset_prefix=ASSET_PREFIX,
        synthetic=dataset_info(session, "sample_town") is not None,
        tile_url=settings.tile_url,
        tile_attribution=settings.tile_attribution,
    )
    # Personal data: no copy may stay in a browser or proxy cache.
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})
