"""Shared pieces of the API's file handling: exports (CSV, xlsx), uploads to a temp file, times."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from fastapi import HTTPException, Request, UploadFile
from fastapi.responses import Response

from gis.errors import InputError, Problem
from gis.spreadsheet import CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE, Table


def table_response(
    table: Table, rows: Iterable[Mapping[str, Any]], name: str, total: int,
    fmt: Literal["csv", "xlsx"] = "csv", extra_headers: Mapping[str, str] | None = None,
) -> Response:
    """An export as a download: CSV (UTF-8 with a BOM so Excel shows the Chinese) or xlsx, both
    written by `gis.spreadsheet.Table` (formula-safe, ids as text, Beijing time, Chinese labels)."""
    if fmt == "xlsx":
        body, media_type = table.xlsx_bytes(rows), XLSX_MEDIA_TYPE
    else:
        body, media_type = table.csv_bytes(rows), CSV_MEDIA_TYPE
    return Response(body, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"',
                             "X-Total-Count": str(total), **(extra_headers or {})})


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


def parse_mapping(raw: str | None) -> dict[str, str] | None:
    """An import's `mapping` form field: a JSON object {field key: column header as in the file}; None when
    it is not given. Anything else is a 422 naming the field."""
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(Problem(("body", "mapping"), f"not JSON ({exc.msg})", "bad_mapping")) from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InputError(Problem(("body", "mapping"), 'give a JSON object {"field": "column header", ...}',
                                 "bad_mapping"))
    return value


def require_time_zone(**times: dt.datetime | None) -> None:
    """Times from clients must say their zone; a bare time is ambiguous between UTC and +08:00."""
    problems = [
        Problem(("query", name), "give a time zone, e.g. 2026-11-27T08:00:00+08:00")
        for name, value in times.items()
        if value is not None and value.tzinfo is None
    ]
    if problems:
        raise InputError(problems)


def point_feature(row: Mapping[str, Any]) -> dict[str, Any]:
    """A list row with `lon`/`lat` as a GeoJSON Point feature; every other field is a property."""
    return {"type": "Feature", "id": row["id"], "geometry": {"type": "Point", "coordinates": [row["lon"], row["lat"]]},
            "properties": {k: v for k, v in row.items() if k not in ("lon", "lat")}}


def offset_next_link(request: Request, offset: int, limit: int, total: int) -> str | None:
    """The next page's URL (same query, offset moved on, limit spelt out), or None on the last page."""
    if offset + limit >= total:
        return None
    return str(request.url.include_query_params(offset=offset + limit, limit=limit))
