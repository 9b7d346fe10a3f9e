"""GET /incidents as JSON is shaped by PostgreSQL (service.list_incidents_json, issue 12/13 fixed cost): the
same rows, values, order, total and audit as `list_incidents` + `_shape`, the Python definition, for every
incident of the sample town, roles that see reporters and roles that see them masked, both orders and
instants that put incidents on time, overdue and escalated."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import text

from gis.context import Context
from gis.incidents import service
from gis.privacy import mask_name, mask_phone
from tests.conftest import auth


def _principal(accounts, role):
    from gis.auth.principal import Principal
    from gis.auth.roles import Role

    a = accounts[role]
    return Principal(a["id"], a["username"], Role(role), tuple(a["scope_codes"]))


def _ctx(principal):
    return Context(principal=principal, method="GET", path="/incidents", client_ip="127.0.0.1")


def _odd_values(session):
    """Reporters and times that exercise every branch of the SQL forms (rolled back with the session)."""
    ids = session.execute(text("SELECT id FROM incident ORDER BY id LIMIT 8")).scalars().all()
    values = [("欧阳修", "138-0013-8000", "2024-05-01 08:00:00+00"), ("欧阳", "12345", "2024-05-01 08:00:00.5+00"),
              ("王", "", "2024-05-01 08:00:00.000001+00"), ("", None, "1999-12-31 23:59:59.999999+00"),
              (None, "+86 139 1234 5678", "2024-05-01 08:00:00+08"), ("司马光明", "(0)12-3456 7", None),
              ("张三", "123456", None), ("李四", "1234567", None)]
    for incident_id, (name, phone, reviewed) in zip(ids, values, strict=True):
        session.execute(text("UPDATE incident SET reporter_name = :n, reporter_phone = :p, reviewed_at = :r, "
                             "occurred_at = coalesce(:r, occurred_at) WHERE id = :id"),
                        {"n": name, "p": phone, "r": reviewed, "id": incident_id})
    return ids


@pytest.mark.parametrize("role", ["admin", "command_center", "grid_staff", "supervisor", "emergency"])
def test_the_json_page_is_the_python_page(session, accounts, role):
    _odd_values(session)
    principal = _principal(accounts, role)
    compared = 0
    for now in (dt.datetime(2023, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC),
                dt.datetime(2031, 1, 1, tzinfo=dt.UTC)):
        for order in ("newest", "deadline"):
            for filters in (service.IncidentFilter(), service.IncidentFilter(overdue=True),
                            service.IncidentFilter(flagged=True)):
                want = service.list_incidents(session, principal, filters, order=order, limit=100_000, now=now,
                                              count_up_to=10_000)
                got = service.list_incidents_json(session, _ctx(principal), filters, order=order, limit=100_000,
                                                  now=now, count_up_to=10_000)
                assert json.loads(got.items_json) == json.loads(json.dumps(want.items, default=str)), (now, order)
                assert (got.shown, got.total, got.total_exact) == (len(want.items), want.total, want.total_exact)
                compared += len(want.items)
    assert compared > 100   # the comparison saw real rows


def test_paging_and_totals_match(session, accounts):
    principal = _principal(accounts, "command_center")
    now = dt.datetime(2026, 11, 25, 12, tzinfo=dt.UTC)
    for offset in (0, 7, 50):
        for cap in (None, 3, 10_000):
            want = service.list_incidents(session, principal, limit=7, offset=offset, now=now, count_up_to=cap)
            got = service.list_incidents_json(session, _ctx(principal), service.IncidentFilter(), limit=7,
                                              offset=offset, now=now, count_up_to=cap)
            assert [r["id"] for r in json.loads(got.items_json)] == [r["id"] for r in want.items]
            assert (got.total, got.total_exact) == (want.total, want.total_exact), (offset, cap)


def test_the_sql_masks_are_the_python_masks(session):
    from gis.privacy import COMPOUND_SURNAMES

    names = ["欧阳修", "欧阳", "司马光明", "王", "张三", "", None, "a", "上官婉儿", "诸葛", "O'Brien"]
    phones = ["13800138000", "138-0013-8000", "+86 139 1234 5678", "123456", "1234567", "", None, "12",
              "010-12345678"]
    rows = session.execute(text(
        f"SELECT n, p, {service._MASKED_NAME_SQL} AS name, {service._MASKED_PHONE_SQL} AS phone "
        "FROM unnest(CAST(:n AS text[])) WITH ORDINALITY AS a(n, k) "
        "JOIN unnest(CAST(:p AS text[])) WITH ORDINALITY AS b(p, k) USING (k) "
        "CROSS JOIN LATERAL (SELECT a.n AS reporter_name, b.p AS reporter_phone) i "
        f"CROSS JOIN LATERAL (SELECT {service._DIGITS_SQL} AS digits) d"),
        {"n": names[:len(phones)] + [None] * (len(phones) - len(names)), "p": phones,
         "compound": sorted(COMPOUND_SURNAMES)}).all()
    assert len(rows) == len(phones)
    for n, p, name, phone in rows:
        assert name == mask_name(n), n
        assert phone == mask_phone(p), p
    # Digits of other scripts: Python's isdigit keeps them, the SQL form drops them (it never shows more).
    fullwidth = session.execute(text(f"SELECT {service._MASKED_PHONE_SQL} FROM (SELECT '１２３４５６７８'::text "
                                     f"AS reporter_phone) i CROSS JOIN LATERAL (SELECT {service._DIGITS_SQL} "
                                     "AS digits) d")).scalar_one()
    assert fullwidth == "" and mask_phone("１２３４５６７８") == "１２３*５６７８"


def test_the_list_over_http_audits_shown_reporters_only(client, clients, engine):
    def audited() -> int:
        with engine.connect() as c:
            return c.execute(text("SELECT count(*) FROM audit_log WHERE action = 'read_personal' "
                                  "AND resource = 'incident'")).scalar_one()

    before = audited()
    r = clients["command_center"].get("/incidents", params={"limit": 20}, headers=auth("command_center"))
    assert r.status_code == 200, r.text
    assert all(i["reporter_phone"] is None or "*" in i["reporter_phone"] for i in r.json()["items"])
    assert audited() == before   # masked: nothing read
    r = client.get("/incidents", params={"limit": 20}, headers=auth("admin"))
    body = r.json()
    assert r.status_code == 200 and len(body["items"]) == 20 and body["next"]
    shown = [i["id"] for i in body["items"] if i["reporter_name"] or i["reporter_phone"]]
    assert audited() == before + (1 if shown else 0)


@pytest.mark.parametrize("query, field", [({"limit": 0}, "limit"), ({"state": "nope"}, "state"),
                                          ({"open": "maybe"}, "open"), ({"offset": -1}, "offset"),
                                          ({"since": "2024-01-01T00:00:00"}, "since"),
                                          ({"grid_code": "12"}, "grid_code"),
                                          ({"escalation_level": 9}, "escalation_level"),
                                          ({"order": "oldest"}, "order"), ({"format": "pdf"}, "format")])
def test_the_list_query_model_names_the_field(clients, query, field):
    """The query is validated as one model: a bad parameter is still a 422 naming it, before credentials."""
    for who in ("command_center", "anonymous"):
        r = clients[who].get("/incidents", params=query, headers=auth(who) if who != "anonymous" else {})
        assert r.status_code == 422, (who, r.text)
        assert any(tuple(p["loc"])[:2] == ("query", field) for p in r.json()["errors"]), r.json()


def test_the_list_query_model_applies_every_filter(clients):
    c, h = clients["command_center"], auth("command_center")
    everything = c.get("/incidents", params={"limit": 500}, headers=h).json()["items"]
    assert everything
    one = everything[0]
    for params, keep in [({"state": one["state"]}, lambda i: i["state"] == one["state"]),
                         ({"category": one["category"]}, lambda i: i["category"] == one["category"]),
                         ({"grid_code": one["village_code"]}, lambda i: i["village_code"] == one["village_code"]),
                         ({"open": "true"}, lambda i: i["state"] != "closed"),
                         ({"flagged": "true"}, lambda i: i["flagged"])]:
        got = c.get("/incidents", params={"limit": 500, **params}, headers=h).json()["items"]
        kept = [i["id"] for i in everything if keep(i)]
        assert all(keep(i) for i in got) and (got or "flagged" in params), params
        assert [i["id"] for i in got][:len(kept)] == kept, params   # newest first, both ways
