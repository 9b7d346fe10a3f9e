"""Request body caps, enforced on the bytes actually received (a missing or false Content-Length
too).

Every route whose body may be larger than a JSON request is in UPLOAD_ROUTES, keyed by method and
path template as the app declares them, with the setting that caps the file it takes; its body
limit is that cap plus MULTIPART_ENVELOPE_BYTES for the multipart headers and the other form fields.
Any other route gets `max_json_body_bytes`."""

from __future__ import annotations

import json
import re

from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gis.settings import Settings

# (method, path template) -> the setting capping the file (or drawn geometry) the route takes.
UPLOAD_ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/grids/import"): "max_upload_bytes",
    ("POST", "/incidents/import"): "max_upload_bytes",
    ("POST", "/flood/extents"): "max_upload_bytes",
    ("POST", "/flood/extents/drawn"): "max_upload_bytes",
    ("POST", "/incidents/{incident_id}/attachments"): "max_attachment_bytes",
    ("POST", "/places/{kind}/import"): "max_upload_bytes",
    ("POST", "/flood/dem"): "max_upload_bytes",
    ("POST", "/staff/import"): "max_upload_bytes",
    ("POST", "/staff/responsibilities/import"): "max_upload_bytes",
}
# Room for the multipart boundaries, part headers and small form fields around the file: a file of
# exactly the promised size must fit.
MULTIPART_ENVELOPE_BYTES = 64 * 1024


def upload_limits(settings: Settings) -> dict[tuple[str, str], int]:
    """(method, path template) -> body limit in bytes, for every route in UPLOAD_ROUTES."""
    return {route: int(getattr(settings, name)) + MULTIPART_ENVELOPE_BYTES
            for route, name in UPLOAD_ROUTES.items()}


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the bytes received pass the cap. An HTTPException, so that the
    framework's body parsing passes it on (it turns any other error into a 400) and it becomes
    the same 413 problem as an over-large Content-Length."""

    def __init__(self, limit: int):
        super().__init__(413, f"at most {limit} bytes")


class BodySizeLimit:
    """Pure ASGI middleware: 413 problem+json when a body exceeds its path's cap."""

    def __init__(self, app: ASGIApp, *, default_limit: int, route_limits: dict[tuple[str, str], int]):
        self.app = app
        self.default_limit = default_limit
        self.routes: list[tuple[str, re.Pattern[str], int]] = [
            (method, compile_path(template)[0], limit)
            for (method, template), limit in route_limits.items()
        ]

    def limit_for(self, method: str, path: str) -> int:
        for m, pattern, limit in self.routes:
            if m == method and pattern.match(path):
                return limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope["method"], scope["path"])
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await _reply(send, 400, "Bad Content-Length header", "bad-header")
            if int(declared) > limit:
                return await _reply(send, 413, "Request too large", "http-413", f"at most {limit} bytes")
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _reply(send, 413, "Request too large", "http-413", f"at most {limit} bytes")


async def _reply(send: Send, status: int, title: str, kind: str, detail: str | None = None) -> None:
    from api.problems import PROBLEM_TYPE_BASE

    body = {"type": PROBLEM_TYPE_BASE + kind, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
