"""Batch import of (historical) incidents from CSV, GeoJSON, GeoPackage or Excel, assigned in bulk.

Each row needs: category, description, occurred_at, and lon/lat (with the file's `crs`) — or for
spatial files the point geometry. Optional: dispute_kind, external_id, state (loop stage reached,
default visit), reporter_name, reporter_phone. Category, kind, stage and time are read by the rule
of the API (`gis.incidents.fields`): codes or the pages' Chinese names, a time without a zone in
`default_tz` (Beijing time). Rows that fail are reported with the number the spreadsheet shows
(`row`: the header is line 1, the first data row 2; in a CSV the physical line where the record
starts, in an xlsx the sheet's row; in GeoJSON/GeoPackage the first feature is row 2, as if a
header came first) and reason; good rows are written with binary COPY. Re-running a file adds
nothing: a row without an external_id gets one derived from its content.

Built for files of a million rows: the checks run column-wise (pandas/numpy) but report exactly
what the row-by-row reading reported (each row's first failing check, in the same words), points
are located in memory by `gis.grids.locate.match_bulk` (the rule of `locate_points`), and the
incidents, their history and routing are sent to PostgreSQL while the next part is being read and
prepared (see `import_incidents`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from gis.bulk import BinaryColumns, Vocabulary, copy_payload
from gis.crs import convert_points, parse_crs
from gis.errors import InputError, Problem
from gis.grids.locate import BulkLocation, GridIndex, add_nearest, grid_index, match_bulk
from gis.incidents.categories import Category, DisputeKind
from gis.incidents.fields import category_code, dispute_kind_code, parse_time, state_code
from gis.incidents.loop import State
from gis.spreadsheet import Table

log = logging.getLogger("wangge.incidents.batch")

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
    """All rows of the file with normalised column names; spatial files give lon/lat from their points."""
    parts = list(open_incident_file(path, max_rows=max_rows, chunk_rows=max(max_rows, 1)))
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


@dataclass
class IncidentFile:
    """A file of incidents read part by part: CSV is streamed `chunk_rows` rows at a time, the other
    formats are read whole and handed out in slices. `estimated_rows` (the CSV's line count) sizes
    progress bars and the bulk-load decision; the exact count is only known at the end, and a file
    found to hold more than `max_rows` rows raises InputError while it is being read."""

    path: Path
    max_rows: int
    chunk_rows: int = 100_000
    estimated_rows: int = 0

    def __iter__(self):
        suffix = self.path.suffix.lower()
        seen = 0
        for frame in _guarded(lambda: self._frames(suffix)):
            seen += len(frame)
            if seen > self.max_rows:
                amount = f"more than {self.max_rows}" if suffix == ".csv" else str(seen)
                raise InputError(Problem(("file",), f"{amount} rows; at most {self.max_rows} per file",
                                         "too_many_rows"))
            frame = _normalise_columns(frame)
            for a in range(0, max(len(frame), 1), self.chunk_rows):
                yield frame.iloc[a:a + self.chunk_rows]

    def line_numbers(self, records: set[int]) -> dict[int, int]:
        """For a CSV: the physical line (1-based) where each of these data records (0-based, in the
        reader's order) starts. The reader skips blank lines and a quoted cell may hold line
        breaks, so the record's index alone does not give its line. Read up to the last record
        asked for, only when rows failed. Other formats: {} (their index + 2 is the sheet's row)."""
        if self.path.suffix.lower() != ".csv" or not records:
            return {}
        import csv

        last, out = max(records), {}
        try:
            with open(self.path, encoding="utf-8-sig", newline="") as fh:
                reader = csv.reader(fh)
                index, start, header = -1, 1, True
                for row in reader:
                    # pandas' skip_blank_lines: an empty line, or one of blanks only, is no record.
                    if row and not (len(row) == 1 and not row[0].strip()):
                        if header:
                            header = False
                        else:
                            index += 1
                            if index in records:
                                out[index] = start
                            if index >= last:
                                break
                    start = reader.line_num + 1
        except (csv.Error, UnicodeDecodeError, OSError):
            return {}           # a line the csv module reads differently: keep index + 2
        return out

    def _frames(self, suffix: str):
        if suffix != ".csv":
            yield _read_whole(self.path, suffix)
            return
        options = dict(dtype=object, keep_default_na=False, encoding="utf-8-sig")
        empty = True
        with pd.read_csv(self.path, chunksize=self.chunk_rows, **options) as reader:
            for frame in reader:
                empty = False
                yield frame
        if empty:                      # a header alone: its columns are still checked
            yield pd.read_csv(self.path, nrows=0, **options)


def open_incident_file(path: Path, *, max_rows: int, chunk_rows: int = 100_000) -> IncidentFile:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx", ".xlsm", ".geojson", ".json", ".gpkg"):
        raise InputError(Problem(("file",), "incident files are .csv, .xlsx, .geojson, .json or .gpkg",
                                 "unsupported_format"))
    estimated = 0
    if suffix == ".csv":
        with open(path, "rb") as fh:
            while block := fh.read(1 << 24):
                estimated += block.count(b"\n")
        estimated = max(estimated - 1, 0)           # the header line
    return IncidentFile(path, max_rows, chunk_rows, estimated)


def _guarded(frames: Callable[[], Iterator[pd.DataFrame]]) -> Iterator[pd.DataFrame]:
    """The reader's frames; any reader failure is a bad file, said plainly."""
    it = frames()
    try:
        while True:
            try:
                frame = next(it)
            except StopIteration:
                return
            except InputError:
                raise
            except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file, said plainly
                raise InputError(Problem(("file",), f"the file could not be read: {exc}",
                                         "unreadable_file")) from None
            yield frame
    finally:
        it.close()


def _read_whole(path: Path, suffix: str) -> pd.DataFrame:
    if suffix in (".xlsx", ".xlsm"):
        return pd.read_excel(path, dtype=str, keep_default_na=False, engine="openpyxl")
    import geopandas as gpd

    gdf = gpd.read_file(path, engine="pyogrio")
    if gdf.crs is not None and gdf.crs.to_epsg() not in (4326, 4490):
        gdf = gdf.to_crs(4326)
    frame = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
    pts = gdf.geometry
    frame["lon"] = [g.x if g is not None and g.geom_type == "Point" else math.nan for g in pts]
    frame["lat"] = [g.y if g is not None and g.geom_type == "Point" else math.nan for g in pts]
    return frame.astype(object).where(frame.notna(), "")


def _normalise_columns(frame: pd.DataFrame) -> pd.DataFrame:
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


# --- column-wise checks ---------------------------------------------------------------------------
# Each helper gives, for every row, exactly what the row-by-row reading of `frame.to_dict("records")`
# gives (`str(r.get(name, default))`, `str(r.get(name) or fallback)`, `float(...)`, `parse_time`),
# with a fast path for the common case (all values are strings in one of a few shapes) and the
# row-by-row expression itself for everything else.

CATEGORY_VALUES = frozenset(c.value for c in Category)
KIND_VALUES = frozenset(k.value for k in DisputeKind)
STATE_VALUES = frozenset(s.value for s in State)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO = dt.timedelta(microseconds=1)


def _column(frame: pd.DataFrame, name: str) -> pd.Series | None:
    """The column as the records see it (with repeated names, the last one wins), by position."""
    where = [i for i, c in enumerate(frame.columns) if c == name]
    if not where:
        return None
    return frame.iloc[:, where[-1]].reset_index(drop=True)


def _all_str(col: pd.Series) -> bool:
    """Every value is a str (then `v or fallback` only replaces "", and str(v) is v)."""
    if isinstance(col.dtype, pd.StringDtype):
        return not col.isna().any()
    return col.dtype == object and pd.api.types.infer_dtype(col, skipna=False) == "string"


def _texts(col: pd.Series | None, n: int, *, default=None, fallback: str | None = None,
           strip: bool = True) -> np.ndarray:
    """str(v) per row, v = r.get(name, default), or `v or fallback` when fallback is given; then
    str.strip() unless strip is False. An object array of str."""
    if col is None:
        v = default if fallback is None else (default or fallback)
        v = str(v).strip() if strip else str(v)
        return np.full(n, v, dtype=object)
    if _all_str(col):
        values = col.to_numpy(dtype=object)
        if fallback:
            values = np.where(values == "", fallback, values)
    else:
        values = col.tolist()
        if fallback is not None:
            values = [v or fallback for v in values]
        values = np.array([str(v) for v in values], dtype=object)
    return _each(values, str.strip) if strip else values


def _each(values: np.ndarray, fn: Callable[[str], object]) -> np.ndarray:
    """[fn(v) for v in values]; for columns of few distinct values (categories, states), once per value."""
    if len(pd.unique(values[:1000])) < 100:
        codes, uniques = pd.factorize(values)
        if len(uniques) < 10_000:
            return np.array([fn(u) for u in uniques] + [None], dtype=object)[codes]
    return np.array([fn(v) for v in values.tolist()], dtype=object)


def _iso_shape(texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(naive, aware) masks: texts of the form YYYY-MM-DD[(T| )HH:MM[:SS[.f{1,6}]]] (naive), or
    with a time and then Z or +HH:MM / -HH:MM (aware), ASCII digits only. For these,
    pd.to_datetime(format="ISO8601") reads what pd.Timestamp reads."""
    n = len(texts)
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=n)
    fits = (lens >= 10) & (lens <= 32)
    u = np.array(np.where(fits, texts, ""), dtype="U32").view(np.uint32).reshape(n, 32)
    rows = np.arange(n)
    digit = (u >= 48) & (u <= 57)

    def at(pos: np.ndarray) -> np.ndarray:                  # the code at a per-row position
        return u[rows, np.clip(pos, 0, 31)]

    def is_digit(pos: np.ndarray) -> np.ndarray:
        return digit[rows, np.clip(pos, 0, 31)]

    z = at(lens - 1) == ord("Z")
    offset = (np.isin(at(lens - 6), (ord("+"), ord("-"))) & (at(lens - 3) == ord(":")) & is_digit(lens - 5)
              & is_digit(lens - 4) & is_digit(lens - 2) & is_digit(lens - 1))
    tz_len = np.where(z, 1, np.where(offset, 6, 0))
    body = lens - tz_len
    ok = fits & digit[:, [0, 1, 2, 3, 5, 6, 8, 9]].all(axis=1) & (u[:, 4] == 45) & (u[:, 7] == 45)
    has_time = body >= 16
    time_ok = (np.isin(u[:, 10], (ord("T"), ord(" "))) & digit[:, [11, 12, 14, 15]].all(axis=1)
               & (u[:, 13] == ord(":")))
    secs_ok = (u[:, 16] == ord(":")) & digit[:, [17, 18]].all(axis=1)
    frac_ok = (u[:, 19] == ord(".")) & (digit[:, 20:26] | (np.arange(20, 26)[None, :] >= body[:, None])).all(axis=1)
    shape_ok = ((body == 10) | ((body == 16) & time_ok) | ((body == 19) & time_ok & secs_ok)
                | ((body >= 21) & (body <= 26) & time_ok & secs_ok & frac_ok))
    ok &= shape_ok
    aware = ok & (tz_len > 0) & has_time
    naive = ok & (tz_len == 0)
    return naive, aware


def _floats(col: pd.Series | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, ok): float(v) per row; ok is False where float() raises."""
    if col is None:
        return np.full(n, np.nan), np.zeros(n, dtype=bool)
    if isinstance(col.dtype, np.dtype) and col.dtype.kind in "fiu":
        return col.to_numpy(dtype=float), np.ones(n, dtype=bool)
    if _all_str(col):
        try:   # numpy converts each str with float() itself, so this agrees value by value
            return col.to_numpy(dtype=object).astype(float), np.ones(n, dtype=bool)
        except (ValueError, TypeError):
            pass
    out, ok = np.full(n, np.nan), np.ones(n, dtype=bool)
    for i, v in enumerate(col.tolist()):
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            ok[i] = False
    return out, ok


def _parse_times(texts: pd.Series, rows: np.ndarray, tz: ZoneInfo) -> tuple[np.ndarray, np.ndarray]:
    """(utc_micros, ok) for texts[rows]: the instant `parse_time` gives, ok False where it raises
    ValueError/TypeError (anything else propagates, as it did row by row)."""
    micros = np.zeros(len(rows), dtype=np.int64)
    done = np.zeros(len(rows), dtype=bool)
    if not len(rows):
        return micros, done
    sub = pd.Series(texts[rows], dtype=object)
    naive, aware = _iso_shape(sub.to_numpy())
    if aware.any():
        t = pd.to_datetime(sub[aware], format="ISO8601", utc=True, errors="coerce")
        good = t.notna().to_numpy()
        idx = np.flatnonzero(aware)[good]
        micros[idx] = t[good].dt.tz_convert(None).to_numpy().astype("datetime64[us]").astype(np.int64)
        done[idx] = True
    if naive.any():
        t = pd.to_datetime(sub[naive], format="ISO8601", errors="coerce")
        good = t.notna().to_numpy()
        idx = np.flatnonzero(naive)[good]
        wall = t[good].to_numpy().astype("datetime64[us]").astype(np.int64)
        # The zone's offset for each wall time, as `replace(tzinfo=tz)` reads it (fold=0).
        uniq, inverse = np.unique(wall, return_inverse=True)
        offsets = np.array([
            tz.utcoffset(w) // _MICRO
            for w in uniq.astype("datetime64[us]").astype(dt.datetime)], dtype=np.int64)
        micros[idx] = wall - offsets[inverse]
        done[idx] = True
    ok = done.copy()
    for k in np.flatnonzero(~done):
        try:
            when = parse_time(sub.iat[k], tz)
        except (ValueError, TypeError):
            continue
        micros[k] = (when - _EPOCH) // _MICRO
        ok[k] = True
    return micros, ok


@dataclass
class _Checked:
    """The rows that passed every check, with their cleaned values (arrays aligned with `rows`)."""

    rows: np.ndarray
    category: np.ndarray
    kind: np.ndarray           # None for no kind
    description: np.ndarray
    micros: np.ndarray         # occurred_at, UTC microseconds since 1970
    lon: np.ndarray            # as given, in the file's system
    lat: np.ndarray
    wgs_lon: np.ndarray        # converted to WGS84
    wgs_lat: np.ndarray
    state: np.ndarray
    external_id: np.ndarray
    reporter_name: np.ndarray  # None for empty
    reporter_phone: np.ndarray


def _check_rows(frame: pd.DataFrame, tz: ZoneInfo, system, fail: Callable[[int, str | None, str], None]) -> _Checked:
    """The row checks of the batch import, column-wise; failures reported in row order."""
    n = len(frame)
    col = {name: _column(frame, name) for name in (
        "category", "dispute_kind", "description", "occurred_at", "lon", "lat", "state", "external_id",
        "reporter_name", "reporter_phone")}
    alive = np.ones(n, dtype=bool)
    failures: list[tuple[int, str, str]] = []

    def refuse(mask: np.ndarray, column: str, reason: Callable[[int], str]) -> None:
        for i in np.flatnonzero(mask & alive):
            failures.append((int(i), column, reason(int(i))))
        alive[mask] = False

    # PostgreSQL text cannot hold NUL: the first such cell of a row (in column order) fails it.
    for name in dict.fromkeys(frame.columns):
        values = _column(frame, name)
        if _all_str(values):
            if "\x00" not in "".join(values.to_numpy(dtype=object)):
                continue
            has_nul = values.astype(object).str.contains("\x00", regex=False).to_numpy(dtype=bool)
        else:
            has_nul = np.array([isinstance(v, str) and "\x00" in v for v in values.tolist()], dtype=bool)
        refuse(has_nul, str(name), lambda _i: "contains a NUL character")

    cat = _texts(col["category"], n, default="")
    cat = _each(cat, lambda c: category_code(c) or c)     # codes or the pages' Chinese names
    refuse(~pd.Series(cat).isin(CATEGORY_VALUES).to_numpy(), "category",
           lambda i: f"unknown category {cat[i]!r}")
    kind = _texts(col["dispute_kind"], n, fallback="")
    kind = _each(kind, lambda k: dispute_kind_code(k) or k)
    has_kind = kind != ""
    refuse(has_kind & ((cat != "dispute") | ~pd.Series(kind).isin(KIND_VALUES).to_numpy()), "dispute_kind",
           lambda i: f"{kind[i]!r} is not a dispute kind of this row")
    desc = _texts(col["description"], n, default="")
    refuse(desc == "", "description", lambda _i: "empty")
    when_text = _texts(col["occurred_at"], n, default="", strip=False)
    rows = np.flatnonzero(alive)
    micros = np.zeros(n, dtype=np.int64)
    parsed, ok = _parse_times(when_text, rows, tz)
    micros[rows] = parsed
    bad_time = np.zeros(n, dtype=bool)
    bad_time[rows[~ok]] = True
    original = col["occurred_at"]
    refuse(bad_time, "occurred_at",
           lambda i: f"not a time: {(original.iloc[[i]].tolist()[0] if original is not None else None)!r}")
    lon, lon_ok = _floats(col["lon"], n)
    lat, lat_ok = _floats(col["lat"], n)
    refuse(~(lon_ok & lat_ok), "lon", lambda _i: "lon/lat are not numbers")
    # The same point rule as the API (gis.crs.convert_points): checked in the stated system,
    # converted, and the WGS84 result checked.
    points = convert_points(np.where(alive, lon, np.nan), np.where(alive, lat, np.nan), system)
    reasons = {i: (field, msg) for i, field, msg, _kind in points.problems}
    for name in ("lon", "lat"):
        mask = np.zeros(n, dtype=bool)
        mask[[i for i, (field, _msg) in reasons.items() if field == name]] = True
        refuse(mask, name, lambda i: reasons[i][1])
    state = _texts(col["state"], n, fallback="visit")
    state = _each(state, lambda v: state_code(v) or v)
    refuse(~pd.Series(state).isin(STATE_VALUES).to_numpy(), "state", lambda i: f"unknown state {state[i]!r}")
    for i, column, reason in sorted(failures):
        fail(i, column, reason)

    rows = np.flatnonzero(alive)
    ext = _texts(col["external_id"], n, fallback="")[rows]
    out = _Checked(
        rows=rows, category=cat[rows], kind=_optional(kind[rows]), description=desc[rows], micros=micros[rows],
        lon=lon[rows], lat=lat[rows], wgs_lon=points.lon[rows], wgs_lat=points.lat[rows],
        state=state[rows], external_id=ext,
        reporter_name=_optional(_texts(col["reporter_name"], n, fallback="")[rows]),
        reporter_phone=_optional(_texts(col["reporter_phone"], n, fallback="")[rows]),
    )
    # Rows without an external_id get one derived from their content, as they always did.
    for k in np.flatnonzero(ext == ""):
        when = parse_time(when_text[out.rows[k]], tz)
        digest = hashlib.sha1(
            f"{out.category[k]}|{out.kind[k]}|{out.description[k]}|{when.isoformat()}|{out.lon[k]:.7f}|"
            f"{out.lat[k]:.7f}".encode()).hexdigest()
        ext[k] = f"import:{digest[:24]}"
    return out


def _optional(values: np.ndarray) -> np.ndarray:
    return np.where(values == "", None, values)


CHUNK = 100_000            # rows of the file per part
# The CLI's failures file (--failures-csv): every failed row, by the spreadsheet writer.
FAILURES_EXPORT = Table({"row": "行号", "column": "列", "reason": "原因"})


def _chunks(data, chunk_rows: int) -> tuple[Iterable[pd.DataFrame], int]:
    """(the parts of the input, its expected number of rows)."""
    if isinstance(data, pd.DataFrame):
        return (data.iloc[a:a + chunk_rows] for a in range(0, max(len(data), 1), chunk_rows)), len(data)
    return data, int(getattr(data, "estimated_rows", 0))


def import_incidents(
    session: Session,
    data: pd.DataFrame | IncidentFile | Iterable[pd.DataFrame],
    *,
    source: str,
    crs: str | None = None,
    default_tz: str = "Asia/Shanghai",
    outside_tolerance_m: float = 200.0,
    all_or_nothing: bool = False,
    progress: Callable[[int], None] | None = None,
    checked: Callable[[int], None] | None = None,
    chunk_rows: int = CHUNK,
) -> BatchReport:
    """Check, locate and store the incidents of `data` (a frame, an `open_incident_file`, or frames
    in file order) in the session's transaction.

    The file is taken a part at a time by three threads, so that PostgreSQL and Python work at the
    same time: this one reads, checks and locates part k+2; a preparer drops the ids already stored
    or seen earlier in the file from part k+1 and encodes its rows for binary COPY; one database
    thread, the only user of the connection meanwhile, sends part k (and answers the preparer's
    few queries: nearest grids of outside points, new ids). With `all_or_nothing` every part is
    checked and placed first and nothing is written if any row fails. Failures raise out of here
    (the caller's transaction then rolls back the rows already sent).

    Progress, part by part: `checked(rows)` when this thread has checked and located a part,
    `progress(rows)` when the preparer has handed a part to the database thread.
    """
    parts, expected = _chunks(data, chunk_rows)
    report = BatchReport(rows=0)
    tz = ZoneInfo(default_tz)
    system = parse_crs(crs, field=("crs",))
    main = _Timings()
    index = grid_index(session)         # read before other threads take the connection
    load = _Load(session, expected, source, system, outside_tolerance_m, progress)
    main.lap("start")
    try:
        if all_or_nothing:
            ready = []
            for part in _prepared(parts, tz, system, index, main):
                load.place_later(part)
                load.place(part)
                ready.append(part)
                if checked:
                    checked(part.rows)
            report.rows = sum(p.rows for p in ready)
            report.failed = sorted((f for p in ready for f in p.failed), key=lambda f: f["row"])
            _renumber(report.failed, data)
            if report.failed:
                report.written = False
                return report
            for part in ready:
                load.write(part)
        else:
            writer = _Writer(load.write)
            try:
                for part in _prepared(parts, tz, system, index, main):
                    report.rows += part.rows
                    load.place_later(part)
                    if checked:
                        checked(part.rows)
                    writer.submit(part)
                    main.lap("wait_writer")
            except BaseException:
                writer.close(cancel=True)          # this failure is the one to report
                raise
            writer.close()
            main.lap("wait_writer")
            report.failed = sorted((f for p in load.done for f in p.failed), key=lambda f: f["row"])
            _renumber(report.failed, data)
        load.finish()
    finally:
        load.close()
    report.created, report.already_present = load.created, load.already_present
    log.info("import %s: %s | preparer: %s | %s", source, main, load.timings, load.finish_timings)
    return report


# A failed row's number is its line in the spreadsheet: the header is line 1, so the first data
# row (index 0) is line 2. CSV files are renumbered by `IncidentFile.line_numbers` where blank
# lines or quoted line breaks move the records off that count.
FIRST_DATA_LINE = 2


def _renumber(failed: list[dict], data) -> None:
    lines = getattr(data, "line_numbers", None)
    if not failed or lines is None:
        return
    where = lines({f["row"] - FIRST_DATA_LINE for f in failed})
    for f in failed:
        f["row"] = where.get(f["row"] - FIRST_DATA_LINE, f["row"])


class _Timings(dict):
    """Seconds per step, summed over parts; one per thread."""

    def __init__(self):
        super().__init__()
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self[name] = self.get(name, 0.0) + now - self._t
        self._t = now

    def __str__(self) -> str:
        return "  ".join(f"{k}={v:.2f}s" for k, v in self.items())


@dataclass
class _Part:
    """One part of the file: checked and matched by the reading thread, then placed, thinned of known
    ids and written by the writer."""

    rows: int                          # rows of the file in this part
    ok: _Checked                       # rows passing the checks; ok.rows are 0-based file rows
    xs: np.ndarray                     # WGS84
    ys: np.ndarray
    loc: BulkLocation
    failed: list[dict]
    placed: np.ndarray | None = None   # positions in ok with a grid (inside, or near enough)
    grid: np.ndarray | None = None     # index positions for ok (-1 where not placed)
    edge: np.ndarray | None = None
    out_m: np.ndarray | None = None
    nearest: Future | None = None      # the database thread's add_nearest for the outside points


def _prepared(parts: Iterable[pd.DataFrame], tz: ZoneInfo, system, index: GridIndex, clock: _Timings):
    offset = 0
    frames = iter(parts)
    while True:
        frame = next(frames, None)
        clock.lap("read")
        if frame is None:
            return
        failed: list[dict] = []

        def fail(i: int, column: str | None, reason: str, _o=offset, _f=failed) -> None:
            _f.append({"row": _o + i + FIRST_DATA_LINE, "column": column, "reason": reason})

        ok = _check_rows(frame, tz, system, fail)
        ok.rows = ok.rows + offset
        clock.lap("check")
        xs, ys = np.asarray(ok.wgs_lon, dtype=float), np.asarray(ok.wgs_lat, dtype=float)
        loc = match_bulk(index, xs, ys)
        clock.lap("locate")
        yield _Part(len(frame), ok, xs, ys, loc, failed)
        offset += len(frame)


def _place(part: _Part, tolerance_m: float) -> None:
    """Outside points (their nearest grids already added): the nearest group grid within the
    tolerance, else a failed row."""
    if part.placed is not None:
        return
    loc = part.loc
    inside = loc.inside
    near = ~inside & (loc.nearest >= 0) & (loc.distance_m <= tolerance_m)
    keep = inside | near
    part.grid = np.where(inside, loc.grid, np.where(near, loc.nearest, -1))
    part.edge = loc.on_boundary & inside
    part.out_m = np.where(near, loc.distance_m, np.nan)
    for k in np.flatnonzero(~keep):
        d = loc.distance_m[k]
        dist = f"{d:.0f} m" if not np.isnan(d) else "far"
        part.failed.append({"row": int(part.ok.rows[k]) + FIRST_DATA_LINE, "column": "lon",
                            "reason": f"outside the town ({dist} from the nearest grid)"})
    part.placed = np.flatnonzero(keep)


class _Writer:
    """One thread that runs `write(part)` for the parts in order; the first failure stops it and is
    raised by `close`."""

    def __init__(self, write: Callable[[_Part], None], depth: int = 2):
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="wangge-import-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (part := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._write(part)
                except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
                    self._error = exc

    def submit(self, part: _Part) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(part)

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the parts handed over; with `cancel`, skip those not yet begun and raise nothing."""
        if cancel and self._error is None:
            self._error = _Cancelled()
        self._queue.put(None)
        self._thread.join()
        if self._error is not None and not cancel:
            raise self._error


class _Cancelled(Exception):
    pass


class _Load:
    """The preparer's state between parts (ids already taken, bulk-load state, counts) and the
    database thread that alone uses the connection while the import runs."""

    def __init__(self, session: Session, expected: int, source: str, system, tolerance_m: float, progress):
        self.session, self.expected, self.system = session, expected, system
        self.tolerance_m, self.progress, self.source = tolerance_m, progress, source
        self.raw = session.connection().connection.driver_connection
        self.cur = self.raw.cursor()
        self.cur.execute("SELECT count(*) FROM incident")
        self.table_rows = self.cur.fetchone()[0]
        self.taken: set[str] = set()
        # A table smaller than the file: read its ids once; a larger one is asked part by part.
        self.ask = self.table_rows > max(expected, 0)
        if not self.ask and self.table_rows:
            # Imports share one namespace of external ids (no reporting account; migration 0007).
            self.cur.execute("SELECT external_id FROM incident WHERE coalesce(created_by, 0) = 0 "
                             "AND external_id IS NOT NULL")
            self.taken.update(r[0] for r in self.cur)
        self.cur.execute("SELECT pg_get_serial_sequence('incident', 'id')")
        self.sequence = self.cur.fetchone()[0]
        self.bulk: list | None = None          # the rebuild statements, once in bulk mode
        self.decided = False
        self.next_id = 0
        self.staff: pd.DataFrame | None = None   # who incidents are routed to, read once
        self.created = self.already_present = 0
        self.done: list[_Part] = []
        self.sent: list[Future] = []           # COPYs handed to the database thread
        self.db = ThreadPoolExecutor(1, thread_name_prefix="wangge-import-db")
        self.timings = _Timings()
        self.finish_timings = _Timings()

    def on_db(self, fn: Callable, *args):
        """Run fn(*args) on the database thread and wait for its answer."""
        return self.db.submit(fn, *args).result()

    def place_later(self, part: _Part) -> None:
        """Ask the database thread now for the nearest grids of the part's outside points."""
        if (part.loc.grid < 0).any():
            part.nearest = self.db.submit(add_nearest, self.session, part.loc, part.xs, part.ys)

    def place(self, part: _Part) -> None:
        if part.nearest is not None:
            part.nearest.result()
            part.nearest = None
        _place(part, self.tolerance_m)

    def write(self, part: _Part) -> None:
        t = self.timings
        t.lap("queue")
        self.done.append(part)
        self.place(part)
        t.lap("place")
        ok, placed = part.ok, part.placed
        ext = ok.external_id[placed]
        present = pd.Series(ext, dtype=object).duplicated(keep="first").to_numpy().copy()
        if self.ask and len(ext):
            stored = self.on_db(self._stored, ext.tolist())
            present |= np.fromiter((e in stored for e in ext), dtype=bool, count=len(ext))
        taken = self.taken
        present |= np.fromiter((e in taken for e in ext), dtype=bool, count=len(ext))
        fresh = placed[~present]
        taken.update(ok.external_id[fresh].tolist())
        self.already_present += int(present.sum())
        self.created += len(fresh)
        t.lap("fresh")
        if len(fresh):
            if not self.decided:
                self.on_db(self._decide, len(fresh) / max(part.rows, 1))
                t.lap("bulk_drop")
            ids = self._ids(len(fresh))
            t.lap("ids")
            self._send(part, fresh, ids)
        if self.progress:
            self.progress(part.rows)

    def _stored(self, ext: list[str]) -> set[str]:
        self.cur.execute("SELECT external_id FROM incident "
                         "WHERE coalesce(created_by, 0) = 0 AND external_id = ANY(%s)", (ext,))
        return {r[0] for r in self.cur}

    def _decide(self, fresh_share: float) -> None:
        """Bulk mode when the file (by its first part with new rows) brings at least BULK_MIN_ROWS new
        incidents and at least as many as the table holds; see `_bulk_drop`."""
        self.decided = True
        estimate = fresh_share * self.expected
        if estimate >= BULK_MIN_ROWS and estimate >= self.table_rows:
            self.bulk = _bulk_drop(self.cur)
            # The tables are ours alone until the commit: ids are counted here, the sequence set at the end.
            self.cur.execute("SELECT nextval(%s::regclass)", (self.sequence,))
            self.next_id = self.cur.fetchone()[0]

    def _ids(self, n: int) -> np.ndarray:
        if self.bulk is not None:
            ids = np.arange(self.next_id, self.next_id + n, dtype=np.int64)
            self.next_id += n
            return ids

        def nextvals() -> np.ndarray:
            self.cur.execute("SELECT string_agg(nextval(%s::regclass)::text, ',') FROM generate_series(1, %s)",
                             (self.sequence, n))
            return np.array(self.cur.fetchone()[0].split(","), dtype=np.int64)

        return self.on_db(nextvals)

    def _send(self, part: _Part, fresh: np.ndarray, ids: np.ndarray) -> None:
        """Encode the part's incidents, history and routing here; COPY them on the database thread."""
        t = self.timings
        ok, index = part.ok, part.loc.index
        g = part.grid[fresh]
        anc = index.ancestors
        codes = self._codes(index)

        def level(lv: int) -> np.ndarray:
            return anc[g, lv] if lv < anc.shape[1] else np.full(len(g), -1, dtype=np.int64)

        n = len(fresh)
        when = ok.micros[fresh]
        state = ok.state[fresh]
        incident = (BinaryColumns(n).int8("id", ids).text("external_id", ok.external_id[fresh])
                    .text("category", ok.category[fresh]).text("dispute_kind", ok.kind[fresh])
                    .text("description", ok.description[fresh]).timestamptz("occurred_at", when)
                    .text("reporter_name", ok.reporter_name[fresh]).text("reporter_phone", ok.reporter_phone[fresh])
                    .points("geom", part.xs[fresh], part.ys[fresh], 4326)
                    .constant("location_source", "coordinates").constant("input_crs", str(self.system))
                    .choice("group_code", codes, g).choice("village_code", codes, level(3))
                    .choice("area_code", codes, level(2)).choice("town_code", codes, level(1))
                    .int8("grid_version_id", index.ids[g]).boolean("on_boundary", part.edge[fresh])
                    .float8("outside_distance_m", part.out_m[fresh]).text("state", state)
                    .timestamptz("state_entered_at", when))
        # History: one 'import' event per new incident, at the time it occurred.
        events = (BinaryColumns(n).int8("incident_id", ids).timestamptz("at", when).constant("actor", self.source)
                  .constant("action", "import").constant("from_state", None).text("to_state", state)
                  .constant("note", "batch import"))
        payloads = [("incident", incident.names, incident.payload()),
                    ("incident_event", events.names, events.payload())]
        t.lap("encode")
        # Routing: the group grid's leader and members, and the village's supervisor.
        if self.staff is None:
            self.staff = self.on_db(_routing_staff, self.cur)
        village = np.append(index.codes, None)[level(3)]
        routed = _route(ids, index.codes[g], village, self.staff)
        if routed is not None:
            payloads.append(("incident_assignee", routed.names, routed.payload()))
        t.lap("route")
        for table, names, payload in payloads:
            self.sent.append(self.db.submit(copy_payload, self.cur, table, names, payload))
        while len(self.sent) > 4:               # at most about two parts in flight
            self.sent.pop(0).result()
        t.lap("wait_db")

    def _codes(self, index: GridIndex) -> Vocabulary:
        if getattr(self, "_codes_of", None) is not index:
            self._codes_of, self._code_vocabulary = index, Vocabulary(index.codes.tolist())
        return self._code_vocabulary

    def finish(self) -> None:
        """After the last part: every COPY done, the sequence moved past the ids used, indexes and
        keys rebuilt."""
        t = self.finish_timings
        for sent in self.sent:
            sent.result()
        self.sent = []
        t.lap("writer_done")
        if self.bulk is not None:
            self.cur.execute("SELECT setval(%s::regclass, %s)", (self.sequence, self.next_id - 1))
            rebuild: dict[str, float] = {}
            _bulk_rebuild(self.cur, self.bulk, rebuild)
            t.lap("bulk_rebuild")
            log.debug("rebuild: %s", "; ".join(f"{v:.2f}s {k}" for k, v in rebuild.items()))

    def close(self) -> None:
        self.db.shutdown(wait=True, cancel_futures=True)
        self.cur.close()


# Tables a batch import writes, and whether it may rebuild their indexes and foreign keys at the end.
BULK_TABLES = ("incident", "incident_event", "incident_assignee")
BULK_MIN_ROWS = 50_000


def _bulk_drop(cur) -> list[str]:
    """For a large load, drop the indexes and keys of the written tables; the statements that
    re-create them are returned for `_bulk_rebuild`.

    PostgreSQL's own advice for populating a table ("Populating a Database" in its manual): building
    an index over loaded rows sorts once, maintaining it row by row costs several times more, and a
    foreign key added afterwards is checked by one join instead of one lookup per row. Used when the
    file brings at least BULK_MIN_ROWS incidents and at least as many as the table already holds (the
    rebuild costs time in proportion to the whole table). Everything goes: secondary indexes, primary
    keys and unique constraints (external_id) of the three tables, and every foreign key from or to
    them (also those of attachments and duplicate links). The tables are locked (ACCESS EXCLUSIVE)
    first, so no other transaction reads or writes them until the import commits, and it all
    happens inside the import's transaction: the definitions are read from the catalogue, dropped,
    and re-created before the commit — a failure anywhere leaves them exactly as they were, and the
    re-created primary keys and unique constraints check the loaded rows once more.
    """
    cur.execute("LOCK TABLE " + ", ".join(BULK_TABLES) + " IN ACCESS EXCLUSIVE MODE")
    cur.execute(
        """SELECT 1 AS drop_order, 3 AS create_order,
                  format('ALTER TABLE %%s DROP CONSTRAINT %%I', c.conrelid::regclass, c.conname),
                  format('ALTER TABLE %%s ADD CONSTRAINT %%I %%s', c.conrelid::regclass, c.conname,
                         pg_get_constraintdef(c.oid))
           FROM pg_constraint c
           WHERE c.contype = 'f' AND (c.conrelid = ANY(%(t)s::regclass[]) OR c.confrelid = ANY(%(t)s::regclass[]))
           UNION ALL
           SELECT 2, 1, format('ALTER TABLE %%s DROP CONSTRAINT %%I', c.conrelid::regclass, c.conname),
                  format('ALTER TABLE %%s ADD CONSTRAINT %%I %%s', c.conrelid::regclass, c.conname,
                         pg_get_constraintdef(c.oid))
           FROM pg_constraint c
           WHERE c.contype IN ('p', 'u') AND c.conrelid = ANY(%(t)s::regclass[])
           UNION ALL
           SELECT 3, 2, format('DROP INDEX %%s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)
           FROM pg_index i
           WHERE i.indrelid = ANY(%(t)s::regclass[])
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)""",
        {"t": list(BULK_TABLES)},
    )
    statements = cur.fetchall()
    for _, _, drop, _ in sorted(statements, key=lambda r: (r[0], r[2])):
        cur.execute(drop)
    return [create for _, _, _, create in sorted(statements, key=lambda r: (r[1], r[3]))]


def _bulk_rebuild(cur, statements: list[str], timings: dict[str, float] | None = None) -> None:
    """Keys and unique constraints, then the other indexes, then the foreign keys; then ANALYZE."""
    cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
    for create in statements + [f"ANALYZE {table}" for table in BULK_TABLES]:
        t0 = time.perf_counter()
        cur.execute(create)
        if timings is not None:
            timings[create] = time.perf_counter() - t0


def _routing_staff(cur) -> pd.DataFrame:
    cur.execute("SELECT id, role, grid_code FROM staff WHERE role IN ('grid_leader', 'grid_member', 'supervisor')")
    return pd.DataFrame(cur.fetchall(), columns=["staff_id", "role", "grid_code"])


def _route(ids: np.ndarray, group: np.ndarray, village: np.ndarray, staff: pd.DataFrame) -> BinaryColumns | None:
    """The group grid's leader and members, and the village's supervisor, for each new incident."""
    if staff.empty:
        return None
    incidents = pd.DataFrame({"incident_id": ids, "group": group, "village": village})
    crew = staff[staff["role"].isin(["grid_leader", "grid_member"])]
    sup = staff[staff["role"] == "supervisor"]
    pairs = pd.concat([
        incidents.merge(crew, left_on="group", right_on="grid_code"),
        incidents.merge(sup, left_on="village", right_on="grid_code"),
    ]).drop_duplicates(["incident_id", "staff_id"])
    duty = pairs["role"].map({"grid_leader": "leader", "grid_member": "member"}).fillna("supervisor")
    return (BinaryColumns(len(pairs)).int8("incident_id", pairs["incident_id"].to_numpy())
            .int8("staff_id", pairs["staff_id"].to_numpy()).text("duty", duty.to_numpy(dtype=object)))
