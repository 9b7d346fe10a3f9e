"""Request plumbing: the request's Context, account operations' audit from either door, and the
pooled connection handling behind the token check (one transaction, no pre-ping, dead connections)."""

from __future__ import annotations

import uuid
from typing import Annotated

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from api.main import create_app
from api.security import context_of
from gis.auth.roles import Permission
from gis.context import Context
from gis.db import driver_rows, first_rows, make_sessionmaker
from gis.settings import Settings
from tests.conftest import auth, inside_point, report_incident, settings_for


def test_context_of_gives_the_caller_and_the_request(test_db_url, accounts):
    app = create_app(settings_for(test_db_url))

    @app.get("/probe-context", dependencies=[])
    def probe(ctx: Annotated[Context, context_of(Permission.VIEW_GRIDS, reason=True)]):
        assert ctx.principal is not None
        return {"user": ctx.principal.username, "role": str(ctx.principal.role), "method": ctx.method,
                "path": ctx.path, "ip": ctx.client_ip, "reason": ctx.reason}

    with TestClient(app, raise_server_exceptions=False) as c:
        got = c.get("/probe-context", params={"reason": "核查 3 组"}, headers=auth("supervisor"))
        assert got.status_code == 200, got.text
        assert got.json() == {"user": accounts["supervisor"]["username"], "role": "supervisor", "method": "GET",
                              "path": "/probe-context", "ip": "testclient", "reason": "核查 3 组"}
        assert c.get("/probe-context").status_code == 401
        bad = c.get("/probe-context", params={"reason": "a\x00b"}, headers=auth("supervisor"))
        assert bad.status_code == 422 and "reason" in bad.text


def _audit_rows(url, resource: str, ids: list[int]) -> list[dict]:
    eng = create_engine(url, poolclass=NullPool)
    with eng.connect() as conn:
        rows = conn.execute(text(
            "SELECT action, resource, resource_ids, outcome, detail, actor, method, path FROM audit_log "
            "WHERE resource = :r AND resource_ids && CAST(:ids AS text[]) ORDER BY id"),
            {"r": resource, "ids": [str(i) for i in ids]}).mappings().all()
    eng.dispose()
    return [dict(r) for r in rows]


def _cli(url, monkeypatch, *args: str, stdin: str | None = None) -> str:
    from typer.testing import CliRunner

    from gis import settings as settings_mod
    from gis.cli import app

    monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
    settings_mod.get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, list(args), input=stdin)
    finally:
        settings_mod.get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output


def test_account_operations_audit_alike_from_the_api_and_the_cli(scratch_db_url, scratch_client, monkeypatch):
    made = scratch_client.post("/admin/users", json={"username": "api_planner", "password": "long-enough-pw-1",
                                                     "role": "planner"})
    assert made.status_code == 201, made.text
    api_user = made.json()["id"]
    out = _cli(scratch_db_url, monkeypatch, "users", "create", "cli_planner", "--role", "planner")
    cli_user = int(out.split("id=")[1].split()[0])

    api_token = scratch_client.post(f"/admin/users/{api_user}/tokens", json={"name": "device"}).json()["id"]
    out = _cli(scratch_db_url, monkeypatch, "users", "token", "cli_planner", "--name", "device")
    cli_token = int(out.split("id=")[1].split(":")[0])
    assert scratch_client.patch(f"/admin/users/{api_user}", json={"password": "another-pw-2345"}).status_code == 200
    _cli(scratch_db_url, monkeypatch, "users", "set-password", "cli_planner", stdin="another-pw-2345\n")
    assert scratch_client.delete(f"/admin/tokens/{api_token}").status_code == 200

    api_rows = _audit_rows(scratch_db_url, "user", [api_user]) + _audit_rows(scratch_db_url, "api_token", [api_token])
    cli_rows = _audit_rows(scratch_db_url, "user", [cli_user]) + _audit_rows(scratch_db_url, "api_token", [cli_token])
    assert [r["action"] for r in api_rows] == ["create", "update", "create", "revoke"]

    def content(row, user_id):   # what the act was, whichever door it came through
        detail = dict(row["detail"] or {})
        if "user_id" in detail:
            detail["user_id"] = detail["user_id"] == user_id
        return row["action"], row["resource"], row["outcome"], detail

    assert [content(r, api_user) for r in api_rows[:3]] == [content(r, cli_user) for r in cli_rows]
    assert api_rows[0]["detail"] == {"role": "planner", "scope": []}
    assert api_rows[1]["detail"] == {"changed": ["password(reset)"]}
    assert {(r["method"], r["path"]) for r in api_rows} == {
        ("POST", "/admin/users"), ("PATCH", f"/admin/users/{api_user}"),
        ("POST", f"/admin/users/{api_user}/tokens"), ("DELETE", f"/admin/tokens/{api_token}")}
    assert all(r["actor"] == "admin" or r["actor"].startswith("test_admin") or r["actor"] for r in api_rows)
    assert all(r["actor"].startswith("cli") and r["method"] == "CLI" for r in cli_rows)
    assert [r["path"].split()[:2] for r in cli_rows] == [["users", "create"], ["users", "set-password"],
                                                          ["users", "token"]]


def test_the_token_check_opens_the_request_transaction(engine):
    """`first_rows` sends BEGIN with its statement: what follows is in the same transaction."""
    table = f"probe_rollback_{uuid.uuid4().hex[:8]}"
    with make_sessionmaker(engine)() as session:
        first = first_rows(session, "SELECT pg_current_xact_id()::text AS xid, now() AS at, :s AS s",
                           {"s": "it's; -- 组 %(x)s"})
        driver = session.connection().connection.driver_connection
        assert driver.info.transaction_status.name == "INTRANS" and driver.autocommit is False
        later = driver_rows(session, "SELECT pg_current_xact_id()::text AS xid, now() AS at", {})
        assert first[0]["s"] == "it's; -- 组 %(x)s"
        assert (first[0]["xid"], first[0]["at"]) == (later[0]["xid"], later[0]["at"])
        session.execute(text(f"CREATE TABLE {table} (x int)"))
        session.rollback()
    with engine.connect() as conn:   # rolled back with the token check's transaction: never made
        assert conn.execute(text(f"SELECT to_regclass('public.{table}')")).scalar_one() is None


def _end_backends(url) -> int:
    eng = create_engine(url.set(database="postgres"), poolclass=NullPool)
    with eng.connect() as conn:
        ended = conn.execute(text("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                                  "WHERE datname = :d AND pid <> pg_backend_pid()"),
                             {"d": url.database}).scalar_one()
    eng.dispose()
    return ended


@pytest.mark.parametrize("idle_s", [3600.0, 0.0])
def test_a_pooled_connection_that_died_is_replaced(scratch_db_url, accounts, idle_s):
    """Killed between requests: a token request retries on a new connection (recently used, so not
    pinged); with a ping after any idle time, even a request without a token is served."""
    settings = Settings(DATABASE_URL=scratch_db_url.render_as_string(hide_password=False), database_pool_size=2,
                        database_ping_after_idle_s=idle_s)
    with TestClient(create_app(settings), raise_server_exceptions=False, headers=auth("admin")) as c:
        assert c.get("/auth/me").status_code == 200
        assert _end_backends(scratch_db_url) >= 1
        assert c.get("/auth/me").status_code == 200
        if idle_s == 0.0:
            assert _end_backends(scratch_db_url) >= 1
            assert c.get("/healthz").status_code == 200
        # A report by coordinates (on the event loop's pool, api.deps.in_session(on_loop=True)) checks its token
        # first and retries on a new connection (`gis.db.first_rows`); so does one whose caller was seen before,
        # stored by one statement of its own (`gis.db.committed_rows`).
        lon, lat = inside_point(scratch_db_url)
        assert report_incident(c, lon, lat).status_code == 201
        assert _end_backends(scratch_db_url) >= 1
        assert report_incident(c, lon, lat).status_code in (200, 201)
        # Every lean read, each after the backends were ended: the list and the three tile layers on the event
        # loop's pool, the flood list on the threads' pool. Those whose check rides in their first message
        # (`Check.within`: this credential was seen above; the list, grid and incident tiles) send that message
        # again on a new connection (`gis.db.script_rows`; before, without pings, a 500).
        for path in ("/incidents?limit=1", "/tiles/grids/0/0/0.pbf", "/tiles/incidents/0/0/0.pbf",
                     "/tiles/households/0/0/0.pbf", "/flood/households?scenario=2023-09-23&limit=1"):
            assert _end_backends(scratch_db_url) >= 1
            answer = c.get(path)
            assert answer.status_code == 200 and answer.content, (path, answer.status_code, answer.text[:200])
