"""POST /incidents reads and checks its own body (one worker thread per report, bench/intake_bench.py):
the answers stay those of a FastAPI body model — who may report is decided before the body's fields are,
and every refusal names the field — and the token is looked up on every report."""

from __future__ import annotations

import json
import secrets

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import WHEN, make_client

GOOD = {"category": "environment", "description": "垃圾堆放", "occurred_at": WHEN}

# Bodies refused as a whole, before any field is looked at: (content, content type).
WHOLE_BODY_REFUSALS = [
    (b"", "application/json"),                       # nothing sent
    (b'{"category": "environment",', "application/json"),   # malformed JSON
    (b"[1, 2]", "application/json"),                 # JSON, not an object
    (b'"text"', "application/problem+json"),         # a +json type, not an object
    (json.dumps(GOOD).encode(), "text/plain"),       # not sent as JSON
    (json.dumps(GOOD).encode(), ""),                 # no content type
]


def _errors(response) -> list[tuple[str, tuple]]:
    return sorted((e["type"], tuple(e["loc"])) for e in response.json()["errors"])


@pytest.mark.parametrize(("content", "content_type"), WHOLE_BODY_REFUSALS)
def test_a_refused_body_is_answered_as_any_body_model_route_answers_it(client, content, content_type):
    # POST /incidents/{id}/transitions still lets FastAPI read its body model: the same bytes must get the
    # same status and the same (type, loc) of each problem.
    headers = {"content-type": content_type} if content_type else {}
    mine = client.post("/incidents", content=content, headers=headers)
    framework = client.post("/incidents/1/transitions", content=content, headers=headers)
    assert mine.status_code == framework.status_code == 422, (mine.text, framework.text)
    assert mine.headers["content-type"].startswith("application/problem+json")
    assert _errors(mine) == _errors(framework)
    assert all(loc[0] == "body" for _, loc in _errors(mine))


@pytest.mark.parametrize(("field", "value", "kind"), [
    ("description", None, "missing"),
    ("description", "", "string_too_short"),
    ("description", "a\x00b", "value_error"),
    ("lon", "east", "float_parsing"),
    ("reporter_phone", "call me", "string_pattern_mismatch"),
    ("external_id", "x" * 201, "string_too_long"),
])
def test_each_bad_field_is_named(client, field, value, kind):
    body = {**GOOD, "lon": 114.0, "lat": 33.0}
    if value is None:
        del body[field]
    else:
        body[field] = value
    r = client.post("/incidents", json=body)
    assert r.status_code == 422, r.text
    assert (kind, ("body", field)) in _errors(r), r.text


def test_who_may_report_is_decided_before_the_body(clients):
    bad = {"category": "environment"}   # no description, no time, no place
    for body in (bad, None):
        anonymous = clients["anonymous"].post("/incidents", json=body) if body else \
            clients["anonymous"].post("/incidents")
        assert anonymous.status_code == 401, anonymous.text
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        planner = clients["planner"].post("/incidents", json=body) if body else clients["planner"].post("/incidents")
        assert planner.status_code == 403, planner.text   # the planner may not report incidents
    unknown = clients["anonymous"].post("/incidents", json=bad, headers={"Authorization": "Bearer wg_not-a-token"})
    assert unknown.status_code == 401 and "invalid_token" in unknown.headers["www-authenticate"]
    basic = clients["anonymous"].post("/incidents", json=bad, headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401


def test_a_report_then_its_repost_then_a_revoked_token(scratch_db_url, accounts):
    from gis.auth import accounts as accounts_module
    from gis.auth.roles import Role
    from gis.db import transaction

    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with transaction(engine) as s:
        user = accounts_module.create_user(s, f"intake-{secrets.token_hex(3)}", "correct-horse-battery-9",
                                           Role.EMERGENCY)
        token, _ = accounts_module.create_token(s, user.id, "field device")
    with engine.connect() as c:
        lon, lat = c.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM grid WHERE level = 4 "
            "AND valid_to IS NULL ORDER BY code LIMIT 1) s")).one()
    body = {**GOOD, "lon": lon, "lat": lat, "external_id": "device-7/42"}
    with make_client(scratch_db_url, None) as c:
        c.headers["Authorization"] = f"Bearer {token}"
        first = c.post("/incidents", json=body)
        assert first.status_code == 201, first.text
        again = c.post("/incidents", json=body)
        assert again.status_code == 200 and again.json() == first.json()
        assert c.get(f"/incidents/{first.json()['id']}").json()["id"] == first.json()["id"]
        with engine.connect() as conn:
            audited = conn.execute(text(
                "SELECT count(*) FROM audit_log WHERE action = 'create' AND resource = 'incident' "
                "AND resource_ids = ARRAY[:i] AND actor_id = :u"),
                {"i": str(first.json()["id"]), "u": user.id}).scalar()
        assert audited == 1
        with transaction(engine) as s:
            accounts_module.revoke_tokens(s, user.id)
        refused = c.post("/incidents", json={**body, "external_id": "device-7/43"})
        assert refused.status_code == 401, refused.text
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*) FROM incident WHERE created_by = :u"), {"u": user.id}).scalar()
    engine.dispose()
    assert stored == 1
