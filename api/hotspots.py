"""Hot-spot endpoints: the analysis (JSON, GeoJSON, CSV), the incidents behind a unit, the map page."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from api import schemas
from api.deps import Reason, SessionDep, SettingsDep, request_context
from api.exports import require_time_zone, table_response
from api.security import require_page, requires
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.errors import Forbidden, InputError, NotFound, Problem
from gis.hotspots import service
from gis.hotspots.local_indicators import DEFAULT_PERMUTATIONS, DEFAULT_SEED
from gis.incidents import service as incident_service
from gis.incidents.categories import CATEGORY_NAMES_ZH, Category
from maps import labels

router = APIRouter(tags=["hotspots"])

CategoryParam = Annotated[str, Query(description="an incident category, or 'all'", max_length=20)]


def hotspot_query(
    unit: Annotated[
        Literal["grid", "hexagon"], Query(description="grids of one level, or hexagons")
    ] = "grid",
    level: Annotated[int, Query(ge=1, le=4, description="grid level of the units (2-4)")] = 4,
    hex_size_m: Annotated[float, Query(description="hexagon width in metres (100-5000)")] = 500.0,
    grid_code: Annotated[
        str | None, Query(pattern=r"^\d{15}$", description="analyse this grid's subtree")
    ] = None,
    category: CategoryParam = "dispute",
    dispute_kind: Annotated[str | None, Query(max_length=20)] = None,
    since: Annotated[
        dt.datetime | None, Query(description="occurred at or after (with a time zone)")
    ] = None,
    until: Annotated[
        dt.datetime | None, Query(description="occurred before (with a time zone)")
    ] = None,
    value: Annotated[
        Literal["count", "rate"], Query(description="count, or rate per 1,000 residents")
    ] = "count",
    smoothing: Annotated[
        Literal["none", "eb"], Query(description="eb: Empirical-Bayes rates")
    ] = "none",
    inference: Annotated[
        Literal["both", "exact", "permutation", "normal"],
        Query(description="which p-value decides significance"),
    ] = "both",
    permutations: Annotated[int, Query(ge=0, le=service.MAX_PERMUTATIONS)] = DEFAULT_PERMUTATIONS,
    seed: Annotated[int, Query(ge=0, le=2**32 - 1)] = DEFAULT_SEED,
    alpha: Annotated[float, Query(gt=0, lt=0.5)] = 0.05,
    fdr: bool = True,
    emerging: bool = True,
) -> service.HotspotQuery:
    require_time_zone(since=since, until=until)
    return service.HotspotQuery(
        unit=unit,
        level=level,
        hex_size_m=hex_size_m,
        grid_code=grid_code,
        category=None if category == "all" else category,
        dispute_kind=dispute_kind,
        since=since,
        until=until,
        value=value,
        smoothing=smoothing,
        inference=inference,
        permutations=permutations,
        seed=seed,
        alpha=alpha,
        fdr=fdr,
        emerging=emerging,
    )


QueryDep = Annotated[service.HotspotQuery, Depends(hotspot_query)]


@router.get(
    "/hotspots",
    summary="Hot spots of incidents: Gi*, FDR, bins, outliers, emerging trends "
    "(JSON, GeoJSON or CSV)",
    response_model=schemas.Hotspots,
    **schemas.DATA,
    responses=schemas.formats(geojson=schemas.HotspotCollection),
)
def hotspots(
    session: SessionDep,
    principal: Annotated[Principal, requires(Permission.VIEW_INCIDENTS)],
    query: QueryDep,
    format: Literal["json", "geojson", "csv", "xlsx"] = "json",
) -> Response:
    result = service.analyse(session, principal, query)
    if format in ("csv", "xlsx"):
        return table_response(
            labels.HOTSPOT_EXPORT,
            labels.hotspot_export_rows(service.unit_records(result)),
            "hotspots",
            len(result.units),
            format,
        )
    if format == "geojson":
        fc = {
            "type": "FeatureCollection",
            "meta": result.meta,
            "warnings": result.warnings,
            "features": service.unit_features(result),
        }
        return Response(
            json.dumps(fc, ensure_ascii=False, default=str), media_type="application/geo+json"
        )
    return JSONResponse(
        {"meta": result.meta, "warnings": result.warnings, "units": service.unit_records(result)}
    )


@router.get(
    "/hotspots/units/{unit_id}/incidents",
    summary="The incidents behind one unit of an analysis (same filters), as the incident list shows them",
    response_model=schemas.UnitIncidents,
    **schemas.DATA,
    responses=schemas.problems(*schemas.ONE),
)
def unit_incidents(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, requires(Permission.VIEW_INCIDENTS)],
    query: QueryDep,
    unit_id: Annotated[str, PathParam(pattern=r"^(\d{15}|h\d{2,4}_-?\d{1,7}_-?\d{1,7})$")],
    reason: Reason = None,
) -> Response:
    rows, total = service.unit_incident_records(
        session, principal, query, unit_id, settings.max_features_per_page
    )
    incident_service.record_reporter_reads(session, request_context(request, principal, reason), rows)
    return JSONResponse(
        json.loads(json.dumps({"unit_id": unit_id, "total": total, "items": rows}, default=str))
    )


# --- the map page ---------------------------------------------------------------------------------

LOCAL_TIME = dt.timezone(dt.timedelta(hours=8))
PAGE_UNITS = {
    "grid4": ("grid", 4, None),
    "grid3": ("grid", 3, None),
    "hex250": ("hexagon", 4, 250.0),
    "hex500": ("hexagon", 4, 500.0),
    "hex1000": ("hexagon", 4, 1000.0),
}
PageUnits = Literal["grid4", "grid3", "hex250", "hex500", "hex1000"]
MONTH_PATTERN = r"^\d{4}-\d{2}$"


def _month_start(value: str | None, field: str, *, after: bool = False) -> dt.datetime | None:
    if not value:
        return None
    try:
        year, month = (int(x) for x in value.split("-"))
        start = dt.datetime(year, month, 1, tzinfo=LOCAL_TIME)
        if after:  # the first moment after the month
            start = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=LOCAL_TIME)
    except ValueError:
        raise InputError(Problem(("query", field), "a month as YYYY-MM, e.g. 2024-03")) from None
    return start


@dataclass(frozen=True)
class PageQuery:
    """What the hot-spot page asks, in the page's own terms (a unit choice, months), and the analysis."""

    form: dict[str, str | None]
    analysis: service.HotspotQuery

    def drill_down_params(self) -> dict[str, Any]:
        """The analysis as query parameters of /hotspots/units/{id}/incidents (same units, same filters)."""
        q = self.analysis
        params: dict[str, Any] = {"unit": q.unit, "level": q.level, "hex_size_m": q.hex_size_m,
                                  "category": q.category or "all", "value": q.value, "smoothing": q.smoothing,
                                  "grid_code": q.grid_code, "dispute_kind": q.dispute_kind,
                                  "since": q.since.isoformat() if q.since else None,
                                  "until": q.until.isoformat() if q.until else None}
        return {k: v for k, v in params.items() if v is not None}


def page_query(
    units: Annotated[PageUnits, Query(description="grid4/grid3: grids of that level; hexN: N-metre hexagons")]
    = "grid4",
    category: CategoryParam = "dispute",
    dispute_kind: Annotated[str | None, Query(max_length=20)] = None,
    grid_code: Annotated[str | None, Query(pattern=r"^\d{15}$")] = None,
    since_month: Annotated[str | None, Query(max_length=7, description="YYYY-MM, Beijing time")] = None,
    until_month: Annotated[str | None, Query(max_length=7, description="YYYY-MM, the last month included")]
    = None,
    value: Annotated[Literal["count", "rate"], Query()] = "count",
    smoothing: Annotated[Literal["none", "eb"], Query()] = "none",
) -> PageQuery:
    unit, level, size = PAGE_UNITS[units]
    analysis = service.HotspotQuery(
        unit=unit,
        level=level,
        hex_size_m=size or 500.0,
        grid_code=grid_code,
        category=None if category == "all" else category,
        dispute_kind=dispute_kind,
        since=_month_start(since_month, "since_month"),
        until=_month_start(until_month, "until_month", after=True),
        value=value,
        smoothing=smoothing,
    )
    form = {"units": units, "category": category, "dispute_kind": dispute_kind, "grid_code": grid_code,
            "since_month": since_month, "until_month": until_month, "value": value, "smoothing": smoothing}
    return PageQuery(form, analysis)


PageQueryDep = Annotated[PageQuery, Depends(page_query)]


class PageUnitProperties(BaseModel):
    name: str | None
    incidents: int
    bin: int = Field(description="-3 … 3: cold to hot confidence bin")
    significant: bool
    outlier: str
    island: bool
    emerging: str | None
    status: Literal["hot", "hot_area", "cold", "neutral", "island"] = Field(
        description="hot_area: hot only through its neighbours, no incident of its own")
    headline: str = Field(description="what the unit is, in plain Chinese")
    story: list[str] = Field(description="the popup in plain Chinese: where, how many, how sure")
    stats: list[tuple[str, str | int | float | None]] = Field(description="(label, value): the statistics")
    style: dict[str, Any]
    emerging_style: dict[str, Any]


class PageUnitFeature(BaseModel):
    type: Literal["Feature"]
    id: str
    geometry: schemas.Area
    properties: PageUnitProperties


class DensityImage(BaseModel):
    image: str = Field(description="a PNG data URL")
    bounds: list[list[float]] = Field(description="[[south, west], [north, east]]")


class HotspotPageData(BaseModel):
    """The hot-spot page's data: the units with their words, or why there is no analysis."""

    refusal: list[str] | None = Field(description="why the analysis was refused, in Chinese (then no units)")
    summary: list[str]
    warnings: list[str]
    hot_areas: int = Field(description="units in a hot area without incidents of their own")
    drill_down: dict[str, Any] = Field(description="query parameters of /hotspots/units/{unit_id}/incidents")
    features: list[PageUnitFeature]
    density: DensityImage | None


@router.get(
    "/hotspots/map",
    summary="The hot-spot page's units: plain-words popups, styles, statistics one click away, density",
    response_model=HotspotPageData,
    **schemas.DATA,
    responses=schemas.problems(*schemas.READ),
)
def hotspot_page_units(
    session: SessionDep,
    principal: Annotated[Principal, requires(Permission.VIEW_INCIDENTS)],
    asked: PageQueryDep,
) -> Response:
    from maps.hotspot_map import density_overlay, page_features, period_text, refusal_lines

    query, form = asked.analysis, asked.form
    empty: dict[str, Any] = {"summary": [], "warnings": [], "hot_areas": 0, "features": [], "density": None,
                             "drill_down": asked.drill_down_params()}
    try:
        result = service.analyse(session, principal, query)
    except InputError as exc:
        if not all(p.type in service.GUARD_RAILS for p in exc.problems):
            raise  # a malformed request: problem+json like every other 4xx
        # A guard rail is an answer, not an error: the page says why and keeps the form.
        return JSONResponse({**empty, "refusal": refusal_lines(exc.problems)})
    records = service.unit_records(result)
    what = (CATEGORY_NAMES_ZH.get(Category(query.category), query.category)
            if query.category in {c.value for c in Category} else labels.HOTSPOT_WHAT_ALL)
    features = page_features(
        records, result.units.geometry.values,
        names={r["unit_id"]: r["name"] for r in records if r.get("name")},
        what=str(what), period=period_text(form["since_month"], form["until_month"]),
        rate=query.value == "rate",
    )
    hot_areas = sum(1 for f in features if f["properties"]["status"] == "hot_area")
    meta = result.meta
    unit_text = (labels.HOTSPOT_UNIT_LEVEL.get(query.level, "") if query.unit == "grid"
                 else labels.HOTSPOT_UNIT_HEX.format(size=int(query.hex_size_m)))
    summary = [
        unit_text + "：" + labels.HOTSPOT_SUMMARY.format(
            units=meta["units"], incidents=meta["incidents"], hot=meta["hot_spots"], cold=meta["cold_spots"]),
        labels.HOTSPOT_METHOD.format(alpha=query.alpha),
    ]
    if hot_areas:
        summary.insert(1, labels.HOTSPOT_SUMMARY_HOT_AREA.format(count=hot_areas))
    density = density_overlay(result.incident_xy, tuple(result.units.total_bounds))
    body = {
        **empty,
        "refusal": None,
        "summary": summary,
        "warnings": [labels.HOTSPOT_WARNINGS[kind].format(**values) for kind, values in result.notices],
        "hot_areas": hot_areas,
        "features": features,
        "density": {"image": density[0], "bounds": density[1]} if density else None,
    }
    return Response(json.dumps(body, ensure_ascii=False, default=str), media_type="application/json",
                    headers={"Cache-Control": "no-store"})


@router.get(
    "/maps/hotspots",
    response_class=HTMLResponse,
    summary="Hot-spot map: units hot to cold in plain words, the statistics and incidents one click away, "
    "density, time window",
)
def hotspot_map(
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(require_page(Permission.VIEW_INCIDENTS))],
    asked: PageQueryDep,
) -> Response:
    from api.maps import _missing_assets_page, ancestors
    from gis.dataset_info import dataset_info
    from maps.hotspot_map import page_config
    from maps.points import data_map_page
    from maps.shell import page_shell

    missing = _missing_assets_page()
    if missing is not None:
        return missing
    service.check_query(asked.analysis)
    code = asked.analysis.grid_code
    if code is not None:
        # The analysis' own refusals, before the page: no such grid (404), not one of yours (403).
        above = ancestors(session, code)
        if not above:
            raise NotFound(f"no current grid {code}")
        if principal.scoped and not set(above) & set(principal.scope_codes):
            raise Forbidden(f"grid {code} is outside your grids; hot spots are computed only from incidents "
                            "you may see")
    title = labels.HOTSPOT_PAGE_TITLE if asked.form["category"] == "dispute" else labels.HOTSPOT_PAGE_TITLE_ALL
    synthetic = dataset_info(session, "sample_town") is not None
    page = data_map_page(
        title=title, shell=page_shell(session, principal, current="/maps/hotspots"), script="hotspots.js",
        config=page_config(asked.form, asked.drill_down_params()), bounds=None,
        badge_hint=labels.HOTSPOT_SYNTHETIC_HINT, synthetic=synthetic,
        tile_url=settings.tile_url, tile_attribution=settings.tile_attribution,
    )
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})
