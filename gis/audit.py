"""The append-only audit log: every write and every read of personal fields, with who/when/where/why."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.auth.principal import Principal

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
    resource_ids: Iterable = (),
    reason: str | None = None,
    outcome: str = "ok",
    method: str | None = None,
    path: str | None = None,
    client_ip: str | None = None,
    actor: str | None = None,
    detail: dict | None = None,
) -> dict:
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


def record(session: Session, principal: Principal | None, action: str, **fields) -> None:
    """Append one row in the caller's transaction, so the record and the act commit together.

    `fields` are those of `params` (resource, resource_ids, reason, outcome, method, path, ...).
    """
    session.execute(_INSERT, params(principal, action, **fields))


def query(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    resource: str | None = None,
    resource_id: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict], int]:
    where, params = ["TRUE"], {"limit": limit, "offset": offset}
    for name, value, clause in (
        ("actor", actor, "actor = :actor"),
        ("action", action, "action = :action"),
        ("resource", resource, "resource = :resource"),
        ("resource_id", resource_id, ":resource_id = ANY(resource_ids)"),
        ("since", since, "at >= :since"),
        ("until", until, "at < :until"),
    ):
        if value is not None:
            where.append(clause)
            params[name] = value
    cond = " AND ".join(where)
    total = session.execute(text(f"SELECT count(*) FROM audit_log WHERE {cond}"), params).scalar_one()
    rows = session.execute(
        text(f"SELECT {', '.join(AUDIT_COLUMNS)} FROM audit_log WHERE {cond} ORDER BY id LIMIT :limit OFFSET :offset"),
        params,
    ).mappings()
    out = []
    for r in rows:
        d = dict(r)
        d["at"] = d["at"].isoformat()
        d["resource_ids"] = list(d["resource_ids"] or [])
        out.append(d)
    return out, total
