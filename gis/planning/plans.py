"""Plans: a planner's named draft of grid changes, its life (draft -> scheduled/published, or discarded)
and its proposed state of the grids it touches (`Draft`), which the edits change and publish takes.

A plan never changes the live grids: its rows in `plan_grid` say what each touched grid would
become. Every saved edit bumps `plan.version`; an edit or publish made against another version is a
`Conflict` (409), never last-write-wins. `plan.base` records, for every current grid the plan
touches, the id of the version it was drafted on, so publish can refuse a plan whose base moved.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import shapely
from geoalchemy2 import WKBElement
from shapely.geometry import MultiPolygon
from shapely.geometry.base import BaseGeometry
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.orm import Session

from gis import clock
from gis.context import Context
from gis.errors import Conflict, InputError, NotFound, Problem
from gis.models import Plan, PlanGrid
from gis.planning import publish as engine
from gis.planning.changes import GridChange
from gis.planning.publish import PublishResult
from gis.vector_files import as_multipolygon

STATUSES = ("draft", "scheduled", "published", "discarded")
STATUS_ZH = {"draft": "草稿", "scheduled": "已排期", "published": "已发布", "discarded": "已放弃"}


class PreconditionRequired(Exception):
    """A change to a plan sent without `If-Match`: the caller must say which version it edits (428)."""

    def __init__(self, detail: str, extra: dict[str, Any] | None = None):
        self.detail = detail
        self.extra = extra or {}
        super().__init__(detail)


@dataclass
class DraftGrid:
    """One grid as the plan would have it. `base_code` is the current grid it stands for (None: new)."""

    code: str
    level: int
    name: str
    parent_code: str | None
    geom: BaseGeometry | None
    old_code: str | None = None
    retired: bool = False
    allow_parts: bool = False
    base_code: str | None = None
    base_id: int | None = None

    def change(self) -> GridChange:
        geom = None if self.retired else as_multipolygon(self.geom)
        return GridChange(self.code, self.level, self.name, self.parent_code, geom, self.old_code)


def multipolygon(geom: BaseGeometry | None) -> MultiPolygon:
    """The polygonal part of `geom` as a MultiPolygon (set operations may leave stray lines or points)."""
    if geom is None or geom.is_empty:
        return MultiPolygon()
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
        geom = shapely.union_all(parts) if parts else MultiPolygon()
    mp = as_multipolygon(geom)
    return mp if mp is not None else MultiPolygon()


_CURRENT_COLUMNS = "id, code, level, name, parent_code, ST_AsBinary(geom) AS wkb"


def _from_row(r: Any) -> DraftGrid:
    return DraftGrid(r.code, int(r.level), r.name, r.parent_code, shapely.from_wkb(bytes(r.wkb)),
                     base_code=r.code, base_id=int(r.id))


class Draft:
    """A plan's proposed grids over the current ones: what every edit reads and changes, then saves.

    `rows` holds the grids the plan touches, by their proposed code; every other current grid is as
    it is today. A current grid is shadowed by the row that stands for it (same code, or recoded)."""

    def __init__(self, session: Session, plan: Plan):
        self.session = session
        self.plan = plan
        self.base: dict[str, int] = {k: int(v) for k, v in (plan.base or {}).items()}
        self.rows: dict[str, DraftGrid] = {}
        self._current: dict[str, DraftGrid | None] = {}
        stored = session.execute(
            select(PlanGrid.code, PlanGrid.level, PlanGrid.name, PlanGrid.parent_code,
                   func.ST_AsBinary(PlanGrid.geom).label("wkb"), PlanGrid.old_code, PlanGrid.retired,
                   PlanGrid.allow_parts).where(PlanGrid.plan_id == plan.id)
        ).all()
        for r in stored:
            base_code = r.old_code or (r.code if r.code in self.base else None)
            self.rows[r.code] = DraftGrid(
                r.code, int(r.level), r.name, r.parent_code, shapely.from_wkb(bytes(r.wkb)) if r.wkb else None,
                r.old_code, bool(r.retired), bool(r.allow_parts), base_code,
                self.base.get(base_code) if base_code else None)

    # --- reading -------------------------------------------------------------------------------

    def shadowed(self) -> set[str]:
        """Current codes the plan has a row for (edited in place, recoded or retired)."""
        return {r.base_code for r in self.rows.values() if r.base_code}

    def _load_current(self, codes: Iterable[str]) -> None:
        wanted = [c for c in set(codes) if c not in self._current]
        if not wanted:
            return
        found = self.session.execute(
            text(f"SELECT {_CURRENT_COLUMNS} FROM grid WHERE valid_to IS NULL AND code = ANY(:codes)"),
            {"codes": wanted}).all()
        for c in wanted:
            self._current[c] = None
        for r in found:
            self._current[r.code] = _from_row(r)

    def current(self, code: str) -> DraftGrid | None:
        """The current (live) grid `code`, as it is today, or None."""
        self._load_current([code])
        return self._current[code]

    def find(self, code: str) -> DraftGrid | None:
        """The grid `code` as the plan has it (None: no such grid, or retired by the plan)."""
        row = self.rows.get(code)
        if row is not None:
            return None if row.retired else row
        if code in self.shadowed():
            return None
        return self.current(code)

    def get(self, code: str, field: tuple[str | int, ...] = ("body", "code")) -> DraftGrid:
        g = self.find(code)
        if g is None:
            row = self.rows.get(code)
            why = "is retired in this plan" if row is not None and row.retired else (
                "was recoded in this plan" if code in self.shadowed() else "is neither a current grid nor in this plan")
            raise InputError(Problem(field, f"grid {code} {why}", "unknown_grid"))
        return g

    def in_use(self, code: str) -> bool:
        """Whether `code` names a grid in the plan's state, or a current grid (retired ones included:
        a code is never given to a second grid in one plan)."""
        return code in self.rows or self.current(code) is not None

    def _unshadowed(self, rows: Sequence[Any]) -> list[DraftGrid]:
        """The current grids among `rows` (grid rows of _CURRENT_COLUMNS) that no plan row stands for,
        remembered as loaded."""
        shadowed = self.shadowed()
        out = []
        for r in rows:
            if r.code not in shadowed:
                g = self._current.get(r.code) or _from_row(r)
                self._current[r.code] = g
                out.append(g)
        return out

    def children(self, code: str) -> list[DraftGrid]:
        out = [r for r in self.rows.values() if r.parent_code == code and not r.retired]
        rows = self.session.execute(
            text(f"SELECT {_CURRENT_COLUMNS} FROM grid WHERE valid_to IS NULL AND parent_code = :p ORDER BY code"),
            {"p": code}).all()
        return out + self._unshadowed(rows)

    def at_level(self, level: int, near: BaseGeometry) -> list[DraftGrid]:
        """The plan's grids of one level whose geometry intersects `near`."""
        out = [r for r in self.rows.values()
               if r.level == level and not r.retired and r.geom is not None and r.geom.intersects(near)]
        rows = self.session.execute(
            text(f"SELECT {_CURRENT_COLUMNS} FROM grid WHERE valid_to IS NULL AND level = :lvl "
                 "AND ST_Intersects(geom, ST_GeomFromWKB(:g, 4326)) ORDER BY code"),
            {"lvl": level, "g": shapely.to_wkb(near)}).all()
        return out + self._unshadowed(rows)

    # --- changing ------------------------------------------------------------------------------

    def edit(self, code: str, field: tuple[str | int, ...] = ("body", "code")) -> DraftGrid:
        """The plan's row for grid `code`, made from the current grid the first time it is touched."""
        row = self.rows.get(code)
        if row is not None and not row.retired:
            return row
        g = self.get(code, field)
        row = replace(g)
        self.rows[row.code] = row
        if row.base_code is not None and row.base_id is not None:
            self.base.setdefault(row.base_code, row.base_id)
        return row

    def add(self, grid: DraftGrid) -> DraftGrid:
        self.rows[grid.code] = grid
        return grid

    def rekey(self, row: DraftGrid, new_code: str) -> None:
        del self.rows[row.code]
        if row.base_code is not None and row.old_code is None:
            row.old_code = row.base_code
        if row.old_code == new_code:   # recoded back to what it was
            row.old_code = None
        row.code = new_code
        self.rows[new_code] = row

    def retire(self, row: DraftGrid) -> None:
        if row.base_code is None:   # a grid the plan created: retiring it just drops it
            del self.rows[row.code]
            return
        if row.old_code is not None:   # a recoded grid: retire it under its current code
            del self.rows[row.code]
            row.code, row.old_code = row.base_code, None
            self.rows[row.code] = row
        row.retired, row.geom = True, None

    def save(self) -> None:
        """Write the plan's rows back (the caller bumps the version)."""
        self.session.execute(delete(PlanGrid).where(PlanGrid.plan_id == self.plan.id))
        values = [
            {"plan_id": self.plan.id, "code": r.code, "level": r.level, "name": r.name,
             "parent_code": r.parent_code,
             "geom": None if r.retired else WKBElement(shapely.to_wkb(multipolygon(r.geom)), srid=4326),
             "old_code": r.old_code, "retired": r.retired, "allow_parts": r.allow_parts}
            for r in sorted(self.rows.values(), key=lambda g: g.code)
        ]
        if values:
            self.session.execute(insert(PlanGrid), values)
        self.plan.base = dict(sorted(self.base.items()))

    def changes(self) -> list[GridChange]:
        return [r.change() for r in sorted(self.rows.values(), key=lambda g: (g.level, g.code))]


# --- the plan's life ---------------------------------------------------------------------------


def get_plan(session: Session, plan_id: int, *, for_update: bool = False) -> Plan:
    stmt = select(Plan).where(Plan.id == plan_id)
    if for_update:
        stmt = stmt.with_for_update()
    plan = session.execute(stmt).scalar_one_or_none()
    if plan is None:
        raise NotFound(f"no plan has the id {plan_id}")
    return plan


def list_plans(session: Session, status: str | None = None) -> list[Plan]:
    stmt = select(Plan).order_by(Plan.id.desc())
    if status is not None:
        stmt = stmt.where(Plan.status == status)
    return list(session.execute(stmt).scalars())


def check_version(plan: Plan, if_match: int | None) -> None:
    """A change must name the version it was made against: missing -> 428, another one -> 409."""
    if if_match is None:
        raise PreconditionRequired(
            f"say which version of plan {plan.id} this change is made against (If-Match: {plan.version})",
            {"current_version": plan.version})
    if if_match != plan.version:
        raise Conflict(
            f"plan {plan.id} is at version {plan.version}, not {if_match}: reload it and make the change again",
            {"current_version": plan.version, "conflicts": []})


def must_be_draft(plan: Plan) -> None:
    if plan.status != "draft":
        raise Conflict(f"plan {plan.id} is {plan.status}, only a draft can change",
                       {"current_version": plan.version, "plan_status": plan.status, "conflicts": []})


def touch(plan: Plan) -> None:
    plan.version += 1
    plan.updated_at = clock.now()


def create_plan(session: Session, ctx: Context, name: str, changes: Sequence[GridChange] | None = None,
                *, note: str | None = None) -> Plan:
    """A new draft owned by the caller; `changes` (e.g. a suggestion's) become its proposed grids."""
    name = (name or "").strip()
    if not name:
        raise InputError(Problem(("body", "name"), "a plan needs a name", "missing"))
    plan = Plan(name=name[:200], owner_id=ctx.principal.user_id if ctx.principal else None, status="draft",
                version=1, base={}, note=note)
    session.add(plan)
    session.flush()
    if changes:
        draft = Draft(session, plan)
        apply_changes(draft, changes)
        draft.save()
    ctx.audit(session, "plan.create", resource="plan", resource_ids=[plan.id],
              detail={"name": plan.name, "grids": len(changes or ())})
    session.flush()
    return plan


def apply_changes(draft: Draft, changes: Sequence[GridChange]) -> None:
    """GridChanges as the plan's rows: a retirement, a recode, a new grid or a new state of a grid."""
    for i, c in enumerate(changes):
        field: tuple[str | int, ...] = ("body", "changes", i, "code")
        if c.geom is None:
            draft.retire(draft.edit(c.code, field))
            continue
        if c.old_code is not None:
            row = draft.edit(c.old_code, ("body", "changes", i, "old_code"))
            if c.code != row.code:
                if draft.in_use(c.code):
                    raise InputError(Problem(field, f"code {c.code} is already in use", "duplicate_code"))
                draft.rekey(row, c.code)
        elif draft.find(c.code) is not None:
            row = draft.edit(c.code, field)
        else:
            if draft.in_use(c.code):
                raise InputError(Problem(field, f"grid {c.code} is retired in this plan", "duplicate_code"))
            row = draft.add(DraftGrid(c.code, c.level, c.name, c.parent_code, None))
        row.level, row.name, row.parent_code, row.geom = c.level, c.name, c.parent_code, c.geom


def discard_plan(session: Session, ctx: Context, plan_id: int, if_match: int | None) -> Plan:
    plan = get_plan(session, plan_id, for_update=True)
    check_version(plan, if_match)
    must_be_draft(plan)
    plan.status = "discarded"
    touch(plan)
    ctx.audit(session, "plan.discard", resource="plan", resource_ids=[plan.id])
    session.flush()
    return plan


def summary(plan: Plan, grids: int | None = None) -> dict[str, Any]:
    def iso(v: dt.datetime | None) -> str | None:
        return v.isoformat() if v is not None else None

    return {
        "id": plan.id, "name": plan.name, "owner_id": plan.owner_id, "status": plan.status,
        "status_zh": STATUS_ZH[plan.status], "version": plan.version, "base": dict(plan.base or {}),
        "created_at": iso(plan.created_at), "updated_at": iso(plan.updated_at),
        "published_at": iso(plan.published_at), "effective_at": iso(plan.effective_at), "note": plan.note,
        **({"grids": grids} if grids is not None else {}),
    }


def grid_features(draft: Draft) -> list[dict[str, Any]]:
    """The plan's rows as GeoJSON features (retired grids without geometry)."""
    out = []
    for r in sorted(draft.rows.values(), key=lambda g: (g.level, g.code)):
        out.append({
            "type": "Feature", "id": r.code,
            "properties": {"code": r.code, "level": r.level, "name": r.name, "parent_code": r.parent_code,
                           "old_code": r.old_code, "retired": r.retired, "allow_parts": r.allow_parts,
                           "new": r.base_code is None},
            "geometry": None if r.retired or r.geom is None else shapely.geometry.mapping(multipolygon(r.geom)),
        })
    return out


# --- publish, schedule, cancel and undo (the engine: gis/planning/publish.py) ----------------------


def last_publish(session: Session, plan: Plan) -> tuple[int, str] | None:
    """(id, status) of the plan's newest publish row: pending, applied, failed or cancelled."""
    row = session.execute(text("SELECT id, status FROM grid_publish WHERE plan_id = :p ORDER BY id DESC LIMIT 1"),
                          {"p": plan.id}).one_or_none()
    return (int(row.id), str(row.status)) if row is not None else None


def shown_status(session: Session, plan: Plan) -> str:
    """A scheduled plan that the engine has applied (its instant came) is published."""
    if plan.status == "scheduled":
        last = last_publish(session, plan)
        if last is not None and last[1] == "applied":
            return "published"
    return plan.status


def base_conflicts(session: Session, plan: Plan) -> list[str]:
    """Codes of the plan's base whose current version is not the one it was drafted on (or is gone)."""
    base = {k: int(v) for k, v in (plan.base or {}).items()}
    if not base:
        return []
    current: dict[str, int] = dict(session.execute(text(
        "SELECT code, id FROM grid WHERE valid_to IS NULL AND code = ANY(:c)"),
                                   {"c": list(base)}).all())
    return sorted(code for code, gid in base.items() if current.get(code) != gid)


def publish_plan(session: Session, ctx: Context, plan_id: int, if_match: int | None,
                 effective_at: dt.datetime | None = None, *, check: bool = True,
                 tolerances: dict[str, float] | None = None) -> tuple[Plan, PublishResult]:
    """Publish a finished draft at `effective_at` (now when None): validated, then handed to the engine
    with the plan's base (a base grid changed since -> Conflict naming it). Returns (plan, engine result)."""
    from gis.planning.validate import validate_plan

    plan = get_plan(session, plan_id, for_update=True)
    check_version(plan, if_match)
    must_be_draft(plan)
    draft = Draft(session, plan)
    if not draft.rows:
        raise InputError(Problem(("body",), "the plan changes no grid yet", "empty_plan"))
    moved = base_conflicts(session, plan)
    if moved:   # first: a plan drafted on grids that changed since is judged against the wrong neighbours
        raise Conflict(f"grids {', '.join(moved)} changed since plan {plan.id} was drafted on them: "
                       "reload them into a new plan", {"current_version": plan.version, "conflicts": moved})
    if check:
        v = validate_plan(draft, **(tolerances or {}))
        if v.problems:
            raise InputError(v.problems, title="The plan is unfinished: fix its problems before publishing")
    result = engine.publish(session, ctx, draft.changes(), effective_at=effective_at, base=dict(plan.base),
                            plan_id=plan.id, name=plan.name)
    plan.status = "scheduled" if result.status == "pending" else "published"
    plan.published_at, plan.effective_at = clock.now(), result.effective_at
    touch(plan)
    ctx.audit(session, "plan.publish", resource="plan", resource_ids=[plan.id],
              detail={"effective_at": result.effective_at.isoformat(), "publish_id": result.publish_id,
                      "grids": len(draft.rows), "version": plan.version})
    session.flush()
    return plan, result


def cancel_plan(session: Session, ctx: Context, plan_id: int, if_match: int | None) -> Plan:
    """A scheduled plan withdrawn before its instant: its publish cancelled, the plan a draft again."""
    plan = get_plan(session, plan_id, for_update=True)
    check_version(plan, if_match)
    last = last_publish(session, plan)
    if plan.status != "scheduled" or last is None or last[1] != "pending":
        raise Conflict(f"plan {plan.id} is not waiting for its effective instant: nothing to cancel",
                       {"current_version": plan.version, "plan_status": shown_status(session, plan), "conflicts": []})
    engine.cancel(session, ctx, last[0])
    plan.status, plan.published_at, plan.effective_at = "draft", None, None
    touch(plan)
    ctx.audit(session, "plan.cancel", resource="plan", resource_ids=[plan.id], detail={"publish_id": last[0]})
    session.flush()
    return plan


def undo_plan(session: Session, ctx: Context, plan_id: int, if_match: int | None,
              effective_at: dt.datetime | None = None) -> tuple[Plan, PublishResult]:
    """Undo a published plan by publishing its inverse as a new plan; refused (409) when a grid it
    made has changed since (another plan published over it)."""
    plan = get_plan(session, plan_id, for_update=True)
    check_version(plan, if_match)
    last = last_publish(session, plan)
    if shown_status(session, plan) != "published" or last is None:
        raise Conflict(f"plan {plan.id} is {STATUS_ZH[shown_status(session, plan)]}: only a published plan in force "
                       "can be undone", {"current_version": plan.version, "plan_status": shown_status(session, plan),
                                        "conflicts": []})
    inverse = engine.inverse_of(session, last[0])
    # The codes the plan made current (a recode's new code, a created or edited grid) must still be
    # the versions it made: another publish over them would be silently overwritten by the undo.
    made = sorted({c.old_code or c.code for c in inverse})
    current: dict[str, dt.datetime] = dict(session.execute(text(
        "SELECT code, valid_from FROM grid WHERE valid_to IS NULL AND code = ANY(:c)"), {"c": made}).all())
    restored = {c.code for c in inverse if c.geom is not None and c.old_code is None and c.code not in current}
    moved = [c for c in made if c not in restored and current.get(c) != plan.effective_at]
    if moved:
        raise Conflict(f"grids {', '.join(moved)} changed after plan {plan.id} was published: undoing it would "
                       "overwrite that change", {"current_version": plan.version, "conflicts": moved})
    undo = create_plan(session, ctx, f"撤销：{plan.name}"[:200], inverse, note=f"undo of plan {plan.id}")
    touch(plan)
    ctx.audit(session, "plan.undo", resource="plan", resource_ids=[plan.id, undo.id])
    return publish_plan(session, ctx, undo.id, undo.version, effective_at, check=False)
