"""Accounts, API tokens, browser sessions and login throttling, stored in PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.auth.passwords import hash_password, needs_rehash, password_problem, verify_password
from gis.auth.principal import Principal
from gis.auth.roles import SCOPED_ROLES, Role
from gis.db import driver_rows
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

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "username": self.username,
            "display_name": self.display_name,
            "role": str(self.role),
            "scope_codes": list(self.scope_codes),
            "active": self.active,
        }


_USER_COLUMNS = "id, username, display_name, role, scope_codes, active, is_demo"


def _user(row) -> User:
    return User(row.id, row.username, row.display_name, Role(row.role), tuple(row.scope_codes or ()),
                row.active, row.is_demo)


def check_scope(session: Session, role: Role, scope_codes: list[str] | tuple[str, ...], loc: tuple) -> None:
    """Scoped roles need current grids as scope: group grids for grid staff, villages for supervisors."""
    if role not in SCOPED_ROLES:
        if scope_codes:
            raise InputError(Problem(loc, f"role {role} is not limited to grids; leave scope empty"))
        return
    if not scope_codes:
        raise InputError(Problem(loc, f"role {role} needs at least one grid code as scope"))
    found = dict(
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
        end_sessions(session, user_id)
    return get_user(session, user_id)


# --- login throttling -----------------------------------------------------------------------


class TooManyAttempts(Exception):
    def __init__(self, retry_after_s: int):
        self.retry_after_s = retry_after_s
        super().__init__(f"too many failed logins; try again in {retry_after_s} s")


def check_throttle(session: Session, username: str, client_ip: str | None, *, max_failures: int,
                   max_failures_per_ip: int, window_minutes: int) -> None:
    row = session.execute(
        text(
            """
            SELECT
              count(*) FILTER (WHERE lower(username) = lower(:u)) AS by_user,
              count(*) FILTER (WHERE client_ip = :ip) AS by_ip,
              min(at) FILTER (WHERE lower(username) = lower(:u)) AS first_user,
              min(at) FILTER (WHERE client_ip = :ip) AS first_ip
            FROM login_attempt
            WHERE NOT success AND at > now() - make_interval(mins => :w)
              AND (lower(username) = lower(:u) OR client_ip = :ip)
            """
        ),
        {"u": username, "ip": client_ip, "w": window_minutes},
    ).one()
    now = session.execute(text("SELECT now()")).scalar_one()
    for count, first, cap in ((row.by_user, row.first_user, max_failures), (row.by_ip, row.first_ip, max_failures_per_ip)):
        if count >= cap and first is not None:
            retry = first + dt.timedelta(minutes=window_minutes) - now
            raise TooManyAttempts(max(1, int(retry.total_seconds())))


def authenticate(session: Session, username: str, password: str, client_ip: str | None) -> User | None:
    """The user when the password is right and the account active; the attempt is recorded either way."""
    row = session.execute(
        text(f"SELECT {_USER_COLUMNS}, password_hash FROM app_user WHERE lower(username) = lower(:u)"),
        {"u": username},
    ).first()
    ok = verify_password(password, row.password_hash if row else None) and bool(row and row.active)
    session.execute(
        text("INSERT INTO login_attempt (username, client_ip, success) VALUES (:u, :ip, :ok)"),
        {"u": username[:64], "ip": client_ip, "ok": ok},
    )
    if not ok:
        return None
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


def principal_from_session(session: Session, cookie_value: str, client_ip: str | None) -> Principal | None:
    row = session.execute(
        text(
            f"""
            SELECT u.id, u.username, u.role, u.scope_codes, s.id_hash FROM web_session s
            JOIN app_user u ON u.id = s.user_id
            WHERE s.id_hash = :h AND s.revoked_at IS NULL AND s.expires_at > now() AND u.active
            """
        ),
        {"h": _sha256(cookie_value)},
    ).first()
    if row is None:
        return None
    return Principal(row.id, row.username, Role(row.role), tuple(row.scope_codes or ()), "session",
                     client_ip, session_id_hash=row.id_hash)


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

    def as_dict(self) -> dict:
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


def principal_from_token(session: Session, secret: str, client_ip: str | None) -> Principal | None:
    rows = driver_rows(
        session,
        """
            WITH t AS (
                SELECT t.id, t.last_used_at, u.id AS user_id, u.username, coalesce(t.role, u.role) AS role,
                       coalesce(t.scope_codes, u.scope_codes) AS scope_codes
                FROM api_token t JOIN app_user u ON u.id = t.user_id
                WHERE t.token_hash = :h AND u.active AND t.revoked_at IS NULL
                  AND (t.expires_at IS NULL OR t.expires_at > now())
            ), touched AS (
                -- last_used_at to the minute: a busy device does not rewrite (and lock) its token row
                -- on every request; and never waits for it: while a concurrent request of the same
                -- token holds the row, that one records the use (parallel requests would otherwise
                -- queue here one by one, each holding its connection).
                UPDATE api_token SET last_used_at = now()
                WHERE id = (SELECT a.id FROM api_token a JOIN t ON t.id = a.id
                            WHERE t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute'
                            FOR UPDATE OF a SKIP LOCKED)
            )
            SELECT id, user_id, username, role, scope_codes FROM t
        """,
        {"h": _sha256(secret)},
    )
    if not rows:
        return None
    row = rows[0]
    return Principal(row["user_id"], row["username"], Role(row["role"]), tuple(row["scope_codes"] or ()), "token",
                     client_ip, token_id=row["id"])
