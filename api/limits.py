"""Request body caps, enforced on the bytes actually received (a missing or false Content-Length too)."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the bytes received pass the cap. An HTTPException, so that the
    framework's body parsing passes it on (it turns any other error into a 400) and it becomes
    the same 413 problem as an over-large Content-Length."""

    def __init__(self, limit: int):
        super().__init__(413, f"at most {limit} bytes")


class BodySizeLimit:
    """Pure ASGI middleware: 413 problem+json when a body exceeds its path's cap."""

    def __init__(self, app, *, default_limit: int, upload_limit: int, upload_paths: tuple[str, ...]):
        self.app = app
        self.default_limit = default_limit
        self.upload_limit = upload_limit
        self.upload_paths = upload_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.upload_limit if scope["path"] in self.upload_paths else self.default_limit
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await _reply(send, 400, "Bad Content-Length header", "bad-header")
            if int(declared) > limit:
                return await _reply(send, 413, "Request too large", "http-413", f"at most {limit} bytes")
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _reply(send, 413, "Request too large", "http-413", f"at most {limit} bytes")


async def _reply(send, status: int, title: str, kind: str, detail: str | None = None) -> None:
    from api.problems import PROBLEM_TYPE_BASE

    body = {"type": PROBLEM_TYPE_BASE + kind, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
