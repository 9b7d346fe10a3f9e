"""Helpers for the browser tests of the map pages with data by URL (grids, incidents, households,
hot spots): wait for a page's data, open one as a role on a site of the test's own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.browser import OfflinePageChecker
from tests.conftest import DESKTOP, PHONE


def wait_loaded(page, timeout: float = 30_000) -> None:
    """Until the page's script has drawn its first data (data-wangge-loaded), then the network rests."""
    page.wait_for_function("document.documentElement.dataset.wanggeLoaded === '1'", timeout=timeout)
    page.wait_for_load_state("networkidle")


def open_loaded(open_as, role: str, path: str, *, phone: bool = False):
    """open_as, then wait for the page's data: (page, checker, status)."""
    page, checker, status = open_as(role, path, phone=phone)
    if status == 200:
        wait_loaded(page)
    return page, checker, status


@contextmanager
def opened(site, accounts, role: str, path: str, *, phone: bool = False) -> Iterator:
    """Like open_loaded on any (base URL, browser) site; the browser context is closed afterwards."""
    base, browser = site
    context = browser.new_context(**(PHONE if phone else DESKTOP))
    try:
        page = context.new_page()
        checker = OfflinePageChecker().attach(page)
        page.goto(base + "/login", wait_until="networkidle")
        page.fill("#username", accounts[role]["username"])
        page.fill("#password", accounts[role]["password"])
        with page.expect_navigation():
            page.click("button[type=submit]")
        status = page.goto(base + path, wait_until="networkidle").status
        if status == 200:
            wait_loaded(page)
        yield page, checker, status
    finally:
        context.close()
