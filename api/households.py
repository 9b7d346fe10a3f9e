"""Households (personal data): scoped rows, masked fields, every unmasked read audited."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from api import schemas
from api.deps import PageOffset, Reason, SessionDep, SettingsDep, check_page_limit, request_context
from api.exports import offset_next_link, point_feature, table_response
from api.grids import parse_bbox
from api.security import requires
from gis import households as hh
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.spreadsheet import PERSONAL, Table

router = APIRouter(prefix="/households", tags=["households"])


# Chinese column headers of the CSV export (UTF-8 with BOM so Excel shows them).
CSV_HEADERS = {
    "id": "编号", "household_no": "户号", "address": "地址", "head_name": "户主", "phone": "电话",
    "residents": "人数", "elderly": "65岁以上", "children": "儿童", "disabled": "残疾", "pregnant": "孕妇",
    "bedridden": "卧床", "floors": "楼层数", "natural_village": "自然村", "grid_code": "网格编码",
    "grid_name": "网格", "lon": "经度", "lat": "纬度", "personal_fields": "个人信息",
}
EXPORT = Table(CSV_HEADERS, labels={"personal_fields": PERSONAL})


@router.get("", summary="Households you may see (JSON, GeoJSON or CSV)", response_model=schemas.HouseholdPage,
            **schemas.DATA, responses=schemas.formats(geojson=schemas.HouseholdCollection))
def list_households(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, requires(Permission.VIEW_HOUSEHOLDS)],
    grid_code: Annotated[str | None, Query(pattern=r"^\d{15}$")] = None,
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat")] = None,
    limit: Annotated[int, Query(ge=1)] = 100,
    offset: PageOffset = 0,
    format: Literal["json", "geojson", "csv", "xlsx"] = "json",
    reason: Reason = None,
) -> Any:
    check_page_limit(limit, settings)
    records, total = hh.list_households(session, principal, grid_code=grid_code, bbox=parse_bbox(bbox),
                                        limit=limit, offset=offset, ctx=request_context(request, principal, reason),
                                        fmt=format)
    if format in ("csv", "xlsx"):
        return table_response(EXPORT, records, "households", total, format)
    if format == "geojson":
        fc = {
            "type": "FeatureCollection",
            "numberMatched": total,
            "numberReturned": len(records),
            "features": [point_feature(r) for r in records],
        }
        return Response(json.dumps(fc, ensure_ascii=False), media_type="application/geo+json")
    return {"total": total, "offset": offset, "items": records,
            "next": offset_next_link(request, offset, limit, total)}


@router.get("/counts", summary="Households, residents and vulnerable members per grid (no personal fields)",
            response_model=list[schemas.GridHouseholdCounts], **schemas.DATA,
            responses=schemas.problems(*schemas.READ))
def counts(session: SessionDep, _: Annotated[Principal, requires(Permission.VIEW_HOUSEHOLD_COUNTS)],
           level: Annotated[int | None, Query(ge=1, le=4)] = None) -> Any:
    return hh.counts_by_grid(session, level)


@router.get("/{household_id}", summary="One household with its members", response_model=schemas.HouseholdDetail,
            **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def one(request: Request, session: SessionDep, principal: Annotated[Principal, requires(Permission.VIEW_HOUSEHOLDS)],
        household_id: Annotated[int, PathParam(ge=1, le=2**62)], reason: Reason = None) -> Any:
    return hh.get_household(session, principal, household_id, ctx=request_context(request, principal, reason))
