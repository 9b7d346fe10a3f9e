"""Cross-site refusal: cookie-authenticated writes and logins only from the service's own pages."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api.problems import problem

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Sec-Fetch-Site values a browser sends for this site's own pages, or for what the user typed.
SAME_SITE_FETCH = frozenset({"same-origin", "none"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}

# User-facing text of the refusal (a browser user or an integrator reads it).
TITLE_ZH = "跨站请求被拒绝"
DETAIL_ZH = (
    "来源 {origin} 不是本服务（{own}）的页面：用浏览器登录状态修改数据或登录，"
    "只接受本服务自己的页面发出的请求。"
    "其他程序请使用 API 令牌（Authorization: Bearer …）；若本服务经由其他地址（如反向代理）访问，"
    "请把该地址加入设置 WANGGE_TRUSTED_ORIGINS。"
)


def normalize_origin(value: str) -> str | None:
    """`scheme://host[:port]` in lower case without a default port; None for anything else."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is not None and str(port) != _DEFAULT_PORTS[parts.scheme]:
        host += f":{port}"
    return f"{parts.scheme}://{host}"


def own_origin(scope: Scope, headers: Headers) -> str | None:
    host = headers.get("host")
    if not host and scope.get("server"):
        server_host, server_port = scope["server"]
        host = f"{server_host}:{server_port}"
    return normalize_origin(f"{scope.get('scheme', 'http')}://{host}") if host else None


class OriginCheck:
    """Pure ASGI middleware: 403 for an unsafe request without a bearer token whose `Origin` (or,
    when a browser sends none, `Sec-Fetch-Site`) is not this service or a trusted origin.

    SameSite=Strict cookies are one defence against cross-site requests; this is the second, and
    the only one for the login routes (a foreign page must not log a browser in as someone else).
    Requests with an `Authorization` header carry no ambient authority and pass; so do requests
    with neither header (not from a browser page).
    """

    def __init__(self, app: ASGIApp, *, trusted_origins: tuple[str, ...] = ()):
        self.app = app
        self.trusted = frozenset(filter(None, (normalize_origin(o) for o in trusted_origins)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UNSAFE_METHODS:
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if "authorization" in headers:
            return await self.app(scope, receive, send)
        own = own_origin(scope, headers)
        origin = headers.get("origin")
        if origin is not None:
            given = normalize_origin(origin)  # "null" (sandboxed or opaque pages) gives None
            allowed = given is not None and (given == own or given in self.trusted)
            shown = origin
        else:
            site = headers.get("sec-fetch-site")
            allowed = site is None or site.lower() in SAME_SITE_FETCH
            shown = f"Sec-Fetch-Site: {site}"
        if allowed:
            return await self.app(scope, receive, send)
        response = problem(403, TITLE_ZH, kind="foreign-origin",
                           detail=DETAIL_ZH.format(origin=shown[:200], own=own or "?"))
        await response(scope, receive, send)
