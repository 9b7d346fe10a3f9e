"""Households and residents imported from a town's own files (gis.register.households / history): a town
built only from files, bad files each with its row/column problem and nothing written, dry runs, the
good-rows mode, re-imports that update in place and the history of who lived where."""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
import shapely
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.context import Context
from gis.crs import wgs84_to_gcj02
from gis.db import make_sessionmaker
from gis.errors import InputError
from gis.register import history
from gis.register.history import residents_on
from gis.register.households import ImportOptions, import_households
from tests.conftest import database_copy, schema_of
from tests.register_files import csv_bytes, make_id, wrong_check_digit, xlsx_bytes

AS_OF = dt.date(2026, 6, 1)
CN = "零一二三四五六七八九十"


def cn(n: int) -> str:
    return CN[n] if n <= 10 else "十" + CN[n - 10] if n < 20 else str(n)


@pytest.fixture(scope="module")
def empty_town(test_db_url):
    """The sample town's boundaries, natural villages and shelters, without a single household."""
    with database_copy(test_db_url, "register") as url:
        eng = create_engine(url, poolclass=NullPool)
        with eng.begin() as conn:
            conn.execute(text("DELETE FROM household"))
        yield eng
        eng.dispose()


@pytest.fixture
def db(empty_town):
    """A session on the empty town whose work is rolled back after the test."""
    with make_sessionmaker(empty_town)() as s, s.begin():
        yield s
        s.rollback()


CTX = Context.cli("wangge register households test")


@dataclass
class Group:
    code: str
    village: str
    number: int
    polygon: object
    points: list[tuple[float, float]] = field(default_factory=list)


def groups(session, n: int) -> list[Group]:
    """`n` group grids of different villages, each with a few points well inside it."""
    rows = session.execute(text(
        "SELECT DISTINCT ON (parent_code) code, name, ST_AsBinary(geom) AS wkb FROM grid "
        "WHERE valid_to IS NULL AND level = 4 ORDER BY parent_code, code LIMIT :n"), {"n": n}).all()
    out = []
    rng = np.random.default_rng(7)
    for code, name, wkb in rows:
        m = re.match(r"^(.*村)第(.+)网格$", name)
        assert m, name
        number = CN.index(m.group(2)) if len(m.group(2)) == 1 else 10 + CN.index(m.group(2)[-1])
        poly = shapely.from_wkb(bytes(wkb))
        inner = poly.buffer(-0.0008)
        x0, y0, x1, y1 = inner.bounds
        g = Group(code, m.group(1), number, poly)
        while len(g.points) < 6:
            x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
            if inner.contains(shapely.Point(x, y)):
                g.points.append((float(x), float(y)))
        out.append(g)
    return out


@dataclass
class Town:
    workbook: bytes
    csv: bytes
    households: dict[str, dict]  # household_no -> {group, lon, lat, residents: [(name, id, birth)]}


def person(i: int, age_years: int, male: bool = True) -> tuple[str, str, dt.date]:
    birth = AS_OF - dt.timedelta(days=int(age_years * 365.25) + 40 + i)
    return f"居民{i}", make_id(birth, i, male=male), birth


def build_town(session) -> Town:
    """Village A by coordinates (WGS84 and GCJ-02 rows) in a workbook of two sheets with title rows and
    merged headers; village B by address only, in a GBK CSV of residents carrying the household columns."""
    g = groups(session, 3)
    households: dict[str, dict] = {}
    hh_rows, res_rows = [], []
    pid = 0
    for k in range(8):
        grp = g[k % 2]
        lon, lat = grp.points[k // 2]
        no = f"A{k:03d}"
        ages = [70, 40, 8][: 1 + k % 3]
        members = []
        for j, age in enumerate(ages):
            pid += 1
            members.append(person(pid, age, male=j != 1))
        gcj = k % 2 == 1
        x, y = (wgs84_to_gcj02(lon, lat) if gcj else (lon, lat))
        hh_rows.append([no, members[0][0], f"1380000{k:04d}", f"{grp.village}{cn(grp.number)}组{k + 1}号",
                        len(members), round(float(x), 7), round(float(y), 7), "GCJ-02" if gcj else "WGS84"])
        for j, (name, idn, birth) in enumerate(members):
            res_rows.append([no, name, idn, "男" if j != 1 else "女", birth, "户主" if j == 0 else "子女"])
        households[no] = {"group": grp.code, "lon": lon, "lat": lat, "members": members, "by": "coordinates"}
    headers = ["户号", ("户主信息", "户主姓名"), ("户主信息", "联系电话"), "门牌号", "人数",
               ("坐标", "经度"), ("坐标", "纬度"), ("坐标", "坐标系")]
    res_headers = ["户号", "姓名", "公民身份号码", "性别", "出生日期", "与户主关系"]
    workbook = xlsx_bytes({"户": (headers, hh_rows), "人口": (res_headers, res_rows)},
                          title_rows=["杨营镇户籍台账（样例）", "填报日期：2026年6月1日"], total_row=True)
    # Village B: addresses naming the group (placed at the group's point, flagged approximate).
    csv_rows = []
    grp = g[2]
    for k in range(5):
        no = f"B{k:03d}"
        members = []
        for age in [66, 12][: 1 + k % 2]:
            pid += 1
            members.append(person(pid, age))
        for j, (name, idn, _birth) in enumerate(members):
            csv_rows.append([no, name, idn, "户主" if j == 0 else "孙子女", f"1390000{k:04d}",
                             f"{grp.village}{cn(grp.number)}组{k + 20}号"])
        households[no] = {"group": grp.code, "members": members, "by": "settlement"}
    csv = csv_bytes(["户号", "姓名", "身份证号", "与户主关系", "手机号", "地址"], csv_rows, encoding="gbk")
    return Town(workbook, csv, households)


def run(session, data: bytes, name: str, **options) -> dict:
    opts = ImportOptions(**{"as_of": AS_OF, **options})
    return import_households(session, CTX, data, name, options=opts).as_dict()


def household_count(session) -> int:
    return session.execute(text("SELECT count(*) FROM household")).scalar_one()


def test_a_town_built_only_from_files(db):
    town = build_town(db)
    first = run(db, town.workbook, "户籍台账.xlsx")
    assert first["problem_count"] == 0, first["problems"]
    assert first["written"] is True
    assert [f["sheet"] for f in first["files"]] == ["户", "人口"]
    assert first["files"][0]["header_row"] == 4  # two title rows, a merged parent row, the sub-header row
    assert first["households"]["by_coordinates"] == 8
    second = run(db, town.csv, "村B.csv")
    assert second["problem_count"] == 0, second["problems"]
    assert second["files"][0]["encoding"] == "gbk"
    assert second["households"]["by_settlement"] == 5

    # Counts.
    assert household_count(db) == len(town.households)
    expected_residents = sum(len(h["members"]) for h in town.households.values())
    assert db.execute(text("SELECT count(*) FROM resident")).scalar_one() == expected_residents
    assert db.execute(text("SELECT sum(residents) FROM household")).scalar_one() == expected_residents
    # Each household's grid, by an independent ST_Contains over the group grids, is the intended one and
    # the one the report showed at every level.
    got = dict(db.execute(text(
        "SELECT h.household_no, g.code FROM household h JOIN grid g ON g.valid_to IS NULL AND g.level = 4 "
        "AND ST_Contains(g.geom, h.geom)")).all())
    assert got == {no: h["group"] for no, h in town.households.items()}
    reported = {p["household_no"]: p for p in first["placed"] + second["placed"]}
    for no, h in town.households.items():
        assert reported[no]["group_code"] == h["group"]
        village = db.execute(text("SELECT parent_code FROM grid WHERE valid_to IS NULL AND code = :c"),
                             {"c": h["group"]}).scalar_one()
        assert reported[no]["village_code"] == village
        assert reported[no]["town_code"] is not None and reported[no]["area_code"] is not None
    # GCJ-02 rows were shifted back: every coordinate household is where the test put it (within 1 m).
    for no, lon, lat in db.execute(text("SELECT household_no, ST_X(geom), ST_Y(geom) FROM household "
                                        "WHERE household_no LIKE 'A%'")):
        want = town.households[no]
        assert abs(lon - want["lon"]) < 1e-5 and abs(lat - want["lat"]) < 1e-5, no
    # Elderly / children derived from the birth dates as of the stated date (65+, under 14).
    for no, elderly, children in db.execute(text("SELECT household_no, elderly, children FROM household")):
        ages = [(AS_OF - b).days / 365.25 for _, _, b in town.households[no]["members"]]
        assert elderly == sum(a >= 65 for a in ages), no
        assert children == sum(a < 14 for a in ages), no
    located = dict(db.execute(text("SELECT h.household_no, l.located_by FROM household_location l "
                                   "JOIN household h ON h.id = l.household_id")).all())
    assert located == {no: h["by"] for no, h in town.households.items()}

    # The flood finder's answer for a drawn extent = the households an independent query finds in it.
    from gis.flood.finder import flooded_households

    a_lon, a_lat = town.households["A000"]["lon"], town.households["A000"]["lat"]
    drawn = shapely.box(a_lon - 0.004, a_lat - 0.003, a_lon + 0.004, a_lat + 0.003)
    answer = flooded_households(db, None, SimpleNamespace(geom=drawn), with_shelters=False)
    found = {h["household_no"] for h in answer.households}
    independent = {no for (no,) in db.execute(text(
        "SELECT household_no FROM household WHERE ST_Intersects(geom, ST_GeomFromText(:w, 4326))"),
        {"w": drawn.wkt})}
    mine = {no for no, h in town.households.items() if "lon" in h and drawn.contains(shapely.Point(h["lon"], h["lat"]))}
    assert found == independent
    assert "A000" in found and mine <= found


def test_dry_run_reports_everything_and_writes_nothing(db):
    town = build_town(db)
    report = run(db, town.workbook, "户籍台账.xlsx", dry_run=True)
    assert report["written"] is False and report["problem_count"] == 0
    assert report["households"]["placed"] == 8
    assert {p["household_no"] for p in report["placed"]} == {f"A{k:03d}" for k in range(8)}
    assert sum(g["households"] for g in report["by_group"]) == 8
    assert household_count(db) == 0
    assert db.execute(text("SELECT count(*) FROM register_import")).scalar_one() == 0


# --- bad files: the exact row/column problem, nothing written --------------------------------------------


def _households_sheet(rows, headers=None):
    headers = headers or ["户号", "户主姓名", "联系电话", "门牌号", "人数", "经度", "纬度"]
    return headers, rows


def _one_household(g: Group, no: str, k: int = 0, **over):
    lon, lat = g.points[k]
    row = {"户号": no, "户主姓名": "张三", "联系电话": "13812345678", "门牌号": f"{g.village}{cn(g.number)}组1号",
           "人数": 1, "经度": lon, "纬度": lat}
    row.update(over)
    return list(row.values())


def _check_refused(db, data: bytes, name: str, loc, type_: str, **options):
    report = run(db, data, name, **options)
    assert report["written"] is False
    assert household_count(db) == 0
    assert db.execute(text("SELECT count(*) FROM resident")).scalar_one() == 0
    locs = [(tuple(p["loc"]), p["type"]) for p in report["problems"]]
    assert (loc, type_) in locs, locs
    return report


def test_wrong_id_check_digit(db):
    g = groups(db, 1)[0]
    good = make_id(dt.date(1960, 5, 4), 1)
    people = [["H1", "张三", good], ["H2", "李四", wrong_check_digit(good)]]
    wb = xlsx_bytes({"户": _households_sheet([_one_household(g, "H1"), _one_household(g, "H2", 1)]),
                     "人口": (["户号", "姓名", "身份证号"], people)}, title_rows=["台账"])
    report = _check_refused(db, wb, "t.xlsx", ("file", "人口", 4, "身份证号"), "invalid_id_number")
    assert "check digit" in report["problems"][0]["msg"]


def test_duplicate_household_number(db):
    g = groups(db, 1)[0]
    wb = xlsx_bytes({"户": _households_sheet([_one_household(g, "H1"), _one_household(g, "H1", 1)]),
                     "人口": (["户号", "姓名"], [["H1", "张三"]])})
    _check_refused(db, wb, "t.xlsx", ("file", "户", 3, "户号"), "duplicate_household")


def test_resident_count_disagrees(db):
    g = groups(db, 1)[0]
    wb = xlsx_bytes({"户": _households_sheet([_one_household(g, "H1", 人数=3)]),
                     "人口": (["户号", "姓名"], [["H1", "张三"], ["H1", "张四"]])})
    report = _check_refused(db, wb, "t.xlsx", ("file", "户", 2, "人数"), "resident_count")
    assert "3" in report["problems"][0]["msg"] and "2" in report["problems"][0]["msg"]


def test_lat_lon_swapped(db):
    g = groups(db, 1)[0]
    lon, lat = g.points[0]
    rows = [_one_household(g, "H1", 1), _one_household(g, "H2", 经度=lat, 纬度=lon)]
    wb = xlsx_bytes({"户": _households_sheet(rows), "人口": (["户号", "姓名"], [["H1", "张三"], ["H2", "李四"]])})
    _check_refused(db, wb, "t.xlsx", ("file", "户", 3, "经度"), "lonlat_swapped")


def test_address_the_gazetteer_cannot_place(db):
    g = groups(db, 1)[0]
    data = csv_bytes(["户号", "姓名", "地址"], [["H1", "张三", f"{g.village}{cn(g.number)}组3号"],
                                             ["H2", "李四", "不存在村九十九组3号"]], encoding="gb18030")
    report = _check_refused(db, data, "户.csv", ("file", "户.csv", 3, "地址"), "unplaced")
    assert report["unplaced"] == [{"row": 3, "household_no": "H2", "address": "不存在村九十九组3号",
                                   "reason": "the address names no village, group or natural village of the town"}]
    # good_rows: the placeable household goes in, the other is listed, never dropped silently.
    report = run(db, data, "户.csv", mode="good_rows")
    assert report["written"] is True and household_count(db) == 1
    assert [u["household_no"] for u in report["unplaced"]] == ["H2"]
    assert report["households"]["written"] == 1


def test_same_id_number_in_two_households(db):
    g = groups(db, 1)[0]
    idn = make_id(dt.date(1980, 1, 1), 5)
    wb = xlsx_bytes({"户": _households_sheet([_one_household(g, "H1"), _one_household(g, "H2", 1)]),
                     "人口": (["户号", "姓名", "身份证号"], [["H1", "张三", idn], ["H2", "张三", idn]])})
    report = _check_refused(db, wb, "t.xlsx", ("file", "人口", 3, "身份证号"), "duplicate_id_number")
    assert "H1" in report["problems"][0]["msg"]


def test_empty_sheet_and_wrong_content_raise_before_anything_is_read(db):
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.title = "户"
    import io

    buf = io.BytesIO()
    wb.save(buf)
    with pytest.raises(InputError) as err:
        run(db, buf.getvalue(), "空.xlsx")
    assert err.value.problems[0].loc == ("file", "户", 1, "")
    with pytest.raises(InputError) as err:
        run(db, b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "户籍.csv")
    assert err.value.problems[0].loc == ("file", "户籍.csv")
    assert household_count(db) == 0


# --- keeping it current ---------------------------------------------------------------------------------


REGISTER_TABLES = ["household", "household_location", "resident", "resident_period", "register_change", "staff",
                   "household_responsible"]


def register_schema(session) -> list[tuple]:
    return schema_of(session, REGISTER_TABLES)


@pytest.mark.parametrize("bulk", [False, True], ids=["row_by_row", "bulk_first_load"])
def test_reimport_with_changes_updates_in_place_and_answers_who_lived_here(db, bulk, monkeypatch, caplog):
    # bulk: the first import (into the empty town) drops the register tables' indexes and keys and rebuilds
    # them before its commit (gis.bulk_indexes); the threshold is lowered so that 2 households count.
    monkeypatch.setattr(history, "BULK_MIN_ROWS", 1 if bulk else 10**9)
    schema_before = register_schema(db)
    assert any("FOREIGN KEY" in d and "household(id)" in d for _, _, d in schema_before)
    g = groups(db, 2)
    a, b = g
    ids = {k: make_id(dt.date(1950 + k, 3, 1), k, male=k % 2 == 0) for k in range(6)}
    hh = ["户号", "户主姓名", "联系电话", "门牌号", "经度", "纬度"]
    res = ["户号", "姓名", "身份证号", "人员状态", "变动日期"]

    def workbook(h_rows, r_rows):
        return xlsx_bytes({"户": (hh, h_rows), "人口": (res, r_rows)})

    v1 = workbook(
        [["H1", "甲", "13800000001", "x1号", *a.points[0]], ["H2", "乙", "13800000002", "x2号", *a.points[1]]],
        [["H1", "甲", ids[0], None, None], ["H1", "丙", ids[1], None, None],
         ["H2", "乙", ids[2], None, None], ["H2", "丁", ids[3], None, None]])
    with caplog.at_level(logging.DEBUG, logger="wangge.register.history"):
        r1 = run(db, v1, "v1.xlsx", as_of=dt.date(2026, 1, 1))
    assert r1["written"] and r1["problem_count"] == 0, r1["problems"]
    assert ("rebuild:" in caplog.text) == bulk
    assert register_schema(db) == schema_before
    ids_before = dict(db.execute(text("SELECT household_no, id FROM household")).all())

    baby = make_id(dt.date(2026, 2, 1), 9)
    v2 = workbook(
        # H1 moved to the other group (new point there); H2's phone changed.
        [["H1", "甲", "13800000001", "x1号", *b.points[0]], ["H2", "乙", "13900000009", "x2号", *a.points[1]]],
        [["H1", "甲", ids[0], None, None], ["H1", "丙", ids[1], "死亡", "2026-03-15"],
         ["H2", "乙", ids[2], None, None], ["H2", "丁", ids[3], None, None], ["H2", "婴", baby, None, None]])
    r2 = run(db, v2, "v2.xlsx", as_of=dt.date(2026, 6, 1))
    assert r2["written"] and r2["problem_count"] == 0, r2["problems"]
    assert r2["changes"] == {"born": 1, "died": 1, "moved_group": 1, "phone_changed": 1}
    # Updated in place: the same household rows.
    assert dict(db.execute(text("SELECT household_no, id FROM household")).all()) == ids_before
    changes = {(r.household_no, r.kind): r for r in db.execute(text(
        "SELECT household_no, kind, old, new, effective_date, id_number FROM register_change WHERE kind <> "
        "'household_added'"))}
    assert (changes["H1", "moved_group"].old, changes["H1", "moved_group"].new) == (a.code, b.code)
    assert changes["H1", "died"].effective_date == dt.date(2026, 3, 15)
    assert changes["H1", "died"].id_number == ids[1]
    assert changes["H2", "born"].effective_date == dt.date(2026, 2, 1)
    assert (changes["H2", "phone_changed"].old, changes["H2", "phone_changed"].new) == ("13800000002", "13900000009")
    counts = dict(db.execute(text("SELECT household_no, residents FROM household")).all())
    assert counts == {"H1": 1, "H2": 3}

    def names(no, day):
        return {p["name"] for p in residents_on(db, no, day)}

    assert names("H1", dt.date(2026, 3, 1)) == {"甲", "丙"}
    assert names("H1", dt.date(2026, 3, 15)) == {"甲"}
    assert names("H2", dt.date(2026, 1, 15)) == {"丁", "乙"}
    assert names("H2", dt.date(2026, 2, 1)) == {"丁", "乙", "婴"}
    assert names("H1", dt.date(2025, 12, 31)) == set()  # before the register knew them

    # The same file again changes nothing.
    r3 = run(db, v2, "v2.xlsx", as_of=dt.date(2026, 6, 1))
    assert r3["changes"] == {}
    assert db.execute(text("SELECT count(*) FROM resident")).scalar_one() == 4
    assert register_schema(db) == schema_before
    # The rebuilt indexes answer (index scans only).
    db.execute(text("SET LOCAL enable_seqscan = off"))
    assert db.execute(text("SELECT count(*) FROM household WHERE household_no IN ('H1', 'H2')")).scalar_one() == 2
    assert db.execute(text("SELECT count(*) FROM resident_period WHERE resident_key = :k"),
                      {"k": ids[1]}).scalar_one() == 1


REGISTER_STATE = {
    "household": "SELECT household_no, address, head_name, phone, residents, elderly, children, floors, "
                 "ST_AsText(geom) FROM household ORDER BY household_no",
    "location": "SELECT h.household_no, l.located_by, l.precision_m, l.place FROM household_location l "
                "JOIN household h ON h.id = l.household_id ORDER BY 1",
    "resident": "SELECT h.household_no, r.name, r.id_number, r.gender, r.birth_date FROM resident r "
                "JOIN household h ON h.id = r.household_id ORDER BY 1, 2",
    "period": "SELECT household_no, resident_key, name, valid_from, valid_to FROM resident_period ORDER BY 1, 2, 4",
    "change": "SELECT household_no, id_number, kind, old, new, effective_date FROM register_change "
              "ORDER BY 1, 2 NULLS FIRST, 3",
}


def test_a_bulk_load_that_also_updates_households_ends_as_row_by_row_does(db, monkeypatch, caplog):
    # A second import that updates the households already there AND brings more new ones than the table
    # holds is loaded in bulk: its updates (placements, residents, periods) run while the keys are dropped.
    a, b = groups(db, 2)
    ids = {k: make_id(dt.date(1960 + k, 5, 1), k, male=k % 2 == 0) for k in range(12)}
    hh = ["户号", "户主姓名", "联系电话", "门牌号", "经度", "纬度"]
    res = ["户号", "姓名", "身份证号", "人员状态", "变动日期"]
    v1 = xlsx_bytes({"户": (hh, [["H1", "甲", "13800000001", "1号", *a.points[0]],
                                 ["H2", "乙", "13800000002", "2号", *a.points[1]]]),
                     "人口": (res, [["H1", "甲", ids[0], None, None], ["H1", "丙", ids[1], None, None],
                                    ["H2", "乙", ids[2], None, None]])})
    v2 = xlsx_bytes({"户": (hh, [["H1", "甲", "13800000001", "1号", *b.points[0]],
                                 ["H2", "乙", "13900000009", "2号", *a.points[1]],
                                 *[[f"H{k}", f"户{k}", f"1380000000{k}", f"{k}号", *b.points[k - 2]]
                                   for k in (3, 4, 5)]]),
                     "人口": (res, [["H1", "甲", ids[0], None, None], ["H1", "丙", ids[1], "死亡", "2026-03-15"],
                                    ["H2", "乙", ids[2], None, None], ["H2", "丁", ids[3], None, None],
                                    *[[f"H{k}", f"户{k}", ids[k + 1], None, None] for k in (3, 4, 5)]])})
    states, rebuilt = {}, {}
    for mode, min_rows in (("row_by_row", 10**9), ("bulk", 1)):
        monkeypatch.setattr(history, "BULK_MIN_ROWS", min_rows)
        step = db.begin_nested()
        assert run(db, v1, "v1.xlsx", as_of=dt.date(2026, 1, 1))["problem_count"] == 0
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="wangge.register.history"):
            r2 = run(db, v2, "v2.xlsx", as_of=dt.date(2026, 6, 1))
        assert r2["written"] and r2["problem_count"] == 0, r2["problems"]
        rebuilt[mode] = "ALTER TABLE household ADD CONSTRAINT" in caplog.text
        states[mode] = {k: [tuple(r) for r in db.execute(text(q))] for k, q in REGISTER_STATE.items()}
        step.rollback()
    assert rebuilt == {"row_by_row": False, "bulk": True}
    assert len(states["bulk"]["household"]) == 5 and len(states["bulk"]["location"]) == 5
    assert {r[2] for r in states["bulk"]["change"]} >= {"household_added", "died", "moved_group", "phone_changed"}
    assert states["bulk"] == states["row_by_row"]


def test_addresses_place_by_known_house_or_natural_village(db):
    g = groups(db, 1)[0]
    lon, lat = g.points[0]
    address = f"{g.village}{cn(g.number)}组5号"
    first = xlsx_bytes({"户": _households_sheet([_one_household(g, "K1", 门牌号=address, 人数=1)])})
    assert run(db, first, "k1.xlsx")["written"]
    village_code = g.code[:12] + "000"
    nv_name, nv_lon, nv_lat, nv_group = db.execute(text(
        "SELECT nv.name, ST_X(nv.geom), ST_Y(nv.geom), (SELECT code FROM grid WHERE valid_to IS NULL AND level = 4 "
        "AND ST_Contains(geom, nv.geom)) FROM natural_village nv WHERE nv.village_code = :v ORDER BY nv.id LIMIT 1"),
        {"v": village_code}).one()
    data = csv_bytes(["户号", "户主姓名", "人数", "门牌号"],
                     [["K2", "钱", 1, f"{g.village}第{cn(g.number)}村民小组5号"],   # the same house, written otherwise
                      ["K3", "孙", 2, f"{g.village}{nv_name}8号"]], encoding="gbk")
    report = run(db, data, "k.csv")
    assert report["problem_count"] == 0, report["problems"]
    placed = {p["household_no"]: p for p in report["placed"]}
    assert placed["K2"]["located_by"] == "address" and placed["K2"]["precision_m"] == 10
    assert (placed["K2"]["lon"], placed["K2"]["lat"]) == (round(lon, 7), round(lat, 7))
    assert placed["K3"]["located_by"] == "settlement" and placed["K3"]["place"] == nv_name
    assert (placed["K3"]["lon"], placed["K3"]["lat"]) == (round(nv_lon, 7), round(nv_lat, 7))
    assert placed["K3"]["group_code"] == nv_group
    nv_of_k3 = db.execute(text("SELECT nv.name FROM household h JOIN natural_village nv ON nv.id = "
                               "h.natural_village_id WHERE h.household_no = 'K3'")).scalar_one()
    assert nv_of_k3 == nv_name
    # Without settlement placement the natural-village address is listed, not placed.
    again = run(db, data.replace(b"K3", b"K4"), "k.csv", dry_run=True, place_by_settlement=False)
    assert [u["household_no"] for u in again["unplaced"]] == ["K4"], (again["unplaced"], again["placed"])
