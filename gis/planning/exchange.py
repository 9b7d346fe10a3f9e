"""A plan in and out of files: the equivalency file (unit -> grid code, the CSV planners already keep)
imported into a plan and exported from it, and the plan's boundaries as GeoJSON or GeoPackage.

An equivalency file has one row per unit: 单元编号 (unit id: a household's 户号, a natural village's id,
a group grid's code), 网格编码 (the grid it belongs to), and optionally 单元类型 (户 / 自然村 / 网格;
households when absent). Importing it paints every unit not yet in its grid into that grid; a bad row
is named by its row and column and nothing is changed.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
from sqlalchemy import text

from gis.errors import InputError, Problem
from gis.planning import edits
from gis.planning.plans import Draft, multipolygon
from gis.spreadsheet import Table, csv_text_read

EQUIVALENCY = Table(
    headers={"unit_kind": "单元类型", "unit_id": "单元编号", "grid_code": "网格编码"},
    labels={"unit_kind": {"household": "户", "natural_village": "自然村", "grid": "网格"}},
)
_COLUMNS = {
    "unit_kind": ("单元类型", "unit_kind", "kind", "类型"),
    "unit_id": ("单元编号", "unit_id", "unit", "户号", "household_no", "编号"),
    "grid_code": ("网格编码", "grid_code", "code", "网格代码", "district"),
}
_KINDS = {"户": "household", "household": "household", "自然村": "natural_village",
          "natural_village": "natural_village", "网格": "grid", "grid": "grid", "": "household"}
MAX_ROWS = 200_000


def equivalency_rows(draft: Draft) -> Iterator[dict[str, Any]]:
    """Every household inside the plan's group grids, with the grid that holds it in the plan (on a
    shared edge, the smaller code: the rule of the live grids)."""
    rows = draft.session.execute(text(
        "SELECT DISTINCT ON (h.id) h.household_no, g.code FROM household h "
        "JOIN plan_grid g ON g.plan_id = :p AND g.level = 4 AND NOT g.retired AND ST_Covers(g.geom, h.geom) "
        "ORDER BY h.id, g.code"), {"p": draft.plan.id}).all()
    for r in sorted(rows, key=lambda r: (r.code, r.household_no)):
        yield {"unit_kind": "household", "unit_id": r.household_no, "grid_code": r.code}


def _decode(data: bytes, name: str) -> str:
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise InputError(Problem(("file", name), "the file is neither UTF-8 nor GBK/GB18030 text", "bad_encoding"))


def read_equivalency(data: bytes, name: str) -> list[tuple[int, str, str, str]]:
    """(row number as Excel shows it, unit kind, unit id, grid code) for each row of the file."""
    text_ = _decode(data, name)
    reader = csv.reader(io.StringIO(text_))
    header = next(reader, None)
    if not header:
        raise InputError(Problem(("file", name), "the file is empty", "empty_file"))
    cols: dict[str, int] = {}
    for i, h in enumerate(header):
        key = h.strip().lower()
        for field, names in _COLUMNS.items():
            if key in names and field not in cols:
                cols[field] = i
    missing = [f for f in ("unit_id", "grid_code") if f not in cols]
    if missing:
        raise InputError([Problem(("file", name, 1, _COLUMNS[f][0]), f"no column {_COLUMNS[f][0]} ({f}) in the "
                                  "header", "missing_column") for f in missing])
    out: list[tuple[int, str, str, str]] = []
    problems: list[Problem] = []
    for n, row in enumerate(reader, start=2):
        if not any(c.strip() for c in row):
            continue
        if len(out) >= MAX_ROWS:
            raise InputError(Problem(("file", name, n), f"at most {MAX_ROWS} rows", "too_many_rows"))

        def cell(field: str, row: list[str] = row) -> str:
            i = cols.get(field)
            return csv_text_read(row[i]).strip() if i is not None and i < len(row) else ""

        kind = _KINDS.get(cell("unit_kind").lower())
        if kind is None:
            problems.append(Problem(("file", name, n, header[cols["unit_kind"]]),
                                    f"单元类型 is 户, 自然村 or 网格, not {cell('unit_kind')!r}", "bad_unit"))
            continue
        unit, code = cell("unit_id"), cell("grid_code")
        if not unit:
            problems.append(Problem(("file", name, n, header[cols["unit_id"]]), "the unit id is empty", "missing"))
        if not (len(code) == 15 and code.isdigit()):
            problems.append(Problem(("file", name, n, header[cols["grid_code"]]),
                                    f"a grid code has 15 digits, got {code!r}", "bad_code"))
        if unit and len(code) == 15 and code.isdigit():
            out.append((n, kind, unit, code))
    if problems:
        raise InputError(problems[:200])
    return out


def import_equivalency(draft: Draft, data: bytes, name: str) -> dict[str, Any]:
    """Paint every unit of the file into its grid (units already there stay); all or nothing."""
    rows = read_equivalency(data, name)
    header = {"unit_id": EQUIVALENCY.headers["unit_id"], "grid_code": EQUIVALENCY.headers["grid_code"]}
    problems: list[Problem] = []
    targets: dict[str, Any] = {}
    for n, _, _, code in rows:
        if code not in targets:
            g = draft.find(code)
            targets[code] = g
            if g is None:
                problems.append(Problem(("file", name, n, header["grid_code"]),
                                        f"grid {code} is neither a current grid nor in this plan", "unknown_grid"))
    moved_units = 0
    by_kind: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for n, kind, unit, code in rows:
        by_kind.setdefault((kind, code), []).append((n, unit))
    plan_work: list[tuple[str, str, list[tuple[int, str]]]] = []
    for (kind, code), units in sorted(by_kind.items()):
        g = targets.get(code)
        if g is None:
            continue
        want = 4 if kind != "grid" else None
        if want is not None and g.level != want:
            problems += [Problem(("file", name, n, header["grid_code"]), f"households and natural villages go into "
                                 f"a group grid; {code} is level {g.level}", "bad_level") for n, _ in units[:20]]
            continue
        if kind != "grid":
            points, unit_problems = edits.household_points(draft.session, kind, [u for _, u in units])
            for p in unit_problems:
                i = int(p.loc[2])
                problems.append(Problem(("file", name, units[i][0], header["unit_id"]), p.msg, p.type))
        plan_work.append((kind, code, units))
    if problems:
        raise InputError(problems[:200], title="The equivalency file has problems")
    reparented: list[str] = []
    for kind, code, units in plan_work:
        if kind == "grid":
            for n, unit in units:
                g = draft.find(unit)
                if g is None:
                    raise InputError(Problem(("file", name, n, header["unit_id"]), f"grid {unit} is not in the plan "
                                             "or among the current grids", "unknown_unit"))
                if g.parent_code != code:
                    reparented += edits.reassign_units(draft, "grid", [unit], code)["moved"]
                    moved_units += 1
            continue
        points, _ = edits.household_points(draft.session, kind, [u for _, u in units])
        moved = edits.move_households(draft, points, code)
        moved_units += len(units) if moved else 0
    return {"rows": len(rows), "groups_moved_into": len({c for _, c, _ in plan_work}), "units_moved": moved_units,
            "reparented": reparented}


def boundaries_geojson(features: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features}


def boundaries_gpkg(draft: Draft) -> bytes:
    """The plan's grids (its proposed state; retired ones listed without geometry) as a GeoPackage."""
    rows = sorted(draft.rows.values(), key=lambda g: (g.level, g.code))
    frame = gpd.GeoDataFrame(
        {"code": [r.code for r in rows], "name": [r.name for r in rows], "level": [r.level for r in rows],
         "parent_code": [r.parent_code for r in rows], "old_code": [r.old_code for r in rows],
         "retired": [r.retired for r in rows]},
        geometry=gpd.GeoSeries([None if r.retired or r.geom is None else multipolygon(r.geom) for r in rows],
                               crs="EPSG:4326"),
        crs="EPSG:4326")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plan.gpkg"
        frame.to_file(path, driver="GPKG", layer="plan_grids", engine="pyogrio")
        return path.read_bytes()
