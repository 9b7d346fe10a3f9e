"""Places of a town from its own files: shelters, roads, rivers and natural villages (自然村).

A vector file (GeoPackage, GeoJSON, zipped Shapefile, KML; any CRS, read safely by
gis/vector_files.py) or, for the point layers, a table with coordinates (CSV/xlsx through
gis/register/tables.py). Every feature is checked (geometry kind, inside the town, required fields,
capacity a positive whole number, the administrative village known) and every problem named by
feature/row and field. Then, as the caller chose: a dry run (report only), all or nothing, or the
good rows in. Re-running the same file changes nothing: a place is matched to the stored one by its
key (shelter: name + kind; natural village: name + village; road and river: name + the line itself),
updated in place when its other fields differ; `replace` also deletes the stored places the file
does not hold. The flood finder's stored answers follow by themselves (the `shelter` and `road`
tables bump `flood_data_version`); a DEM conditioned with other rivers is reported as stale
(`terrain_stale`) and can be rebuilt with `rebuild_terrain`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import shapely
from shapely.geometry import LineString, Point
from shapely.geometry.base import BaseGeometry
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.context import Context
from gis.errors import InputError, Problem

PlaceKind = Literal["shelters", "roads", "rivers", "natural_villages"]
ImportMode = Literal["all_or_nothing", "good_rows"]
PLACE_KINDS: tuple[PlaceKind, ...] = ("shelters", "roads", "rivers", "natural_villages")
VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".zip", ".kml")
TABLE_SUFFIXES = (".csv", ".xlsx")
DEFAULT_SHELTER_KIND = "避难场所"
# A place farther than this from every current grid is taken for a wrong CRS or a typo.
OUTSIDE_TOWN_M = 5_000.0
# Coordinates compared to the stored ones at 1e-7 degrees (about 1 cm).
COORD_DECIMALS = 7
MAX_PROBLEMS = 1_000


@dataclass(frozen=True)
class Field:
    """One attribute of a place: its key, the names a township's file may give it, whether it must be there."""

    key: str
    label_zh: str
    synonyms: tuple[str, ...]
    required: bool = False


@dataclass(frozen=True)
class PlaceLayer:
    kind: PlaceKind
    table: str
    label_zh: str
    points: bool  # else lines
    fields: tuple[Field, ...]


_NAME = Field("name", "名称", ("名称", "名字", "name", "NAME", "Name", "mc", "MC"))
LAYERS: dict[PlaceKind, PlaceLayer] = {
    "shelters": PlaceLayer("shelters", "shelter", "避难场所", True, (
        Field("name", "名称", ("名称", "避难场所", "避难场所名称", "安置点", "安置点名称", "场所名称", "name"), True),
        Field("kind", "类型", ("类型", "类别", "场所类型", "kind", "type", "lx")),
        Field("capacity", "容量", ("容量", "可容纳人数", "容纳人数", "容纳人口", "capacity", "rl"), True),
    )),
    "roads": PlaceLayer("roads", "road", "道路", False, (
        Field("name", "名称", ("名称", "道路名称", "路名", "name", "NAME", "Name")),
        Field("road_class", "等级", ("等级", "道路等级", "类别", "road_class", "class", "fclass", "highway", "dj")),
    )),
    "rivers": PlaceLayer("rivers", "river", "河流", False, (
        Field("name", "名称", ("名称", "河流名称", "河名", "name", "NAME", "Name")),
    )),
    "natural_villages": PlaceLayer("natural_villages", "natural_village", "自然村", True, (
        Field("name", "名称", ("名称", "自然村", "自然村名称", "name", "NAME", "Name"), True),
        Field("village_code", "行政村代码", ("行政村代码", "村代码", "行政村编码", "村编码", "village_code")),
        Field("village", "行政村", ("行政村", "行政村名称", "所属行政村", "村名", "village")),
    )),
}

# Columns of a table file holding the coordinates (for the point layers).
LON_SYNONYMS = ("经度", "lon", "lng", "longitude", "x", "X", "东经")
LAT_SYNONYMS = ("纬度", "lat", "latitude", "y", "Y", "北纬")


@dataclass
class Record:
    """One feature or row as read: where the user sees it, its fields by key, its geometry (WGS84)."""

    row: int
    values: dict[str, str | None]
    geom: BaseGeometry | None
    headers: dict[str, str] = field(default_factory=dict)  # key -> the column as the file names it
    where: str | None = None  # the sheet, when not the file itself
    coord_problem: tuple[str, str, str] | None = None  # (field, type, message) of refused coordinates


@dataclass
class PlaceImport:
    """What an import did (or, in a dry run, would do)."""

    kind: PlaceKind
    file: str
    dry_run: bool
    mode: ImportMode
    replace: bool
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0
    problems: list[Problem] = field(default_factory=list)
    terrain_stale: list[str] = field(default_factory=list)
    terrain_rebuilt: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "file": self.file, "dry_run": self.dry_run, "mode": self.mode,
            "replace": self.replace, "rows": self.rows, "inserted": self.inserted, "updated": self.updated,
            "unchanged": self.unchanged, "deleted": self.deleted, "skipped": self.skipped,
            "problems": [p.as_dict() for p in self.problems],
            "terrain_stale": self.terrain_stale, "terrain_rebuilt": self.terrain_rebuilt,
        }


# --- reading ------------------------------------------------------------------------------------


def _norm(header: object) -> str:
    return re.sub(r"[\s_\-()（）:：*]", "", str(header)).lower()


def match_columns(
    headers: Sequence[str], fields: Sequence[Field], mapping: Mapping[str, str] | None, where: tuple[Any, ...]
) -> dict[str, str]:
    """key -> the file's column for each field found; an explicit `mapping` {key: column} wins."""
    mapping = dict(mapping or {})
    keys = {f.key for f in fields}
    problems = [Problem(("mapping", k), f"unknown field {k!r}; known: {', '.join(sorted(keys))}", "unknown_field")
                for k in mapping if k not in keys]
    problems += [Problem(("mapping", k), f"the file has no column {c!r}", "unknown_column")
                 for k, c in mapping.items() if k in keys and c not in headers]
    if problems:
        raise InputError(problems, "Cannot use the column mapping")
    by_norm = {_norm(h): h for h in headers}
    out: dict[str, str] = {}
    for f in fields:
        if f.key in mapping:
            out[f.key] = mapping[f.key]
            continue
        for syn in (f.label_zh, *f.synonyms):
            if _norm(syn) in by_norm:
                out[f.key] = by_norm[_norm(syn)]
                break
    missing = [f for f in fields if f.required and f.key not in out]
    if missing:
        raise InputError([
            Problem((*where, f.label_zh),
                    f"no column for {f.label_zh} ({f.key}); name one of {', '.join(f.synonyms[:4])} "
                    "or give mapping", "missing_column")
            for f in missing
        ], "Cannot read the file")
    return out


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    s = str(value).strip()
    return s or None


def read_vector_records(
    path: Path, layer: PlaceLayer, *, file_name: str, crs: str | None = None, layer_name: str | None = None,
    mapping: Mapping[str, str] | None = None,
) -> list[Record]:
    """Every feature of a vector file as a Record (geometry in WGS84); feature numbers from 1."""
    from gis.settings import get_settings
    from gis.vector_files import ReadLimits, geometries_in_wgs84, read_features

    gdf, default_wgs84 = read_features(path, layer_name, ReadLimits.from_settings(get_settings()))
    if not len(gdf):
        raise InputError(Problem(("file", file_name), "the file holds no features", "empty_file"),
                         "Cannot read the file")
    geoms = geometries_in_wgs84(gdf, crs, default_wgs84)
    headers = [str(c) for c in gdf.columns if c != gdf.geometry.name]
    columns = match_columns(headers, layer.fields, mapping, ("file", file_name, 1))
    out = []
    for i, geom in enumerate(geoms):
        values = {k: _cell(gdf[c].iat[i]) for k, c in columns.items()}
        out.append(Record(i + 1, values, None if geom is None else geom, columns))
    return out


def read_table_records(
    path: Path, layer: PlaceLayer, *, file_name: str, crs: str | None = None, sheet: str | None = None,
    mapping: Mapping[str, str] | None = None,
) -> Iterator[Record]:
    """The rows of a CSV/xlsx with coordinate columns (经度/纬度) as Records, converted to WGS84."""
    from gis.crs import convert_points, parse_crs
    from gis.register.tables import ColumnSpec, read_table

    if not layer.points:
        raise InputError(Problem(("file", file_name), f"{layer.label_zh} need line geometries: "
                                 "give a GeoPackage, GeoJSON or zipped Shapefile", "unsupported_format"))
    system = parse_crs(crs or "wgs84", "crs")
    spec = [ColumnSpec(f.key, f.label_zh, tuple(f.synonyms), f.required) for f in layer.fields]
    spec += [ColumnSpec("lon", "经度", LON_SYNONYMS, True), ColumnSpec("lat", "纬度", LAT_SYNONYMS, True)]
    read = read_table(path, spec, sheet=sheet, mapping=dict(mapping) if mapping else None, filename=file_name)
    where = read.sheet or file_name
    columns = dict(read.columns)
    for row, values in read.rows:
        geom: BaseGeometry | None = None
        rec = Record(row, {k: v for k, v in values.items() if k not in ("lon", "lat")}, None, columns, where)
        try:
            x, y = float(values.get("lon") or "nan"), float(values.get("lat") or "nan")
        except ValueError:
            x = y = math.nan
        conv = convert_points([x], [y], system)
        if conv.problems:
            _, f, msg, kind = conv.problems[0]
            rec.coord_problem = (f, kind, msg)
        else:
            geom = Point(float(conv.lon[0]), float(conv.lat[0]))
        rec.geom = geom
        yield rec


# --- checking -----------------------------------------------------------------------------------


@dataclass
class _Place:
    row: int
    key: tuple[Any, ...]
    values: dict[str, Any]
    geom: BaseGeometry


def _rounded(geom: BaseGeometry) -> BaseGeometry:
    return shapely.transform(geom, lambda xy: np.round(xy, COORD_DECIMALS))


def _line_key(geom: BaseGeometry) -> str:
    return str(shapely.to_wkb(_rounded(geom), hex=True))


def _lines(geom: BaseGeometry, rivers: bool) -> list[LineString] | None:
    if rivers and geom.geom_type in ("Polygon", "MultiPolygon"):
        geom = geom.boundary  # a river drawn as an area: its banks carry the channel (as gis/flood/dem.py)
    parts = [p for p in shapely.get_parts(geom) if not p.is_empty]
    if not parts or any(p.geom_type not in ("LineString", "LinearRing") for p in parts):
        return None
    return [LineString(p.coords) for p in parts if len(p.coords) >= 2]


class _Checker:
    def __init__(self, session: Session, layer: PlaceLayer, file_name: str):
        self.session, self.layer, self.file_name = session, layer, file_name
        self.problems: list[Problem] = []
        self.bad_rows: set[int] = set()
        self._villages: dict[str, str] | None = None
        self._village_names: dict[str, list[str]] | None = None

    def problem(self, rec: Record, key: str, msg: str, type_: str) -> None:
        where = rec.where or self.file_name
        column = rec.headers.get(key) or {"geometry": "geometry", "lon": "经度", "lat": "纬度"}.get(key, key)
        self.bad_rows.add(rec.row)
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(("file", where, rec.row, column), msg, type_))

    def villages(self) -> tuple[dict[str, str], dict[str, list[str]]]:
        if self._villages is None or self._village_names is None:
            rows = self.session.execute(
                text("SELECT code, name FROM grid WHERE level = 3 AND valid_to IS NULL")).all()
            self._villages = {c: n for c, n in rows}
            names: dict[str, list[str]] = {}
            for c, n in rows:
                names.setdefault(n, []).append(c)
            self._village_names = names
        return self._villages, self._village_names

    def check(self, rec: Record) -> list[_Place]:
        """The places one record gives (a multi-line feature gives one per part), or none with problems."""
        v = rec.values
        before = len(self.bad_rows)
        if rec.coord_problem is not None:
            column, kind, msg = rec.coord_problem
            self.problem(rec, column, msg, kind)
            return []
        for f in self.layer.fields:
            if f.required and not v.get(f.key):
                self.problem(rec, f.key, f"{f.label_zh} is empty", "missing")
        geom = rec.geom
        if geom is None or geom.is_empty:
            self.problem(rec, "geometry", "the feature has no geometry", "missing_geometry")
            return []
        values: dict[str, Any] = {k: v.get(k) for k in ("name",)}
        if self.layer.points:
            if geom.geom_type in ("Polygon", "MultiPolygon"):
                geom = geom.representative_point()  # a shelter or settlement drawn as its outline
            if geom.geom_type == "MultiPoint" and len(geom.geoms) == 1:
                geom = geom.geoms[0]
            if geom.geom_type != "Point":
                self.problem(rec, "geometry", f"a point is expected, got {geom.geom_type}", "wrong_geometry")
                return []
            geoms: list[BaseGeometry] = [geom]
        else:
            lines = _lines(geom, self.layer.kind == "rivers")
            if lines is None:
                self.problem(rec, "geometry", f"a line is expected, got {geom.geom_type}", "wrong_geometry")
                return []
            geoms = list(lines)
        if self.layer.kind == "shelters":
            values["kind"] = v.get("kind") or DEFAULT_SHELTER_KIND
            cap = v.get("capacity")
            if cap:
                try:
                    number = float(cap.replace(",", ""))
                except ValueError:
                    number = math.nan
                if not (math.isfinite(number) and number.is_integer() and 0 < number <= 1_000_000):
                    self.problem(rec, "capacity", f"capacity must be a whole number of people above 0, got {cap!r}",
                                 "bad_capacity")
                else:
                    values["capacity"] = int(number)
        elif self.layer.kind == "roads":
            values["road_class"] = v.get("road_class")
        elif self.layer.kind == "natural_villages":
            values["village_code"] = self._village_of(rec, geoms[0])
        if len(self.bad_rows) > before:
            return []
        keys = [self._key(values, g) for g in geoms]
        return [_Place(rec.row, k, values, g) for k, g in zip(keys, geoms, strict=True)]

    def _village_of(self, rec: Record, point: BaseGeometry) -> str | None:
        codes, names = self.villages()
        code, name = rec.values.get("village_code"), rec.values.get("village")
        if code:
            if code not in codes:
                self.problem(rec, "village_code", f"no current administrative village has the code {code}",
                             "unknown_grid")
                return None
            return code
        if name:
            found = names.get(name, [])
            if len(found) != 1:
                self.problem(rec, "village", f"no administrative village is named {name!r}" if not found else
                             f"{len(found)} administrative villages are named {name!r}; give the code",
                             "unknown_grid" if not found else "ambiguous_grid")
                return None
            return found[0]
        at = self.session.execute(
            text("SELECT g.code FROM grid g WHERE g.level = 3 AND g.valid_to IS NULL "
                 "AND ST_Intersects(g.geom, ST_GeomFromText(:p, 4326)) ORDER BY g.code LIMIT 1"),
            {"p": point.wkt}).scalar_one_or_none()
        if at is None:
            self.problem(rec, "geometry", "the point lies in no administrative village; give 行政村代码",
                         "outside_town")
        return at

    def _key(self, values: dict[str, Any], geom: BaseGeometry) -> tuple[Any, ...]:
        kind = self.layer.kind
        if kind == "shelters":
            return (values["name"], values["kind"])
        if kind == "natural_villages":
            return (values["name"], values["village_code"])
        return (values.get("name"), _line_key(geom))


def _outside_town(session: Session, geoms: Sequence[BaseGeometry]) -> list[bool]:
    """Whether each geometry lies farther than OUTSIDE_TOWN_M from every current grid (all False with no grids)."""
    if not geoms:
        return []
    rows = session.execute(
        text(
            "WITH town AS (SELECT ST_Union(geom) AS g FROM grid WHERE valid_to IS NULL AND level = 1) "
            "SELECT t.g IS NULL OR ST_DWithin(t.g::geography, ST_GeomFromText(x, 4326)::geography, :d) "
            "FROM unnest(CAST(:wkts AS text[])) WITH ORDINALITY AS u(x, i) CROSS JOIN town t ORDER BY i"
        ),
        {"wkts": [g.wkt for g in geoms], "d": OUTSIDE_TOWN_M},
    ).scalars().all()
    return [not bool(r) for r in rows]


# --- writing ------------------------------------------------------------------------------------


def _stored(session: Session, layer: PlaceLayer) -> dict[tuple[Any, ...], tuple[int, dict[str, Any], str]]:
    """key -> (id, fields, rounded geometry WKB hex) of every stored place of the layer."""
    cols = {"shelters": "name, kind, capacity", "roads": "name, road_class", "rivers": "name",
            "natural_villages": "name, village_code"}[layer.kind]
    out: dict[tuple[Any, ...], tuple[int, dict[str, Any], str]] = {}
    for r in session.execute(text(f"SELECT id, {cols}, ST_AsBinary(geom) AS wkb FROM {layer.table} ORDER BY id")):
        m = dict(r._mapping)
        geom = shapely.from_wkb(bytes(m.pop("wkb")))
        ident = m.pop("id")
        gkey = _line_key(geom)
        if layer.kind == "shelters":
            key: tuple[Any, ...] = (m["name"], m["kind"])
        elif layer.kind == "natural_villages":
            key = (m["name"], m["village_code"])
        else:
            key = (m.get("name"), gkey)
        out.setdefault(key, (ident, m, gkey))
    return out


def _columns(layer: PlaceLayer) -> tuple[str, ...]:
    return {"shelters": ("name", "kind", "capacity"), "roads": ("name", "road_class"), "rivers": ("name",),
            "natural_villages": ("name", "village_code")}[layer.kind]


def _write(session: Session, layer: PlaceLayer, places: list[_Place], replace: bool, report: PlaceImport) -> list[int]:
    stored = _stored(session, layer)
    cols = _columns(layer)
    seen: set[int] = set()
    inserts: list[_Place] = []
    for p in places:
        hit = stored.get(p.key)
        if hit is None:
            inserts.append(p)
            continue
        ident, fields, gkey = hit
        seen.add(ident)
        if all(fields.get(c) == p.values.get(c) for c in cols) and gkey == _line_key(p.geom):
            report.unchanged += 1
            continue
        sets = ", ".join(f"{c} = :{c}" for c in cols)
        session.execute(text(f"UPDATE {layer.table} SET {sets}, geom = ST_GeomFromText(:wkt, 4326) WHERE id = :id"),
                        {**{c: p.values.get(c) for c in cols}, "wkt": _rounded(p.geom).wkt, "id": ident})
        report.updated += 1
    if replace:
        gone = [ident for ident, _, _ in stored.values() if ident not in seen]
        if gone:
            session.execute(text(f"DELETE FROM {layer.table} WHERE id = ANY(:ids)"), {"ids": gone})
        report.deleted = len(gone)
    ids: list[int] = []
    if inserts:
        col_list = ", ".join(cols)
        rows = session.execute(
            text(f"INSERT INTO {layer.table} ({col_list}, geom) SELECT {col_list}, ST_GeomFromText(wkt, 4326) "
                 f"FROM json_to_recordset(CAST(:rows AS json)) AS r({_record_type(layer)}, wkt text) RETURNING id"),
            {"rows": _json([{**{c: p.values.get(c) for c in cols}, "wkt": _rounded(p.geom).wkt} for p in inserts])},
        ).scalars().all()
        ids = list(rows)
        report.inserted = len(ids)
    return ids


def _record_type(layer: PlaceLayer) -> str:
    types = {"name": "text", "kind": "text", "capacity": "integer", "road_class": "text", "village_code": "varchar(15)"}
    return ", ".join(f"{c} {types[c]}" for c in _columns(layer))


def _json(rows: list[dict[str, Any]]) -> str:
    import json

    return json.dumps(rows, ensure_ascii=False)


def _dems_with_other_rivers(session: Session) -> list[str]:
    """DEMs conditioned with river lines other than the `river` table holds now."""
    rows = session.execute(text(
        "SELECT d.name FROM flood_dem d, (SELECT ST_Multi(ST_Union(geom)) AS g FROM river) r "
        "WHERE NOT (d.rivers IS NULL AND r.g IS NULL) AND (d.rivers IS NULL OR r.g IS NULL "
        "OR NOT ST_Equals(d.rivers, r.g)) ORDER BY d.name")).scalars().all()
    return list(rows)


def rebuild_terrain(session: Session, names: Iterable[str]) -> list[str]:
    """Condition the named DEMs again from their stored source (the rivers now in the `river` table)."""
    from gis.flood.dem import import_dem

    done = []
    for name in names:
        source = session.execute(text("SELECT source_path FROM flood_dem WHERE name = :n"),
                                 {"n": name}).scalar_one_or_none()
        if source and Path(source).is_file():
            import_dem(session, Path(source), name=name)
            done.append(name)
    return done


def import_places(
    session: Session,
    ctx: Context,
    kind: PlaceKind,
    records: Iterable[Record],
    *,
    file_name: str,
    dry_run: bool = False,
    mode: ImportMode = "all_or_nothing",
    replace: bool = False,
    rebuild: bool = False,
    progress: Callable[[int], None] | None = None,
) -> PlaceImport:
    """Check every record of one layer and store the places (see the module's docstring).

    `all_or_nothing` with any problem raises InputError listing them all (nothing written);
    `good_rows` writes the rows without problems and reports the others. The caller owns the
    transaction; a dry run writes nothing (its writes happen in a savepoint rolled back) and is not
    audited."""
    layer = LAYERS[kind]
    report = PlaceImport(kind, file_name, dry_run, mode, replace)
    checker = _Checker(session, layer, file_name)
    places: list[_Place] = []
    rows: dict[int, Record] = {}
    for rec in records:
        report.rows += 1
        rows[rec.row] = rec
        places.extend(checker.check(rec))
        if progress is not None:
            progress(1)
    if not report.rows:
        raise InputError(Problem(("file", file_name), "the file holds no rows", "empty_file"), "Cannot read the file")
    for p, outside in zip(places, _outside_town(session, [p.geom for p in places]), strict=True):
        if outside:
            checker.problem(rows[p.row], "geometry",
                            f"more than {OUTSIDE_TOWN_M / 1000:g} km outside the town; is the CRS right?",
                            "outside_town")
    first: dict[tuple[Any, ...], int] = {}
    for p in places:
        if p.key in first and first[p.key] != p.row and p.row not in checker.bad_rows:
            what = "line" if not layer.points else "name"
            checker.problem(rows[p.row], "name" if layer.points else "geometry",
                            f"the same {layer.label_zh} ({what}) as row {first[p.key]}", "duplicate")
        first.setdefault(p.key, p.row)
    report.problems = checker.problems
    if checker.problems and mode == "all_or_nothing":
        raise InputError(checker.problems, f"Cannot import the {layer.label_zh}: nothing was written")
    good = [p for p in places if p.row not in checker.bad_rows]
    report.skipped = len(checker.bad_rows)
    if checker.problems and not good:
        raise InputError(checker.problems, f"Cannot import the {layer.label_zh}: no row is usable")
    if checker.problems and replace:
        # Replacing would delete the stored places of the refused rows as if the file had dropped them.
        raise InputError([Problem(("replace",), "a replacing import must have no refused rows: fix them, "
                                  "or import without replace", "replace_with_problems"), *checker.problems],
                         f"Cannot import the {layer.label_zh}: nothing was written")
    savepoint = session.begin_nested() if dry_run else None
    try:
        ids = _write(session, layer, good, replace, report)
        if kind == "rivers":
            report.terrain_stale = _dems_with_other_rivers(session)
            if rebuild and not dry_run:
                report.terrain_rebuilt = rebuild_terrain(session, report.terrain_stale)
                report.terrain_stale = [n for n in report.terrain_stale if n not in report.terrain_rebuilt]
    finally:
        if savepoint is not None:
            savepoint.rollback()
    if not dry_run:
        ctx.audit(session, "import", resource=layer.table, resource_ids=ids[:1000], detail={
            "file": file_name, "rows": report.rows, "inserted": report.inserted, "updated": report.updated,
            "unchanged": report.unchanged, "deleted": report.deleted, "skipped": report.skipped,
            "mode": mode, "replace": replace,
        })
    return report


def import_place_file(
    session: Session,
    ctx: Context,
    kind: PlaceKind,
    path: Path,
    *,
    file_name: str | None = None,
    crs: str | None = None,
    layer_name: str | None = None,
    mapping: Mapping[str, str] | None = None,
    dry_run: bool = False,
    mode: ImportMode = "all_or_nothing",
    replace: bool = False,
    rebuild: bool = False,
    progress: Callable[[int], None] | None = None,
) -> PlaceImport:
    """Read `path` (a vector file, or a CSV/xlsx with coordinates for shelters and natural villages) and
    import it with `import_places`."""
    file_name = file_name or path.name
    suffix = Path(file_name).suffix.lower()
    layer = LAYERS[kind]
    records: Iterable[Record]
    if suffix in VECTOR_SUFFIXES:
        records = read_vector_records(path, layer, file_name=file_name, crs=crs, layer_name=layer_name,
                                      mapping=mapping)
    elif suffix in TABLE_SUFFIXES and layer.points:
        records = read_table_records(path, layer, file_name=file_name, crs=crs, sheet=layer_name, mapping=mapping)
    else:
        allowed = VECTOR_SUFFIXES + (TABLE_SUFFIXES if layer.points else ())
        raise InputError(Problem(("file", file_name), f"file type must be one of {', '.join(allowed)}",
                                 "unsupported_format"), "Cannot read the file")
    return import_places(session, ctx, kind, records, file_name=file_name, dry_run=dry_run, mode=mode,
                         replace=replace, rebuild=rebuild, progress=progress)
