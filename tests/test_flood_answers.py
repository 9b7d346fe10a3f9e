"""Stored flood answers: a page read from the stored answer equals the one the finder computes, for
every role, grid filter and offset; readers never write; an answer older than the data is not served."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from gis.auth.principal import Principal
from gis.auth.roles import Role
from gis.flood import answers, finder
from tests.conftest import insert_household


def _principal(accounts, role: str) -> Principal:
    a = accounts[role]
    return Principal(user_id=a["id"], username=a["username"], role=Role(role), scope_codes=tuple(a["scope_codes"]))


@pytest.fixture
def stage(session):
    ext = finder.resolve_extent(session, scenario="3")
    stored = session.execute(
        text("SELECT count(*) FROM flood_answer_household WHERE extent_id = :e AND buffer_m = 0"), {"e": ext.id}
    ).scalar_one()
    assert stored > 20, "the DEM import stores the answer of each precomputed stage"
    return ext


def _as_dicts(page):
    return {k: getattr(page, k) for k in ("extent", "total", "offset", "totals", "items", "shelter_method",
                                          "distance_kind", "unplaced", "shelters")}


@pytest.mark.parametrize("role", ["admin", "command_center", "grid_staff", "supervisor", "emergency"])
def test_stored_page_equals_computed_page(session, accounts, stage, role):
    principal = _principal(accounts, role)
    full = answers._computed_page(session, principal, stage, 0.0, None, None, 0, True, None)
    codes = sorted({h["village_code"] for h in full.items if h["village_code"]})
    groups = sorted({h["grid_code"] for h in full.items if h["grid_code"]})
    filters = [None, "411324105000000", *(codes[:1]), *(groups[-1:]), "411324105999999"]
    for grid_code in filters:
        for offset, limit in ((0, 7), (5, 50), (0, None), (10_000, 10)):
            stored = answers.households_page(session, principal, stage, 0.0, grid_code, limit=limit, offset=offset)
            computed = answers._computed_page(session, principal, stage, 0.0, answers.grid_filter(grid_code),
                                              limit, offset, True, None)
            assert _as_dicts(stored) == _as_dicts(computed), (role, grid_code, offset, limit)


def test_readers_never_write_and_stale_answers_are_not_served(session, accounts, stage):
    admin = _principal(accounts, "admin")
    before = session.execute(text("SELECT count(*), max(computed_at) FROM flood_answer")).one()
    first = answers.households_page(session, admin, stage, 0.0, limit=5)
    assert session.execute(text("SELECT count(*), max(computed_at) FROM flood_answer")).one() == before
    # A new household inside the flood: the stored answer is older than the data now.
    x, y = first.items[0]["lon"], first.items[0]["lat"]
    new_id = insert_household(session, "ANSWER-TEST-1", x, y, residents=1, elderly=1)
    after = answers.households_page(session, admin, stage, 0.0, limit=None)
    assert after.total == first.total + 1
    assert new_id in {h["id"] for h in after.items}
    assert session.execute(text("SELECT count(*), max(computed_at) FROM flood_answer")).one() == before
    # The write that refreshes it (POST /flood/scenarios, the CLI) stores the new answer.
    answers.ensure_answer(session, stage)
    again = answers.households_page(session, admin, stage, 0.0, limit=None)
    assert _as_dicts(again) == _as_dicts(after)
