"""Reading the audit log (admins only). There is no route that edits or deletes it."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from api import schemas
from api.deps import NoNul, SessionDep, SettingsDep, check_page_limit
from api.exports import require_time_zone, table_response
from api.security import requires
from gis import audit
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.spreadsheet import Table

router = APIRouter(prefix="/audit", tags=["audit"])

# The columns keep the API's field names (the filters and the JSON rows use them); times are
# Beijing time, the list and JSON columns (resource_ids, detail) JSON text.
EXPORT = Table({c: c for c in audit.AUDIT_COLUMNS}, times=frozenset({"at"}))


class Filters:
    def __init__(
        self,
        actor: Annotated[str | None, Query(max_length=64), NoNul] = None,
        action: Annotated[str | None, Query(max_length=40), NoNul] = None,
        resource: Annotated[str | None, Query(max_length=40), NoNul] = None,
        resource_id: Annotated[str | None, Query(max_length=64), NoNul] = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ):
        require_time_zone(since=since, until=until)
        self.kw = dict(actor=actor, action=action, resource=resource, resource_id=resource_id,
                       since=since, until=until)


@router.get("", summary="Audit rows, oldest first, with filters and paging", response_model=schemas.AuditPage,
            **schemas.DATA, responses=schemas.problems(*schemas.READ))
def read(session: SessionDep, settings: SettingsDep, _: Annotated[Principal, requires(Permission.VIEW_AUDIT)],
         filters: Annotated[Filters, Depends()],
         limit: Annotated[int, Query(ge=1)] = 100, offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0):
    check_page_limit(limit, settings)
    rows, total = audit.query(session, limit=limit, offset=offset, **filters.kw)
    return {"total": total, "offset": offset, "items": rows}


@router.get("/export", summary="The filtered audit log as CSV or xlsx (the export is audited too)",
            response_class=schemas.DownloadResponse,
            responses=schemas.download(schemas.CSV_MEDIA_TYPE, schemas.XLSX_MEDIA_TYPE))
def export(request: Request, session: SessionDep, settings: SettingsDep,
           principal: Annotated[Principal, requires(Permission.VIEW_AUDIT)], filters: Annotated[Filters, Depends()],
           format: Literal["csv", "xlsx"] = "csv"):
    cap = settings.max_audit_export_rows
    rows, total = audit.query(session, limit=cap, offset=0, **filters.kw)
    audit.record(session, principal, "export", resource="audit_log", method="GET", path=request.url.path,
                 detail={"rows": len(rows), "format": format,
                         "filters": {k: str(v) for k, v in filters.kw.items() if v is not None}})
    extra = None
    if total > cap:
        extra = {"X-Truncated": f"first {cap} of {total} rows; narrow the filters"}
    return table_response(EXPORT, rows, "audit_log", total, format, extra)
