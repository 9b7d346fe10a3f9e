"""The staff roster (网格员花名册): import, single edits, who served which grid when, and 联系户.

`staff` is TODAY's roster (routing and the 明白卡 read it). Every change to it is recorded in
`staff_tenure` by the trigger of migration 0017, dated by the effective date this module sets for
its transaction (`wangge.effective_date`), so "who served grid G on date D" is a plain query
(`staff_on`). A roster file is, by default, the whole roster: a re-import updates people in place
(a member who moved grid keeps their staff row and assignments), adds who joined and removes who
left, each change dated. `household_responsible` says which member is responsible for which
households (联系户), with the same dating.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis import clock
from gis.context import Context
from gis.errors import InputError, NotFound, Problem
from gis.register.checks import normalize_phone
from gis.register.tables import ColumnSpec, TableRead, read_table

ImportMode = Literal["all_or_nothing", "good_rows"]
STAFF_ROLES = ("grid_leader", "grid_member", "party_household", "supervisor")
ROLE_NAMES_ZH = {"grid_leader": "网格长", "grid_member": "网格员", "party_household": "党员中心户",
                 "supervisor": "网格督导员"}
# What a roster may write in its 职务 column, for each role.
ROLE_WORDS = {
    "grid_leader": ("网格长", "网格组长", "组长", "grid_leader", "leader"),
    "grid_member": ("网格员", "专职网格员", "兼职网格员", "grid_member", "member"),
    "party_household": ("党员中心户", "党员中心户户主", "party_household"),
    "supervisor": ("监督员", "督导员", "网格督导员", "网格监督员", "supervisor"),
}
_ROLE_BY_WORD = {w.lower(): role for role, words in ROLE_WORDS.items() for w in words}
MAX_PROBLEMS = 1_000
MAX_CHANGES_LISTED = 2_000

ROSTER_COLUMNS = (
    ColumnSpec("name", "姓名", ("网格员姓名", "人员姓名", "名字", "name"), True),
    ColumnSpec("phone", "联系电话", ("手机号", "手机号码", "电话", "手机", "联系方式", "phone")),
    ColumnSpec("role", "职务", ("角色", "岗位", "身份", "人员类别", "类别", "role"), True),
    ColumnSpec("grid_code", "网格编码", ("网格代码", "网格编号", "grid_code")),
    ColumnSpec("grid_name", "网格名称", ("所属网格", "网格", "grid_name")),
    ColumnSpec("household_no", "户号", ("户编号", "household_no")),
)
RESPONSIBLE_COLUMNS = (
    ColumnSpec("household_no", "户号", ("户编号", "household_no"), True),
    ColumnSpec("staff_phone", "网格员电话", ("联系人电话", "负责人电话", "包联人电话", "联系电话", "staff_phone")),
    ColumnSpec("staff_name", "网格员", ("联系人", "负责人", "包联人", "网格员姓名", "包户网格员", "staff_name")),
)


def role_of(value: str) -> str | None:
    """The role code a roster's 职务 cell names (Chinese or code), or None."""
    return _ROLE_BY_WORD.get(value.strip().lower())


def set_effective_date(session: Session, on: dt.date | None) -> None:
    """Date the staff changes of this transaction (read by the tenure trigger); None: today."""
    session.execute(text("SELECT set_config('wangge.effective_date', :d, true)"),
                    {"d": on.isoformat() if on else ""})


class GridNames:
    """Current grids by code, by name and by village name + group name (尹营村 + 一组)."""

    def __init__(self, session: Session):
        rows = session.execute(text(
            "SELECT g.code, g.name, p.name AS parent FROM grid g LEFT JOIN grid p ON p.code = g.parent_code "
            "AND p.valid_to IS NULL WHERE g.valid_to IS NULL")).all()
        self.codes = {r.code for r in rows}
        self.by_name: dict[str, set[str]] = {}
        for r in rows:
            for key in {r.name, (r.parent or "") + r.name}:
                self.by_name.setdefault(key, set()).add(r.code)

    def resolve(self, code: str | None, name: str | None) -> tuple[str | None, str | None, str]:
        """(code, None, "") or (None, the column at fault, why)."""
        if code:
            if code in self.codes:
                return code, None, ""
            return None, "grid_code", f"no current grid has the code {code}"
        if name:
            found = self.by_name.get(name.replace(" ", ""), set())
            if len(found) == 1:
                return next(iter(found)), None, ""
            if not found:
                return None, "grid_name", f"no current grid is named {name!r}"
            return None, "grid_name", f"{len(found)} grids are named {name!r}; give 网格编码"
        return None, "grid_code", "give 网格编码 or 网格名称"


@dataclass
class StaffChange:
    what: Literal["joined", "left", "moved", "role_changed", "phone_changed", "renamed"]
    name: str
    role: str
    grid_code: str
    before: str | None = None  # the grid, role, phone or name it changed from

    def as_dict(self) -> dict[str, Any]:
        return {"what": self.what, "name": self.name, "role": self.role, "grid_code": self.grid_code,
                "before": self.before}


@dataclass
class RosterImport:
    file: str
    dry_run: bool
    mode: ImportMode
    effective: dt.date
    whole_roster: bool
    rows: int = 0
    joined: int = 0
    left: int = 0
    changed: int = 0
    unchanged: int = 0
    skipped: int = 0
    problems: list[Problem] = field(default_factory=list)
    changes: list[StaffChange] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "dry_run": self.dry_run, "mode": self.mode, "effective": self.effective.isoformat(),
            "whole_roster": self.whole_roster, "rows": self.rows, "joined": self.joined, "left": self.left,
            "changed": self.changed, "unchanged": self.unchanged, "skipped": self.skipped,
            "problems": [p.as_dict() for p in self.problems],
            "changes": [c.as_dict() for c in self.changes[:MAX_CHANGES_LISTED]],
        }


@dataclass
class _Person:
    row: int
    name: str
    phone: str | None
    role: str
    grid_code: str
    household_id: int | None


def _problems_or_raise(problems: list[Problem], mode: ImportMode, what: str) -> None:
    if problems and mode == "all_or_nothing":
        raise InputError(problems[:MAX_PROBLEMS], f"Cannot import the {what}: nothing was written")


def _household_ids(session: Session, numbers: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(numbers))
    if not wanted:
        return {}
    rows = session.execute(text("SELECT household_no, id FROM household WHERE household_no = ANY(:n)"),
                           {"n": wanted}).all()
    return {r[0]: r[1] for r in rows}


def _read(source: str | Path | bytes, spec: tuple[ColumnSpec, ...], file_name: str, sheet: str | None,
          mapping: Mapping[str, str] | None) -> TableRead:
    return read_table(source, spec, sheet=sheet, mapping=mapping, filename=file_name)


def read_roster(session: Session, table: TableRead, progress: Callable[[int], None] | None = None,
                ) -> tuple[list[_Person], list[Problem], int]:
    """The people of a roster table, checked; (people, problems, rows read)."""
    if "grid_code" not in table.columns and "grid_name" not in table.columns:
        raise InputError(Problem(("file", table.sheet, table.header_row, "网格编码"),
                                 "the roster needs a 网格编码 or 网格名称 column", "missing_column"),
                         "Cannot read the table")
    grids = GridNames(session)
    rows = list(table.rows)
    households = _household_ids(session, (v.get("household_no") or "" for _, v in rows if v.get("household_no")))
    people: list[_Person] = []
    problems: list[Problem] = []
    seen: dict[tuple[str, str | None, str, str], int] = {}
    for row, v in rows:
        if progress is not None:
            progress(1)
        bad = len(problems)
        name = (v.get("name") or "").replace(" ", "")
        if not name:
            problems.append(table.problem(row, "name", "姓名 is empty", "missing"))
        role = role_of(v.get("role") or "")
        if role is None:
            problems.append(table.problem(
                row, "role", f"unknown role {v.get('role')!r}: one of 网格长, 网格员, 党员中心户, 网格督导员",
                "unknown_role"))
        phone: str | None = None
        if v.get("phone"):
            try:
                phone = normalize_phone(v["phone"] or "")
            except ValueError as exc:
                problems.append(table.problem(row, "phone", str(exc), "bad_phone"))
        code, where, why = grids.resolve(v.get("grid_code"), v.get("grid_name"))
        if code is None:
            problems.append(table.problem(row, where or "grid_code", why, "unknown_grid"))
        household_id = None
        if v.get("household_no"):
            household_id = households.get(v["household_no"] or "")
            if household_id is None:
                problems.append(table.problem(row, "household_no", f"no household has the number "
                                              f"{v['household_no']}", "unknown_household"))
        if len(problems) > bad or role is None or code is None:
            continue
        key = (name, phone, role, code)
        if key in seen:
            problems.append(table.problem(row, "name", f"the same person, role and grid as row {seen[key]}",
                                          "duplicate"))
            continue
        seen[key] = row
        people.append(_Person(row, name, phone, role, code, household_id))
    return people, problems, len(rows)


def _current_staff(session: Session) -> list[dict[str, Any]]:
    return [dict(r) for r in session.execute(text(
        "SELECT id, name, phone, role, grid_code, household_id FROM staff ORDER BY id")).mappings()]


def _match_people(people: list[_Person], current: list[dict[str, Any]]) -> tuple[
        list[tuple[_Person, dict[str, Any] | None]], list[dict[str, Any]]]:
    """Each person of the file with the staff row they are (None: joined), and the rows nobody is (left).

    Passes from the strictest key to the loosest, so a member who changed one thing (grid, role or
    phone) keeps their staff row; two things at once is a leave and a join."""
    free = {s["id"]: s for s in current}
    matched: dict[int, dict[str, Any]] = {}
    keys: tuple[Callable[[Any], tuple[Any, ...] | None], ...] = (
        lambda s: (s["name"], s["phone"], s["role"], s["grid_code"]),
        lambda s: (s["name"], s["phone"], s["role"]),
        lambda s: (s["name"], s["phone"], s["grid_code"]),
        lambda s: (s["name"], s["role"], s["grid_code"]),
        lambda s: (s["phone"], s["role"], s["grid_code"]) if s["phone"] else None,
    )
    for key in keys:
        index: dict[Any, list[int]] = {}
        for sid, s in free.items():
            k = key(s)
            if k is not None:
                index.setdefault(k, []).append(sid)
        for p in people:
            if p.row in matched:
                continue
            k = key({"name": p.name, "phone": p.phone, "role": p.role, "grid_code": p.grid_code})
            ids = index.get(k) if k is not None else None
            while ids:
                sid = ids.pop(0)
                if sid in free:
                    matched[p.row] = free.pop(sid)
                    break
    return [(p, matched.get(p.row)) for p in people], list(free.values())


def import_roster(
    session: Session,
    ctx: Context,
    source: str | Path | bytes,
    *,
    file_name: str,
    sheet: str | None = None,
    mapping: Mapping[str, str] | None = None,
    effective: dt.date | None = None,
    dry_run: bool = False,
    mode: ImportMode = "all_or_nothing",
    whole_roster: bool = True,
    progress: Callable[[int], None] | None = None,
) -> RosterImport:
    """Read a roster (xlsx/CSV as townships write them) and make `staff` say what it says, each change
    dated `effective` (default today). `whole_roster`: staff the file does not name leave. A dry run
    reports the same changes and writes nothing (no audit row either)."""
    on = effective or clock.today()
    report = RosterImport(file_name, dry_run, mode, on, whole_roster)
    table = _read(source, ROSTER_COLUMNS, file_name, sheet, mapping)
    people, problems, report.rows = read_roster(session, table, progress)
    report.problems = problems[:MAX_PROBLEMS]
    _problems_or_raise(problems, mode, "roster")
    if problems and whole_roster:
        raise InputError([Problem(("whole_roster",), "a whole roster must have no refused rows (their people "
                                  "would leave): fix them, or import it as a partial roster", "whole_with_problems"),
                          *problems[:MAX_PROBLEMS]], "Cannot import the roster: nothing was written")
    report.skipped = len({p.loc[2] for p in problems if len(p.loc) > 2})
    pairs, leaving = _match_people(people, _current_staff(session))
    savepoint = session.begin_nested() if dry_run else None
    try:
        set_effective_date(session, on)
        for p, s in pairs:
            if s is None:
                session.execute(text(
                    "INSERT INTO staff (name, phone, role, grid_code, household_id) VALUES (:n, :p, :r, :g, :h)"),
                    {"n": p.name, "p": p.phone, "r": p.role, "g": p.grid_code, "h": p.household_id})
                report.joined += 1
                report.changes.append(StaffChange("joined", p.name, p.role, p.grid_code))
                continue
            new = {"name": p.name, "phone": p.phone, "role": p.role, "grid_code": p.grid_code,
                   "household_id": p.household_id if p.household_id is not None else s["household_id"]}
            if all(s[k] == v for k, v in new.items()):
                report.unchanged += 1
                continue
            session.execute(text("UPDATE staff SET name = :name, phone = :phone, role = :role, "
                                 "grid_code = :grid_code, household_id = :household_id WHERE id = :id"),
                            {**new, "id": s["id"]})
            report.changed += 1
            for what, k in (("moved", "grid_code"), ("role_changed", "role"), ("phone_changed", "phone"),
                            ("renamed", "name")):
                if s[k] != new[k]:
                    report.changes.append(StaffChange(what, p.name, p.role, p.grid_code, s[k]))  # type: ignore[arg-type]
        if whole_roster and leaving:
            session.execute(text("DELETE FROM staff WHERE id = ANY(:ids)"), {"ids": [s["id"] for s in leaving]})
            report.left = len(leaving)
            report.changes += [StaffChange("left", s["name"], s["role"], s["grid_code"]) for s in leaving]
        set_effective_date(session, None)
    finally:
        if savepoint is not None:
            savepoint.rollback()
    if not dry_run:
        ctx.audit(session, "import", resource="staff", detail={
            "file": file_name, "rows": report.rows, "effective": on.isoformat(), "joined": report.joined,
            "left": report.left, "changed": report.changed, "unchanged": report.unchanged,
            "skipped": report.skipped, "mode": mode, "whole_roster": whole_roster,
        })
    return report


# --- who served when ----------------------------------------------------------------------------


def staff_on(session: Session, grid_code: str, on: dt.date) -> list[dict[str, Any]]:
    """Who served grid `grid_code` on day `on` (tenure history), leaders first."""
    rows = session.execute(text(
        "SELECT staff_id, name, phone, role, grid_code, valid_from, valid_to FROM staff_tenure "
        "WHERE grid_code = :g AND valid_from <= :d AND (valid_to IS NULL OR valid_to > :d) "
        "ORDER BY array_position(CAST(:roles AS text[]), role::text), name, staff_id"),
        {"g": grid_code, "d": on, "roles": list(STAFF_ROLES)}).mappings()
    out = []
    for r in rows:
        d = dict(r)
        d["role_zh"] = ROLE_NAMES_ZH[d["role"]]
        d["valid_from"] = d["valid_from"].isoformat()
        d["valid_to"] = d["valid_to"].isoformat() if d["valid_to"] else None
        out.append(d)
    return out


def grid_known(session: Session, code: str) -> bool:
    """Whether any version of the grid exists (a retired grid still has a history)."""
    return bool(session.execute(text("SELECT EXISTS (SELECT 1 FROM grid WHERE code = :c)"), {"c": code}).scalar())


# --- single edits -------------------------------------------------------------------------------


def _staff_row(session: Session, staff_id: int) -> dict[str, Any]:
    row = session.execute(text("SELECT id, name, phone, role, grid_code, household_id FROM staff WHERE id = :i"),
                          {"i": staff_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"no staff member has the id {staff_id}")
    return dict(row)


def _checked_fields(session: Session, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Checked and normalised staff fields (name, phone, role, grid_code, household_no -> household_id)."""
    out: dict[str, Any] = {}
    problems: list[Problem] = []
    if "name" in fields:
        name = str(fields["name"] or "").replace(" ", "")
        if not name:
            problems.append(Problem(("body", "name"), "姓名 is empty", "missing"))
        out["name"] = name
    if "phone" in fields:
        out["phone"] = None
        if fields["phone"]:
            try:
                out["phone"] = normalize_phone(str(fields["phone"]))
            except ValueError as exc:
                problems.append(Problem(("body", "phone"), str(exc), "bad_phone"))
    if "role" in fields:
        role = role_of(str(fields["role"] or ""))
        if role is None:
            problems.append(Problem(("body", "role"), "one of 网格长, 网格员, 党员中心户, 网格督导员 "
                                    "(or grid_leader, grid_member, party_household, supervisor)", "unknown_role"))
        out["role"] = role
    if "grid_code" in fields:
        code, _, why = GridNames(session).resolve(str(fields["grid_code"] or ""), None)
        if code is None:
            problems.append(Problem(("body", "grid_code"), why, "unknown_grid"))
        out["grid_code"] = code
    if "household_no" in fields:
        out["household_id"] = None
        if fields["household_no"]:
            found = _household_ids(session, [str(fields["household_no"])])
            if not found:
                problems.append(Problem(("body", "household_no"), "no household has this number",
                                        "unknown_household"))
            out["household_id"] = next(iter(found.values()), None)
    if problems:
        raise InputError(problems)
    return out


def create_staff(session: Session, ctx: Context, fields: Mapping[str, Any], effective: dt.date | None = None
                 ) -> dict[str, Any]:
    """Add one staff member (joining their grid on `effective`)."""
    missing = [Problem(("body", k), "required", "missing") for k in ("name", "role", "grid_code") if k not in fields]
    if missing:
        raise InputError(missing)
    values = {"phone": None, "household_id": None, **_checked_fields(session, fields)}
    set_effective_date(session, effective)
    staff_id = session.execute(text(
        "INSERT INTO staff (name, phone, role, grid_code, household_id) VALUES (:name, :phone, :role, :grid_code, "
        ":household_id) RETURNING id"), values).scalar_one()
    set_effective_date(session, None)
    ctx.audit(session, "create", resource="staff", resource_ids=[staff_id],
              detail={"role": values["role"], "grid_code": values["grid_code"],
                      "effective": (effective or clock.today()).isoformat()})
    return _staff_row(session, staff_id)


def update_staff(session: Session, ctx: Context, staff_id: int, fields: Mapping[str, Any],
                 effective: dt.date | None = None) -> dict[str, Any]:
    """Change one staff member (a move to another grid, a new role or phone), dated `effective`."""
    before = _staff_row(session, staff_id)
    values = _checked_fields(session, fields)
    changed = {k: v for k, v in values.items() if before.get(k) != v}
    if changed:
        set_effective_date(session, effective)
        sets = ", ".join(f"{k} = :{k}" for k in changed)
        session.execute(text(f"UPDATE staff SET {sets} WHERE id = :id"), {**changed, "id": staff_id})
        set_effective_date(session, None)
        ctx.audit(session, "update", resource="staff", resource_ids=[staff_id],
                  detail={"fields": sorted(changed), "effective": (effective or clock.today()).isoformat()})
    return _staff_row(session, staff_id)


def delete_staff(session: Session, ctx: Context, staff_id: int, effective: dt.date | None = None) -> None:
    """One staff member leaves (their tenure and responsibilities end on `effective`)."""
    before = _staff_row(session, staff_id)
    set_effective_date(session, effective)
    session.execute(text("DELETE FROM staff WHERE id = :id"), {"id": staff_id})
    set_effective_date(session, None)
    ctx.audit(session, "delete", resource="staff", resource_ids=[staff_id],
              detail={"role": before["role"], "grid_code": before["grid_code"],
                      "effective": (effective or clock.today()).isoformat()})


# --- 联系户: who is responsible for which households ---------------------------------------------


@dataclass
class ResponsibleImport:
    file: str
    dry_run: bool
    mode: ImportMode
    effective: dt.date
    whole_list: bool
    rows: int = 0
    added: int = 0
    ended: int = 0
    unchanged: int = 0
    skipped: int = 0
    problems: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "dry_run": self.dry_run, "mode": self.mode, "effective": self.effective.isoformat(),
            "whole_list": self.whole_list, "rows": self.rows, "added": self.added, "ended": self.ended,
            "unchanged": self.unchanged, "skipped": self.skipped, "problems": [p.as_dict() for p in self.problems],
        }


def _staff_finder(session: Session) -> Callable[[str | None, str | None], tuple[int | None, str, str]]:
    staff = _current_staff(session)
    by_phone: dict[str, list[dict[str, Any]]] = {}
    by_name: dict[str, list[dict[str, Any]]] = {}
    for s in staff:
        if s["phone"]:
            by_phone.setdefault(s["phone"], []).append(s)
        by_name.setdefault(s["name"], []).append(s)
    # One person holds a staff row per duty: the member's duty answers for households first.
    rank = {"grid_member": 0, "grid_leader": 1, "party_household": 2, "supervisor": 3}

    def find(phone: str | None, name: str | None) -> tuple[int | None, str, str]:
        """(staff id, "", "") or (None, the column at fault, why)."""
        if phone:
            try:
                phone = normalize_phone(phone)
            except ValueError as exc:
                return None, "staff_phone", str(exc)
            found = by_phone.get(phone, [])
            if name:
                found = [s for s in found if s["name"] == name.replace(" ", "")]
            if not found:
                return None, "staff_phone", "no current staff member has this phone" + (
                    f" and the name {name!r}" if name else "")
        elif name:
            found = by_name.get(name.replace(" ", ""), [])
            if len({s["phone"] for s in found}) > 1:
                return None, "staff_name", f"{len(found)} staff members are named {name!r}; give 网格员电话"
            if not found:
                return None, "staff_name", f"no current staff member is named {name!r}"
        else:
            return None, "staff_phone", "give 网格员电话 or 网格员"
        return min(found, key=lambda s: (rank[s["role"]], s["id"]))["id"], "", ""

    return find


def import_responsibilities(
    session: Session,
    ctx: Context,
    source: str | Path | bytes,
    *,
    file_name: str,
    sheet: str | None = None,
    mapping: Mapping[str, str] | None = None,
    effective: dt.date | None = None,
    dry_run: bool = False,
    mode: ImportMode = "all_or_nothing",
    whole_list: bool = True,
    progress: Callable[[int], None] | None = None,
) -> ResponsibleImport:
    """Read a 联系户 list (户号 and the member's phone or name per row) and record who is responsible for
    which household from `effective`; with `whole_list`, responsibilities the list no longer holds end."""
    on = effective or clock.today()
    report = ResponsibleImport(file_name, dry_run, mode, on, whole_list)
    table = _read(source, RESPONSIBLE_COLUMNS, file_name, sheet, mapping)
    if "staff_phone" not in table.columns and "staff_name" not in table.columns:
        raise InputError(Problem(("file", table.sheet, table.header_row, "网格员电话"),
                                 "the list needs a 网格员电话 or 网格员 column", "missing_column"),
                         "Cannot read the table")
    rows = list(table.rows)
    report.rows = len(rows)
    households = _household_ids(session, (v.get("household_no") or "" for _, v in rows if v.get("household_no")))
    find = _staff_finder(session)
    problems: list[Problem] = []
    wanted: dict[tuple[int, int], int] = {}
    for row, v in rows:
        if progress is not None:
            progress(1)
        bad = len(problems)
        household_id = households.get(v.get("household_no") or "")
        if household_id is None:
            problems.append(table.problem(row, "household_no", f"no household has the number {v.get('household_no')}",
                                          "unknown_household"))
        staff_id, column, why = find(v.get("staff_phone"), v.get("staff_name"))
        if staff_id is None:
            problems.append(table.problem(row, column, why, "unknown_staff"))
        if len(problems) > bad or household_id is None or staff_id is None:
            continue
        if (household_id, staff_id) in wanted:
            problems.append(table.problem(row, "household_no", f"the same household and member as row "
                                          f"{wanted[(household_id, staff_id)]}", "duplicate"))
            continue
        wanted[(household_id, staff_id)] = row
    report.problems = problems[:MAX_PROBLEMS]
    _problems_or_raise(problems, mode, "responsibilities")
    if problems and whole_list:
        raise InputError([Problem(("whole_list",), "a whole list must have no refused rows (their households "
                                  "would lose their member): fix them, or import it as a partial list",
                                  "whole_with_problems"), *problems[:MAX_PROBLEMS]],
                         "Cannot import the responsibilities: nothing was written")
    report.skipped = len({p.loc[2] for p in problems if len(p.loc) > 2})
    open_now = {(h, s): i for i, h, s in session.execute(text(
        "SELECT id, household_id, staff_id FROM household_responsible WHERE valid_to IS NULL")).all()}
    new = [pair for pair in wanted if pair not in open_now]
    report.unchanged = len(wanted) - len(new)
    gone = [i for pair, i in open_now.items() if pair not in wanted] if whole_list else []
    savepoint = session.begin_nested() if dry_run else None
    try:
        if new:
            session.execute(text(
                "INSERT INTO household_responsible (household_id, staff_id, valid_from) "
                "SELECT h, s, :d FROM unnest(CAST(:h AS bigint[]), CAST(:s AS bigint[])) AS u(h, s)"),
                {"h": [h for h, _ in new], "s": [s for _, s in new], "d": on})
        if gone:
            session.execute(text("DELETE FROM household_responsible WHERE id = ANY(:ids) AND valid_from >= :d"),
                            {"ids": gone, "d": on})
            session.execute(text("UPDATE household_responsible SET valid_to = :d WHERE id = ANY(:ids)"),
                            {"ids": gone, "d": on})
        report.added, report.ended = len(new), len(gone)
    finally:
        if savepoint is not None:
            savepoint.rollback()
    if not dry_run:
        ctx.audit(session, "import", resource="household_responsible", detail={
            "file": file_name, "rows": report.rows, "effective": on.isoformat(), "added": report.added,
            "ended": report.ended, "unchanged": report.unchanged, "skipped": report.skipped, "mode": mode,
            "whole_list": whole_list,
        })
    return report


def responsible_on(session: Session, household_id: int, on: dt.date) -> list[dict[str, Any]]:
    """The members responsible for a household on day `on`, with their tenure's name and phone then."""
    rows = session.execute(text(
        "SELECT r.staff_id, t.name, t.phone, t.role, t.grid_code, r.valid_from, r.valid_to "
        "FROM household_responsible r LEFT JOIN LATERAL (SELECT name, phone, role, grid_code FROM staff_tenure t "
        "  WHERE t.staff_id = r.staff_id AND t.valid_from <= :d ORDER BY t.valid_from DESC LIMIT 1) t ON true "
        "WHERE r.household_id = :h AND r.valid_from <= :d AND (r.valid_to IS NULL OR r.valid_to > :d) "
        "ORDER BY r.staff_id"), {"h": household_id, "d": on}).mappings()
    return [dict(r) for r in rows]
