"""Shared pieces of the API's file handling: CSV exports for Excel, uploads to a temp file, times."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from fastapi import HTTPException, UploadFile
from fastapi.responses import Response

from gis.errors import InputError, Problem


def csv_response(headers: Mapping[str, str], rows: Iterable[Mapping], filename: str, total: int) -> Response:
    """UTF-8 with a BOM so Excel shows the Chinese headers; `headers` maps field -> column title."""
    buf = io.StringIO()
    buf.write("\ufeff")
    writer = csv.writer(buf)
    writer.writerow(headers.values())
    for r in rows:
        writer.writerow([r.get(k) for k in headers])
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"',
                             "X-Total-Count": str(total)})


@contextmanager
def saved_upload(file: UploadFile, suffix: str, max_bytes: int) -> Iterator[Path]:
    """The upload written to a private temp file (deleted afterwards), counting bytes as they come."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="wangge-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        size = 0
        with path.open("wb") as out:
            while chunk := file.file.read(1 << 20):
                size += len(chunk)
                if size > max_bytes:
                    raise HTTPException(413, f"the file is larger than {max_bytes} bytes")
                out.write(chunk)
        yield path


def require_time_zone(**times: dt.datetime | None) -> None:
    """Times from clients must say their zone; a bare time is ambiguous between UTC and +08:00."""
    problems = [
        Problem(("query", name), "give a time zone, e.g. 2026-11-27T08:00:00+08:00")
        for name, value in times.items()
        if value is not None and value.tzinfo is None
    ]
    if problems:
        raise InputError(problems)
