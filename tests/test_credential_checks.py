"""The credential checks (`gis.auth.accounts.token_check` and `session_check`, the PL/pgSQL functions
`api_token_check` and `web_session_check` of migration 0021): who a token or a browser session names, and when
it names nobody, checked on every rule of each check, the first call of a connection and the later ones (whose
plan the function keeps) alike."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.auth import accounts
from gis.auth.roles import Role
from gis.db import make_sessionmaker, transaction


def _checked(session: Any, secret: str) -> Any:
    principal = accounts.token_check(secret).run(session, "10.0.0.1")
    session.commit()
    return principal


def test_the_token_check_names_its_caller_and_nobody_else(scratch_db_url: Any) -> None:
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with transaction(engine) as s:
        village, other = s.execute(text("SELECT code FROM grid WHERE level = 3 AND valid_to IS NULL "
                                        "ORDER BY code LIMIT 2")).scalars().all()
        staff = accounts.create_user(s, f"tc_{secrets.token_hex(3)}", secrets.token_urlsafe(12) + "aA1!",
                                     Role.GRID_STAFF, scope_codes=[village, other])
        boss = accounts.create_user(s, f"tc_{secrets.token_hex(3)}", secrets.token_urlsafe(12) + "aA1!",
                                    Role.COMMAND_CENTER)
        plain, plain_row = accounts.create_token(s, staff.id, "phone")
        narrowed, _ = accounts.create_token(s, staff.id, "one village", scope_codes=[other])
        expiring, expiring_row = accounts.create_token(s, boss.id, "screen", expires_days=1)
        revoked, revoked_row = accounts.create_token(s, boss.id, "lost")
        accounts.revoke_token(s, revoked_row.id)
    # One connection for every check: the first call plans the function's query, the later ones reuse it.
    pooled = create_engine(scratch_db_url, pool_size=1)
    with make_sessionmaker(pooled)() as session:
        for _ in range(3):
            p = _checked(session, plain)
            assert (p.user_id, p.username, p.role, tuple(p.scope_codes), p.via, p.token_id, p.client_ip) == (
                staff.id, staff.username, Role.GRID_STAFF, (village, other), "token", plain_row.id, "10.0.0.1")
            assert tuple(_checked(session, narrowed).scope_codes) == (other,)
            assert _checked(session, expiring).role is Role.COMMAND_CENTER
            assert _checked(session, revoked) is None
            assert _checked(session, plain + "x") is None
            assert _checked(session, "") is None
        # Its use is stamped, to the minute: a second request within it writes nothing.
        stamped = session.execute(text("SELECT last_used_at FROM api_token WHERE id = :i"),
                                  {"i": plain_row.id}).scalar_one()
        assert stamped is not None
        session.commit()
        _checked(session, plain)
        assert session.execute(text("SELECT last_used_at FROM api_token WHERE id = :i"),
                               {"i": plain_row.id}).scalar_one() == stamped
        session.commit()
        with transaction(engine) as s:   # older than a minute: the next use stamps it again
            s.execute(text("UPDATE api_token SET last_used_at = now() - interval '2 minutes' WHERE id = :i"),
                      {"i": plain_row.id})
        _checked(session, plain)
        assert session.execute(text("SELECT last_used_at FROM api_token WHERE id = :i"),
                               {"i": plain_row.id}).scalar_one() > stamped
        session.commit()
        # Each rule, changed under the connection that has the plan already: the next check sees it.
        with transaction(engine) as s:
            s.execute(text("UPDATE api_token SET expires_at = now() - interval '1 second' WHERE id = :i"),
                      {"i": expiring_row.id})
            s.execute(text("UPDATE app_user SET active = false WHERE id = :u"), {"u": staff.id})
        assert _checked(session, expiring) is None
        assert _checked(session, plain) is None and _checked(session, narrowed) is None
        with transaction(engine) as s:
            s.execute(text("UPDATE app_user SET active = true, role = 'supervisor' WHERE id = :u"), {"u": staff.id})
        assert _checked(session, plain).role is Role.SUPERVISOR
    pooled.dispose()
    engine.dispose()


def test_the_session_check_names_its_user_and_nobody_else(scratch_db_url: Any) -> None:
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with transaction(engine) as s:
        village = s.execute(text("SELECT min(code) FROM grid WHERE level = 3 AND valid_to IS NULL")).scalar_one()
        user = accounts.create_user(s, f"sc_{secrets.token_hex(3)}", secrets.token_urlsafe(12) + "aA1!",
                                    Role.SUPERVISOR, scope_codes=[village])
        cookie = accounts.create_session(s, user, "10.0.0.2", 8)
        ended = accounts.create_session(s, user, "10.0.0.2", 8)
        short = accounts.create_session(s, user, "10.0.0.2", 8)
        accounts.end_session(s, accounts.session_check(ended).params["credential_hash"])
    pooled = create_engine(scratch_db_url, pool_size=1)

    def checked(session: Any, value: str) -> Any:
        principal = accounts.session_check(value).run(session, "10.0.0.3")
        session.commit()
        return principal

    with make_sessionmaker(pooled)() as session:
        for _ in range(3):
            p = checked(session, cookie)
            assert (p.user_id, p.username, p.role, tuple(p.scope_codes), p.via, p.client_ip) == (
                user.id, user.username, Role.SUPERVISOR, (village,), "session", "10.0.0.3")
            assert p.session_id_hash == accounts.session_check(cookie).params["credential_hash"]
            assert checked(session, short) is not None
            assert checked(session, ended) is None
            assert checked(session, cookie + "x") is None
        with transaction(engine) as s:
            s.execute(text("UPDATE web_session SET expires_at = now() - interval '1 second' WHERE id_hash = :h"),
                      {"h": accounts.session_check(short).params["credential_hash"]})
        assert checked(session, short) is None and checked(session, cookie) is not None
        with transaction(engine) as s:
            s.execute(text("UPDATE app_user SET active = false WHERE id = :u"), {"u": user.id})
        assert checked(session, cookie) is None
        with transaction(engine) as s:
            s.execute(text("UPDATE app_user SET active = true, role = 'command_center', scope_codes = '{}' "
                           "WHERE id = :u"), {"u": user.id})
        assert checked(session, cookie).role is Role.COMMAND_CENTER
    pooled.dispose()
    engine.dispose()
