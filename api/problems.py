"""RFC 9457 problem+json for every error the service returns; no stack trace reaches a client."""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from gis.errors import Conflict, Forbidden, InputError, NotFound

log = logging.getLogger("wangge.api")

PROBLEM_TYPE_BASE = "https://wangge.invalid/problems/"  # a name, never fetched
MEDIA_TYPE = "application/problem+json"
# A request that found the database busy (no connection free in time, or a lock held too long).
BUSY_DETAIL = "服务器繁忙，请稍后重试"
BUSY_RETRY_AFTER_S = 2


class ServiceBusy(Exception):
    """Answered 503 with Retry-After: the request waited its allowed time for the database."""


class ProblemResponse(JSONResponse):
    media_type = MEDIA_TYPE
    problem: dict[str, Any] | None = None

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            # A lone surrogate from a JSON body (\ud800) echoed in a message: escape, never a 500.
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


def problem(status: int, title: str, *, kind: str, detail: str | None = None, errors: Any = None,
            **extra: Any) -> ProblemResponse:
    body = {"type": PROBLEM_TYPE_BASE + kind, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    body.update(extra)
    response = ProblemResponse(body, status_code=status)
    response.problem = body
    return response


def for_pages(request: Request, response: Response, *, synthetic: bool = False) -> Response:
    """A refusal of a page (paths under /maps, /pages, /m) as a Chinese page in the shell; other
    requests keep their problem+json."""
    from maps.shell import error_page, is_page_path, make_shell, problem_lines

    body = getattr(response, "problem", None)
    if body is None or not is_page_path(request.url.path) or request.method not in ("GET", "HEAD"):
        return response
    principal = getattr(request.state, "principal", None)
    shell = make_shell(principal, synthetic=synthetic, current=request.url.path)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    page = error_page(response.status_code, shell, lines=problem_lines(body), login_next=target)
    html = HTMLResponse(page, status_code=response.status_code, headers={"Cache-Control": "no-store"})
    for key in ("retry-after", "www-authenticate"):
        if key in response.headers:
            html.headers[key] = response.headers[key]
    return html


def _jsonable_error(err: dict[str, Any]) -> dict[str, Any]:
    out = {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return problem(
            422,
            "The request has invalid fields",
            kind="validation",
            errors=[_jsonable_error(e) for e in exc.errors()],
        )

    from fastapi.responses import RedirectResponse

    from api.security import LoginRequired, login_redirect_url

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(login_redirect_url(exc.next_path), status_code=303)

    @app.exception_handler(InputError)
    async def _input(request: Request, exc: InputError) -> Response:
        return problem(422, exc.title, kind="invalid-input", errors=[p.as_dict() for p in exc.problems])

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return problem(403, "Forbidden", kind="http-403", detail=exc.detail)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> Response:
        return problem(409, "Conflict", kind="conflict", detail=exc.detail, **exc.extra)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        return problem(404, "Not found", kind="not-found", detail=exc.detail, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        titles = {
            401: "Authentication required", 403: "Forbidden", 404: "Not found",
            405: "Method not allowed", 413: "Request too large",
        }
        resp = problem(
            exc.status_code,
            titles.get(exc.status_code, "Request refused"),
            kind=f"http-{exc.status_code}",
            detail=exc.detail if isinstance(exc.detail, str) else None,
        )
        for k, v in (getattr(exc, "headers", None) or {}).items():
            resp.headers[k] = v
        return resp

    import psycopg.errors
    import sqlalchemy.exc

    def _busy() -> Response:
        resp = problem(503, "Service busy", kind="busy", detail=BUSY_DETAIL)
        resp.headers["Retry-After"] = str(BUSY_RETRY_AFTER_S)
        return resp

    @app.exception_handler(ServiceBusy)
    @app.exception_handler(sqlalchemy.exc.TimeoutError)   # no pooled connection free in time
    async def _pool_busy(request: Request, exc: Exception) -> Response:
        log.warning("no database connection free for %s %s", request.method, request.url.path)
        return _busy()

    # lock_timeout, raised by psycopg itself where a statement runs on the driver (driver_rows)
    @app.exception_handler(psycopg.errors.LockNotAvailable)
    async def _lock_busy(request: Request, exc: Exception) -> Response:
        return _busy()

    @app.exception_handler(sqlalchemy.exc.OperationalError)
    async def _operational(request: Request, exc: sqlalchemy.exc.OperationalError) -> Response:
        if isinstance(exc.orig, psycopg.errors.LockNotAvailable):
            return _busy()
        log.error("database error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem(500, "Internal error", kind="internal", detail="The error was logged.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "Internal error", kind="internal", detail="The error was logged.")

    # Every refusal above, of a page, is shown as a Chinese page (for_pages).
    for key, handler in list(app.exception_handlers.items()):
        app.exception_handlers[key] = _page_aware(handler)


Handler = Callable[[Request, Any], Response | Awaitable[Response]]


def _page_aware(handler: Handler) -> Callable[..., Awaitable[Response]]:
    async def answer(request: Request, exc: Any) -> Response:
        response = handler(request, exc)
        if inspect.isawaitable(response):
            response = await response
        return for_pages(request, response, synthetic=await _synthetic_town(request, response.status_code))

    return answer


SYNTHETIC_RECHECK_S = 60.0


async def _synthetic_town(request: Request, status: int) -> bool:
    """Whether the sample town is loaded, for the badge on a page's refusal: asked of the database at most
    once a minute, and never for a refusal that says the service is busy (429, 503)."""
    from maps.shell import is_page_path

    state = request.app.state
    cached: tuple[float, bool] | None = getattr(state, "synthetic_town", None)
    now = time.monotonic()
    if (cached is not None and now - cached[0] < SYNTHETIC_RECHECK_S) or status in (429, 503) \
            or not is_page_path(request.url.path) or getattr(state, "sessionmaker", None) is None:
        return False if cached is None else cached[1]

    def ask() -> bool:
        from gis.dataset_info import dataset_info

        with state.sessionmaker() as session:
            return dataset_info(session, "sample_town") is not None

    try:
        value = await run_in_threadpool(ask)
    except Exception:  # the badge is a hint: a refusal page never fails for it
        log.warning("could not read whether the sample town is loaded", exc_info=True)
        return False if cached is None else cached[1]
    state.synthetic_town = (now, value)
    return value
