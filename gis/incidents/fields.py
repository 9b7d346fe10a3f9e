"""How an incident's category, dispute kind, loop stage and time are read: one rule for the API
(POST /incidents) and the file import (`gis.incidents.batch`) alike.

- category, dispute_kind, state: the code (`dispute`, any case) or the Chinese name the pages show
  (`矛盾纠纷`, `邻里纠纷`, `一访`), plus a few short forms people write (`灾害`, `汛情`, `邻里`);
  an empty dispute_kind is none.
- occurred_at: ISO 8601 or another common date/time form (`2024-05-01 08:00`, `2024/5/1 8:00`).
  A time with a zone (`Z`, `+08:00`) is taken as given; a time without a zone is Beijing time
  (Asia/Shanghai), since spreadsheets and most people in the town write none.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from gis.clock import BEIJING
from gis.incidents.categories import CATEGORY_NAMES_ZH, DISPUTE_NAMES_ZH, Category, DisputeKind
from gis.incidents.loop import STATE_NAMES_ZH, State

TIME_RULE = "a date and time, e.g. 2024-05-01T08:00:00+08:00; without a zone it is Beijing time"


def _by_text(codes: Iterable[StrEnum], names_zh: Mapping[Any, str], short: dict[str, str]) -> dict[str, str]:
    out = {c.value: c.value for c in codes}
    out.update({name: code.value for code, name in names_zh.items()})
    out.update(short)
    return out


CATEGORY_BY_TEXT = _by_text(
    Category,
    CATEGORY_NAMES_ZH,
    {
        "灾害": Category.DISASTER.value,
        "汛情": Category.DISASTER.value,
        "纠纷": Category.DISPUTE.value,
    },
)
# The kinds' names without the trailing 纠纷: 土地/边界, 邻里, 婚姻家庭, 劳资, 征迁.
DISPUTE_KIND_BY_TEXT = _by_text(
    DisputeKind,
    DISPUTE_NAMES_ZH,
    {name.removesuffix("纠纷"): code.value for code, name in DISPUTE_NAMES_ZH.items()},
)
STATE_BY_TEXT = _by_text(
    State,
    STATE_NAMES_ZH,
    {
        "访": "visit",
        "报": "report",
        "研": "study",
        "办": "handle",
        "问": "follow_up",
        "办结": "closed",
    },
)


def _code(table: dict[str, str], value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    return table.get(text) or table.get(text.lower())


def category_code(value: object) -> str | None:
    """The category code of a code or Chinese name; None when it is neither."""
    return _code(CATEGORY_BY_TEXT, value)


def dispute_kind_code(value: object) -> str | None:
    """The dispute kind's code of a code or Chinese name; None when it is neither."""
    return _code(DISPUTE_KIND_BY_TEXT, value)


def state_code(value: object) -> str | None:
    """The loop stage's code of a code or Chinese name; None when it is neither."""
    return _code(STATE_BY_TEXT, value)


def category_choices() -> str:
    return ", ".join(f"{c.value} ({CATEGORY_NAMES_ZH[c]})" for c in Category)


def dispute_kind_choices() -> str:
    return ", ".join(f"{k.value} ({DISPUTE_NAMES_ZH[k]})" for k in DisputeKind)


def parse_time(value: object, tz: ZoneInfo = BEIJING) -> dt.datetime:
    """The instant of a time text (or datetime); without a zone it is in `tz`. ValueError when it
    is not a time."""
    try:
        t = pd.Timestamp(value)
    except (OverflowError, OSError) as exc:  # huge numbers: not a time either
        raise ValueError(str(exc)) from None
    if pd.isna(t):
        raise ValueError("empty")
    when: dt.datetime = t.to_pydatetime()
    return when.replace(tzinfo=tz) if when.tzinfo is None else when
