"""The interactive API docs (/docs: Swagger UI, /redoc: ReDoc), served from the local npm install.

FastAPI's own pages load their scripts, styles, fonts and favicon from public CDNs, so they are
blank on a township intranet; here every file comes from /static/vendor (maps/assets)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response

from maps.offline import ASSET_ROOT

# Files under maps/assets/node_modules (packages swagger-ui-dist and redoc in package.json).
DOC_ASSETS = {
    "swagger_js": "swagger-ui-dist/swagger-ui-bundle.js",
    "swagger_css": "swagger-ui-dist/swagger-ui.css",
    "favicon": "swagger-ui-dist/favicon-32x32.png",
    "redoc_js": "redoc/bundles/redoc.standalone.js",
}
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
# ReDoc's menu always shows Redocly's logo, fetched from their CDN (no option turns it off); the
# bundle is served with that address swapped for an empty inline image.
REDOC_BUNDLE = "/docs/redoc.standalone.js"
REDOC_REMOTE_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
EMPTY_IMAGE = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


@lru_cache(maxsize=2)
def _redoc_bundle(path: Path, mtime: float) -> bytes:
    return path.read_bytes().replace(REDOC_REMOTE_LOGO.encode(), EMPTY_IMAGE.encode())


def install(app: FastAPI, asset_prefix: str) -> None:
    """Add /docs, its OAuth2 redirect and /redoc to `app` (built with docs_url=redoc_url=None).

    Plain routes, public and outside the OpenAPI document, as FastAPI's own doc pages are."""
    url = {name: f"{asset_prefix.rstrip('/')}/{rel}" for name, rel in DOC_ASSETS.items()}
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title} — API"

    async def swagger_ui(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=url["swagger_js"],
            swagger_css_url=url["swagger_css"],
            swagger_favicon_url=url["favicon"],
            oauth2_redirect_url=OAUTH2_REDIRECT,
            # Otherwise Swagger UI sends the spec's address to validator.swagger.io (it spares
            # only localhost), and shows a broken badge offline.
            swagger_ui_parameters={"validatorUrl": None},
        )

    async def swagger_ui_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url=REDOC_BUNDLE,
            redoc_favicon_url=url["favicon"],
            with_google_fonts=False,
        )

    def redoc_bundle(request: Request) -> Response:
        path = ASSET_ROOT / DOC_ASSETS["redoc_js"]
        if not path.is_file():
            return Response(f"{DOC_ASSETS['redoc_js']} is not installed", status_code=404)
        return Response(
            _redoc_bundle(path, path.stat().st_mtime),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    for path, endpoint in (
        ("/docs", swagger_ui),
        (OAUTH2_REDIRECT, swagger_ui_redirect),
        ("/redoc", redoc),
        (REDOC_BUNDLE, redoc_bundle),
    ):
        app.add_route(path, endpoint, include_in_schema=False)
