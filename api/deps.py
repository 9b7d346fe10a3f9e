"""Request-scoped dependencies: settings and a database session per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from pydantic import AfterValidator
from sqlalchemy.orm import Session

from gis.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed when the endpoint returns, rolled back on any error."""
    with request.app.state.sessionmaker() as session, session.begin():
        yield session


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
