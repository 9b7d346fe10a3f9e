"""Reading the audit log (admins only). There is no route that edits or deletes it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from api.deps import NoNul, SessionDep, SettingsDep, check_page_limit
from api.exports import require_time_zone
from api.security import P
from gis import audit
from gis.auth.roles import Permission

router = APIRouter(prefix="/audit", tags=["audit"])


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


@router.get("", summary="Audit rows, oldest first, with filters and paging")
def read(session: SessionDep, settings: SettingsDep, _: P(Permission.VIEW_AUDIT),
         filters: Annotated[Filters, Depends()],
         limit: Annotated[int, Query(ge=1)] = 100, offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0):
    check_page_limit(limit, settings)
    rows, total = audit.query(session, limit=limit, offset=offset, **filters.kw)
    return {"total": total, "offset": offset, "items": rows}


@router.get("/export", summary="The filtered audit log as CSV (the export itself is audited)")
def export(request: Request, session: SessionDep, settings: SettingsDep,
           principal: P(Permission.VIEW_AUDIT), filters: Annotated[Filters, Depends()]):
    cap = settings.max_audit_export_rows
    rows, total = audit.query(session, limit=cap, offset=0, **filters.kw)
    audit.record(session, principal, "export", resource="audit_log", method="GET", path=request.url.path,
                 detail={"rows": len(rows), "filters": {k: str(v) for k, v in filters.kw.items() if v is not None}})
    buf = io.StringIO()
    buf.write("\ufeff")
    writer = csv.writer(buf)
    writer.writerow(audit.AUDIT_COLUMNS)
    for r in rows:
        writer.writerow([json.dumps(r[c], ensure_ascii=False) if c in ("detail", "resource_ids") else r[c]
                         for c in audit.AUDIT_COLUMNS])
    headers = {"Content-Disposition": 'attachment; filename="audit_log.csv"', "X-Total-Count": str(total)}
    if total > cap:
        headers["X-Truncated"] = f"first {cap} of {total} rows; narrow the filters"
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)
