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

Built for files of a million rows: the file is read part by part (gis.incidents.files), the checks
run column-wise (gis.incidents.row_checks), points are located in memory by
`gis.grids.locate.match_bulk` (a kernel tested against SQL's `grid_at` on the same points), the
staff are paired by the rule of gis.incidents.routing, and the incidents, their history and
routing are sent to PostgreSQL by this module's thread pipeline while the next part is being read
and prepared (see `import_incidents`); a large load drops and rebuilds the indexes
(gis.bulk_indexes).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from gis.bulk import BinaryColumns, Vocabulary, copy_payload
from gis.bulk_indexes import BULK_MIN_ROWS, drop_indexes, rebuild_indexes, worth_rebuilding
from gis.context import Context
from gis.crs import CoordSystem, parse_crs
from gis.grids.locate import BulkLocation, GridIndex, add_nearest, grid_index, match_bulk
from gis.incidents import routing
from gis.incidents.files import IncidentFile, open_incident_file, read_incident_file
from gis.incidents.row_checks import CheckedRows, check_rows
from gis.live import bulk_load_begins, bulk_load_ends
from gis.spreadsheet import Table

# The tables a batch import writes: in bulk mode their indexes and keys are rebuilt at the end.
BULK_TABLES = ("incident", "incident_event", "incident_assignee")

# Still imported from here by callers of the import (the CLI, the sample loader, benches, tests).
__all__ = ["BULK_TABLES", "CHUNK", "FAILURES_EXPORT", "BatchReport", "IncidentFile", "import_incidents",
           "open_incident_file", "read_incident_file"]

log = logging.getLogger("wangge.incidents.batch")
_T = TypeVar("_T")

@dataclass
class BatchReport:
    rows: int = 0
    created: int = 0
    already_present: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    written: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "created": self.created, "already_present": self.already_present,
                "failed": self.failed, "written": self.written}



CHUNK = 100_000            # rows of the file per part
# The CLI's failures file (--failures-csv): every failed row, by the spreadsheet writer.
FAILURES_EXPORT = Table({"row": "行号", "column": "列", "reason": "原因"})


def _chunks(data: pd.DataFrame | IncidentFile | Iterable[pd.DataFrame],
            chunk_rows: int) -> tuple[Iterable[pd.DataFrame], int]:
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
    ctx: Context | None = None,
    file_name: str | None = None,
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

    With `ctx` (who imports, through which door), an import that stored incidents is audited
    ("import", with `file_name` and the counts) in the same transaction.
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
    if ctx is not None and report.written and report.created:
        ctx.audit(session, "import", resource="incident",
                  detail={"file": file_name, "created": report.created, "failed": len(report.failed)})
    log.info("import %s: %s | preparer: %s | %s", source, main, load.timings, load.finish_timings)
    return report


# A failed row's number is its line in the spreadsheet: the header is line 1, so the first data
# row (index 0) is line 2. CSV files are renumbered by `IncidentFile.line_numbers` where blank
# lines or quoted line breaks move the records off that count.
FIRST_DATA_LINE = 2


def _renumber(failed: list[dict[str, Any]], data: object) -> None:
    lines = getattr(data, "line_numbers", None)
    if not failed or lines is None:
        return
    where = lines({f["row"] - FIRST_DATA_LINE for f in failed})
    for f in failed:
        f["row"] = where.get(f["row"] - FIRST_DATA_LINE, f["row"])


class _Timings(dict[str, float]):
    """Seconds per step, summed over parts; one per thread."""

    def __init__(self) -> None:
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
    ok: CheckedRows                       # rows passing the checks; ok.rows are 0-based file rows
    xs: np.ndarray                     # WGS84
    ys: np.ndarray
    loc: BulkLocation
    failed: list[dict[str, Any]]
    placed: np.ndarray | None = None   # positions in ok with a grid (inside, or near enough)
    grid: np.ndarray | None = None     # index positions for ok (-1 where not placed)
    edge: np.ndarray | None = None
    out_m: np.ndarray | None = None
    nearest: Future[None] | None = None      # the database thread's add_nearest for the outside points


def _prepared(parts: Iterable[pd.DataFrame], tz: ZoneInfo, system: CoordSystem, index: GridIndex,
              clock: _Timings) -> Iterator[_Part]:
    offset = 0
    frames = iter(parts)
    while True:
        frame = next(frames, None)
        clock.lap("read")
        if frame is None:
            return
        failed: list[dict[str, Any]] = []

        def fail(i: int, column: str | None, reason: str, _o: int = offset,
                 _f: list[dict[str, Any]] = failed) -> None:
            _f.append({"row": _o + i + FIRST_DATA_LINE, "column": column, "reason": reason})

        ok = check_rows(frame, tz, system, fail)
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
        self._queue: queue.Queue[_Part | None] = queue.Queue(maxsize=depth)
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

    def __init__(self, session: Session, expected: int, source: str, system: CoordSystem, tolerance_m: float,
                 progress: Callable[[int], None] | None):
        self.session, self.expected, self.system = session, expected, system
        self.tolerance_m, self.progress, self.source = tolerance_m, progress, source
        self.raw = cast(Any, session.connection().connection.driver_connection)   # a psycopg connection
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
        self.bulk: list[str] | None = None          # the rebuild statements, once in bulk mode
        self.decided = False
        self.next_id = 0
        self.staff: pd.DataFrame | None = None   # who incidents are routed to, read once
        self.created = self.already_present = 0
        self.done: list[_Part] = []
        self.sent: list[Future[Any]] = []           # COPYs handed to the database thread
        self.db = ThreadPoolExecutor(1, thread_name_prefix="wangge-import-db")
        self.timings = _Timings()
        self.finish_timings = _Timings()

    def on_db(self, fn: Callable[..., _T], *args: Any) -> _T:
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
        assert placed is not None          # (placed just above)
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
        incidents and at least as many as the table holds; see `drop_indexes`."""
        self.decided = True
        estimate = fresh_share * self.expected
        if worth_rebuilding(int(estimate), self.table_rows, BULK_MIN_ROWS):
            self.bulk = drop_indexes(self.cur, BULK_TABLES)
            bulk_load_begins(self.cur)
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
        assert part.grid is not None and part.edge is not None and part.out_m is not None   # (placed)
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
        village = np.append(index.codes, np.array([None], dtype=object))[level(3)]
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
            rebuild_indexes(self.cur, self.bulk, BULK_TABLES, rebuild)
            bulk_load_ends(self.cur, self.created)
            t.lap("bulk_rebuild")
            log.debug("rebuild: %s", "; ".join(f"{v:.2f}s {k}" for k, v in rebuild.items()))

    def close(self) -> None:
        self.db.shutdown(wait=True, cancel_futures=True)
        self.cur.close()



def _routing_staff(cur: Any) -> pd.DataFrame:
    cur.execute(routing.ROUTED_STAFF_SQL)
    return pd.DataFrame(cur.fetchall(), columns=["staff_id", "role", "grid_code"])


def _route(ids: np.ndarray, group: np.ndarray, village: np.ndarray, staff: pd.DataFrame) -> BinaryColumns | None:
    """The staff each new incident reaches (gis.incidents.routing), encoded for COPY."""
    if staff.empty:
        return None
    pairs = routing.pair_staff(ids, {4: group, 3: village}, staff)
    return (BinaryColumns(len(pairs)).int8("incident_id", pairs["incident_id"].to_numpy())
            .int8("staff_id", pairs["staff_id"].to_numpy()).text("duty", pairs["duty"].to_numpy(dtype=object)))
