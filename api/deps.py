"""Request-scoped dependencies: settings and a database session per request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from pydantic import AfterValidator
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from gis.settings import Settings


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """One transaction per request: committed when the endpoint returns, rolled back on any error.

    The session is made on the event loop (that does no I/O: it connects on first use) and finished
    in the threadpool, where the blocking commit belongs; a sync generator would cost two thread
    hops per request instead of one.

    A request first waits for one of as many places as the pool has connections (see
    `_admission`): it waits on the event loop, holding neither a connection nor a worker thread,
    and answers 503 with Retry-After when none frees up in `database_pool_timeout_s`. Admitted
    requests then never wait for a connection, and one held by a request never waits for a thread
    (there are more threads than places): no request holds a connection while it waits for another.
    """
    admission = _admission(request)
    if admission is not None:
        try:
            await asyncio.wait_for(admission.acquire(), request.app.state.settings.database_pool_timeout_s)
        except TimeoutError:
            raise busy() from None
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
            admission.release()


def _admission(request: Request) -> asyncio.Semaphore | None:
    """The app's request places, one per pooled connection; None without a pool (NullPool)."""
    state = request.app.state
    places = getattr(state, "admission", None)
    if places is None:
        settings = state.settings
        if settings.database_pool_size <= 0:
            return None
        # Made on first use, inside the event loop that serves the app.
        places = state.admission = asyncio.Semaphore(settings.database_pool_size
                                                     + settings.database_pool_max_overflow)
    return places


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


def _no_nul(value):
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("text may not contain NUL characters (\\u0000)")
    return value


# For text that reaches the database: PostgreSQL cannot store NUL in text, so refuse it as a 422.
NoNul = AfterValidator(_no_nul)

# scope="function": the commit happens before the response is sent, so a client that saw an
# answer (a login, a personal read and its audit row) never races an uncommitted transaction.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def check_page_limit(limit: int, settings: Settings) -> None:
    """A page asks for at most `max_features_per_page` rows (422 naming `limit` otherwise)."""
    from gis.errors import InputError, Problem

    if limit > settings.max_features_per_page:
        raise InputError(Problem(("query", "limit"), f"at most {settings.max_features_per_page} per page"))
