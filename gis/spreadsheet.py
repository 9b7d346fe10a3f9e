"""Tables people open in a spreadsheet (CSV for Excel, or xlsx): the one writer of every export.

Every export of the API and the CLI goes through `Table`, which makes four promises for every
cell, whatever column it is in and whoever wrote the text:

- No cell is read as a formula. OWASP's CSV-injection advice: a cell whose text begins with
  = + - @, a tab or a carriage return is prefixed with a single quote ('), which makes Excel and
  LibreOffice take it as text (the quote shows in the cell: it is the mark that the text was
  neutralised). Leading blanks do not hide a formula character: " =1+1" is prefixed too.
- Identifiers stay text. A 19-digit 户号 or an 18-digit ID number keeps only 15 significant digits
  in Excel, a 15-digit grid code is shown as 4.11324E+14, a leading 0 of a phone number is lost.
  Every value that is text in Wangge (str) and would be read as a number is written in a text
  form: in CSV the same leading quote (one documented convention for "take this cell as text";
  ="…" would be a formula and a leading tab is itself one of OWASP's formula characters); in
  xlsx a cell typed as text (t="s", number format @), which keeps every digit with no mark.
  Numbers (int, float) stay numbers; an int of more than 11 digits is text, like an identifier.
- Times are Beijing time with the zone in the value: "2024-05-01 08:00:00+08:00". Sorting the
  text sorts by time, and no reader has to guess whether a time is UTC.
- Codes are Chinese: a column's labels come from the dictionaries the pages use
  (gis.incidents.categories, gis.incidents.loop, gis.flood.labels, maps.labels); booleans are 是/否.

For xlsx pick `format=xlsx` (API) or a `.xlsx` file name (CLI): the cleanest for Excel users.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from gis.clock import BEIJING

YES, NO = "是", "否"
# Whether personal fields of a row were shown or masked for the reader.
PERSONAL = {"shown": "显示", "masked": "已脱敏"}

# OWASP "CSV Injection": the characters that start a formula in Excel, LibreOffice or Sheets.
FORMULA_STARTS = frozenset("=+-@\t\r")
# What a spreadsheet would read as a number (and so round, or show as 4.1E+14, or strip of a
# leading 0): digits with an optional sign, decimal point, thousands commas, exponent or percent.
_NUMBER_LIKE = re.compile(r"[+-]?(\d[\d,]*\.?\d*|\.\d+)([eE][+-]?\d+)?%?")
# Excel's General format shows an integer of 12 or more digits as 4.11324E+14 (and keeps only 15
# significant digits): such an int is written as text.
_MAX_PLAIN_DIGITS = 11
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"


def beijing_time(value: dt.datetime | str) -> str:
    """An instant as Beijing time with its zone: 2024-05-01 08:00:00+08:00 (ISO text accepted)."""
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:
        # Stored times are timestamptz: a naive one here is a bug upstream, not a guess to make.
        raise ValueError(f"a time without a zone cannot be exported: {value!r}")
    return when.astimezone(BEIJING).isoformat(sep=" ", timespec="seconds")


def is_formula_like(text: str) -> bool:
    """Would a spreadsheet start a formula for this text (also after leading blanks)?"""
    return bool(text) and (text[0] in FORMULA_STARTS or text.lstrip()[:1] in FORMULA_STARTS)


def is_number_like(text: str) -> bool:
    """Would a spreadsheet read this text as a number (and so possibly lose digits of it)?"""
    return _NUMBER_LIKE.fullmatch(text.strip()) is not None


def needs_text_mark(text: str) -> bool:
    """Text that a CSV reader would take as a formula or a number unless marked as text; text
    that already begins with the mark gets one more, so the mark can always be taken off again
    (`csv_text_read`) and the value comes back exactly."""
    return text.startswith("'") or is_formula_like(text) or is_number_like(text)


def csv_text(text: str) -> str:
    """The CSV cell for a text value: marked with a leading ' when a spreadsheet would otherwise
    run it as a formula or read it as a number."""
    return "'" + text if needs_text_mark(text) else text


def csv_text_read(cell: str) -> str:
    """The text a CSV cell written by `csv_text` stands for (its text mark taken off): how a reader
    of our own exports, such as a re-import, gets the value back."""
    return cell[1:] if cell.startswith("'") and needs_text_mark(cell[1:]) else cell


@dataclass(frozen=True)
class Table:
    """An export's columns: field -> Chinese header (in order), the Chinese labels of coded
    fields, and the fields that hold instants (ISO text or datetime)."""

    headers: Mapping[str, str]
    labels: Mapping[str, Mapping[Any, str]] = field(default_factory=dict)
    times: frozenset[str] = frozenset()

    def value(self, name: str, raw: Any) -> str | int | float | None:
        """The cell of field `name` before the file format's own marking: None, a number or text."""
        if raw is None:
            return None
        if name in self.labels:
            label = self.labels[name].get(raw)
            if label is not None:
                return label
        if isinstance(raw, bool):
            return YES if raw else NO
        if name in self.times or isinstance(raw, dt.datetime):
            return beijing_time(raw) if raw != "" else None
        if isinstance(raw, int):
            return raw if len(str(abs(raw))) <= _MAX_PLAIN_DIGITS else str(raw)
        if isinstance(raw, float):
            return raw if math.isfinite(raw) else None
        if isinstance(raw, (list, tuple, dict)):
            return json.dumps(raw, ensure_ascii=False, default=str)
        return str(raw)

    def cells(self, row: Mapping[str, Any]) -> list[str | int | float | None]:
        return [self.value(name, row.get(name)) for name in self.headers]

    # --- CSV ---------------------------------------------------------------------------------

    def write_csv(self, out: IO[str], rows: Iterable[Mapping[str, Any]]) -> int:
        """Header and rows to a text stream opened with newline=""; the caller writes the BOM
        (utf-8-sig) so Excel reads UTF-8. Returns the number of rows."""
        writer = csv.writer(out)
        writer.writerow([csv_text(h) for h in self.headers.values()])
        n = 0
        for row in rows:
            writer.writerow([_csv_cell(v) for v in self.cells(row)])
            n += 1
        return n

    def csv_bytes(self, rows: Iterable[Mapping[str, Any]]) -> bytes:
        buf = io.StringIO(newline="")
        self.write_csv(buf, rows)
        return buf.getvalue().encode("utf-8-sig")

    # --- xlsx --------------------------------------------------------------------------------

    def xlsx_bytes(self, rows: Iterable[Mapping[str, Any]], sheet: str = "导出") -> bytes:
        """One sheet: a bold header, text typed as text (never a formula), numbers as numbers."""
        from openpyxl import Workbook
        from openpyxl.styles import Font

        wb = Workbook()
        ws = wb.active
        ws.title = sheet[:31]
        bold = Font(bold=True)
        for c, header in enumerate(self.headers.values(), start=1):
            _xlsx_text(ws.cell(1, c), header).font = bold
        for r, row in enumerate(rows, start=2):
            for c, value in enumerate(self.cells(row), start=1):
                cell = ws.cell(r, c)
                if isinstance(value, str):
                    _xlsx_text(cell, value)
                elif value is not None:
                    cell.value = value
        ws.freeze_panes = "A2"
        buf = io.BytesIO()
        wb.save(buf)
        return buf.getvalue()

    def write_sheet(self, workbook: Any, rows: Iterable[Mapping[str, Any]], sheet: str) -> int:
        """One more sheet of a write-only workbook (openpyxl `Workbook(write_only=True)`), streamed row by
        row with the same cells as `xlsx_bytes`: many sheets, constant memory. Returns the number of rows."""
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.styles import Font

        ws = workbook.create_sheet(sheet[:31])
        ws.freeze_panes = "A2"
        bold = Font(bold=True)
        header = []
        for h in self.headers.values():
            cell = _xlsx_text(WriteOnlyCell(ws), h)
            cell.font = bold
            header.append(cell)
        ws.append(header)
        n = 0
        for row in rows:
            ws.append([_xlsx_text(WriteOnlyCell(ws), v) if isinstance(v, str) else v for v in self.cells(row)])
            n += 1
        return n

    def write_file(self, path: Path, rows: Iterable[Mapping[str, Any]]) -> int:
        """The CLI's exports: .xlsx gives a workbook, anything else CSV (UTF-8 with BOM)."""
        rows = list(rows)
        if path.suffix.lower() == ".xlsx":
            path.write_bytes(self.xlsx_bytes(rows))
        else:
            with path.open("w", encoding="utf-8-sig", newline="") as f:
                self.write_csv(f, rows)
        return len(rows)


def _csv_cell(value: str | int | float | None) -> str | int | float:
    if value is None:
        return ""
    return csv_text(value) if isinstance(value, str) else value


def _xlsx_text(cell: Any, text: str) -> Any:
    # openpyxl would store "=…" as a formula; the type is set after the value to keep it text.
    # Formula-like text also gets Excel's own quote-prefix flag: editing the cell keeps it text.
    cell.value = text
    cell.data_type = "s"
    cell.number_format = "@"
    if is_formula_like(text):
        cell.quotePrefix = True
    return cell
