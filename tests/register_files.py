"""Builders of register files the way townships write them, for the register tests.

An .xlsx with title rows above the header, merged (two-level) header cells and a 合计 row; CSV in GBK,
GB18030 or UTF-8 with or without BOM. ID numbers are made here with their own check-digit code, so the
tests do not check the importer against itself.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import openpyxl
from openpyxl.utils import get_column_letter

# A header cell: "户号" (one cell, merged down over the sub-header row when the sheet has one) or
# ("户主信息", "姓名") (a sub-header under a parent cell merged across its columns).
Header = str | tuple[str, str]


def make_id(birth: dt.date, seq: int, *, male: bool = True, region: str = "411324") -> str:
    """An 18-digit ID number with a right check digit (GB 11643-1999, computed here independently)."""
    order = seq % 500 * 2 + (1 if male else 0)  # the 17th digit odd for men
    body = f"{region}{birth:%Y%m%d}{order:03d}"
    total = 0
    for i, ch in enumerate(body):
        total += int(ch) * (2 ** (17 - i) % 11)
    return body + "10X98765432"[total % 11]


def wrong_check_digit(id_number: str) -> str:
    last = id_number[-1]
    return id_number[:-1] + ("0" if last != "0" else "1")


def xlsx_bytes(
    sheets: dict[str, tuple[Sequence[Header], Sequence[Sequence[Any]]]],
    *,
    title_rows: Sequence[str] = (),
    total_row: bool = False,
) -> bytes:
    """A workbook: each sheet with `title_rows` (merged across the table) above its header, the header
    (two rows with merged cells when any column has a parent), the rows and optionally a 合计 row."""
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, (headers, rows) in sheets.items():
        ws = wb.create_sheet(name)
        width = len(headers)
        r = 1
        for title in title_rows:
            ws.cell(r, 1, title)
            if width > 1:
                ws.merge_cells(start_row=r, start_column=1, end_row=r, end_column=width)
            r += 1
        two_level = any(isinstance(h, tuple) for h in headers)
        c = 1
        while c <= width:
            h = headers[c - 1]
            if isinstance(h, tuple):
                parent = h[0]
                end = c
                while end < width and isinstance(headers[end], tuple) and headers[end][0] == parent:
                    end += 1
                ws.cell(r, c, parent)
                if end > c:
                    ws.merge_cells(start_row=r, start_column=c, end_row=r, end_column=end)
                for k in range(c, end + 1):
                    ws.cell(r + 1, k, headers[k - 1][1])
                c = end + 1
            else:
                ws.cell(r, c, h)
                if two_level:
                    ws.merge_cells(start_row=r, start_column=c, end_row=r + 1, end_column=c)
                c += 1
        r += 2 if two_level else 1
        for row in rows:
            for ci, value in enumerate(row, start=1):
                ws.cell(r, ci, value)
            r += 1
        if total_row:
            ws.cell(r, 1, "合计")
            ws.cell(r, width, len(rows))
        for ci in range(1, width + 1):
            ws.column_dimensions[get_column_letter(ci)].width = 14
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def csv_bytes(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, encoding: str = "gbk") -> bytes:
    """A CSV in `encoding` ("utf-8-sig" writes the BOM that Excel writes)."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(headers)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue().encode(encoding)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
