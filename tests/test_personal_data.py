"""Personal data: who sees which households, which fields are masked, in every output format."""

from __future__ import annotations

import csv
import io
import re

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import make_client

MASKED_NAME = re.compile(r"^\w{1,2}\*+$")
MASKED_PHONE = re.compile(r"^\d{3}\*{4}\d{4}$")
MASKED_ID = re.compile(r"^\d{6}\*{8}[\dX]{4}$")


def households_in(engine, code: str) -> set[int]:
    with engine.connect() as c:
        return set(
            c.execute(
                text(
                    "SELECT h.id FROM household h JOIN grid g ON g.code = :c AND g.valid_to IS NULL "
                    "AND ST_Intersects(g.geom, h.geom)"
                ),
                {"c": code},
            ).scalars()
        )


@pytest.fixture(scope="module")
def own_and_other(engine, accounts):
    own_code = accounts["grid_staff"]["scope_codes"][0]
    with engine.connect() as c:
        other_code = c.execute(
            text("SELECT code FROM grid WHERE level = 4 AND valid_to IS NULL AND left(code, 12) <> left(:c, 12) "
                 "ORDER BY code LIMIT 1"),
            {"c": own_code},
        ).scalar_one()
    return own_code, households_in(engine, own_code), other_code, households_in(engine, other_code)


def all_pages(client, **params) -> list[dict]:
    out, offset = [], 0
    while True:
        r = client.get("/households", params={**params, "limit": 1000, "offset": offset})
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["items"]
        offset += 1000
        if offset >= body["total"]:
            return out


def test_grid_staff_sees_exactly_their_own_grid(clients, own_and_other):
    own_code, own_ids, _, _ = own_and_other
    rows = all_pages(clients["grid_staff"])
    assert {r["id"] for r in rows} == own_ids and own_ids
    assert all(r["personal_fields"] == "shown" for r in rows)
    assert all(not MASKED_NAME.match(r["head_name"]) for r in rows)


def test_grid_staff_cannot_reach_another_grid_by_id_bbox_filter_or_export(clients, own_and_other, engine):
    _, own_ids, other_code, other_ids = own_and_other
    staff = clients["grid_staff"]
    some_other = sorted(other_ids)[0]
    r = staff.get(f"/households/{some_other}")
    assert r.status_code == 404 and "that you may see" in r.json()["detail"]
    assert staff.get(f"/households/{sorted(own_ids)[0]}").status_code == 200
    # A bbox around the other grid, and a filter naming it: nothing of it comes back.
    with engine.connect() as c:
        x0, y0, x1, y1 = c.execute(
            text("SELECT ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom) FROM grid "
                 "WHERE code = :c AND valid_to IS NULL"), {"c": other_code}).one()
    assert staff.get("/households", params={"bbox": f"{x0},{y0},{x1},{y1}"}).json()["total"] == 0
    assert staff.get("/households", params={"grid_code": other_code}).json()["total"] == 0
    for fmt in ("csv", "geojson"):
        body = staff.get("/households", params={"format": fmt, "limit": 5000}).text
        for hid in sorted(other_ids)[:20]:
            assert f'"id": {hid},' not in body and f"\n{hid}," not in body
    geo = staff.get("/households", params={"format": "geojson", "limit": 5000}).json()
    assert {f["id"] for f in geo["features"]} == own_ids


def test_supervisor_sees_their_village(clients, accounts, engine):
    village = accounts["supervisor"]["scope_codes"][0]
    rows = all_pages(clients["supervisor"])
    assert {r["id"] for r in rows} == households_in(engine, village)


def test_planner_gets_counts_never_rows_or_personal_fields(clients, engine):
    planner = clients["planner"]
    assert planner.get("/households").status_code == 403
    assert planner.get("/households/1").status_code == 403
    counts = planner.get("/households/counts", params={"level": 4})
    assert counts.status_code == 200
    rows = counts.json()
    assert len(rows) == 282 and sum(r["households"] for r in rows) > 17_000
    assert set(rows[0]) == {"code", "name", "level", "households", "residents", "elderly", "children",
                            "disabled", "pregnant", "bedridden"}
    # Personal values of ordinary households (not party-member households, whose heads are
    # published staff contacts) appear in no answer the planner can get.
    with engine.connect() as c:
        samples = c.execute(text(
            "SELECT h.head_name, h.phone FROM household h WHERE NOT EXISTS "
            "(SELECT 1 FROM staff s WHERE s.household_id = h.id) ORDER BY h.id LIMIT 300")).all()
        ids = c.execute(text("SELECT id_number FROM resident ORDER BY id LIMIT 300")).scalars().all()
    bodies = [counts.text, planner.get("/grids", params={"level": 4}).text, planner.get("/maps/grids").text,
              planner.get("/stats").text]
    phones = {p for _, p in samples if p}
    for body in bodies:
        assert not any(p in body for p in phones)
        assert not any(i in body for i in ids)


def test_command_center_gets_masked_fields_in_every_format(clients):
    cc = clients["command_center"]
    body = cc.get("/households", params={"limit": 200}).json()
    assert body["total"] > 17_000
    for r in body["items"]:
        assert r["personal_fields"] == "masked"
        assert MASKED_NAME.match(r["head_name"]), r["head_name"]
        assert r["phone"] is None or MASKED_PHONE.match(r["phone"]), r["phone"]
        assert "**号" in r["address"]
    geo = cc.get("/households", params={"limit": 200, "format": "geojson"}).json()
    for f in geo["features"]:
        assert MASKED_NAME.match(f["properties"]["head_name"])
        assert f["properties"]["phone"] is None or MASKED_PHONE.match(f["properties"]["phone"])
    raw = cc.get("/households", params={"limit": 200, "format": "csv"})
    assert raw.content.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(raw.text.lstrip("\ufeff"))))
    assert len(rows) == 200
    assert all(MASKED_NAME.match(r["户主"]) for r in rows)
    assert all(not r["电话"] or MASKED_PHONE.match(r["电话"]) for r in rows)
    one = cc.get(f"/households/{body['items'][0]['id']}").json()
    assert one["members"] and all(MASKED_ID.match(m["id_number"]) for m in one["members"])
    assert all(MASKED_NAME.match(m["name"]) for m in one["members"])
    assert all(m["birth_date"].endswith("-**-**") for m in one["members"])


def test_admin_sees_full_values(clients):
    r = clients["admin"].get("/households", params={"limit": 5}).json()
    assert all(r_["personal_fields"] == "shown" and not MASKED_NAME.match(r_["head_name"]) for r_ in r["items"])
    one = clients["admin"].get(f"/households/{r['items'][0]['id']}").json()
    assert all(re.fullmatch(r"\d{17}[\dX]", m["id_number"]) for m in one["members"])


def test_emergency_opens_personal_fields_inside_its_extent_only(scratch_db_url, accounts):
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with engine.connect() as c:
        village, extent = c.execute(text(
            "SELECT code, ST_AsGeoJSON(geom) FROM grid WHERE level = 3 AND valid_to IS NULL AND name = '岁坡村'")).one()
    inside = households_in(engine, village)
    engine.dispose()
    import json

    with make_client(scratch_db_url, "command_center") as cc, make_client(scratch_db_url, "emergency") as em:
        assert em.get("/households").json()["total"] == 0  # no emergency: nothing
        declared = cc.post("/emergencies", json={"title": "暴雨", "reason": "drill", "extent": json.loads(extent)})
        assert declared.status_code == 201, declared.text
        eid = declared.json()["id"]
        rows = all_pages(em)
        assert {r["id"] for r in rows} == inside
        assert all(r["personal_fields"] == "shown" for r in rows)
        # The command center: full values inside the extent, masked outside.
        cc_rows = {r["id"]: r for r in all_pages(cc, grid_code=village[:9] + "000000")}
        assert all(cc_rows[i]["personal_fields"] == "shown" for i in inside)
        assert all(r["personal_fields"] == "masked" for i, r in cc_rows.items() if i not in inside)
        closed = cc.post(f"/emergencies/{eid}/close", json={"reason": "water receded"})
        assert closed.status_code == 200 and closed.json()["active"] is False
        assert em.get("/households").json()["total"] == 0
        assert em.get(f"/households/{sorted(inside)[0]}").status_code == 404
        again = cc.post(f"/emergencies/{eid}/close", json={"reason": "twice"})
        assert again.status_code == 422


@pytest.mark.parametrize(
    ("extent", "kind"),
    [
        (
            {
                "type": "Polygon",
                "coordinates": [[[112.1, 32.9], [112.2, 33.0], [112.2, 32.9], [112.1, 33.0], [112.1, 32.9]]],
            },
            "invalid_geometry",
        ),
        ({"type": "Polygon", "coordinates": [[[112.1, 32.9], [112.2, 32.9], [112.2, "NaN"], [112.1, 32.9]]]}, ""),
        (
            {"type": "Polygon", "coordinates": [[[32.9, 112.1], [32.9, 112.2], [33.0, 112.2], [32.9, 112.1]]]},
            "swapped_lonlat",
        ),
        ({"type": "Polygon", "coordinates": [[[500, 32.9], [600, 32.9], [600, 33], [500, 32.9]]]}, "out_of_range"),
        (
            {"type": "Polygon", "coordinates": [[[112.1, 32.9, 1], [112.2, 32.9], [112.2, 33], [112.1, 32.9, 1]]]},
            "mixed_dimensions",
        ),
        ({"type": "Point", "coordinates": [112.1, 32.9]}, "bad_geometry_type"),
    ],
)
def test_bad_emergency_extent_is_422_naming_the_problem(clients, extent, kind):
    r = clients["command_center"].post("/emergencies", json={"title": "t", "reason": "r", "extent": extent})
    assert r.status_code == 422, r.text
    errors = r.json()["errors"]
    assert all(e["loc"][:2] == ["body", "extent"] for e in errors), errors
    assert kind in {e["type"] for e in errors} or not kind


def test_unknown_crs_for_an_extent_is_422(clients):
    extent = {"type": "Polygon", "coordinates": [[[112.1, 32.9], [112.2, 32.9], [112.2, 33], [112.1, 32.9]]]}
    r = clients["command_center"].post("/emergencies", json={"title": "t", "reason": "r", "extent": extent,
                                                             "crs": "EPSG:999999"})
    assert r.status_code == 422 and "crs" in r.json()["errors"][0]["loc"]
