"""Publishing grid changes: all at one effective instant, everything or nothing, undoable.

`publish` applies a list of `GridChange`s now, or stores it in `grid_publish` (pending) when its
effective instant lies ahead; `apply_due` applies the pending ones whose instant the clock has
passed (the app every ~30 s and at startup, `wangge grids apply-due`). Applying means, in the
caller's transaction: the current versions of the touched codes closed at `effective_at`, the
new ones inserted with `valid_from = effective_at` (the exclusion constraint of migration 0018
holds the two apart), retired grids closed; staff and account scopes follow a recoded or
absorbed grid to its successor (a grid split into several new ones keeps its staff but lists them,
and the accounts scoped to it, for a decision); open incidents are placed again by their point
(grid_at at every level, the nearest group grid outside the town) and routed to the staff of
their new grid; closed incidents keep the codes and grid version they were handled under.
Households need nothing: their grid is computed from their point (view household_grid). The
grid and staff triggers bump the tile and flood-answer data versions, so no cache serves the old
grids. The returned inverse, published, undoes it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from gis import clock
from gis.context import Context
from gis.errors import Conflict, InputError, NotFound, Problem
from gis.planning.changes import GridChange, check_changes
from gis.register.roster import set_effective_date

if TYPE_CHECKING:
    from gis.planning.impact import Impact

__all__ = ["GridChange", "PublishResult", "apply_due", "cancel", "impact", "publish"]

# One publish (or grid import) at a time: each decides against the state the previous one left.
LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('wangge.grid_import'))"
# A grid whose old area goes at least this share into each of two or more grids, one of them new,
# is "split": its staff and scoped accounts are listed for a decision.
SPLIT_SHARE = 0.05
# How far in the past a publish "now" may be dated (clock skew between a browser and the server).
PAST_SLACK = dt.timedelta(minutes=5)


@dataclass
class PublishResult:
    """What a publish did (status "applied") or will do at `effective_at` (status "pending")."""

    publish_id: int
    status: str
    effective_at: dt.datetime
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    recoded: dict[str, str] = field(default_factory=dict)          # old code -> new code
    successors: dict[str, str] = field(default_factory=dict)       # a code that went -> where its people went
    incidents_moved: int = 0
    incidents_checked: int = 0
    staff_moved: list[dict[str, Any]] = field(default_factory=list)
    scopes_moved: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)  # split grids: staff and accounts to decide
    inverse: list[GridChange] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "publish_id": self.publish_id, "status": self.status, "effective_at": self.effective_at.isoformat(),
            "created": self.created, "replaced": self.replaced, "retired": self.retired, "recoded": self.recoded,
            "successors": self.successors, "incidents_moved": self.incidents_moved,
            "incidents_checked": self.incidents_checked, "staff_moved": self.staff_moved,
            "scopes_moved": self.scopes_moved, "decisions": self.decisions,
            "inverse": [c.as_dict() for c in self.inverse],
        }

    def summary(self) -> dict[str, Any]:
        """What the publish row keeps and the audit row says (no geometries)."""
        d = self.as_dict()
        d.pop("inverse")
        d.pop("effective_at")
        return d


def impact(session: Session, changes: Sequence[GridChange], *, target: float | None = None,
           tolerance: float | None = None) -> Impact:
    """Who and what moves from which grid to which if `changes` were published (gis.planning.impact)."""
    from gis.planning.impact import impact as _impact

    return _impact(session, changes, target=target, tolerance=tolerance)


def publish(session: Session, ctx: Context, changes: Sequence[GridChange], *, effective_at: dt.datetime | None,
            base: dict[str, int] | None, plan_id: int | None = None, name: str | None = None) -> PublishResult:
    """Publish `changes` at `effective_at` (None: now, by gis.clock) in the caller's transaction.

    `base` = {code: grid.id of the version the plan was drafted on}: a code whose current version
    differs (changed, retired or created since) -> Conflict naming every such code. Problems
    with the changes themselves (codes, geometries, a child left without its parent, staff left
    in a retired grid with no successor) -> InputError, and nothing is written. A future
    `effective_at` is checked the same way (a trial application, rolled back), then stored
    pending; `apply_due` applies it once the clock passes it.
    """
    now = clock.now()
    at = effective_at or now
    if at.tzinfo is None:
        raise InputError(Problem(("body", "effective_at"), "the effective instant needs its time zone", "naive"))
    if at < now - PAST_SLACK:
        raise InputError(Problem(("body", "effective_at"), f"{at.isoformat()} lies in the past; publish now or later",
                                 "in_the_past"))
    check_changes(changes)
    session.execute(text(LOCK_SQL))
    if base is None:
        base = _current_ids(session, _touched_codes(changes))
    pending = at > now
    trial = session.begin_nested()
    try:
        result = _apply(session, changes, at, base, source=f"plan:{plan_id}" if plan_id else "publish")
    except BaseException:
        _rollback(trial, session)
        raise
    if pending:
        _rollback(trial, session)
    else:
        trial.commit()
    row_id = session.execute(
        text(
            "INSERT INTO grid_publish (plan_id, name, changes, base, effective_at, status, inverse, result, "
            "created_by, created_by_name, applied_at) VALUES (:plan, :name, CAST(:changes AS jsonb), "
            "CAST(:base AS jsonb), :at, :status, CAST(:inverse AS jsonb), CAST(:result AS jsonb), :by, :by_name, "
            ":applied) RETURNING id"
        ),
        {
            "plan": plan_id, "name": name or (f"plan {plan_id}" if plan_id else "grid changes"),
            "changes": _json([c.as_dict() for c in changes]), "base": _json(base), "at": at,
            "status": "pending" if pending else "applied",
            "inverse": None if pending else _json([c.as_dict() for c in result.inverse]),
            "result": None if pending else _json(result.summary()),
            "by": ctx.principal.user_id if ctx.principal else None, "by_name": _actor_name(ctx),
            "applied": None if pending else now,
        },
    ).scalar_one()
    if pending:
        result = PublishResult(publish_id=row_id, status="pending", effective_at=at)
    result.publish_id = row_id
    ctx.audit(
        session, "schedule_publish" if pending else "publish", resource="grid",
        resource_ids=sorted(_touched_codes(changes)),
        detail={"publish_id": row_id, "plan_id": plan_id, "effective_at": at.isoformat(),
                **({} if pending else _audit_counts(result))},
    )
    return result


def apply_due(session: Session, now: dt.datetime | None = None, ctx: Context | None = None, *,
              wait: bool = True) -> list[PublishResult]:
    """Apply every pending publish whose effective instant is at or before `now` (default: the
    clock), oldest first, each in its own savepoint: one that no longer fits (its base grids
    changed, its hierarchy broke) is marked failed with the reason, the others still apply.
    With `wait` False (the app's background task) a publish or import in progress elsewhere
    makes this round do nothing instead of waiting for it."""
    now = now or clock.now()
    ctx = ctx or Context(principal=None, method="SYSTEM", path="apply_due", actor="wangge:apply-due")
    due_sql = "SELECT EXISTS (SELECT 1 FROM grid_publish WHERE status = 'pending' AND effective_at <= :now)"
    if not session.execute(text(due_sql), {"now": now}).scalar_one():
        return []
    if wait:
        session.execute(text(LOCK_SQL))
    elif not session.execute(text(LOCK_SQL.replace("pg_advisory_xact_lock", "pg_try_advisory_xact_lock"))).scalar():
        return []
    due = session.execute(
        text(
            "SELECT id, plan_id, changes, base, effective_at FROM grid_publish "
            "WHERE status = 'pending' AND effective_at <= :now ORDER BY effective_at, id FOR UPDATE SKIP LOCKED"
        ),
        {"now": now},
    ).all()
    results = []
    for row in due:
        changes = [GridChange.from_dict(d) for d in row.changes]
        savepoint = session.begin_nested()
        try:
            result = _apply(session, changes, row.effective_at, row.base,
                            source=f"plan:{row.plan_id}" if row.plan_id else "publish")
        except (Conflict, InputError) as e:
            _rollback(savepoint, session)
            reason = e.detail if isinstance(e, Conflict) else str(e)
            session.execute(text("UPDATE grid_publish SET status = 'failed', failure = :why WHERE id = :id"),
                            {"why": reason, "id": row.id})
            ctx.audit(session, "publish", resource="grid", resource_ids=sorted(_touched_codes(changes)),
                      outcome="failed", detail={"publish_id": row.id, "reason": reason})
            results.append(PublishResult(publish_id=row.id, status="failed", effective_at=row.effective_at))
            continue
        savepoint.commit()
        result.publish_id = row.id
        session.execute(
            text("UPDATE grid_publish SET status = 'applied', applied_at = :now, inverse = CAST(:inverse AS jsonb), "
                 "result = CAST(:result AS jsonb) WHERE id = :id"),
            {"now": now, "id": row.id, "inverse": _json([c.as_dict() for c in result.inverse]),
             "result": _json(result.summary())},
        )
        ctx.audit(session, "publish", resource="grid", resource_ids=sorted(_touched_codes(changes)),
                  detail={"publish_id": row.id, "effective_at": row.effective_at.isoformat(), **_audit_counts(result)})
        results.append(result)
    return results


def cancel(session: Session, ctx: Context, publish_id: int) -> None:
    """Withdraw a pending publish (an applied one is undone by publishing its inverse)."""
    status = session.execute(text("SELECT status FROM grid_publish WHERE id = :id FOR UPDATE"),
                             {"id": publish_id}).scalar_one_or_none()
    if status is None:
        raise NotFound(f"no publish {publish_id}")
    if status != "pending":
        raise Conflict(f"publish {publish_id} is {status}, not pending", {"publish_status": status})
    session.execute(text("UPDATE grid_publish SET status = 'cancelled' WHERE id = :id"), {"id": publish_id})
    ctx.audit(session, "cancel_publish", resource="grid_publish", resource_ids=[publish_id])


def inverse_of(session: Session, publish_id: int) -> list[GridChange]:
    """The changes that undo an applied publish."""
    row = session.execute(text("SELECT status, inverse FROM grid_publish WHERE id = :id"),
                          {"id": publish_id}).one_or_none()
    if row is None:
        raise NotFound(f"no publish {publish_id}")
    if row.status != "applied" or row.inverse is None:
        raise Conflict(f"publish {publish_id} is {row.status}: only an applied publish can be undone",
                       {"publish_status": row.status})
    return [GridChange.from_dict(d) for d in row.inverse]


# --- applying -----------------------------------------------------------------------------------

@dataclass
class _Old:
    id: int
    code: str
    name: str
    level: int
    parent_code: str | None
    geom: BaseGeometry
    valid_from: dt.datetime


def _touched_codes(changes: Sequence[GridChange]) -> set[str]:
    return {c.code for c in changes} | {c.old_code for c in changes if c.old_code}


def _current_ids(session: Session, codes: set[str]) -> dict[str, int]:
    rows = session.execute(text("SELECT code, id FROM grid WHERE valid_to IS NULL AND code = ANY(:c)"),
                           {"c": sorted(codes)}).all()
    return {r.code: int(r.id) for r in rows}


def current_versions(session: Session, codes: set[str], *, lock: bool = False) -> dict[str, _Old]:
    """The current version of each of `codes` that has one (locked for the publish when `lock`)."""
    rows = session.execute(
        text("SELECT id, code, name, level, parent_code, ST_AsBinary(geom) AS wkb, valid_from FROM grid "
             "WHERE valid_to IS NULL AND code = ANY(:c)" + (" FOR UPDATE" if lock else "")),
        {"c": sorted(codes)},
    )
    return {r.code: _Old(int(r.id), r.code, r.name, int(r.level), r.parent_code, shapely.from_wkb(bytes(r.wkb)),
                         r.valid_from) for r in rows}


def _apply(session: Session, changes: Sequence[GridChange], at: dt.datetime, base: dict[str, int],
           *, source: str) -> PublishResult:
    session.execute(text("SET LOCAL jit = off"))   # per-point subqueries: see gis/planning/impact.py
    old = current_versions(session, _touched_codes(changes), lock=True)
    _check_base(changes, old, base)
    problems = []
    for i, c in enumerate(changes):
        if (c.retires and c.code not in old) or (c.old_code is not None and c.old_code not in old):
            gone = c.old_code or c.code
            problems.append(Problem(("changes", i, "old_code" if c.old_code else "code"),
                                    f"grid {gone} is not a current grid", "not_current"))
    if problems:
        raise InputError(problems, title="The grid changes cannot be published")
    late = sorted(code for code, o in old.items() if o.valid_from >= at)
    if late:
        raise Conflict(f"grids {', '.join(late)} have versions from {at.isoformat()} or later", {"conflicts": late})

    result = PublishResult(publish_id=0, status="applied", effective_at=at)
    closing: list[str] = []
    new_rows: list[GridChange] = []
    for c in changes:
        if c.retires:
            result.retired.append(c.code)
            closing.append(c.code)
            continue
        if c.old_code is not None:
            result.recoded[c.old_code] = c.code
            closing.append(c.old_code)
        if c.code in old:
            result.replaced.append(c.code)
            closing.append(c.code)
        elif c.old_code is None:
            result.created.append(c.code)
        new_rows.append(c)
    result.inverse = _inverse(changes, old)

    closed_ids = [old[code].id for code in closing]
    session.execute(text("UPDATE grid SET valid_to = :at WHERE id = ANY(:ids)"), {"at": at, "ids": closed_ids})
    new_ids: list[int] = []
    if new_rows:
        geoms = [c.multipolygon() for c in new_rows]
        new_ids = list(session.execute(
            text(
                "INSERT INTO grid (code, name, level, parent_code, geom, valid_from, source) "
                "SELECT u.c, u.n, u.l, u.p, ST_SetSRID(ST_GeomFromWKB(u.w), 4326), :at, :src "
                "FROM unnest(CAST(:codes AS text[]), CAST(:names AS text[]), CAST(:levels AS smallint[]), "
                "CAST(:parents AS text[]), CAST(:wkbs AS bytea[])) AS u(c, n, l, p, w) RETURNING id"
            ),
            {"at": at, "src": source, "codes": [c.code for c in new_rows], "names": [c.name for c in new_rows],
             "levels": [c.level for c in new_rows], "parents": [c.parent_code for c in new_rows],
             "wkbs": [shapely.to_wkb(g) for g in geoms]},
        ).scalars())

    successors, splits = _successors(changes, old)
    result.successors = successors
    _follow(session, result, successors, splits, old)
    _place_open_incidents(session, result, closed_ids + new_ids, gone=sorted(set(closing) - {
        c.code for c in new_rows}), replaced=result.replaced)
    _check_hierarchy(session)
    return result


def _check_base(changes: Sequence[GridChange], old: dict[str, _Old], base: dict[str, int]) -> None:
    conflicts = set()
    for c in changes:
        for code in filter(None, (c.code, c.old_code)):
            drafted = base.get(code)
            current = old[code].id if code in old else None
            if drafted is not None and int(drafted) != current:
                conflicts.add(code)
            elif drafted is None and current is not None:
                conflicts.add(code)   # created since the plan was drafted
    if conflicts:
        codes = sorted(conflicts)
        raise Conflict(f"the grids {', '.join(codes)} changed since the plan was drafted", {"conflicts": codes})


def _inverse(changes: Sequence[GridChange], old: dict[str, _Old]) -> list[GridChange]:
    out = []
    for c in changes:
        if c.old_code is not None:
            o = old[c.old_code]
            out.append(GridChange(o.code, o.level, o.name, o.parent_code, o.geom, old_code=c.code))
            if c.code in old:   # the new code existed too (a swap): give its old version back
                p = old[c.code]
                out.append(GridChange(p.code, p.level, p.name, p.parent_code, p.geom))
        elif c.code in old:
            o = old[c.code]
            out.append(GridChange(o.code, o.level, o.name, o.parent_code, o.geom))
        else:
            out.append(GridChange(c.code, c.level, c.name, c.parent_code, None))
    return out


def _successors(changes: Sequence[GridChange], old: dict[str, _Old]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """For each grid that goes (retired or recoded): the grid its people follow to; and the grids
    split into several of which at least one is new ({old code: [grids that took a share]})."""
    new = [c for c in changes if not c.retires]
    tree = shapely.STRtree([c.multipolygon() for c in new])
    successors: dict[str, str] = {}
    splits: dict[str, list[str]] = {}
    recoded = {c.old_code: c.code for c in new if c.old_code}
    for code, o in old.items():
        area = o.geom.area
        shares = []
        for j in tree.query(o.geom):
            c = new[int(j)]
            if c.level != o.level:
                continue
            share = shapely.intersection(o.geom, c.multipolygon()).area / area if area > 0 else 0.0
            if share >= SPLIT_SHARE:
                shares.append((share, c.code))
        shares.sort(key=lambda s: (-s[0], s[1]))
        kept = any(c.code == code for c in new)
        if code in recoded:
            successors[code] = recoded[code]
        elif not kept and shares:
            successors[code] = shares[0][1]
        takers = [s[1] for s in shares]
        fresh = [t for t in takers if t not in old and t not in recoded.values()]
        if len(takers) >= 2 and fresh:
            splits[code] = takers
    return successors, splits


def _follow(session: Session, result: PublishResult, successors: dict[str, str], splits: dict[str, list[str]],
            old: dict[str, _Old]) -> None:
    """Staff and account scopes of the grids that went move to their successors; a grid that
    goes with staff but nowhere to go is refused; split grids are listed for a decision."""
    gone = {c for c in result.retired} | set(result.recoded)
    orphaned = sorted(c for c in gone if c not in successors)
    if orphaned:
        stranded = session.execute(
            text("SELECT grid_code, count(*) AS n FROM staff WHERE grid_code = ANY(:c) GROUP BY grid_code"),
            {"c": orphaned},
        ).all()
        if stranded:
            raise InputError([Problem(("changes", r.grid_code), f"grid {r.grid_code} is retired but {r.n} staff serve "
                                      "it and no new grid of its level takes its area", "staff_stranded")
                              for r in stranded], title="The grid changes cannot be published")
    moves = {c: successors[c] for c in gone if c in successors}
    if moves:
        # Their tenures change on the plan's effective day (Beijing), even when it is applied late.
        set_effective_date(session, result.effective_at.astimezone(clock.BEIJING).date())
        rows = session.execute(
            text(
                "UPDATE staff s SET grid_code = m.new FROM unnest(CAST(:olds AS text[]), CAST(:news AS text[])) "
                "AS m(old, new) WHERE s.grid_code = m.old RETURNING s.id, s.name, s.role, m.old, m.new"
            ),
            {"olds": list(moves), "news": list(moves.values())},
        ).all()
        set_effective_date(session, None)
        result.staff_moved = [{"staff_id": r.id, "name": r.name, "role": r.role, "from": r.old, "to": r.new}
                              for r in sorted(rows, key=lambda r: r.id)]
    for table, kind in (("app_user", "user"), ("api_token", "token")):
        label = "username" if table == "app_user" else "name"
        rows = session.execute(
            text(f"SELECT id, {label} AS label, scope_codes FROM {table} WHERE scope_codes && CAST(:c AS varchar[])"),
            {"c": sorted(moves)},
        ).all() if moves else []
        for r in rows:
            scope = list(dict.fromkeys(moves.get(c, c) for c in r.scope_codes))
            session.execute(text(f"UPDATE {table} SET scope_codes = :s WHERE id = :id"), {"s": scope, "id": r.id})
            result.scopes_moved.append({"kind": kind, "id": r.id, "label": r.label, "from": list(r.scope_codes),
                                        "to": scope})
    for code, takers in sorted(splits.items()):
        now_code = moves.get(code, code)
        staff = session.execute(
            text("SELECT id, name, role FROM staff WHERE grid_code = :c ORDER BY id"), {"c": now_code}).all()
        users = session.execute(
            text("SELECT id, username FROM app_user WHERE :c = ANY(scope_codes) ORDER BY id"), {"c": now_code}).all()
        result.decisions.append({
            "grid": code, "now_in": now_code, "split_into": takers,
            "staff": [{"staff_id": s.id, "name": s.name, "role": s.role} for s in staff],
            "accounts": [{"user_id": u.id, "username": u.username} for u in users],
        })


def _place_open_incidents(session: Session, result: PublishResult, version_ids: list[int], *, gone: list[str],
                          replaced: list[str]) -> None:
    """Open incidents whose point lies in a closed or new version, or whose grid went or got a new
    version, placed again by the point → grid rule on the grids as they now are."""
    from gis.grids.locate import hierarchy_for, path_to_town
    from gis.incidents.routing import assignees_select

    rows = session.execute(
        text(
            """
            WITH cand AS (
                SELECT i.id FROM grid g JOIN incident i ON i.geom && g.geom AND ST_Intersects(g.geom, i.geom)
                WHERE g.id = ANY(:ids) AND i.state <> 'closed'
                UNION
                SELECT i.id FROM incident i WHERE i.state <> 'closed' AND (
                    i.group_code = ANY(:gone_or_new) OR i.village_code = ANY(:gone)
                    OR i.area_code = ANY(:gone) OR i.town_code = ANY(:gone))
            )
            SELECT i.id, i.group_code, i.village_code, i.area_code, i.town_code, i.grid_version_id,
                   i.on_boundary, i.outside_distance_m, at.code AS hit, at.on_boundary AS edge,
                   n.code AS nearest, n.distance_m
            FROM cand JOIN incident i ON i.id = cand.id
            LEFT JOIN LATERAL grid_at(i.geom) at ON true
            LEFT JOIN LATERAL (
                SELECT g.code, ST_Distance(g.geom::geography, i.geom::geography) AS distance_m
                FROM grid g WHERE at.code IS NULL AND g.valid_to IS NULL AND g.level = 4
                ORDER BY g.geom <-> i.geom LIMIT 1
            ) n ON true
            """
        ),
        {"ids": version_ids, "gone": gone, "gone_or_new": gone + replaced},
    ).all()
    result.incidents_checked = len(rows)
    if not rows:
        return
    deepest = [r.hit or r.nearest for r in rows]
    hierarchy = hierarchy_for(session, [c for c in deepest if c])
    current = _current_ids(session, {c for c in deepest if c})
    updates = []
    for r, code in zip(rows, deepest, strict=True):
        if code is None:
            continue  # no group grid left at all: nothing to place it in (the hierarchy check refuses that)
        path = {level: ref.code for level, ref in path_to_town(code, hierarchy).items()}
        new = (code, path.get(3), path.get(2), path.get(1), current[code], bool(r.edge) if r.hit else False,
               None if r.hit else float(r.distance_m))
        have = (r.group_code, r.village_code, r.area_code, r.town_code, r.grid_version_id, r.on_boundary,
                r.outside_distance_m)
        if new[:6] != have[:6] or (new[6] is None) != (have[6] is None):
            updates.append((r.id, *new, new[:4] != have[:4]))
    if not updates:
        return
    session.execute(
        text(
            """
            UPDATE incident i SET group_code = u.g4, village_code = u.g3, area_code = u.g2, town_code = u.g1,
                   grid_version_id = u.ver, on_boundary = u.edge, outside_distance_m = u.out
            FROM unnest(CAST(:ids AS bigint[]), CAST(:g4 AS text[]), CAST(:g3 AS text[]), CAST(:g2 AS text[]),
                        CAST(:g1 AS text[]), CAST(:ver AS bigint[]), CAST(:edge AS boolean[]),
                        CAST(:out AS float8[])) AS u(id, g4, g3, g2, g1, ver, edge, out)
            WHERE i.id = u.id
            """
        ),
        {"ids": [u[0] for u in updates], "g4": [u[1] for u in updates], "g3": [u[2] for u in updates],
         "g2": [u[3] for u in updates], "g1": [u[4] for u in updates], "ver": [u[5] for u in updates],
         "edge": [u[6] for u in updates], "out": [u[7] for u in updates]},
    )
    moved = [u[0] for u in updates if u[8]]
    result.incidents_moved = len(moved)
    if moved:
        session.execute(text("DELETE FROM incident_assignee WHERE incident_id = ANY(:ids)"), {"ids": moved})
        session.execute(
            text("INSERT INTO incident_assignee (incident_id, staff_id, duty) "
                 + assignees_select("i.id", {4: "i.group_code", 3: "i.village_code"}, "incident i")
                 + " WHERE i.id = ANY(:ids)"),
            {"ids": moved},
        )


def _check_hierarchy(session: Session) -> None:
    """Run the deferred hierarchy checks now, so that a broken hierarchy is the caller's 422 and
    not a failed commit. Called inside the caller's savepoint, which is rolled back on failure
    (no savepoint of its own: PostgreSQL restores SET CONSTRAINTS per subtransaction)."""
    try:
        session.execute(text(f"SET CONSTRAINTS {_DEFERRED} IMMEDIATE"))
    except DBAPIError as e:
        message = str(e.orig or e).splitlines()[0]
        raise InputError(Problem(("changes",), message, "hierarchy"),
                         title="The grid changes cannot be published") from None
    session.execute(text(f"SET CONSTRAINTS {_DEFERRED} DEFERRED"))


_DEFERRED = "grid_hierarchy, staff_grid"


def _rollback(savepoint: Any, session: Session) -> None:
    """Roll back to the savepoint and leave the hierarchy checks deferred, as a transaction starts."""
    savepoint.rollback()
    session.execute(text(f"SET CONSTRAINTS {_DEFERRED} DEFERRED"))


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


def _actor_name(ctx: Context) -> str | None:
    return ctx.principal.username if ctx.principal else ctx.actor


def _audit_counts(result: PublishResult) -> dict[str, Any]:
    return {"created": len(result.created), "replaced": len(result.replaced), "retired": len(result.retired),
            "recoded": len(result.recoded), "incidents_moved": result.incidents_moved,
            "staff_moved": len(result.staff_moved), "scopes_moved": len(result.scopes_moved),
            "decisions": len(result.decisions)}
