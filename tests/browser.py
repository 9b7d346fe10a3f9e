"""Browser-test helpers: headless Chromium, an app served in a thread, an offline-page checker."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

CHROMIUM_PATH = os.environ.get("WANGGE_CHROMIUM", "/usr/bin/chromium")
# No background traffic of Chromium's own, so the request log shows only what the page asks for.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def require_chromium() -> str:
    """The Chromium executable, or a failed test saying how to get it (never a skip)."""
    if not os.path.isfile(CHROMIUM_PATH) or not os.access(CHROMIUM_PATH, os.X_OK):
        pytest.fail(
            f"Chromium not found at {CHROMIUM_PATH}: install it (`apt-get install chromium`) "
            "or point WANGGE_CHROMIUM at a Chromium binary.",
            pytrace=False,
        )
    return CHROMIUM_PATH


@contextmanager
def launch_chromium() -> Iterator:
    """A headless Playwright Chromium browser, closed afterwards."""
    executable = require_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]'", pytrace=False)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=LAUNCH_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def serve_app_in_thread(app, host: str = "127.0.0.1", timeout: float = 15.0) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free local port; yields the base URL."""
    import uvicorn

    from gis.service_user import bind_socket

    # Binding the socket here (port 0) avoids the race of probing for a free port first; the
    # service's own binding, so tests see the service's TCP behaviour.
    sock = bind_socket(host, 0)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            pytest.fail(f"the test server did not start on {host}:{port}", pytrace=False)
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


# Zoom onto the first marker of a point layer and say where it stands on the screen.
_FIRST_MARKER_JS = """layerName => {
    const layer = window[layerName].getLayers()[0];
    const map = window.wanggeMap;
    map.setView(layer.getLatLng(), 18, {animate: false});
    const p = map.latLngToContainerPoint(layer.getLatLng());
    const r = map.getContainer().getBoundingClientRect();
    return [layer.feature.id, r.left + p.x, r.top + p.y];
}"""


def click_first_marker(page, layer: str, screenshot: str):
    """Click the first marker of the map's point layer `window[layer]` the way a user does (zoomed
    in to 18); returns (that marker's feature id, the opened popup's content), after a screenshot."""
    feature_id, x, y = page.evaluate(_FIRST_MARKER_JS, layer)
    page.wait_for_timeout(300)
    page.mouse.click(x, y)
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for(state="visible")
    page.wait_for_timeout(400)  # the popup fades in
    page.screenshot(path=screenshot)
    return feature_id, popup


@dataclass
class OfflinePageChecker:
    """Records what a page does that an offline page must not: errors and non-local requests."""

    allowed_hosts: frozenset[str] = LOCAL_HOSTS
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    remote_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    # Requests the browser itself cancelled (net::ERR_ABORTED): a navigation or reload leaving the page, a
    # tile layer dropping tiles of a view it left, a fetch the page aborted for a newer one. Not failures of
    # the page; kept apart so a test can still ask about them. Any other network error, and every answer of
    # 4xx/5xx, is a failure.
    aborted_requests: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def attach(self, page) -> OfflinePageChecker:
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("request", self._on_request)
        page.on("requestfailed", self._on_failed)
        page.on("response", self._on_response)
        return self

    def _on_console(self, msg) -> None:
        if msg.type == "error":
            self.console_errors.append(f"{msg.text} @ {msg.location}")

    def _on_request(self, request) -> None:
        self.requests.append(request.url)
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob", "about"):
            return
        if (parts.hostname or "") not in self.allowed_hosts:
            self.remote_requests.append(request.url)

    def _on_failed(self, request) -> None:
        if request.failure == "net::ERR_ABORTED":
            self.aborted_requests.append(request.url)
        else:
            self.failed_requests.append(f"{request.url} ({request.failure})")

    def _on_response(self, response) -> None:
        if response.status >= 400:
            self.failed_requests.append(f"{response.url} (HTTP {response.status})")

    def problems(self) -> list[str]:
        return (
            [f"console error: {e}" for e in self.console_errors]
            + [f"page error: {e}" for e in self.page_errors]
            + [f"remote request: {u}" for u in self.remote_requests]
            + [f"failed request: {u}" for u in self.failed_requests]
        )

    def assert_clean(self) -> None:
        problems = self.problems()
        assert not problems, "the page is not clean offline:\n" + "\n".join(problems)
