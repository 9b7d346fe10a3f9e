"""The row checks of the batch import, column-wise: what each row of an incident file must hold.

Each helper gives, for every row, exactly what the row-by-row reading of `frame.to_dict("records")`
gives (`str(r.get(name, default))`, `str(r.get(name) or fallback)`, `float(...)`, `parse_time`),
with a fast path for the common case (all values are strings in one of a few shapes) and the
row-by-row expression itself for everything else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from gis.crs import CoordSystem, convert_points
from gis.incidents.categories import Category, DisputeKind
from gis.incidents.fields import category_code, dispute_kind_code, parse_time, state_code
from gis.incidents.loop import State

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
    return bool(col.dtype == object and pd.api.types.infer_dtype(col, skipna=False) == "string")


def _texts(col: pd.Series | None, n: int, *, default: object = None, fallback: str | None = None,
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
            once: np.ndarray = np.array([fn(u) for u in uniques] + [None], dtype=object)
            return np.asarray(once[codes])
    each: np.ndarray = np.array([fn(v) for v in values.tolist()], dtype=object)
    return each


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
        code: np.ndarray = u[rows, np.clip(pos, 0, 31)]
        return code

    def is_digit(pos: np.ndarray) -> np.ndarray:
        found: np.ndarray = digit[rows, np.clip(pos, 0, 31)]
        return found

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
            (tz.utcoffset(w) or dt.timedelta(0)) // _MICRO
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
class CheckedRows:
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


def check_rows(frame: pd.DataFrame, tz: ZoneInfo, system: CoordSystem,
               fail: Callable[[int, str | None, str], None]) -> CheckedRows:
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
        assert values is not None          # (a name of the frame's own columns)
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
    out = CheckedRows(
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
    out = values.astype(object)
    out[values == ""] = None
    return out

