"""A report by a caller already seen is checked, stored, audited and committed by ONE statement that is its own
transaction (`gis.incidents.service.intake_at_once`, `gis.db.committed_rows`), and only while the statement's
own check of the credential finds that caller still (`gis.auth.accounts.CredentialCheck.unchanged`)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.auth import accounts
from gis.auth.roles import Role
from gis.context import Context
from gis.db import make_engine, make_sessionmaker, transaction
from gis.incidents import service
from tests.conftest import WHEN, database_copy, inside_point, make_client, report_incident, stored_report

RADIUS = {"duplicate_radius_m": 50.0, "duplicate_window_hours": 24.0}


@pytest.fixture(scope="module")
def db_url(test_db_url, accounts):
    with database_copy(test_db_url, "at_once") as url:
        yield url


@pytest.fixture(scope="module")
def engine(db_url):
    eng = make_engine(url=db_url.render_as_string(hide_password=False))
    yield eng
    eng.dispose()


def _member(engine, grid: str) -> tuple[str, str, accounts.CredentialCheck]:
    """A new grid member of `grid` with a token: (its user name, the token, the token's check)."""
    name = f"m_{uuid.uuid4().hex[:10]}"
    with transaction(engine) as s:
        user = accounts.create_user(s, name, "pass-word-12345aA!", Role.GRID_STAFF, scope_codes=[grid])
        secret, _ = accounts.create_token(s, user.id, "phone")
    return name, secret, accounts.token_check(secret)


def _checked(engine, check: accounts.CredentialCheck):
    with transaction(engine) as s:
        principal = check.run(s, "127.0.0.1")
    assert principal is not None and principal.checked_as
    return principal


def _report(engine, principal, condition, req: service.IntakeRequest, *, first: str = ""):
    """`service.intake_at_once` on a session of its own (after `first`, when given)."""
    with make_sessionmaker(engine)() as s:
        if first:
            s.execute(text(first))
        result = service.intake_at_once(s, Context(principal, "POST", "/incidents", "127.0.0.1"), req,
                                        only_while=condition, **RADIUS)
        s.rollback()   # what it wrote was committed by the statement itself: nothing of it is undone
    return result


def _request(db_url, external_id: str, grid: str) -> service.IntakeRequest:
    return service.IntakeRequest("environment", "垃圾堆放", WHEN, *inside_point(db_url, grid), external_id=external_id)


def test_it_writes_and_commits_while_the_caller_is_as_checked(db_url, engine):
    grid = _first_group(db_url)
    name, _, check = _member(engine, grid)
    principal = _checked(engine, check)
    result = _report(engine, principal, check.unchanged(principal.checked_as), _request(db_url, f"{name}-1", grid))
    assert result is not None and result.created and result.record is not None
    assert result.record["group_code"] == grid and result.record["actions"], "a member works their own grid's"
    assert stored_report(db_url, f"{name}-1") == (1, 1, 1)   # committed: seen from another connection


@pytest.mark.parametrize("change", ["revoke", "deactivate", "role", "scope", "another_row"])
def test_it_writes_nothing_once_the_credential_finds_another_caller(db_url, engine, change):
    grid = _first_group(db_url)
    name, _, check = _member(engine, grid)
    principal = _checked(engine, check)
    checked_as = principal.checked_as
    with transaction(engine) as s:
        if change == "revoke":
            s.execute(text("UPDATE api_token SET revoked_at = now() WHERE user_id = :u"), {"u": principal.user_id})
        elif change == "deactivate":
            s.execute(text("UPDATE app_user SET active = false WHERE id = :u"), {"u": principal.user_id})
        elif change == "role":
            s.execute(text("UPDATE app_user SET role = 'supervisor' WHERE id = :u"), {"u": principal.user_id})
        elif change == "scope":
            s.execute(text("UPDATE app_user SET scope_codes = ARRAY[:g] WHERE id = :u"),
                      {"g": _first_group(db_url, 1), "u": principal.user_id})
        else:   # the caller unchanged, but the row it is compared with is not the one its check finds
            checked_as = checked_as.replace(name, name + "x")
    assert _report(engine, principal, check.unchanged(checked_as), _request(db_url, f"{name}-2", grid)) is None
    assert stored_report(db_url, f"{name}-2") == (0, 0, 0)


@pytest.mark.parametrize("case", ["transaction_open", "outside", "external_id_again", "place", "bad_category"])
def test_it_leaves_the_unusual_report_to_the_plain_way(db_url, engine, case):
    """None, writing nothing new, for every case the plain intake answers otherwise."""
    grid = _first_group(db_url)
    name, _, check = _member(engine, grid)
    principal = _checked(engine, check)
    condition = check.unchanged(principal.checked_as)
    if case == "external_id_again":
        assert _report(engine, principal, condition, _request(db_url, f"{name}-1", grid)) is not None
    req = _request(db_url, f"{name}-1", grid)
    if case == "outside":
        req.lon = req.lon + 1.0
    elif case == "place":
        req.lon = req.lat = None
        req.place = "村委会"
    elif case == "bad_category":
        req.category = "no such category"
    assert _report(engine, principal, condition, req, first="SELECT 1" if case == "transaction_open" else "") is None
    assert stored_report(db_url, f"{name}-1") == ((1, 1, 1) if case == "external_id_again" else (0, 0, 0))


@pytest.mark.parametrize("lean_async", [True, False])
def test_a_report_by_a_caller_seen_before_is_one_statement(db_url, engine, monkeypatch, lean_async):
    """Through the app: the second report of a token sends ONE statement (no BEGIN, no check of its own, no
    COMMIT), and is answered as the first (the plain way) was; on the event loop (psycopg's async driver) and in
    a worker thread (its sync one) alike."""
    grid = _first_group(db_url)
    name, secret, _ = _member(engine, grid)
    point = inside_point(db_url, grid)
    with make_client(db_url, None, lean_async=lean_async) as c:
        c.headers["Authorization"] = f"Bearer {secret}"
        plain = report_incident(c, *point, external_id=f"{name}-1")
        assert plain.status_code == 201, plain.text

        sent: list[str] = []
        at_once: list[object] = []
        for cls in (psycopg.AsyncCursor, psycopg.Cursor):
            monkeypatch.setattr(cls, "execute", _counting(cls.execute, sent))
        for cls in (psycopg.AsyncConnection, psycopg.Connection):
            monkeypatch.setattr(cls, "_exec_command", _counting(cls._exec_command, sent))
        real = service.intake_at_once
        monkeypatch.setattr(service, "intake_at_once", lambda *a, **k: _kept(real(*a, **k), at_once))
        again = report_incident(c, *point, external_id=f"{name}-2")
        monkeypatch.undo()

    assert again.status_code == 201, again.text
    assert len(at_once) == 1 and at_once[0] is not None, "the report went the one-statement way"
    assert len(sent) == 1, sent   # the statement alone: no BEGIN, no check of its own, no COMMIT
    first, second = plain.json(), again.json()
    assert second["possible_duplicates"] == sorted(
        [*first["possible_duplicates"], {"incident_id": first["id"], "distance_m": 0}],
        key=lambda d: d["incident_id"])
    assert [e["action"] for e in second["history"]] == [e["action"] for e in first["history"]] == ["intake"]
    changing = {"id", "external_id", "reported_at", "state_entered_at", "deadline", "history", "possible_duplicates"}
    assert first.keys() == second.keys()
    assert {k: v for k, v in first.items() if k not in changing} == \
        {k: v for k, v in second.items() if k not in changing}
    assert stored_report(db_url, f"{name}-2") == (1, 1, 1)


def _counting(method, sent: list[str]):
    def counted(self, query, *args, **kwargs):
        sent.append(str(query)[:60])
        return method(self, query, *args, **kwargs)
    return counted


def _kept(value, into: list[object]):
    into.append(value)
    return value


def _first_group(db_url, skip: int = 0) -> str:
    eng = create_engine(db_url, poolclass=NullPool)
    with eng.connect() as conn:
        code = conn.execute(text("SELECT code FROM grid WHERE level = 4 AND valid_to IS NULL ORDER BY code "
                                 "OFFSET :n LIMIT 1"), {"n": skip}).scalar_one()
    eng.dispose()
    return code


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("via", ["token", "session"])
def test_the_statement_stays_within_psycopgs_parse_cache(role, via):
    """psycopg keeps its parse of a statement (a regex split of ~4 KB of SQL, on every request otherwise) only up
    to a length and a number of parameters: the intake statement, with the credential's check in it, fits for
    every caller, a grid member whose grids lie at every level included."""
    from psycopg import _queries

    from gis.auth.principal import Principal
    from gis.db import pyformat

    principal = Principal(1, "某人", role, ("410101001001", "410101001", "410101", "4101"), via)
    check = accounts.token_check("x") if via == "token" else accounts.session_check("x")
    condition, guard = check.unchanged("(1,2,某人,grid_staff,{},,)")
    req = service.IntakeRequest("environment", "垃圾堆放", WHEN, 114.0, 33.0, external_id="e")
    placed = service.Placement(114.0, 33.0, "coordinates", None, None, "EPSG:4326")
    sql, params = service._intake_inside_statement(Context(principal), req, placed, service.dt.datetime.now(
        service.dt.UTC), 50.0, 24.0, condition)
    assert len(pyformat(sql)) <= _queries.MAX_CACHED_STATEMENT_LENGTH
    assert len({**params, **guard}) <= _queries.MAX_CACHED_STATEMENT_PARAMS
