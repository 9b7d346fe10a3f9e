"""The register over HTTP (through the real ASGI app) and the CLI: upload, report, audit, masking, the
uploaded file removed, who lived in a household on a date, edits."""

from __future__ import annotations

import datetime as dt
import json
import tempfile

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import make_client
from tests.register_files import csv_bytes, make_id, xlsx_bytes


def _db(url):
    return create_engine(url, poolclass=NullPool)


def _group_points(url, n=3):
    eng = _db(url)
    with eng.connect() as c:
        rows = c.execute(text(
            "SELECT code, ST_X(p), ST_Y(p) FROM (SELECT code, ST_PointOnSurface(geom) p FROM grid "
            "WHERE valid_to IS NULL AND level = 4 ORDER BY code LIMIT :n) s"), {"n": n}).all()
    eng.dispose()
    return rows


def _files(url):
    (g1, lon1, lat1), (g2, lon2, lat2), _ = _group_points(url)
    hh = xlsx_bytes({"户": (["户号", "户主姓名", "联系电话", "门牌号", "经度", "纬度"],
                            [["N1", "赵一", "13811112222", "新一号", lon1, lat1],
                             ["N2", "钱二", "13833334444", "新二号", lon2, lat2]])}, title_rows=["新户"])
    people = [["N1", "赵一", make_id(dt.date(1950, 1, 2), 1)], ["N1", "赵二", make_id(dt.date(2018, 5, 6), 2)],
              ["N2", "钱二", make_id(dt.date(1980, 3, 4), 3)]]
    res = csv_bytes(["户编号", "成员姓名", "公民身份号码"], people, encoding="gbk")
    return hh, res, {"N1": g1, "N2": g2}, people


def test_upload_two_files_report_audit_and_no_file_kept(scratch_db_url, accounts, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    hh, res, groups, people = _files(scratch_db_url)
    with make_client(scratch_db_url, "command_center") as c:
        r = c.post("/register/households/import", data={"as_of": "2026-06-01"},
                   files={"file": ("新户.xlsx", hh), "residents_file": ("人口.csv", res)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["written"] is True and body["problem_count"] == 0
    assert [(f["kind"], f["sheet"], f["encoding"]) for f in body["files"]] == [
        ("households", "户", None), ("residents", "人口.csv", "gbk")]
    assert {p["household_no"]: p["group_code"] for p in body["placed"]} == groups
    assert body["households"]["written"] == 2 and body["residents"]["written"] == 3
    assert list(tmp_path.iterdir()) == []  # the uploads are gone
    eng = _db(scratch_db_url)
    with eng.connect() as conn:
        audit = conn.execute(text(
            "SELECT a.action, a.detail FROM audit_log a WHERE a.action = 'register.households.import'")).one()
        counts = conn.execute(text(
            "SELECT h.household_no, h.residents, h.elderly, h.children FROM household h "
            "WHERE h.household_no IN ('N1', 'N2') ORDER BY 1")).all()
    eng.dispose()
    assert audit.detail["files"] == "新户.xlsx, 人口.csv" and audit.detail["rows"] == 5
    assert [tuple(r) for r in counts] == [("N1", 2, 1, 1), ("N2", 1, 0, 0)]


def test_file_problems_are_422_and_row_problems_are_in_the_report(scratch_db_url, accounts):
    with make_client(scratch_db_url, "admin") as c:
        r = c.post("/register/households/import", files={"file": ("户.xlsx", b"not a workbook at all")})
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["errors"][0]["loc"] == ["file", "户.xlsx"]
        r = c.post("/register/households/import", files={"file": ("户.pdf", b"%PDF")})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "file"]
        r = c.post("/register/households/import", files={"file": ("户.csv", "户号,姓名\nH1,张三\n".encode())},
                   data={"mapping": "{not json"})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "mapping"]


def _problem_locs(body):
    return [tuple(p["loc"]) for p in body["problems"]]


def test_personal_values_masked_in_the_report_for_the_command_center(scratch_db_url, accounts):
    (_, lon, lat), *_ = _group_points(scratch_db_url, 1)
    data = csv_bytes(["户号", "姓名", "手机号", "地址", "经度", "纬度"],
                     [["M1", "孙一", "1381234", "某村1号", lon, lat],
                      ["M2", "孙二", None, "没有这个村5组3号", None, None]],
                     encoding="utf-8-sig")
    seen = {}
    for role in ("admin", "command_center"):
        with make_client(scratch_db_url, role) as c:
            r = c.post("/register/households/import", files={"file": ("户.csv", data)}, data={"dry_run": "true"})
        assert r.status_code == 200, r.text
        seen[role] = r.json()
    for body in seen.values():
        assert ("file", "户.csv", 2, "手机号") in _problem_locs(body)
        assert ("file", "户.csv", 3, "地址") in _problem_locs(body)
        assert body["written"] is False
    phone_msg = {role: next(p["msg"] for p in b["problems"] if p["loc"][3] == "手机号") for role, b in seen.items()}
    assert "1381234" in phone_msg["admin"] and "1381234" not in phone_msg["command_center"]
    assert seen["admin"]["unplaced"][0]["address"] == "没有这个村5组3号"
    assert seen["command_center"]["unplaced"][0]["address"] != "没有这个村5组3号"


def test_history_reads_follow_the_household_rule_and_edits_are_logged(scratch_db_url, accounts):
    eng = _db(scratch_db_url)
    with eng.connect() as conn:
        no, idn, inside = conn.execute(text(
            "SELECT h.household_no, min(r.id_number), EXISTS (SELECT 1 FROM grid g "
            "WHERE g.valid_to IS NULL AND g.code = ANY(:scope) AND ST_Intersects(g.geom, h.geom)) "
            "FROM household h JOIN resident r ON r.household_id = h.id WHERE h.residents >= 3 "
            "AND r.id_number IS NOT NULL GROUP BY h.id ORDER BY h.id LIMIT 1"),
            {"scope": accounts["grid_staff"]["scope_codes"]}).one()
    with make_client(scratch_db_url, "admin") as admin:
        r = admin.patch(f"/register/households/{no}", json={"phone": "12345"})
        assert r.status_code == 422 and "phone" in r.text
        r = admin.patch(f"/register/households/{no}", json={"phone": "0377-63123456", "floors": 2})
        assert r.status_code == 200 and r.json()["changed"] == ["floors", "phone"]
        r = admin.patch(f"/register/households/{no}/residents/{idn}",
                        json={"status": "died", "effective_date": "2026-05-01"})
        assert r.status_code == 200, r.text
        before = admin.get(f"/register/households/{no}/residents", params={"on": "2026-04-30"}).json()
        after = admin.get(f"/register/households/{no}/residents", params={"on": "2026-05-01"}).json()
        assert idn in {p["id_number"] for p in before["residents"]}
        assert idn not in {p["id_number"] for p in after["residents"]}
        assert len(before["residents"]) == len(after["residents"]) + 1
        log = admin.get(f"/register/households/{no}/changes").json()
        assert sorted(c["kind"] for c in log) == ["details_changed", "died", "phone_changed"]
        assert next(c for c in log if c["kind"] == "died")["effective_date"] == "2026-05-01"
        assert admin.get("/register/households/NOPE/residents").status_code == 404
    with make_client(scratch_db_url, "command_center") as cc:
        masked = cc.get(f"/register/households/{no}/residents", params={"on": "2026-04-30"}).json()
        assert masked["personal_fields"] == "masked"
        assert idn not in {p["id_number"] for p in masked["residents"]}
        assert all(p["name"].endswith("*") for p in masked["residents"])
        assert cc.patch(f"/register/households/{no}", json={"floors": 3}).status_code == 200
    with make_client(scratch_db_url, "grid_staff") as staff:
        r = staff.get(f"/register/households/{no}/residents")
        assert r.status_code == (200 if inside else 404)
        assert staff.patch(f"/register/households/{no}", json={"floors": 3}).status_code == 403
    with eng.connect() as conn:
        actions = {a for (a,) in conn.execute(text("SELECT action FROM audit_log WHERE action LIKE 'register.%' "
                                                   "OR (action = 'read_personal' AND detail->>'format' LIKE "
                                                   "'register%')"))}
        residents = conn.execute(text("SELECT residents FROM household WHERE household_no = :n"), {"n": no}).scalar()
    eng.dispose()
    assert {"register.household.edit", "register.resident.died", "read_personal"} <= actions
    assert residents == len(after["residents"])


def test_cli_imports_with_progress_and_exit_codes(scratch_db_url, accounts, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gis import settings as settings_mod
    from gis.cli import app

    hh, res, groups, _ = _files(scratch_db_url)
    (tmp_path / "新户.xlsx").write_bytes(hh)
    (tmp_path / "人口.csv").write_bytes(res)
    bad = tmp_path / "坏.csv"
    bad.write_bytes(csv_bytes(["户号", "姓名", "身份证号"], [["B1", "错", "110105194912310021"]], encoding="gbk"))
    monkeypatch.setenv("DATABASE_URL", scratch_db_url.render_as_string(hide_password=False))
    settings_mod.get_settings.cache_clear()
    try:
        runner = CliRunner()
        dry = runner.invoke(app, ["register", "households", str(tmp_path / "新户.xlsx"), "--residents",
                                  str(tmp_path / "人口.csv"), "--dry-run", "--as-of", "2026-06-01"])
        assert dry.exit_code == 0, dry.output
        assert "试运行" in dry.output
        report = tmp_path / "report.json"
        done = runner.invoke(app, ["register", "households", str(tmp_path / "新户.xlsx"), "--residents",
                                   str(tmp_path / "人口.csv"), "--report", str(report)])
        assert done.exit_code == 0, done.output
        answer = json.loads(report.read_text(encoding="utf-8"))
        assert answer["households"]["written"] == 2
        assert {p["household_no"]: p["group_code"] for p in answer["placed"]} == groups
        refused = runner.invoke(app, ["register", "households", str(bad)])
        assert refused.exit_code == 1
        assert "check digit" in refused.output
        who = runner.invoke(app, ["register", "residents-on", "N1"])
        assert who.exit_code == 0 and "赵二" in who.output
    finally:
        settings_mod.get_settings.cache_clear()


def test_dates_left_out_are_today_in_beijing_when_the_command_runs(scratch_db_url, tmp_path, monkeypatch):
    """No --as-of / --on: the register's date is the service clock's day in Beijing at the time of the call
    (01:30 on 2 March there is still 1 March in UTC), not a date fixed when the program started."""
    from typer.testing import CliRunner

    from gis import clock
    from gis import settings as settings_mod
    from gis.cli import app

    hh, res, _groups, _ = _files(scratch_db_url)
    (tmp_path / "户.xlsx").write_bytes(hh)
    (tmp_path / "人.csv").write_bytes(res)
    monkeypatch.setenv("DATABASE_URL", scratch_db_url.render_as_string(hide_password=False))
    settings_mod.get_settings.cache_clear()
    try:
        runner = CliRunner()
        report = tmp_path / "report.json"
        with clock.frozen(dt.datetime(2027, 3, 1, 17, 30, tzinfo=dt.UTC)):
            done = runner.invoke(app, ["register", "households", str(tmp_path / "户.xlsx"), "--residents",
                                       str(tmp_path / "人.csv"), "--report", str(report)])
            assert done.exit_code == 0, done.output
            assert json.loads(report.read_text(encoding="utf-8"))["as_of"] == "2027-03-02"
            who = runner.invoke(app, ["register", "residents-on", "N1"])
        assert who.exit_code == 0 and "2027-03-02" in who.output and "赵二" in who.output, who.output
        with clock.frozen(dt.datetime(2027, 3, 1, 15, 30, tzinfo=dt.UTC)):  # 23:30 on 1 March in Beijing
            before = runner.invoke(app, ["register", "residents-on", "N1"])
        assert before.exit_code == 0 and "2027-03-01" in before.output and "赵二" not in before.output
    finally:
        settings_mod.get_settings.cache_clear()


@pytest.mark.parametrize("role", ["planner", "emergency", "grid_staff"])
def test_roles_without_the_permission_cannot_import(client, accounts, clients, role):
    r = clients[role].post("/register/households/import", files={"file": ("户.csv", "户号\nH1\n".encode())})
    assert r.status_code == 403
