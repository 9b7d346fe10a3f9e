"""The service's clock: `now()`, which tests (and a rehearsal) can set to another instant.

Whatever decides by time what is current — a dated publish becoming due above all — asks this
clock and passes the instant to SQL as a parameter, instead of the database's now(). The clock
is the real UTC time unless it is set: by `frozen(at)` in this process, or by the environment
variable WANGGE_CLOCK (an ISO 8601 instant with its offset) for a whole process.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from zoneinfo import ZoneInfo

ENV_VAR = "WANGGE_CLOCK"
BEIJING = ZoneInfo("Asia/Shanghai")  # the day a dated change falls on, as the township counts days

_frozen: list[dt.datetime] = []


def _aware(at: dt.datetime) -> dt.datetime:
    if at.tzinfo is None:
        raise ValueError("the clock needs an instant with its time zone")
    return at


def now() -> dt.datetime:
    """The current instant (timezone-aware)."""
    if _frozen:
        return _frozen[-1]
    configured = os.environ.get(ENV_VAR)
    if configured:
        return _aware(dt.datetime.fromisoformat(configured))
    return dt.datetime.now(dt.UTC)


def today() -> dt.date:
    """Today as the township counts days (Beijing), by this clock: the default date of register and roster
    changes and of "who lived / served here" questions."""
    return now().astimezone(BEIJING).date()


@contextmanager
def frozen(at: dt.datetime) -> Iterator[dt.datetime]:
    """Within the block (in this process, every thread), `now()` answers `at`."""
    _frozen.append(_aware(at))
    try:
        yield at
    finally:
        _frozen.pop()
