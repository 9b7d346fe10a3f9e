"""The staff roster (issue 14): import from township files, dated joins/moves/leaves, who served a grid
on a day, 联系户, single edits, and who may do it."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from gis import clock
from gis.context import Context
from gis.errors import InputError
from gis.register import roster
from tests.register_files import csv_bytes, xlsx_bytes

CTX = Context.cli("test roster")
ROLE_ZH = {"grid_leader": "网格长", "grid_member": "网格员", "party_household": "党员中心户",
           "supervisor": "网格督导员"}
HEADERS = (("人员信息", "姓名"), ("人员信息", "联系电话"), "职务", "网格编码", "户号")


def _staff(session) -> list[dict]:
    return [dict(r) for r in session.execute(text(
        "SELECT s.id, s.name, s.phone, s.role, s.grid_code, h.household_no FROM staff s "
        "LEFT JOIN household h ON h.id = s.household_id ORDER BY s.id")).mappings()]


def _rows(staff: list[dict]) -> list[list]:
    return [[s["name"], s["phone"], ROLE_ZH[s["role"]], s["grid_code"], s["household_no"]] for s in staff]


def _workbook(rows) -> bytes:
    """A roster the way a township keeps it: title rows, a merged two-level header, a 合计 row."""
    return xlsx_bytes({"花名册": (HEADERS, rows)}, title_rows=("尹营镇网格员花名册", "填报单位：网格办"),
                      total_row=True)


def _served(session, code: str, day: dt.date) -> set[tuple[str, str]]:
    return {(r["name"], r["role"]) for r in roster.staff_on(session, code, day)}


def test_reimport_records_who_joined_moved_and_left_and_answers_who_served_when(session):
    staff = _staff(session)
    today = clock.today()
    d1, d2 = today + dt.timedelta(days=10), today + dt.timedelta(days=40)

    same = roster.import_roster(session, CTX, _workbook(_rows(staff)), file_name="花名册.xlsx", effective=d1)
    assert (same.rows, same.unchanged, same.joined, same.changed, same.left) == (len(staff), len(staff), 0, 0, 0)

    members = [s for s in staff if s["role"] == "grid_member"]
    mover, leaver = members[0], members[1]
    target = next(s["grid_code"] for s in members if s["grid_code"] != mover["grid_code"])
    changed = [dict(s) for s in staff if s["id"] != leaver["id"]]
    for s in changed:
        if s["id"] == mover["id"]:
            s["grid_code"] = target
    changed.append({"name": "新来的", "phone": "13912345678", "role": "grid_member", "grid_code": target,
                    "household_no": None})
    report = roster.import_roster(session, CTX, _workbook(_rows(changed)), file_name="花名册.xlsx", effective=d1)
    assert (report.joined, report.changed, report.left) == (1, 1, 1)
    assert {(c.what, c.name) for c in report.changes} == {
        ("joined", "新来的"), ("moved", mover["name"]), ("left", leaver["name"])}

    # Today's roster (what routing and the 明白卡 read): the mover kept their staff row.
    now = {s["id"]: s for s in _staff(session)}
    assert now[mover["id"]]["grid_code"] == target
    assert leaver["id"] not in now
    assert sum(1 for s in now.values() if s["name"] == "新来的") == 1

    before = d1 - dt.timedelta(days=1)
    assert (mover["name"], "grid_member") in _served(session, mover["grid_code"], before)
    assert (mover["name"], "grid_member") not in _served(session, mover["grid_code"], d1)
    assert (mover["name"], "grid_member") in _served(session, target, d1)
    assert (mover["name"], "grid_member") not in _served(session, target, before)
    assert (leaver["name"], "grid_member") in _served(session, leaver["grid_code"], before)
    assert (leaver["name"], "grid_member") not in _served(session, leaver["grid_code"], d1)
    assert ("新来的", "grid_member") in _served(session, target, d2)
    # The history, checked independently: one closed and one open tenure for the mover.
    spans = session.execute(text("SELECT grid_code, valid_from, valid_to FROM staff_tenure WHERE staff_id = :s "
                                 "ORDER BY valid_from"), {"s": mover["id"]}).all()
    assert [(g, t) for g, _, t in spans] == [(mover["grid_code"], d1), (target, None)]

    again = roster.import_roster(session, CTX, _workbook(_rows(changed)), file_name="花名册.xlsx", effective=d2)
    assert (again.joined, again.changed, again.left, again.unchanged) == (0, 0, 0, len(changed))
    audit = session.execute(text("SELECT detail FROM audit_log WHERE resource = 'staff' AND action = 'import' "
                                 "ORDER BY id DESC LIMIT 1")).scalar_one()
    assert audit["file"] == "花名册.xlsx" and audit["rows"] == len(changed)


def test_a_bad_roster_names_row_and_column_and_writes_nothing(session):
    staff = _staff(session)[:6]
    rows = _rows(staff)
    rows[1][3] = "411324999999999"        # row 6 in the sheet (2 title rows, 2 header rows, then row 5)
    rows[2][1] = "1234"                   # row 7
    rows[3][2] = "村长"                    # row 8
    rows[4][4] = "不存在的户号"              # row 9
    before = _staff(session)
    tenure = session.execute(text("SELECT count(*) FROM staff_tenure")).scalar_one()
    with pytest.raises(InputError) as err:
        roster.import_roster(session, CTX, _workbook(rows), file_name="花名册.xlsx", whole_roster=False)
    assert {(tuple(p.loc), p.type) for p in err.value.problems} == {
        (("file", "花名册", 6, "网格编码"), "unknown_grid"),
        (("file", "花名册", 7, "联系电话"), "bad_phone"),
        (("file", "花名册", 8, "职务"), "unknown_role"),
        (("file", "花名册", 9, "户号"), "unknown_household"),
    }
    assert _staff(session) == before
    assert session.execute(text("SELECT count(*) FROM staff_tenure")).scalar_one() == tenure

    # A whole roster with refused rows would make their people leave: refused as a whole.
    with pytest.raises(InputError) as err:
        roster.import_roster(session, CTX, _workbook(rows), file_name="花名册.xlsx", mode="good_rows")
    assert err.value.problems[0].loc == ("whole_roster",)
    # A partial roster: the good rows in, the others reported.
    ok = roster.import_roster(session, CTX, _workbook(rows), file_name="花名册.xlsx", mode="good_rows",
                              whole_roster=False)
    assert (ok.unchanged, ok.skipped, len(ok.problems)) == (2, 4, 4)


def test_a_gbk_csv_by_grid_name_and_a_dry_run(session):
    village = session.execute(text(
        "SELECT code, name FROM grid WHERE level = 3 AND valid_to IS NULL ORDER BY code LIMIT 1")).one()
    data = csv_bytes(["姓名", "手机号", "岗位", "所属网格"], [["王督导", "0377-63123456", "监督员", village.name]],
                     encoding="gbk")
    dry = roster.import_roster(session, CTX, data, file_name="督导.csv", whole_roster=False, dry_run=True)
    assert dry.joined == 1
    assert session.execute(text("SELECT count(*) FROM staff WHERE name = '王督导'")).scalar_one() == 0
    report = roster.import_roster(session, CTX, data, file_name="督导.csv", whole_roster=False)
    assert report.joined == 1 and report.left == 0
    row = session.execute(text("SELECT phone, role, grid_code FROM staff WHERE name = '王督导'")).one()
    assert tuple(row) == ("0377-63123456", "supervisor", village.code)


def test_responsibilities_are_dated_and_a_whole_list_ends_the_ones_it_drops(session):
    today = clock.today()
    d1, d2 = today + dt.timedelta(days=5), today + dt.timedelta(days=20)
    member = session.execute(text(
        "SELECT id, name, phone, grid_code FROM staff WHERE role = 'grid_member' ORDER BY id LIMIT 1")).one()
    other = session.execute(text(
        "SELECT id, name, phone FROM staff WHERE role = 'grid_member' AND id <> :i ORDER BY id LIMIT 1"),
        {"i": member.id}).one()
    houses = session.execute(text(
        "SELECT h.id, h.household_no FROM household h JOIN household_grid g ON g.household_id = h.id "
        "WHERE g.group_code = :g ORDER BY h.id LIMIT 3"), {"g": member.grid_code}).all()
    assert len(houses) == 3
    rows = [[h.household_no, member.phone, None] for h in houses[:2]] + [[houses[2].household_no, None, other.name]]
    data = csv_bytes(["户号", "网格员电话", "网格员"], rows, encoding="gb18030")
    first = roster.import_responsibilities(session, CTX, data, file_name="联系户.csv", effective=d1)
    assert (first.added, first.ended, first.unchanged) == (3, 0, 0)
    assert [r["staff_id"] for r in roster.responsible_on(session, houses[2].id, d1)] == [other.id]
    assert roster.responsible_on(session, houses[2].id, today) == []

    rows[2] = [houses[2].household_no, member.phone, None]   # the third household changes hands
    second = roster.import_responsibilities(session, CTX, csv_bytes(["户号", "网格员电话", "网格员"], rows),
                                            file_name="联系户.csv", effective=d2)
    assert (second.added, second.ended, second.unchanged) == (1, 1, 2)
    assert [r["staff_id"] for r in roster.responsible_on(session, houses[2].id, d2)] == [member.id]
    assert [r["staff_id"] for r in roster.responsible_on(session, houses[2].id, d2 - dt.timedelta(days=1))] == [
        other.id]

    bad = csv_bytes(["户号", "网格员电话"], [["没有", member.phone], [houses[0].household_no, "13900000000"]])
    with pytest.raises(InputError) as err:
        roster.import_responsibilities(session, CTX, bad, file_name="坏.csv", effective=d2)
    assert {(tuple(p.loc), p.type) for p in err.value.problems} == {
        (("file", "坏.csv", 2, "户号"), "unknown_household"), (("file", "坏.csv", 3, "网格员电话"), "unknown_staff")}

    # A member who leaves ends their responsibilities on that day.
    roster.delete_staff(session, CTX, member.id, d2 + dt.timedelta(days=30))
    assert roster.responsible_on(session, houses[0].id, d2 + dt.timedelta(days=30)) == []
    assert roster.responsible_on(session, houses[0].id, d2 + dt.timedelta(days=29))[0]["staff_id"] == member.id


def test_single_edits_through_the_api(scratch_client, clients):
    from tests.conftest import auth

    group = scratch_client.get("/grids", params={"level": 4, "limit": 2}).json()["features"]
    g1, g2 = group[0]["properties"]["code"], group[1]["properties"]["code"]
    today = clock.today()
    d1 = today + dt.timedelta(days=7)
    r = scratch_client.post("/staff", json={"name": "李四", "phone": "139 1234 5678", "role": "网格员",
                                            "grid_code": g1})
    assert r.status_code == 201, r.text
    person = r.json()
    assert person["phone"] == "13912345678" and person["role"] == "grid_member"

    moved = scratch_client.patch(f"/staff/{person['id']}", json={"grid_code": g2, "effective": d1.isoformat()})
    assert moved.status_code == 200 and moved.json()["grid_code"] == g2
    on = scratch_client.get(f"/grids/{g1}/staff", params={"on": today.isoformat()}).json()
    assert any(s["staff_id"] == person["id"] and s["valid_to"] == d1.isoformat() for s in on["staff"])
    assert all(s["staff_id"] != person["id"] for s in
               scratch_client.get(f"/grids/{g1}/staff", params={"on": d1.isoformat()}).json()["staff"])
    later = clients["grid_staff"].get(f"/grids/{g2}/staff").json()  # every role may read who served
    assert later["grid_code"] == g2

    bad = scratch_client.patch(f"/staff/{person['id']}", json={"grid_code": "411324999999999", "phone": "12"})
    assert bad.status_code == 422
    assert {tuple(e["loc"]) for e in bad.json()["errors"]} == {("body", "grid_code"), ("body", "phone")}
    assert scratch_client.delete(f"/staff/{person['id']}").status_code == 204
    assert scratch_client.delete(f"/staff/{person['id']}").status_code == 404
    assert scratch_client.get("/grids/411324999999999/staff").status_code == 404

    for role in ("planner", "emergency", "grid_staff", "supervisor"):
        headers = auth(role)
        assert scratch_client.post("/staff", json={"name": "x", "role": "网格员", "grid_code": g1},
                                   headers=headers).status_code == 403
        assert scratch_client.post("/staff/import", files={"file": ("r.csv", b"a,b\n")},
                                   headers=headers).status_code == 403


def test_the_api_imports_a_roster_file(scratch_client):
    rows = [["赵六", "13700001111", "网格员", None]]
    group = scratch_client.get("/grids", params={"level": 4, "limit": 1}).json()["features"][0]["properties"]
    rows[0][3] = group["code"]
    data = csv_bytes(["姓名", "联系电话", "职务", "网格编码"], rows, encoding="utf-8-sig")
    r = scratch_client.post("/staff/import", files={"file": ("roster.csv", data)},
                            data={"whole_roster": "false", "effective": "2030-01-01"})
    assert r.status_code == 200, r.text
    assert r.json()["joined"] == 1 and r.json()["effective"] == "2030-01-01"
    on = scratch_client.get(f"/grids/{group['code']}/staff", params={"on": "2030-01-01"}).json()["staff"]
    assert any(s["name"] == "赵六" and s["valid_from"] == "2030-01-01" for s in on)
    wrong = scratch_client.post("/staff/import", files={"file": ("roster.xlsx", data)})
    assert wrong.status_code == 422  # a CSV named .xlsx: not what its extension says
