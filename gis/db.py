"""Database engine, sessions and migrations."""

from __future__ import annotations

import functools
import inspect
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import AsyncEngine

from gis.settings import Settings, get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

T = TypeVar("T")


class PerDataVersion(Generic[T]):
    """Something built from the database (an index, a gazetteer), kept per database and data
    version: `version_sql` returns one row that changes whenever the data it is built from does;
    `build(key)` makes the thing for that (database, version) key.
    The last `size` versions are kept (least recently used first out); threads share them."""

    def __init__(self, version_sql: str, size: int = 2):
        self.version_sql = text(version_sql)
        self.size = size
        self._kept: OrderedDict[tuple[Any, ...], T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session: Session, build: Callable[[tuple[Any, ...]], T]) -> T:
        bind = session.get_bind()
        engine = bind if isinstance(bind, Engine) else bind.engine
        key = (engine.url.render_as_string(hide_password=True),
               *session.execute(self.version_sql).one())
        with self._lock:
            found = self._kept.get(key)
            if found is not None:
                self._kept.move_to_end(key)
                return found
        made = build(key)
        with self._lock:
            self._kept[key] = made
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
        return made


def make_engine(settings: Settings | None = None, url: str | None = None, *,
                serving: bool = False) -> Engine:
    """The engine; `serving` (the web app) bounds how long a statement waits for another's lock.

    A request never queues behind another for long: a lock held past `database_lock_timeout_ms`
    ends the statement (SQLSTATE 55P03, answered 503 with Retry-After), and a connection not free
    within `database_pool_timeout_s` likewise (the pool's default, 30 s, stalled every request).
    The CLI keeps waiting: an import may have to wait for readers to let go of a table.
    """
    settings = settings or get_settings()
    url = url or settings.require_database_url()
    engine = create_engine(url, **_engine_options(settings, serving))
    _ping_pooled(engine, settings)
    return engine


def make_async_engine(settings: Settings) -> AsyncEngine:
    """The serving engine's twin on psycopg's async driver, for the lean routes (`api.deps.in_session`): the
    same pool, timeouts and pings; its sessions run their (sync) work in a greenlet on the event loop."""
    from sqlalchemy import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    url = make_url(settings.require_database_url()).set(drivername="postgresql+psycopg_async")
    engine = create_async_engine(url, **_engine_options(settings, True))
    _ping_pooled(engine.sync_engine, settings)
    return engine


def _ping_pooled(engine: Engine, settings: Settings) -> None:
    """A pooled engine's idle pings (`ping_when_idle`); without the setting, `pool_pre_ping` pings every time."""
    if settings.database_pool_size > 0 and settings.database_ping_after_idle_s is not None:
        ping_when_idle(engine, settings.database_ping_after_idle_s)


def _engine_options(settings: Settings, serving: bool) -> dict[str, Any]:
    lock_timeout = int(settings.database_lock_timeout_ms)
    connect_args = {"options": f"-c lock_timeout={lock_timeout}"} if serving else {}
    if settings.database_pool_size <= 0:
        from sqlalchemy.pool import NullPool

        return {"poolclass": NullPool, "connect_args": connect_args}
    return {"pool_pre_ping": settings.database_ping_after_idle_s is None,
            "pool_size": settings.database_pool_size,
            "max_overflow": settings.database_pool_max_overflow,
            "pool_timeout": settings.database_pool_timeout_s,
            "connect_args": connect_args}


def ping_when_idle(engine: Engine, idle_s: float) -> None:
    """Check a pooled connection before it is lent only if it sat unused for more than `idle_s`.

    `pool_pre_ping` pings on every checkout: a round trip per request that a busy server pays
    for nothing, since a connection returned a moment ago is alive. A connection that died while
    idle (the server restarted, an idle timeout, the network) is found here and replaced: raising
    DisconnectionError makes the pool discard it and lend another (SQLAlchemy's documented
    pessimistic pattern). One that dies between uses under load fails that one statement, and
    the pool then replaces every connection older than the failure; the token check, a request's
    first statement, retries once on a new connection (`first_rows`).
    """

    @event.listens_for(engine, "checkin")
    def _returned(dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _lent(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned <= idle_s:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # noqa: BLE001 - any failure to answer means the connection is gone
            raise DisconnectionError(str(exc)) from exc
        if not alive:
            raise DisconnectionError("the pooled connection did not answer")


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_COMMENT_LINE = re.compile(r"^\s*--.*\n?", re.M)
_INDENT = re.compile(r"^[ \t]+", re.M)
_LITERAL = re.compile(r"('(?:[^']|'')*')")   # a string literal, kept whole (split keeps it: odd parts)


@functools.lru_cache(maxsize=256)
def pyformat(sql: str) -> str:
    """`:name` parameters (SQLAlchemy's text style) as psycopg's `%(name)s`; `::casts` are left alone.

    Whole-line comments and indentation go: psycopg caches its own parse of a statement only up
    to 4096 characters (`MAX_CACHED_STATEMENT_LENGTH`), and the indented intake statement, at
    ~4,600, was re-split by a Python regex on every request. A string literal keeps its spaces.
    """
    compact = _INDENT.sub("", _COMMENT_LINE.sub("", sql))
    # ", " -> "," outside string literals (our statements hold no dollar-quoted text): the intake statement of a
    # grid member, with the credential's check in it, came to 4,074 characters; 3,908 so.
    parts = _LITERAL.split(compact)
    compact = "".join(part if i % 2 else part.replace(", ", ",") for i, part in enumerate(parts))
    return _NAMED.sub(r"%(\1)s", compact.replace("%", "%%"))


def io(value: Any) -> Any:
    """A psycopg call's result: awaited when the session's driver is psycopg's async one (`api.deps.in_session`
    runs a lean route's work in a greenlet on the event loop: `AsyncSession.run_sync`), as it is otherwise."""
    if inspect.isawaitable(value):
        from sqlalchemy.util import await_

        return await_(value)
    return value


def offload(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)`, in a worker thread when called by work running on the event loop (`io`), so that a long
    computation (a city's grid index: ~0.3 s) does not stall every other request; here otherwise. `fn` must
    not use the session."""
    from sqlalchemy.util.concurrency import in_greenlet

    if in_greenlet():
        import asyncio

        return io(asyncio.to_thread(fn, *args))  # type: ignore[no-any-return]
    return fn(*args)


def client_cursor(driver: Any, row_factory: Any) -> Any:
    """A cursor that binds parameters on the client (`ClientCursor`), of the driver's kind (sync or async)."""
    from psycopg import AsyncClientCursor, AsyncConnection, ClientCursor

    return (AsyncClientCursor if isinstance(driver, AsyncConnection) else ClientCursor)(driver, row_factory=row_factory)


def set_autocommit(driver: Any, value: bool) -> None:
    from psycopg import AsyncConnection

    if isinstance(driver, AsyncConnection):
        io(driver.set_autocommit(value))
    else:
        driver.autocommit = value


def driver_rows(session: Session, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one statement on the session's connection (and transaction) through psycopg directly.

    For the few statements on hot request paths (token check, intake, reading an incident): it
    skips SQLAlchemy's per-execution result machinery, which costs more than the query itself
    there. Same SQL text as `text()` would take; rows come back as dicts.
    """
    driver = session.connection().connection.driver_connection
    return _run(driver, sql, params)


def _plain_idle(driver: Any) -> bool:
    """No transaction is open on `driver`, and psycopg's BEGIN for the next one would be the plain one (no
    isolation, read-only or deferrable option): its statements may then go without psycopg's own BEGIN (with
    ours in their message, or, alone, as a transaction of their own)."""
    from psycopg.pq import TransactionStatus

    return (driver is not None and driver.info.transaction_status == TransactionStatus.IDLE
            and not driver.autocommit and driver.isolation_level is None and driver.read_only is None
            and driver.deferrable is None)


@contextmanager
def _without_psycopgs_begin(driver: Any) -> Iterator[None]:
    """`driver` in autocommit while the block sends, so that psycopg sends no BEGIN of its own; then back to
    transactions. psycopg's setter refuses inside a transaction, so the flag is set back directly: the
    connection is then as psycopg's own BEGIN and statements would have left it (in a transaction, or, after a
    lone statement, idle)."""
    set_autocommit(driver, True)
    try:
        yield
    finally:
        driver._autocommit = False


def first_rows(session: Session, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """`driver_rows` for a statement that is usually the first of the session's transaction.

    As the first, it goes to the server in one message with the BEGIN that opens the transaction
    (psycopg sends its BEGIN and waits for the answer before the statement: a round trip of its
    own, one in five of a report's). The transaction, its isolation and every later statement are
    the same as psycopg's own BEGIN would give; only the statement's parameters are bound by
    psycopg on the client (`ClientCursor`, quoted by psycopg) instead of by the server.

    A pooled connection that died since its last use (not pinged: with
    `database_ping_after_idle_s` set the pool pings only idle ones) is replaced and the statement
    run again, once: nothing has been done in
    this transaction yet, so nothing is lost or done twice. Used by the token check, which every
    API request starts with.
    """
    return _replacing_dead(session, lambda: _run_first(session, sql, params))


def committed_rows(session: Session, sql: str, params: dict[str, Any]) -> list[dict[str, Any]] | None:
    """ONE statement as a transaction of its own, committed when this returns: one round trip in all.

    The statement goes alone with the connection in autocommit: no BEGIN before it and no COMMIT after it
    (PostgreSQL commits a lone statement when it ends, before it answers), and psycopg binds and prepares it
    as any other (`_run`). It is all or nothing as any transaction is, and its rows are those `driver_rows`
    would give. For an operation whose every write is that one statement and whose every condition is in it
    (the intake of a report: `gis.incidents.service.intake_at_once`).

    None, sending nothing, when the session has a transaction open already (then the statement could not be
    its own) or sets options for its transactions; the caller then takes its usual way. A pooled connection
    found dead is replaced, as for `first_rows`; when it died after running the statement and before
    answering (the server gone at that instant) the statement may run twice, as a client's own retry after a
    lost answer would: a report's `external_id` makes that harmless."""
    def run() -> list[dict[str, Any]] | None:
        driver = session.connection().connection.driver_connection
        if not _plain_idle(driver):
            return None
        with _without_psycopgs_begin(driver):
            return _run(driver, sql, params)

    return _replacing_dead(session, run)


def _replacing_dead(conn: Session | Any, run: Callable[[], T]) -> T:
    """`run()`, the first statements of `conn`'s transaction; when the pooled connection they went to had died
    since its last use (a lost connection, found closed), once more on a new one: nothing was done in the
    transaction yet, so nothing is lost or done twice. Else as `run()`."""
    import psycopg

    if not isinstance(conn, Session) or conn.in_transaction():
        return run()
    try:
        return run()
    except psycopg.OperationalError:
        connection = conn.connection()
        driver = connection.connection.driver_connection
        if driver is None or not driver.closed:
            raise
        connection.invalidate()   # tells the pool: replace this and every older connection
        conn.rollback()
        return run()


def _run_first(session: Session, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    from psycopg.pq import ExecStatus
    from psycopg.rows import dict_row

    driver = session.connection().connection.driver_connection
    if not _plain_idle(driver):
        return _run(driver, sql, params)   # a transaction is open, or its BEGIN is not the plain one
    with _without_psycopgs_begin(driver):   # our BEGIN goes in the statement's message
        cur = client_cursor(driver, dict_row)
        try:
            io(cur.execute("BEGIN;" + pyformat(sql), params))
            cur.nextset()   # past BEGIN's result, to the statement's
            result = cur.pgresult
            return io(cur.fetchall()) if result is not None and result.status == ExecStatus.TUPLES_OK else []
        finally:
            io(cur.close())


# session.info key: [sql, params, its rows once sent] of a statement queued to go with the next message.
_RIDER = "wangge.rider"


def send_with_next(session: Session, sql: str, params: dict[str, Any]) -> None:
    """Queue a one-statement read to go FIRST in the next message `script_rows` sends on this session (one
    round trip for both; its parameters' names must differ from that message's); `sent_rows` gives its
    rows after. Used by `api.security.Check.within`: the caller's credential checked in the same message as
    the request's own statements."""
    session.info[_RIDER] = [sql, params, None]


def sent_rows(session: Session) -> list[dict[str, Any]] | None:
    """The rows of the statement `send_with_next` queued, as dicts; None when no message went since (it is
    then dropped: it never goes later)."""
    rider = session.info.pop(_RIDER, None)
    return None if rider is None else rider[2]


def script_rows(conn: Session | Any, statements: Sequence[str], params: dict[str, Any], *,
                tuples: bool = False) -> list[list[Any]]:
    """Several statements in ONE message to the server (one round trip), in the caller's transaction.

    `conn`: a Session or an SQLAlchemy Connection. The statements take `:name` parameters (the same dict for
    all), bound on the client by psycopg (`ClientCursor`, quoted by psycopg), and run one after the other as
    PostgreSQL runs a multi-statement query: each planned after the one before it ran, so a `set_config`
    of the first applies to the plan of the next. When no transaction is open, its BEGIN goes in the same
    message (as `first_rows` does; psycopg's own where the connection sets
    options for it). A statement that is `COMMIT` ends the transaction there: psycopg, and so
    the session's later commit, then has nothing left to send. Returns each row-returning statement's rows,
    in order: dicts, or with `tuples` tuples (for statements whose columns may share a name). A statement queued
    on the session by `send_with_next` goes first; its rows are kept for `sent_rows`, not returned here.
    """
    # A message that opens the session's transaction is sent again on a new connection when the pooled one had
    # died (as `first_rows`): the first message of a route whose check rides in it (`send_with_next`).
    return _replacing_dead(conn, lambda: _script_rows(conn, statements, params, tuples))


def _script_rows(conn: Session | Any, statements: Sequence[str], params: dict[str, Any],
                 tuples: bool) -> list[list[Any]]:
    from psycopg.pq import ExecStatus
    from psycopg.rows import dict_row, tuple_row

    connection = conn.connection() if isinstance(conn, Session) else conn
    if not connection.in_transaction():
        connection.begin()   # so that SQLAlchemy's commit/rollback reach the transaction begun here (no I/O)
    driver: Any = connection.connection.driver_connection
    rider = conn.info.get(_RIDER) if isinstance(conn, Session) else None
    if rider is not None and rider[2] is None:   # a statement queued by `send_with_next` goes first
        if rider[1].keys() & params.keys():
            raise ValueError(f"parameters named twice: {sorted(rider[1].keys() & params.keys())}")
        statements, params = [rider[0], *statements], {**params, **rider[1]}
    else:
        rider = None
    script = ";".join(pyformat(sql) for sql in statements)
    begin = _plain_idle(driver)
    if begin:
        script = "BEGIN;" + script
    out: list[list[Any]] = []
    with _without_psycopgs_begin(driver) if begin else nullcontext():
        cur = client_cursor(driver, tuple_row if tuples else dict_row)
        try:
            io(cur.execute(script, params))
            while True:
                result = cur.pgresult
                if result is not None and result.status == ExecStatus.TUPLES_OK:
                    rows = io(cur.fetchall())
                    if rider is not None and rider[2] is None:   # the queued statement's rows, as dicts
                        names = [column.name for column in cur.description or ()]
                        rider[2] = [dict(zip(names, row, strict=True)) for row in rows] if tuples else rows
                    else:
                        out.append(rows)
                if not cur.nextset():
                    break
        finally:
            io(cur.close())
    return out


def _run(driver: Any, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    from psycopg.pq import ExecStatus
    from psycopg.rows import dict_row

    cur = driver.cursor(row_factory=dict_row)
    try:
        io(cur.execute(pyformat(sql), params))
        result = cur.pgresult
        # Not `cur.description`: it builds a Column object per column, ~40 per intake.
        return io(cur.fetchall()) if result is not None and result.status == ExecStatus.TUPLES_OK else []
    finally:
        io(cur.close())


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One operation, one transaction: commit on success, roll back everything on any error."""
    with make_sessionmaker(engine)() as session, session.begin():
        yield session


def wait_for_database(engine: Engine, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
