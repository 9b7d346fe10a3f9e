"""Batch import of (historical) incidents from CSV, GeoJSON, GeoPackage or Excel, assigned in bulk.

Each row needs: category, description, occurred_at (ISO 8601 with time zone, or a date/time read
in `default_tz`), and lon/lat (with the file's `crs`) — or for spatial files the point geometry.
Optional: dispute_kind, external_id, state (loop stage reached, default visit), reporter_name,
reporter_phone. Rows that fail are reported with their row number (1 = first data row) and
reason; good rows are written in one COPY. Re-running a file adds nothing: a row without an
external_id gets one derived from its content.

Built for files of a million rows: the checks run column-wise (pandas/numpy) but report exactly
what the row-by-row reading reported (each row's first failing check, in the same words), points
are located in memory by `gis.grids.locate.locate_bulk` (the rule of `locate_points`), and the
incidents, their history and routing are streamed to PostgreSQL with COPY while the next part is
being prepared.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from gis.crs import parse_crs, to_wgs84
from gis.errors import InputError, Problem
from gis.grids.locate import locate_bulk
from gis.incidents.categories import Category, DisputeKind
from gis.incidents.loop import State

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


# --- column-wise checks ---------------------------------------------------------------------------
# Each helper gives, for every row, exactly what the row-by-row reading of `frame.to_dict("records")`
# gives (`str(r.get(name, default))`, `str(r.get(name) or fallback)`, `float(...)`, `_parse_time`),
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
    """(utc_micros, ok) for texts[rows]: the instant `_parse_time` gives, ok False where it raises
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
            when = _parse_time(sub.iat[k], tz)
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
    lon: np.ndarray
    lat: np.ndarray
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
    cat = _each(cat, lambda c: CATEGORY_ZH.get(c, c))
    refuse(~pd.Series(cat).isin(CATEGORY_VALUES).to_numpy(), "category",
           lambda i: f"unknown category {cat[i]!r}")
    kind = _texts(col["dispute_kind"], n, fallback="")
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
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(lon) & np.isfinite(lat))
        if system.is_lonlat:
            bad |= ~((lon >= -180) & (lon <= 180) & (lat >= -90) & (lat <= 90))
    refuse(bad, "lon", lambda _i: "lon/lat out of range or not finite")
    state = _texts(col["state"], n, fallback="visit")
    refuse(~pd.Series(state).isin(STATE_VALUES).to_numpy(), "state", lambda i: f"unknown state {state[i]!r}")
    for i, column, reason in sorted(failures):
        fail(i, column, reason)

    rows = np.flatnonzero(alive)
    ext = _texts(col["external_id"], n, fallback="")[rows]
    out = _Checked(
        rows=rows, category=cat[rows], kind=_optional(kind[rows]), description=desc[rows], micros=micros[rows],
        lon=lon[rows], lat=lat[rows], state=state[rows], external_id=ext,
        reporter_name=_optional(_texts(col["reporter_name"], n, fallback="")[rows]),
        reporter_phone=_optional(_texts(col["reporter_phone"], n, fallback="")[rows]),
    )
    # Rows without an external_id get one derived from their content, as they always did.
    for k in np.flatnonzero(ext == ""):
        when = _parse_time(when_text[out.rows[k]], tz)
        digest = hashlib.sha1(
            f"{out.category[k]}|{out.kind[k]}|{out.description[k]}|{when.isoformat()}|{out.lon[k]:.7f}|"
            f"{out.lat[k]:.7f}".encode()).hexdigest()
        ext[k] = f"import:{digest[:24]}"
    return out


def _optional(values: np.ndarray) -> np.ndarray:
    return np.where(values == "", None, values)


_EWKB_POINT_4326 = "0101000020E6100000"     # little-endian EWKB header: Point with SRID 4326


def _ewkb_points(xs: np.ndarray, ys: np.ndarray) -> list[str]:
    """Hex EWKB of points (exact doubles; PostGIS reads it faster than WKT)."""
    xy = np.empty((len(xs), 2), dtype="<f8")
    xy[:, 0], xy[:, 1] = xs, ys
    h = xy.tobytes().hex().upper()
    return [_EWKB_POINT_4326 + h[k:k + 32] for k in range(0, len(h), 32)]


# --- COPY text ------------------------------------------------------------------------------------

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(values) -> list[str]:
    """Values as fields of COPY's text format: None is \\N, special characters escaped."""
    values = ["\\N" if v is None else v for v in values]
    joined = "".join(values)
    if "\\" in joined or "\t" in joined or "\n" in joined or "\r" in joined:
        values = [v if v == "\\N" else v.translate(_COPY_ESCAPES) for v in values]
    return values


def _copy(cur, sql: str, lines_in_parts, progress=None) -> None:
    """Stream text-format COPY data; a writer thread sends while the next part is being made."""
    from psycopg.copy import QueuedLibpqWriter

    with cur.copy(sql, writer=QueuedLibpqWriter(cur)) as copy:
        for lines in lines_in_parts():
            copy.write("".join(lines))                    # encoded in the connection's encoding
            if progress:
                progress(len(lines))


CHUNK = 100_000


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
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = now - clock[0]
        clock[0] = now

    def fail(i: int, column: str | None, reason: str) -> None:
        report.failed.append({"row": i + 1, "column": column, "reason": reason})

    ok = _check_rows(frame, tz, system, fail)
    lap("check")
    n_ok = len(ok.rows)
    keep = np.zeros(n_ok, dtype=bool)
    xs = ys = np.zeros(0)
    grid = np.zeros(n_ok, dtype=np.int64)
    edge = np.zeros(n_ok, dtype=bool)
    out_m = np.full(n_ok, np.nan)
    index = None
    if n_ok:
        xs, ys = to_wgs84(ok.lon, ok.lat, system)
        xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        loc = locate_bulk(session, xs, ys)
        index = loc.index
        inside = loc.inside
        near = ~inside & (loc.nearest >= 0) & (loc.distance_m <= outside_tolerance_m)
        keep = inside | near
        grid = np.where(inside, loc.grid, loc.nearest)
        edge = loc.on_boundary & inside
        out_m = np.where(near, loc.distance_m, np.nan)
        for k in np.flatnonzero(~keep):
            d = loc.distance_m[k]
            dist = f"{d:.0f} m" if not np.isnan(d) else "far"
            fail(int(ok.rows[k]), "lon", f"outside the town ({dist} from the nearest grid)")
    lap("locate")
    report.failed.sort(key=lambda f: f["row"])
    if all_or_nothing and report.failed:
        report.written = False
        return report
    placed = np.flatnonzero(keep)
    ext = ok.external_id[placed]
    raw = session.connection().connection.driver_connection
    with raw.cursor() as cur:
        cur.execute("SELECT count(*) FROM incident")
        if cur.fetchone()[0] <= len(ext):     # a small table: read its ids rather than send ours
            cur.execute("SELECT external_id FROM incident WHERE external_id IS NOT NULL")
        else:
            cur.execute("SELECT external_id FROM incident WHERE external_id = ANY(%s)", (ext.tolist(),))
        existing = {r[0] for r in cur.fetchall()}
    lap("existing")
    seen = pd.Series(ext, dtype=object)
    present = (seen.isin(existing) | seen.duplicated(keep="first")).to_numpy()
    report.already_present = int(present.sum())
    fresh = placed[~present]
    report.created = len(fresh)
    if not len(fresh):
        log.info("import %s: %s", source, _fmt(timings))
        return report
    # Ids from the table's own sequence, so that history and routing can be written by COPY too.
    with raw.cursor() as cur:
        cur.execute("SELECT pg_get_serial_sequence('incident', 'id')")
        sequence = cur.fetchone()[0]
        cur.execute("SELECT string_agg(nextval(%s::regclass)::text, ',') FROM generate_series(1, %s)",
                    (sequence, len(fresh)))
        new_ids = np.array(cur.fetchone()[0].split(","), dtype=np.int64)
    lap("ids")

    g = grid[fresh]
    anc = index.ancestors
    depth = anc.shape[1] - 1
    codes = np.append(index.codes, None)                       # position -1 -> None

    def level_codes(level: int) -> np.ndarray:
        return codes[anc[g, level]] if level <= depth else np.full(len(g), None, dtype=object)

    group, village, area, town = index.codes[g], level_codes(3), level_codes(2), level_codes(1)
    when = np.datetime_as_string(ok.micros[fresh].astype("datetime64[us]"), unit="us").tolist()
    id_text = new_ids.astype(str).tolist()
    state = ok.state[fresh].tolist()

    def incident_parts():
        for a in range(0, len(fresh), CHUNK):
            s = slice(a, a + CHUNK)
            f = fresh[s]
            geom = _ewkb_points(xs[f], ys[f])
            dist = ["\\N" if np.isnan(d) else repr(float(d)) for d in out_m[f]]
            fixed = f"\tcoordinates\t{_copy_text([str(system)])[0]}\t"
            yield [
                f"{i}\t{e}\t{c}\t{k}\t{d}\t{w}+00\t{rn}\t{rp}\t{gm}{fixed}{g4}\t{g3}\t{g2}\t{g1}\t{v}\t{b}\t{o}\t"
                f"{st}\t{w}+00\n"
                for i, e, c, k, d, w, rn, rp, gm, g4, g3, g2, g1, v, b, o, st in zip(
                    id_text[s], _copy_text(ok.external_id[f]), ok.category[f].tolist(), _copy_text(ok.kind[f]),
                    _copy_text(ok.description[f]), when[s], _copy_text(ok.reporter_name[f]),
                    _copy_text(ok.reporter_phone[f]), geom, group[s].tolist(), _copy_text(village[s]),
                    _copy_text(area[s]), _copy_text(town[s]), index.ids[g[s]].tolist(),
                    np.where(edge[f], "t", "f").tolist(), dist, state[s], strict=True)
            ]

    actor = _copy_text([source])[0]

    def event_parts():
        for a in range(0, len(fresh), CHUNK):
            s = slice(a, a + CHUNK)
            yield [f"{i}\t{w}+00\t{actor}\timport\t\\N\t{st}\tbatch import\n"
                   for i, w, st in zip(id_text[s], when[s], state[s], strict=True)]

    with raw.cursor() as cur, _bulk_mode(cur, len(fresh), timings):
        _copy(cur, "COPY incident (id, external_id, category, dispute_kind, description, occurred_at, "
                   "reporter_name, reporter_phone, geom, location_source, input_crs, group_code, village_code, "
                   "area_code, town_code, grid_version_id, on_boundary, outside_distance_m, state, "
                   "state_entered_at) FROM STDIN", incident_parts, progress)
        lap("copy_incident")
        # History: one 'import' event per new incident, at the time it occurred.
        _copy(cur, "COPY incident_event (incident_id, at, actor, action, from_state, to_state, note) FROM STDIN",
              event_parts)
        lap("copy_event")
        # Routing: the group grid's leader and members, and the village's supervisor.
        _route(cur, new_ids, group, village)
        lap("route")
    log.info("import %s: %s", source, _fmt(timings))
    return report


# Tables a batch import writes, and whether it may rebuild their indexes and foreign keys at the end.
BULK_TABLES = ("incident", "incident_event", "incident_assignee")
BULK_MIN_ROWS = 50_000


@contextmanager
def _bulk_mode(cur, n_new: int, timings: dict[str, float]):
    """For a large load, drop and rebuild the secondary indexes and foreign keys of the written tables.

    PostgreSQL's own advice for populating a table ("Populating a Database" in its manual): building
    an index over loaded rows sorts once, maintaining it row by row costs several times more, and a
    foreign key added afterwards is checked by one join instead of one lookup per row. Used when the
    file brings at least BULK_MIN_ROWS incidents and at least as many as the table already holds (the
    rebuild costs time in proportion to the whole table). Everything happens inside the import's
    transaction: the definitions are read from the catalogue, dropped, and re-created before the
    commit, so a failure anywhere leaves the indexes and keys exactly as they were; primary keys and
    unique constraints (external_id) stay in place throughout. Meanwhile the tables are locked
    (ACCESS EXCLUSIVE): other writers and readers of incidents wait until the import commits.
    """
    cur.execute("SELECT count(*) FROM incident")
    existing = cur.fetchone()[0]
    if n_new < BULK_MIN_ROWS or n_new < existing:
        yield
        return
    t0 = time.perf_counter()
    cur.execute(
        """SELECT 2, format('ALTER TABLE %%s DROP CONSTRAINT %%I', c.conrelid::regclass, c.conname),
                  format('ALTER TABLE %%s ADD CONSTRAINT %%I %%s', c.conrelid::regclass, c.conname,
                         pg_get_constraintdef(c.oid))
           FROM pg_constraint c
           WHERE c.contype = 'f' AND c.conrelid = ANY(%s::regclass[])
           UNION ALL
           SELECT 1, format('DROP INDEX %%s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)
           FROM pg_index i
           WHERE i.indrelid = ANY(%s::regclass[]) AND NOT i.indisprimary AND NOT i.indisunique
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
           ORDER BY 1, 2""",
        (list(BULK_TABLES), list(BULK_TABLES)),
    )
    statements = cur.fetchall()
    for _, drop, _ in statements:
        cur.execute(drop)
    timings["bulk_drop"] = time.perf_counter() - t0
    yield
    t0 = time.perf_counter()
    cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
    for _, _, create in statements:                       # indexes first, then the foreign keys
        cur.execute(create)
    for table in BULK_TABLES:
        cur.execute(f"ANALYZE {table}")
    timings["bulk_rebuild"] = time.perf_counter() - t0


def _route(cur, ids: np.ndarray, group: np.ndarray, village: np.ndarray) -> None:
    wanted = sorted({c for c in group.tolist() if c} | {c for c in village.tolist() if c})
    cur.execute("SELECT id, role, grid_code FROM staff WHERE grid_code = ANY(%s) "
                "AND role IN ('grid_leader', 'grid_member', 'supervisor')", (wanted,))
    staff = pd.DataFrame(cur.fetchall(), columns=["staff_id", "role", "grid_code"])
    if staff.empty:
        return
    incidents = pd.DataFrame({"incident_id": ids, "group": group, "village": village})
    crew = staff[staff["role"].isin(["grid_leader", "grid_member"])]
    sup = staff[staff["role"] == "supervisor"]
    pairs = pd.concat([
        incidents.merge(crew, left_on="group", right_on="grid_code"),
        incidents.merge(sup, left_on="village", right_on="grid_code"),
    ]).drop_duplicates(["incident_id", "staff_id"])
    duty = pairs["role"].map({"grid_leader": "leader", "grid_member": "member"}).fillna("supervisor")

    def parts():
        yield [f"{i}\t{s}\t{d}\n" for i, s, d in zip(pairs["incident_id"].tolist(), pairs["staff_id"].tolist(),
                                                     duty.tolist(), strict=True)]

    _copy(cur, "COPY incident_assignee (incident_id, staff_id, duty) FROM STDIN", parts)


def _fmt(timings: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.2f}s" for k, v in timings.items())
