"""Property-based fuzzing of the whole OpenAPI schema against the real app (schemathesis + hypothesis).

Every operation the app publishes gets generated requests, valid ones (positive mode) and ones that
break the schema (negative mode), sent in-process through the ASGI app on a scratch copy of the
sample database, first as the admin (so generated requests reach past the permission checks into the
deep code paths, writes included), then anonymously. Two properties are asserted for every response:

* no 5xx (schemathesis's `not_a_server_error` check), and
* every 4xx is RFC 9457 problem+json with `title` and `status` (our own check).

Only those checks run: the response-schema conformance checks schemathesis has would measure
something else. Failures are collected, not raised, so one run reports every failing request
(method, path, query, body summary, curl). The seed is fixed, so CI runs the same requests every
time; `bench/fuzz_long.py` runs the same driver longer with a seed given on the command line.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import hypothesis
import pytest
from hypothesis import HealthCheck, Phase, Verbosity
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

FUZZ_SEED = 20_260_101
MIN_REQUESTS = 2_000

# Examples per operation and generation mode for one "unit" of budget; the map page renders the
# whole town and the upload endpoint parses files, so they get fewer.
WEIGHTS: dict[str, float] = {
    "GET /maps/grids": 0.1,
    "GET /grids": 0.5,
    "GET /stats": 0.2,
    "GET /healthz": 0.2,
    "GET /auth/me": 0.2,
    "POST /auth/logout": 0.2,
    "GET /admin/users": 0.2,
    "GET /households/counts": 0.4,
    "GET /audit/export": 0.5,
}

PROBLEM_JSON = "application/problem+json"


@dataclass
class Failure:
    kind: str
    operation: str
    mode: str
    status: int
    request: str
    response: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.operation} ({self.mode}) -> {self.status}\n  {self.request}\n  response: {self.response}"


@dataclass
class FuzzResult:
    requests: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_operation: Counter = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # generation problems, not app failures
    seconds: float = 0.0

    def summary(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_status.items()))
        return (
            f"{self.requests} requests in {self.seconds:.1f}s; statuses {{{statuses}}}; "
            f"{len(self.failures)} failing responses; {len(self.errors)} generation errors"
        )


def _summarise(value, limit: int = 300) -> str:
    if value is None:
        return "-"
    if isinstance(value, bytes):
        text_ = f"<{len(value)} bytes> {value[:80]!r}"
    else:
        try:
            text_ = json.dumps(value, ensure_ascii=False, default=repr)
        except (TypeError, ValueError):
            text_ = repr(value)
    return text_ if len(text_) <= limit else text_[:limit] + f"… ({len(text_)} chars)"


def describe_request(case) -> str:
    parts = [f"{case.method.upper()} {case.formatted_path}"]
    if case.query:
        parts.append(f"query={_summarise(case.query, 200)}")
    if case.headers:
        parts.append(f"headers={_summarise(case.headers, 200)}")
    body = getattr(case, "body", None)
    if body is not None and type(body).__name__ != "NotSet":
        parts.append(f"body={_summarise(body)}")
    if getattr(case, "media_type", None):
        parts.append(f"media_type={case.media_type}")
    return " ".join(parts)


def problem_json_issue(response) -> str | None:
    """Why a 4xx response is not a proper problem+json document, or None when it is."""
    ctype = response.headers.get("content-type")
    ctype = ctype[0] if isinstance(ctype, list) else ctype
    if not ctype or not ctype.split(";")[0].strip().lower() == PROBLEM_JSON:
        return f"content-type is {ctype!r}, not {PROBLEM_JSON}"
    try:
        body = json.loads(response.content)
    except ValueError:
        return "the body is not JSON"
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    if not isinstance(body.get("title"), str) or not body["title"]:
        return "no `title`"
    if body.get("status") != response.status_code:
        return f"`status` is {body.get('status')!r}, the response is {response.status_code}"
    return None


def load_schema(app):
    import schemathesis

    return schemathesis.openapi.from_asgi("/openapi.json", app)


def stop_app(app) -> None:
    """End the lifespan schemathesis started for `app` (it keeps one per app until exit)."""
    from schemathesis.python import asgi

    lifespan = asgi._LIFESPANS.pop(id(app), None)  # noqa: SLF001 - no public per-app stop
    if lifespan is not None and lifespan.error is None:
        lifespan.stop()


def operations(schema) -> list:
    ops = []
    for result in schema.get_all_operations():
        ops.append(result.ok())
    return sorted(ops, key=lambda op: (op.path, op.method))


def _sender(result, label, mode_name, headers, protect):
    """The hypothesis test body for one operation and mode: send, count, check."""
    from schemathesis.checks import not_a_server_error

    def send(case):
        if protect is not None:
            protect(case)
        response = case.call(headers=dict(headers or {}), max_redirects=0)
        result.requests += 1
        result.by_status[response.status_code] += 1
        result.by_operation[label] += 1
        status = response.status_code
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except Exception:  # noqa: BLE001 - a failed check; recorded, the run goes on
            result.failures.append(
                Failure("5xx", label, mode_name, status, describe_request(case),
                        response.content[:300].decode("utf-8", "replace"))
            )
        if 400 <= status < 500:
            issue = problem_json_issue(response)
            if issue:
                result.failures.append(
                    Failure("not problem+json: " + issue, label, mode_name, status,
                            describe_request(case), response.content[:300].decode("utf-8", "replace"))
                )

    return send


def fuzz(
    schema,
    *,
    budget: int,
    seed: int,
    headers: dict[str, str] | None = None,
    modes: Iterable[str] = ("positive", "negative"),
    protect: Callable | None = None,
    weights: dict[str, float] | None = None,
    progress: Callable[[str], None] | None = None,
) -> FuzzResult:
    """Send about `budget` examples per operation and mode (scaled by `weights`); check each answer.

    `protect(case)` may rewrite a generated case before it is sent (e.g. so the fuzzer does not
    revoke its own token)."""
    from schemathesis.generation import GenerationMode

    weights = WEIGHTS if weights is None else weights
    result = FuzzResult()
    started = time.perf_counter()
    for op in operations(schema):
        label = f"{op.method.upper()} {op.path}"
        n = max(5, round(budget * weights.get(label, 1.0)))
        for mode_name in modes:
            mode = GenerationMode(mode_name)
            send = _sender(result, label, mode_name, headers, protect)
            run = hypothesis.given(case=op.as_strategy(generation_mode=mode))(send)
            run = hypothesis.settings(
                max_examples=n,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
                verbosity=Verbosity.quiet,
                report_multiple_bugs=False,
            )(run)
            run = hypothesis.seed(seed)(run)
            before = result.requests
            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing negative to generate for an operation without inputs
            except Exception as exc:  # noqa: BLE001 - generation trouble is reported, not a crash
                result.errors.append(f"{label} ({mode_name}): {type(exc).__name__}: {str(exc)[:300]}")
            if progress:
                progress(f"{label:40} {mode_name:8} {result.requests - before:5} requests")
    result.seconds = time.perf_counter() - started
    return result


def protector(engine, admin_username: str) -> Callable:
    """A `protect` hook: the fuzzer must not deactivate, demote or de-token its own account."""
    with engine.connect() as conn:
        user_id = conn.execute(text("SELECT id FROM app_user WHERE username = :u"), {"u": admin_username}).scalar_one()
        token_ids = set(conn.execute(text("SELECT id FROM api_token WHERE user_id = :u"), {"u": user_id}).scalars())

    def protect(case) -> None:
        params = case.path_parameters or {}
        if params.get("user_id") == user_id and case.method.upper() == "PATCH":
            params["user_id"] = user_id + 10_000_000
        if params.get("token_id") in token_ids:
            params["token_id"] = params["token_id"] + 10_000_000

    return protect


def _report(result: FuzzResult, title: str) -> str:
    lines = [f"{title}: {result.summary()}"]
    seen = set()
    for f in result.failures:
        key = (f.kind, f.operation, f.status)
        if key in seen:
            continue
        seen.add(key)
        lines.append(str(f))
    lines += result.errors
    return "\n".join(lines)


@pytest.fixture
def fuzz_app(scratch_db_url, accounts):
    from api.main import create_app
    from tests.conftest import settings_for

    app = create_app(settings_for(scratch_db_url))
    yield app
    stop_app(app)


def test_fuzz_whole_schema(fuzz_app, scratch_db_url, accounts):
    schema = load_schema(fuzz_app)
    labels = {f"{op.method.upper()} {op.path}" for op in operations(schema)}
    assert len(labels) >= 20, labels  # the whole API, not a stub

    engine = create_engine(scratch_db_url, poolclass=NullPool)
    try:
        protect = protector(engine, accounts["admin"]["username"])
    finally:
        engine.dispose()
    admin = fuzz(
        schema,
        budget=50,
        seed=FUZZ_SEED,
        headers={"Authorization": f"Bearer {accounts['admin']['token']}"},
        protect=protect,
    )
    anonymous = fuzz(schema, budget=6, seed=FUZZ_SEED + 1, modes=("positive",))

    report = _report(admin, "admin") + "\n" + _report(anonymous, "anonymous")
    print(report)
    assert not admin.failures and not anonymous.failures, report
    assert not admin.errors and not anonymous.errors, report
    # Every operation was reached, and as the admin past the permission check.
    assert set(admin.by_operation) == labels, report
    assert admin.by_status.get(401, 0) == 0, report  # the admin token stayed valid throughout
    assert anonymous.by_status.get(401, 0) > 0, report
    total = admin.requests + anonymous.requests
    assert total >= MIN_REQUESTS, report
