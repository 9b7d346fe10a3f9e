"""Read one table the way townships write them: xlsx with title rows, merged header cells and a 合计 row,
CSV in UTF-8 / UTF-8-BOM / GBK / GB18030, column names that vary from village to village.

`read_table` finds the header row, maps the file's columns to the caller's keys (by synonyms or an explicit
mapping) and hands back a `TableRead` whose `rows` stream (row number as the user sees it, {key: text}),
so a county-sized register is read in constant memory. Problems with the file as a whole raise
`InputError` with a `loc` of ("file", sheet or file name, row, column header); problems with a value are the
caller's to report, with `TableRead.loc(row, key)` naming the cell the same way.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import openpyxl

from gis.errors import InputError, Problem

TABLE_TITLE = "Cannot read the table"
HEADER_SCAN_ROWS = 30  # title rows above the header are few; a header further down is not looked for
_TOTAL_WORDS = ("合计", "总计", "小计", "总数")
_TOTAL_FIRST = frozenset(w[0] for w in _TOTAL_WORDS)
_XLSX_EXTS = (".xlsx", ".xlsm")
_CSV_EXTS = (".csv", ".txt", ".tsv")
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # old .xls / .doc, or an encrypted xlsx
_DECODE_CHUNK = 1 << 20
_MAX_XLSX_RATIO = 300.0  # sheet XML compresses well, but not this well unless it is a zip bomb
_MAX_XLSX_UNZIPPED = 4 << 30

Source = str | Path | bytes


@dataclass(frozen=True)
class ColumnSpec:
    """One column the caller wants: `key` in the code, `label_zh` as the user knows it, other names it goes by."""

    key: str
    label_zh: str
    synonyms: tuple[str, ...] = ()
    required: bool = False

    def names(self) -> tuple[str, ...]:
        return (self.label_zh, *self.synonyms, self.key)


RawRows = Callable[[], Iterator[tuple[int, list[Any]]]]


@dataclass
class TableRead:
    """A table whose header was found: which file column gives each key, and its rows on demand."""

    filename: str
    sheet: str  # the sheet's name (xlsx) or the file's name (csv): what a problem's loc names
    columns: dict[str, str]  # key -> column header as in the file
    header_row: int  # 1-based, as the user sees it
    encoding: str | None  # the CSV's detected encoding; None for a workbook
    labels: dict[str, str] = field(default_factory=dict)  # key -> label_zh, for columns the file lacks
    _raw: RawRows | None = field(default=None, repr=False)
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def rows(self) -> Iterator[tuple[int, dict[str, str | None]]]:
        """(row number, {key: text or None}) for every data row; empty rows and 合计/总计 rows left out.

        Each access reads the file again from the start, streaming."""
        assert self._raw is not None
        index = self._index
        for number, cells in self._raw():
            if number <= self.header_row:
                continue
            # cell_text of each cell; a plain text cell (most of a CSV) without the call.
            texts = [t if c.__class__ is str and (t := c.strip()) and t[0] not in "'=" else cell_text(c)
                     for c in cells]
            if all(t is None for t in texts) or is_total_row(texts):
                continue
            yield number, {k: (texts[i] if i < len(texts) else None) for k, i in index.items()}

    def loc(self, row: int, key: str) -> tuple[str | int, ...]:
        """The loc of one cell: ("file", sheet, row, column header as in the file)."""
        return ("file", self.sheet, row, self.columns.get(key) or self.labels.get(key, key))

    def problem(self, row: int, key: str, msg: str, type_: str = "invalid") -> Problem:
        return Problem(self.loc(row, key), msg, type_)


# --- values --------------------------------------------------------------------------------


_EXCEL_TEXT = re.compile(r'^="(.*)"$')


def cell_text(value: Any) -> str | None:
    """A cell as text the way the user reads it: whole numbers without '.0', dates as YYYY-MM-DD."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text[:1] not in ("'", "="):  # the common case: nothing to undo
            return text or None
        text = text.lstrip("'").strip()
        m = _EXCEL_TEXT.match(text)  # ="4113..." is how exports keep long numbers as text
        if m:
            text = m.group(1).strip()
        return text or None
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value).strip() or None


def is_total_row(texts: Sequence[str | None]) -> bool:
    """A 合计/总计 row: its first filled cell starts with one of those words."""
    first = next((t for t in texts if t), None)
    if first is None or first.lstrip()[:1] not in _TOTAL_FIRST:
        return False
    compact = re.sub(r"\s+", "", first)
    return compact.startswith(_TOTAL_WORDS)


def normalize_header(name: str) -> str:
    """Compare headers ignoring width, case, spaces, '*' required-markers and punctuation."""
    text = unicodedata.normalize("NFKC", name).lower()
    return re.sub(r"[\s_\-*:：/\\·.。()（）\[\]【】]+", "", text)


def _without_note(name: str) -> str:
    """'联系电话（手机）' -> '联系电话': a bracketed note after the name."""
    return re.sub(r"[(（\[【].*?[)）\]】]\s*$", "", name).strip()


# --- file kinds ----------------------------------------------------------------------------


def _file_problem(filename: str, msg: str, type_: str) -> InputError:
    return InputError([Problem(("file", filename), msg, type_)], TABLE_TITLE)


def _head(source: Source, n: int = 65536) -> bytes:
    if isinstance(source, bytes):
        return source[:n]
    with open(source, "rb") as fh:
        return fh.read(n)


def _open_binary(source: Source) -> IO[bytes]:
    if isinstance(source, bytes):
        return io.BytesIO(source)
    return open(source, "rb")  # noqa: SIM115 - closed by the caller's ExitStack


def file_kind(source: Source, filename: str) -> str:
    """'xlsx' or 'csv', after checking that the content is what the extension says."""
    ext = Path(filename).suffix.lower()
    head = _head(source)
    if not head:
        raise _file_problem(filename, "the file is empty", "empty")
    is_zip = head.startswith(_ZIP_MAGIC)
    is_ole = head.startswith(_OLE_MAGIC)
    if ext == ".xls":
        raise _file_problem(
            filename, "old Excel .xls workbooks are not read: save it as .xlsx (Excel 2007 and later)", "file_type"
        )
    if ext in _XLSX_EXTS:
        if is_ole:
            raise _file_problem(
                filename, "the file is an old .xls or a password-protected workbook, not an .xlsx", "file_type"
            )
        if not is_zip:
            what = "text (a CSV?)" if _looks_like_text(head) else "not a workbook"
            raise _file_problem(filename, f"the file is named .xlsx but its content is {what}", "file_type")
        _check_workbook_zip(source, filename)
        return "xlsx"
    if ext in _CSV_EXTS:
        if is_zip:
            raise _file_problem(
                filename, "the file is named .csv but is a zip archive (an .xlsx workbook?)", "file_type"
            )
        if is_ole:
            raise _file_problem(filename, "the file is named .csv but is an Excel .xls workbook", "file_type")
        if not _looks_like_text(head):
            raise _file_problem(filename, "the file is named .csv but its content is not text", "file_type")
        return "csv"
    raise _file_problem(filename, f"unsupported file type {ext or '(none)'}: send an .xlsx or a .csv", "file_type")


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    return b"\x00" not in head


def _check_workbook_zip(source: Source, filename: str) -> None:
    try:
        with ExitStack() as stack:
            zf = zipfile.ZipFile(stack.enter_context(_open_binary(source)))
            infos = zf.infolist()
            names = {i.filename for i in infos}
            total = sum(i.file_size for i in infos)
            packed = sum(i.compress_size for i in infos)
    except zipfile.BadZipFile as exc:
        raise _file_problem(filename, f"the workbook is damaged: {exc}", "file_type") from exc
    if "xl/workbook.xml" not in names:
        raise _file_problem(filename, "the file is a zip archive but not an Excel workbook", "file_type")
    if total > _MAX_XLSX_UNZIPPED or (total > (1 << 24) and total > _MAX_XLSX_RATIO * max(packed, 1)):
        raise _file_problem(filename, "the workbook unpacks to far more than its size: refused", "unsafe_file")


def detect_encoding(source: Source, filename: str) -> str:
    """utf-8-sig, utf-16, utf-8, gbk or gb18030: the first that decodes the whole file strictly."""
    head = _head(source, 4)
    if head.startswith(codecs.BOM_UTF8):
        candidates: tuple[str, ...] = ("utf-8-sig",)
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ("utf-16",)
    else:
        candidates = ("utf-8", "gbk", "gb18030")
    for encoding in candidates:
        decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        try:
            with _open_binary(source) as fh:
                while chunk := fh.read(_DECODE_CHUNK):
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        return encoding
    raise _file_problem(
        filename, "the text is in none of the encodings read (UTF-8, GBK, GB18030): save it as UTF-8 CSV", "encoding"
    )


# --- raw rows ------------------------------------------------------------------------------


def sheet_names(source: Source, filename: str) -> list[str]:
    """The worksheets of a workbook (a CSV has one 'sheet': its file name)."""
    if file_kind(source, filename) == "csv":
        return [Path(filename).name]
    with ExitStack() as stack:
        wb = _open_workbook(stack, source, filename)
        return list(wb.sheetnames)


def _open_workbook(stack: ExitStack, source: Source, filename: str) -> Any:
    fh = stack.enter_context(_open_binary(source))
    try:
        wb = openpyxl.load_workbook(fh, read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a damaged workbook
        raise _file_problem(filename, f"the workbook cannot be read: {type(exc).__name__}: {exc}", "file_type") from exc
    stack.callback(wb.close)
    return wb


def _xlsx_rows(source: Source, filename: str, sheet: str) -> RawRows:
    def rows() -> Iterator[tuple[int, list[Any]]]:
        with ExitStack() as stack:
            wb = _open_workbook(stack, source, filename)
            ws = wb[sheet]
            # Dimensions written by other software are often wrong: read the rows as they are.
            ws.reset_dimensions()
            for number, row in enumerate(ws.iter_rows(values_only=True), start=1):
                yield number, list(row)

    return rows


def _csv_rows(source: Source, encoding: str) -> RawRows:
    def rows() -> Iterator[tuple[int, list[Any]]]:
        with ExitStack() as stack:
            binary = stack.enter_context(_open_binary(source))
            text = stack.enter_context(io.TextIOWrapper(binary, encoding=encoding, newline=""))
            sample = text.read(65536)
            text.seek(0)
            try:
                dialect: Any = csv.Sniffer().sniff(sample, delimiters=",\t;|")
            except csv.Error:
                dialect = csv.excel
            # A record per row as Excel shows it, even when a quoted cell spans lines.
            for number, row in enumerate(csv.reader(text, dialect), start=1):
                yield number, list(row)

    return rows


# --- header --------------------------------------------------------------------------------


def _header_candidates(row: list[str | None], above: list[str | None]) -> list[list[str]]:
    """For each column the names it may go by: its own header, the merged parent header + its own,
    or (its own cell being empty under a vertically merged header) the header above."""
    filled: list[str | None] = []
    last: str | None = None
    for text in above:
        last = text if text is not None else last
        filled.append(last)
    out: list[list[str]] = []
    for i in range(max(len(row), len(above))):
        own = row[i] if i < len(row) else None
        parent = filled[i] if i < len(filled) else None
        names: list[str] = []
        if own is not None:
            names.append(own)
            if parent is not None and parent != own:
                names.append(f"{parent}/{own}")
        elif i < len(above) and above[i] is not None:
            names.append(str(above[i]))
        out.append(names)
    return out


def _match(
    candidates: list[list[str]], spec: Sequence[ColumnSpec], mapping: Mapping[str, str]
) -> tuple[dict[str, int], dict[str, str]]:
    """key -> column index, key -> header, choosing for each key its best-ranked name, leftmost on ties."""
    wanted: dict[str, list[str]] = {}
    for col in spec:
        if col.key in mapping:
            wanted[col.key] = [normalize_header(mapping[col.key])]
        else:
            wanted[col.key] = [normalize_header(n) for n in col.names()]
    best: dict[str, tuple[int, int, str]] = {}  # key -> (rank, column, header)
    taken: set[int] = set()
    for key, names in wanted.items():
        for ci, col_names in enumerate(candidates):
            for header in col_names:
                for norm in (normalize_header(header), normalize_header(_without_note(header))):
                    if norm in names:
                        rank = names.index(norm)
                        if key not in best or (rank, ci) < best[key][:2]:
                            best[key] = (rank, ci, header)
    # A column gives one key only: the key that names it best keeps it.
    index: dict[str, int] = {}
    headers: dict[str, str] = {}
    for key, (_rank, ci, header) in sorted(best.items(), key=lambda kv: kv[1][:2]):
        if ci in taken:
            continue
        taken.add(ci)
        index[key] = ci
        headers[key] = header.split("/")[-1] if key not in mapping and "/" in header else header
    return index, headers


def read_table(
    source: Source,
    spec: Sequence[ColumnSpec],
    *,
    sheet: str | None = None,
    mapping: Mapping[str, str] | None = None,
    filename: str | None = None,
) -> TableRead:
    """Find the header row of `sheet` (the first sheet when None) and map its columns to `spec`'s keys.

    `mapping` {key: "column header"} overrides the synonyms. Raises InputError for an unreadable file, a
    file whose content is not what its extension says, an empty sheet, a missing required column or a
    mapping that names a column the file does not have."""
    name = filename or (Path(source).name if not isinstance(source, bytes) else "upload")
    mapping = dict(mapping or {})
    keys = {c.key for c in spec}
    unknown = [k for k in mapping if k not in keys]
    if unknown:
        raise InputError(
            [Problem(("mapping", k), f"unknown column key; known keys: {', '.join(sorted(keys))}") for k in unknown],
            TABLE_TITLE,
        )
    kind = file_kind(source, name)
    encoding: str | None = None
    if kind == "xlsx":
        names = sheet_names(source, name)
        if sheet is None:
            sheet_name = names[0]
        elif sheet in names:
            sheet_name = sheet
        else:
            raise InputError(
                [Problem(("sheet",), f"no sheet named {sheet!r}; the workbook has: {', '.join(names)}", "not_found")],
                TABLE_TITLE,
            )
        raw = _xlsx_rows(source, name, sheet_name)
        where = sheet_name
    else:
        encoding = detect_encoding(source, name)
        raw = _csv_rows(source, encoding)
        where = Path(name).name

    head: list[list[str | None]] = []
    for number, cells in raw():
        head.append([cell_text(c) for c in cells])
        if number >= HEADER_SCAN_ROWS:
            break
    if not any(t is not None for row in head for t in row):
        raise InputError([Problem(("file", where, 1, ""), "the sheet is empty", "empty")], TABLE_TITLE)

    best_row, best_index, best_headers, best_score = 0, {}, {}, (-1, -1)
    for r, row in enumerate(head):
        above = head[r - 1] if r > 0 else []
        index, headers = _match(_header_candidates(row, above), spec, mapping)
        required = sum(1 for c in spec if c.required and c.key in index)
        score = (required, len(index))
        if score > best_score:
            best_row, best_index, best_headers, best_score = r, index, headers, score
    if not best_index:
        expected = "、".join(c.label_zh for c in spec if c.required) or "、".join(c.label_zh for c in spec)
        raise InputError(
            [Problem(("file", where, 1, ""), f"no header row found in the first {HEADER_SCAN_ROWS} rows: "
                     f"expected columns such as {expected}", "no_header")],
            TABLE_TITLE,
        )
    header_row = best_row + 1
    problems: list[Problem] = []
    for col in spec:
        if col.key in best_index:
            continue
        if col.key in mapping:
            problems.append(Problem(("mapping", col.key), f"the file has no column {mapping[col.key]!r}", "not_found"))
        elif col.required:
            also = "、".join(col.synonyms)
            problems.append(Problem(
                ("file", where, header_row, col.label_zh),
                f"missing column {col.label_zh}" + (f" (also accepted: {also})" if also else ""),
                "missing_column",
            ))
    if problems:
        raise InputError(problems, TABLE_TITLE)
    table = TableRead(
        filename=name,
        sheet=where,
        columns=best_headers,
        header_row=header_row,
        encoding=encoding,
        labels={c.key: c.label_zh for c in spec},
        _raw=raw,
        _index=best_index,
    )
    if next(iter(table.rows), None) is None:
        raise InputError(
            [Problem(("file", where, header_row + 1, ""), "the sheet has a header but no rows", "empty")],
            TABLE_TITLE,
        )
    return table
