"""The live incident feed: the change log read in commit-safe order, and one LISTEN per process.

Triggers on `incident` (migration 0013) write a row to `incident_change` for every incident created
or changed, or one `bulk` row for a statement of more than 500 rows, and NOTIFY
`wangge_incident_change` at commit. Transactions commit out of id order, so a reader that follows
row ids alone can skip a row committed late; `read_changes` reads only rows whose writing
transaction is older than every transaction of this database still running (`HORIZON_SQL`: the
snapshot's xmin, ignoring other databases' transactions of the shared cluster; all older ones have
finished, so no row can appear below that line any more), in (xid, id) order, and its cursor is
that pair. A row is held back while an older transaction runs (a batch import holds back
what others write meanwhile until it ends).

`LiveHub` is the process's one listener: an asyncio task holding a psycopg AsyncConnection that
LISTENs while anyone subscribes, and wakes every subscriber on a notification. Each subscriber reads
its own catch-up with its own cursor and filter (on the hub's small pool of reading connections, in a
worker thread), so a slow client never stalls another; a missed notification (the listener
reconnecting) costs at most `catch_up_s`, since every subscriber also reads on that period.

Retention: the log is only read near its end; rows older than `LiveSettings.keep_days` may be
removed with `prune_changes` (a client resuming from an older cursor then simply misses them).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from gis.auth.principal import Principal
from gis.db import driver_rows
from gis.errors import InputError, Problem
from gis.incidents.service import FLAGGED_SQL, IncidentFilter

log = logging.getLogger("wangge.live")

CHANNEL = "wangge_incident_change"
LISTENER_NAME = "wangge-live-listener"   # the listening connection's application_name


class LiveSettings(BaseSettings):
    """The live feed's limits (environment: WANGGE_LIVE_*)."""

    model_config = SettingsConfigDict(env_prefix="WANGGE_LIVE_", extra="ignore")

    # Every subscriber reads this often even without a notification (a listener that reconnected
    # may have missed one).
    catch_up_s: float = 5.0
    # A read that found rows held back by an older running transaction looks again this soon.
    held_back_poll_s: float = 0.25
    heartbeat_s: float = 15.0
    # The browser's EventSource waits this long before it reconnects.
    retry_ms: int = 2000
    # A stream ends after this long; the browser reconnects (authenticated again) and resumes.
    max_stream_s: float = 900.0
    streams_per_user: int = 5
    # Reads run on their own small pool, so live pages never take the API's connections.
    reader_connections: int = 2
    rows_per_read: int = 500
    lock_timeout_ms: int = 1000
    keep_days: int = 30


# --- the cursor --------------------------------------------------------------------------------

_CURSOR = re.compile(r"^([0-9a-f]{1,16})\.([0-9a-f]{1,16})$")


@dataclass(frozen=True, order=True)
class Cursor:
    """A position in the change log: the writing transaction's id, then the row id."""

    xid: int
    id: int

    def encode(self) -> str:
        return f"{self.xid:x}.{self.id:x}"

    @classmethod
    def decode(cls, value: str, field: tuple[str, ...]) -> Cursor:
        found = _CURSOR.match(value.strip())
        if found is None:
            raise InputError(Problem(field, "not a position this feed gave (an event's id)", "bad_cursor"))
        return cls(int(found.group(1), 16), int(found.group(2), 16))


# The horizon: the oldest transaction of this database still running when the statement's snapshot
# was taken (else the next transaction id). Every transaction below it has finished, and this
# snapshot sees all that committed; no log row can appear below it any more. Transaction ids are the
# whole cluster's: a running transaction that pg_stat_activity shows in ANOTHER database cannot write
# this log and does not hold it back (one that finished since the snapshot is not shown anywhere and
# is counted, which only holds rows back until the next read).
HORIZON_SQL = """
SELECT (SELECT coalesce(min(x), pg_snapshot_xmax(snap.s))
        FROM pg_snapshot_xip(snap.s) x
        WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                          WHERE a.backend_xid = x::xid
                            AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database())))
       AS horizon
FROM (SELECT pg_current_snapshot() AS s) snap
"""


def current_cursor(session: Session) -> Cursor:
    """Where a new subscriber starts: after every change of a transaction that has finished, so
    it gets what commits from now on (and what committed since the oldest running transaction began)."""
    horizon = session.execute(text(f"SELECT horizon::text FROM ({HORIZON_SQL}) h")).scalar_one()
    return Cursor(int(horizon), 0)


# --- reading -----------------------------------------------------------------------------------

# The page of log rows after the cursor whose transactions all finished; for each the incident's
# public fields, only where the caller's access and filter (one condition on alias i) let it through.
_READ_SQL = """
WITH horizon AS MATERIALIZED ({horizon}),
page AS (
    SELECT c.id, c.xid, c.incident_id, c.kind, c.count
    FROM incident_change c
    WHERE c.xid < (SELECT horizon FROM horizon)
      AND (c.xid, c.id) > (:after_xid::xid8, :after_id)
    ORDER BY c.xid, c.id
    LIMIT :page_rows)
SELECT p.id AS change_id, p.xid::text AS xid, p.kind, p.count, v.*,
       EXISTS (SELECT 1 FROM incident_change h WHERE h.xid >= (SELECT horizon FROM horizon)) AS held_back
FROM page p
LEFT JOIN LATERAL (
    SELECT i.id, i.state, i.category, coalesce(i.stage_deadline < :now, false) AS overdue,
           {flagged} AS flagged, i.reviewed_at IS NOT NULL AS reviewed,
           ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat, i.group_code, i.occurred_at
    FROM incident i
    WHERE i.id = p.incident_id AND {cond}) v ON true
ORDER BY p.xid, p.id
"""

# held_back is asked on every row but computed once (an uncorrelated subquery); with an empty page it
# is asked alone.
_HELD_BACK_SQL = """
SELECT EXISTS (SELECT 1 FROM incident_change h
               WHERE h.xid >= (SELECT horizon FROM ({horizon}) hz)
                 AND (h.xid, h.id) > (:after_xid::xid8, :after_id)) AS held_back
"""


@dataclass
class Changes:
    events: list[tuple[Cursor, dict[str, Any]]] = field(default_factory=list)
    cursor: Cursor = Cursor(0, 0)
    more: bool = False        # a full page: read again at once
    held_back: bool = False   # committed rows wait behind an older transaction still running


def read_changes(session: Session, principal: Principal | None, filters: IncidentFilter, after: Cursor,
                 *, limit: int = 500, now: dt.datetime | None = None) -> Changes:
    """The changes after `after` that `principal` may see through `filters`, each with its cursor.

    The cursor moves past rows the caller may not see as well (they are read, never sent). Bulk rows
    of one transaction (a batch import's parts) come out as one `bulk` event with their total count.
    """
    now = now or dt.datetime.now(dt.UTC)
    cond, params = filters.where(principal, now)
    params.update(after_xid=str(after.xid), after_id=after.id, page_rows=limit, now=now)
    rows = driver_rows(session, _READ_SQL.format(horizon=HORIZON_SQL, flagged=FLAGGED_SQL, cond=cond), params)
    out = Changes(cursor=after, more=len(rows) >= limit)
    if not rows:
        out.held_back = bool(driver_rows(session, _HELD_BACK_SQL.format(horizon=HORIZON_SQL), params)[0]["held_back"])
        return out
    out.held_back = bool(rows[0]["held_back"])
    for row in rows:
        cursor = Cursor(int(row["xid"]), int(row["change_id"]))
        out.cursor = cursor
        if row["kind"] == "bulk":
            last = out.events[-1] if out.events else None
            if last is not None and last[1]["kind"] == "bulk" and last[0].xid == cursor.xid:
                out.events[-1] = (cursor, {"kind": "bulk", "count": last[1]["count"] + int(row["count"])})
            else:
                out.events.append((cursor, {"kind": "bulk", "count": int(row["count"])}))
        elif row["id"] is not None:
            out.events.append((cursor, event_payload(row)))
    return out


def event_payload(row: dict[str, Any]) -> dict[str, Any]:
    """What a page learns of a created or changed incident: no personal field, no text."""
    occurred = row["occurred_at"]
    return {
        "id": int(row["id"]), "kind": row["kind"], "state": row["state"], "category": row["category"],
        "overdue": bool(row["overdue"]), "flagged": bool(row["flagged"]), "reviewed": bool(row["reviewed"]),
        "lon": float(row["lon"]), "lat": float(row["lat"]), "group_code": row["group_code"],
        "occurred_at": occurred.isoformat() if occurred is not None else None,
    }


def prune_changes(session: Session, keep_days: int) -> int:
    """Remove log rows older than `keep_days`; returns how many. The caller commits."""
    done = session.execute(text("DELETE FROM incident_change WHERE at < now() - make_interval(days => :d)"),
                           {"d": int(keep_days)})
    return int(getattr(done, "rowcount", 0) or 0)


def bulk_load_begins(cur: Any) -> None:
    """A batch import in bulk mode (gis.bulk_indexes: the incident tables locked ACCESS
    EXCLUSIVE until its commit) logs nothing per statement: the insert trigger's transition table
    copies every row (about a tenth of the import's time at 200,000 rows, bench/live_bench.py).
    Inside the import's transaction: undone by a rollback, invisible to others (the table is locked)."""
    cur.execute("ALTER TABLE incident DISABLE TRIGGER incident_change_insert")


def bulk_load_ends(cur: Any, created: int) -> None:
    """The end of a bulk load: the trigger back on, and the whole import logged as ONE `bulk` row."""
    cur.execute("ALTER TABLE incident ENABLE TRIGGER incident_change_insert")
    if created:
        cur.execute("INSERT INTO incident_change (incident_id, kind, count) VALUES (NULL, 'bulk', %s)", (created,))
        cur.execute("SELECT pg_notify(%s, '')", (CHANNEL,))


# --- the hub: one LISTEN per process ------------------------------------------------------------


class TooManyStreams(Exception):
    """The user already has `streams_per_user` streams open."""

    def __init__(self, limit: int):
        super().__init__(limit)
        self.limit = limit


class Subscription:
    """One open stream: woken by the hub on every notification."""

    def __init__(self, hub: LiveHub, user_id: int):
        self.hub, self.user_id = hub, user_id
        self.woken = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """Until a notification or `timeout` seconds; True when woken."""
        try:
            await asyncio.wait_for(self.woken.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self.woken.clear()
        return True


class LiveHub:
    """The process's listener and the subscribers it wakes; reads run on its own small pool."""

    def __init__(self, database_url: str, settings: LiveSettings | None = None, *, pooled: bool = True):
        self.settings = settings or LiveSettings()
        self.database_url = database_url
        self.pooled = pooled
        self.subscribers: set[Subscription] = set()
        self.per_user: dict[int, int] = {}
        self.listening = asyncio.Event()      # set while the LISTEN is in force
        self._task: asyncio.Task[None] | None = None
        self._reads = asyncio.Semaphore(max(1, self.settings.reader_connections))
        self._engine: Engine | None = None

    # -- subscribers

    @contextlib.asynccontextmanager
    async def subscribe(self, user_id: int) -> AsyncIterator[Subscription]:
        """A subscription for the duration of a stream; refused past the per-user limit."""
        if self.per_user.get(user_id, 0) >= self.settings.streams_per_user:
            raise TooManyStreams(self.settings.streams_per_user)
        sub = Subscription(self, user_id)
        self.per_user[user_id] = self.per_user.get(user_id, 0) + 1
        self.subscribers.add(sub)
        self._ensure_listening()
        try:
            yield sub
        finally:
            self.subscribers.discard(sub)
            left = self.per_user[user_id] - 1
            if left:
                self.per_user[user_id] = left
            else:
                del self.per_user[user_id]
            if not self.subscribers:
                self._stop_listening()

    def wake_all(self) -> None:
        for sub in self.subscribers:
            sub.woken.set()

    # -- the listener

    def _ensure_listening(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._listen(), name="wangge-live-listen")

    def _stop_listening(self) -> None:
        # Nobody listens: the connection goes (a database copied by TEMPLATE must have no users).
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.listening.clear()

    def _conninfo(self) -> str:
        return make_url(self.database_url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self._conninfo(), autocommit=True, application_name=LISTENER_NAME) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    self.wake_all()   # whatever committed while nobody listened is read now
                    while True:
                        async for _ in conn.notifies(timeout=self.settings.heartbeat_s):
                            self.wake_all()
                        # Quiet for a while: is the connection still there? (A dead one raises.)
                        await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: the periodic reads cover the gap
                log.warning("live feed listener lost its connection (%s); reconnecting", exc)
            self.listening.clear()
            await asyncio.sleep(1.0)

    # -- reads

    def engine(self) -> Engine:
        if self._engine is None:
            # A read waits at most this long for a lock (a bulk import locks the incident tables until
            # it commits); it then counts as held back and is tried again shortly.
            args = {"options": f"-c lock_timeout={int(self.settings.lock_timeout_ms)}"}
            if self.pooled:
                self._engine = create_engine(self.database_url, pool_size=max(1, self.settings.reader_connections),
                                             max_overflow=0, connect_args=args)
            else:
                self._engine = create_engine(self.database_url, poolclass=NullPool, connect_args=args)
        return self._engine

    @contextlib.contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self.engine()) as session:
            try:
                yield session
            finally:
                session.rollback()

    async def start(self) -> Cursor:
        def run() -> Cursor:
            with self._session() as session:
                return current_cursor(session)

        async with self._reads:
            return await asyncio.to_thread(run)

    async def read(self, principal: Principal, filters: IncidentFilter, after: Cursor) -> Changes:
        from psycopg.errors import LockNotAvailable

        def run() -> Changes:
            with self._session() as session:
                try:
                    return read_changes(session, principal, filters, after, limit=self.settings.rows_per_read)
                except LockNotAvailable:
                    return Changes(cursor=after, held_back=True)

        async with self._reads:
            return await asyncio.to_thread(run)

    async def close(self) -> None:
        self._stop_listening()
        if self._engine is not None:
            await asyncio.to_thread(self._engine.dispose)
            self._engine = None
