"""The busiest routes, served without FastAPI's per-request dependency solving (issues 12 and 13).

A map asks for dozens of tiles at once, a list page is asked for on every pan, and phones post reports all
day: for these routes FastAPI's own work per request (solving the session, check and parameter dependencies,
~1 ms of CPU here; bench/README.md, "The fixed cost of a request") cost as much as the SQL. Such a route is
declared as any other (FastAPI documents it from its declaration; `/openapi.json` does not change) and marked
with `@lean(...)`; a router made with `route_class=LeanRoute` then serves it by a lean handler:

1. its path and query are validated by pydantic models made from the route's own declared types
   (`params_model`), in one call;
2. the request is admitted and given its transaction as `api.deps.get_session` gives it
   (`api.deps.in_session`), and the route's `work(request, session, check, **values)` runs in ONE worker
   thread, the token check (`check(session)`) first as in the FastAPI handler; or, for work marked
   `on_loop` (small, bounded Python: a report, a JSON page, a tile), on the event loop itself, its
   statements sent by psycopg's async driver: no thread hop, and no worker thread contending with the
   event loop for the GIL (`bench/README.md`, "Session 13").

Whatever the lean path does not take goes to FastAPI's own handler, unchanged: any value that does not
validate (so a 422 is FastAPI's, word for word, and comes before the credentials are looked at, as there),
and requests to routes without the mark. `tests/test_lean_routes.py` holds both paths to the same answers.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from api.deps import in_session
from api.security import Check
from gis.auth.roles import Permission

__all__ = ["Fallback", "Lean", "LeanRoute", "lean", "params_model"]


class Fallback(Exception):
    """Raised by a lean parse: let FastAPI's own handler answer this request."""


@dataclass(frozen=True)
class Lean:
    """How a marked route is served on its lean path."""

    work: Callable[..., Response]            # work(request, session, check, **values)
    permission: Permission                   # the route's one access rule (as its `checks(...)`)
    parse: Callable[[Request], Awaitable[dict[str, Any]]]   # the request's values, or Fallback
    on_loop: Callable[[dict[str, Any]], bool]   # given the values: run the work on the event loop (else a thread)


def lean(work: Callable[..., Response], permission: Permission, *, path: type[BaseModel] | None = None,
         query: type[BaseModel] | None = None, query_as: str | None = None,
         parse: Callable[[Request], Awaitable[dict[str, Any]]] | None = None,
         on_loop: bool | Callable[[dict[str, Any]], bool] = False) -> Callable[[Any], Any]:
    """Mark a route's endpoint to be served by its lean path (apply below `@router.get(...)`).

    `path`, `query`: the models of its path and query parameters (`params_model`); the work gets their
    fields as keyword arguments, or the query model whole as `query_as`. `parse`: instead, the route's own
    async reading of the request (e.g. a body), giving the work's keyword arguments. `on_loop` (or, given
    those arguments, whether): the work's Python is small and bounded, so it runs on the event loop with the
    async driver (`api.deps.in_session`); work that may run long in Python (a file, a computed flood answer)
    keeps its worker thread, where it stalls no other request."""
    if parse is None:
        parse = _model_parse(path, query, query_as)
    decide = on_loop if callable(on_loop) else (lambda values, always=on_loop: always)

    def mark(endpoint: Any) -> Any:
        endpoint.__lean__ = Lean(work, permission, parse, decide)
        return endpoint

    return mark


def params_model(name: str, **fields: Any) -> type[BaseModel]:
    """A model of a route's path or query parameters from their declared annotations (name -> annotation or
    (annotation, default)); validated as FastAPI validates each of them (lax: "14" -> 14, aliases honoured)."""
    from pydantic import create_model

    spec = {key: value if isinstance(value, tuple) else (value, ...) for key, value in fields.items()}
    model: type[BaseModel] = create_model(name, **spec)  # type: ignore[call-overload]  # fields made at import
    return model


def _model_parse(path: type[BaseModel] | None, query: type[BaseModel] | None,
                 query_as: str | None) -> Callable[[Request], Awaitable[dict[str, Any]]]:
    async def parse(request: Request) -> dict[str, Any]:
        values: dict[str, Any] = {}
        try:
            if path is not None:
                values.update(path.model_validate(request.path_params).__dict__)
            if query is not None:
                # As FastAPI reads a query model: the last value of a repeated name; names the model does not
                # declare are ignored by it.
                parsed = query.model_validate(dict(request.query_params))
                if query_as is not None:
                    values[query_as] = parsed
                else:
                    values.update(parsed.__dict__)
        except ValidationError:
            raise Fallback from None
        return values

    return parse


class LeanRoute(APIRoute):
    """An APIRoute whose endpoint, when marked `@lean(...)`, is served by its lean path first."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        full = super().get_route_handler()
        spec: Lean | None = getattr(self.endpoint, "__lean__", None)
        if spec is None:
            return full
        return functools.partial(_serve, spec, full)


async def _serve(spec: Lean, full: Callable[[Request], Coroutine[Any, Any, Response]], request: Request) -> Response:
    if not request.app.state.settings.lean_routes:
        return await full(request)
    try:
        values = await spec.parse(request)
    except Fallback:
        return await full(request)
    check = Check(request, spec.permission)
    return await in_session(request, lambda session: spec.work(request, session, check, **values),
                            on_loop=spec.on_loop(values))
