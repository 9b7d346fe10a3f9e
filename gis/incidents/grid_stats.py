"""Weekly-meeting numbers (民情分析会) per grid: counts by state and category, median hours per
stage, on-time rate of finished stages, and satisfaction at follow-up."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.auth.principal import Principal
from gis.incidents.categories import STAGE_HOURS
from gis.incidents.service import scope_condition

LEVEL_COLUMN = {1: "town_code", 2: "area_code", 3: "village_code", 4: "group_code"}

# Stage allowances as a SQL VALUES list built from our own table (no client text).
_ALLOWANCE = ", ".join(
    f"('{cat.value}', '{stage}', {hours})" for cat, stages in STAGE_HOURS.items() for stage, hours in stages.items()
)


def grid_stats(
    session: Session,
    principal: Principal,
    level: int,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    col = LEVEL_COLUMN[level]
    params = {"scope": list(principal.scope_codes), "since": since, "until": until}
    window = ("(CAST(:since AS timestamptz) IS NULL OR i.occurred_at >= :since) AND "
              "(CAST(:until AS timestamptz) IS NULL OR i.occurred_at < :until)")
    cond = f"{scope_condition(principal)} AND {window}"   # per grid: their grids only
    base = session.execute(text(
        f"SELECT i.{col} AS code, count(*) AS total FROM incident i WHERE {cond} GROUP BY 1 ORDER BY 1"
    ), params).mappings().all()
    by_state = _grouped(session, col, "state", cond, params)
    by_category = _grouped(session, col, "category", cond, params)
    stages = session.execute(text(f"""
        WITH steps AS (
            SELECT i.{col} AS code, i.category, e.to_state AS stage, e.at,
                   lead(e.at) OVER (PARTITION BY e.incident_id ORDER BY e.id) AS left_at
            FROM incident_event e JOIN incident i ON i.id = e.incident_id
            WHERE {cond}
        ),
        allowance(category, stage, hours) AS (VALUES {_ALLOWANCE})
        SELECT s.code, s.stage,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.left_at - s.at) / 3600) AS median_h,
               avg(CASE WHEN s.left_at - s.at <= make_interval(secs => a.hours * 3600)
                   THEN 1.0 ELSE 0.0 END) AS on_time,
               count(*) AS finished
        FROM steps s JOIN allowance a ON a.category = s.category AND a.stage = s.stage
        WHERE s.left_at IS NOT NULL
        GROUP BY s.code, s.stage
    """), params).mappings().all()
    follow = session.execute(text(f"""
        SELECT i.{col} AS code,
               count(*) FILTER (WHERE e.action = 'satisfied') AS satisfied,
               count(*) FILTER (WHERE e.action = 'not_satisfied') AS not_satisfied
        FROM incident_event e JOIN incident i ON i.id = e.incident_id
        WHERE {cond} AND e.action IN ('satisfied', 'not_satisfied')
        GROUP BY 1
    """), params).mappings().all()
    stage_map: dict[str, dict[str, dict[str, Any]]] = {}
    for r in stages:
        stage_map.setdefault(r["code"], {})[r["stage"]] = {
            "median_hours": round(float(r["median_h"]), 2), "on_time_rate": round(float(r["on_time"]), 3),
            "finished": r["finished"]}
    follow_map = {r["code"]: r for r in follow}
    out = []
    for r in base:
        code = r["code"]
        f = follow_map.get(code)
        asked = (f["satisfied"] + f["not_satisfied"]) if f is not None else 0
        finished = stage_map.get(code, {})
        total_finished = sum(s["finished"] for s in finished.values())
        out.append({
            "code": code, "total": r["total"],
            "by_state": by_state.get(code, {}), "by_category": by_category.get(code, {}),
            "stages": finished,
            "on_time_rate": round(sum(s["on_time_rate"] * s["finished"] for s in finished.values()) / total_finished, 3)
            if total_finished else None,
            "satisfaction_rate": round(f["satisfied"] / asked, 3) if f is not None and asked else None,
            "follow_ups": asked,
        })
    return out


def _grouped(
    session: Session, col: str, field: str, cond: str, params: dict[str, Any]
) -> dict[str, dict[str, int]]:
    rows = session.execute(text(
        f"SELECT i.{col} AS code, i.{field} AS key, count(*) AS n FROM incident i WHERE {cond} GROUP BY 1, 2"
    ), params)
    out: dict[str, dict[str, int]] = {}
    for code, key, n in rows:
        out.setdefault(code, {})[key] = n
    return out
