"""The data-quality report of a loaded town: what in the register needs fixing, finding by finding.

Kinds of finding (`KINDS`, Chinese labels for the page and the CSV):
- households outside every current grid (no grid polygon contains the house);
- group grids (level 4) without a grid leader, or without grid members;
- grid members responsible for more households than a limit; households without a responsible member.
  Responsibility is the 联系户 list (table `household_responsible`, current rows) once it holds rows;
  until then every grid member of a household's group grid shares its households evenly
  (a member's load = ceil(households of the grid / members of the grid));
- households and staff without a phone;
- residents whose ID number is not a valid GB 11643 number (check digit, birth date, the birth date or
  gender the register states);
- shelters whose capacity is below the residents of their catchment (the households whose nearest
  shelter, by distance on the ground, it is).

Who sees what: scoped roles (grid staff, supervisors) get the report of their own grids; the others the
whole town. Household findings are listed only where `gis.households.access_for` admits the row (the
rest are counted, never named), with personal values shown or masked by the same rule; a report that
shows personal values is audited (`read_personal`, the households' ids).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.context import Context
from gis.crs import metric_crs_for, metric_transformer
from gis.households import access_for
from gis.privacy import mask_id_number, mask_record
from gis.register.checks import parse_id_number
from gis.spreadsheet import PERSONAL, Table

KINDS: dict[str, str] = {
    "household_outside_grids": "住户不在任何网格内",
    "grid_without_leader": "网格无网格长",
    "grid_without_members": "网格无网格员",
    "member_over_limit": "网格员联系户超过上限",
    "household_without_responsible": "住户无联系网格员",
    "household_missing_phone": "住户缺少联系电话",
    "staff_missing_phone": "网格人员缺少联系电话",
    "resident_invalid_id": "居民身份证号无效",
    "shelter_over_capacity": "安置点容量不足",
}
DEFAULT_MEMBER_LIMIT = 30
DEFAULT_PER_KIND = 200
MAX_PER_KIND = 20_000

EXPORT = Table(
    {"kind": "问题类型", "grid_code": "网格编码", "grid_name": "网格", "subject": "对象", "household_no": "户号",
     "detail": "说明", "value": "数值", "limit": "上限", "personal_fields": "个人信息"},
    labels={"kind": KINDS, "personal_fields": PERSONAL},
)

# --- GB 11643 ID numbers -------------------------------------------------------------------------


def id_number_problem(id_number: str, birth_date: dt.date | None = None, gender: str | None = None) -> str | None:
    """Why `id_number` is not a valid 18-digit resident ID number (GB 11643, the rule of
    gis.register.checks), in Chinese; None if valid. The birth date and gender the register states, when
    given, must agree with the number."""
    try:
        parsed = parse_id_number(id_number)
    except ValueError as exc:
        why = str(exc)
        if "check digit" in why:
            return "校验码错误"
        if "birth date" in why:
            return "出生日期码不是有效日期"
        return "应为18位（前17位数字，末位数字或X）"
    if birth_date is not None and parsed.birth_date != birth_date:
        return "出生日期码与登记的出生日期不一致"
    if gender in ("男", "女") and parsed.gender != gender:
        return "性别码与登记的性别不一致"
    return None


# --- the report ----------------------------------------------------------------------------------


@dataclass
class Finding:
    kind: str
    detail: str
    grid_code: str | None = None
    grid_name: str | None = None
    household_id: int | None = None
    household_no: str | None = None
    staff_id: int | None = None
    shelter_id: int | None = None
    subject: str | None = None
    value: int | None = None
    limit: int | None = None
    link: str | None = None
    personal_fields: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class GroupGrid:
    code: str
    name: str
    households: int
    leaders: int
    members: int


@dataclass
class KindSummary:
    kind: str
    total: int = 0  # findings of this kind in the reader's area (their grids, or the town)
    listed: int = 0  # in `findings`
    hidden: int = 0  # households the reader may not see: counted, not named

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "label": KINDS[self.kind], "total": self.total, "listed": self.listed,
                "hidden": self.hidden}


@dataclass
class QualityReport:
    member_limit: int
    responsibility: str  # "list" (the 联系户 table) | "grid" (a group grid's members share its households)
    area: list[str]  # the reader's grids; empty: the whole town
    summary: dict[str, KindSummary] = field(default_factory=lambda: {k: KindSummary(k) for k in KINDS})
    findings: list[Finding] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"member_limit": self.member_limit, "responsibility": self.responsibility, "area": self.area,
                "summary": [s.as_dict() for s in self.summary.values()],
                "findings": [f.as_dict() for f in self.findings]}

    def rows(self) -> list[dict[str, Any]]:
        """The findings as rows of `EXPORT` (CSV/xlsx)."""
        return [f.as_dict() for f in self.findings]


# A grid in the reader's area: scoped readers only their grids (and everything inside them).
_GRID_IN_AREA = (
    "(CAST(:scoped AS boolean) IS FALSE OR EXISTS (SELECT 1 FROM grid sg WHERE sg.valid_to IS NULL "
    "AND sg.code = ANY(:scope) AND {g}.level >= sg.level AND ST_Covers(sg.geom, ST_PointOnSurface({g}.geom))))"
)
_POINT_IN_AREA = (
    "(CAST(:scoped AS boolean) IS FALSE OR EXISTS (SELECT 1 FROM grid sg WHERE sg.valid_to IS NULL "
    "AND sg.code = ANY(:scope) AND ST_Intersects(sg.geom, {p}.geom)))"
)


# A 联系户 row in force today (alias r of household_responsible).
_CURRENT_RESPONSIBILITY = "r.valid_from <= CURRENT_DATE AND (r.valid_to IS NULL OR r.valid_to > CURRENT_DATE)"


def _has_responsibility_list(session: Session) -> bool:
    exists = session.execute(text("SELECT to_regclass('household_responsible') IS NOT NULL")).scalar_one()
    return bool(exists) and session.execute(text("SELECT EXISTS (SELECT 1 FROM household_responsible)")).scalar_one()


def quality_report(
    session: Session,
    principal: Principal,
    *,
    member_limit: int = DEFAULT_MEMBER_LIMIT,
    per_kind: int = DEFAULT_PER_KIND,
    ctx: Context | None = None,
    fmt: str = "json",
) -> QualityReport:
    """The data-quality findings the principal may see (at most `per_kind` listed per kind; every one
    counted). With `ctx`, a report that shows personal values is audited."""
    scoped = principal.scoped
    params: dict[str, Any] = {"scoped": scoped, "scope": list(principal.scope_codes), "limit": member_limit}
    list_mode = _has_responsibility_list(session)
    report = QualityReport(member_limit, "list" if list_mode else "grid", list(principal.scope_codes) if scoped else [])
    can_map = principal.can(Permission.VIEW_HOUSEHOLDS)

    def grid_link(code: str | None) -> str | None:
        return f"/maps/households?grid_code={code}" if can_map and code else None

    # Each household of the area with its group grid (the house -> grid rule, household_grid_at), once.
    area = _POINT_IN_AREA.format(p="h")
    house_group: dict[int, str | None] = {r[0]: r[1] for r in session.execute(text(
        "SELECT h.id, hg.group_code FROM household h LEFT JOIN LATERAL household_grid_at(h.geom) hg ON true "
        f"WHERE {area}"), params)}
    per_grid = Counter(code for code in house_group.values() if code is not None)

    # Group grids in the area with their leaders and members.
    grids = [GroupGrid(r.code, r.name, per_grid.get(r.code, 0), r.leaders, r.members) for r in session.execute(text(f"""
        SELECT g.code, g.name,
               (SELECT count(*) FROM staff s WHERE s.grid_code = g.code AND s.role = 'grid_leader') AS leaders,
               (SELECT count(*) FROM staff s WHERE s.grid_code = g.code AND s.role = 'grid_member') AS members
        FROM grid g
        WHERE g.valid_to IS NULL AND g.level = 4 AND {_GRID_IN_AREA.format(g="g")}
        ORDER BY g.code
    """), params)]
    for g in grids:
        if g.leaders == 0:
            _add(report, per_kind, Finding("grid_without_leader", "该网格没有登记网格长", g.code, g.name,
                                           subject=g.name, link=grid_link(g.code)))
        if g.members == 0:
            _add(report, per_kind, Finding("grid_without_members", f"该网格没有登记网格员（{g.households} 户）",
                                           g.code, g.name, subject=g.name, value=g.households,
                                           link=grid_link(g.code)))

    # Members over the limit.
    if list_mode:
        loads = session.execute(text(f"""
            SELECT s.id, s.name, s.grid_code, g.name AS grid_name, count(r.household_id) AS load
            FROM staff s JOIN household_responsible r ON r.staff_id = s.id
                 AND {_CURRENT_RESPONSIBILITY}
            LEFT JOIN grid g ON g.code = s.grid_code AND g.valid_to IS NULL
            WHERE s.role = 'grid_member' AND (g.code IS NULL OR {_GRID_IN_AREA.format(g="g")})
            GROUP BY s.id, s.name, s.grid_code, g.name HAVING count(r.household_id) > :limit
            ORDER BY load DESC, s.id
        """), params).all()
        for s in loads:
            _add(report, per_kind, Finding("member_over_limit", f"联系 {s.load} 户，超过上限 {member_limit} 户",
                                           s.grid_code, s.grid_name, staff_id=s.id, subject=s.name,
                                           value=int(s.load), limit=member_limit, link=grid_link(s.grid_code)))
    else:
        by_code = {g.code: g for g in grids}
        members = session.execute(text(
            "SELECT id, name, grid_code FROM staff WHERE role = 'grid_member' AND grid_code = ANY(:codes) "
            "ORDER BY grid_code, id"), {"codes": list(by_code)}).all()
        over = []
        for s in members:
            g = by_code[s.grid_code]
            load = math.ceil(g.households / g.members)
            if load > member_limit:
                over.append((load, s, g))
        for load, s, g in sorted(over, key=lambda t: (-t[0], t[1].id)):
            _add(report, per_kind, Finding(
                "member_over_limit",
                f"所在网格 {g.households} 户、{g.members} 名网格员，人均 {load} 户，超过上限 {member_limit} 户",
                g.code, g.name, staff_id=s.id, subject=s.name, value=load, limit=member_limit,
                link=grid_link(g.code)))

    # Staff without a phone (staff contacts are public: the grid's board).
    for s in session.execute(text(f"""
        SELECT s.id, s.name, s.role, s.grid_code, g.name AS grid_name FROM staff s
        LEFT JOIN grid g ON g.code = s.grid_code AND g.valid_to IS NULL
        WHERE nullif(btrim(coalesce(s.phone, '')), '') IS NULL AND (g.code IS NULL OR {_GRID_IN_AREA.format(g="g")})
        ORDER BY s.grid_code, s.id
    """), params):
        _add(report, per_kind, Finding("staff_missing_phone", "未登记联系电话", s.grid_code, s.grid_name,
                                       staff_id=s.id, subject=s.name, link=grid_link(s.grid_code)))

    # Household findings: (kind, household id, detail, value) in the area; listed where the reader may see the row.
    hh: list[tuple[str, int, str, int | None]] = []
    for (hid,) in session.execute(text(
            "SELECT h.id FROM household h WHERE NOT EXISTS (SELECT 1 FROM grid g WHERE g.valid_to IS NULL "
            f"AND ST_Intersects(g.geom, h.geom)) AND {area} ORDER BY h.id"), params):
        hh.append(("household_outside_grids", hid, "住户位置不在任何现行网格内", None))
    if list_mode:
        for (hid,) in session.execute(text(
                "SELECT h.id FROM household h WHERE NOT EXISTS (SELECT 1 FROM household_responsible r "
                f"WHERE r.household_id = h.id AND {_CURRENT_RESPONSIBILITY}) AND {area} "
                "ORDER BY h.id"), params):
            hh.append(("household_without_responsible", hid, "联系户名单中没有该户", None))
    else:
        staffed = {g.code for g in grids if g.members}
        for hid in sorted(house_group):
            code = house_group[hid]
            if code is None:
                hh.append(("household_without_responsible", hid, "不在任何村民小组网格内，无网格员联系", None))
            elif code not in staffed:
                hh.append(("household_without_responsible", hid, "所在网格没有网格员", None))
    for (hid,) in session.execute(text(
            f"SELECT h.id FROM household h WHERE nullif(btrim(coalesce(h.phone, '')), '') IS NULL AND {area} "
            "ORDER BY h.id"), params):
        hh.append(("household_missing_phone", hid, "未登记联系电话", None))
    invalid = _invalid_ids(session, area, params)
    hh.extend(("resident_invalid_id", hid, why, None) for hid, why, _ in invalid)
    shown_ids = _add_households(session, principal, report, per_kind, hh, invalid, grid_link)

    # Shelters whose catchment holds more residents than they take.
    for sh, residents in _over_capacity_shelters(session, params):
        _add(report, per_kind, Finding(
            "shelter_over_capacity", f"就近安置范围内 {residents} 人，容量 {sh.capacity} 人",
            sh.group_code, sh.group_name, shelter_id=sh.id, subject=sh.name, value=residents,
            limit=int(sh.capacity), link=grid_link(sh.group_code)))

    if ctx is not None and shown_ids:
        ctx.audit(session, "read_personal", resource="household", resource_ids=sorted(shown_ids),
                  detail={"format": fmt, "report": "quality"})
    return report


def _over_capacity_shelters(session: Session, params: Mapping[str, Any]) -> list[tuple[Any, int]]:
    """(shelter row, residents of its catchment) of the shelters in the area whose catchment holds more
    residents than their capacity, most over first. A catchment: the households whose nearest shelter
    (straight-line distance in the region's metric CRS) it is, whichever area they are in."""
    from scipy.spatial import cKDTree

    shelters = session.execute(text(f"""
        SELECT s.id, s.name, s.capacity, ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat, hg.group_code, hg.group_name,
               {_POINT_IN_AREA.format(p="s")} AS in_area
        FROM shelter s LEFT JOIN LATERAL household_grid_at(s.geom) hg ON true ORDER BY s.id
    """), params).all()
    if not shelters:
        return []
    houses = session.execute(text("SELECT ST_X(geom), ST_Y(geom), residents FROM household")).all()
    if not houses:
        return []
    lon, lat, residents = (np.asarray(col, dtype=float) for col in zip(*houses, strict=True))
    to_metric = metric_transformer(metric_crs_for(float(np.mean(lon)), float(np.mean(lat))))
    sx, sy = to_metric.transform([s.lon for s in shelters], [s.lat for s in shelters])
    hx, hy = to_metric.transform(lon, lat)
    _, nearest = cKDTree(np.column_stack([sx, sy])).query(np.column_stack([hx, hy]))
    load = np.bincount(nearest, weights=residents, minlength=len(shelters))
    over = [(s, int(load[i])) for i, s in enumerate(shelters) if s.in_area and load[i] > s.capacity]
    return sorted(over, key=lambda t: (t[0].capacity - t[1], t[0].id))


def _add(report: QualityReport, per_kind: int, finding: Finding) -> None:
    s = report.summary[finding.kind]
    s.total += 1
    if s.listed < per_kind:
        s.listed += 1
        report.findings.append(finding)


def _invalid_ids(session: Session, area: str, params: Mapping[str, Any]) -> list[tuple[int, str, int]]:
    """(household id, reason, resident id) of every resident in the area whose ID number is invalid."""
    out = []
    rows = session.execute(text(
        "SELECT r.id, r.household_id, r.id_number, r.birth_date, r.gender FROM resident r "
        f"JOIN household h ON h.id = r.household_id WHERE r.id_number IS NOT NULL AND {area} ORDER BY r.id"
    ), params).yield_per(5000)
    for r in rows:
        why = id_number_problem(r.id_number, r.birth_date, r.gender)
        if why is not None:
            out.append((r.household_id, why, r.id))
    return out


def _add_households(
    session: Session,
    principal: Principal,
    report: QualityReport,
    per_kind: int,
    found: Iterable[tuple[str, int, str, int | None]],
    invalid: list[tuple[int, str, int]],
    grid_link: Any,
) -> set[int]:
    """Household findings into the report: counted all, listed (up to `per_kind`) where the principal may
    see the row, personal values shown or masked as access_for says. Returns the ids shown unmasked."""
    found = list(found)
    acc = access_for(principal)
    ids = sorted({hid for _, hid, _, _ in found})
    visible: dict[int, Any] = {}
    if ids:
        for r in session.execute(text(f"""
            SELECT h.id, h.household_no, h.head_name, h.phone, h.address, ({acc.personal}) AS personal_shown,
                   hg.group_code, hg.group_name
            FROM household h LEFT JOIN LATERAL household_grid_at(h.geom) hg ON true
            WHERE h.id = ANY(:ids) AND ({acc.rows})
        """), {**acc.params, "ids": ids}).mappings():
            visible[r["id"]] = r
    residents: dict[int, str] = {}
    if invalid:
        residents = {r[0]: r[1] for r in session.execute(
            text("SELECT id, name || '|' || id_number FROM resident WHERE id = ANY(:ids)"),
            {"ids": [rid for _, _, rid in invalid]})}
    resident_of = iter(invalid)
    shown: set[int] = set()
    for kind, hid, why, value in found:
        rid = next(resident_of)[2] if kind == "resident_invalid_id" else None
        s = report.summary[kind]
        s.total += 1
        row = visible.get(hid)
        if row is None:
            s.hidden += 1
            continue
        if s.listed >= per_kind:
            continue
        s.listed += 1
        personal = bool(row["personal_shown"])
        rec = {"head_name": row["head_name"], "phone": row["phone"], "address": row["address"]}
        if not personal:
            rec = mask_record(rec, "household")
        detail = why
        if rid is not None:
            name, _, number = (residents.get(rid) or "|").partition("|")
            if not personal:
                name = mask_record({"name": name}, "resident")["name"] or ""
                number = mask_id_number(number) or ""
            detail = f"{name} {number}：{why}"
        else:
            detail = f"{rec['address'] or ''}：{why}" if kind == "household_missing_phone" else why
        if personal:
            shown.add(hid)
        report.findings.append(Finding(
            kind, detail, row["group_code"], row["group_name"], household_id=hid, household_no=row["household_no"],
            subject=rec["head_name"], value=value, link=grid_link(row["group_code"]),
            personal_fields="shown" if personal else "masked"))
    return shown
