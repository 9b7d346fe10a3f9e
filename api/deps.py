"""Request-scoped dependencies: settings, a database session and the caller's context per request."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from pydantic import AfterValidator
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from gis.auth.principal import Principal
from gis.context import Context
from gis.settings import Settings


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One transaction per request: committed when the endpoint returns, rolled back on any error.

    The session is made on the event loop (that does no I/O: it connects on first use) and finished
    in the threadpool, where the blocking commit belongs; a sync generator would cost two thread
    hops per request instead of one.

    A request first waits for one of as many places as the pool has connections (`Admission`):
    it waits on the event loop, holding neither a connection nor a worker thread, and answers 503
    with Retry-After when none frees up in `database_pool_timeout_s`. Admitted requests then never
    wait for a connection, and one held by a request never waits for a thread (there are more
    threads than places): no request holds a connection while it waits for another. One client
    (one credential) holds at most half the places, so a burst from it (fifty posts of one
    external_id) leaves room for everyone else.
    """
    admission = _admission(request)
    if admission is not None:
        await admission.enter(request)
    try:
        session = request.app.state.sessionmaker()
        try:
            yield session
        except BaseException:
            await run_in_threadpool(_finish, session, False)
            raise
        if session.in_transaction():
            await run_in_threadpool(_finish, session, True)
        else:   # nothing began, or the endpoint committed its own work: closing does no I/O
            session.close()
    finally:
        if admission is not None:
            admission.leave(request)


T = TypeVar("T")


async def in_session(request: Request, work: Callable[[Session], T], *, on_loop: bool = False) -> T:
    """`work(session)` with the request's one transaction as `get_session` gives it to a route (admitted
    first; committed when `work` returns, rolled back on any error, closed), all of it in ONE worker thread:
    for the lean routes (api.lean), which call this instead of solving the session dependency.

    `on_loop`: instead of a worker thread, on the event loop, in a greenlet (SQLAlchemy's `run_sync`) whose
    statements psycopg's async driver sends (`gis.db.io`): the loop serves other requests while the database
    works. Only for work whose own Python is short (a thread holds the GIL as long, but lets the loop run
    between). Without the async engine (`lean_async` off) the work goes to a thread as before."""
    admission = _admission(request)
    if admission is not None:
        await admission.enter(request)
    try:
        make_async = request.app.state.async_sessionmaker if on_loop else None
        if make_async is None:
            return await run_in_threadpool(_work_and_finish, request.app.state.sessionmaker(), work)
        session = make_async()
        try:
            return await session.run_sync(_work_and_finish, work)  # type: ignore[no-any-return]
        finally:
            await session.close()
    finally:
        if admission is not None:
            admission.leave(request)


def _work_and_finish(session: Session, work: Callable[[Session], T]) -> T:
    try:
        out = work(session)
    except BaseException:
        _finish(session, False)
        raise
    if session.in_transaction():
        _finish(session, True)
    else:   # nothing began, or the work committed: closing does no I/O
        session.close()
    return out


class Admission:
    """Places for requests that use the database: one per pooled connection, half per client."""

    def __init__(self, places: int, wait_s: float):
        self.places = asyncio.Semaphore(places)
        self.per_client = max(1, places // 2)
        self.wait_s = wait_s
        # client key -> [its semaphore, how many of its requests hold or wait for a place]
        self.clients: dict[str, list[Any]] = {}

    @staticmethod
    def client_key(request: Request) -> str:
        """Who a burst comes from: the credential the request carries (hashed), else its address."""
        settings = request.app.state.settings
        credential = (request.headers.get("authorization")
                      or request.cookies.get(settings.session_cookie_name))
        if credential:
            return hashlib.sha256(credential.encode("utf-8", "surrogatepass")).hexdigest()
        return "addr:" + (request.client.host if request.client else "")

    async def enter(self, request: Request) -> None:
        key = request.state.admission_key = self.client_key(request)
        entry = self.clients.setdefault(key, [asyncio.Semaphore(self.per_client), 0])
        entry[1] += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        try:
            await _acquire(entry[0], self.wait_s)
            try:
                await _acquire(self.places, max(0.0, deadline - loop.time()))
            except BaseException:
                entry[0].release()
                raise
        except BaseException as exc:
            self._forget(key)
            if isinstance(exc, TimeoutError):
                raise busy() from None
            raise

    def leave(self, request: Request) -> None:
        key = request.state.admission_key
        self.places.release()
        self.clients[key][0].release()
        self._forget(key)

    def _forget(self, key: str) -> None:
        entry = self.clients[key]
        entry[1] -= 1
        if entry[1] == 0:   # nobody of this client holds or waits: drop its entry
            del self.clients[key]


async def _acquire(semaphore: asyncio.Semaphore, wait_s: float) -> None:
    """`semaphore.acquire()` within `wait_s` (TimeoutError after); a free place is taken at once, without
    the task `asyncio.wait_for` makes for every call (most requests find their client's place free)."""
    if not semaphore.locked():
        await semaphore.acquire()   # returns without waiting
        return
    await asyncio.wait_for(semaphore.acquire(), wait_s)


def _admission(request: Request) -> Admission | None:
    """The app's admission; None without a pool (NullPool: connections are not limited)."""
    state = request.app.state
    admission = getattr(state, "admission", None)
    if admission is None:
        settings = state.settings
        if settings.database_pool_size <= 0:
            return None
        # Made on first use, inside the event loop that serves the app.
        # As many places as connections the pool keeps: an overflow connection is opened for one
        # request and closed after it, and at 15 places two thirds of the requests under load
        # paid a new PostgreSQL backend each (bench/intake_bench.py: 0.23x -> 0.40x the minimal
        # app).
        admission = state.admission = Admission(
            settings.database_pool_size,
            settings.database_pool_timeout_s)
    return admission


def busy() -> Exception:
    """Answered 503 with Retry-After and a Chinese message by api.problems."""
    from api.problems import ServiceBusy

    return ServiceBusy()


def _finish(session: Session, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


def _no_nul(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("text may not contain NUL characters (\\u0000)")
    return value


# For text that reaches the database: PostgreSQL cannot store NUL in text, so refuse it as a 422.
NoNul = AfterValidator(_no_nul)

# scope="function": the commit happens before the response is sent, so a client that saw an
# answer (a login, a personal read and its audit row) never races an uncommitted transaction.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


# A list's `?offset=`: rows skipped before the page (bounded, so a deep page cannot ask for an unbounded scan).
PageOffset = Annotated[int, Query(ge=0, le=10_000_000)]


def check_page_limit(limit: int, settings: Settings) -> None:
    """A page asks for at most `max_features_per_page` rows (422 naming `limit` otherwise)."""
    from gis.errors import InputError, Problem

    if limit > settings.max_features_per_page:
        raise InputError(Problem(("query", "limit"), f"at most {settings.max_features_per_page} per page"))


# Why personal data is read, as a route takes it (`?reason=`); kept in the audit log.
Reason = Annotated[str | None, Query(max_length=500, description="why you need this (kept in the audit log)"), NoNul]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def request_context(request: Request, principal: Principal | None, reason: str | None = None) -> Context:
    """The request as a `gis.context.Context`: who (the authorised caller), how (method, path),
    from where (the client's address) and why (`reason`), for the core operation it calls.

    Routes get it through `api.security.context_of(Permission.X)`, which authorises first. Plain
    attribute reads: it sits on every request's path, the intake's included.
    """
    return Context(principal=principal, method=request.method, path=request.url.path,
                   client_ip=request.client.host if request.client else None, reason=reason)
