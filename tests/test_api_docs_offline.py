"""/docs (Swagger UI) and /redoc (ReDoc) render the API in headless Chromium with every file
served by Wangge itself: no CDN, no web fonts from elsewhere."""

from __future__ import annotations

import re

import pytest

from api.docs import DOC_ASSETS
from maps.offline import ASSET_ROOT, INSTALL_COMMAND
from tests.browser import OfflinePageChecker
from tests.conftest import live_site

# An operation every build of the API has, by the summary both pages show for it.
OPERATION = "Liveness and database check"


@pytest.fixture(scope="module")
def site(test_db_url):
    missing = [rel for rel in DOC_ASSETS.values() if not (ASSET_ROOT / rel).is_file()]
    if missing:
        pytest.fail(f"API doc assets missing ({missing[0]}): run `{INSTALL_COMMAND}`",
                    pytrace=False)
    with live_site(test_db_url) as s:
        yield s


def _open(site, path: str):
    base, browser = site
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    checker = OfflinePageChecker().attach(page)
    response = page.goto(base + path, wait_until="networkidle")
    return context, page, checker, response


@pytest.mark.browser
def test_swagger_ui_renders_the_api_offline(site):
    context, page, checker, response = _open(site, "/docs")
    try:
        assert response.status == 200
        page.locator(".opblock-summary", has_text="/healthz").first.wait_for(timeout=45_000)
        assert page.locator(".opblock").count() > 20  # every operation, not just one
        assert page.get_by_text(OPERATION).first.is_visible()
        page.wait_for_load_state("networkidle")
        checker.assert_clean()
        assert any("/static/vendor/swagger-ui-dist/" in u for u in checker.requests)
    finally:
        context.close()


@pytest.mark.browser
def test_redoc_renders_the_api_offline(site):
    context, page, checker, response = _open(site, "/redoc")
    try:
        assert response.status == 200
        # The operation's heading in the main column (the menu entry may be folded away).
        page.locator("h2", has_text=OPERATION).first.wait_for(timeout=30_000)
        assert page.locator("h2").count() > 20
        page.wait_for_load_state("networkidle")
        checker.assert_clean()
        assert any(u.endswith("/docs/redoc.standalone.js") for u in checker.requests)
    finally:
        context.close()


def test_doc_pages_name_no_remote_host(client):
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        r = client.get(path)
        assert r.status_code == 200, path
        remote = re.findall(r"(?:src|href)=[\"']?((?:https?:)?//[^\"' >]+)", r.text)
        assert remote == [], (path, remote)
        assert "fonts.googleapis" not in r.text and "cdn.jsdelivr" not in r.text
    assert '"validatorUrl": null' in client.get("/docs").text
    bundle = client.get("/docs/redoc.standalone.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    assert b"cdn.redoc.ly" not in bundle.content
