"""Batch import of (historical) incidents from CSV, GeoJSON, GeoPackage or Excel, assigned in bulk.

Each row needs: category, description, occurred_at (ISO 8601 with time zone, or a date/time read
in `default_tz`), and lon/lat (with the file's `crs`) — or for spatial files the point geometry.
Optional: dispute_kind, external_id, state (loop stage reached, default visit), reporter_name,
reporter_phone. Rows that fail are reported with their row number (1 = first data row) and
reason; good rows are written in one COPY. Re-running a file adds nothing: a row without an
external_id gets one derived from its content.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.bulk import copy_rows
from gis.crs import parse_crs, to_wgs84
from gis.errors import InputError, Problem
from gis.grids.locate import current_hierarchy, locate_points, path_to_town
from gis.incidents.categories import Category, DisputeKind
from gis.incidents.loop import State

COLUMN_ALIASES = {
    "category": ("category", "类别", "事项类别"),
    "dispute_kind": ("dispute_kind", "纠纷类型"),
    "description": ("description", "描述", "事项描述", "内容"),
    "occurred_at": ("occurred_at", "发生时间", "时间"),
    "lon": ("lon", "lng", "longitude", "经度", "x"),
    "lat": ("lat", "latitude", "纬度", "y"),
    "external_id": ("external_id", "编号", "外部编号"),
    "state": ("state", "环节", "状态"),
    "reporter_name": ("reporter_name", "报告人"),
    "reporter_phone": ("reporter_phone", "报告人电话"),
}
CATEGORY_ZH = {"矛盾纠纷": "dispute", "安全隐患": "safety_hazard", "环境卫生": "environment",
               "民生诉求": "livelihood", "治安": "public_order", "灾害": "disaster", "汛情": "disaster",
               "灾害/汛情": "disaster"}


@dataclass
class BatchReport:
    rows: int = 0
    created: int = 0
    already_present: int = 0
    failed: list[dict] = field(default_factory=list)
    written: bool = True

    def as_dict(self) -> dict:
        return {"rows": self.rows, "created": self.created, "already_present": self.already_present,
                "failed": self.failed, "written": self.written}


def read_incident_file(path: Path, *, max_rows: int) -> pd.DataFrame:
    """Rows of the file with normalised column names; spatial files give lon/lat from their points."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        elif suffix in (".xlsx", ".xlsm"):
            frame = pd.read_excel(path, dtype=str, keep_default_na=False, engine="openpyxl")
        elif suffix in (".geojson", ".json", ".gpkg"):
            import geopandas as gpd

            gdf = gpd.read_file(path, engine="pyogrio")
            if gdf.crs is not None and gdf.crs.to_epsg() not in (4326, 4490):
                gdf = gdf.to_crs(4326)
            frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
            pts = gdf.geometry
            frame["lon"] = [g.x if g is not None and g.geom_type == "Point" else math.nan for g in pts]
            frame["lat"] = [g.y if g is not None and g.geom_type == "Point" else math.nan for g in pts]
            frame = frame.astype(object).where(frame.notna(), "")
        else:
            raise InputError(Problem(("file",), "incident files are .csv, .xlsx, .geojson, .json or .gpkg",
                                     "unsupported_format"))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file, said plainly
        raise InputError(Problem(("file",), f"the file could not be read: {exc}", "unreadable_file")) from None
    if len(frame) > max_rows:
        raise InputError(Problem(("file",), f"{len(frame)} rows; at most {max_rows} per file", "too_many_rows"))
    rename = {}
    lower = {str(c).strip().lower(): c for c in frame.columns}
    for target, names in COLUMN_ALIASES.items():
        for n in names:
            if n.lower() in lower:
                rename[lower[n.lower()]] = target
                break
    frame = frame.rename(columns=rename)
    missing = [c for c in ("category", "description", "occurred_at", "lon", "lat") if c not in frame.columns]
    if missing:
        raise InputError(Problem(("file",), "missing columns: " + ", ".join(missing), "missing_columns"))
    return frame


def _parse_time(value: str, tz: ZoneInfo) -> dt.datetime:
    t = pd.Timestamp(value)
    if pd.isna(t):
        raise ValueError("empty")
    t = t.to_pydatetime()
    return t.replace(tzinfo=tz) if t.tzinfo is None else t


def import_incidents(
    session: Session,
    frame: pd.DataFrame,
    *,
    source: str,
    crs: str | None = None,
    default_tz: str = "Asia/Shanghai",
    outside_tolerance_m: float = 200.0,
    all_or_nothing: bool = False,
    progress: Callable[[int], None] | None = None,
) -> BatchReport:
    report = BatchReport(rows=len(frame))
    tz = ZoneInfo(default_tz)
    system = parse_crs(crs, field=("crs",))
    ok_rows: list[dict] = []

    def fail(i: int, column: str | None, reason: str) -> None:
        report.failed.append({"row": i + 1, "column": column, "reason": reason})

    for i, r in enumerate(frame.to_dict("records")):
        nul = next((k for k, v in r.items() if isinstance(v, str) and "\x00" in v), None)
        if nul is not None:
            # PostgreSQL text cannot hold NUL; say which cell instead of failing the whole file.
            fail(i, str(nul), "contains a NUL character")
            continue
        cat = str(r.get("category", "")).strip()
        cat = CATEGORY_ZH.get(cat, cat)
        if cat not in {c.value for c in Category}:
            fail(i, "category", f"unknown category {cat!r}")
            continue
        kind = str(r.get("dispute_kind") or "").strip() or None
        if kind is not None and (cat != "dispute" or kind not in {k.value for k in DisputeKind}):
            fail(i, "dispute_kind", f"{kind!r} is not a dispute kind of this row")
            continue
        desc = str(r.get("description", "")).strip()
        if not desc:
            fail(i, "description", "empty")
            continue
        try:
            when = _parse_time(str(r.get("occurred_at", "")), tz)
        except (ValueError, TypeError):
            fail(i, "occurred_at", f"not a time: {r.get('occurred_at')!r}")
            continue
        try:
            lon, lat = float(r.get("lon")), float(r.get("lat"))
        except (TypeError, ValueError):
            fail(i, "lon", "lon/lat are not numbers")
            continue
        if not (math.isfinite(lon) and math.isfinite(lat)) or (system.is_lonlat and not (-180 <= lon <= 180 and -90 <= lat <= 90)):
            fail(i, "lon", "lon/lat out of range or not finite")
            continue
        state = str(r.get("state") or "visit").strip()
        if state not in {s.value for s in State}:
            fail(i, "state", f"unknown state {state!r}")
            continue
        ext = str(r.get("external_id") or "").strip() or None
        if ext is None:
            digest = hashlib.sha1(f"{cat}|{kind}|{desc}|{when.isoformat()}|{lon:.7f}|{lat:.7f}".encode()).hexdigest()
            ext = f"import:{digest[:24]}"
        ok_rows.append({"i": i, "category": cat, "dispute_kind": kind, "description": desc, "occurred_at": when,
                        "lon": lon, "lat": lat, "state": state, "external_id": ext,
                        "reporter_name": str(r.get("reporter_name") or "").strip() or None,
                        "reporter_phone": str(r.get("reporter_phone") or "").strip() or None})
    if ok_rows:
        xs, ys = to_wgs84(np.array([o["lon"] for o in ok_rows]), np.array([o["lat"] for o in ok_rows]), system)
        locs = locate_points(session, xs, ys)
        hierarchy = current_hierarchy(session)
        versions = dict(session.execute(text("SELECT code, id FROM grid WHERE valid_to IS NULL")).all())
        placed = []
        for o, x, y, loc in zip(ok_rows, xs, ys, locs, strict=True):
            if loc.inside:
                path, edge, out = loc.path, loc.on_boundary, None
            elif loc.nearest is not None and loc.distance_m <= outside_tolerance_m:
                path, edge, out = path_to_town(loc.nearest.code, hierarchy), False, loc.distance_m
            else:
                dist = f"{loc.distance_m:.0f} m" if loc.distance_m is not None else "far"
                fail(o["i"], "lon", f"outside the town ({dist} from the nearest grid)")
                continue
            o.update(x=float(x), y=float(y), path=path, edge=edge, out=out)
            placed.append(o)
        ok_rows = placed
    report.failed.sort(key=lambda f: f["row"])
    if all_or_nothing and report.failed:
        report.written = False
        return report
    existing = set(session.execute(
        text("SELECT external_id FROM incident WHERE external_id = ANY(:x)"),
        {"x": [o["external_id"] for o in ok_rows]},
    ).scalars())
    seen: set[str] = set()
    fresh = []
    for o in ok_rows:
        if o["external_id"] in existing or o["external_id"] in seen:
            report.already_present += 1
            continue
        seen.add(o["external_id"])
        fresh.append(o)
    if fresh:
        def rows():
            for n, o in enumerate(fresh, 1):
                p = o["path"]
                group = p[max(p)].code
                yield (o["external_id"], o["category"], o["dispute_kind"], o["description"], o["occurred_at"],
                       o["reporter_name"], o["reporter_phone"], f"SRID=4326;POINT({o['x']!r} {o['y']!r})",
                       "coordinates", str(system), group, p[3].code if 3 in p else None,
                       p[2].code if 2 in p else None, p[1].code if 1 in p else None, versions[group],
                       o["edge"], o["out"], o["state"], o["occurred_at"])
                if progress and n % 1000 == 0:
                    progress(1000)

        copy_rows(session, "incident", (
            "external_id", "category", "dispute_kind", "description", "occurred_at", "reporter_name",
            "reporter_phone", "geom", "location_source", "input_crs", "group_code", "village_code",
            "area_code", "town_code", "grid_version_id", "on_boundary", "outside_distance_m", "state",
            "state_entered_at"), rows())
        # History and routing for the new rows, set-based.
        session.execute(text(
            "INSERT INTO incident_event (incident_id, at, actor, action, from_state, to_state, note) "
            "SELECT id, occurred_at, :src, 'import', NULL, state, 'batch import' FROM incident "
            "WHERE external_id = ANY(:x)"), {"src": source, "x": [o["external_id"] for o in fresh]})
        session.execute(text(
            """
            INSERT INTO incident_assignee (incident_id, staff_id, duty)
            SELECT i.id, s.id, CASE s.role WHEN 'grid_leader' THEN 'leader' WHEN 'grid_member' THEN 'member'
                                            ELSE 'supervisor' END
            FROM incident i JOIN staff s
              ON (s.grid_code = i.group_code AND s.role IN ('grid_leader', 'grid_member'))
              OR (s.grid_code = i.village_code AND s.role = 'supervisor')
            WHERE i.external_id = ANY(:x)
            """), {"x": [o["external_id"] for o in fresh]})
    report.created = len(fresh)
    return report
