"""Accounts, API tokens, browser sessions and login throttling, stored in PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from gis.auth.passwords import hash_password, needs_rehash, password_problem, verify_password
from gis.auth.principal import Principal, narrowed_access
from gis.auth.roles import SCOPED_ROLES, Role
from gis.db import first_rows
from gis.errors import InputError, NotFound, Problem

TOKEN_PREFIX = "wg_"


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class User:
    id: int
    username: str
    display_name: str | None
    role: Role
    scope_codes: tuple[str, ...]
    active: bool
    is_demo: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "display_name": self.display_name,
            "role": str(self.role),
            "scope_codes": list(self.scope_codes),
            "active": self.active,
        }


_USER_COLUMNS = "id, username, display_name, role, scope_codes, active, is_demo"


def _user(row: Any) -> User:
    return User(row.id, row.username, row.display_name, Role(row.role), tuple(row.scope_codes or ()),
                row.active, row.is_demo)


def check_scope(session: Session, role: Role, scope_codes: list[str] | tuple[str, ...],
                loc: tuple[str | int, ...]) -> None:
    """Scoped roles need current grids as scope: group grids for grid staff, villages for supervisors."""
    if role not in SCOPED_ROLES:
        if scope_codes:
            raise InputError(Problem(loc, f"role {role} is not limited to grids; leave scope empty"))
        return
    if not scope_codes:
        raise InputError(Problem(loc, f"role {role} needs at least one grid code as scope"))
    found: dict[str, int] = dict(
        session.execute(
            text("SELECT code, level FROM grid WHERE valid_to IS NULL AND code = ANY(:c)"),
            {"c": list(scope_codes)},
        ).all()
    )
    problems = [
        Problem(loc + (i,), f"{code} is not a current grid", "unknown_grid")
        for i, code in enumerate(scope_codes)
        if code not in found
    ]
    if problems:
        raise InputError(problems)


def create_user(
    session: Session,
    username: str,
    password: str,
    role: Role | str,
    *,
    scope_codes: list[str] | tuple[str, ...] = (),
    display_name: str | None = None,
    is_demo: bool = False,
) -> User:
    role = Role(role)
    problem = password_problem(password)
    if problem:
        raise InputError(Problem(("body", "password"), problem, "weak_password"))
    check_scope(session, role, scope_codes, ("body", "scope_codes"))
    exists = session.execute(
        text("SELECT 1 FROM app_user WHERE lower(username) = lower(:u)"), {"u": username}
    ).first()
    if exists:
        raise InputError(Problem(("body", "username"), f"the username {username} is taken", "duplicate"))
    row = session.execute(
        text(
            "INSERT INTO app_user (username, display_name, password_hash, role, scope_codes, is_demo) "
            f"VALUES (:u, :d, :h, :r, :s, :demo) RETURNING {_USER_COLUMNS}"
        ),
        {"u": username, "d": display_name, "h": hash_password(password), "r": str(role),
         "s": list(scope_codes), "demo": is_demo},
    ).one()
    return _user(row)


def get_user(session: Session, user_id: int) -> User:
    row = session.execute(text(f"SELECT {_USER_COLUMNS} FROM app_user WHERE id = :i"), {"i": user_id}).first()
    if row is None:
        raise NotFound(f"no user with id {user_id}")
    return _user(row)


def find_user(session: Session, username: str) -> User | None:
    row = session.execute(
        text(f"SELECT {_USER_COLUMNS} FROM app_user WHERE lower(username) = lower(:u)"), {"u": username}
    ).first()
    return _user(row) if row else None


def list_users(session: Session) -> list[User]:
    return [_user(r) for r in session.execute(text(f"SELECT {_USER_COLUMNS} FROM app_user ORDER BY id"))]


def update_user(
    session: Session,
    user_id: int,
    *,
    role: Role | str | None = None,
    scope_codes: list[str] | None = None,
    active: bool | None = None,
    password: str | None = None,
    display_name: str | None = None,
) -> User:
    user = get_user(session, user_id)
    new_role = Role(role) if role is not None else user.role
    new_scope = tuple(scope_codes) if scope_codes is not None else user.scope_codes
    if new_role not in SCOPED_ROLES and scope_codes is None:
        new_scope = ()
    check_scope(session, new_role, new_scope, ("body", "scope_codes"))
    params = {"i": user_id, "r": str(new_role), "s": list(new_scope),
              "a": user.active if active is None else active,
              "d": display_name if display_name is not None else user.display_name}
    sets = "role = :r, scope_codes = :s, active = :a, display_name = :d, updated_at = now()"
    if password is not None:
        problem = password_problem(password)
        if problem:
            raise InputError(Problem(("body", "password"), problem, "weak_password"))
        sets += ", password_hash = :h"
        params["h"] = hash_password(password)
    session.execute(text(f"UPDATE app_user SET {sets} WHERE id = :i"), params)
    changed_access = new_role != user.role or new_scope != user.scope_codes or active is False
    if changed_access or password is not None:
        # A changed role, scope, password or a deactivation takes effect at once: end every session.
        # Tokens are narrowed to the user's current role and scope on every request
        # (token_check), so they follow a role or scope change by themselves.
        end_sessions(session, user_id)
    if password is not None:
        # A new password is how an owner shuts out whoever learnt the old one: that person may
        # also have issued themselves tokens, so none issued before it stays valid.
        revoke_tokens(session, user_id)
    return get_user(session, user_id)


# --- login throttling -----------------------------------------------------------------------


class TooManyAttempts(Exception):
    def __init__(self, retry_after_s: int):
        self.retry_after_s = retry_after_s
        super().__init__(f"too many failed logins; try again in {retry_after_s} s")


class ThrottleBusy(Exception):
    """Other logins for the same account or address kept the counter locked too long: try again."""


@dataclass(frozen=True)
class LoginPolicy:
    """When logins are refused (see README, "Accounts"): per account *and* client address, so
    guessing from elsewhere cannot lock the owner out; per address over all accounts; and a
    back-off per account over all addresses, so guessing spread over many addresses stays slow."""

    max_failures: int = 5             # per account and client address, within the window
    max_failures_per_ip: int = 30     # per client address, all accounts
    window_minutes: int = 15
    account_backoff_after: int = 10   # failures for the account from all addresses, then back off
    account_backoff_base_s: float = 1.0
    account_backoff_max_s: float = 60.0


@dataclass(frozen=True)
class LoginAttempt:
    """A counted attempt (a failure until the password proves right) and the account row."""

    id: int
    user_row: Any | None   # the app_user row with its password hash; None for an unknown name


# First keys of the two-key advisory locks that serialise counting (distinct from the one-key
# locks used elsewhere). Every login takes its address's lock before its account's, so two logins
# never wait for each other in a cycle.
_LOGIN_LOCK_ADDRESS = 0x57474C41
_LOGIN_LOCK_ACCOUNT = 0x57474C55


def reserve_login_attempt(session: Session, username: str, client_ip: str | None,
                          policy: LoginPolicy, *, lock_timeout_ms: int = 2000) -> LoginAttempt:
    """Count the attempt before the password is checked, atomically, or refuse it.

    The attempt is inserted as a failure under advisory locks on its address and account, so
    parallel guesses see each other and at most the limit get through. The caller ends the
    transaction at once (releasing the locks: they are held for a few statements, never across a
    password hash) and checks the password afterwards, holding neither lock nor connection.
    Raises TooManyAttempts with the seconds to wait, or ThrottleBusy when the locks were not had
    within `lock_timeout_ms` (the transaction is then aborted: the caller rolls back).
    """
    user_row = session.execute(
        text(f"SELECT {_USER_COLUMNS}, password_hash FROM app_user "
             "WHERE lower(username) = lower(:u)"),
        {"u": username},
    ).first()
    session.execute(text("SELECT set_config('lock_timeout', :t, true)"),
                    {"t": f"{lock_timeout_ms}ms"})
    try:
        # Two statements: the count's snapshot must be taken after the locks are held, so that
        # it sees the attempt the previous holder committed.
        session.execute(
            text("SELECT pg_advisory_xact_lock(:a, hashtext(coalesce(:ip, ''))), "
                 "pg_advisory_xact_lock(:b, hashtext(lower(:u)))"),
            {"a": _LOGIN_LOCK_ADDRESS, "b": _LOGIN_LOCK_ACCOUNT, "ip": client_ip, "u": username},
        )
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
            raise ThrottleBusy() from exc
        raise
    row = session.execute(
        text(
            """
            WITH recent AS (
              SELECT lower(username) = lower(:u) AS same_user,
                     client_ip IS NOT DISTINCT FROM :ip AS same_ip, at
              FROM login_attempt
              WHERE NOT success AND at > now() - make_interval(mins => :w)
                AND (lower(username) = lower(:u) OR client_ip = :ip)
            )
            SELECT
              count(*) FILTER (WHERE same_user AND same_ip) AS by_user_ip,
              min(at) FILTER (WHERE same_user AND same_ip) AS first_user_ip,
              count(*) FILTER (WHERE same_ip) AS by_ip,
              min(at) FILTER (WHERE same_ip) AS first_ip,
              count(*) FILTER (WHERE same_user) AS by_user,
              max(at) FILTER (WHERE same_user) AS last_user,
              now() AS now
            FROM recent
            """
        ),
        {"u": username, "ip": client_ip, "w": policy.window_minutes},
    ).one()
    window = dt.timedelta(minutes=policy.window_minutes)
    for count, first, cap in ((row.by_user_ip, row.first_user_ip, policy.max_failures),
                              (row.by_ip, row.first_ip, policy.max_failures_per_ip)):
        if count >= cap and first is not None:
            raise TooManyAttempts(max(1, int((first + window - row.now).total_seconds())))
    over = row.by_user - policy.account_backoff_after
    if over >= 0 and row.last_user is not None:
        # Doubling per failure beyond the threshold, capped: the owner waits at most the cap.
        delay = min(policy.account_backoff_base_s * 2.0 ** over, policy.account_backoff_max_s)
        wait = (row.last_user + dt.timedelta(seconds=delay) - row.now).total_seconds()
        if wait > 0:
            raise TooManyAttempts(max(1, math.ceil(wait)))
    attempt_id = session.execute(
        text("INSERT INTO login_attempt (username, client_ip, success) "
             "VALUES (:u, :ip, false) RETURNING id"),
        {"u": username[:64], "ip": client_ip},
    ).scalar_one()
    return LoginAttempt(attempt_id, user_row)


def finish_login(session: Session, attempt: LoginAttempt, password: str) -> User | None:
    """Check the password of a reserved attempt: the user when it is right and the account active.

    The (slow) hash is checked before the session is used again, so no connection is held meanwhile.
    """
    row = attempt.user_row
    ok = verify_password(password, row.password_hash if row else None) and bool(row and row.active)
    if not ok or row is None:
        return None
    session.execute(text("UPDATE login_attempt SET success = true WHERE id = :i"),
                    {"i": attempt.id})
    if needs_rehash(row.password_hash):
        session.execute(text("UPDATE app_user SET password_hash = :h WHERE id = :i"),
                        {"h": hash_password(password), "i": row.id})
    return _user(row)


# --- browser sessions -----------------------------------------------------------------------


def create_session(session: Session, user: User, client_ip: str | None, hours: float) -> str:
    """A new session; returns the cookie value (only its hash is stored)."""
    value = secrets.token_urlsafe(32)
    session.execute(
        text(
            "INSERT INTO web_session (id_hash, user_id, expires_at, client_ip) "
            "VALUES (:h, :u, now() + make_interval(secs => :s), :ip)"
        ),
        {"h": _sha256(value), "u": user.id, "s": hours * 3600, "ip": client_ip},
    )
    return value


def principal_of_account(session: Session, username: str, via: str = "cli") -> Principal | None:
    """The active account USERNAME acting with its role and grids (the CLI's --as); None when there is none."""
    user = session.execute(
        text("SELECT id, username, role, scope_codes FROM app_user WHERE username = :u AND active"), {"u": username}
    ).first()
    if user is None:
        return None
    return Principal(user.id, user.username, Role(user.role), tuple(user.scope_codes or ()), via)


def end_session(session: Session, id_hash: str) -> None:
    session.execute(text("UPDATE web_session SET revoked_at = now() WHERE id_hash = :h AND revoked_at IS NULL"),
                    {"h": id_hash})


def end_sessions(session: Session, user_id: int) -> None:
    session.execute(
        text("UPDATE web_session SET revoked_at = now() WHERE user_id = :u AND revoked_at IS NULL"),
        {"u": user_id},
    )


# --- API tokens -----------------------------------------------------------------------------


@dataclass
class Token:
    id: int
    user_id: int
    name: str
    token_prefix: str
    role: str | None
    scope_codes: tuple[str, ...] | None
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "user_id": self.user_id, "name": self.name, "prefix": self.token_prefix,
            "role": self.role, "scope_codes": list(self.scope_codes) if self.scope_codes is not None else None,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
        }


_TOKEN_COLUMNS = ("id, user_id, name, token_prefix, role, scope_codes, created_at, expires_at, "
                  "revoked_at, last_used_at")


def create_token(
    session: Session,
    user_id: int,
    name: str,
    *,
    role: Role | str | None = None,
    scope_codes: list[str] | None = None,
    expires_days: float | None = None,
) -> tuple[str, Token]:
    """A new token for `user_id`; returns the secret (shown once) and the stored record.

    A token may narrow its user's rights (a lower role or a smaller scope) but never widen them."""
    user = get_user(session, user_id)
    if role is not None and Role(role) != user.role and user.role is not Role.ADMIN:
        raise InputError(Problem(("body", "role"), "a token can only have its user's role (or any, for admins)"))
    eff_role = Role(role) if role is not None else user.role
    if scope_codes is not None:
        check_scope(session, eff_role, scope_codes, ("body", "scope_codes"))
        if user.role in SCOPED_ROLES and not set(scope_codes) <= set(user.scope_codes):
            raise InputError(Problem(("body", "scope_codes"), "a token's scope must lie within its user's scope"))
    elif eff_role in SCOPED_ROLES and eff_role != user.role:
        raise InputError(Problem(("body", "scope_codes"), f"a {eff_role} token needs a scope"))
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = session.execute(
        text(
            "INSERT INTO api_token (user_id, name, token_prefix, token_hash, role, scope_codes, expires_at) "
            "VALUES (:u, :n, :p, :h, :r, :s, CASE WHEN CAST(:d AS float8) IS NULL THEN NULL "
            "ELSE now() + make_interval(secs => CAST(:d AS float8) * 86400) END) "
            f"RETURNING {_TOKEN_COLUMNS}"
        ),
        {"u": user_id, "n": name, "p": secret[:10], "h": _sha256(secret),
         "r": str(role) if role is not None else None, "s": scope_codes, "d": expires_days},
    ).one()
    return secret, Token(*row)


def list_tokens(session: Session, user_id: int | None = None) -> list[Token]:
    sql = f"SELECT {_TOKEN_COLUMNS} FROM api_token"
    params = {}
    if user_id is not None:
        sql += " WHERE user_id = :u"
        params["u"] = user_id
    return [Token(*r) for r in session.execute(text(sql + " ORDER BY id"), params)]


def revoke_token(session: Session, token_id: int) -> Token:
    row = session.execute(
        text(f"UPDATE api_token SET revoked_at = coalesce(revoked_at, now()) WHERE id = :i RETURNING {_TOKEN_COLUMNS}"),
        {"i": token_id},
    ).first()
    if row is None:
        raise NotFound(f"no token with id {token_id}")
    return Token(*row)


def revoke_tokens(session: Session, user_id: int) -> None:
    session.execute(
        text("UPDATE api_token SET revoked_at = now() WHERE user_id = :u AND revoked_at IS NULL"),
        {"u": user_id},
    )


# --- a credential's check as one statement ---------------------------------------------------------------


@dataclass(frozen=True)
class CredentialCheck:
    """The check of one credential (an API token or a browser session) as ONE statement: its SQL, its one
    parameter (`credential_hash`: a name no other statement uses, so it can be sent in one message with a
    route's own statements, `api.security.Check.within`), and how its rows make the caller."""

    source: str   # the check's function, called with its parameter: one row per caller found (none or one)
    params: dict[str, Any]
    via: str   # token | session

    @property
    def sql(self) -> str:
        """The check: the function's row, and that row as text (`checked_as`, what the caller is made from)."""
        return f"SELECT c.*, c::text AS checked_as FROM {self.source} c"

    def run(self, session: Session, client_ip: str | None) -> Principal | None:
        """The caller, checked now: the statement alone (with its transaction's BEGIN, `first_rows`)."""
        return self.principal(first_rows(session, self.sql, self.params), client_ip)

    def principal(self, rows: list[dict[str, Any]], client_ip: str | None) -> Principal | None:
        """The caller its rows name, None when there are none (unknown, expired, revoked, or out of role)."""
        if not rows:
            return None
        row = rows[0]
        if self.via == "session":
            return Principal(row["id"], row["username"], Role(row["role"]), tuple(row["scope_codes"] or ()),
                             "session", client_ip, session_id_hash=row["id_hash"], checked_as=row["checked_as"])
        access = narrowed_access(row["user_role"], row["user_scope"] or (), row["token_role"], row["token_scope"])
        if access is None:
            return None
        role, scope = access
        return Principal(row["user_id"], row["username"], role, scope, "token", client_ip, token_id=row["id"],
                         checked_as=row["checked_as"])

    def unchanged(self, checked_as: str) -> tuple[str, dict[str, Any]]:
        """An SQL condition, with its parameters, that holds while this check still finds the row `checked_as`
        (a `Principal.checked_as`): the caller made from it is then the same. For a statement that writes for a
        caller it has not checked in its own transaction (`gis.incidents.service.intake_at_once`): with this
        in its WHERE it writes nothing once the credential is revoked or expired, or its user's role, grids or
        standing changed. It runs the check itself (and stamps its use as the check does)."""
        return (f"(SELECT c::text FROM {self.source} c) = :credential_checked_as",
                {**self.params, "credential_checked_as": checked_as})


# The checks are PL/pgSQL functions (migration 0021), so their plans are kept for the connection: sent as text
# on every request, the statements were planned every time.
# A browser session: by its hash, neither revoked nor expired, its user active.
_SESSION_SOURCE = "web_session_check(:credential_hash)"

# An API token: by its hash, its user active, neither revoked nor expired; its use stamped to the minute, never
# waiting for a concurrent request of the same token.
_TOKEN_SOURCE = "api_token_check(:credential_hash)"


def session_check(cookie_value: str) -> CredentialCheck:
    return CredentialCheck(_SESSION_SOURCE, {"credential_hash": _sha256(cookie_value)}, "session")


def token_check(secret: str) -> CredentialCheck:
    return CredentialCheck(_TOKEN_SOURCE, {"credential_hash": _sha256(secret)}, "token")
