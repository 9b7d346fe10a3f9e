"""Authentication and authorisation for every endpoint: who is asking, and may they.

Each route declares exactly one of `Depends(require(Permission.X))` (usually as
`principal: Annotated[Principal, requires(Permission.X)]`, or as
`ctx: Annotated[Context, context_of(Permission.X)]` when it calls a core operation),
`Depends(require_page(...))` or `Depends(public)`. tests/test_permissions.py walks the app's
routes and fails for any route without one, so a new endpoint cannot ship without a rule.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request

from api.deps import Reason, SessionDep, client_ip, request_context
from gis.auth import accounts
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.context import Context
from gis.db import send_with_next, sent_rows

T = TypeVar("T")

__all__ = ["Check", "checks", "client_ip", "context_of", "public", "require", "require_page", "requires",
           "resolve_principal"]


class LoginRequired(Exception):
    """A browser page was asked for without a session: send the browser to the login page."""

    def __init__(self, next_path: str):
        self.next_path = next_path


def credential_check(request: Request) -> accounts.CredentialCheck | None:
    """The check of the credential the request carries: its bearer token, else its session cookie; None
    without either. A malformed Authorization header is refused (401), not taken as anonymous."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise HTTPException(401, "use 'Authorization: Bearer <token>'", headers={"WWW-Authenticate": "Bearer"})
        return accounts.token_check(credential.strip())
    cookie = request.cookies.get(request.app.state.settings.session_cookie_name)
    return accounts.session_check(cookie) if cookie else None


def resolve_principal(request: Request, session: Any) -> Principal | None:
    """The caller from a bearer token or the session cookie; a bad token is an error, not anonymous."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]  # request.state is untyped
    check = credential_check(request)
    principal = None
    if check is not None:
        principal = check.run(session, client_ip(request))
        _remember(check, principal)
    return _resolved(request, check, principal)


def _resolved(request: Request, check: accounts.CredentialCheck | None,
              principal: Principal | None) -> Principal | None:
    if principal is None and check is not None and check.via == "token":
        raise HTTPException(
            401,
            "the token is unknown, expired or revoked, or its user no longer holds its role or grids",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    request.state.principal = principal
    return principal


# What each credential was last found to grant in this process (by its hash; the oldest forgotten past the
# bound). Never trusted: only a guess to build a request's statements with, sent in one message with the
# credential's check and used only when that check, in the same transaction, finds the same (`Check.within`).
_LAST_SEEN: dict[str, Principal] = {}
_LAST_SEEN_MAX = 4096
_LAST_SEEN_LOCK = threading.Lock()


def _last_seen(check: accounts.CredentialCheck) -> Principal | None:
    return _LAST_SEEN.get(check.params["credential_hash"])


def _remember(check: accounts.CredentialCheck, principal: Principal | None) -> None:
    key = check.params["credential_hash"]
    with _LAST_SEEN_LOCK:
        _LAST_SEEN.pop(key, None)
        if principal is not None:
            _LAST_SEEN[key] = principal
            if len(_LAST_SEEN) > _LAST_SEEN_MAX:
                del _LAST_SEEN[next(iter(_LAST_SEEN))]


@functools.cache
def require(permission: Permission) -> Any:
    """An API dependency: 401 without credentials, 403 when the role lacks `permission`.

    One dependency per permission (cached), so a route that asks for the caller twice (directly
    and through `context_of`) is authorised once: FastAPI solves the same dependency once per request.
    """

    def dependency(request: Request, session: SessionDep) -> Principal:
        principal = resolve_principal(request, session)
        if principal is None:
            raise HTTPException(401, "log in or send a bearer token", headers={"WWW-Authenticate": "Bearer"})
        if not principal.can(permission):
            raise HTTPException(403, f"the role {principal.role} may not {permission.value.replace('_', ' ')}")
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency


def require_page(permission: Permission) -> Any:
    """Like `require`, for HTML pages: without a session the browser goes to the login page."""

    def dependency(request: Request, session: SessionDep) -> Principal:
        principal = resolve_principal(request, session)
        if principal is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginRequired(target)
        if not principal.can(permission):
            raise HTTPException(403, f"the role {principal.role} may not {permission.value.replace('_', ' ')}")
        return principal

    dependency.permission = permission  # type: ignore[attr-defined]
    return dependency


class Check:
    """The caller's check, to be run where the route does its database work (`check(session)` -> Principal).

    For routes whose whole work, the token check included, runs in ONE worker thread (`checks`): the same
    answers as `require` (401 without or with a bad credential, 403 without the permission), read from the
    database on every request as there (a revoked token is refused at once)."""

    def __init__(self, request: Request, permission: Permission):
        self.request = request
        self.permission = permission

    def __call__(self, session: Any) -> Principal:
        return self._allowed(resolve_principal(self.request, session))

    def _allowed(self, principal: Principal | None) -> Principal:
        if principal is None:
            raise HTTPException(401, "log in or send a bearer token", headers={"WWW-Authenticate": "Bearer"})
        if not principal.can(self.permission):
            raise HTTPException(
                403, f"the role {principal.role} may not {self.permission.value.replace('_', ' ')}")
        return principal

    def guess(self) -> tuple[Principal, tuple[str, dict[str, Any]]] | None:
        """What this credential was last found to grant in this process, with the SQL condition that holds while
        its check still finds the same (`CredentialCheck.unchanged`); None without one, or when it would be
        refused. For work that writes and commits in ONE statement guarded by that condition: it may then act
        for the guess, as what it writes is written only for the caller as found in the same statement; the
        request is then for that caller (`confirm`). Else (nothing written) the work goes the plain way,
        `work(check(session))`, so a changed credential is answered as it is found."""
        check = credential_check(self.request)
        if check is None or getattr(self.request.state, "principal", None) is not None:
            return None
        guess = _last_seen(check)
        if guess is None or guess.checked_as is None or not guess.can(self.permission):
            return None
        return replace(guess, client_ip=client_ip(self.request)), check.unchanged(guess.checked_as)

    def confirm(self, principal: Principal) -> Principal:
        """The request's caller is `principal`, found by a statement guarded by `guess`'s condition."""
        self.request.state.principal = principal
        return principal

    def within(self, session: Any, work: Callable[[Principal], T]) -> T:
        """`work(principal)` with this check sent in the same message as work's first statements (one round
        trip fewer per request: the tiles and the list).

        Work runs for what this credential was last found to grant in this process, and the check goes first
        in work's first message (`gis.db.send_with_next`), in the same transaction. Work's result is used only
        when that check finds the same caller; otherwise the answer is check(session)'s (401/403), or, when the
        caller's access changed since, work's again in a new transaction for the caller as found. If work
        fails, the request is done again the plain way (`work(check(session))`), so a refused credential is
        always answered 401/403 first. Without a guess (the first request of a credential here, or one the
        guess would refuse) this is `work(check(session))`.

        `work` must not commit, nor write anything outside its transaction: the caller commits after this
        returns (a statement's own in-message COMMIT is fine when all it wrote is the check's use stamp)."""
        check = credential_check(self.request)
        guess = _last_seen(check) if check is not None else None
        if (check is None or guess is None or not guess.can(self.permission)
                or getattr(self.request.state, "principal", None) is not None):
            return work(self(session))
        ip = client_ip(self.request)
        guess = replace(guess, client_ip=ip)
        send_with_next(session, check.sql, check.params)
        try:
            out = work(guess)
        except Exception:
            sent_rows(session)
            session.rollback()
            return work(self(session))
        rows = sent_rows(session)
        # None: work sent nothing through script_rows, so the check runs now, in its transaction.
        principal = check.principal(rows, ip) if rows is not None else check.run(session, ip)
        _remember(check, principal)
        self._allowed(_resolved(self.request, check, principal))
        if principal == guess:
            return out
        session.rollback()   # the caller's access changed since it was last seen: nothing of the guess is kept
        return work(self._allowed(principal))


@functools.cache
def checks(permission: Permission) -> Any:
    """The dependency of a route parameter `check: Annotated[Check, checks(Permission.X)]`: the route's one
    access rule, like `requires`, but run by the route itself (`check(session)`) inside the worker thread
    that does its database work, so a request makes one thread hop instead of two (the tiles: a map asks
    for dozens at once). Async and without I/O itself."""

    async def dependency(request: Request) -> Check:
        return Check(request, permission)

    dependency.permission = permission  # type: ignore[attr-defined]
    return Depends(dependency)


def public() -> None:
    """Marks a route that anyone may call (login, health)."""


public.permission = None  # type: ignore[attr-defined]


def login_redirect_url(next_path: str) -> str:
    return "/login?next=" + quote(next_path, safe="/")


def requires(permission: Permission) -> Any:
    """The dependency of a route parameter `principal: Annotated[Principal, requires(Permission.X)]`."""
    return Depends(require(permission))


@functools.cache
def context_of(permission: Permission, *, reason: bool = False) -> Any:
    """The dependency of a route parameter `ctx: Annotated[Context, context_of(Permission.X)]`.

    The caller is authorised as by `requires(Permission.X)` (that is the route's one access rule),
    then the request becomes a `gis.context.Context` (api.deps.request_context) for the core
    operation to audit with. With `reason=True` the route also takes the `reason` query parameter.
    The wrapper is `async`: building the context costs no thread hop on top of the check's.
    """
    # A default, not `Annotated[..., auth]`: annotations are strings here (PEP 563), and FastAPI
    # resolves them in the module's namespace, where the local `auth` is not.
    auth = Depends(require(permission))
    if reason:
        async def with_reason(request: Request, reason: Reason = None, principal: Principal = auth) -> Context:
            return request_context(request, principal, reason)

        return Depends(with_reason)

    async def context(request: Request, principal: Principal = auth) -> Context:
        return request_context(request, principal)

    return Depends(context)
