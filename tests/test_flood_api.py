"""GET /flood/households, /flood/checklist, /flood/risk: who sees which personal fields, the audit
trail, the CSV/GeoJSON/HTML/PDF outputs, and the per-grid risk counts."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import database_copy, make_client
from tests.test_flood_finder import as_multi


@pytest.fixture(scope="module")
def flood_db(test_db_url, accounts):
    """A private copy of the sample town with one drawn flood extent (the river plus part of the
    grid staff's own group grid) and an active emergency over the river part only."""
    from gis import emergencies
    from gis.db import transaction
    from gis.flood.extents import save_extent

    with database_copy(test_db_url, "flood") as url:
        engine = create_engine(url, poolclass=NullPool)
        with transaction(engine) as s:
            river = shapely.from_wkb(bytes(s.execute(
                text("SELECT ST_AsBinary(ST_LineMerge(ST_Union(geom))) FROM river")).scalar_one()))
            staff_grid = accounts["grid_staff"]["scope_codes"][0]
            grid = shapely.from_wkb(bytes(s.execute(
                text("SELECT ST_AsBinary(geom) FROM grid WHERE valid_to IS NULL AND code = :c"), {"c": staff_grid}
            ).scalar_one()))
            river_part = river.buffer(0.003)
            geom = as_multi(shapely.union_all([river_part, grid.buffer(-0.0005)]))
            ext = save_extent(s, geom, "drawn", "测试淹没范围")
            emergencies.declare(s, accounts["command_center"]["id"], "防汛应急（测试）", "test",
                                MultiPolygon([river_part]))
            rows = s.execute(text("SELECT id, ST_X(geom), ST_Y(geom) FROM household ORDER BY id")).all()
        engine.dispose()
        arr = np.array(rows, dtype=float)
        pts = shapely.points(arr[:, 1], arr[:, 2])
        ids = arr[:, 0].astype(np.int64)
        info = {
            "url": url, "extent_id": ext.id, "staff_grid": staff_grid,
            "inside": set(ids[shapely.intersects(geom, pts)].tolist()),
            "in_emergency": set(ids[shapely.intersects(geom, pts) & shapely.intersects(river_part, pts)].tolist()),
        }
        yield info


@pytest.fixture(scope="module")
def api(flood_db):
    made = {role: make_client(flood_db["url"], role) for role in
            ("admin", "command_center", "emergency", "planner", "grid_staff", "supervisor")}
    for c in made.values():
        c.__enter__()
    yield made
    for c in made.values():
        c.__exit__(None, None, None)


def get_all(client, extent_id, **params):
    r = client.get("/flood/households", params={"extent": extent_id, "limit": 5000, **params})
    assert r.status_code == 200, r.text
    return r.json()


def shown(body) -> set[int]:
    return {h["id"] for h in body["items"] if h["personal_fields"] == "shown"}


def last_audit(url, path):
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT actor, action, resource_ids, detail FROM audit_log WHERE path = :p "
                                "ORDER BY id DESC LIMIT 1"), {"p": path}).mappings().one()
    engine.dispose()
    return row


def test_admin_gets_every_household_with_personal_fields(api, flood_db):
    body = get_all(api["admin"], flood_db["extent_id"])
    assert {h["id"] for h in body["items"]} == flood_db["inside"]
    assert body["total"] == len(flood_db["inside"]) and shown(body) == flood_db["inside"]
    assert [h["priority_rank"] for h in body["items"]] == list(range(1, body["total"] + 1))
    h = body["items"][0]
    for key in ("member_name", "member_phone", "leader_name", "leader_phone", "shelter_name", "grid_code",
                "village_name", "area_name", "members", "depth_m", "floors", "elderly", "bedridden"):
        assert key in h
    audit = last_audit(flood_db["url"], "/flood/households")
    assert audit["action"] == "read_personal" and audit["actor"] == "test_admin"
    assert set(map(int, audit["resource_ids"])) == flood_db["inside"]


def test_emergency_team_gets_only_the_households_inside_the_active_emergency(api, flood_db):
    # The household list's rule (issue 11, item 3): rows inside an active emergency, nothing else.
    body = get_all(api["emergency"], flood_db["extent_id"], reason="转移核查")
    assert flood_db["inside"] - flood_db["in_emergency"], "the extent reaches beyond the emergency"
    assert {h["id"] for h in body["items"]} == flood_db["in_emergency"] == shown(body)
    audit = last_audit(flood_db["url"], "/flood/households")
    assert audit["actor"] == "test_emergency" and audit["action"] == "read_personal"
    assert set(map(int, audit["resource_ids"])) == flood_db["in_emergency"]
    assert audit["detail"]["households"] == len(flood_db["in_emergency"])


def test_command_center_gets_every_row_personal_fields_inside_the_emergency(api, flood_db):
    body = get_all(api["command_center"], flood_db["extent_id"])
    assert {h["id"] for h in body["items"]} == flood_db["inside"]
    assert shown(body) == flood_db["in_emergency"]
    for h in body["items"]:
        if h["id"] not in flood_db["in_emergency"]:
            assert h["head_name"].endswith("*") and "*" in h["phone"]
            assert all(m["name"].endswith("*") and not isinstance(m["age"], int)
                       for m in h["members"])


def test_grid_staff_get_the_households_of_their_own_grid_only(api, flood_db):
    body = get_all(api["grid_staff"], flood_db["extent_id"])
    own = {h["id"] for h in body["items"] if h["grid_code"] == flood_db["staff_grid"]}
    assert own, "the extent covers part of the staff's grid"
    assert {h["id"] for h in body["items"]} == own == shown(body)
    # Another grid named: nothing of it, and the call is still audited (as a plain read).
    admin = get_all(api["admin"], flood_db["extent_id"])
    other = next(h["grid_code"] for h in admin["items"] if h["grid_code"] != flood_db["staff_grid"])
    body = get_all(api["grid_staff"], flood_db["extent_id"], grid_code=other)
    assert body["items"] == [] and body["total"] == 0
    audit = last_audit(flood_db["url"], "/flood/households")
    assert audit["action"] == "read" and audit["resource_ids"] == [] and audit["detail"]["shown"] == 0


def test_planner_gets_no_rows(api, flood_db):
    r = api["planner"].get("/flood/households", params={"extent": flood_db["extent_id"]})
    assert r.status_code == 403
    r = api["planner"].get("/flood/checklist", params={"extent": flood_db["extent_id"]})
    assert r.status_code == 403


def test_bad_requests_name_the_field(api, flood_db):
    r = api["admin"].get("/flood/households")
    assert r.status_code == 422 and "extent" in r.text
    r = api["admin"].get("/flood/households", params={"extent": 987654321})
    assert r.status_code == 404
    r = api["admin"].get("/flood/households", params={"extent": flood_db["extent_id"], "buffer_m": -1})
    assert r.status_code == 422 and "buffer_m" in r.text


def test_buffer_adds_households(api, flood_db):
    near = get_all(api["admin"], flood_db["extent_id"], buffer_m=200)
    assert {h["id"] for h in near["items"]} > flood_db["inside"]


def test_csv_has_bom_and_chinese_headers(api, flood_db):
    r = api["admin"].get("/flood/households", params={"extent": flood_db["extent_id"], "format": "csv",
                                                      "limit": 5000})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:4] == ["优先序号", "优先分值", "户号", "户主"]
    assert {"责任网格员", "网格员电话", "安置点", "距离(米)", "房屋处水深(米)"} <= set(rows[0])
    assert len(rows) == len(flood_db["inside"]) + 1
    assert rows[1][0] == "1"


def test_geojson(api, flood_db):
    r = api["admin"].get("/flood/households", params={"extent": flood_db["extent_id"], "format": "geojson",
                                                      "limit": 5000})
    fc = r.json()
    assert r.headers["content-type"].startswith("application/geo+json")
    assert {f["id"] for f in fc["features"]} == flood_db["inside"]
    assert all(f["geometry"]["type"] == "Point" for f in fc["features"])


@pytest.fixture(scope="module")
def one_village(api, flood_db):
    body = get_all(api["admin"], flood_db["extent_id"])
    village = body["items"][0]["village_code"]
    return village, [h for h in body["items"] if h["village_code"] == village]


def test_checklist_html_lists_the_households_per_member(api, flood_db, one_village):
    village, households = one_village
    r = api["admin"].get("/flood/checklist", params={"extent": flood_db["extent_id"], "grid_code": village})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "防汛避险转移明白卡" in html and "@page" in html
    for h in households:
        assert h["household_no"] in html and h["head_name"] in html
    members = {(h["member_name"], h["member_phone"]) for h in households}
    assert html.count('<section class="card">') == len(members)
    for name, phone in members:
        assert name in html and phone in html


def test_checklist_pdf_embeds_the_chinese_text(api, flood_db, one_village):
    from pypdf import PdfReader

    village, households = one_village
    r = api["admin"].get("/flood/checklist", params={"extent": flood_db["extent_id"], "grid_code": village,
                                                     "format": "pdf"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(r.content))
    content = "".join(page.extract_text() for page in reader.pages)
    assert "防汛避险转移明白卡" in content
    for h in households:
        assert h["household_no"] in content and h["head_name"] in content
    fonts = [f.get_object() for f in reader.pages[0]["/Resources"]["/Font"].values()]
    assert any("CJK" in str(f["/BaseFont"]) for f in fonts), [f["/BaseFont"] for f in fonts]


def test_checklist_masks_for_the_command_center_outside_the_emergency(api, flood_db):
    body = get_all(api["admin"], flood_db["extent_id"], grid_code=flood_db["staff_grid"])
    outside = [h for h in body["items"] if h["id"] not in flood_db["in_emergency"]]
    assert outside
    r = api["command_center"].get("/flood/checklist", params={"extent": flood_db["extent_id"],
                                                              "grid_code": flood_db["staff_grid"]})
    assert r.status_code == 200
    for h in outside:
        assert h["household_no"] in r.text and h["head_name"] not in r.text
    assert "个人信息已按权限脱敏" in r.text
    # The emergency team gets none of them: they are outside the active emergency.
    r = api["emergency"].get("/flood/checklist", params={"extent": flood_db["extent_id"],
                                                         "grid_code": flood_db["staff_grid"]})
    assert r.status_code == 200
    assert not any(h["household_no"] in r.text for h in outside)
    audit = last_audit(flood_db["url"], "/flood/checklist")
    assert audit["actor"] == "test_emergency" and audit["detail"]["endpoint"] == "flood_checklist"


# --- per-grid risk ----------------------------------------------------------------------------------

def test_risk_counts_per_grid_and_stage(session):
    from gis.flood import finder
    from gis.flood.risk import flood_risk

    river = shapely.from_wkb(bytes(session.execute(
        text("SELECT ST_AsBinary(ST_LineMerge(ST_Union(geom))) FROM river")).scalar_one()))

    class Stage:
        def __init__(self, stage):
            self.id, self.geom = None, as_multi(river.buffer(0.001 * stage))

    extents = {s: Stage(s) for s in (0.5, 1.0, 2.0, 3.0)}
    groups = flood_risk(session, level=4, extent_for_stage=lambda _s, stage: extents[stage])
    villages = flood_risk(session, level=3, extent_for_stage=lambda _s, stage: extents[stage])
    for stage, ext in extents.items():
        key = f"{stage:g}"
        hits = finder.household_ids_with_grids(session, ext.geom)
        by_grid: dict[str, int] = {}
        for _, code in hits:
            by_grid[code] = by_grid.get(code, 0) + 1
        assert {g["code"]: g["stages"][key]["households"] for g in groups["grids"]
                if g["stages"][key]["households"]} == by_grid
        total = next(t for t in groups["totals"] if t["stage_m"] == stage)
        assert total["households"] == len(hits)
        assert sum(g["stages"][key]["households"] for g in villages["grids"]) == len(hits)
        assert sum(g["stages"][key]["residents"] for g in villages["grids"]) == total["residents"]
    for g in groups["grids"]:
        counts = [g["stages"][f"{s:g}"]["households"] for s in (0.5, 1.0, 2.0, 3.0)]
        assert counts == sorted(counts)  # the water only spreads as it rises
        first = next((s for s, c in zip((0.5, 1.0, 2.0, 3.0), counts, strict=True) if c), None)
        assert g["first_stage_m"] == first
        assert g["risk_class"] == {0.5: "高", 1.0: "较高", 2.0: "中", 3.0: "低", None: "无"}[first]
    assert len(groups["grids"]) == 282 and len(villages["grids"]) == 20


def test_the_2023_09_23_scenario_holds_the_four_low_villages(api):
    from gis.sample_town import LOW_LYING_VILLAGES

    r = api["admin"].get("/flood/households", params={"scenario": "2023-09-23", "limit": 5000})
    assert r.status_code == 200, r.text
    body = r.json()
    assert 44 <= body["total"] <= 50
    assert {h["village_name"] for h in body["items"]} == set(LOW_LYING_VILLAGES)
    assert all(h["depth_m"] is not None and h["depth_m"] > 0 for h in body["items"])
    assert body["totals"]["unplaced_households"] == 0


def test_the_list_names_its_extent_as_it_was_asked_for(api):
    """A named scenario keeps its own name (not its modelled stage's); by its id the stored extent is named as
    stored. The page is the same rows either way."""
    from gis.flood.stages import NAMED_SCENARIOS

    named = NAMED_SCENARIOS["2023-09-23"]
    by_name = api["admin"].get("/flood/households", params={"scenario": "2023-09-23", "limit": 3}).json()
    assert by_name["extent"]["name"] == named.name and by_name["extent"]["stage_m"] == named.stage_m
    by_id = api["admin"].get("/flood/households", params={"extent": by_name["extent"]["id"], "limit": 3}).json()
    stored = [e for e in api["admin"].get("/flood/extents").json() if e["id"] == by_name["extent"]["id"]]
    assert stored and by_id["extent"]["name"] == stored[0]["name"]
    assert by_id["extent"] | {"name": None} == by_name["extent"] | {"name": None}
    assert [h["id"] for h in by_id["items"]] == [h["id"] for h in by_name["items"]]
    # Every reader (those who see every row, and those whose totals and page are filtered), in each form that
    # names the extent, and the 明白卡; a stage asked by its number keeps the stored stage's name.
    stage = f"{named.stage_m:g}"
    for role in ("admin", "command_center", "emergency", "grid_staff", "supervisor"):
        for scenario, name in (("2023-09-23", named.name), (stage, stored[0]["name"])):
            for fmt in ("json", "geojson"):
                r = api[role].get("/flood/households", params={"scenario": scenario, "limit": 3, "format": fmt})
                assert r.status_code == 200 and r.json()["extent"]["name"] == name, (role, scenario, fmt)
            grid = api["grid_staff"].get("/flood/households", params={"scenario": scenario, "limit": 1}).json()
            code = (grid["items"] or by_name["items"])[0]["grid_code"]
            card = api[role].get("/flood/checklist", params={"scenario": scenario, "grid_code": code})
            assert card.status_code == 200 and f"<title>防汛避险转移明白卡 — {name}</title>" in card.text, (
                role, scenario)
