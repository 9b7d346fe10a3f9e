"""Who is acting, why and from where: the context every core operation is called with.

The API builds one per request (`api.deps.request_context`), the CLI one per command
(`Context.cli`). A core operation in `gis/` receives it, checks what it must, does its work and
writes its own audit row with `ctx.audit(...)` in the same transaction, so the adapters (`api/`,
`gis/cli.py`) only parse, authorise, call and shape — and the same operation leaves the same
trail whichever door it came through.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from gis import audit
from gis.auth.principal import Principal


@dataclass(frozen=True)
class Context:
    principal: Principal | None
    method: str | None = None  # the HTTP method, or "CLI"
    path: str | None = None  # the request path, or the CLI command line
    client_ip: str | None = None
    reason: str | None = None  # why personal data is read (X-Access-Reason / --reason)
    actor: str | None = None  # a name when there is no principal (the CLI, a failed login)

    @classmethod
    def cli(cls, command: str, *, reason: str | None = None, principal: Principal | None = None) -> Context:
        """The context of a CLI command, run by whoever is logged in on the machine."""
        return cls(principal=principal, method="CLI", path=command, reason=reason, actor=cli_actor())

    def with_reason(self, reason: str | None) -> Context:
        return replace(self, reason=reason)

    def audit(
        self,
        session: Session,
        action: str,
        *,
        resource: str | None = None,
        resource_ids: Iterable[object] = (),
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
        reason: str | None = None,
        commit: bool = False,
    ) -> None:
        """Append one audit row in the caller's transaction, so the record and the act commit together.
        `commit`: the row and the transaction's COMMIT go in one message (the operation is done)."""
        audit.record(
            session,
            self.principal,
            action,
            resource=resource,
            resource_ids=resource_ids,
            reason=reason if reason is not None else self.reason,
            outcome=outcome,
            method=self.method,
            path=self.path,
            client_ip=self.client_ip,
            actor=self.actor,
            detail=detail,
            commit=commit,
        )


def cli_actor() -> str:
    """`cli:<login name>` — who ran a CLI command, as the audit log records it."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "cli"
