"""Errors that carry what a user needs to fix their input: where, what, and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: `loc` is the path to it (field names, row numbers)."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = "invalid"
    ctx: dict[str, Any] | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"loc": list(self.loc), "msg": self.msg, "type": self.type}
        if self.ctx:
            out["ctx"] = self.ctx
        return out


class InputError(ValueError):
    """The caller's input cannot be used; `problems` lists every reason found, not just the first."""

    def __init__(self, problems: list[Problem] | Problem, title: str = "Invalid input"):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        self.title = title
        super().__init__(f"{title}: " + "; ".join(f"{'.'.join(map(str, p.loc))}: {p.msg}" for p in self.problems[:5]))


class NotFound(LookupError):
    """A thing the caller named does not exist; `detail` says what was looked for."""

    def __init__(self, detail: str, extra: dict[str, Any] | None = None):
        self.detail = detail
        self.extra = extra or {}
        super().__init__(detail)


class Forbidden(Exception):
    """The caller may not do this (their role or grids do not allow it); `detail` says why.

    The domain's own refusal, answered 403 by the API. Not the built-in PermissionError, which an
    operating-system error (a file the service user cannot read) would also raise.
    """

    def __init__(self, detail: str):
        self.detail = detail
        super().__init__(detail)


class Conflict(Exception):
    """The caller's change was made against a state that has moved on (a stale version, a plan whose
    base grids changed): answered 409 naming what conflicts, never last-write-wins. `extra` (e.g.
    {"conflicts": [...codes...], "current_version": 7}) goes into the problem body."""

    def __init__(self, detail: str, extra: dict[str, Any] | None = None):
        self.detail = detail
        self.extra = extra or {}
        super().__init__(detail)
