"""Reading incident files (CSV streamed in parts, Excel, GeoJSON, GeoPackage) into frames with the
import's column names; what a row must hold is checked later (gis.incidents.row_checks)."""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from gis.errors import InputError, Problem

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

    def __iter__(self) -> Iterator[pd.DataFrame]:
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

    def _frames(self, suffix: str) -> Generator[pd.DataFrame]:
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


def _guarded(frames: Callable[[], Generator[pd.DataFrame]]) -> Iterator[pd.DataFrame]:
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
