"""The grids through time: a grid's timeline and the list of publishes; the app's apply-due task."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import BaseModel

from api import schemas
from api.deps import PageOffset, SessionDep
from api.security import context_of, requires
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.context import Context
from gis.planning import history
from gis.settings import Settings

router = APIRouter(prefix="/grids", tags=["grids"])
log = logging.getLogger("wangge.publish")

# How often the app applies the dated publishes whose instant has come.
APPLY_DUE_EVERY_S = 30.0


class PublishRow(BaseModel):
    id: int
    plan_id: int | None = None
    name: str
    effective_at: dt.datetime
    status: Literal["pending", "applied", "cancelled", "failed"]
    created_by_name: str | None = None
    created_at: dt.datetime
    applied_at: dt.datetime | None = None
    failure: str | None = None
    changes: int


class GridVersion(BaseModel):
    id: int
    code: str
    name: str
    level: int
    parent_code: str | None = None
    valid_from: dt.datetime
    valid_to: dt.datetime | None = None
    source: str | None = None
    area_m2: float


class GridTimeline(BaseModel):
    code: str
    versions: list[GridVersion]
    publishes: list[PublishRow]


class PublishList(BaseModel):
    items: list[PublishRow]
    total: int
    offset: int


@router.get("/publishes", summary="Grid publishes: who, when, effective when, status", response_model=PublishList,
            responses=schemas.problems(*schemas.READ))
def list_publishes(
    session: SessionDep,
    _: Annotated[Principal, requires(Permission.VIEW_GRIDS)],
    status: Annotated[Literal["pending", "applied", "cancelled", "failed"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: PageOffset = 0,
) -> Any:
    return history.publishes(session, status=status, limit=limit, offset=offset)


@router.post("/publishes/{publish_id}/cancel", summary="Withdraw a scheduled (pending) publish",
             response_model=PublishRow, responses=schemas.problems(*schemas.ONE, 409))
def cancel_publish(
    session: SessionDep,
    ctx: Annotated[Context, context_of(Permission.EDIT_GRIDS)],
    publish_id: Annotated[int, PathParam(ge=1)],
) -> Any:
    """Only a pending publish can be withdrawn (409 otherwise); an applied one is undone by
    publishing its inverse (the plan's undo)."""
    from gis.planning.publish import cancel

    cancel(session, ctx, publish_id)
    return history.publish_row(session, publish_id)


@router.get("/{code}/timeline", summary="One grid's versions and the publishes that made them",
            response_model=GridTimeline, responses=schemas.problems(*schemas.ONE))
def timeline(
    session: SessionDep,
    _: Annotated[Principal, requires(Permission.VIEW_GRIDS)],
    code: Annotated[str, PathParam(pattern=r"^\d{15}$")],
) -> Any:
    return history.grid_timeline(session, code)


def apply_due_once(sessionmaker: Any) -> int:
    """One round of the background task: apply what is due (skipped while a publish runs); how many."""
    from gis.planning.publish import apply_due

    with sessionmaker() as session, session.begin():
        return len(apply_due(session, wait=False))


async def apply_due_forever(settings: Settings, every_s: float = APPLY_DUE_EVERY_S) -> None:
    """At startup and every `every_s` seconds until cancelled; a failed round is logged, not fatal.
    Its own unpooled engine: a round never holds one of the requests' pooled connections."""
    from gis.db import make_engine, make_sessionmaker

    engine = make_engine(settings.model_copy(update={"database_pool_size": 0}))
    sessionmaker = make_sessionmaker(engine)
    try:
        while True:
            try:
                done = await asyncio.to_thread(apply_due_once, sessionmaker)
                if done:
                    log.info("applied %d scheduled grid publish(es)", done)
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("applying the scheduled grid publishes failed")
            await asyncio.sleep(every_s)
    finally:
        engine.dispose()
