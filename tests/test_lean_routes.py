"""The busiest routes' lean path (api.lean) and the credential check sent with a request's own statements
(api.security.Check.within): the same answers as FastAPI's own handler and as a check of its own, and never
an answer built for a caller the database no longer knows as such.

Each comparison asks the same thing of two apps on the same database: one serving these routes by their lean
path (the default), one by FastAPI's handler (`lean_routes=False`), and checks the lean path was the one taken.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

import api.lean
from gis.auth.accounts import CredentialCheck
from tests.conftest import auth, make_client, report_incident


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    return (int((lon + 180.0) / 360.0 * n),
            int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n))


@pytest.fixture
def lean_where() -> list[tuple[str, bool]]:
    """(path, whether its work ran on the event loop) of each request served by the lean path, in order."""
    return []


@pytest.fixture
def lean_calls(monkeypatch: pytest.MonkeyPatch, lean_where: list[tuple[str, bool]]) -> list[str]:
    """The paths served by the lean path, in order."""
    calls: list[str] = []
    real = api.lean.in_session

    async def spy(request: Any, work: Any, **options: Any) -> Any:
        calls.append(request.url.path)

        def watched(session: Any) -> Any:
            try:
                asyncio.get_running_loop()   # set in the event loop's thread (its greenlets included) only
                on_loop = True
            except RuntimeError:
                on_loop = False
            lean_where.append((request.url.path, on_loop))
            return work(session)

        return await real(request, watched, **options)

    monkeypatch.setattr(api.lean, "in_session", spy)
    return calls


def _on_loop(path: str) -> bool:
    """Whether a valid request's work runs on the event loop: a JSON page of incidents and every tile; a file
    of incidents and the flood list (whose answer may be computed) in a worker thread."""
    return path.startswith("/tiles/") or (path.startswith("/incidents?") and "format=" not in path)


def _same(a: Any, b: Any, what: str) -> None:
    assert a.status_code == b.status_code, (what, a.status_code, b.status_code, a.text[:300], b.text[:300])
    assert a.headers.get("content-type") == b.headers.get("content-type"), what
    if "json" in (a.headers.get("content-type") or ""):
        assert json.loads(a.content) == json.loads(b.content), what
    else:
        assert a.content == b.content, what
    for header in ("etag", "cache-control", "content-encoding", "www-authenticate", "content-disposition"):
        assert a.headers.get(header) == b.headers.get(header), (what, header)


@pytest.fixture(scope="module")
def places(test_db_url: Any) -> dict[str, Any]:
    engine = create_engine(test_db_url, poolclass=NullPool)
    with engine.connect() as c:
        lon, lat = c.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM incident WHERE state <> 'closed' "
                                  "ORDER BY id LIMIT 1")).one()
        hlon, hlat = c.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM household ORDER BY id LIMIT 1")).one()
        # A stored extent whose answer is stored for the current data (its page is read in one message), and
        # a village that holds some of its households.
        extent, village = c.execute(text(
            "SELECT a.extent_id, min(h.village_code) FROM flood_answer a JOIN flood_answer_household h "
            "USING (extent_id, buffer_m) WHERE a.buffer_m = 0 "
            "AND a.data_version = (SELECT version FROM flood_data_version) GROUP BY 1 ORDER BY 1 LIMIT 1")).one()
    engine.dispose()
    return {"incident": (lon, lat), "household": (hlon, hlat), "flood_extent": extent, "flood_village": village}


def _get_cases(places: dict[str, Any]) -> list[str]:
    lon, lat = places["incident"]
    x14, y14 = _tile_of(lon, lat, 14)
    x12, y12 = _tile_of(lon, lat, 12)
    hx, hy = _tile_of(*places["household"], 16)
    return [
        "/incidents?limit=5",
        "/incidents?limit=7&offset=3&order=deadline&overdue=true",
        "/incidents?limit=5&category=dispute&open=true&state=visit",
        "/incidents?limit=5&state=reported",                # not a state: refused by its type
        "/incidents?limit=4&format=csv",
        "/incidents?limit=3&format=geojson",
        "/incidents?limit=3&bbox=" + f"{lon - 0.01},{lat - 0.01},{lon + 0.01},{lat + 0.01}",
        "/incidents?limit=3&limit=2",                       # a repeated name: the last one, as FastAPI reads it
        "/incidents?limit=0",                               # refused by the declared type (falls back to FastAPI)
        "/incidents?limit=abc",
        "/incidents?limit=100000",                          # refused after the check (the page limit)
        "/incidents?since=2024-01-01T00:00:00",             # a time without its zone
        "/incidents?grid_code=12",                           # not a grid code (its pattern)
        f"/tiles/incidents/14/{x14}/{y14}.pbf",
        f"/tiles/incidents/12/{x12}/{y12}.pbf?category=environment&open=false",
        f"/tiles/incidents/99/{x14}/{y14}.pbf",
        f"/tiles/incidents/14/x/{y14}.pbf",
        f"/tiles/grids/12/{x12}/{y12}.pbf",
        f"/tiles/grids/12/{x12}/{y12}.pbf?as_of=2026-01-01T00:00:00%2B08:00",
        f"/tiles/grids/12/{x12}/{y12}.pbf?as_of=2026-01-01T00:00:00",
        f"/tiles/households/16/{hx}/{hy}.pbf?reason=lean-test",
        f"/tiles/households/12/{hx // 16}/{hy // 16}.pbf",
        "/flood/households?scenario=2023-09-23&limit=5",
        "/flood/households?scenario=2023-09-23&limit=3&offset=2&sort=depth&format=geojson",
        "/flood/households?scenario=2023-09-23&limit=3&format=csv&reason=lean-test",
        "/flood/households?scenario=no-such&limit=3",
        "/flood/households?scenario=2023-09-23&limit=0",
        "/flood/households?scenario=2023-09-23&sort=nearest",
        f"/flood/households?extent={places['flood_extent']}&limit=5",
        f"/flood/households?extent={places['flood_extent']}&limit=4&offset=3&sort=vulnerable",
        f"/flood/households?extent={places['flood_extent']}&limit=4&grid_code={places['flood_village']}",
        f"/flood/households?extent={places['flood_extent']}&limit=3&format=csv",
        f"/flood/households?extent={places['flood_extent']}&limit=3&buffer_m=7",   # no stored answer: computed
        "/flood/households?extent=987654321&limit=3",                                # no such extent: 404
    ]


@pytest.mark.parametrize("role", ["admin", "command_center", "supervisor", "grid_staff", "planner", None, "bad"])
def test_the_lean_path_answers_as_fastapi_does(test_db_url: Any, places: dict[str, Any], role: str | None,
                                                lean_calls: list[str], lean_where: list[tuple[str, bool]]) -> None:
    headers = {"Authorization": "Bearer wg_not-a-token"} if role == "bad" else auth(role) if role else {}
    headers["Accept-Encoding"] = "gzip"
    with make_client(test_db_url, None) as lean, make_client(test_db_url, None, lean_routes=False) as full:
        for path in _get_cases(places):
            for _ in range(2):   # the second time with what this process has seen of the credential
                before = len(lean_calls)
                fast = lean.get(path, headers=headers)
                took_lean = len(lean_calls) > before
                plain = full.get(path, headers=headers)
                assert len(lean_calls) == before + took_lean   # FastAPI's app never takes it
                if fast.headers.get("etag") != plain.headers.get("etag"):
                    # An incident tile's ETag names the minute its overdue flags are for: the two answers may
                    # straddle a minute; asked again at once, they cannot straddle another.
                    fast, plain = lean.get(path, headers=headers), full.get(path, headers=headers)
                _same(fast, plain, f"{role} {path}")
            refused_by_type = any(s in path for s in ("limit=0", "limit=abc", "state=reported", "grid_code=12",
                                                      "sort=nearest", "/99/", "/x/"))
            # Every valid request was served by the lean path; a value its type refuses by FastAPI's handler.
            assert took_lean == (not refused_by_type), path
            if took_lean:   # on the event loop, or in a worker thread, as the route marks it
                assert {on_loop for p, on_loop in lean_where[-2:]} == {_on_loop(path)}, path


@pytest.mark.parametrize("role", ["command_center", "grid_staff"])
def test_work_on_the_event_loop_answers_as_in_a_thread(test_db_url: Any, places: dict[str, Any], role: str,
                                                       lean_calls: list[str],
                                                       lean_where: list[tuple[str, bool]]) -> None:
    """The same lean work with its statements sent by the async driver on the event loop, and by the sync
    driver in a worker thread (`lean_async=False`): the same answers; the latter never on the loop."""
    headers = {**auth(role), "Accept-Encoding": "gzip"}
    with make_client(test_db_url, None) as on_loop, make_client(test_db_url, None, lean_async=False) as threads:
        for path in _get_cases(places):
            a = on_loop.get(path, headers=headers)
            where = len(lean_where)
            b = threads.get(path, headers=headers)
            assert all(not ran for _, ran in lean_where[where:]), path
            if a.headers.get("etag") != b.headers.get("etag"):   # straddled a minute (see above)
                a, b = on_loop.get(path, headers=headers), threads.get(path, headers=headers)
            _same(a, b, f"{role} {path}")
    assert any(ran for _, ran in lean_where), "nothing ran on the event loop"


def test_the_intake_answers_as_fastapi_does(scratch_db_url: Any, places: dict[str, Any],
                                            lean_calls: list[str], lean_where: list[tuple[str, bool]]) -> None:
    lon, lat = places["incident"]
    with make_client(scratch_db_url, None) as lean, make_client(scratch_db_url, None, lean_routes=False) as full:
        refusals = [
            (auth("command_center"), b'{"category": "environment",'),               # malformed JSON
            (auth("command_center"), json.dumps({"category": "environment"}).encode()),   # fields missing
            ({}, json.dumps({"category": "environment"}).encode()),                  # no credential first
            (auth("planner"), b"{}"),                                                 # no permission
            ({"Authorization": "Bearer wg_nope"}, b"{}"),
        ]
        for headers, body in refusals:
            h = {**headers, "Content-Type": "application/json"}
            _same(lean.post("/incidents", content=body, headers=h), full.post("/incidents", content=body, headers=h),
                  f"intake {headers} {body[:40]!r}")
        # Malformed JSON is refused while the body is read, before a transaction; the rest reach the check.
        assert len(lean_calls) == len(refusals) - 1

        lean.headers.update(auth("grid_staff"))
        full.headers.update(auth("grid_staff"))
        a = report_incident(lean, lon, lat, external_id="lean-1")
        assert lean_where[-1] == ("/incidents", True)   # a report by coordinates: on the event loop
        b = report_incident(full, lon, lat, external_id="full-1")
        assert a.status_code == b.status_code == 201, (a.text, b.text)
        one, other = a.json(), b.json()
        differ = {"id", "external_id", "reported_at", "state_entered_at", "deadline", "history", "duplicates",
                  "possible_duplicates"}
        assert one.keys() == other.keys()
        assert {k: v for k, v in one.items() if k not in differ} == {k: v for k, v in other.items() if k not in differ}
        # The same report again: 200 and the first one, by either path.
        again = report_incident(lean, lon, lat, external_id="lean-1")
        assert again.status_code == 200 and again.json()["id"] == one["id"]
        # A report by place name (the gazetteer) keeps its worker thread, and answers as FastAPI's handler.
        by_name = {"category": "矛盾纠纷", "description": "地名", "occurred_at": "2026-11-20 09:00",
                   "place": "尹营村三组"}
        a, b = lean.post("/incidents", json=by_name), full.post("/incidents", json=by_name)
        assert lean_where[-1] == ("/incidents", False)
        assert a.status_code == b.status_code == 201, (a.text, b.text)
        assert {k: v for k, v in a.json().items() if k not in differ} == {
            k: v for k, v in b.json().items() if k not in differ}


@pytest.fixture
def fresh_user(scratch_db_url: Any) -> Iterator[dict[str, Any]]:
    """A command-center user of its own and its token, in a scratch database; `set(sql)` changes it."""
    from gis.auth import accounts
    from gis.auth.roles import Role
    from gis.db import transaction

    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with transaction(engine) as s:
        user = accounts.create_user(s, f"lean_{secrets.token_hex(3)}", secrets.token_urlsafe(12) + "aA1!",
                                    Role.COMMAND_CENTER)
        token, _ = accounts.create_token(s, user.id, "lean test")

    def change(sql: str, **params: Any) -> None:
        with engine.begin() as c:
            c.execute(text(sql), {"u": user.id, **params})

    def audited(path: str) -> list[tuple[str, str, str]]:
        """The user's audit rows of reads of `path`: (role, action, outcome), in order."""
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(text(
                "SELECT role, action, outcome FROM audit_log WHERE actor_id = :u AND path = :p ORDER BY id"),
                {"u": user.id, "p": path})]

    yield {"id": user.id, "headers": {"Authorization": f"Bearer {token}"}, "set": change, "audited": audited}
    engine.dispose()


def test_the_check_rides_with_the_statements_and_a_changed_caller_is_never_answered_as_before(
        scratch_db_url: Any, places: dict[str, Any], fresh_user: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    lon, lat = places["incident"]
    x, y = _tile_of(lon, lat, 12)
    tile, page = f"/tiles/incidents/12/{x}/{y}.pbf", "/incidents?limit=1000"
    flood = f"/flood/households?extent={places['flood_extent']}&limit=1000"
    alone: list[str] = []   # credential checks sent as a statement of their own
    real_run = CredentialCheck.run

    def counting(self: CredentialCheck, session: Any, client_ip: str | None) -> Any:
        alone.append(self.sql)
        return real_run(self, session, client_ip)

    monkeypatch.setattr(CredentialCheck, "run", counting)
    h = fresh_user["headers"]
    with make_client(scratch_db_url, None) as lean, make_client(scratch_db_url, None, lean_routes=False) as full:
        first = lean.get(tile, headers=h)
        assert first.status_code == 200 and len(alone) == 1        # first seen: checked on its own
        again = lean.get(tile, headers=h)
        assert again.content == first.content and len(alone) == 1   # then with the tile, in its message
        everything = lean.get(page, headers=h).json()
        assert len(alone) == 1 and everything["items"]
        flooded = lean.get(flood, headers=h).json()
        assert len(alone) == 1 and flooded["items"]
        # Its audit row was written, and committed with the read's last message.
        assert fresh_user["audited"]("/flood/households") == [("command_center", "read", "ok")]

        # Narrowed to one group grid: the next answers are the grid staff's, not the command center's.
        group = everything["items"][0]["group_code"]
        fresh_user["set"]("UPDATE app_user SET role = 'grid_staff', scope_codes = ARRAY[:g] WHERE id = :u", g=group)
        narrowed = lean.get(page, headers=h)
        expected = full.get(page, headers=h)
        _same(narrowed, expected, "narrowed page")
        assert {i["group_code"] for i in narrowed.json()["items"]} == {group}
        assert narrowed.json()["total"] < everything["total"]
        _same(lean.get(tile, headers=h), full.get(tile, headers=h), "narrowed tile")
        _same(lean.get(flood, headers=h), full.get(flood, headers=h), "narrowed flood list")
        assert lean.get(flood, headers=h).json()["total"] < flooded["total"]
        # Each read of the narrowed caller is logged as the grid staff's, who sees personal fields.
        assert fresh_user["audited"]("/flood/households")[-1][0] == "grid_staff"

        # A role without the permission: 403, from the guess that still had it.
        fresh_user["set"]("UPDATE app_user SET role = 'planner', scope_codes = '{}' WHERE id = :u")
        for path in (tile, page, flood):
            assert lean.get(path, headers=h).status_code == 403, path
        fresh_user["set"]("UPDATE app_user SET role = 'command_center' WHERE id = :u")
        assert lean.get(tile, headers=h).status_code == 200

        # Revoked: 401 at once, also where the request would otherwise have been refused for its page limit.
        fresh_user["set"]("UPDATE api_token SET revoked_at = now() WHERE user_id = :u")
        for path in (tile, page, flood, "/incidents?limit=100000", f"/tiles/grids/12/{x}/{y}.pbf"):
            refused = lean.get(path, headers=h)
            assert refused.status_code == 401, (path, refused.text)
            _same(refused, full.get(path, headers=h), f"revoked {path}")


def test_a_browser_session_rides_too_and_ends_at_logout(scratch_db_url: Any, places: dict[str, Any],
                                                         accounts: dict[str, dict]) -> None:
    lon, lat = places["incident"]
    x, y = _tile_of(lon, lat, 12)
    tile = f"/tiles/incidents/12/{x}/{y}.pbf"
    with make_client(scratch_db_url, None) as c:
        login = c.post("/auth/login", json={"username": accounts["command_center"]["username"],
                                            "password": accounts["command_center"]["password"]})
        assert login.status_code == 200, login.text
        assert c.get(tile).status_code == 200
        assert c.get(tile).status_code == 200      # with what the process saw of the session
        assert c.get("/incidents?limit=2").status_code == 200
        cookies = dict(c.cookies)
        assert c.post("/auth/logout").status_code in (200, 204)
        c.cookies.update(cookies)                  # the old cookie, sent again after the logout
        for path in (tile, "/incidents?limit=2"):
            assert c.get(path).status_code == 401, path
