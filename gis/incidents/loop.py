"""The closed loop 一访二报三研四办五问 as a state machine, with deadlines and escalation.

visit (访) → report (报) → study (研) → handle (办) → follow_up (问) → closed
- no stage may be skipped;
- at follow-up the resident is asked: satisfied → closed; not satisfied → back to handle;
- a closed incident can be reopened (back to handle) by the command center or an admin.
Each stage has a deadline (categories.STAGE_HOURS). An incident still in a stage after its
deadline is overdue and escalates one grid level up per elapsed stage period past it:
group (4) → village (3) → area (2) → town (1). Everything takes `now` as an argument, so tests
and the list endpoint run on a controllable clock.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from enum import StrEnum

from gis.incidents.categories import STAGE_HOURS, Category


class State(StrEnum):
    VISIT = "visit"
    REPORT = "report"
    STUDY = "study"
    HANDLE = "handle"
    FOLLOW_UP = "follow_up"
    CLOSED = "closed"


STATE_NAMES_ZH = {
    State.VISIT: "一访", State.REPORT: "二报", State.STUDY: "三研", State.HANDLE: "四办",
    State.FOLLOW_UP: "五问", State.CLOSED: "已办结",
}


class Action(StrEnum):
    ADVANCE = "advance"            # the stage's work is done: go to the next stage
    SATISFIED = "satisfied"        # follow-up: the resident confirms it is solved
    NOT_SATISFIED = "not_satisfied"  # follow-up: not solved, back to handling
    REOPEN = "reopen"              # closed → handle (command center / admin)


# (from, action) -> to. Anything else is refused.
TRANSITIONS: dict[tuple[State, Action], State] = {
    (State.VISIT, Action.ADVANCE): State.REPORT,
    (State.REPORT, Action.ADVANCE): State.STUDY,
    (State.STUDY, Action.ADVANCE): State.HANDLE,
    (State.HANDLE, Action.ADVANCE): State.FOLLOW_UP,
    (State.FOLLOW_UP, Action.SATISFIED): State.CLOSED,
    (State.FOLLOW_UP, Action.NOT_SATISFIED): State.HANDLE,
    (State.CLOSED, Action.REOPEN): State.HANDLE,
}

# Actions only some roles may take (the rest: anyone allowed to work the incident).
RESTRICTED_ACTIONS = {Action.REOPEN: frozenset({"admin", "command_center"})}


class TransitionRefused(ValueError):
    def __init__(self, state: State, action: Action):
        allowed = sorted(a.value for (s, a) in TRANSITIONS if s is state)
        self.state, self.action, self.allowed = state, action, allowed
        super().__init__(
            f"'{action.value}' is not allowed in state '{state.value}'"
            + (f"; allowed: {', '.join(allowed)}" if allowed else "; the incident is closed")
        )


def next_state(state: State | str, action: Action | str) -> State:
    state, action = State(state), Action(action)
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise TransitionRefused(state, action) from None


def stage_deadline(category: Category | str, state: State | str, entered_at: dt.datetime) -> dt.datetime | None:
    state = State(state)
    if state is State.CLOSED:
        return None
    return entered_at + dt.timedelta(hours=STAGE_HOURS[Category(category)][state.value])


@dataclass(frozen=True)
class Urgency:
    deadline: dt.datetime | None
    overdue: bool
    escalation_level: int  # the grid level now responsible: 4 group … 1 town
    overdue_hours: float


def urgency(category: Category | str, state: State | str, entered_at: dt.datetime, now: dt.datetime) -> Urgency:
    """Where an incident stands against its stage deadline at `now`."""
    deadline = stage_deadline(category, state, entered_at)
    if deadline is None or now <= deadline:
        return Urgency(deadline, False, 4, 0.0)
    period = STAGE_HOURS[Category(category)][State(state).value]
    late_h = (now - deadline).total_seconds() / 3600
    steps = 1 + math.floor(late_h / period)  # one level up at the deadline, one more per period
    return Urgency(deadline, True, max(1, 4 - steps), late_h)
