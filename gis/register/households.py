"""Import a town's households and residents from its own files, and keep them current.

Input: one workbook with a households sheet and a residents sheet, two files, or one sheet of residents
that carries the household columns. Every row is checked as it streams by (ID numbers, dates, phones,
counts, coordinates), households are placed by coordinates (any CRS, GCJ-02 included) or by address
(a known house, else the 组 / natural village it names, reported as approximate), and the rows go by COPY
into temporary tables; checks across rows (duplicate numbers, resident counts, one ID in two households)
and the write itself are then a few set-based statements. A dry run does everything but the write.

Mode "all_or_nothing" writes nothing when anything is wrong; "good_rows" writes every household whose
rows are all right (with its residents) and lists the others. A re-run updates in place, keyed by
household number and ID number, and records what changed (gis.register.history).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis import clock
from gis.bulk import copy_rows
from gis.context import Context
from gis.crs import WGS84, CoordSystem, parse_crs, to_wgs84
from gis.errors import InputError, Problem
from gis.grids.locate import GridIndex, grid_index, match_bulk
from gis.incidents.gazetteer import canonical
from gis.privacy import mask_address
from gis.register import checks
from gis.register.tables import ColumnSpec, Source, TableRead, read_table, sheet_names

MODES = ("all_or_nothing", "good_rows")
MAX_LISTED = 2000  # problems / placed / unplaced households listed in a report (the counts are always whole)
BATCH_ROWS = 20_000
TOWN_TOLERANCE_DEG = 0.0005  # ~50 m: a house on the town's edge is inside
IMPORT_TITLE = "Cannot import the register"

HOUSEHOLD_COLUMNS = (
    ColumnSpec("household_no", "户号", ("户编号", "户口编号", "户籍编号", "户口号", "家庭编号", "户码"), required=True),
    ColumnSpec("head_name", "户主姓名", ("户主", "户主名", "户主名称")),
    ColumnSpec("phone", "联系电话", ("手机号", "手机号码", "电话", "电话号码", "联系方式", "户主电话")),
    ColumnSpec("address", "门牌号", ("地址", "住址", "家庭住址", "详细地址", "现住址", "门牌地址", "居住地址")),
    ColumnSpec("village", "行政村", ("村", "所属村", "村名", "村委会")),
    ColumnSpec("group", "村民小组", ("组", "小组", "所属组", "村组")),
    ColumnSpec("natural_village", "自然村", ("自然村名", "自然村名称", "所属自然村")),
    ColumnSpec("residents", "人数", ("家庭人口", "人口数", "户人口数", "家庭人数", "成员数", "户内人数")),
    ColumnSpec("elderly", "老人数", ("老年人数", "65岁以上老人", "老人")),
    ColumnSpec("children", "儿童数", ("14岁以下儿童", "儿童", "未成年人数")),
    ColumnSpec("disabled", "残疾人数", ("残疾人",)),
    ColumnSpec("pregnant", "孕妇数", ("孕妇",)),
    ColumnSpec("bedridden", "卧床人数", ("卧床", "失能人数")),
    ColumnSpec("floors", "房屋层数", ("层数", "楼层数", "楼层")),
    ColumnSpec("lon", "经度", ("lon", "lng", "longitude", "x", "东经", "x坐标")),
    ColumnSpec("lat", "纬度", ("lat", "latitude", "y", "北纬", "y坐标")),
    ColumnSpec("crs", "坐标系", ("坐标系统", "crs", "坐标类型")),
)

RESIDENT_COLUMNS = (
    ColumnSpec("household_no", "户号", ("户编号", "户口编号", "户籍编号", "户口号", "家庭编号", "户码"), required=True),
    ColumnSpec("name", "姓名", ("成员姓名", "居民姓名", "人员姓名", "人口姓名"), required=True),
    ColumnSpec("id_number", "身份证号", ("公民身份号码", "身份证号码", "证件号码", "身份证", "证件号")),
    ColumnSpec("gender", "性别", ()),
    ColumnSpec("birth_date", "出生日期", ("出生年月日", "出生年月", "生日")),
    ColumnSpec("age", "年龄", ("岁数",)),
    ColumnSpec("relation", "与户主关系", ("关系", "家庭关系", "与户主的关系")),
    ColumnSpec("disabled", "是否残疾", ("残疾",)),
    ColumnSpec("pregnant", "是否孕妇", ("孕妇",)),
    ColumnSpec("bedridden", "是否卧床", ("卧床", "是否失能")),
    ColumnSpec("status", "人员状态", ("状态", "户籍状态", "在册状态")),
    ColumnSpec("status_date", "变动日期", ("死亡日期", "迁出日期", "变动时间")),
)

# One sheet of residents with the household's columns: the household's own name column is the head's.
_ONE_SHEET_COLUMNS = RESIDENT_COLUMNS + tuple(
    c for c in HOUSEHOLD_COLUMNS if c.key not in ("household_no", "head_name", "disabled", "pregnant", "bedridden")
)

_YES = {"是", "有", "y", "yes", "true", "1", "√", "✓", "t"}
_NO = {"否", "无", "n", "no", "false", "0", "×", "f", "-"}
_T = TypeVar("_T")
_DIED = {"死亡", "已故", "去世", "亡故", "已死亡"}
_LEFT = {"迁出", "外迁", "注销", "已迁出", "迁移"}
_PRESENT = {"在册", "正常", "在户", "现住", "在"}
_HEAD_RELATIONS = {"户主", "本人"}
_CRS_HINTS = (("gcj", "gcj02"), ("高德", "gcj02"), ("火星", "gcj02"), ("腾讯", "gcj02"), ("百度", "bd09"),
              ("bd09", "bd09"), ("cgcs2000", "cgcs2000"), ("2000", "cgcs2000"), ("wgs", "wgs84"))


Progress = Callable[[str, int], None]


@dataclass
class ImportOptions:
    """What the user chose for one import."""

    mode: str = "all_or_nothing"
    dry_run: bool = False
    as_of: dt.date | None = None  # the date the register is as of (ages, changes); today when None
    crs: str | None = None  # of the coordinate columns; a hint in the header or a 坐标系 column wins per row
    household_sheet: str | None = None
    resident_sheet: str | None = None
    mapping: Mapping[str, str] = field(default_factory=dict)  # {key: header}, for either table
    place_by_settlement: bool = True  # an address naming only its 组 / natural village: placed there, flagged
    reveal: bool = True  # personal values shown in problem messages (False: masked)


@dataclass
class _Problems:
    """Every problem found, and the households each one spoils."""

    reveal: bool
    items: list[Problem] = field(default_factory=list)
    count: int = 0
    bad: set[str] = field(default_factory=set)

    def add(self, loc: tuple[str | int, ...], msg: str, type_: str = "invalid", household_no: str | None = None,
            *, file_level: bool = False) -> None:
        self.count += 1
        if len(self.items) < MAX_LISTED:
            self.items.append(Problem(loc, msg, type_))
        if household_no:
            self.bad.add(household_no)
        if file_level:
            self.bad.add("\0file")


# --- reading the files -----------------------------------------------------------------------------


@dataclass
class _Sources:
    households: TableRead | None
    residents: TableRead | None
    one_sheet: bool


def _spec_mapping(spec: Sequence[ColumnSpec], mapping: Mapping[str, str]) -> dict[str, str]:
    keys = {c.key for c in spec}
    return {k: v for k, v in mapping.items() if k in keys}


def open_sources(source: Source, filename: str, residents: tuple[Source, str] | None,
                 options: ImportOptions) -> _Sources:
    """Find the households and residents tables among the files and sheets given."""
    mapping = dict(options.mapping)
    known = {c.key for c in HOUSEHOLD_COLUMNS} | {c.key for c in RESIDENT_COLUMNS}
    unknown = [k for k in mapping if k not in known]
    if unknown:
        raise InputError([Problem(("mapping", k), f"unknown column key; known keys: {', '.join(sorted(known))}")
                          for k in unknown], IMPORT_TITLE)
    hmap = _spec_mapping(HOUSEHOLD_COLUMNS, mapping)
    rmap = _spec_mapping(RESIDENT_COLUMNS, mapping)
    if residents is not None:
        hh = read_table(source, HOUSEHOLD_COLUMNS, sheet=options.household_sheet, mapping=hmap, filename=filename)
        rs = read_table(residents[0], RESIDENT_COLUMNS, sheet=options.resident_sheet, mapping=rmap,
                        filename=residents[1])
        return _Sources(hh, rs, False)
    names = sheet_names(source, filename)
    if options.household_sheet or options.resident_sheet:
        hh_named = (read_table(source, HOUSEHOLD_COLUMNS, sheet=options.household_sheet, mapping=hmap,
                               filename=filename) if options.household_sheet else None)
        rs_named = None
        if options.resident_sheet:
            spec = RESIDENT_COLUMNS if hh_named is not None else _ONE_SHEET_COLUMNS
            rs_named = read_table(source, spec, sheet=options.resident_sheet,
                                  mapping=_spec_mapping(spec, mapping), filename=filename)
        return _Sources(hh_named, rs_named, hh_named is None)
    if len(names) >= 2:
        tables = [_try_read(source, filename, n, mapping) for n in names]
        hh_tables = [t for kind, t in tables if kind == "households" and t is not None]
        rs_tables = [t for kind, t in tables if kind == "residents" and t is not None]
        if hh_tables and rs_tables:
            return _Sources(hh_tables[0], rs_tables[0], False)
    # One sheet: residents with household columns, or households alone.
    first = options.household_sheet or (names[0] if len(names) == 1 else None)
    kind, _table = _try_read(source, filename, first, mapping)
    if kind == "residents":
        return _Sources(None, read_table(source, _ONE_SHEET_COLUMNS, sheet=first, filename=filename,
                                         mapping=_spec_mapping(_ONE_SHEET_COLUMNS, mapping)), True)
    return _Sources(read_table(source, HOUSEHOLD_COLUMNS, sheet=first, mapping=hmap, filename=filename), None, False)


def _try_read(source: Source, filename: str, sheet: str | None,
              mapping: Mapping[str, str]) -> tuple[str, TableRead | None]:
    """Is this sheet a residents table (it has a person's 姓名 column) or a households one?"""
    try:
        return "residents", read_table(source, RESIDENT_COLUMNS, sheet=sheet, filename=filename,
                                       mapping=_spec_mapping(RESIDENT_COLUMNS, mapping))
    except InputError:
        pass
    try:
        return "households", read_table(source, HOUSEHOLD_COLUMNS, sheet=sheet, filename=filename,
                                        mapping=_spec_mapping(HOUSEHOLD_COLUMNS, mapping))
    except InputError:
        if sheet is None:
            raise
        return "none", None


# --- placing households by address --------------------------------------------------------------


@dataclass(frozen=True)
class _Spot:
    lon: float
    lat: float
    precision_m: float
    place: str


class AddressIndex:
    """The town's known places by canonical name: house addresses already placed, group grids, villages,
    natural villages (gis.incidents.gazetteer's canonical form: 三组 / 第三网格 -> 3组)."""

    def __init__(self, session: Session):
        self.houses: dict[str, _Spot | None] = {}
        for addr, lon, lat in session.execute(text(
                "SELECT h.address, ST_X(h.geom), ST_Y(h.geom) FROM household h "
                "LEFT JOIN household_location l ON l.household_id = h.id "
                "WHERE coalesce(l.located_by, 'coordinates') <> 'settlement'")):
            key = canonical(addr or "")
            if key:
                spot = _Spot(lon, lat, 10.0, addr)
                if key in self.houses:
                    known = self.houses[key]
                    # One address at two places is ambiguous; several households of one house are not.
                    same = known is not None and abs(known.lon - lon) < 1e-5 and abs(known.lat - lat) < 1e-5
                    self.houses[key] = known if same else None
                else:
                    self.houses[key] = spot
        self.groups: dict[str, _Spot] = {}
        self.villages: dict[str, str] = {}
        self.natural: dict[str, dict[str, _Spot]] = {}  # village code -> canonical name -> spot
        self.natural_any: dict[str, _Spot | None] = {}
        for level, code, name, lon, lat, radius in session.execute(text(
                "SELECT level, code, name, ST_X(p), ST_Y(p), sqrt(ST_Area(geom::geography) / pi()) "
                "FROM (SELECT *, ST_PointOnSurface(geom) AS p FROM grid WHERE valid_to IS NULL AND level >= 3) g")):
            if level == 4:
                self.groups[canonical(name)] = _Spot(lon, lat, float(radius), name)
            else:
                self.villages[canonical(name)] = code
        for name, vcode, lon, lat in session.execute(text(
                "SELECT name, village_code, ST_X(geom), ST_Y(geom) FROM natural_village")):
            spot = _Spot(lon, lat, 300.0, name)
            key = canonical(name)
            self.natural.setdefault(vcode, {})[key] = spot
            self.natural_any[key] = spot if key not in self.natural_any else None
        self._village_names = sorted(self.villages, key=len, reverse=True)

    def locate(self, address: str, natural_village: str | None,
               settlements: bool) -> tuple[str, _Spot] | str:
        """("address" | "settlement", spot), or why the address cannot be placed."""
        key = canonical(address)
        house = self.houses.get(key)
        if house is not None:
            return "address", house
        rest = re.sub(r"\d+(号|户)?$", "", key)
        rest = re.sub(r"\d+$", "", rest)
        village = next((v for v in self._village_names if rest.startswith(v)), None)
        spot: _Spot | None = None
        if rest in self.groups:
            spot = self.groups[rest]
        if spot is None and village is not None:
            tail = re.sub(r"^\d+组", "", rest[len(village):])
            nv_name = canonical(natural_village or "") or tail
            spot = self.natural.get(self.villages[village], {}).get(nv_name)
        if spot is None and natural_village:
            spot = self.natural_any.get(canonical(natural_village))
        if spot is None and rest and village is None:
            spot = self.natural_any.get(rest)
        if spot is None:
            if village is None:
                return "the address names no village, group or natural village of the town"
            return "the address names its village but no known group (组) or natural village"
        if not settlements:
            return f"the address names only {spot.place}; no house at that address is known"
        return "settlement", spot


# --- row checks --------------------------------------------------------------------------------


def _int(value: str | None, table: TableRead, row: int, key: str, problems: _Problems, hno: str | None,
         low: int = 0, high: int = 10_000) -> int | None:
    if value is None:
        return None
    text_ = value.strip().removesuffix("人").removesuffix("层")
    try:
        number = int(float(text_)) if re.fullmatch(r"-?\d+(\.0+)?", text_) else None
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        problems.add(table.loc(row, key), f"expected a whole number from {low} to {high}, got {value!r}",
                     "not_a_number", hno)
        return None
    return number


def _flag(value: str | None, table: TableRead, row: int, key: str, problems: _Problems, hno: str | None) -> bool:
    if value is None:
        return False
    v = value.strip().lower()
    if v in _YES:
        return True
    if v in _NO:
        return False
    problems.add(table.loc(row, key), f"expected 是 or 否, got {value!r}", "invalid", hno)
    return False


def _parsed(value: str | None, parse: Callable[[str], _T], table: TableRead, row: int, key: str,
            problems: _Problems, kind: str, hno: str | None) -> _T | None:
    """A cell read by `parse` (one of gis.register.checks' parsers); None when it is empty, or when `parse`
    refuses it, which is then a problem of type `kind` at that cell."""
    if not value:
        return None
    try:
        return parse(value)
    except ValueError as exc:
        problems.add(table.loc(row, key), str(exc), kind, hno)
        return None


def _crs_from_header(header: str | None) -> str | None:
    if not header:
        return None
    low = header.lower()
    return next((crs for hint, crs in _CRS_HINTS if hint in low), None)


@dataclass
class _Household:
    row: int
    household_no: str
    address: str
    head_name: str | None
    phone: str | None
    residents: int | None
    elderly: int | None
    children: int | None
    disabled: int | None
    pregnant: int | None
    bedridden: int | None
    floors: int | None
    natural_village: str | None
    x: float | None
    y: float | None
    crs: CoordSystem | None
    located_by: str | None = None
    lon: float | None = None
    lat: float | None = None
    precision_m: float | None = None
    place: str | None = None


def _mask(reveal: bool, value: str | None, masker: Callable[[str | None], str | None]) -> str | None:
    return value if reveal else masker(value)


def _household_from_row(table: TableRead, number: int, r: Mapping[str, str | None], problems: _Problems,
                        default_crs: CoordSystem, crs_by_column: CoordSystem | None) -> _Household | None:
    hno = r.get("household_no")
    if not hno:
        problems.add(table.loc(number, "household_no"), "the household number is empty", "missing")
        return None
    if len(hno) > 32:
        problems.add(table.loc(number, "household_no"), "a household number has at most 32 characters",
                     "too_long", hno)
    phone = r.get("phone")
    if phone is not None:
        try:
            phone = checks.normalize_phone(phone)
        except ValueError as exc:
            msg = str(exc) if problems.reveal else re.sub(r"'[^']*'", "'***'", str(exc))
            problems.add(table.loc(number, "phone"), msg, "invalid_phone", hno)
            phone = None
    residents = _int(r.get("residents"), table, number, "residents", problems, hno, 1, 100)
    counts = {k: _int(r.get(k), table, number, k, problems, hno, 0, 100)
              for k in _VULNERABLE}
    floors = _int(r.get("floors"), table, number, "floors", problems, hno, 1, 10)
    village, group = r.get("village"), r.get("group")
    address = r.get("address") or ""
    if address and (village or group) and not address.startswith(village or "\0"):
        if re.fullmatch(r"\d+(号)?", address):  # 门牌号 alone: the address is village + group + number
            address = f"{village or ''}{group or ''}{address.removesuffix('号')}号"
    elif not address and (village or group):
        address = f"{village or ''}{group or ''}"
    x = y = None
    crs = crs_by_column or default_crs
    if r.get("crs"):
        named = r["crs"] or ""
        try:
            crs = parse_crs(named)
        except InputError as exc:
            hint = _crs_from_header(named)  # 高德 / 火星坐标 / 百度 as the apps name them
            if hint is None:
                problems.add(table.loc(number, "crs"), exc.problems[0].msg, "invalid_crs", hno)
            else:
                crs = parse_crs(hint)
    lon_text, lat_text = r.get("lon"), r.get("lat")
    if (lon_text is None) != (lat_text is None):
        missing = "lat" if lat_text is None else "lon"
        problems.add(table.loc(number, missing), "give both coordinates or neither", "missing", hno)
    elif lon_text is not None and lat_text is not None:
        try:
            x, y = float(lon_text), float(lat_text)
            if not (np.isfinite(x) and np.isfinite(y)):
                raise ValueError
        except ValueError:
            bad = "lon" if not _is_number(lon_text) else "lat"
            problems.add(table.loc(number, bad), "not a number", "not_a_number", hno)
            x = y = None
    return _Household(number, hno, address, r.get("head_name"), phone, residents, counts["elderly"],
                      counts["children"], counts["disabled"], counts["pregnant"], counts["bedridden"], floors,
                      r.get("natural_village"), x, y, crs)


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


@dataclass
class _Resident:
    row: int
    household_no: str
    key: str
    name: str
    gender: str | None
    birth_date: dt.date | None
    id_number: str | None
    relation: str | None
    is_disabled: bool
    is_pregnant: bool
    is_bedridden: bool
    status: str  # present | died | moved_out
    status_date: dt.date | None


def _resident_from_row(table: TableRead, number: int, r: Mapping[str, str | None], problems: _Problems,
                       as_of: dt.date) -> _Resident | None:
    hno = r.get("household_no")
    name = r.get("name")
    if not hno:
        problems.add(table.loc(number, "household_no"), "the household number is empty", "missing")
        return None
    if not name:
        problems.add(table.loc(number, "name"), "the name is empty", "missing", hno)
        return None
    def cell(key: str, parse: Callable[[str], _T], kind: str) -> _T | None:
        return _parsed(r.get(key), parse, table, number, key, problems, kind, hno)

    # Cells are None when empty (TableRead.rows), never "".
    id_info = cell("id_number", lambda v: checks.parse_id_number(v, today=as_of), "invalid_id_number")
    birth = cell("birth_date", checks.parse_date, "invalid_date")
    age = cell("age", checks.parse_age, "invalid")
    disagreement = checks.check_birth(id_info.birth_date if id_info else None, birth, age, as_of)
    if disagreement:
        key = "birth_date" if birth is not None and (id_info is not None and birth != id_info.birth_date) else "age"
        if key == "age" and age is None:
            key = "birth_date"
        problems.add(table.loc(number, key), disagreement, "inconsistent_birth", hno)
    gender = r.get("gender")
    if gender is not None:
        g = {"男": "男", "女": "女", "m": "男", "f": "女", "male": "男", "female": "女"}.get(gender.strip().lower())
        if g is None:
            problems.add(table.loc(number, "gender"), f"expected 男 or 女, got {gender!r}", "invalid", hno)
        elif id_info is not None and g != id_info.gender:
            problems.add(table.loc(number, "gender"), f"the ID number is a {id_info.gender}'s; the row says {g}",
                         "inconsistent_gender", hno)
        gender = g
    elif id_info is not None:
        gender = id_info.gender
    status = "present"
    raw_status = (r.get("status") or "").strip()
    if raw_status in _DIED:
        status = "died"
    elif raw_status in _LEFT:
        status = "moved_out"
    elif raw_status and raw_status not in _PRESENT:
        problems.add(table.loc(number, "status"), f"expected 在册, 死亡 or 迁出, got {raw_status!r}", "invalid", hno)
    status_date = cell("status_date", checks.parse_date, "invalid_date")
    id_number = id_info.number if id_info else None
    return _Resident(
        number, hno, id_number or f"{hno}/{name}", name, gender, (id_info.birth_date if id_info else birth),
        id_number, r.get("relation"), _flag(r.get("disabled"), table, number, "disabled", problems, hno),
        _flag(r.get("pregnant"), table, number, "pregnant", problems, hno),
        _flag(r.get("bedridden"), table, number, "bedridden", problems, hno), status, status_date,
    )


# --- the import ----------------------------------------------------------------------------------

_STAGE_SQL = """
CREATE TEMP TABLE reg_hh (
    row integer, household_no text, address text, head_name text, phone text, residents integer,
    elderly integer, children integer, disabled integer, pregnant integer, bedridden integer, floors integer,
    natural_village text, lon double precision, lat double precision, located_by text,
    precision_m double precision, place text
) ON COMMIT DROP;
CREATE TEMP TABLE reg_res (
    row integer, household_no text, key text, name text, gender text, birth_date date, id_number text,
    relation text, is_disabled boolean, is_pregnant boolean, is_bedridden boolean, status text, status_date date
) ON COMMIT DROP;
"""
_HH_COLS = ("row", "household_no", "address", "head_name", "phone", "residents", "elderly", "children", "disabled",
            "pregnant", "bedridden", "floors", "natural_village", "lon", "lat", "located_by", "precision_m", "place")
_RES_COLS = ("row", "household_no", "key", "name", "gender", "birth_date", "id_number", "relation", "is_disabled",
             "is_pregnant", "is_bedridden", "status", "status_date")


@dataclass
class _Town:
    geom: Any  # shapely, prepared; None when the town has no boundaries
    bounds: tuple[float, float, float, float] | None


def _town(session: Session) -> _Town:
    wkb = session.execute(text(
        "SELECT ST_AsBinary(ST_Union(geom)) FROM grid WHERE valid_to IS NULL AND level = "
        "(SELECT min(level) FROM grid WHERE valid_to IS NULL)")).scalar()
    if wkb is None:
        return _Town(None, None)
    geom = shapely.from_wkb(bytes(wkb)).buffer(TOWN_TOLERANCE_DEG)
    shapely.prepare(geom)
    return _Town(geom, tuple(geom.bounds))


def _place_batch(batch: list[_Household], table: TableRead, town: _Town, index: AddressIndex,
                 problems: _Problems, options: ImportOptions, unplaced: list[dict[str, Any]]) -> None:
    """Coordinates to WGS84 (per coordinate system), inside the town or swapped; else by address."""
    with_xy = [h for h in batch if h.x is not None and h.y is not None and h.crs is not None]
    by_crs: dict[str, list[_Household]] = {}
    for h in with_xy:
        by_crs.setdefault(str(h.crs), []).append(h)
    for group in by_crs.values():
        crs = group[0].crs
        assert crs is not None
        xs = np.array([h.x for h in group], dtype=float)
        ys = np.array([h.y for h in group], dtype=float)
        lon, lat = to_wgs84(xs, ys, crs)
        inside = (shapely.contains_xy(town.geom, lon, lat) if town.geom is not None
                  else np.zeros(len(group), dtype=bool))
        swapped = np.zeros(len(group), dtype=bool)
        if town.geom is not None and crs.is_lonlat:
            slon, slat = to_wgs84(ys, xs, crs)
            swapped = ~inside & shapely.contains_xy(town.geom, slon, slat)
        for i, h in enumerate(group):
            if inside[i]:
                h.lon, h.lat, h.located_by, h.precision_m = float(lon[i]), float(lat[i]), "coordinates", None
            elif swapped[i]:
                problems.add(table.loc(h.row, "lon"), "longitude and latitude are swapped: the point lies in the "
                             "town only with the two exchanged", "lonlat_swapped", h.household_no)
            elif town.geom is None:
                problems.add(table.loc(h.row, "lon"), "the town has no grid boundaries yet: import them first",
                             "no_town", h.household_no)
            else:
                problems.add(table.loc(h.row, "lon"), f"the point ({h.x}, {h.y}, {crs}) lies outside the town",
                             "outside_town", h.household_no)
    for h in batch:
        if h.located_by is not None or (h.x is not None and h.y is not None):
            continue
        if h.household_no in problems.bad and not h.address:
            continue
        where = index.locate(h.address, h.natural_village, options.place_by_settlement) if h.address else \
            "no coordinates and no address"
        if isinstance(where, str):
            shown = _mask(options.reveal, h.address, mask_address)
            problems.add(table.loc(h.row, "address"), f"cannot place the household: {where}", "unplaced",
                         h.household_no)
            if len(unplaced) < MAX_LISTED:
                unplaced.append({"row": h.row, "household_no": h.household_no, "address": shown, "reason": where})
            continue
        h.located_by, spot = where
        h.lon, h.lat, h.precision_m, h.place = spot.lon, spot.lat, spot.precision_m, spot.place


@dataclass
class ImportReport:
    """What an import found and did; `as_dict()` is the API's answer."""

    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return self.data


def import_households(
    session: Session,
    ctx: Context,
    source: Source,
    filename: str,
    *,
    residents: tuple[Source, str] | None = None,
    options: ImportOptions | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Check, place and (unless a dry run, or all_or_nothing with problems) write households and residents.

    Runs in the caller's transaction (the caller commits); raises InputError for a file that cannot be read
    at all. Row problems are in the report, each with its ("file", sheet, row, column) loc."""
    options = options or ImportOptions()
    if options.mode not in MODES:
        raise InputError(Problem(("mode",), f"mode must be one of {', '.join(MODES)}"), IMPORT_TITLE)
    as_of = options.as_of or clock.today()
    default_crs = parse_crs(options.crs, ("crs",)) if options.crs else None
    sources = open_sources(source, filename, residents, options)
    problems = _Problems(options.reveal)
    note = progress or (lambda _stage, _n: None)

    # Many short per-row plans: JIT compiling costs more than it saves. Joins and sorts of a county's
    # million residents in memory rather than in batches on disk (this transaction only).
    session.execute(text("SET LOCAL jit = off; SET LOCAL work_mem = '128MB'; "
                         "SET LOCAL maintenance_work_mem = '256MB'"))
    index = AddressIndex(session)
    town = _town(session)
    grids = grid_index(session)
    in_grid: dict[int, int] = {}  # grid position (-1: outside every grid) -> placed households
    session.execute(text("DROP TABLE IF EXISTS reg_hh; DROP TABLE IF EXISTS reg_res"))
    session.execute(text(_STAGE_SQL))
    unplaced: list[dict[str, Any]] = []
    seen_households: set[str] = set()
    files: list[dict[str, Any]] = []
    n_hh_rows = n_res_rows = 0

    def placed_rows(batch: list[_Household]) -> Iterator[tuple[Any, ...]]:
        for h in batch:
            yield (h.row, h.household_no, h.address, h.head_name, h.phone, h.residents, h.elderly, h.children,
                   h.disabled, h.pregnant, h.bedridden, h.floors, h.natural_village, h.lon, h.lat, h.located_by,
                   h.precision_m, h.place)

    def flush(batch: list[_Household], table: TableRead) -> None:
        _place_batch(batch, table, town, index, problems, options, unplaced)
        _count_in_grids(grids, [h for h in batch if h.located_by is not None], in_grid)
        copy_rows(session, "reg_hh", _HH_COLS, placed_rows(batch))

    if sources.households is not None:
        table = sources.households
        files.append(_describe(table, "households"))
        crs_col = _crs_from_header(table.columns.get("lon")) if default_crs is None else None
        base_crs = default_crs or WGS84
        crs_by_column = parse_crs(crs_col) if crs_col else None
        batch: list[_Household] = []
        for number, r in table.rows:
            n_hh_rows += 1
            h = _household_from_row(table, number, r, problems, base_crs, crs_by_column)
            if h is None:
                continue
            if h.household_no in seen_households:
                problems.add(table.loc(number, "household_no"), "the household number appears on an earlier row "
                             "too", "duplicate_household", h.household_no)
                continue
            seen_households.add(h.household_no)
            if not h.head_name:
                problems.add(table.loc(number, "head_name"), "the head of household's name is empty", "missing",
                             h.household_no)
            batch.append(h)
            if len(batch) >= BATCH_ROWS:
                flush(batch, table)
                note("households", n_hh_rows)
                batch = []
        flush(batch, table)
        note("households", n_hh_rows)

    if sources.residents is not None:
        table = sources.residents
        files.append(_describe(table, "residents"))
        one = sources.one_sheet
        crs_col = _crs_from_header(table.columns.get("lon")) if one and default_crs is None else None
        base_crs = default_crs or WGS84
        crs_by_column = parse_crs(crs_col) if crs_col else None
        res_batch: list[tuple[Any, ...]] = []
        hh_batch: list[_Household] = []
        for number, r in table.rows:
            n_res_rows += 1
            person = _resident_from_row(table, number, r, problems, as_of)
            if person is None:
                continue
            if one and person.household_no not in seen_households:
                seen_households.add(person.household_no)
                h = _household_from_row(table, number, r, problems, base_crs, crs_by_column)
                if h is not None:
                    h.head_name = person.name
                    hh_batch.append(h)
            res_batch.append((person.row, person.household_no, person.key, person.name, person.gender,
                              person.birth_date, person.id_number, person.relation, person.is_disabled,
                              person.is_pregnant, person.is_bedridden, person.status, person.status_date))
            if len(res_batch) >= BATCH_ROWS:
                if hh_batch:
                    flush(hh_batch, table)
                    hh_batch = []
                copy_rows(session, "reg_res", _RES_COLS, res_batch)
                res_batch = []
                note("residents", n_res_rows)
        if hh_batch:
            flush(hh_batch, table)
        copy_rows(session, "reg_res", _RES_COLS, res_batch)
        note("residents", n_res_rows)
        if one:
            # The head is the row whose relation says so, else the household's first row.
            session.execute(text(
                "UPDATE reg_hh h SET head_name = r.name FROM (SELECT DISTINCT ON (household_no) household_no, name "
                "FROM reg_res WHERE relation IN ('户主', '本人') ORDER BY household_no, row) r "
                "WHERE r.household_no = h.household_no"))

    session.execute(text("SET LOCAL default_statistics_target = 10"))  # temp tables: a 3,000-row sample
    for statement in ("CREATE INDEX ON reg_hh (household_no)", "ANALYZE reg_hh", "ANALYZE reg_res"):
        session.execute(text(statement))
    _cross_checks(session, sources, problems, as_of)
    note("checked", n_hh_rows + n_res_rows)

    listed_placed = _placed_listing(session, options)
    totals = session.execute(text(
        "SELECT count(*), count(located_by), count(*) FILTER (WHERE located_by = 'coordinates'), "
        "count(*) FILTER (WHERE located_by = 'address'), count(*) FILTER (WHERE located_by = 'settlement') "
        "FROM reg_hh")).one()
    by_group, outside_grids = _by_group(grids, in_grid)

    write = not options.dry_run and (options.mode == "good_rows" or problems.count == 0)
    if "\0file" in problems.bad:
        write = write and options.mode == "good_rows"
    bad = sorted(b for b in problems.bad if b != "\0file")
    written: dict[str, Any] = {"households": 0, "residents": 0, "changes": {}, "import_id": None}
    if write:
        from gis.register.history import apply_import

        written = apply_import(session, ctx, bad, filename=_filenames(files), mode=options.mode, as_of=as_of,
                               rows=n_hh_rows + n_res_rows, has_residents=sources.residents is not None,
                               all_placed=totals[0] == totals[1])
        note("written", written["households"])
    skipped = session.execute(text("SELECT count(*) FROM reg_hh WHERE household_no = ANY(:bad)"),
                              {"bad": bad}).scalar_one()
    data = {
        "dry_run": options.dry_run,
        "mode": options.mode,
        "as_of": as_of.isoformat(),
        "written": write,
        "files": files,
        "rows": {"households": n_hh_rows, "residents": n_res_rows},
        "problem_count": problems.count,
        "problems": [p.as_dict() for p in problems.items],
        "households": {
            "total": totals[0], "placed": totals[1], "by_coordinates": totals[2], "by_address": totals[3],
            "by_settlement": totals[4], "unplaced": totals[0] - totals[1], "with_problems": skipped,
            "outside_every_grid": outside_grids, "written": written["households"],
        },
        "residents": {"written": written["residents"]},
        "by_group": by_group,
        "placed": listed_placed,
        "unplaced": unplaced,
        "changes": written["changes"],
        "import_id": written["import_id"],
    }
    ctx.audit(session, "register.households.import" if not options.dry_run else "register.households.check",
              resource="household", outcome="ok" if write or options.dry_run else "refused",
              detail={"files": _filenames(files), "rows": n_hh_rows + n_res_rows, "mode": options.mode,
                      "dry_run": options.dry_run, "problems": problems.count,
                      "households_written": written["households"], "residents_written": written["residents"]})
    session.execute(text("DROP TABLE IF EXISTS reg_hh; DROP TABLE IF EXISTS reg_res"))
    return ImportReport(data)


def _count_in_grids(grids: GridIndex, placed: Sequence[_Household], counts: dict[int, int]) -> None:
    """Add each placed household to its grid's count, by the point -> grid rule (`grid_at`'s, in memory)."""
    if not placed:
        return
    lons = np.array([h.lon for h in placed], dtype=float)
    lats = np.array([h.lat for h in placed], dtype=float)
    found = match_bulk(grids, lons, lats).grid
    positions, n = np.unique(found, return_counts=True)
    for pos, k in zip(positions.tolist(), n.tolist(), strict=True):
        counts[pos] = counts.get(pos, 0) + k


def _by_group(grids: GridIndex, counts: Mapping[int, int]) -> tuple[list[dict[str, Any]], int]:
    """Households per group grid (and per village, for points its groups leave out), as
    `household_grid_at` names them (the group only where the deepest grid is a group); and the households
    in no village at all."""
    rows = []
    outside = 0
    for pos, n in counts.items():
        path = grids.path(pos) if pos >= 0 else {}
        group, village = path.get(4), path.get(3)
        if group is None and village is None:
            outside += n
            continue
        rows.append({"group_code": group.code if group else None, "group_name": group.name if group else None,
                     "village_code": village.code if village else None,
                     "village_name": village.name if village else None, "households": n})
    rows.sort(key=lambda r: (r["group_code"] is None, r["group_code"] or "", r["village_code"] or ""))
    return rows, outside


def _filenames(files: list[dict[str, Any]]) -> str:
    return ", ".join(dict.fromkeys(f["filename"] for f in files))


def _describe(table: TableRead, kind: str) -> dict[str, Any]:
    return {"kind": kind, "filename": Path(table.filename).name, "sheet": table.sheet,
            "header_row": table.header_row, "columns": table.columns, "encoding": table.encoding}


def _placed_listing(session: Session, options: ImportOptions) -> list[dict[str, Any]]:
    rows = session.execute(text(
        "SELECT t.row, t.household_no, t.located_by, t.precision_m, t.place, t.lon, t.lat, hg.group_code, "
        "hg.group_name, hg.village_code, hg.village_name, hg.area_code, hg.area_name, hg.town_code, hg.town_name "
        "FROM (SELECT * FROM reg_hh WHERE located_by IS NOT NULL ORDER BY row LIMIT :n) t "
        "LEFT JOIN LATERAL household_grid_at(ST_SetSRID(ST_MakePoint(t.lon, t.lat), 4326)) hg ON true "
        "ORDER BY t.row"), {"n": MAX_LISTED})
    out = []
    for r in rows:
        d = dict(r._mapping)
        d["lon"], d["lat"] = round(d["lon"], 7), round(d["lat"], 7)
        if d["precision_m"] is not None:
            d["precision_m"] = round(d["precision_m"])
        out.append(d)
    return out


_VULNERABLE = ("elderly", "children", "disabled", "pregnant", "bedridden")


def _cross_checks(session: Session, sources: _Sources, problems: _Problems, as_of: dt.date) -> None:
    """Checks across rows, in SQL over the staged rows."""
    if sources.residents is None:
        for row, hno in session.execute(text("SELECT row, household_no FROM reg_hh WHERE residents IS NULL")):
            assert sources.households is not None
            problems.add(sources.households.loc(row, "residents"), "the number of residents (人数) is empty and no "
                         "residents are listed", "missing", hno)
        return
    rs = sources.residents
    hh = sources.households or rs
    # Residents whose household is not in the file.
    if sources.households is not None:
        for row, hno in session.execute(text(
                "SELECT r.row, r.household_no FROM reg_res r WHERE NOT EXISTS "
                "(SELECT 1 FROM reg_hh h WHERE h.household_no = r.household_no) ORDER BY r.row")):
            problems.add(rs.loc(row, "household_no"), "no household with this number in the households table",
                         "unknown_household", hno)
    # The same person twice (the numbers that repeat found first: only their rows are ordered).
    for row, hno, other_row, other_hno in session.execute(text(
            "SELECT row, household_no, first_row, first_household FROM (SELECT row, household_no, "
            "first_value(row) OVER w AS first_row, first_value(household_no) OVER w AS first_household "
            "FROM reg_res WHERE id_number IN (SELECT id_number FROM reg_res WHERE id_number IS NOT NULL "
            "GROUP BY id_number HAVING count(*) > 1) WINDOW w AS (PARTITION BY id_number ORDER BY row)) d "
            "WHERE row <> first_row ORDER BY row")):
        if other_hno == hno:
            msg = f"the same ID number is on row {other_row} of this household too"
        else:
            msg = f"the same ID number is in household {other_hno} (row {other_row}) too"
        problems.add(rs.loc(row, "id_number"), msg, "duplicate_id_number", hno)
        problems.bad.add(other_hno)
    # The stated number of residents against the listed ones.
    for row, hno, stated, listed in session.execute(text(
            "SELECT h.row, h.household_no, h.residents, count(r.row) FILTER (WHERE r.status = 'present') "
            "FROM reg_hh h LEFT JOIN reg_res r ON r.household_no = h.household_no "
            "GROUP BY h.row, h.household_no, h.residents "
            "HAVING h.residents IS NOT NULL AND h.residents <> count(r.row) FILTER (WHERE r.status = 'present') "
            "OR count(r.row) FILTER (WHERE r.status = 'present') = 0 ORDER BY h.row")):
        if listed == 0:
            problems.add(hh.loc(row, "household_no"), "the household has no residents listed (living)",
                         "no_residents", hno)
        else:
            problems.add(hh.loc(row, "residents"), f"人数 says {stated} but {listed} residents are listed",
                         "resident_count", hno)
    # Given vulnerable counts that exceed the residents (when the households table gives any).
    if not any(k in hh.columns for k in _VULNERABLE):
        return
    for row, hno, key in session.execute(text(
            "WITH listed AS (SELECT household_no, count(*) AS n FROM reg_res WHERE status = 'present' "
            "GROUP BY household_no) "
            "SELECT h.row, h.household_no, k.key FROM reg_hh h LEFT JOIN listed l USING (household_no) "
            "CROSS JOIN LATERAL (VALUES ('elderly', h.elderly), ('children', h.children), ('disabled', h.disabled), "
            "('pregnant', h.pregnant), ('bedridden', h.bedridden)) k(key, n) "
            "WHERE k.n > coalesce(h.residents, l.n, 0) ORDER BY h.row")):
        problems.add(hh.loc(row, key), "more than the household's residents", "too_many", hno)
    _ = as_of
