"""The register's data-quality report (issue 14): GET /register/quality (JSON, CSV), /pages/quality.

A private copy of the sample town gets known defects (a house outside every grid, missing phones, bad
ID numbers, a group grid stripped of its staff, a staff member without a phone, a shelter far too small);
each kind of finding is then checked against an answer worked out here independently (shapely and
numpy on the stored rows, the GB 11643 rule written out again), and per role: what is listed, what is
only counted, what is masked, what is audited.
"""

from __future__ import annotations

import csv
import io
import math
import re

import numpy as np
import pytest
import shapely
from pyproj import Transformer
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.spreadsheet import csv_text_read
from tests.conftest import database_copy, live_site, make_client, screenshot_path

MASKED_ID = re.compile(r"\d{6}\*{8}[\dX]{4}")


def gb11643_valid(number: str) -> bool:
    """The ID-number rule written out from the standard (ISO 7064 MOD 11-2), independent of the code under test."""
    if not re.fullmatch(r"\d{17}[\dX]", number):
        return False
    total = 0
    for i, ch in enumerate(number[:17]):
        total += int(ch) * pow(2, 17 - i, 11)
    check = (12 - total % 11) % 11
    if ("X" if check == 10 else str(check)) != number[17]:
        return False
    try:
        import datetime as dt
        dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return True


def _with_check_digit(first17: str) -> str:
    check = (12 - sum(int(c) * pow(2, 17 - i, 11) for i, c in enumerate(first17)) % 11) % 11
    return first17 + ("X" if check == 10 else str(check))


@pytest.fixture(scope="module")
def town(test_db_url, accounts):
    """The sample town with defects, and the truth about it read back from the tables."""
    from gis.db import transaction

    with database_copy(test_db_url, "quality") as url:
        engine = create_engine(url, poolclass=NullPool)
        with transaction(engine) as s:
            staff_scope = accounts["grid_staff"]["scope_codes"][0]
            x0, y0, x1, y1 = s.execute(text("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                                            "(SELECT ST_Extent(geom) e FROM grid WHERE valid_to IS NULL) t")).one()
            # A house outside every grid, without a phone.
            s.execute(text("INSERT INTO household (household_no, address, head_name, phone, residents, elderly, "
                           "children, disabled, pregnant, bedridden, floors, geom) VALUES ('9999999999999999991', "
                           "'镇外1号', '外来户', NULL, 2, 0, 0, 0, 0, 0, 1, ST_SetSRID(ST_MakePoint(:x, :y), 4326))"),
                      {"x": x0 - 0.05, "y": y0 - 0.05})
            # Missing phones: one house in the grid staff's grid, one elsewhere.
            in_scope = s.execute(text("SELECT h.id FROM household h JOIN grid g ON g.code = :c AND g.valid_to IS NULL "
                                      "AND ST_Intersects(g.geom, h.geom) ORDER BY h.id LIMIT 2"),
                                 {"c": staff_scope}).scalars().all()
            elsewhere = s.execute(text("SELECT h.id FROM household h WHERE NOT EXISTS (SELECT 1 FROM grid g "
                                       "WHERE g.code = :c AND g.valid_to IS NULL AND ST_Intersects(g.geom, h.geom)) "
                                       "AND EXISTS (SELECT 1 FROM resident r WHERE r.household_id = h.id) "
                                       "ORDER BY h.id DESC LIMIT 1"), {"c": staff_scope}).scalar_one()
            s.execute(text("UPDATE household SET phone = NULL WHERE id = ANY(:ids)"),
                      {"ids": [in_scope[0], elsewhere]})
            # ID numbers: a wrong check digit (in scope), a birth date that disagrees (elsewhere).
            r1 = s.execute(text("SELECT id, id_number FROM resident WHERE household_id = :h ORDER BY id LIMIT 1"),
                           {"h": in_scope[1]}).one()
            bad_check = r1.id_number[:17] + ("0" if r1.id_number[17] != "0" else "1")
            s.execute(text("UPDATE resident SET id_number = :n WHERE id = :id"), {"n": bad_check, "id": r1.id})
            r2 = s.execute(text("SELECT id, id_number, birth_date FROM resident WHERE household_id = :h "
                                "ORDER BY id LIMIT 1"), {"h": elsewhere}).one()
            s.execute(text("UPDATE resident SET birth_date = birth_date + 1 WHERE id = :id"), {"id": r2.id})
            # A group grid (not the grid staff's) without its leader and members; a staff member without a phone.
            stripped = s.execute(text("SELECT max(code) FROM grid WHERE level = 4 AND valid_to IS NULL")).scalar_one()
            s.execute(text("DELETE FROM staff WHERE grid_code = :c AND role IN ('grid_leader', 'grid_member')"),
                      {"c": stripped})
            no_phone_staff = s.execute(text("SELECT id FROM staff WHERE grid_code = :c AND role = 'grid_member' "
                                            "ORDER BY id LIMIT 1"), {"c": staff_scope}).scalar_one()
            s.execute(text("UPDATE staff SET phone = NULL WHERE id = :id"), {"id": no_phone_staff})
            small = s.execute(text("SELECT min(id) FROM shelter")).scalar_one()
            s.execute(text("UPDATE shelter SET capacity = 1 WHERE id = :id"), {"id": small})
        with engine.connect() as c:
            truth = {
                "url": url, "staff_scope": staff_scope, "stripped": stripped, "no_phone_staff": no_phone_staff,
                "bad_check": (in_scope[1], bad_check), "bad_birth": (elsewhere, r2.id_number),
                "missing_phone": {in_scope[0], elsewhere},
                "households": c.execute(text("SELECT id, phone, residents, ST_X(geom), ST_Y(geom) FROM household "
                                             "ORDER BY id")).all(),
                "grids": c.execute(text("SELECT code, level, ST_AsBinary(geom) FROM grid "
                                         "WHERE valid_to IS NULL")).all(),
                "staff": c.execute(text("SELECT id, role, grid_code, phone FROM staff")).all(),
                "residents": c.execute(text("SELECT household_id, id_number, birth_date, gender FROM resident "
                                            "WHERE id_number IS NOT NULL")).all(),
                "shelters": c.execute(text("SELECT id, capacity, ST_X(geom), ST_Y(geom) FROM shelter")).all(),
            }
        engine.dispose()
        yield truth


@pytest.fixture(scope="module")
def expected(town):
    """Each kind of finding worked out from the rows with shapely/numpy (no PostGIS function used)."""
    hh = town["households"]
    ids = np.array([r[0] for r in hh])
    pts = shapely.points([r[3] for r in hh], [r[4] for r in hh])
    grids = {code: (level, shapely.from_wkb(bytes(g))) for code, level, g in town["grids"]}
    inside_any = np.zeros(len(ids), bool)
    group_of: dict[int, str] = {}
    for code, (level, geom) in grids.items():
        hit = shapely.intersects(geom, pts)
        inside_any |= hit
        if level == 4:
            for i in np.flatnonzero(hit):
                group_of.setdefault(int(ids[i]), code)  # the first (lowest) code, as grid_at orders
    groups = sorted(c for c, (lvl, _) in grids.items() if lvl == 4)
    roles: dict[str, dict[str, int]] = {c: {"grid_leader": 0, "grid_member": 0} for c in groups}
    for _, role, code, _ in town["staff"]:
        if code in roles and role in roles[code]:
            roles[code][role] += 1
    per_grid: dict[str, int] = {}
    for code in group_of.values():
        per_grid[code] = per_grid.get(code, 0) + 1
    bad_ids = set()
    for hid, number, born, gender in town["residents"]:
        ok = gb11643_valid(number) and (born is None or number[6:14] == born.strftime("%Y%m%d"))
        ok = ok and (gender not in ("男", "女") or ("男" if int(number[16]) % 2 else "女") == gender)
        if not ok:
            bad_ids.add(hid)
    # Catchments: each house to its nearest shelter, distances in the metric CRS of the region.
    to_m = Transformer.from_crs(4326, 4546, always_xy=True)
    hx, hy = to_m.transform([r[3] for r in hh], [r[4] for r in hh])
    sx, sy = to_m.transform([r[2] for r in town["shelters"]], [r[3] for r in town["shelters"]])
    d = np.hypot(np.subtract.outer(np.array(hx), np.array(sx)), np.subtract.outer(np.array(hy), np.array(sy)))
    nearest = d.argmin(axis=1)
    load = np.bincount(nearest, weights=[r[2] for r in hh], minlength=len(sx))
    over = {town["shelters"][j][0] for j in range(len(sx)) if load[j] > town["shelters"][j][1]}
    return {
        "household_outside_grids": set(ids[~inside_any].tolist()),
        "household_missing_phone": {r[0] for r in hh if not (r[1] or "").strip()},
        "resident_invalid_id": bad_ids,
        "grid_without_leader": {c for c in groups if roles[c]["grid_leader"] == 0},
        "grid_without_members": {c for c in groups if roles[c]["grid_member"] == 0},
        "household_without_responsible": {int(h) for h in ids if group_of.get(int(h)) is None
                                          or roles[group_of[int(h)]]["grid_member"] == 0},
        "staff_missing_phone": {sid for sid, _, _, phone in town["staff"] if not (phone or "").strip()},
        "shelter_over_capacity": over,
        "per_grid": per_grid, "roles": roles,
    }


def _ids(report, kind, key):
    return {f[key] for f in report["findings"] if f["kind"] == kind}


def _summary(report):
    return {s["kind"]: s for s in report["summary"]}


def test_the_report_finds_each_planted_defect_and_agrees_with_an_independent_count(town, expected):
    with make_client(town["url"], "admin") as admin:
        r = admin.get("/register/quality", params={"member_limit": 3, "per_kind": 20000})
    assert r.status_code == 200, r.text
    report = r.json()
    summary = _summary(report)
    assert report["area"] == [] and report["responsibility"] == "grid"
    for kind, key in (("household_outside_grids", "household_id"), ("household_missing_phone", "household_id"),
                      ("grid_without_leader", "grid_code"), ("grid_without_members", "grid_code"),
                      ("household_without_responsible", "household_id"), ("staff_missing_phone", "staff_id"),
                      ("shelter_over_capacity", "shelter_id")):
        assert _ids(report, kind, key) == expected[kind], kind
        assert summary[kind]["total"] == len(expected[kind]) == summary[kind]["listed"], kind
    assert _ids(report, "resident_invalid_id", "household_id") == expected["resident_invalid_id"]
    # The planted defects are among them (the independent answer is not trivially empty).
    assert len(expected["household_outside_grids"]) == 1
    assert town["missing_phone"] <= expected["household_missing_phone"]
    assert {town["bad_check"][0], town["bad_birth"][0]} <= expected["resident_invalid_id"]
    assert town["stripped"] in expected["grid_without_leader"] & expected["grid_without_members"]
    assert town["no_phone_staff"] in expected["staff_missing_phone"]
    assert expected["shelter_over_capacity"]
    reasons = {f["household_id"]: f["detail"] for f in report["findings"] if f["kind"] == "resident_invalid_id"}
    assert "校验码错误" in reasons[town["bad_check"][0]] and town["bad_check"][1] in reasons[town["bad_check"][0]]
    assert "出生日期" in reasons[town["bad_birth"][0]]
    # Members over the limit: the grid's households shared among its members (ceil), above 3.
    want = {}
    for code, n in expected["per_grid"].items():
        m = expected["roles"][code]["grid_member"]
        if m and math.ceil(n / m) > 3:
            want[code] = (math.ceil(n / m), m)
    over = [f for f in report["findings"] if f["kind"] == "member_over_limit"]
    assert want and {f["grid_code"] for f in over} == set(want)
    assert all(f["value"] == want[f["grid_code"]][0] and f["limit"] == 3 for f in over)
    assert len(over) == sum(m for _, m in want.values())
    # A higher limit lists fewer members; a limit nobody passes lists none.
    with make_client(town["url"], "admin") as admin:
        high = admin.get("/register/quality", params={"member_limit": 100000}).json()
    assert _summary(high)["member_over_limit"]["total"] == 0


def test_once_a_responsibility_list_is_loaded_it_decides(town):
    """With 联系户 rows (roster's household_responsible) a member's load is their own households, and a household
    without a current row has no responsible member, whatever its grid's staff."""
    with database_copy(town["url"], "list") as url:
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as c:
            members = c.execute(text("SELECT id FROM staff WHERE role = 'grid_member' AND grid_code = :g "
                                     "ORDER BY id LIMIT 2"), {"g": town["staff_scope"]}).scalars().all()
            houses = c.execute(text("SELECT id FROM household ORDER BY id LIMIT 7")).scalars().all()
            rows = [(h, members[0], None) for h in houses[:5]] + [(houses[5], members[1], None)]
            rows.append((houses[6], members[1], "ended"))  # ended today: no longer responsible
            for h, staff, ended in rows:
                c.execute(text("INSERT INTO household_responsible (household_id, staff_id, valid_from, valid_to) "
                               "VALUES (:h, :s, CURRENT_DATE - 30, CASE WHEN :e THEN CURRENT_DATE END)"),
                          {"h": h, "s": staff, "e": ended is not None})
            total = c.execute(text("SELECT count(*) FROM household")).scalar_one()
        engine.dispose()
        with make_client(url, "admin") as admin:
            report = admin.get("/register/quality", params={"member_limit": 3, "per_kind": 20000}).json()
    assert report["responsibility"] == "list"
    over = [f for f in report["findings"] if f["kind"] == "member_over_limit"]
    assert [(f["staff_id"], f["value"]) for f in over] == [(members[0], 5)]
    without = _ids(report, "household_without_responsible", "household_id")
    assert len(without) == total - 6 and houses[6] in without and not set(houses[:6]) & without


def test_per_kind_caps_the_list_not_the_count(town, expected):
    with make_client(town["url"], "admin") as admin:
        report = admin.get("/register/quality", params={"per_kind": 1, "member_limit": 3}).json()
    s = _summary(report)["household_without_responsible"]
    assert s["total"] == len(expected["household_without_responsible"]) > 1 and s["listed"] == 1


def test_roles_see_their_area_listed_and_personal_values_only_where_allowed(town, expected):
    engine = create_engine(town["url"], poolclass=NullPool)
    with engine.connect() as c:
        before = c.execute(text("SELECT count(*) FROM audit_log WHERE action = 'read_personal'")).scalar_one()
    with make_client(town["url"], "admin") as admin:
        shown = admin.get("/register/quality").json()
    with make_client(town["url"], "command_center") as cc:
        masked = cc.get("/register/quality").json()
    with make_client(town["url"], "planner") as planner:
        counts_only = planner.get("/register/quality").json()
    with make_client(town["url"], "grid_staff") as staff:
        own = staff.get("/register/quality").json()
    with engine.connect() as c:
        rows = c.execute(text("SELECT actor, resource_ids FROM audit_log WHERE action = 'read_personal' "
                              "ORDER BY id OFFSET :n"), {"n": before}).all()
    engine.dispose()
    bad_hid, bad_number = town["bad_check"]
    # admin: shown, and audited with exactly the households shown.
    admin_hh = {f["household_id"] for f in shown["findings"] if "household_id" in f}
    assert all(f["personal_fields"] == "shown" for f in shown["findings"] if "household_id" in f)
    own_hh = {f["household_id"] for f in own["findings"] if "household_id" in f}
    assert [r.actor for r in rows] == ["test_admin", "test_grid_staff"]  # the command center saw none
    assert {int(i) for i in rows[0].resource_ids} == admin_hh
    assert {int(i) for i in rows[1].resource_ids} == own_hh and own_hh
    # command center: the same households, masked (no active emergency), nothing audited for it.
    cc_bad = next(f for f in masked["findings"]
                  if f.get("household_id") == bad_hid and f["kind"] == "resident_invalid_id")
    assert bad_number not in cc_bad["detail"] and MASKED_ID.search(cc_bad["detail"])
    assert cc_bad["personal_fields"] == "masked" and cc_bad["subject"].endswith("*")
    assert {f.get("household_id") for f in masked["findings"]} == {f.get("household_id") for f in shown["findings"]}
    # planner: no household rows at all, only counts; grid, staff and shelter findings in full.
    s = _summary(counts_only)
    assert all("household_id" not in f for f in counts_only["findings"])
    assert s["household_missing_phone"]["hidden"] == s["household_missing_phone"]["total"] > 0
    assert s["grid_without_leader"]["listed"] == len(expected["grid_without_leader"])
    assert all("link" not in f for f in counts_only["findings"])  # no household map for the planner
    # grid staff: their own grid only, with its defects listed and shown.
    assert own["area"] == [town["staff_scope"]]
    assert {f["grid_code"] for f in own["findings"]} == {town["staff_scope"]}
    own_phone = _ids(own, "household_missing_phone", "household_id")
    assert own_phone == town["missing_phone"] & own_phone and len(own_phone) == 1
    assert _ids(own, "staff_missing_phone", "staff_id") == {town["no_phone_staff"]}
    assert bad_number in next(f["detail"] for f in own["findings"] if f["kind"] == "resident_invalid_id")
    assert all(f["link"] == f"/maps/households?grid_code={town['staff_scope']}" for f in own["findings"])


def test_the_csv_has_chinese_headers_and_every_listed_finding(town):
    with make_client(town["url"], "command_center") as cc:
        report = cc.get("/register/quality").json()
        r = cc.get("/register/quality", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == ["问题类型", "网格编码", "网格", "对象", "户号", "说明", "数值", "上限", "个人信息"]
    assert len(rows) - 1 == len(report["findings"]) == int(r.headers["X-Total-Count"])
    assert {row[0] for row in rows[1:]} >= {"住户缺少联系电话", "网格无网格长", "安置点容量不足"}
    codes = {csv_text_read(row[1]) for row in rows[1:] if row[1]}
    assert all(re.fullmatch(r"\d{15}", c) for c in codes)
    assert all(row[8] in ("", "已脱敏") for row in rows[1:])


def test_bad_parameters_are_refused_naming_the_field(town):
    with make_client(town["url"], "admin") as admin:
        for params, field in (({"member_limit": 0}, "member_limit"), ({"per_kind": "x"}, "per_kind"),
                              ({"format": "pdf"}, "format")):
            r = admin.get("/register/quality", params=params)
            assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
            assert field in str(r.json()["errors"][0]["loc"])


def test_the_id_rule_agrees_with_the_independent_one():
    from gis.register.quality import id_number_problem

    rng = np.random.default_rng(7)
    for _ in range(300):
        first = "411324" + f"{rng.integers(1940, 2020)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}" + \
            f"{rng.integers(0, 1000):03d}"
        good = _with_check_digit(first)
        assert id_number_problem(good) is None and gb11643_valid(good)
        wrong = good[:17] + next(c for c in "0123456789X" if c != good[17])
        assert id_number_problem(wrong) == "校验码错误" and not gb11643_valid(wrong)
    assert id_number_problem("41132419900230123X") == "出生日期码不是有效日期"
    assert id_number_problem("4113241990") is not None


@pytest.fixture(scope="module")
def site(town, accounts):
    with live_site(town["url"]) as served:
        yield served


@pytest.mark.browser
@pytest.mark.parametrize("phone", [False, True], ids=["desktop", "phone"])
def test_the_quality_page_in_a_browser(open_as, town, phone):
    page, checker, status = open_as("grid_staff", "/pages/quality", phone=phone)
    assert status == 200
    kinds = page.locator("#quality-summary tbody tr")
    assert kinds.count() == 9
    phone_section = page.locator("#quality-household_missing_phone tbody tr")
    assert phone_section.count() == 1
    link = phone_section.first.locator("a")
    assert link.get_attribute("href") == f"/maps/households?grid_code={town['staff_scope']}"
    assert page.text_content("#quality-status").startswith("共发现")
    assert "您负责的网格" in page.text_content("#quality-status")
    # A new limit re-checks: with 1 household per member every member of the grid is over it.
    page.fill("#quality-limit", "1")
    page.click("#quality-form button[type=submit]")
    page.wait_for_function("document.documentElement.dataset.wanggeReady === '1'")
    assert page.locator("#quality-member_over_limit tbody tr").count() >= 1
    assert "member_limit=1" in page.get_attribute("#quality-csv", "href")
    # Nothing runs off the right edge of a phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    page.screenshot(path=screenshot_path(f"register-quality-{'phone' if phone else 'desktop'}"), full_page=True)
    # A bad limit is refused in Chinese on the page, never as raw JSON.
    page.evaluate("document.getElementById('quality-limit').removeAttribute('min')")
    page.fill("#quality-limit", "0")
    page.click("#quality-form button[type=submit]")
    page.wait_for_function("document.documentElement.dataset.wanggeReady === '1'")
    banner = page.text_content("#wangge-banner")
    assert banner and re.search(r"[\u4e00-\u9fff]", banner) and "{" not in banner
    checker.problems()  # the refused request is expected; nothing else may fail
    assert [p for p in checker.problems() if "/register/quality" not in p] == []
