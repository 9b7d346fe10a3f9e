"""Every role × every household-bearing route: one access predicate, one masking (issue 11, 3).

Routes: /households (JSON, CSV, GeoJSON), /households/{id}, the household map page,
/flood/households (JSON, GeoJSON, CSV) and the 明白卡 /flood/checklist (HTML, PDF). For each role
the visible rows and the rows whose personal fields may be shown are worked out here independently
(shapely on the stored points and polygons, the README's rules), and every answer is checked
against them: no row outside the visible set, personal fields (names, phones, exact ages) only
where allowed. Run twice: with no active emergency (the emergency role gets nothing) and with one
over part of the flood.
"""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pytest
import shapely
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.spreadsheet import csv_text_read
from tests.conftest import TEST_PASSWORD, database_copy, make_client

SCENARIO = "2023-09-23"
HOUSEHOLD_NO = re.compile(r"(?<!\d)\d{19}(?!\d)")
MASKED_NAME = re.compile(r"^\w{1,2}\*$")
MASKED_PHONE = re.compile(r"^\d{3}\*{4}\d{4}$")
MASKED_BIRTH = re.compile(r"^\d{4}-\*\*-\*\*$")
AGE_BAND = re.compile(r"^\d+-\d+$")
# Roles of the shared test accounts, plus grid staff and a supervisor whose grids the flood reaches.
ROLES = ("admin", "command_center", "emergency", "planner", "grid_staff", "supervisor",
         "flooded_staff", "flooded_supervisor")


def _geoms(rows) -> dict:
    return {k: shapely.from_wkb(bytes(g)) for k, g in rows}


@pytest.fixture(scope="module")
def town(test_db_url, accounts):
    """A private copy of the sample town with two more accounts; the truth the answers are checked
    against (households, their points and personal fields, grid polygons, the flood extent)."""
    from gis.auth import accounts as acc
    from gis.auth.roles import Role
    from gis.db import transaction

    with database_copy(test_db_url, "access") as url:
        engine = create_engine(url, poolclass=NullPool)
        with transaction(engine) as s:
            extent = s.execute(text("SELECT id, ST_AsBinary(geom) FROM flood_extent WHERE "
                                    "source = 'model' AND mode = 'fluvial' AND stage_m = 2.0")).one()
            rows = s.execute(text("SELECT id, household_no, head_name, phone, ST_X(geom), ST_Y(geom) "
                                  "FROM household ORDER BY id")).all()
            grids = _geoms(s.execute(text("SELECT code, ST_AsBinary(geom) FROM grid "
                                          "WHERE valid_to IS NULL")))
            levels = dict(s.execute(text("SELECT code, level FROM grid WHERE valid_to IS NULL")).all())
            flood = shapely.from_wkb(bytes(extent[1]))
            ids = np.array([r[0] for r in rows])
            pts = shapely.points([r[4] for r in rows], [r[5] for r in rows])
            inside = set(ids[shapely.intersects(flood, pts)].tolist())
            flooded_pts = pts[np.isin(ids, list(inside))]
            flooded_groups = sorted(c for c, g in grids.items()
                                    if levels[c] == 4 and shapely.intersects(g, flooded_pts).any())
            staff_grid = flooded_groups[0]
            other_village = next(c[:12] + "000" for c in flooded_groups if c[:12] != staff_grid[:12])
            made = {}
            village = staff_grid[:12] + "000"
            for name, role, scope in (("flooded_staff", Role.GRID_STAFF, [staff_grid]),
                                      ("flooded_supervisor", Role.SUPERVISOR, [village])):
                user = acc.create_user(s, f"test_{name}", TEST_PASSWORD, role, scope_codes=scope)
                made[name] = {"token": acc.create_token(s, user.id, name)[0], "scope_codes": scope}
            members = s.execute(text("SELECT household_id, name, id_number FROM resident")).all()
        engine.dispose()
        scopes = {r: accounts[r]["scope_codes"] for r in accounts}
        scopes |= {k: v["scope_codes"] for k, v in made.items()}
        info = {
            "url": url, "extent_id": extent[0], "levels": levels, "ids": ids, "pts": pts,
            "grids": grids, "inside": inside,
            "by_id": {r[0]: r for r in rows}, "by_no": {r[1]: r[0] for r in rows}, "scopes": scopes,
            "tokens": {k: v["token"] for k, v in made.items()},
            "emergency_village": other_village,
            "member_names": {}, "id_numbers": {m[2] for m in members if m[2]},
        }
        for hid, name, _ in members:
            info["member_names"].setdefault(hid, set()).add(name)
        yield info


def expected(town, role: str, emergency) -> tuple[set[int], set[int]]:
    """(visible rows, rows with personal fields shown) by the README's rules, computed here."""
    ids, pts = town["ids"], town["pts"]
    everyone = set(ids.tolist())
    in_emergency = set()
    if emergency is not None:
        in_emergency = set(ids[shapely.intersects(emergency, pts)].tolist())
    if role == "admin":
        return everyone, everyone
    if role == "command_center":
        return everyone, in_emergency
    if role == "emergency":
        return in_emergency, in_emergency
    if role == "planner":
        return set(), set()
    scope = shapely.union_all([town["grids"][c] for c in town["scopes"][role]])
    own = set(ids[shapely.intersects(scope, pts)].tolist())
    return own, own


def clients_for(town, url):
    out = {}
    for role in ROLES:
        c = make_client(url, None if role in town["tokens"] else role)
        if role in town["tokens"]:
            c.headers["Authorization"] = f"Bearer {town['tokens'][role]}"
        out[role] = c.__enter__()
    return out


def check_household(town, rec: dict, shown: bool, where: str) -> None:
    """One household record (any format): masked or shown as `shown` says, members included."""
    truth = town["by_id"][rec["id"]]
    assert rec["personal_fields"] == ("shown" if shown else "masked"), where
    if shown:
        assert rec["head_name"] == truth[2] and rec["phone"] == truth[3], where
    else:
        assert rec["head_name"] != truth[2] and MASKED_NAME.match(rec["head_name"]), where
        assert rec["phone"] != truth[3] and MASKED_PHONE.match(rec["phone"]), where
    for m in rec.get("members") or []:
        if shown:
            assert m["name"] in town["member_names"][rec["id"]], where
            assert m.get("age") is None or isinstance(m["age"], int), where
            continue
        assert m["name"] not in town["member_names"][rec["id"]], where
        assert MASKED_NAME.match(m["name"]), where
        assert m.get("birth_date") is None or MASKED_BIRTH.match(m["birth_date"]), where
        assert m.get("id_number") is None or m["id_number"] not in town["id_numbers"], where
        # No exact age beside a masked birth date: an age band at most.
        assert "age" not in m or m["age"] is None or AGE_BAND.match(str(m["age"])), (where, m)


def check_text(town, body: str, visible: set[int], shown: set[int], where: str,
               complete: set[int] | None = None):
    """A page or document: only visible households' numbers; no personal field of a masked one."""
    found = {town["by_no"][n] for n in HOUSEHOLD_NO.findall(body) if n in town["by_no"]}
    assert found <= visible, (where, sorted(found - visible)[:5])
    if complete is not None:
        assert found == complete, (where, len(found), len(complete))
    for hid in found - shown:
        truth = town["by_id"][hid]
        assert truth[2] not in body and truth[3] not in body, (where, hid)


def _checklist_ages(html: str, town, shown: set[int], where: str) -> None:
    # One table row per household: exact ages ("73岁") only in rows whose fields are shown.
    for row in html.split("<tr>")[1:]:
        numbers = [n for n in HOUSEHOLD_NO.findall(row) if n in town["by_no"]]
        if not numbers:
            continue
        for age in re.findall(r"(\d+(?:-\d+)?)岁", row):
            assert town["by_no"][numbers[0]] in shown or "-" in age, (where, numbers[0], age)


def check_every_route(town, url, emergency) -> None:
    from pypdf import PdfReader

    clients = clients_for(town, url)
    try:
        for role, c in clients.items():
            visible, shown = expected(town, role, emergency)
            flooded_visible = visible & town["inside"]
            flooded_shown = shown & town["inside"]
            flood = {"scenario": SCENARIO, "limit": 5000}
            routes = {
                "households": ("/households", {"limit": 5000}),
                "flood": ("/flood/households", flood),
                "checklist": ("/flood/checklist", {"scenario": SCENARIO}),
            }
            if role == "planner":
                for path, params in routes.values():
                    assert c.get(path, params=params).status_code == 403, (role, path)
                assert c.get(f"/households/{town['ids'][0]}").status_code == 403
                continue
            # /households, every page: exactly the visible rows.
            got, offset = [], 0
            while True:
                r = c.get("/households", params={"limit": 5000, "offset": offset})
                assert r.status_code == 200, (role, r.text)
                got += r.json()["items"]
                offset += 5000
                if offset >= r.json()["total"]:
                    break
            assert {h["id"] for h in got} == visible, role
            for h in got:
                check_household(town, h, h["id"] in shown, f"{role} /households")
            fc = c.get("/households", params={"limit": 5000, "format": "geojson"}).json()
            for f in fc["features"]:
                assert f["id"] in visible, role
                check_household(town, {**f["properties"], "id": f["id"]}, f["id"] in shown,
                                f"{role} geojson")
            raw = c.get("/households", params={"limit": 5000, "format": "csv"}).content
            table = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
            for row in table:
                hid = int(re.sub(r"\D", "", row["编号"]))  # however an identifier is kept as text
                assert hid in visible, role
                fields = "shown" if row["个人信息"] in ("shown", "显示") else "masked"
                check_household(town, {"id": hid, "head_name": csv_text_read(row["户主"]),
                                       "phone": csv_text_read(row["电话"]),
                                       "personal_fields": fields}, hid in shown, f"{role} csv")
            # /households/{id}: a flooded one and one of another grid; invisible ones are 404.
            for hid in sorted(town["inside"])[:2] + [int(town["ids"][0]), int(town["ids"][-1])]:
                r = c.get(f"/households/{hid}")
                if hid in visible:
                    assert r.status_code == 200, (role, hid)
                    check_household(town, r.json(), hid in shown, f"{role} detail")
                else:
                    assert r.status_code == 404, (role, hid)
            # The household map page (a village of the flood; scoped roles see their own anyway).
            village = sorted(town["inside"])[0]
            code = next(g for g, geom in town["grids"].items() if town["levels"][g] == 3
                        and geom.intersects(town["pts"][town["ids"] == village][0]))
            page = c.get("/maps/households", params={"grid_code": code})
            assert page.status_code == 200, (role, page.text[:300])
            check_text(town, page.text, visible, shown, f"{role} map")
            # The flood list: exactly the visible flooded rows, in every format.
            body = c.get("/flood/households", params=flood).json()
            assert {h["id"] for h in body["items"]} == flooded_visible, role
            assert body["total"] == len(flooded_visible), role
            assert {u["id"] for u in body["unplaced"]} <= flooded_visible
            for h in body["items"]:
                check_household(town, h, h["id"] in shown, f"{role} flood json")
            fc = c.get("/flood/households", params={**flood, "format": "geojson"}).json()
            assert {f["id"] for f in fc["features"]} == flooded_visible, role
            for f in fc["features"]:
                check_household(town, {**f["properties"], "id": f["id"]}, f["id"] in shown,
                                f"{role} flood geojson")
            raw = c.get("/flood/households", params={**flood, "format": "csv"}).content
            check_text(town, raw.decode("utf-8-sig"), visible, shown, f"{role} flood csv",
                       complete=flooded_visible)
            # The 明白卡, HTML and PDF.
            html = c.get("/flood/checklist", params={"scenario": SCENARIO}).text
            check_text(town, html, visible, shown, f"{role} checklist", complete=flooded_visible)
            _checklist_ages(html, town, flooded_shown, f"{role} checklist")
            if flooded_visible:
                pdf = c.get("/flood/checklist", params={"scenario": SCENARIO, "format": "pdf"})
                assert pdf.status_code == 200, role
                pages = PdfReader(io.BytesIO(pdf.content)).pages
                content = "".join(p.extract_text() for p in pages)
                check_text(town, content, visible, shown, f"{role} pdf", complete=flooded_visible)
    finally:
        for c in clients.values():
            c.__exit__(None, None, None)


def test_every_role_every_route_without_an_emergency(town):
    # The emergency role gets no household at all; grid staff only their own grid's.
    visible, _ = expected(town, "emergency", None)
    assert visible == set()
    assert expected(town, "flooded_staff", None)[0] & town["inside"], "the flood reaches that grid"
    check_every_route(town, town["url"], None)


def test_every_role_every_route_with_an_active_emergency(town):
    from gis import emergencies
    from gis.db import transaction

    emergency = town["grids"][town["emergency_village"]]
    with database_copy(town["url"], "em") as url:
        engine = create_engine(url, poolclass=NullPool)
        with transaction(engine) as s:
            user = s.execute(text("SELECT id FROM app_user "
                                  "WHERE username = 'test_command_center'")).scalar_one()
            emergencies.declare(s, user, "防汛应急（测试）", "test", shapely.MultiPolygon(
                list(getattr(emergency, "geoms", [emergency]))))
        engine.dispose()
        in_emergency = expected(town, "emergency", emergency)[0] & town["inside"]
        assert in_emergency and town["inside"] - in_emergency, "an emergency over part of the flood"
        check_every_route(town, url, emergency)
