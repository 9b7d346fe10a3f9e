"""Database engine, sessions and migrations."""

from __future__ import annotations

import functools
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Generic, TypeVar

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

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
        self._kept: OrderedDict[tuple, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session: Session, build: Callable[[tuple], T]) -> T:
        key = (session.get_bind().url.render_as_string(hide_password=True),
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
    lock_timeout = int(settings.database_lock_timeout_ms)
    connect_args = {"options": f"-c lock_timeout={lock_timeout}"} if serving else {}
    if settings.database_pool_size <= 0:
        from sqlalchemy.pool import NullPool

        return create_engine(url, poolclass=NullPool, connect_args=connect_args)
    return create_engine(
        url, pool_pre_ping=True, pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_max_overflow,
        pool_timeout=settings.database_pool_timeout_s,
        connect_args=connect_args,
    )


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=256)
def pyformat(sql: str) -> str:
    """`:name` parameters (SQLAlchemy's text style) as psycopg's `%(name)s`; `::casts` are left alone."""
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


def driver_rows(session: Session, sql: str, params: dict) -> list[dict]:
    """Run one statement on the session's connection (and transaction) through psycopg directly.

    For the few statements on hot request paths (token check, intake, reading an incident): it
    skips SQLAlchemy's per-execution result machinery, which costs more than the query itself
    there. Same SQL text as `text()` would take; rows come back as dicts.
    """
    from psycopg.rows import dict_row

    driver = session.connection().connection.driver_connection
    with driver.cursor(row_factory=dict_row) as cur:
        cur.execute(pyformat(sql), params)
        return cur.fetchall() if cur.description else []


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


def alembic_config(url: str):
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
