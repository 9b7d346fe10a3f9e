"""Export of the whole register back to files: a GeoPackage (one layer per kind) or an Excel workbook
(one sheet per kind, Chinese headers, written through gis.spreadsheet.Table).

The sheets' headers are the names the register import (gis.register.households) reads, so a workbook
exported here can be imported again. Layers / sheets: grids (current ones), households, residents (no
geometry), staff, shelters, roads, rivers, natural_villages. Rows are ordered by what they are (household
number, grid code, name …), never by database ids, so exporting the same town from two databases gives the
same file content.

Who gets what: households (and their residents) as `gis.households.access_for` admits them for the principal,
personal fields (head's name, phone, address; residents' names, ID numbers, birth dates) shown where its
`personal` rule holds and masked elsewhere; everything else (grids, staff boards, shelters, roads, rivers,
natural villages) in full. The CLI run by the operator (no principal) exports everything unmasked. Every
export writes one audit row: who, which format, how many rows of each kind, how many households' personal
fields were shown.
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.auth.principal import Principal
from gis.context import Context
from gis.households import access_for
from gis.privacy import mask_record
from gis.spreadsheet import PERSONAL, Table

ExportFormat = Literal["gpkg", "xlsx"]
GPKG_MEDIA_TYPE = "application/geopackage+sqlite3"
STAFF_ROLE_LABELS = {"grid_leader": "网格长", "grid_member": "网格员", "party_household": "党员中心户",
                     "supervisor": "网格督导员"}


@dataclass(frozen=True)
class LayerSpec:
    name: str  # the GeoPackage layer
    sheet: str  # the Excel sheet
    table: Table  # field -> Chinese header (the GeoPackage keeps the field names)
    geometry: str | None  # the GeoPackage geometry type; None: a table without geometry
    sql: str


LAYERS: tuple[LayerSpec, ...] = (
    LayerSpec("grids", "网格", Table({"code": "网格编码", "name": "网格名称", "level": "层级",
                                     "parent_code": "上级网格编码", "valid_from": "生效时间"},
                                    times=frozenset({"valid_from"})), "MultiPolygon", """
        SELECT code, name, level, parent_code, valid_from, ST_AsBinary(geom) AS geom
        FROM grid WHERE valid_to IS NULL ORDER BY level, code"""),
    LayerSpec("households", "住户", Table({
        "household_no": "户号", "head_name": "户主姓名", "phone": "联系电话", "address": "地址",
        "residents": "人数", "elderly": "老人数", "children": "儿童数", "disabled": "残疾人数", "pregnant": "孕妇数",
        "bedridden": "卧床人数", "floors": "房屋层数", "natural_village": "自然村", "grid_code": "网格编码",
        "lon": "经度", "lat": "纬度", "personal_fields": "个人信息"}, labels={"personal_fields": PERSONAL}),
        "Point", """
        SELECT h.id, h.household_no, h.head_name, h.phone, h.address, h.residents, h.elderly, h.children,
               h.disabled, h.pregnant, h.bedridden, h.floors, nv.name AS natural_village,
               hg.group_code AS grid_code, ST_X(h.geom) AS lon, ST_Y(h.geom) AS lat, ({personal}) AS personal_shown,
               ST_AsBinary(h.geom) AS geom
        FROM household h LEFT JOIN natural_village nv ON nv.id = h.natural_village_id
        LEFT JOIN LATERAL household_grid_at(h.geom) hg ON true
        WHERE ({rows}) ORDER BY h.household_no"""),
    LayerSpec("residents", "居民", Table({
        "household_no": "户号", "name": "姓名", "gender": "性别", "birth_date": "出生日期", "id_number": "身份证号",
        "relation_to_head": "与户主关系", "is_disabled": "是否残疾", "is_pregnant": "是否孕妇",
        "is_bedridden": "是否卧床", "personal_fields": "个人信息"}, labels={"personal_fields": PERSONAL}), None, """
        SELECT h.household_no, r.name, r.gender, r.birth_date, r.id_number, r.relation_to_head, r.is_disabled,
               r.is_pregnant, r.is_bedridden, ({personal}) AS personal_shown
        FROM resident r JOIN household h ON h.id = r.household_id
        WHERE ({rows}) ORDER BY h.household_no, r.id_number, r.name, r.birth_date, r.id"""),
    LayerSpec("staff", "网格人员", Table({"name": "姓名", "phone": "联系电话", "role": "职务", "grid_code": "网格编码",
                                         "household_no": "户号"}, labels={"role": STAFF_ROLE_LABELS}), None, """
        SELECT s.name, s.phone, s.role, s.grid_code, h.household_no
        FROM staff s LEFT JOIN household h ON h.id = s.household_id
        ORDER BY s.grid_code, s.role, s.name, s.phone, s.id"""),
    LayerSpec("shelters", "安置点", Table({"name": "名称", "kind": "类型", "capacity": "容量（人）",
                                         "lon": "经度", "lat": "纬度"}), "Point", """
        SELECT name, kind, capacity, ST_X(geom) AS lon, ST_Y(geom) AS lat, ST_AsBinary(geom) AS geom
        FROM shelter ORDER BY name, ST_X(geom), ST_Y(geom)"""),
    LayerSpec("roads", "道路", Table({"name": "名称", "road_class": "等级", "length_m": "长度（米）"}),
              "LineString", """
        SELECT name, road_class, round(ST_Length(geom::geography))::int AS length_m, ST_AsBinary(geom) AS geom
        FROM road ORDER BY name, road_class, ST_AsBinary(geom)"""),
    LayerSpec("rivers", "河流", Table({"name": "名称", "length_m": "长度（米）"}), "LineString", """
        SELECT name, round(ST_Length(geom::geography))::int AS length_m, ST_AsBinary(geom) AS geom
        FROM river ORDER BY name, ST_AsBinary(geom)"""),
    LayerSpec("natural_villages", "自然村", Table({"name": "名称", "village_code": "行政村编码",
                                                  "lon": "经度", "lat": "纬度"}), "Point", """
        SELECT name, village_code, ST_X(geom) AS lon, ST_Y(geom) AS lat, ST_AsBinary(geom) AS geom
        FROM natural_village ORDER BY village_code, name, ST_X(geom)"""),
)
LAYER_NAMES = tuple(layer.name for layer in LAYERS)


@dataclass
class ExportResult:
    fmt: ExportFormat
    rows: dict[str, int] = field(default_factory=dict)  # layer -> rows written
    personal_shown: int = 0  # households whose personal fields the file shows
    personal_masked: int = 0


def _layer_rows(session: Session, spec: LayerSpec, principal: Principal | None,
                result: ExportResult) -> Iterator[dict[str, Any]]:
    """The rows of one layer as the principal may see them (personal fields masked where not allowed)."""
    if principal is None:
        rows_sql, personal_sql, params = "TRUE", "TRUE", {}
    else:
        acc = access_for(principal)
        rows_sql, personal_sql, params = acc.rows, acc.personal, acc.params
    sql = spec.sql.format(rows=rows_sql, personal=personal_sql) if "{rows}" in spec.sql else spec.sql
    for r in session.execute(text(sql), params).mappings().yield_per(5000):
        d = dict(r)
        d.pop("id", None)
        if "personal_shown" in d:
            shown = bool(d.pop("personal_shown"))
            kind = "household" if spec.name == "households" else "resident"
            if isinstance(d.get("birth_date"), dt.date):
                d["birth_date"] = d["birth_date"].isoformat()
            if not shown:
                d = mask_record(d, kind)
            d["personal_fields"] = "shown" if shown else "masked"
            if spec.name == "households":
                if shown:
                    result.personal_shown += 1
                else:
                    result.personal_masked += 1
        yield d


def export_register(
    session: Session,
    ctx: Context,
    principal: Principal | None,
    out: Path,
    fmt: ExportFormat,
) -> ExportResult:
    """Write the register to `out` (a GeoPackage or an xlsx workbook) and audit it in the caller's transaction."""
    result = ExportResult(fmt)
    if fmt == "gpkg":
        _write_gpkg(session, principal, out, result)
    else:
        _write_xlsx(session, principal, out, result)
    ctx.audit(session, "export_register", resource="register",
              detail={"format": fmt, "file": out.name if ctx.method == "CLI" else None, "rows": result.rows,
                      "personal_shown": result.personal_shown, "personal_masked": result.personal_masked})
    return result


def export_bytes(session: Session, ctx: Context, principal: Principal | None,
                 fmt: ExportFormat) -> tuple[bytes, ExportResult]:
    """The export as the bytes of a file (for a download)."""
    with tempfile.TemporaryDirectory(prefix="wangge-export-") as tmp:
        path = Path(tmp) / f"register.{fmt}"
        result = export_register(session, ctx, principal, path, fmt)
        return path.read_bytes(), result


def _write_gpkg(session: Session, principal: Principal | None, out: Path, result: ExportResult) -> None:
    import geopandas as gpd
    import pandas as pd
    import pyogrio

    out.unlink(missing_ok=True)
    for spec in LAYERS:
        records = list(_layer_rows(session, spec, principal, result))
        columns = [c for c in spec.table.headers if c not in ("lon", "lat")]
        if spec.geometry is None:
            frame: Any = pd.DataFrame(records, columns=columns)
        else:
            geoms = shapely.from_wkb([bytes(r["geom"]) for r in records]) if records else []
            frame = gpd.GeoDataFrame(pd.DataFrame(records, columns=columns), geometry=gpd.GeoSeries(geoms, crs=4326),
                                     crs=4326)
        for col in columns:
            values = frame[col]
            if values.dtype == object and any(isinstance(v, dt.datetime) for v in values):
                frame[col] = [v.isoformat() if isinstance(v, dt.datetime) else v for v in values]
            elif values.dtype == float and col not in ("lon", "lat") and values.isna().any():
                frame[col] = values.astype("Int64")
        pyogrio.write_dataframe(frame, out, layer=spec.name, driver="GPKG", geometry_type=spec.geometry)
        result.rows[spec.name] = len(records)


def _write_xlsx(session: Session, principal: Principal | None, out: Path, result: ExportResult) -> None:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    for spec in LAYERS:
        result.rows[spec.name] = spec.table.write_sheet(wb, _layer_rows(session, spec, principal, result), spec.sheet)
    wb.save(out)


def read_back(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The layers of an exported GeoPackage as rows (geometry as WKT), read with GDAL (pyogrio): for comparing
    two exports."""
    import pyogrio

    out: dict[str, list[dict[str, Any]]] = {}
    for name, _ in pyogrio.list_layers(path):
        frame = pyogrio.read_dataframe(path, layer=str(name))
        rows = frame.to_dict("records")
        for row in rows:
            for key, value in row.items():
                if isinstance(value, float) and math.isnan(value):
                    row[key] = None  # a null field: NaN in pandas, and NaN != NaN
            if row.get("geometry") is not None:
                row["geometry"] = shapely.to_wkt(row["geometry"], rounding_precision=7)
        out[str(name)] = rows
    return out


def counts_text(rows: Mapping[str, int], names: Sequence[str] = LAYER_NAMES) -> str:
    return ", ".join(f"{name} {rows.get(name, 0)}" for name in names)
