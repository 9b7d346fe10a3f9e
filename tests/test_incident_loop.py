"""The closed loop: every allowed and every forbidden transition; deadlines and escalation on a set clock."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from gis.incidents.categories import STAGE_HOURS, Category
from gis.incidents.loop import TRANSITIONS, Action, State, TransitionRefused, next_state, urgency

ALLOWED = {
    ("visit", "advance"): "report",
    ("report", "advance"): "study",
    ("study", "advance"): "handle",
    ("handle", "advance"): "follow_up",
    ("follow_up", "satisfied"): "closed",
    ("follow_up", "not_satisfied"): "handle",
    ("closed", "reopen"): "handle",
}


@pytest.mark.parametrize(("state", "action"), list(itertools.product(State, Action)))
def test_every_pair_is_allowed_or_refused_as_written(state, action):
    key = (state.value, action.value)
    if key in ALLOWED:
        assert next_state(state, action) == State(ALLOWED[key])
    else:
        with pytest.raises(TransitionRefused) as exc:
            next_state(state, action)
        assert action.value in str(exc.value)


def test_the_table_is_the_one_in_the_docs():
    assert {(s.value, a.value): t.value for (s, a), t in TRANSITIONS.items()} == ALLOWED


def test_no_stage_can_be_skipped():
    order = [State.VISIT, State.REPORT, State.STUDY, State.HANDLE, State.FOLLOW_UP]
    for i, state in enumerate(order[:-1]):
        assert next_state(state, Action.ADVANCE) is order[i + 1]


T0 = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("category", list(Category))
def test_escalation_climbs_one_level_per_elapsed_period(category):
    period = STAGE_HOURS[category]["study"]
    h = dt.timedelta(hours=period)
    assert urgency(category, "study", T0, T0 + h).overdue is False          # exactly at the deadline
    late = urgency(category, "study", T0, T0 + h + dt.timedelta(minutes=1))
    assert late.overdue and late.escalation_level == 3                       # village
    assert urgency(category, "study", T0, T0 + 2 * h + dt.timedelta(minutes=1)).escalation_level == 2
    assert urgency(category, "study", T0, T0 + 3 * h + dt.timedelta(minutes=1)).escalation_level == 1
    assert urgency(category, "study", T0, T0 + 30 * h).escalation_level == 1  # never above the town


def test_closed_incidents_are_never_overdue():
    u = urgency("dispute", "closed", T0, T0 + dt.timedelta(days=999))
    assert u.deadline is None and not u.overdue and u.escalation_level == 4
