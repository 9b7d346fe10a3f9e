"""One rule for an incident's category, kind and time in the API and the file import; failed rows
numbered as the spreadsheet's lines; the CLI import's progress, cut list and failures file."""

from __future__ import annotations

import csv
import datetime as dt
import io

import openpyxl
import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from gis.incidents import batch, fields
from tests.conftest import make_client


@pytest.fixture(scope="module")
def inside_point(engine):
    with engine.connect() as c:
        return c.execute(
            text(
                "SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM grid "
                "WHERE level = 4 AND valid_to IS NULL ORDER BY code LIMIT 1"
            )
        ).one()


# (category, dispute_kind, occurred_at) as people write them, and what both paths must store.
GOOD = [
    (
        ("矛盾纠纷", "邻里纠纷", "2024-05-01 08:00"),
        ("dispute", "neighbour", "2024-05-01T00:00:00+00:00"),
    ),
    (
        ("dispute", "neighbour", "2024-05-01T08:00:00+08:00"),
        ("dispute", "neighbour", "2024-05-01T00:00:00+00:00"),
    ),
    (("灾害", "", "2024-05-01T00:00:00Z"), ("disaster", None, "2024-05-01T00:00:00+00:00")),
    (("Environment", "", "2024/05/01 08:30"), ("environment", None, "2024-05-01T00:30:00+00:00")),
    (("安全隐患", "", "2024-05-01T08:00:00"), ("safety_hazard", None, "2024-05-01T00:00:00+00:00")),
    (
        ("纠纷", "婚姻家庭", "2024-05-01 09:15:30+09:00"),
        ("dispute", "family", "2024-05-01T00:15:30+00:00"),
    ),
]
# ... and inputs both must refuse, naming the same field.
BAD = [
    (("magic", "", "2024-05-01 08:00"), "category"),
    (("矛盾纠纷", "邻里纠纷", "yesterday-ish"), "occurred_at"),
    (("环境卫生", "邻里纠纷", "2024-05-01 08:00"), "dispute_kind"),
    (("矛盾纠纷", "gossip", "2024-05-01 08:00"), "dispute_kind"),
]


def test_the_rule_itself():
    assert fields.category_code("灾害/汛情") == fields.category_code(" DISASTER ") == "disaster"
    assert (
        fields.dispute_kind_code("土地/边界") == fields.dispute_kind_code("土地/边界纠纷") == "land"
    )
    assert fields.state_code("四办") == "handle" and fields.category_code("magic") is None
    assert fields.parse_time("2024-05-01 08:00") == dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    with pytest.raises(ValueError):
        fields.parse_time("9" * 400)


def test_the_api_and_the_import_read_the_same_inputs_alike(scratch_db_url, inside_point):
    x, y = inside_point
    rows = [
        dict(
            category=c,
            dispute_kind=k,
            occurred_at=t,
            description="同一规则",
            lon=x,
            lat=y,
            external_id=f"imp-{i}",
        )
        for i, ((c, k, t), _) in enumerate(GOOD + BAD)
    ]
    with make_client(scratch_db_url, "admin") as admin:
        refused = {}
        for i, ((c, k, t), _) in enumerate(GOOD + BAD):
            r = admin.post(
                "/incidents",
                json={
                    "category": c,
                    "dispute_kind": k or None,
                    "occurred_at": t,
                    "description": "同一规则",
                    "lon": x,
                    "lat": y,
                    "external_id": f"api-{i}",
                },
            )
            if i < len(GOOD):
                assert r.status_code == 201, r.text
            else:
                assert r.status_code == 422, r.text
                refused[i] = r.json()["errors"][0]["loc"][-1]
        payload = pd.DataFrame(rows).to_csv(index=False).encode("utf-8-sig")
        report = admin.post("/incidents/import", files={"file": ("same.csv", payload)}).json()
    # The import refuses the same rows for the same field (file line = index + 2).
    assert {f["row"] - 2: f["column"] for f in report["failed"]} == refused
    assert refused == {len(GOOD) + j: column for j, (_, column) in enumerate(BAD)}
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with engine.connect() as c:
        stored = {
            r.external_id: (
                r.category,
                r.dispute_kind,
                r.occurred_at.astimezone(dt.UTC).isoformat(),
            )
            for r in c.execute(
                text(
                    "SELECT external_id, category, dispute_kind, occurred_at FROM incident "
                    "WHERE external_id LIKE 'api-%' OR external_id LIKE 'imp-%'"
                )
            )
        }
    engine.dispose()
    for i, (_, want) in enumerate(GOOD):
        assert stored[f"api-{i}"] == stored[f"imp-{i}"] == want
    assert len(stored) == 2 * len(GOOD)


# --- row numbers ---------------------------------------------------------------------------------


def test_csv_rows_are_numbered_by_physical_line(scratch_db_url, inside_point, tmp_path):
    x, y = inside_point
    good = f"environment,垃圾,2024-05-01 08:00,{x},{y}"
    lines = [
        "category,description,occurred_at,lon,lat",  # 1
        good,  # 2
        "",  # 3 blank: skipped by the reader
        'environment,"两行',  # 4 a quoted line break ...
        f'描述",2024-05-01 08:00,{x},{y}',  # 5 ... ends here
        f"magic,坏类别,2024-05-01 08:00,{x},{y}",  # 6 fails
        "   ",  # 7 blanks only: skipped
        f'environment,"三\n行\n描述",nonsense,{x},{y}',  # 8-10: fails on its time
        f"environment,外面,2024-05-01 08:00,{x + 1},{y}",  # 11 outside the town
    ]
    payload = ("\r\n".join(lines) + "\r\n").encode("utf-8-sig")
    with make_client(scratch_db_url, "admin") as admin:
        r = admin.post("/incidents/import", files={"file": ("lines.csv", payload)})
    assert r.status_code == 200, r.text
    assert [(f["row"], f["column"]) for f in r.json()["failed"]] == [
        (6, "category"),
        (8, "occurred_at"),
        (11, "lon"),
    ]
    assert r.json()["created"] == 2


def test_xlsx_rows_are_the_sheet_rows(scratch_db_url, inside_point):
    x, y = inside_point
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["category", "description", "occurred_at", "lon", "lat"])  # row 1
    ws.append(["environment", "好", "2024-05-01 08:00", x, y])  # row 2
    ws.append(["magic", "坏", "2024-05-01 08:00", x, y])  # row 3
    (
        ws.cell(6, 1, "environment"),
        ws.cell(6, 2, "没有时间"),
        ws.cell(6, 4, x),
        ws.cell(6, 5, y),
    )  # row 6
    buf = io.BytesIO()
    wb.save(buf)
    with make_client(scratch_db_url, "admin") as admin:
        r = admin.post("/incidents/import", files={"file": ("rows.xlsx", buf.getvalue())})
    failed = [(f["row"], f["column"]) for f in r.json()["failed"]]
    # Rows 4 and 5 are empty in the sheet and read as empty rows; row 6 fails on its time.
    assert failed == [(3, "category"), (4, "category"), (5, "category"), (6, "occurred_at")]


# --- the CLI import ----------------------------------------------------------------------


def bad_file(path, x, y, n_bad: int):
    frame = pd.DataFrame(
        [
            dict(
                category="magic", description=f"坏{i}", occurred_at="2024-05-01 08:00", lon=x, lat=y
            )
            for i in range(n_bad)
        ]
    )
    frame["=bad"] = ""  # a column named like a formula ...
    frame.loc[0, "=bad"] = "x\x00y"  # ... where the first row fails (NUL)
    frame.to_csv(path, index=False, encoding="utf-8-sig")


def test_progress_comes_part_by_part(scratch_db_url, inside_point, tmp_path):
    from gis.cli import _import_parts

    x, y = inside_point
    bad_file(tmp_path / "bad.csv", x, y, 230)
    checked, written = [], []
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with Session(engine) as session:
        report = batch.import_incidents(
            session,
            batch.open_incident_file(tmp_path / "bad.csv", max_rows=1000, chunk_rows=50),
            source="t",
            checked=checked.append,
            progress=written.append,
        )
    engine.dispose()
    assert checked == written == [50, 50, 50, 50, 30] and report.rows == 230
    # The CLI cuts a 150,000-row file into enough parts for the bar to move.
    assert 150_000 / _import_parts(150_000) >= 10 and _import_parts(10_000_000) == batch.CHUNK


def test_cli_says_how_many_were_cut_and_writes_every_failure(
    scratch_db_url, inside_point, tmp_path, monkeypatch
):
    from typer.testing import CliRunner

    from gis import settings as settings_mod
    from gis.cli import SHOWN_FAILURES, app

    x, y = inside_point
    n = SHOWN_FAILURES + 30
    bad_file(tmp_path / "bad.csv", x, y, n)
    out = tmp_path / "failures.csv"
    monkeypatch.setenv("DATABASE_URL", scratch_db_url.render_as_string(hide_password=False))
    settings_mod.get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app, ["incidents", "import", str(tmp_path / "bad.csv"), "--failures-csv", str(out)]
        )
        short = CliRunner().invoke(app, ["incidents", "import", str(tmp_path / "bad.csv")])
    finally:
        settings_mod.get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert f"{n} rows failed" in result.output and "… and 30 more" in result.output
    assert "… and 30 more (all of them: --failures-csv FILE)" in short.output
    rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8-sig"), newline="")))
    assert rows[0] == ["行号", "列", "原因"]
    assert [int(r[0]) for r in rows[1:]] == list(range(2, n + 2))  # every row, by line number
    assert rows[1][1:] == ["'=bad", "contains a NUL character"]  # the formula-like name neutralised
    assert all(r[1:] == ["category", "unknown category 'magic'"] for r in rows[2:])
