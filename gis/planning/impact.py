"""Impact preview: who and what would move from which grid to which if grid changes were published.

The proposed grids go into a temporary table; for every household and open incident in the area
the changes touch (the current outlines of the touched codes and the proposed ones), the point →
grid rule of grid_at (deepest level, then smallest code) is evaluated twice: on the current grids,
and on the proposed set (current grids minus the touched codes, plus the proposed ones). Staff and
account scopes follow as publish would move them (the same successor rule). Workload per grid
member before and after is counted for the grids that lose or gain anything. The cost follows the
touched grids, never the whole town.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.planning.changes import GridChange, check_changes
from gis.spreadsheet import Table

# Staff counted as a grid's members for the workload (households, residents, open incidents per member).
MEMBER_ROLES = ("grid_member",)

_PROPOSED_DDL = """
CREATE TEMP TABLE plan_proposed (
    code varchar(15) PRIMARY KEY, level smallint NOT NULL, name text, parent_code varchar(15),
    geom geometry(MultiPolygon, 4326) NOT NULL
) ON COMMIT DROP
"""

# grid_at's rule (deepest level, then smallest code) restricted to the levels the plan changes
# (:lv and deeper): levels above are the same before and after, so a point that no grid of those
# levels holds, before nor after, does not move; one held on one side only takes grid_at's full
# answer on the other. The restriction keeps the large town and area outlines out of the tests.
_CURRENT_AT = """
    SELECT g.code FROM grid g WHERE g.valid_to IS NULL AND g.level >= :lv AND ST_Intersects(g.geom, {p})
    ORDER BY g.level DESC, g.code LIMIT 1
"""
_PROPOSED_AT = """
    SELECT x.code FROM (
        SELECT g.code, g.level FROM grid g
        WHERE g.valid_to IS NULL AND g.level >= :lv AND NOT (g.code = ANY(:closing)) AND ST_Intersects(g.geom, {p})
        UNION ALL
        SELECT q.code, q.level FROM plan_proposed q WHERE ST_Intersects(q.geom, {p})
    ) x ORDER BY x.level DESC, x.code LIMIT 1
"""


def _placed(alias: str) -> str:
    """SQL: before and after (restricted codes; NULL on both sides = unchanged) of the points `alias`."""
    full = f"(SELECT a.code FROM grid_at({alias}.geom) a)"
    return f"""
        CASE WHEN b.code IS NULL AND a.code IS NOT NULL THEN {full} ELSE b.code END AS before,
        CASE WHEN a.code IS NULL AND b.code IS NOT NULL THEN {full} ELSE a.code END AS after
        FROM {alias}
        LEFT JOIN LATERAL ({_CURRENT_AT.format(p=alias + ".geom")}) b ON true
        LEFT JOIN LATERAL ({_PROPOSED_AT.format(p=alias + ".geom")}) a ON true
    """


_MOVES = f"""
WITH region AS (
    SELECT geom FROM grid WHERE valid_to IS NULL AND code = ANY(:closing)
    UNION ALL SELECT geom FROM plan_proposed
),
hh AS (SELECT DISTINCT h.id, h.geom, h.residents FROM region r JOIN household h ON ST_Intersects(r.geom, h.geom)),
inc AS (
    SELECT DISTINCT i.id, i.geom FROM region r JOIN incident i ON ST_Intersects(r.geom, i.geom)
    WHERE i.state <> 'closed'
),
placed AS (
    SELECT 'h' AS kind, hh.residents, {_placed("hh")}
    UNION ALL
    SELECT 'i', 0, {_placed("inc")}
)
SELECT before, after, count(*) FILTER (WHERE kind = 'h') AS households,
       coalesce(sum(residents) FILTER (WHERE kind = 'h'), 0) AS residents,
       count(*) FILTER (WHERE kind = 'i') AS open_incidents
FROM placed
GROUP BY before, after ORDER BY before, after
"""

# What each of the given current grids holds now (by the rule, so a house on a shared edge counts
# once; the restriction to :lv and deeper as above — a grid of a level above holds what none below does).
_HOLDS = f"""
SELECT g.code,
       count(t.id) FILTER (WHERE t.kind = 'h') AS households,
       coalesce(sum(t.residents) FILTER (WHERE t.kind = 'h'), 0) AS residents,
       count(t.id) FILTER (WHERE t.kind = 'i') AS open_incidents
FROM grid g
LEFT JOIN LATERAL (
    SELECT 'h' AS kind, h.id, h.residents, h.geom FROM household h WHERE ST_Intersects(g.geom, h.geom)
    UNION ALL
    SELECT 'i', i.id, 0, i.geom FROM incident i WHERE i.state <> 'closed' AND ST_Intersects(g.geom, i.geom)
) t ON (CASE WHEN g.level >= :lv THEN ({_CURRENT_AT.format(p="t.geom")})
             ELSE (SELECT a.code FROM grid_at(t.geom) a) END) = g.code
WHERE g.valid_to IS NULL AND g.code = ANY(:codes)
GROUP BY g.code
"""

IMPACT_TABLE = Table({
    "section": "类别", "from_code": "原网格编码", "to_code": "新网格编码", "households": "户数",
    "residents": "人数", "open_incidents": "未办结事件", "members_before": "网格员数（前）",
    "members_after": "网格员数（后）", "per_member_before": "每名网格员户数（前）",
    "per_member_after": "每名网格员户数（后）", "within": "在目标范围内", "note": "说明",
}, labels={"section": {"move": "迁移", "workload": "工作量", "staff": "人员", "scope": "账号范围",
                       "decision": "待决定"}})


@dataclass
class Impact:
    """The preview: moves (from, to, households, residents, open incidents), staff and account
    scopes that follow, split grids to decide, and workload per member before and after."""

    moves: list[dict[str, Any]] = field(default_factory=list)
    staff: list[dict[str, Any]] = field(default_factory=list)
    scopes: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    workload: list[dict[str, Any]] = field(default_factory=list)
    target: float | None = None
    tolerance: float | None = None

    def as_dict(self) -> dict[str, Any]:
        totals = {k: sum(m[k] for m in self.moves) for k in ("households", "residents", "open_incidents")}
        return {"moves": self.moves, "totals": totals, "staff": self.staff, "scopes": self.scopes,
                "decisions": self.decisions, "workload": self.workload, "target": self.target,
                "tolerance": self.tolerance}

    def rows(self) -> list[dict[str, Any]]:
        """One table for the CSV (IMPACT_TABLE): moves, then staff and scopes, then the workload."""
        out: list[dict[str, Any]] = [{"section": "move", "from_code": m["from"], "to_code": m["to"],
                                      "households": m["households"], "residents": m["residents"],
                                      "open_incidents": m["open_incidents"]} for m in self.moves]
        out += [{"section": "staff", "from_code": s["from"], "to_code": s["to"], "note": s["name"]} for s in self.staff]
        out += [{"section": "scope", "from_code": ",".join(s["from"]), "to_code": ",".join(s["to"]),
                 "note": s["label"]} for s in self.scopes]
        out += [{"section": "decision", "from_code": d["grid"], "to_code": ",".join(d["split_into"]),
                 "note": "、".join(s["name"] for s in d["staff"])} for d in self.decisions]
        for w in self.workload:
            out.append({"section": "workload", "from_code": w["code"], "to_code": w["code"],
                        "households": w["after"]["households"], "residents": w["after"]["residents"],
                        "open_incidents": w["after"]["open_incidents"], "members_before": w["before"]["members"],
                        "members_after": w["after"]["members"], "per_member_before": w["before"]["per_member"],
                        "per_member_after": w["after"]["per_member"], "within": w["within"]})
        return out


def impact(session: Session, changes: Sequence[GridChange], *, target: float | None = None,
           tolerance: float | None = None) -> Impact:
    """The preview of publishing `changes` now. `target`: households per grid member the planner
    aims at; `tolerance`: the allowed relative deviation (0.15 = ±15 %); with both, each grid's
    workload after says whether it lies within. Writes nothing (a temporary table, dropped)."""
    from gis.planning.publish import _successors, _touched_codes, current_versions

    check_changes(changes)
    if not changes:   # a plan with no edits yet: nothing moves
        return Impact(target=target, tolerance=tolerance)
    # The per-point subqueries make PostgreSQL's estimates huge, and JIT-compiling such a plan costs
    # seconds more than running it (as in gis/flood/finder.py): off for this transaction.
    session.execute(text("SET LOCAL jit = off"))
    old = current_versions(session, _touched_codes(changes))
    closing = sorted(old)
    level = min([c.level for c in changes] + [o.level for o in old.values()])
    proposed = [c for c in changes if not c.retires]
    session.execute(text("DROP TABLE IF EXISTS pg_temp.plan_proposed"))
    session.execute(text(_PROPOSED_DDL))
    if proposed:
        session.execute(
            text("INSERT INTO plan_proposed (code, level, name, parent_code, geom) "
                 "SELECT u.c, u.l, u.n, u.p, ST_SetSRID(ST_GeomFromWKB(u.w), 4326) FROM unnest(CAST(:codes AS text[]), "
                 "CAST(:levels AS smallint[]), CAST(:names AS text[]), CAST(:parents AS text[]), "
                 "CAST(:wkbs AS bytea[])) AS u(c, l, n, p, w)"),
            {"codes": [c.code for c in proposed], "levels": [c.level for c in proposed],
             "names": [c.name for c in proposed], "parents": [c.parent_code for c in proposed],
             "wkbs": [shapely.to_wkb(c.multipolygon()) for c in proposed]},
        )
        session.execute(text("CREATE INDEX ON plan_proposed USING gist (geom)"))
        session.execute(text("ANALYZE plan_proposed"))
    result = Impact(target=target, tolerance=tolerance)
    pairs = [{"from": r.before, "to": r.after, "households": int(r.households), "residents": int(r.residents),
              "open_incidents": int(r.open_incidents)}
             for r in session.execute(text(_MOVES), {"closing": closing, "lv": level})]
    result.moves = [p for p in pairs if p["from"] != p["to"]]
    # What a touched grid holds now is all in the area read (its whole outline is): summed from the pairs.
    held: dict[str, dict[str, Any]] = {}
    for p in pairs:
        if p["from"] in old:
            into = held.setdefault(p["from"], {"households": 0, "residents": 0, "open_incidents": 0})
            for k in into:
                into[k] += p[k]
    session.execute(text("DROP TABLE pg_temp.plan_proposed"))

    successors, splits = _successors(changes, old)
    gone = {c.code for c in changes if c.retires} | {c.old_code for c in changes if c.old_code}
    follow = {code: successors[code] for code in gone if code in successors}
    if follow:
        result.staff = [{"staff_id": r.id, "name": r.name, "role": r.role, "from": r.grid_code,
                         "to": follow[r.grid_code]} for r in session.execute(
            text("SELECT id, name, role, grid_code FROM staff WHERE grid_code = ANY(:c) ORDER BY id"),
            {"c": sorted(follow)})]
        for table, kind, label in (("app_user", "user", "username"), ("api_token", "token", "name")):
            for r in session.execute(text(f"SELECT id, {label} AS label, scope_codes FROM {table} "
                                          "WHERE scope_codes && CAST(:c AS varchar[]) ORDER BY id"),
                                     {"c": sorted(follow)}):
                result.scopes.append({"kind": kind, "id": r.id, "label": r.label, "from": list(r.scope_codes),
                                      "to": list(dict.fromkeys(follow.get(c, c) for c in r.scope_codes))})
    for code, takers in sorted(splits.items()):
        crew = session.execute(text("SELECT id, name, role FROM staff WHERE grid_code = :c ORDER BY id"),
                               {"c": code}).all()
        result.decisions.append({"grid": code, "split_into": takers,
                                 "staff": [{"staff_id": s.id, "name": s.name, "role": s.role} for s in crew]})
    result.workload = _workload(session, changes, result, follow, target, tolerance, level, held)
    return result


def _workload(session: Session, changes: Sequence[GridChange], result: Impact, follow: dict[str, str],
              target: float | None, tolerance: float | None, level: int,
              held: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    codes = sorted({c for m in result.moves for c in (m["from"], m["to"]) if c}
                   | {c.code for c in changes} | {c.old_code for c in changes if c.old_code})
    others = [c for c in codes if c not in held]   # untouched grids that gain (a lower level's fallback)
    holds = {r.code: {"households": int(r.households), "residents": int(r.residents),
                      "open_incidents": int(r.open_incidents)}
             for r in session.execute(text(_HOLDS), {"codes": others, "lv": level})} if others else {}
    holds.update(held)
    members: dict[str, int] = dict(session.execute(
        text("SELECT grid_code, count(*) FROM staff WHERE grid_code = ANY(:c) AND role = ANY(:roles) GROUP BY 1"),
        {"c": codes, "roles": list(MEMBER_ROLES)}).all())
    names = {c.code: c.name for c in changes}
    gone = {c.code for c in changes if c.retires} | {c.old_code for c in changes if c.old_code}
    out = []
    for code in codes:
        before: dict[str, Any] = dict(holds.get(code, {"households": 0, "residents": 0, "open_incidents": 0}))
        after: dict[str, Any] = dict(before)
        for m in result.moves:
            sign = (m["to"] == code) - (m["from"] == code)
            for k in ("households", "residents", "open_incidents"):
                after[k] += sign * m[k]
        m_before = int(members.get(code, 0))
        inherited = [int(members.get(o, 0)) for o, n in follow.items() if n == code]
        m_after = 0 if code in gone else m_before + sum(inherited)
        before.update(members=m_before, per_member=_per(before["households"], m_before))
        after.update(members=m_after, per_member=_per(after["households"], m_after))
        within = None
        if target and tolerance is not None and after["per_member"] is not None and code not in gone:
            within = abs(after["per_member"] - target) <= tolerance * target
        out.append({"code": code, "name": names.get(code), "gone": code in gone, "before": before, "after": after,
                    "within": within})
    return out


def _per(n: int, members: int) -> float | None:
    return round(n / members, 2) if members else None
