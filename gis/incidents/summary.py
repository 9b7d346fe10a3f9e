"""The numbers that follow the command center's view: incidents inside a bbox, counted in SQL.

One statement with GROUPING SETS over the incidents the caller may see (`IncidentFilter.where`, the
one incident predicate) that match the list filters and lie in the view: totals (open, overdue,
flagged, today's new in Beijing time), by category, by loop state, and per management area and
village the grids with the most incidents in the view (top N, with names).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.auth.principal import Principal
from gis.clock import BEIJING
from gis.codes import LEVEL_NAMES_ZH, GridLevel
from gis.incidents.service import FLAGGED_SQL, IncidentFilter

# Per-level counts: the incident's grid at that level (its stored assignment). Areas and villages: a
# view's group grids would be thousands at city scale, and grouping by them costs the statement a sort.
LEVEL_COLUMNS = {GridLevel.AREA: "area_code", GridLevel.VILLAGE: "village_code"}

_SUMMARY = """
    SELECT grouping(i.category) AS g_category, grouping(i.state) AS g_state,
           grouping(i.area_code) AS g_area, grouping(i.village_code) AS g_village,
           i.category, i.state, i.area_code, i.village_code,
           count(*) AS n,
           count(*) FILTER (WHERE i.state <> 'closed') AS open,
           count(*) FILTER (WHERE i.stage_deadline < :now) AS overdue,
           count(*) FILTER (WHERE {flagged}) AS flagged,
           count(*) FILTER (WHERE i.occurred_at >= :today) AS today_new
    FROM incident i
    WHERE {cond} AND i.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)
    GROUP BY GROUPING SETS ((), (i.category), (i.state), (i.area_code), (i.village_code))
"""


def beijing_midnight(now: dt.datetime) -> dt.datetime:
    """The start of today in Beijing (the township's day), as an aware time."""
    local = now.astimezone(BEIJING)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def view_summary(session: Session, principal: Principal, bbox: tuple[float, float, float, float],
                 filters: IncidentFilter, *, top: int = 10, now: dt.datetime | None = None) -> dict[str, Any]:
    """Counts of the incidents `principal` may see that match `filters` and lie inside `bbox`
    (min_lon, min_lat, max_lon, max_lat)."""
    now = now or dt.datetime.now(dt.UTC)
    cond, params = filters.where(principal, now)
    today = beijing_midnight(now)
    params.update(today=today, x0=bbox[0], y0=bbox[1], x1=bbox[2], y1=bbox[3])
    rows = session.execute(text(_SUMMARY.format(cond=cond, flagged=FLAGGED_SQL)), params).mappings().all()
    out: dict[str, Any] = {"bbox": list(bbox), "as_of": now.isoformat(), "today_from": today.isoformat(),
                           "total": 0, "open": 0, "overdue": 0, "flagged": 0, "today_new": 0,
                           "by_category": {}, "by_state": {}, "by_level": []}
    per_level: dict[GridLevel, list[tuple[str, int]]] = {level: [] for level in LEVEL_COLUMNS}
    for r in rows:
        sets = (r["g_category"], r["g_state"], r["g_area"], r["g_village"])
        if all(sets):   # the grand total
            for key in ("open", "overdue", "flagged", "today_new"):
                out[key] = int(r[key])
            out["total"] = int(r["n"])
        elif not r["g_category"]:
            out["by_category"][r["category"]] = int(r["n"])
        elif not r["g_state"]:
            out["by_state"][r["state"]] = int(r["n"])
        else:
            level = GridLevel.AREA if not r["g_area"] else GridLevel.VILLAGE
            code = r[LEVEL_COLUMNS[level]]
            if code is not None:   # assigned above this level (a vague place): no grid of it to count
                per_level[level].append((code, int(r["n"])))
    tops = {level: sorted(items, key=lambda item: (-item[1], item[0]))[:top] for level, items in per_level.items()}
    codes = [code for items in tops.values() for code, _ in items]
    names: dict[str, str] = dict(session.execute(
        text("SELECT code, name FROM grid WHERE valid_to IS NULL AND code = ANY(:codes)"), {"codes": codes}
    ).all()) if codes else {}
    for level, items in tops.items():
        out["by_level"].append({
            "level": int(level), "level_name": LEVEL_NAMES_ZH[level], "grids": len(per_level[level]),
            "top": [{"code": code, "name": names.get(code, code), "count": n} for code, n in items],
        })
    return out
