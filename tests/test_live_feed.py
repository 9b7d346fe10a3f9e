"""The live incident feed (GET /events/incidents) over a real uvicorn server on a real PostGIS.

Every write path (single intake, batch import by the API and by the CLI, loop transitions) reaches
an open stream within 2 s; a reconnect with Last-Event-ID (or ?after=) gets exactly the events it
missed; transactions that commit out of id order are each delivered once; each role sees only
what its incident list shows, and no event carries a personal field.
"""

from __future__ import annotations

import json
import queue
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
                        if "data" in event:
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
        return self.events.get(timeout=timeout)

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
