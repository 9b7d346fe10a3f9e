"""Hostile uploads through POST /grids/import: each is refused with the exact status and a
problem+json body naming the problem, the grid table stays byte-for-byte the same, and no
upload temp directory is left behind.

The app's temp dir is pointed at a private directory for each test (tempfile.tempdir), so "nothing
left behind" is checked exactly and other processes using the system temp dir cannot disturb it.
"""

from __future__ import annotations

import io
import json
import math
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import make_client

FINGERPRINT = text(
    "SELECT count(*), md5(string_agg(code || coalesce(valid_to::text,'-') || ST_AsEWKT(geom), ',' "
    "ORDER BY id)) FROM grid"
)
PROBLEM_JSON = "application/problem+json"
BOMB_BYTES = 320 * 1024 * 1024  # ≥ 300 MB of zeros once inflated


def fingerprint(url) -> tuple:
    eng = create_engine(url, poolclass=NullPool)
    try:
        with eng.connect() as conn:
            return tuple(conn.execute(FINGERPRINT).one())
    finally:
        eng.dispose()


class Guard:
    """Checks that nothing was written: the grid table is unchanged and no temp file remains.

    The app's temp dir is a private directory for the test (tempfile.tempdir), so the check is
    exact; `created` lists the temp directories the request made there (wangge-upload-*,
    wangge-zip-*), to show where a refusal happened and that the check is not vacuous."""

    def __init__(self, url, tmp: Path):
        self.url, self.tmp = url, tmp
        self.before = fingerprint(url)
        self.created: list[str] = []
        assert self.before[0] > 0

    def __call__(self) -> None:
        assert fingerprint(self.url) == self.before, "the grid table changed"
        left = sorted(p.name for p in self.tmp.iterdir())
        assert not left, f"temp files left behind: {left}"

    def made(self, prefix: str) -> bool:
        return any(Path(d).name.startswith(prefix) for d in self.created)


@pytest.fixture
def guard(scratch_db_url, tmp_path, monkeypatch):
    tmp = tmp_path / "systmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    g = Guard(scratch_db_url, tmp)
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        path = real_mkdtemp(*args, **kwargs)
        g.created.append(path)
        assert Path(path).parent == tmp, path
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    yield g
    g()


def assert_problem(resp, status: int, *, kind: str | None = None, error_type: str | None = None,
                   loc: list | None = None) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    assert resp.headers["content-type"].split(";")[0] == PROBLEM_JSON, resp.headers["content-type"]
    body = resp.json()
    assert body["status"] == status and body["title"], body
    if kind is not None:
        assert body["type"].endswith("/" + kind), body
    if error_type is not None or loc is not None:
        errors = body.get("errors") or []
        assert errors, body
        if error_type is not None:
            assert errors[0]["type"] == error_type, body
        if loc is not None:
            assert errors[0]["loc"] == loc, body
    return body


def upload(client, name: str, content: bytes, **form):
    return client.post("/grids/import", files={"file": (name, content)}, data=form)


def zip_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name)  # kept verbatim: writestr(name) would not sanitise either
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def _deflated_zeros(total: int) -> tuple[bytes, int]:
    """A raw deflate stream of `total` zero bytes and its CRC-32, without compressing them all:
    after a full flush each 1 MB block is self-contained, so one compressed block is repeated."""
    mb = 1 << 20
    assert total % mb == 0
    zeros = bytes(mb)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(total // mb):
        crc = zlib.crc32(zeros, crc)
    return block * (total // mb) + comp.flush(zlib.Z_FINISH), crc


def _zip_one_entry(name: str, size: int, crc: int, deflated: bytes) -> bytes:
    """A zip archive holding one deflated entry, written field by field (APPNOTE 4.3)."""
    fname = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(deflated), size,
                        len(fname), 0) + fname
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(deflated),
                          size, len(fname), 0, 0, 0, 0, 0o100644 << 16, 0) + fname
    offset = len(local) + len(deflated)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), offset, 0)
    return local + deflated + central + end


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """One deflated entry of 320 MB of zeros in about 330 KB, made in a fraction of a second."""
    deflated, crc = _deflated_zeros(BOMB_BYTES)
    data = _zip_one_entry("grids.shp", BOMB_BYTES, crc, deflated)
    assert len(data) < 1024 * 1024
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # a well-formed archive that really inflates
        (info,) = zf.infolist()
        assert info.file_size == BOMB_BYTES and info.compress_type == zipfile.ZIP_DEFLATED
        with zf.open(info) as entry:
            assert entry.read(1 << 20) == bytes(1 << 20)
    return data


@pytest.fixture
def no_extraction(monkeypatch):
    """Records any attempt to read an entry out of a zip (there must be none for refused archives)."""
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, mode="r", *args, **kwargs):
        if mode == "r":
            opened.append(getattr(name, "filename", name))
        return real_open(self, name, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return opened


def valid_grid_file(client) -> bytes:
    """A real, importable file: one current group grid, renamed (so an import would write)."""
    fc = client.get("/grids", params={"level": 4, "limit": 1}).json()
    assert fc["features"], fc
    fc["features"][0]["properties"]["name"] += "（改）"
    return json.dumps(fc, ensure_ascii=False).encode()


# --- archives ----------------------------------------------------------------------------------


def test_zip_bomb_refused_before_extraction(scratch_client, guard, zip_bomb, no_extraction):
    resp = upload(scratch_client, "bomb.zip", zip_bomb)
    body = assert_problem(resp, 422, kind="invalid-input", error_type="unsafe_archive", loc=["file"])
    assert "zip bomb" in body["errors"][0]["msg"] or "expands" in body["errors"][0]["msg"], body
    assert no_extraction == [], f"entries were read before the archive was refused: {no_extraction}"
    assert guard.made("wangge-upload-")  # it got as far as the reader, which refused it
    guard()


def test_zip_lying_about_its_size_refused(scratch_client, guard, zip_bomb):
    """The directory says 1 MB (a harmless ratio) but the entry inflates to 320 MB: extraction
    counts what actually comes out and stops; the half-extracted directory is removed."""
    deflated, crc = _deflated_zeros(BOMB_BYTES)
    data = _zip_one_entry("grids.shp", 1 << 20, crc, deflated)
    resp = upload(scratch_client, "liar.zip", data)
    body = assert_problem(resp, 422, loc=["file"])
    assert body["errors"][0]["type"] in {"unsafe_archive", "unreadable_file"}, body
    assert guard.made("wangge-zip-")  # extraction began, and its directory is gone again
    guard()


@pytest.mark.parametrize(
    "entry",
    ["../evil.shp", "grids/../../evil.shp", "/etc/evil.shp", "/tmp/evil.shp", "C:/evil.shp", "..\\evil.shp"],
)
def test_zip_entry_outside_the_archive_refused(scratch_client, guard, no_extraction, entry):
    data = zip_bytes([("grids.shp", b"\0" * 100), (entry, b"\0" * 100)])
    assert entry in zipfile.ZipFile(io.BytesIO(data)).namelist()  # the hostile name really is in it
    resp = upload(scratch_client, "grids.zip", data)
    body = assert_problem(resp, 422, error_type="unsafe_archive", loc=["file"])
    assert body["errors"][0]["ctx"]["entry"] == entry, body
    assert no_extraction == []
    assert guard.made("wangge-upload-")
    guard()


def test_zip_with_too_many_entries_refused(scratch_db_url, accounts, guard, no_extraction):
    with make_client(scratch_db_url, "admin") as client:
        limit = client.app.state.settings.max_zip_entries
        data = zip_bytes([(f"part{i:04d}.txt", b"x") for i in range(limit + 1)])
        resp = upload(client, "grids.zip", data)
    body = assert_problem(resp, 422, error_type="unsafe_archive", loc=["file"])
    assert body["errors"][0]["ctx"] == {"entries": limit + 1, "limit": limit}, body
    assert no_extraction == []
    assert guard.made("wangge-upload-")
    guard()


# --- size caps ---------------------------------------------------------------------------------

SMALL_UPLOAD = 64 * 1024


def _multipart(boundary: str, filename: str, payload: bytes) -> list[bytes]:
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    chunks = [head]
    step = 16 * 1024
    chunks += [payload[i : i + step] for i in range(0, len(payload), step)]
    chunks.append(tail)
    return chunks


def test_oversize_file_with_content_length(scratch_db_url, accounts, guard):
    payload = b'{"type": "FeatureCollection", "features": []}' + b" " * (SMALL_UPLOAD * 2)
    with make_client(scratch_db_url, "admin", max_upload_bytes=SMALL_UPLOAD) as client:
        resp = upload(client, "grids.geojson", payload)
    assert int(resp.request.headers["content-length"]) > SMALL_UPLOAD
    assert_problem(resp, 413, kind="http-413")
    assert guard.created == []  # refused from the header, before the endpoint ran
    guard()


def test_oversize_file_chunked_without_content_length(scratch_db_url, accounts, guard):
    payload = b'{"type": "FeatureCollection", "features": []}' + b" " * (SMALL_UPLOAD * 2)
    boundary = "wangge-test-boundary"

    def body():
        yield from _multipart(boundary, "grids.geojson", payload)

    with make_client(scratch_db_url, "admin", max_upload_bytes=SMALL_UPLOAD) as client:
        resp = client.post(
            "/grids/import",
            content=body(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        )
    assert "content-length" not in resp.request.headers
    assert resp.request.headers.get("transfer-encoding") == "chunked"
    assert_problem(resp, 413, kind="http-413")
    assert guard.created == []  # refused while the body was read, before the endpoint ran
    guard()


def test_understated_content_length_still_counted(scratch_db_url, accounts, guard):
    """A Content-Length that lies low is no way past the cap: the bytes received are counted."""
    boundary = "wangge-test-boundary"
    data = b"".join(_multipart(boundary, "grids.geojson", b"{}" + b" " * (SMALL_UPLOAD * 2)))
    with make_client(scratch_db_url, "admin", max_upload_bytes=SMALL_UPLOAD) as client:
        resp = client.post(
            "/grids/import",
            content=data,
            headers={"content-type": f"multipart/form-data; boundary={boundary}", "content-length": "100"},
        )
    assert resp.request.headers["content-length"] == "100"
    assert_problem(resp, 413, kind="http-413")
    assert guard.created == []
    guard()


# --- geometry caps -----------------------------------------------------------------------------


def test_polygon_with_ten_times_the_vertex_cap(scratch_db_url, accounts, guard):
    cap = 40
    n = cap * 10
    ring = [[113.0 + 0.01 * math.cos(2 * math.pi * i / n), 33.0 + 0.01 * math.sin(2 * math.pi * i / n)]
            for i in range(n)]
    ring.append(ring[0])
    small = [[113.1, 33.1], [113.11, 33.1], [113.11, 33.11], [113.1, 33.11], [113.1, 33.1]]
    fc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"code": "411324105001001", "name": "小"},
             "geometry": {"type": "Polygon", "coordinates": [small]}},
            {"type": "Feature", "properties": {"code": "411324105001002", "name": "大"},
             "geometry": {"type": "Polygon", "coordinates": [ring]}},
        ],
    }
    with make_client(scratch_db_url, "admin", max_vertices_per_geometry=cap) as client:
        resp = upload(client, "grids.geojson", json.dumps(fc, ensure_ascii=False).encode())
    body = assert_problem(resp, 422, error_type="too_many_vertices", loc=["features", 2, "geometry"])
    assert len(body["errors"]) == 1, body  # the small feature is not blamed
    assert body["errors"][0]["ctx"] == {"vertices": n + 1, "limit": cap}, body
    assert guard.made("wangge-upload-")
    guard()


# --- JSON bodies -------------------------------------------------------------------------------


def _points_body(min_bytes: int) -> bytes:
    point = {"lon": 113.0, "lat": 33.0}
    n = min_bytes // len(json.dumps(point)) + 10
    return json.dumps({"crs": "wgs84", "points": [point] * n}).encode()


def test_oversize_json_body_with_content_length(scratch_db_url, accounts, guard):
    limit = 4096
    data = _points_body(limit * 2)
    with make_client(scratch_db_url, "admin", max_json_body_bytes=limit) as client:
        resp = client.post("/grids/locate", content=data, headers={"content-type": "application/json"})
    assert int(resp.request.headers["content-length"]) > limit
    assert_problem(resp, 413, kind="http-413")
    guard()


def test_oversize_json_body_chunked(scratch_db_url, accounts, guard):
    limit = 4096
    data = _points_body(limit * 2)

    def body():
        for i in range(0, len(data), 1000):
            yield data[i : i + 1000]

    with make_client(scratch_db_url, "admin", max_json_body_bytes=limit) as client:
        resp = client.post("/grids/locate", content=body(), headers={"content-type": "application/json"})
    assert "content-length" not in resp.request.headers
    assert_problem(resp, 413, kind="http-413")
    guard()


def test_oversize_json_body_default_cap(scratch_client, guard):
    limit = scratch_client.app.state.settings.max_json_body_bytes
    resp = scratch_client.post("/grids/locate", content=_points_body(limit + 1),
                               headers={"content-type": "application/json"})
    assert_problem(resp, 413, kind="http-413")
    guard()


# --- who may upload ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["command_center", "emergency", "grid_staff", "supervisor", None])
def test_upload_refused_for_roles_without_edit_grids(scratch_db_url, accounts, guard, role):
    with make_client(scratch_db_url, "admin") as admin:
        data = valid_grid_file(admin)
    with make_client(scratch_db_url, role) as client:
        resp = upload(client, "grids.geojson", data)
    if role is None:
        assert_problem(resp, 401, kind="http-401")
        assert resp.headers.get("www-authenticate", "").startswith("Bearer")
    else:
        assert_problem(resp, 403, kind="http-403")
    assert guard.created == []  # the endpoint never ran
    guard()


def test_planner_may_import(scratch_db_url, accounts, guard):
    """The control for the 403s above: the same file from a planner is accepted (as a dry run)."""
    with make_client(scratch_db_url, "admin") as admin:
        data = valid_grid_file(admin)
    with make_client(scratch_db_url, "planner") as client:
        resp = upload(client, "grids.geojson", data, dry_run="true")
    assert resp.status_code == 200, resp.text[:500]
    assert resp.json()["dry_run"] is True and resp.json()["replaced"] == 1, resp.json()
    assert guard.made("wangge-upload-")  # so the empty temp dir above is a real observation
    guard()
