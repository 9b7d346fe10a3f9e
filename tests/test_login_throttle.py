"""Login throttling through real HTTP: atomic counting, no owner lock-out, a bounded back-off.

A live uvicorn server in a thread; clients connect from distinct loopback addresses
(127.0.0.x), so the server sees them as different client addresses without trusting any header.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.settings import Settings
from tests.browser import serve_app_in_thread
from tests.conftest import TEST_PASSWORD

WRONG = "wrong-password-123"


def _settings(url, **overrides) -> Settings:
    # A real pool (not the tests' NullPool): waiting requests must not starve it. The wait for a
    # place is long here: these tests are about throttling, and on a loaded machine forty logins
    # queued behind five places can outlast the default 3 s (then answered 503 busy, by design).
    overrides.setdefault("database_pool_timeout_s", 30.0)
    return Settings(DATABASE_URL=url.render_as_string(hide_password=False), database_pool_size=5,
                    **overrides)


@pytest.fixture
def served(scratch_db_url, monkeypatch):
    """start(**settings) -> base URL of the app on the scratch database.

    `start.checks` lists the password checks (argon2 verifications), each with the number of the
    app's pooled connections checked out while it ran."""
    from api.main import create_app
    from gis.auth import accounts as accounts_mod

    checks: list[tuple[str, int]] = []
    apps = []
    lock = threading.Lock()
    real_verify = accounts_mod.verify_password

    def counting_verify(password, stored_hash):
        held = apps[0].state.engine.pool.checkedout()
        with lock:
            checks.append((password, held))
        return real_verify(password, stored_hash)

    monkeypatch.setattr(accounts_mod, "verify_password", counting_verify)
    servers = []

    def start(**overrides) -> str:
        app = create_app(_settings(scratch_db_url, **overrides))
        apps.append(app)
        cm = serve_app_in_thread(app)
        servers.append(cm)
        return cm.__enter__()

    start.checks = checks  # type: ignore[attr-defined]
    yield start
    for cm in servers:
        cm.__exit__(None, None, None)


def _client(base: str, address: str = "127.0.0.1") -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=base, timeout=60, transport=transport)


def _login(base: str, username: str, password: str, address: str = "127.0.0.1") -> httpx.Response:
    with _client(base, address) as c:
        return c.post("/auth/login", json={"username": username, "password": password})


def _audit_outcomes(url, username: str) -> dict[str, int]:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT outcome, count(*) FROM audit_log WHERE action = 'login' "
                                 "AND actor = :u GROUP BY outcome"), {"u": username}).all()
    engine.dispose()
    return dict(rows)


def test_forty_parallel_wrong_passwords_check_at_most_the_limit(served, scratch_db_url, accounts):
    base = served()
    user = accounts["planner"]["username"]
    with ThreadPoolExecutor(41) as pool:
        futures = [pool.submit(_login, base, user, WRONG) for _ in range(40)]
        time.sleep(0.05)
        with _client(base, "127.0.0.9") as other:  # an unrelated request during the burst
            health = other.get("/healthz")
        statuses = [f.result().status_code for f in futures]
    assert health.status_code == 200
    assert set(statuses) <= {401, 429}, statuses
    checked = statuses.count(401)
    assert 1 <= checked <= 5, statuses
    assert len([p for p, _ in served.checks if p == WRONG]) == checked  # argon2 verifications
    outcomes = _audit_outcomes(scratch_db_url, user)
    assert outcomes.get("failed") == checked and outcomes.get("throttled") == 40 - checked
    # From this address the owner is throttled too (the limit is per account *and* address) ...
    assert _login(base, user, TEST_PASSWORD).status_code == 429


def test_no_connection_is_held_while_a_password_is_checked(served, accounts):
    """The slow hash runs after the attempt is counted and committed: other requests (other
    logins of the same account among them) never wait on a connection held across it."""
    base = served()
    assert _login(base, accounts["planner"]["username"], TEST_PASSWORD).status_code == 200
    assert _login(base, accounts["planner"]["username"], WRONG, "127.0.0.3").status_code == 401
    assert [held for _, held in served.checks] == [0, 0]


def test_an_attacker_elsewhere_cannot_lock_the_owner_out(served, accounts):
    base = served()
    user = accounts["supervisor"]["username"]
    for _ in range(5):
        assert _login(base, user, WRONG, "127.0.0.2").status_code == 401
    locked = _login(base, user, WRONG, "127.0.0.2")
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    assert _login(base, user, TEST_PASSWORD, "127.0.0.2").status_code == 429
    # ... while the owner, from their own address, still logs in.
    owner = _login(base, user, TEST_PASSWORD, "127.0.0.1")
    assert owner.status_code == 200, owner.text


def test_guessing_from_many_addresses_meets_a_per_account_back_off(served, accounts):
    base = served(login_account_backoff_after=3, login_account_backoff_base_s=30.0)
    user = accounts["grid_staff"]["username"]
    for i in range(3):  # one failure from each of three addresses: none is near its own limit
        assert _login(base, user, WRONG, f"127.0.0.{10 + i}").status_code == 401
    # The next attempt for this account waits, from any address, even with the right password.
    held = _login(base, user, TEST_PASSWORD, "127.0.0.20")
    assert held.status_code == 429, held.text
    assert 1 <= int(held.headers["retry-after"]) <= 30
    checks = len(served.checks)
    assert _login(base, user, WRONG, "127.0.0.21").status_code == 429
    assert len(served.checks) == checks  # no password was checked while backing off
    # Other accounts from the same addresses are not affected.
    other = _login(base, accounts["planner"]["username"], TEST_PASSWORD, "127.0.0.20")
    assert other.status_code == 200


def test_back_off_doubles_and_is_capped(served, accounts, scratch_db_url):
    """Failures beyond the threshold double the wait, up to the cap."""
    base = served(login_account_backoff_after=1, login_account_backoff_base_s=10.0,
                  login_account_backoff_max_s=25.0)
    user = accounts["emergency"]["username"]
    assert _login(base, user, WRONG, "127.0.0.30").status_code == 401
    first = _login(base, user, WRONG, "127.0.0.31")
    assert first.status_code == 429 and 5 < int(first.headers["retry-after"]) <= 10
    # As if the waits had passed and two more failures came: four in the window, the last 30 s
    # ago; 10 s · 2³ = 80 s, capped at 25 s.
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("UPDATE login_attempt SET at = at - interval '3 minutes' "
                          "WHERE username = :u"), {"u": user})
        conn.execute(text("INSERT INTO login_attempt (username, client_ip, success, at) "
                          "VALUES (:u, '127.0.0.32', false, now() - interval '2 minutes'), "
                          "(:u, '127.0.0.33', false, now() - interval '30 seconds')"), {"u": user})
    engine.dispose()
    # The last failure was 30 s ago and the wait is 25 s: it has passed, a check is allowed.
    assert _login(base, user, WRONG, "127.0.0.34").status_code == 401
    capped = _login(base, user, WRONG, "127.0.0.35")
    assert capped.status_code == 429 and 15 < int(capped.headers["retry-after"]) <= 25


def test_unique_usernames_do_not_share_a_lock_out(served):
    """Unknown accounts are counted like known ones (no hint which exist), each on its own."""
    base = served()
    names = [f"ghost_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for _ in range(5):
        assert _login(base, names[0], WRONG, "127.0.0.40").status_code == 401
    assert _login(base, names[0], WRONG, "127.0.0.40").status_code == 429
    assert _login(base, names[1], WRONG, "127.0.0.40").status_code == 401


def test_a_stuck_counter_lock_costs_a_short_wait_and_only_its_own_account(
    served, scratch_db_url, accounts
):
    """Waiting on the counting lock is bounded (then 429 and Retry-After: 1); other accounts from
    other addresses do not wait at all."""
    from gis.auth.accounts import _LOGIN_LOCK_ACCOUNT

    base = served()
    user = accounts["command_center"]["username"]
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with engine.begin() as holder:  # someone holds the account's counting lock
        holder.execute(text("SELECT pg_advisory_xact_lock(:b, hashtext(lower(:u)))"),
                       {"b": _LOGIN_LOCK_ACCOUNT, "u": user})
        t0 = time.monotonic()
        other = _login(base, accounts["planner"]["username"], TEST_PASSWORD, "127.0.0.50")
        assert other.status_code == 200, other.text
        t1 = time.monotonic()
        waited = _login(base, user, TEST_PASSWORD, "127.0.0.51")
        t2 = time.monotonic()
    engine.dispose()
    assert waited.status_code == 429 and waited.headers["retry-after"] == "1"
    assert t2 - t1 >= 2.0  # it did wait for the lock (lock_timeout 2 s) ...
    assert t2 - t1 < 2.0 + 5 * max(t1 - t0, 0.5)  # ... and not much longer than a plain login
    assert _login(base, user, TEST_PASSWORD, "127.0.0.51").status_code == 200  # lock gone: fine
