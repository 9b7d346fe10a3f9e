"""Test setup: a real PostGIS database holding the sample town, made once per session.

The database is `<name>_test_<pid>` next to the one in DATABASE_URL (or var/database_url, written by
`make test`). Tests that write get their own copy (CREATE DATABASE ... TEMPLATE). A run in which
any test is skipped fails: a skipped database or browser test is a test that tested nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from gis.settings import Settings
from tests.browser import OfflinePageChecker, launch_chromium, serve_app_in_thread

_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _skipped and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _skipped:
        terminalreporter.write_line(
            f"FAILED: {len(_skipped)} test(s) were skipped; this suite allows no skips: "
            + ", ".join(_skipped[:10]),
            red=True,
        )


def _base_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL") or Settings().database_url
    if not url:
        pytest.fail(
            "No PostGIS database for the tests: run `make test` (it creates one), or set DATABASE_URL.",
            pytrace=False,
        )
    return Settings(DATABASE_URL=url).require_database_url()


def _admin_engine(url) -> Engine:
    return create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)


def create_database(url, template: str | None = None) -> None:
    admin = _admin_engine(url)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        tpl = f' TEMPLATE "{template}"' if template else ""
        conn.execute(text(f'CREATE DATABASE "{url.database}"{tpl}'))
    admin.dispose()


def drop_database(url) -> None:
    admin = _admin_engine(url)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sample_town():
    from gis.sample_town import generate_sample_town

    return generate_sample_town()


@pytest.fixture(scope="session")
def test_db_url(sample_town, tmp_path_factory):
    """A fresh database: migrated, with the sample town loaded. Nobody writes to it."""
    from gis.db import transaction, upgrade
    from gis.sample_load import load_sample_incidents, load_sample_town
    from gis.sample_town import write_dem

    base = make_url(_base_url())
    # One database per test process, so parallel runs (two checkouts, CI beside a developer)
    # never drop each other's database.
    url = base.set(database=f"{base.database}_test_{os.getpid()}")
    create_database(url)
    engine = create_engine(url, poolclass=NullPool)
    upgrade(engine)
    dem_path = write_dem(sample_town, tmp_path_factory.mktemp("dem") / "sample_dem.tif")
    with transaction(engine) as session:
        load_sample_town(session, sample_town, dem_path=dem_path)
        load_sample_incidents(session, sample_town, tmp_path_factory.mktemp("incidents") / "sample.csv")
        _ACCOUNTS.update(create_test_accounts(session))
    engine.dispose()
    yield url
    drop_database(url)


# role -> {"id", "username", "password", "token", "scope_codes"}; filled when the database is made.
_ACCOUNTS: dict[str, dict] = {}
TEST_PASSWORD = "correct-horse-battery-staple"


def create_test_accounts(session) -> dict[str, dict]:
    """One account and one API token per role. Grid staff serve the first group grid of the first
    village; the supervisor that whole village."""
    from gis.auth import accounts
    from gis.auth.roles import Role

    first_group = session.execute(
        text("SELECT min(code) FROM grid WHERE level = 4 AND valid_to IS NULL")
    ).scalar_one()
    village = first_group[:12] + "000"
    scopes = {Role.GRID_STAFF: [first_group], Role.SUPERVISOR: [village]}
    out = {}
    for role in Role:
        user = accounts.create_user(
            session, f"test_{role.value}", TEST_PASSWORD, role, scope_codes=scopes.get(role, [])
        )
        secret, _ = accounts.create_token(session, user.id, f"tests ({role.value})")
        out[role.value] = {
            "id": user.id, "username": user.username, "password": TEST_PASSWORD, "token": secret,
            "scope_codes": list(user.scope_codes),
        }
    return out


@pytest.fixture(scope="session")
def accounts(test_db_url) -> dict[str, dict]:
    return _ACCOUNTS


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_ACCOUNTS[role]['token']}"}


def insert_household(session, household_no: str, lon: float, lat: float, *, residents: int, elderly: int) -> int:
    """A household of `residents` people (`elderly` of them over 65) at (lon, lat), written in the
    caller's session (rolled back with it); returns its id."""
    return session.execute(
        text("INSERT INTO household (household_no, address, head_name, phone, residents, elderly, children, "
             "disabled, pregnant, bedridden, floors, geom) VALUES (:no, '测试地址', '测试', "
             "'13800000000', :residents, :elderly, 0, 0, 0, 0, 1, ST_SetSRID(ST_MakePoint(:x, :y), 4326)) "
             "RETURNING id"),
        {"no": household_no, "residents": residents, "elderly": elderly, "x": lon, "y": lat},
    ).scalar_one()


@pytest.fixture(scope="session")
def engine(test_db_url) -> Iterator[Engine]:
    eng = create_engine(test_db_url, poolclass=NullPool)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine):
    """A session whose work is rolled back after the test."""
    from gis.db import make_sessionmaker

    with make_sessionmaker(engine)() as s, s.begin():
        yield s
        s.rollback()


_CATALOGUE = """
    SELECT 'index', indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index
    WHERE indrelid = ANY(CAST(:tables AS regclass[]))
    UNION ALL
    SELECT 'constraint', conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid) FROM pg_constraint
    WHERE conrelid = ANY(CAST(:tables AS regclass[])) OR confrelid = ANY(CAST(:tables AS regclass[]))
    ORDER BY 1, 2
"""


def schema_of(conn, tables) -> list[tuple]:
    """The indexes and constraints of `tables` (and the foreign keys to them), as the catalogue has them."""
    return [tuple(r) for r in conn.execute(text(_CATALOGUE), {"tables": list(tables)})]


@contextmanager
def database_copy(template_url, label: str = "") -> Iterator:
    """A private copy of the database at `template_url` (CREATE DATABASE ... TEMPLATE), dropped
    afterwards; `label` only makes the copy's name say whose it is."""
    suffix = f"_{label}" if label else ""
    url = template_url.set(database=f"{template_url.database}{suffix}_{uuid.uuid4().hex[:8]}")
    create_database(url, template=template_url.database)
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def scratch_db_url(test_db_url):
    """A private copy of the test database for a test that writes through the API."""
    with database_copy(test_db_url) as url:
        yield url


def settings_for(url, **overrides) -> Settings:
    return Settings(
        DATABASE_URL=url.render_as_string(hide_password=False), database_pool_size=0, **overrides
    )


@contextmanager
def live_site(url) -> Iterator[tuple[str, object]]:
    """The real app on the database at `url`, served on a local port, and a headless Chromium:
    (base URL, browser) — what the `site` fixture gives `open_as`."""
    from api.main import create_app

    with serve_app_in_thread(create_app(settings_for(url))) as base, launch_chromium() as browser:
        yield base, browser


def make_client(url, role: str | None = "admin", **overrides):
    """A client of the real ASGI app; with a role it sends that role's bearer token."""
    from fastapi.testclient import TestClient

    from api.main import create_app

    client = TestClient(
        create_app(settings_for(url, **overrides)),
        raise_server_exceptions=False,
        base_url="https://testserver",  # the session cookie is Secure
    )
    if role is not None:
        client.headers.update(auth(role))
    return client


# When the incidents that tests report happened, as a township user writes it (Beijing time).
WHEN = "2026-11-20T09:30:00+08:00"


def inside_point(url, code: str | None = None) -> tuple[float, float]:
    """A point inside the current group grid `code` (by default the first one by code) of the database at `url`."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        x, y = conn.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM grid WHERE valid_to IS NULL "
            "AND (code = :c OR (CAST(:c AS text) IS NULL AND level = 4)) ORDER BY code LIMIT 1) s"),
            {"c": code}).one()
    engine.dispose()
    return float(x), float(y)


def report_incident(client, lon, lat, **fields):
    """POST /incidents as `client`: rubbish dumped at (lon, lat) at WHEN; `fields` add to the body or
    replace its category, description or time."""
    body = {"category": "environment", "description": "垃圾堆放", "occurred_at": WHEN, "lon": lon, "lat": lat}
    return client.post("/incidents", json={**body, **fields})


def stored_report(url, external_id: str) -> tuple[int, int, int]:
    """(incidents, their history events, their audit rows of creation) stored under `external_id` in the database
    at `url`, read on a connection of its own (so only what was committed)."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT count(DISTINCT i.id), count(DISTINCT e.id), count(DISTINCT a.id) FROM incident i "
            "LEFT JOIN incident_event e ON e.incident_id = i.id "
            "LEFT JOIN audit_log a ON a.resource_ids = ARRAY[i.id::text] AND a.action = 'create' "
            "WHERE i.external_id = :e"), {"e": external_id}).one()
    engine.dispose()
    return (int(row[0]), int(row[1]), int(row[2]))


def audit_rows_from_now(url) -> dict[str, int]:
    """`GET /audit`'s parameter for the rows written from now on in the database at `url`: a copied database
    may already hold any number of rows, and the list pages them oldest first."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        last = conn.execute(text("SELECT coalesce(max(id), 0) FROM audit_log")).scalar_one()
    engine.dispose()
    return {"after": int(last)} if last else {}


@pytest.fixture(scope="session")
def client(test_db_url, accounts):
    """The admin's client on the shared, read-only sample database."""
    with make_client(test_db_url) as c:
        yield c


@pytest.fixture(scope="session")
def clients(test_db_url, accounts):
    """role -> client on the shared database, plus 'anonymous'."""
    made = {role: make_client(test_db_url, role) for role in accounts}
    made["anonymous"] = make_client(test_db_url, None)
    for c in made.values():
        c.__enter__()
    yield made
    for c in made.values():
        c.__exit__(None, None, None)


@pytest.fixture
def scratch_client(scratch_db_url, accounts):
    with make_client(scratch_db_url) as c:
        yield c


@pytest.fixture(scope="module")
def site(test_db_url, accounts):
    """(base URL, browser) on the shared sample database, for `open_as`; a browser-test module whose
    pages need other data defines its own `site`."""
    with live_site(test_db_url) as served:
        yield served


# The two screens every page is checked on: an office desktop and a grid member's phone.
DESKTOP = {"viewport": {"width": 1400, "height": 900}, "locale": "zh-CN"}
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
         "device_scale_factor": 2, "locale": "zh-CN"}
SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "artifacts" / "screenshots"


def screenshot_path(name: str) -> str:
    """Where a page test saves its screenshot (var/artifacts/screenshots, kept as a test artifact)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return str(SCREENSHOTS / f"{name}.png")


def log_in_and_open(browser, base: str, account: dict, path: str, contexts: list, **context_options):
    """Open `path` in a new browser context (kept in `contexts` to close), log in through the form as
    `account`, open `path` again and wait for the page to be ready; returns (page, checker, status)."""
    context = browser.new_context(**context_options)
    contexts.append(context)
    page = context.new_page()
    checker = OfflinePageChecker().attach(page)
    page.goto(base + path, wait_until="networkidle")
    assert "/login" in page.url
    page.fill("#username", account["username"])
    page.fill("#password", account["password"])
    with page.expect_navigation():
        page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    # Open the page again and read its status: the redirect after login hides a 403.
    status = page.goto(base + path, wait_until="networkidle").status
    if status == 200:
        page.wait_for_function("document.documentElement.dataset.wanggeReady === '1'")
        page.wait_for_load_state("networkidle")
    return page, checker, status


@pytest.fixture(scope="module")
def open_as(site, accounts):
    """Log in through the form as `role`, then open `path` (on a phone screen with `phone=True`);
    returns (page, checker, status)."""
    base, browser = site
    contexts = []

    def _open(role: str, path: str, *, phone: bool = False):
        return log_in_and_open(browser, base, accounts[role], path, contexts, **(PHONE if phone else DESKTOP))

    yield _open
    for context in contexts:
        context.close()
