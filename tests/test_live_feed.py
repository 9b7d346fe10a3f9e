"""The live incident feed (GET /events/incidents) over a real uvicorn server on a real PostGIS.

Every write path (single intake, batch import by the API and by the CLI, loop transitions) reaches
an open stream within 2 s; a reconnect with Last-Event-ID (or ?after=) gets exactly the events it
missed; transactions that commit out of id order are each delivered once; each role sees only
what its incident list shows, and no event carries a personal field.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.browser import serve_app_in_thread
from tests.conftest import WHEN, auth, database_copy, settings_for

ROOT = Path(__file__).resolve().parent.parent

# What an event may carry; nothing else (no reporter, description or place text).
EVENT_KEYS = {"id", "kind", "state", "category", "overdue", "flagged", "reviewed", "lon", "lat", "group_code",
              "occurred_at"}
WITHIN_S = 2.0


class SseReader:
    """An open event stream read on a thread: parsed events land in a queue as they arrive."""

    def __init__(self, base: str, role: str, params: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None):
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.raw: list[str] = []
        self.opened = threading.Event()
        self.ended = threading.Event()
        self.response: httpx.Response | None = None
        self.ready_id: str | None = None
        self.error: BaseException | None = None
        self._client = httpx.Client(base_url=base, headers={**auth(role), **(headers or {})},
                                    timeout=httpx.Timeout(10.0, read=60.0))
        self._params = params or {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self.opened.wait(10):
            raise AssertionError("the event stream did not open within 10 s")
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            with self._client.stream("GET", "/events/incidents", params=self._params) as r:
                self.response = r
                if r.status_code != 200:
                    r.read()
                    self.opened.set()
                    return
                event: dict[str, Any] = {}
                first = True
                for line in r.iter_lines():
                    self.raw.append(line)
                    if first:   # the first frame (retry hint) says the subscription is in force
                        first = False
                        self.opened.set()
                    if line == "":
                        if event.get("event") == "ready":
                            self.ready_id = event.get("id")
                        elif "data" in event:
                            self.events.put({"id": event.get("id"), "event": event.get("event"),
                                             "data": json.loads(event["data"]), "at": time.monotonic()})
                        event = {}
                    elif not line.startswith(":"):
                        name, _, value = line.partition(":")
                        event[name] = value[1:] if value.startswith(" ") else value
        except (httpx.HTTPError, RuntimeError) as exc:
            self.error = exc
        finally:
            self.opened.set()
            self.ended.set()

    def next(self, timeout: float = WITHIN_S) -> dict[str, Any]:
        """The next event; within `timeout` seconds (a late one fails saying how late it was)."""
        asked = time.monotonic()
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            pass
        try:
            late = self.events.get(timeout=20)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout} s nor 20 s more; stream: {self.raw[-4:]}") from None
        raise AssertionError(f"the event came {late['at'] - asked:.2f} s after it was awaited: {late['data']}")

    def until(self, pred: Any, timeout: float = WITHIN_S) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Events until one matches `pred`: (that one, all read including it)."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching event within {timeout} s; saw {[e['data'] for e in seen]}; "
                                     f"stream: {self.raw[-5:]}, ended {self.ended.is_set()}, error {self.error!r}")
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            seen.append(e)
            if pred(e):
                return e, seen

    def drain(self, quiet_s: float = 0.5) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(self.events.get(timeout=quiet_s))
            except queue.Empty:
                return out

    def close(self) -> None:
        """Hang up: the socket is shut down, as when a browser tab closes (the server sees it at once)."""
        stream = self.response.extensions.get("network_stream") if self.response is not None else None
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._client.close()
        self._thread.join(5)


@pytest.fixture(scope="module")
def live_db(test_db_url: Any) -> Iterator[Any]:
    with database_copy(test_db_url, "live") as url:
        yield url


@pytest.fixture(scope="module")
def server(live_db: Any, accounts: dict[str, dict[str, Any]]) -> Iterator[str]:
    from api.main import create_app

    with serve_app_in_thread(create_app(settings_for(live_db))) as base:
        yield base


@pytest.fixture(scope="module")
def places(live_db: Any, accounts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Points inside the grid staff's group grid (A), another group of the same village (B, the
    supervisor's) and a group of another village (C)."""
    eng = create_engine(live_db, poolclass=NullPool)
    staff_group = accounts["grid_staff"]["scope_codes"][0]
    village = accounts["supervisor"]["scope_codes"][0]
    with eng.connect() as c:
        def point(where: str, **p: Any) -> tuple[str, float, float]:
            code, lon, lat = c.execute(text(
                "SELECT code, ST_X(p), ST_Y(p) FROM (SELECT code, ST_PointOnSurface(geom) p FROM grid "
                f"WHERE level = 4 AND valid_to IS NULL AND {where} ORDER BY code LIMIT 1) s"), p).one()
            return code, lon, lat

        out = {"A": point("code = :c", c=staff_group),
               "B": point("parent_code = :v AND code <> :c", v=village, c=staff_group),
               "C": point("parent_code <> :v", v=village)}
    eng.dispose()
    return out


@pytest.fixture
def writer(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, headers=auth("admin"), timeout=30.0) as c:
        yield c


def report(client: httpx.Client, where: tuple[str, float, float], **fields: Any) -> dict[str, Any]:
    body = {"category": "environment", "description": "垃圾堆放", "occurred_at": WHEN, "lon": where[1],
            "lat": where[2], **fields}
    r = client.post("/incidents", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture
def open_stream(server: str) -> Iterator[Any]:
    opened: list[SseReader] = []

    def _open(role: str = "admin", **kw: Any) -> SseReader:
        reader = SseReader(server, role, **kw)
        opened.append(reader)
        return reader

    yield _open
    for reader in opened:
        reader.close()


def test_a_single_intake_arrives_within_2_s(open_stream: Any, writer: httpx.Client, places: dict[str, Any]) -> None:
    stream = open_stream("admin")
    assert stream.response is not None and stream.response.status_code == 200
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    # httpx asks for gzip: the stream must not be compressed (GZipMiddleware would hold it back).
    assert "content-encoding" not in stream.response.headers
    incident = report(writer, places["A"], reporter_name="张三", reporter_phone="13800001234")
    posted = time.monotonic()
    event, _ = stream.until(lambda e: e["data"].get("id") == incident["id"])
    assert event["at"] - posted < WITHIN_S
    assert event["event"] == "incident" and event["id"]
    data = event["data"]
    assert set(data) == EVENT_KEYS
    assert data["kind"] == "created" and data["state"] == "visit" and data["category"] == "environment"
    assert data["group_code"] == places["A"][0] == incident["group_code"]
    assert abs(data["lon"] - places["A"][1]) < 1e-6 and abs(data["lat"] - places["A"][2]) < 1e-6
    assert "张三" not in "\n".join(stream.raw) and "13800001234" not in "\n".join(stream.raw)


def _csv(rows: list[tuple[str, float, float]], tag: str) -> bytes:
    lines = ["external_id,category,description,occurred_at,lon,lat"]
    lines += [f"{tag}-{n},environment,导入{n},{WHEN},{lon},{lat}" for n, (_, lon, lat) in enumerate(rows)]
    return ("\n".join(lines) + "\n").encode()


def test_a_transition_and_a_review_arrive_as_changes(open_stream: Any, writer: httpx.Client,
                                                      places: dict[str, Any]) -> None:
    incident = report(writer, places["B"])
    stream = open_stream("admin")
    r = writer.post(f"/incidents/{incident['id']}/transitions", json={"action": "advance", "note": "已受理"})
    assert r.status_code == 200, r.text
    posted = time.monotonic()
    event, _ = stream.until(lambda e: e["data"].get("id") == incident["id"])
    assert event["at"] - posted < WITHIN_S
    assert event["data"]["kind"] == "changed" and event["data"]["state"] == "report"
    assert event["data"]["reviewed"] is False
    r = writer.post(f"/incidents/{incident['id']}/review")
    assert r.status_code == 200, r.text
    event, _ = stream.until(lambda e: e["data"].get("id") == incident["id"])
    assert event["data"]["kind"] == "changed" and event["data"]["reviewed"] is True
    assert event["data"]["state"] == "report"


def test_a_batch_import_arrives_per_incident_or_as_one_bulk_event(open_stream: Any, writer: httpx.Client,
                                                                   places: dict[str, Any]) -> None:
    stream = open_stream("admin")
    small = _csv([places["A"], places["B"], places["C"]], "live-small")
    r = writer.post("/incidents/import", files={"file": ("small.csv", small)})
    assert r.status_code == 200 and r.json()["created"] == 3, r.text
    posted = time.monotonic()
    first = stream.next()
    rest = [stream.next(), stream.next()]
    assert first["at"] - posted < WITHIN_S
    got = [first, *rest]
    assert [e["data"]["kind"] for e in got] == ["created"] * 3
    assert sorted(e["data"]["group_code"] for e in got) == sorted(p[0] for p in (places["A"], places["B"],
                                                                                  places["C"]))
    assert len({e["data"]["id"] for e in got}) == 3
    # More rows than one statement logs one by one: one `bulk` event, its count the rows written.
    big = _csv([places["A"]] * 600, "live-big")
    r = writer.post("/incidents/import", files={"file": ("big.csv", big)})
    assert r.status_code == 200 and r.json()["created"] == 600, r.text
    posted = time.monotonic()
    event = stream.next()
    assert event["at"] - posted < WITHIN_S
    assert event["data"] == {"kind": "bulk", "count": 600}
    assert stream.drain() == []


def test_the_cli_import_reaches_an_open_stream(open_stream: Any, live_db: Any, places: dict[str, Any],
                                               tmp_path: Path) -> None:
    stream = open_stream("command_center")
    path = tmp_path / "cli.csv"
    path.write_bytes(_csv([places["C"], places["A"]], "live-cli"))
    env = {**os.environ, "DATABASE_URL": live_db.render_as_string(hide_password=False), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "gis.cli", "incidents", "import", str(path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    finished = time.monotonic()
    got = [stream.next(), stream.next()]
    assert got[0]["at"] - finished < WITHIN_S
    assert sorted(e["data"]["group_code"] for e in got) == sorted([places["C"][0], places["A"][0]])
    assert {e["data"]["kind"] for e in got} == {"created"}


def test_a_reconnect_gets_exactly_the_missed_events(open_stream: Any, writer: httpx.Client,
                                                    places: dict[str, Any]) -> None:
    first = open_stream("admin")
    one = report(writer, places["A"])
    seen, _ = first.until(lambda e: e["data"].get("id") == one["id"])
    first.close()
    two, three = report(writer, places["B"]), report(writer, places["C"])
    expected = [("created", two["id"]), ("created", three["id"])]
    by_header = open_stream("admin", headers={"Last-Event-ID": seen["id"]})
    by_query = open_stream("admin", params={"after": seen["id"]})
    for stream in (by_header, by_query):
        got = [stream.next(), stream.next()] + stream.drain()
        assert [(e["data"]["kind"], e["data"]["id"]) for e in got] == expected
    # The header wins over ?after= (EventSource resends the first URL with the header on reconnecting).
    both = open_stream("admin", params={"after": seen["id"]}, headers={"Last-Event-ID": by_header.raw and
                                                                       _last_id(by_header)})
    four = report(writer, places["A"])
    got = [both.next()] + both.drain()
    assert [(e["data"]["kind"], e["data"]["id"]) for e in got] == [("created", four["id"])]
    # A stream dropped before its first incident resumes from its start (the `ready` event's id).
    quiet = open_stream("admin")
    assert quiet.ready_id
    quiet.close()
    five = report(writer, places["B"])
    resumed = open_stream("admin", headers={"Last-Event-ID": quiet.ready_id})
    got = [resumed.next()] + resumed.drain()
    assert [(e["data"]["kind"], e["data"]["id"]) for e in got] == [("created", five["id"])]


def _last_id(stream: SseReader) -> str:
    ids = [line[4:] for line in stream.raw if line.startswith("id: ")]
    return ids[-1]


def test_transactions_committing_out_of_order_are_each_delivered_once(
        open_stream: Any, writer: httpx.Client, live_db: Any, places: dict[str, Any]) -> None:
    """T1 writes first (the lower transaction id and change-log id), T2 writes later and commits
    first. A reader following `id > last` would take T2's row and skip T1's when it commits; the
    transaction-id reader holds T2's back until T1 ends, then delivers both, in order, once."""
    from sqlalchemy.orm import Session

    from gis.incidents.service import IncidentFilter
    from gis.live import current_cursor, read_changes

    a, b = report(writer, places["A"]), report(writer, places["B"])
    stream = open_stream("admin")
    eng = create_engine(live_db, poolclass=NullPool)
    with Session(eng) as reader, Session(eng) as t1, Session(eng) as t2:
        start = current_cursor(reader)
        reader.rollback()
        naive_last = reader.execute(text("SELECT coalesce(max(id), 0) FROM incident_change")).scalar_one()
        reader.rollback()
        t1.execute(text("UPDATE incident SET reviewed_at = now() WHERE id = :i"), {"i": a["id"]})
        t2.execute(text("UPDATE incident SET reviewed_at = now() WHERE id = :i"), {"i": b["id"]})
        x1 = int(t1.execute(text("SELECT pg_current_xact_id()::text")).scalar_one())
        x2 = int(t2.execute(text("SELECT pg_current_xact_id()::text")).scalar_one())
        assert x1 < x2
        t2.commit()
        # The naive reader sees T2's row now and moves past T1's (a lower id, not yet committed).
        naive = reader.execute(text("SELECT id, incident_id FROM incident_change WHERE id > :last ORDER BY id"),
                               {"last": naive_last}).all()
        reader.rollback()
        assert [r.incident_id for r in naive] == [b["id"]]
        early = read_changes(reader, None, IncidentFilter(), start)
        reader.rollback()
        assert early.events == [] and early.held_back and early.cursor == start
        assert stream.drain(0.7) == []   # nothing is sent while T1 runs
        t1.commit()
        naive_after = reader.execute(text("SELECT id FROM incident_change WHERE id > :last"),
                                     {"last": naive[-1].id}).all()
        reader.rollback()
        assert naive_after == []    # ... so the naive reader never sees T1's change
        late = read_changes(reader, None, IncidentFilter(), early.cursor)
        reader.rollback()
        assert [(p["kind"], p["id"]) for _, p in late.events] == [("changed", a["id"]), ("changed", b["id"])]
        again = read_changes(reader, None, IncidentFilter(), late.cursor)
        assert again.events == []
    eng.dispose()
    got = [stream.next(), stream.next()] + stream.drain()
    assert [(e["data"]["kind"], e["data"]["id"]) for e in got] == [("changed", a["id"]), ("changed", b["id"])]


def test_each_role_sees_what_its_incident_list_shows_and_no_personal_field(
        server: str, open_stream: Any, writer: httpx.Client, places: dict[str, Any]) -> None:
    roles = ("admin", "command_center", "emergency", "supervisor", "grid_staff")
    streams = {role: open_stream(role) for role in roles}
    name, phone = "李四", "13900004321"
    posted = {key: report(writer, places[key], reporter_name=name, reporter_phone=phone)["id"]
              for key in ("C", "B", "A")}
    # Grid staff report what they see outside their grid: they follow their own report there.
    with httpx.Client(base_url=server, headers=auth("grid_staff"), timeout=30.0) as staff:
        own = report(staff, places["C"], reporter_name=name, reporter_phone=phone)["id"]
    visible = {"admin": {"A", "B", "C"}, "command_center": {"A", "B", "C"}, "emergency": {"A", "B", "C"},
               "supervisor": {"A", "B"}, "grid_staff": {"A"}}
    for role, stream in streams.items():
        expected = {posted[k] for k in visible[role]} | ({own} if role != "supervisor" else set())
        last = own if own in expected else posted["A"]   # the last one written that the role may see
        _, seen = stream.until(lambda e, last=last: e["data"].get("id") == last)
        seen += stream.drain()
        ids = {e["data"]["id"] for e in seen}
        assert ids == expected, role
        # And the list says the same for each.
        with httpx.Client(base_url=server, headers=auth(role), timeout=30.0) as c:
            for key, incident in [*posted.items(), ("own", own)]:
                shown = c.get(f"/incidents/{incident}").status_code == 200
                assert shown == (incident in ids), (role, key)
        for e in seen:
            assert set(e["data"]) == EVENT_KEYS
        raw = "\n".join(stream.raw)
        assert name not in raw and phone not in raw and "垃圾堆放" not in raw
    for role, status in (("planner", 403), ("anonymous", 401)):
        headers = auth(role) if role != "anonymous" else {}
        r = httpx.get(server + "/events/incidents", headers=headers, timeout=10.0)
        assert r.status_code == status and r.headers["content-type"] == "application/problem+json"


def test_filters_narrow_the_stream_as_they_narrow_the_list(open_stream: Any, writer: httpx.Client,
                                                          accounts: dict[str, dict[str, Any]],
                                                          places: dict[str, Any]) -> None:
    village = accounts["supervisor"]["scope_codes"][0]
    by_grid = open_stream("admin", params={"grid_code": village})
    by_category = open_stream("admin", params={"category": "dispute"})
    c = report(writer, places["C"], category="dispute", dispute_kind="neighbour")
    a = report(writer, places["A"])
    assert [e["data"]["id"] for e in [by_grid.next(), *by_grid.drain()]] == [a["id"]]
    assert [e["data"]["id"] for e in [by_category.next(), *by_category.drain()]] == [c["id"]]


def test_bad_requests_are_refused_with_the_field_named(server: str) -> None:
    for params, headers, loc in (({"after": "not-a-cursor"}, {}, ["query", "after"]),
                                 ({}, {"Last-Event-ID": "1-2-3"}, ["header", "last-event-id"]),
                                 ({"since": "2026-11-20T09:00:00"}, {}, ["query", "since"])):
        r = httpx.get(server + "/events/incidents", params=params, headers={**auth("admin"), **headers}, timeout=10)
        assert r.status_code == 422, r.text
        assert loc in [e["loc"] for e in r.json()["errors"]]


def test_streams_per_user_are_limited_with_a_chinese_429(server: str, open_stream: Any) -> None:
    streams = [open_stream("emergency") for _ in range(5)]
    r = httpx.get(server + "/events/incidents", headers=auth("emergency"), timeout=10)
    assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
    assert "实时推送连接过多" in r.json()["detail"] and r.headers["Retry-After"]
    streams[0].close()
    deadline = time.monotonic() + 5
    while True:   # the server notices the closed connection shortly after
        reader = SseReader(server, "emergency")
        status = reader.response.status_code if reader.response is not None else None
        reader.close()
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 200


@pytest.fixture(scope="module")
def short_server(live_db: Any, accounts: dict[str, dict[str, Any]]) -> Iterator[str]:
    """The app with short periods: a keep-alive every 0.3 s, streams that end after 2 s."""
    from api.main import create_app
    from gis.live import LiveSettings

    app = create_app(settings_for(live_db))
    app.state.live_settings = LiveSettings(heartbeat_s=0.3, max_stream_s=2.0, retry_ms=300)
    with serve_app_in_thread(app) as base:
        yield base


def test_keep_alive_comments_and_a_stream_that_ends(short_server: str) -> None:
    stream = SseReader(short_server, "admin")
    try:
        assert stream.ended.wait(6), "the stream did not end after max_stream_s"
        assert stream.raw[0] == "retry: 300"
        assert sum(1 for line in stream.raw if line == ": keep-alive") >= 3
    finally:
        stream.close()


@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_live_js_resumes_across_stream_ends_in_chromium(short_server: str, accounts: dict[str, dict[str, Any]],
                                                        places: dict[str, Any], device: str) -> None:
    """The page's wrapper in a real browser, on a shell page (logged in by the form: the cookie):
    events delivered while the server ends the stream every 2 s and EventSource reconnects with
    Last-Event-ID, each once; after a logout the reconnect is refused and the page says so in Chinese."""
    from tests.browser import OfflinePageChecker, launch_chromium
    from tests.conftest import DESKTOP, PHONE, screenshot_path

    with launch_chromium() as browser, httpx.Client(base_url=short_server, headers=auth("admin"),
                                                    timeout=30.0) as writer:
        context = browser.new_context(**(PHONE if device == "phone" else DESKTOP))
        page = context.new_page()
        checker = OfflinePageChecker().attach(page)
        page.goto(short_server + "/login", wait_until="networkidle")
        page.fill("#username", accounts["command_center"]["username"])
        page.fill("#password", accounts["command_center"]["password"])
        with page.expect_navigation():
            page.click("button[type=submit]")
        page.goto(short_server + "/pages/account", wait_until="networkidle")
        # Leaving the role's first page (the command map) cancels its requests still in flight: aborted,
        # which the checker keeps apart from failures.
        page.add_script_tag(url="/static/wangge/live.js")   # as pages load it
        page.evaluate("""() => {
            window.got = []; window.states = [];
            window.feed = Wangge.live('/events/incidents', d => window.got.push(d),
                                      {onStatus: s => window.states.push(s)});
        }""")
        page.wait_for_function("window.states.includes('open')")
        ids = []
        for n in range(4):   # spread over two stream ends
            ids.append(report(writer, places["ABC"[n % 3]])["id"])
            posted = time.monotonic()
            page.wait_for_function(f"window.got.some(d => d.id === {ids[-1]})", timeout=WITHIN_S * 1000)
            assert time.monotonic() - posted < WITHIN_S + 0.5
            page.wait_for_timeout(900)
        page.wait_for_timeout(500)
        assert page.evaluate("window.got.map(d => d.id)") == ids
        assert page.evaluate("window.states").count("open") >= 2   # it did reconnect
        checker.assert_clean()
        # Logged out elsewhere: the next reconnect is refused (401); the banner says so, with a link.
        page.evaluate("() => Wangge.api('/auth/logout', {method: 'POST'})")
        banner = page.locator("#wangge-banner")
        banner.wait_for(state="visible", timeout=8000)
        assert "登录" in banner.inner_text()
        assert page.locator("#wangge-banner a[href^='/login']").count() == 1
        assert page.evaluate("window.states").count("closed") == 1
        page.screenshot(path=screenshot_path(f"live_feed_logged_out_{device}"))
        # The refused reconnect answers 401 (Chromium may also report that request as aborted, since
        # EventSource stops reading a non-200 answer: the checker keeps aborts apart).
        refused = [p for p in checker.problems() if "401" not in p]
        assert refused == [], refused
        assert checker.remote_requests == []
        context.close()


def test_a_bulk_mode_import_is_one_bulk_event_and_one_log_row(open_stream: Any, live_db: Any,
                                                              places: dict[str, Any], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A load large enough for bulk mode (indexes dropped and rebuilt; 50,000 rows and the table's
    size, made small here) writes ONE change-log row however many parts it has, not one per part."""
    from sqlalchemy.orm import Session

    from gis.incidents import batch

    eng = create_engine(live_db, poolclass=NullPool)
    with eng.connect() as c:
        table_rows = c.execute(text("SELECT count(*) FROM incident")).scalar_one()
        logged_before = c.execute(text("SELECT count(*) FROM incident_change")).scalar_one()
    rows = table_rows + 100
    monkeypatch.setattr(batch, "BULK_MIN_ROWS", 1)
    path = tmp_path / "bulk.csv"
    path.write_bytes(_csv([places["A"], places["B"], places["C"]] * (rows // 3 + 1), "live-bulk"))
    source = batch.open_incident_file(path, max_rows=rows + 10)
    source.chunk_rows = 2_000   # several parts
    stream = open_stream("admin")
    with Session(eng) as session:
        report_ = batch.import_incidents(session, source, source="test:bulk", crs=None, outside_tolerance_m=200.0,
                                             chunk_rows=2_000)
        assert batch.BULK_MIN_ROWS == 1 and report_.created > 2_000
        session.commit()
    committed = time.monotonic()
    event = stream.next()
    assert event["at"] - committed < WITHIN_S
    assert event["data"] == {"kind": "bulk", "count": report_.created}
    assert stream.drain() == []
    with eng.connect() as c:
        assert c.execute(text("SELECT count(*) FROM incident_change")).scalar_one() == logged_before + 1
        enabled = c.execute(text("SELECT tgenabled FROM pg_trigger WHERE tgname = 'incident_change_insert'"))
        enabled = enabled.scalar_one()
        assert enabled == "O"   # the trigger is on again for everyone else
    eng.dispose()


def test_a_lost_listener_loses_no_event(open_stream: Any, writer: httpx.Client, live_db: Any,
                                        places: dict[str, Any]) -> None:
    """The LISTEN connection is killed: the incident written meanwhile still arrives (the periodic
    read, every 5 s), and the listener comes back."""
    from gis.live import LISTENER_NAME

    stream = open_stream("admin")
    eng = create_engine(live_db, poolclass=NullPool)
    find = text("SELECT pid FROM pg_stat_activity WHERE application_name = :n AND datname = current_database()")
    with eng.connect() as c:
        pids = c.execute(find, {"n": LISTENER_NAME}).scalars().all()
        assert len(pids) == 1   # one listener for the process, however many streams
        c.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pids[0]})
    incident = report(writer, places["C"])
    posted = time.monotonic()
    event, _ = stream.until(lambda e: e["data"].get("id") == incident["id"], timeout=8.0)
    assert event["at"] - posted < 7.0
    deadline = time.monotonic() + 10
    while True:
        with eng.connect() as c:
            back = c.execute(find, {"n": LISTENER_NAME}).scalars().all()
        if back and back != pids or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert back and back != pids
    eng.dispose()
    # ... and wakes the streams again: the next intake is prompt.
    incident = report(writer, places["A"])
    posted = time.monotonic()
    event, _ = stream.until(lambda e: e["data"].get("id") == incident["id"])
    assert event["at"] - posted < WITHIN_S
