"""Per-grid flood risk: households and people at risk in each grid at each flood stage.

For the stages (default 0.5, 1, 2 and 3 m above the channel) the terrain scenario's stored extent
is taken (gis.flood.extents.stored_scenario) and the households inside it are counted per group
grid with the finder's query, then rolled up to villages, areas and the town. A grid's risk
class is the lowest stage that reaches any of its households (高 at the lowest stage, 较高, 中, 低, 无 when none does).
Counts only: no personal field leaves this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.context import Context
from gis.errors import InputError, Problem
from gis.flood.finder import household_ids_with_grids

DEFAULT_STAGES = (0.5, 1.0, 2.0, 3.0)
RISK_CLASS_NAMES = ("高", "较高", "中", "低")
NO_RISK = "无"
COUNTED = ("households", "residents", "elderly", "children", "disabled", "pregnant", "bedridden")


def parse_stages(value: str | None) -> tuple[float, ...]:
    """1 to 8 comma-separated stages, each in the bounded set of gis.flood.extents."""
    from gis.flood.stages import check_stage

    if not value:
        return DEFAULT_STAGES
    parts = [v for v in value.split(",") if v.strip()]
    if not parts or len(parts) > 8:
        raise InputError(Problem(("query", "stages"),
                                 "1 to 8 comma-separated stages in metres, e.g. 0.5,1,2,3"))
    return tuple(sorted({check_stage(v.strip(), "fluvial", ("query", "stages")) for v in parts}))


def counts_per_group(session: Session, extent: Any) -> dict[str, dict[str, int]]:
    """Households, residents and vulnerable members inside `extent`, per group grid code."""
    hits = household_ids_with_grids(session, extent)
    rows = session.execute(
        text("""
            SELECT hit.code, count(*) AS households, sum(h.residents) AS residents,
                   sum(h.elderly) AS elderly, sum(h.children) AS children, sum(h.disabled) AS disabled,
                   sum(h.pregnant) AS pregnant, sum(h.bedridden) AS bedridden
            FROM unnest(CAST(:ids AS bigint[]), CAST(:codes AS text[])) AS hit(id, code)
            JOIN household h ON h.id = hit.id
            GROUP BY hit.code
        """),
        {"ids": [i for i, _ in hits], "codes": [c for _, c in hits]},
    ).mappings()
    return {r["code"]: {k: int(r[k]) for k in COUNTED} for r in rows if r["code"] is not None}


def _ancestors(session: Session) -> tuple[dict[str, str | None], dict[str, tuple[str, int]]]:
    parent, info = {}, {}
    for code, name, level, parent_code in session.execute(
        text("SELECT code, name, level, parent_code FROM grid WHERE valid_to IS NULL")
    ):
        parent[code] = parent_code
        info[code] = (name, int(level))
    return parent, info


def flood_risk(session: Session, level: int = 4, stages: Sequence[float] = DEFAULT_STAGES,
               extent_for_stage: Callable[[Session, float], Any] | None = None,
               ctx: Context | None = None) -> dict[str, Any]:
    """Risk per grid of `level` (1-4) for each stage; every grid of that level is listed (counts
    only). With `ctx`, the read is audited."""
    if level not in (1, 2, 3, 4):
        raise InputError(Problem(("query", "level"), "a grid level from 1 (town) to 4 (group)"))
    if extent_for_stage is None:
        from gis.flood.stages import stored_scenario

        # Stored stages only: a GET must not compute one (StageNotComputed says how to).
        def extent_for_stage(s: Session, stage: float) -> Any:
            return stored_scenario(s, stage, loc=("query", "stages"))
    stages = tuple(sorted(stages))
    parent, info = _ancestors(session)

    def up(start: str) -> str | None:
        code: str | None = start
        while code is not None and info.get(code, (None, 0))[1] > level:
            code = parent.get(code)
        return code

    rows: dict[str, dict[str, Any]] = {code: {"code": code, "name": name, "level": lvl, "stages": {}}
            for code, (name, lvl) in sorted(info.items()) if lvl == level}
    totals = []
    for stage in stages:
        ext = extent_for_stage(session, stage)
        per_group = counts_per_group(session, ext.geom)
        key = f"{stage:g}"
        for r in rows.values():
            r["stages"][key] = dict.fromkeys(COUNTED, 0)
        for group, counts in per_group.items():
            target = up(group)
            if target in rows:
                acc = rows[target]["stages"][key]
                for k in COUNTED:
                    acc[k] += counts[k]
        totals.append({"stage_m": stage, "extent_id": getattr(ext, "id", None),
                       **{k: sum(c[k] for c in per_group.values()) for k in COUNTED}})
    for r in rows.values():
        first = next((i for i, s in enumerate(stages) if r["stages"][f"{s:g}"]["households"] > 0), None)
        r["first_stage_m"] = stages[first] if first is not None else None
        r["risk_class"] = RISK_CLASS_NAMES[min(first, len(RISK_CLASS_NAMES) - 1)] if first is not None else NO_RISK
    if ctx is not None:
        ctx.audit(session, "read", resource="flood_risk",
                  detail={"endpoint": "flood_risk", "level": level, "stages": list(stages)})
    return {"level": level, "stages": list(stages), "totals": totals, "grids": list(rows.values())}
