"""Server-sent events: incidents created and changed, as they commit (`GET /events/incidents`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from api import schemas
from api.incident_params import StreamFilters
from api.security import requires
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.incidents.categories import Category
from gis.incidents.loop import State
from gis.incidents.service import IncidentFilter
from gis.live import Cursor, LiveHub, LiveSettings, TooManyStreams

router = APIRouter(prefix="/events", tags=["events"])

TOO_MANY_STREAMS_ZH = "同时打开的实时推送连接过多（每个账号最多 {limit} 个），请关闭其他页面后再试"


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


class LiveIncidentEvent(BaseModel):
    """The `data:` of one `event: incident` (JSON). `bulk`: a batch import wrote many incidents at
    once; only `kind` and `count` are set, and the page reloads its incident layer."""

    kind: Literal["created", "changed", "bulk"]
    id: int | None = Field(default=None, description="the incident (absent for bulk)")
    state: State | None = None
    category: Category | None = None
    overdue: bool | None = None
    flagged: bool | None = Field(default=None, description="waits for the command center's review (or did)")
    reviewed: bool | None = None
    lon: float | None = None
    lat: float | None = None
    group_code: str | None = None
    occurred_at: dt.datetime | None = None
    count: int | None = Field(default=None, description="bulk: how many incidents the batch wrote")


STREAM_DESCRIPTION = (
    "A `text/event-stream`: first a `retry:` hint and `event: ready` (its `id` is the start), then for "
    "every incident created or changed that the "
    "caller may see (the access rule of GET /incidents, and the same filters) an event `id: <cursor>`, "
    "`event: incident`, `data: <LiveIncidentEvent as JSON>`; a comment line every ~15 s keeps it open. "
    "To resume without losing events, reconnect with the last `id` as the `Last-Event-ID` header "
    "(EventSource does this itself) or as `?after=`. The stream ends after some minutes: reconnect."
)


def live_hub(request: Request) -> LiveHub:
    """The app's hub (made on first use, in the event loop that serves the app)."""
    state = request.app.state
    hub: LiveHub | None = getattr(state, "live_hub", None)
    if hub is None:
        settings = state.settings
        # `live_settings` on the app's state replaces the environment's (tests shorten the periods).
        live = getattr(state, "live_settings", None) or LiveSettings()
        hub = state.live_hub = LiveHub(settings.require_database_url(), live, pooled=settings.database_pool_size > 0)
    return hub


def _frame(cursor: Cursor, payload: dict[str, Any]) -> str:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"id: {cursor.encode()}\nevent: incident\ndata: {data}\n\n"


@router.get(
    "/incidents",
    summary="Live feed: incidents created or changed (server-sent events), resumable",
    description=STREAM_DESCRIPTION,
    response_class=EventStream,
    responses={
        200: {"model": LiveIncidentEvent, "description": "the event stream; the schema is each event's data"},
        **schemas.problems(401, 403, 422, 503),
        429: {"description": "too many live streams open for this account",
              "content": {schemas.PROBLEM_MEDIA_TYPE: {"schema": schemas.PROBLEM_SCHEMA}}},
    },
)
async def incident_events(
    request: Request,
    principal: Annotated[Principal, requires(Permission.VIEW_INCIDENTS)],
    filters: StreamFilters,
    after: Annotated[str | None, Query(max_length=40, description="resume after this event id")] = None,
    last_event_id: Annotated[str | None, Header(max_length=40)] = None,
) -> EventStream:
    hub = live_hub(request)
    # The header wins: EventSource sends it on reconnecting, with the first URL's ?after= still on.
    if last_event_id:
        cursor = Cursor.decode(last_event_id, ("header", "last-event-id"))
    elif after:
        cursor = Cursor.decode(after, ("query", "after"))
    else:
        cursor = None
    if hub.per_user.get(principal.user_id, 0) >= hub.settings.streams_per_user:
        raise HTTPException(429, TOO_MANY_STREAMS_ZH.format(limit=hub.settings.streams_per_user),
                            headers={"Retry-After": str(hub.settings.retry_ms // 1000 or 1)})
    start = cursor or await hub.start()
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return EventStream(_stream(hub, principal, filters, start), headers=headers)


async def _stream(hub: LiveHub, principal: Principal, filters: IncidentFilter, cursor: Cursor) -> AsyncIterator[str]:
    settings = hub.settings
    try:
        async with hub.subscribe(principal.user_id) as sub:
            # The start as an event id: a reconnect before the first incident resumes from here too.
            yield f"retry: {settings.retry_ms}\nid: {cursor.encode()}\nevent: ready\ndata: {{}}\n\n"
            loop = asyncio.get_running_loop()
            ends = loop.time() + settings.max_stream_s
            beat = time.monotonic() + settings.heartbeat_s
            while loop.time() < ends:
                changes = await hub.read(principal, filters, cursor)
                for at, payload in changes.events:
                    yield _frame(at, payload)
                if changes.events:
                    beat = time.monotonic() + settings.heartbeat_s
                cursor = changes.cursor
                if changes.more:
                    continue
                wait = settings.held_back_poll_s if changes.held_back else settings.catch_up_s
                await sub.wait(max(0.0, min(wait, beat - time.monotonic(), ends - loop.time())))
                if time.monotonic() >= beat:
                    yield ": keep-alive\n\n"
                    beat = time.monotonic() + settings.heartbeat_s
    except TooManyStreams:
        # Another stream of this user opened between the check and here: end at once.
        yield ": too many streams\n\n"
