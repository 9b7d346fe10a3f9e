"""Reading the audit log (admins only). There is no route that edits or deletes it."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from api import schemas
from api.deps import NoNul, PageOffset, SessionDep, SettingsDep, check_page_limit
from api.exports import require_time_zone, table_response
from api.security import requires
from gis import audit
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.context import Context
from gis.spreadsheet import CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE

router = APIRouter(prefix="/audit", tags=["audit"])


def audit_filters(
    actor: Annotated[str | None, Query(max_length=64), NoNul] = None,
    action: Annotated[str | None, Query(max_length=40), NoNul] = None,
    resource: Annotated[str | None, Query(max_length=40), NoNul] = None,
    resource_id: Annotated[str | None, Query(max_length=64), NoNul] = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> audit.AuditFilters:
    require_time_zone(since=since, until=until)
    return audit.AuditFilters(actor=actor, action=action, resource=resource, resource_id=resource_id,
                              since=since, until=until)


@router.get("", summary="Audit rows, oldest first, with filters and paging", response_model=schemas.AuditPage,
            **schemas.DATA, responses=schemas.problems(*schemas.READ))
def read(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    _: Annotated[Principal, requires(Permission.VIEW_AUDIT)],
    filters: Annotated[audit.AuditFilters, Depends(audit_filters)],
    limit: Annotated[int, Query(ge=1)] = 100,
    offset: PageOffset = 0,
    after: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="continue after the row with this id")] = None,
) -> dict[str, Any]:
    check_page_limit(limit, settings)
    page = audit.list_audit(session, filters, limit=limit, offset=offset, after=after)
    next_url = None
    if page.next_after is not None:
        next_url = str(request.url.remove_query_params("offset").include_query_params(after=page.next_after))
    return {"total": page.total, "total_exact": page.total_exact, "offset": offset, "items": page.items,
            "next": next_url}


@router.get("/export", summary="The filtered audit log as CSV or xlsx (the export is audited too)",
            response_class=schemas.DownloadResponse,
            responses=schemas.download(CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE))
def export(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, requires(Permission.VIEW_AUDIT)],
    filters: Annotated[audit.AuditFilters, Depends(audit_filters)],
    format: Literal["csv", "xlsx"] = "csv",
) -> Response:
    cap = settings.max_audit_export_rows
    ctx = Context(principal, method=request.method, path=request.url.path)
    page = audit.export_audit(session, ctx, filters, max_rows=cap, fmt=format)
    extra = None
    if not page.total_exact:
        extra = {"X-Truncated": f"first {cap} of more than {cap} rows; narrow the filters"}
    return table_response(audit.EXPORT, page.items, "audit_log", page.total, format, extra)
