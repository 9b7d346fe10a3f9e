"""The append-only audit log: every write and every read of personal fields, with who/when/where/why."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.auth.principal import Principal
from gis.spreadsheet import Table

if TYPE_CHECKING:
    from gis.context import Context

AUDIT_COLUMNS = (
    "id", "at", "actor_id", "actor", "role", "via", "client_ip", "method", "path", "action",
    "resource", "resource_ids", "reason", "outcome", "detail",
)

# The columns an audit row is written with, and the parameters that fill them (see `params`).
INSERT_COLUMNS = ("actor_id, actor, role, via, client_ip, method, path, action, resource, resource_ids, reason, "
                  "outcome, detail")
_INSERT = text(
    f"""
    INSERT INTO audit_log ({INSERT_COLUMNS})
    VALUES (:actor_id, :actor, :role, :via, :ip, :method, :path, :action, :resource, :ids, :reason,
            :outcome, CAST(:detail AS jsonb))
    """
)


def params(
    principal: Principal | None,
    action: str,
    *,
    resource: str | None = None,
    resource_ids: Iterable[object] = (),
    reason: str | None = None,
    outcome: str = "ok",
    method: str | None = None,
    path: str | None = None,
    client_ip: str | None = None,
    actor: str | None = None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The values of one audit row, as bind parameters named like the columns (ip, ids)."""
    return {
        "actor_id": principal.user_id if principal else None,
        "actor": principal.username if principal else actor,
        "role": str(principal.role) if principal else None,
        "via": principal.via if principal else None,
        "ip": (principal.client_ip if principal else None) or client_ip,
        "method": method,
        "path": path,
        "action": action,
        "resource": resource,
        "ids": [str(i) for i in resource_ids],
        "reason": reason,
        "outcome": outcome,
        "detail": None if detail is None else json.dumps(detail, ensure_ascii=False, default=str),
    }


def record(session: Session, principal: Principal | None, action: str, *, commit: bool = False,
           **fields: Any) -> None:
    """Append one row in the caller's transaction, so the record and the act commit together.

    `fields` are those of `params` (resource, resource_ids, reason, outcome, method, path, ...). `commit`: the
    row and the COMMIT of the transaction go in one message (one round trip: a read's audit row, written last).
    """
    if commit:
        from gis.db import script_rows

        script_rows(session, [_INSERT.text, "COMMIT"], params(principal, action, **fields))
        return
    session.execute(_INSERT, params(principal, action, **fields))


# A count stops here: past it a list says "at least this many" (total_exact false), so neither a
# page nor its count reads more of a large log than this many index entries.
COUNT_UP_TO = 10_000

# The export's columns keep the API's field names (the filters and the JSON rows use them); times
# are Beijing time, the list and JSON columns (resource_ids, detail) JSON text.
EXPORT = Table({c: c for c in AUDIT_COLUMNS}, times=frozenset({"at"}))


@dataclass(frozen=True)
class AuditFilters:
    """Which rows of the log: every given filter must hold (AND)."""

    actor: str | None = None
    action: str | None = None
    resource: str | None = None
    resource_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        """The SQL condition and its parameters. Each filter has an index that yields rows in the
        list's order (at, id): audit_log_actor, _action, _resource, _at; resource_ids has a GIN index."""
        clauses, values = ["TRUE"], {}
        for name, value, clause in (
            ("actor", self.actor, "actor = :actor"),
            ("action", self.action, "action = :action"),
            ("resource", self.resource, "resource = :resource"),
            ("resource_id", self.resource_id, "resource_ids @> ARRAY[CAST(:resource_id AS text)]"),
            ("since", self.since, "at >= :since"),
            ("until", self.until, "at < :until"),
        ):
            if value is not None:
                clauses.append(clause)
                values[name] = value
        return " AND ".join(clauses), values

    def given(self) -> dict[str, str]:
        """The filters that were given, as text (for the export's own audit row)."""
        return {k: str(v) for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class AuditPage:
    items: list[dict[str, Any]]
    total: int  # rows matching the filters, exact up to the count limit
    total_exact: bool  # false: there are more than `total`
    next_after: int | None  # the id to continue after, None on the last page


def list_audit(
    session: Session,
    filters: AuditFilters,
    *,
    limit: int = 100,
    offset: int = 0,
    after: int | None = None,
    count_up_to: int = COUNT_UP_TO,
) -> AuditPage:
    """One page of the log, oldest first (at, then id), filtered and paged in SQL.

    `after` continues after the row with that id (keyset: a deep page costs what the first does);
    `offset` skips rows from there. `total` counts every row the filters match (not only those
    after `after`). The page and the count read at most `limit + offset` and `count_up_to` index
    entries, however long the log has grown.
    """
    cond, values = filters.where()
    counted = session.execute(
        text(f"SELECT count(*) FROM (SELECT 1 FROM audit_log WHERE {cond} LIMIT :count_limit) AS matched"),
        {**values, "count_limit": count_up_to + 1},
    ).scalar_one()
    if after is not None:
        cond += " AND (at, id) > (SELECT a.at, a.id FROM audit_log a WHERE a.id = :after)"
        values["after"] = after
    columns = ", ".join(AUDIT_COLUMNS)
    if filters.resource_id is not None and counted <= count_up_to:
        # The GIN index finds a resource's rows but not in the list's order, and the planner's
        # guess for `@>` (0.5% of the log) prefers walking audit_log_at past every other row.
        # The count just said the matches are few: fetch them by the GIN index, then sort.
        sql = (f"WITH matched AS MATERIALIZED (SELECT {columns} FROM audit_log WHERE {cond}) "
               f"SELECT {columns} FROM matched ORDER BY at, id LIMIT :limit OFFSET :offset")
    else:
        sql = f"SELECT {columns} FROM audit_log WHERE {cond} ORDER BY at, id LIMIT :limit OFFSET :offset"
    rows = session.execute(text(sql), {**values, "limit": limit + 1, "offset": offset}).mappings().all()
    items = [
        {**r, "at": r["at"].isoformat(), "resource_ids": list(r["resource_ids"] or [])} for r in rows[:limit]
    ]
    more = len(rows) > limit
    return AuditPage(
        items=items,
        total=min(int(counted), count_up_to),
        total_exact=int(counted) <= count_up_to,
        next_after=int(items[-1]["id"]) if more and items else None,
    )


def export_audit(session: Session, ctx: Context, filters: AuditFilters, *, max_rows: int, fmt: str) -> AuditPage:
    """The filtered log for an export (at most `max_rows`, oldest first), and the export's own audit row."""
    page = list_audit(session, filters, limit=max_rows, count_up_to=max_rows)
    ctx.audit(session, "export", resource="audit_log",
              detail={"rows": len(page.items), "format": fmt, "filters": filters.given()})
    return page
