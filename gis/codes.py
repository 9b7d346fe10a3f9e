"""Hierarchical grid codes: 6-digit county + 3-digit township + 3-digit village + 3-digit grid.

Level 1 (town)     411324105 000 000
Level 2 (area)     411324105 9aa 000   management areas are not statistical units, so they
                                        take the 9xx block of the village field (aa = 01..99)
Level 3 (village)  411324105 vvv 000   vvv = 001..899
Level 4 (grid)     411324105 vvv ggg   ggg = 001..999, inside village vvv

Numbering inside a parent follows reading order on the map: rows from north to south,
west to east within a row (see `reading_order`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import IntEnum
from typing import Any

CODE_LENGTH = 15
AREA_BLOCK = "9"


class GridLevel(IntEnum):
    TOWN = 1
    AREA = 2
    VILLAGE = 3
    GROUP = 4


LEVEL_NAMES_ZH = {
    GridLevel.TOWN: "镇域（一级网格）",
    GridLevel.AREA: "管理片区（二级网格）",
    GridLevel.VILLAGE: "行政村（三级网格）",
    GridLevel.GROUP: "村民小组网格（四级网格）",
}

_PATTERNS = {
    GridLevel.TOWN: re.compile(r"^\d{9}000000$"),
    GridLevel.AREA: re.compile(r"^\d{9}9(?!00)\d{2}000$"),
    GridLevel.VILLAGE: re.compile(r"^\d{9}[0-8]\d{2}000$"),
    GridLevel.GROUP: re.compile(r"^\d{9}[0-8]\d{2}\d{3}$"),
}

# The same rules as SQL regular expressions, used by the database CHECK constraint.
SQL_PATTERNS = {
    GridLevel.TOWN: r"^[0-9]{9}000000$",
    GridLevel.AREA: r"^[0-9]{9}9([0-9][1-9]|[1-9][0-9])000$",
    GridLevel.VILLAGE: r"^[0-9]{9}[0-8][0-9]{2}000$",
    GridLevel.GROUP: r"^[0-9]{9}[0-8][0-9]{2}[0-9]{3}$",
}


def code_problem(code: str, level: int) -> str | None:
    """Why `code` is not a valid code for `level`, or None when it is."""
    if not isinstance(code, str) or len(code) != CODE_LENGTH or not code.isdigit():
        return f"a grid code has {CODE_LENGTH} digits, got {code!r}"
    try:
        lvl = GridLevel(int(level))
    except (ValueError, TypeError):
        return f"level must be 1 (town), 2 (area), 3 (village) or 4 (group), got {level!r}"
    if lvl is GridLevel.VILLAGE and code[9:12] == "000":
        return "a village code has a non-zero village field (digits 10-12)"
    if lvl is GridLevel.GROUP and code[12:] == "000":
        return "a group-grid code has a non-zero grid field (digits 13-15)"
    if not _PATTERNS[lvl].match(code):
        expected = {
            GridLevel.TOWN: "county(6)+township(3)+000000",
            GridLevel.AREA: "county(6)+township(3)+9aa+000",
            GridLevel.VILLAGE: "county(6)+township(3)+village 001-899+000",
            GridLevel.GROUP: "county(6)+township(3)+village 001-899+grid 001-999",
        }[lvl]
        return f"code {code} does not fit level {int(lvl)}: expected {expected}"
    return None


def level_of_code(code: str) -> GridLevel | None:
    """The level a well-formed code belongs to, or None."""
    for lvl in (GridLevel.TOWN, GridLevel.AREA, GridLevel.GROUP, GridLevel.VILLAGE):
        if code_problem(code, lvl) is None:
            return lvl
    return None


def parent_problem(code: str, level: int, parent_code: str | None) -> str | None:
    """Why `parent_code` cannot be the parent of `code`, judged from the codes alone."""
    lvl = GridLevel(int(level))
    if lvl is GridLevel.TOWN:
        return None if not parent_code else "a town (level 1) has no parent"
    if not parent_code:
        return f"a level-{int(lvl)} grid needs a parent code"
    if parent_code[:9] != code[:9]:
        return f"parent {parent_code} is in another township than {code}"
    expected_parent_level = GridLevel(int(lvl) - 1)
    if code_problem(parent_code, expected_parent_level) is not None:
        return f"parent {parent_code} is not a level-{int(expected_parent_level)} code"
    if lvl is GridLevel.GROUP and parent_code[:12] != code[:12]:
        return f"a group grid's parent is its village {code[:12]}000, not {parent_code}"
    return None


def in_subtree(code: str, ancestors: Iterable[str], parents: Mapping[str, str | None]) -> bool:
    """Whether grid `code` is one of `ancestors` or lies below one of them, following `parents`
    (code -> parent code). A cycle in bad data ends the walk instead of looping."""
    targets, seen = set(ancestors), set()
    current: str | None = code
    while current and current not in seen:
        if current in targets:
            return True
        seen.add(current)
        current = parents.get(current)
    return False


def town_code(county: str, township: str) -> str:
    return f"{county}{township}000000"


def area_code(town: str, number: int) -> str:
    return f"{town[:9]}{AREA_BLOCK}{number:02d}000"


def village_code(town: str, number: int) -> str:
    return f"{town[:9]}{number:03d}000"


def group_code(village: str, number: int) -> str:
    return f"{village[:12]}{number:03d}"


def reading_order(xs: Any, ys: Any, row_height: float) -> Any:
    """Indices sorted in map reading order: rows of `row_height` north to south, west to east.

    xs/ys are projected (metres, y growing northwards)."""
    import numpy as np

    xs = np.asarray(xs, dtype=float)
    ys = np.asarray(ys, dtype=float)
    rows = np.floor((ys.max() - ys) / row_height)
    return np.lexsort((xs, rows))
