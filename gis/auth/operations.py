"""Account operations as the API and the CLI call them: each checks, acts and writes its audit row.

The functions in `gis.auth.accounts` store and read; these add who asked (a `Context`) and leave
the audit trail in the same transaction, so `api/accounts.py` and `wangge users ...` only parse,
authorise, call and shape, and the same act leaves the same row whichever door it came through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from gis.auth import accounts
from gis.auth.accounts import LoginPolicy, Token, User
from gis.auth.roles import Role
from gis.context import Context


def create_user(
    session: Session,
    ctx: Context,
    username: str,
    password: str,
    role: Role | str,
    *,
    scope_codes: list[str] | tuple[str, ...] = (),
    display_name: str | None = None,
) -> User:
    user = accounts.create_user(session, username, password, role, scope_codes=scope_codes,
                                display_name=display_name)
    ctx.audit(session, "create", resource="user", resource_ids=[user.id],
              detail={"role": str(user.role), "scope": list(user.scope_codes)})
    return user


# What an update may change; None for a field given means "unchanged" (accounts.update_user).
CHANGEABLE = frozenset({"role", "scope_codes", "active", "password", "display_name"})


def update_user(session: Session, ctx: Context, user_id: int, changes: Mapping[str, Any]) -> User:
    """Change the fields given in `changes` (keys of CHANGEABLE). The audit row names the fields
    given, never a password's value."""
    unknown = set(changes) - CHANGEABLE
    if unknown:
        raise ValueError(f"not changeable: {sorted(unknown)}")
    user = accounts.update_user(session, user_id, **changes)
    changed = sorted(k if k != "password" else "password(reset)" for k in changes)
    ctx.audit(session, "update", resource="user", resource_ids=[user_id], detail={"changed": changed})
    return user


def deactivate_user(session: Session, ctx: Context, user_id: int) -> User:
    """The account can no longer log in; its sessions end and its tokens stop working at once."""
    return update_user(session, ctx, user_id, {"active": False})


def set_password(session: Session, ctx: Context, username: str, password: str) -> User | None:
    """A new password for USERNAME (None when there is no such user); ends sessions, revokes tokens."""
    user = accounts.find_user(session, username)
    if user is None:
        return None
    return update_user(session, ctx, user.id, {"password": password})


def issue_token(
    session: Session,
    ctx: Context,
    user_id: int,
    name: str,
    *,
    role: Role | str | None = None,
    scope_codes: list[str] | None = None,
    expires_days: float | None = None,
) -> tuple[str, Token]:
    """A new API token; returns the secret (shown once) and the stored record."""
    secret, token = accounts.create_token(session, user_id, name, role=role, scope_codes=scope_codes,
                                          expires_days=expires_days)
    ctx.audit(session, "create", resource="api_token", resource_ids=[token.id],
              detail={"user_id": user_id, "role": token.role})
    return secret, token


def revoke_token(session: Session, ctx: Context, token_id: int) -> Token:
    token = accounts.revoke_token(session, token_id)
    ctx.audit(session, "revoke", resource="api_token", resource_ids=[token_id])
    return token


@dataclass(frozen=True)
class LoginOutcome:
    """A login's result: the user and the new session's cookie, or neither (a wrong password or an
    inactive account), or `retry_after_s` when the login was refused unchecked (throttled)."""

    user: User | None = None
    cookie: str | None = None
    retry_after_s: int | None = None


def login(session: Session, ctx: Context, username: str, password: str, policy: LoginPolicy,
          session_hours: float) -> LoginOutcome:
    """Check the password (throttled); on success a new browser session. Every outcome is audited.

    Three short steps instead of one transaction: (1) count the attempt under a lock and commit, so
    parallel guesses see it (a login waits only for other logins' counting, milliseconds each);
    (2) check the slow password hash holding no lock and no connection; (3) record the outcome and
    open the session (committed by the caller). A throttled login is rolled back (nothing was
    written, and the counting locks are released) before its audit row is written.
    """
    who = replace(ctx, principal=None, actor=username)   # not logged in yet: the name tried
    try:
        attempt = accounts.reserve_login_attempt(session, username, ctx.client_ip, policy)
    except (accounts.ThrottleBusy, accounts.TooManyAttempts) as exc:
        session.rollback()
        who.audit(session, "login", resource="session", outcome="throttled")
        return LoginOutcome(retry_after_s=getattr(exc, "retry_after_s", 1))
    session.commit()
    user = accounts.finish_login(session, attempt, password)
    who.audit(session, "login", resource="session", outcome="ok" if user else "failed",
              resource_ids=[user.id] if user else ())
    if user is None:
        return LoginOutcome()
    return LoginOutcome(user, accounts.create_session(session, user, ctx.client_ip, session_hours))


def logout(session: Session, ctx: Context) -> bool:
    """End the caller's browser session at once; False when the request carried none."""
    principal = ctx.principal
    if principal is None:
        return False
    if principal.session_id_hash:
        accounts.end_session(session, principal.session_id_hash)
        ctx.audit(session, "logout", resource="session")
    return True
