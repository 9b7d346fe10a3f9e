"""Incident intake, assignment, routing, duplicates, the loop through the API, and who sees what."""

from __future__ import annotations

import datetime as dt
import io
import threading

import numpy as np
import pytest
import shapely
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from gis.crs import wgs84_to_gcj02
from tests.conftest import WHEN, make_client


@pytest.fixture(scope="module")
def town(engine, accounts):
    from gis.db import transaction
    from gis.grids.store import current_grids

    with transaction(engine) as s:
        groups = current_grids(s, level=4)
    own = accounts["grid_staff"]["scope_codes"][0]
    own_geom = groups.set_index("code").loc[own, "geometry"]
    other = groups[groups["code"].str[:12] != own[:12]].iloc[0]
    return {"groups": groups, "own": own, "own_pt": own_geom.representative_point(),
            "other": other["code"], "other_pt": other.geometry.representative_point()}


def post(client, **fields):
    body = {"category": "dispute", "description": "宅基地边界纠纷", "occurred_at": WHEN, **fields}
    return client.post("/incidents", json=body)


@pytest.fixture
def db(scratch_db_url, accounts):
    with (make_client(scratch_db_url, "admin") as admin, make_client(scratch_db_url, "grid_staff") as staff,
          make_client(scratch_db_url, "command_center") as cc):
        yield {"admin": admin, "staff": staff, "cc": cc, "url": scratch_db_url}


def audit_rows_for(url, incident_id: int) -> list[tuple]:
    eng = create_engine(url, poolclass=NullPool)
    with eng.connect() as c:
        rows = c.execute(text("SELECT actor, action, method, path FROM audit_log WHERE resource = 'incident' "
                              "AND resource_ids = ARRAY[:i]::text[]"), {"i": str(incident_id)}).all()
    eng.dispose()
    return [tuple(r) for r in rows]


def test_intake_assigns_every_level_and_routes_to_the_grid_people(db, town):
    p = town["own_pt"]
    r = post(db["staff"], lon=p.x, lat=p.y, reporter_name="王小明", reporter_phone="13812345678")
    assert r.status_code == 201, r.text
    inc = r.json()
    assert inc["group_code"] == town["own"] and inc["village_code"] == town["own"][:12] + "000"
    assert inc["area_code"] and inc["town_code"].endswith("000000")
    assert inc["state"] == "visit" and inc["location_source"] == "coordinates"
    assert not inc["flagged"]
    duties = {a["duty"] for a in inc["assignees"]}
    assert duties == {"leader", "member", "supervisor"}
    assert all(a["grid_code"] in (town["own"], town["own"][:12] + "000") for a in inc["assignees"])
    assert inc["history"][0]["action"] == "intake" and inc["history"][0]["to_state"] == "visit"
    assert inc["reporter_name"] == "王小明"  # grid staff of that grid see the reporter
    assert audit_rows_for(db["url"], inc["id"]) == [("test_grid_staff", "create", "POST", "/incidents")]
    # The answer to the POST (read through the insert's RETURNING) is exactly what a GET reads back,
    # plus where the incident was routed (issue 11 item 14).
    routing = {k: inc.pop(k) for k in ("outside_your_grids", "routing_notice")}
    levels = ("town_code", "area_code", "village_code", "group_code")
    assert [p["code"] for p in inc["grid_path"]] == [inc[k] for k in levels]
    assert routing["outside_your_grids"] is False
    assert db["staff"].get(f"/incidents/{inc['id']}").json() == inc
    masked = db["cc"].get(f"/incidents/{inc['id']}").json()
    assert masked["reporter_name"] == "王*" and masked["reporter_phone"] == "138****5678"


def test_gcj02_input_lands_in_the_same_grid(db, town):
    p = town["own_pt"]
    gx, gy = wgs84_to_gcj02(np.array([p.x]), np.array([p.y]))
    inc = post(db["admin"], lon=float(gx[0]), lat=float(gy[0]), crs="gcj02").json()
    assert inc["group_code"] == town["own"]
    assert abs(inc["lon"] - p.x) < 2e-5 and abs(inc["lat"] - p.y) < 2e-5


def test_place_names_resolve_offline_or_are_refused_with_candidates(db):
    r = post(db["admin"], place="尹营村三组")
    assert r.status_code == 201, r.text
    inc = r.json()
    assert inc["location_source"] == "gazetteer" and inc["place_match"] == "尹营村第三网格"
    assert inc["precision_m"] > 50
    bad = post(db["admin"], place="火星村")
    assert bad.status_code == 422
    err = bad.json()["errors"][0]
    assert err["loc"] == ["body", "place"] and err["type"] == "no_match" and err["ctx"]["candidates"]
    both = post(db["admin"], place="尹营村三组", lon=112.1, lat=33.0)
    assert both.status_code == 422


def test_outside_points_flagged_within_tolerance_refused_beyond(db, town):
    groups = town["groups"]
    x0, y0, x1, y1 = groups.total_bounds
    outline = shapely.union_all(groups.geometry.values)
    # 100 m east of the easternmost point: inside the 200 m tolerance.
    east = max(shapely.get_coordinates(outline), key=lambda c: c[0])
    near = post(db["admin"], lon=float(east[0]) + 100 / 93_000, lat=float(east[1]))
    assert near.status_code == 201, near.text
    assert near.json()["flagged"] and 80 < near.json()["outside_distance_m"] < 120
    assert audit_rows_for(db["url"], near.json()["id"]) == [("test_admin", "create", "POST", "/incidents")]
    far = post(db["admin"], lon=x1 + 0.05, lat=(y0 + y1) / 2)
    assert far.status_code == 422 and far.json()["errors"][0]["type"] == "outside_town"
    queue = db["cc"].get("/incidents/review").json()
    assert near.json()["id"] in {i["id"] for i in queue["items"]}
    assert db["cc"].post(f"/incidents/{near.json()['id']}/review").status_code == 200
    assert near.json()["id"] not in {i["id"] for i in db["cc"].get("/incidents/review").json()["items"]}


def test_shared_edge_incident_is_flagged_on_boundary(db, town):
    g = town["groups"]
    a = g.geometry.iloc[0]
    vertex = shapely.get_coordinates(a)[0]
    inc = post(db["admin"], lon=float(vertex[0]), lat=float(vertex[1])).json()
    assert inc["on_boundary"] is True and inc["flagged"] is True


def test_same_external_id_twice_and_concurrently_makes_one_incident(db, town):
    p = town["own_pt"]
    first = post(db["admin"], lon=p.x, lat=p.y, external_id="platform-42")
    again = post(db["admin"], lon=p.x, lat=p.y, external_id="platform-42")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    results = []

    def worker():
        with make_client(db["url"], "admin") as c:
            results.append(post(c, lon=p.x, lat=p.y, external_id="platform-43").json()["id"])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    eng = create_engine(db["url"], poolclass=NullPool)
    with eng.connect() as c:
        assert c.execute(text("SELECT count(*) FROM incident WHERE external_id = 'platform-43'")).scalar_one() == 1
    eng.dispose()


def test_nearby_same_category_open_incidents_are_linked_not_merged(db, town):
    p = town["own_pt"]
    a = post(db["admin"], lon=p.x, lat=p.y).json()
    b = post(db["admin"], lon=p.x + 0.0003, lat=p.y).json()          # ~30 m
    c = post(db["admin"], lon=p.x, lat=p.y, category="environment").json()
    assert a["id"] != b["id"]
    assert {d["incident_id"] for d in b["possible_duplicates"]} >= {a["id"]}
    assert a["id"] in {d["incident_id"] for d in db["admin"].get(f"/incidents/{b['id']}").json()["possible_duplicates"]}
    assert a["id"] not in {d["incident_id"] for d in c["possible_duplicates"]}


def test_the_loop_through_the_api_with_reopen_rights_and_immutable_history(db, town):
    p = town["own_pt"]
    inc = post(db["staff"], lon=p.x, lat=p.y).json()
    url = f"/incidents/{inc['id']}/transitions"
    skip = db["staff"].post(url, json={"action": "satisfied"})
    assert skip.status_code == 422
    assert skip.json()["errors"][0]["ctx"]["allowed"] == ["advance"]
    for expected in ("report", "study", "handle", "follow_up"):
        r = db["staff"].post(url, json={"action": "advance", "note": f"to {expected}"})
        assert r.status_code == 200 and r.json()["state"] == expected
    assert db["staff"].post(url, json={"action": "not_satisfied"}).json()["state"] == "handle"
    db["staff"].post(url, json={"action": "advance"})
    closed = db["staff"].post(url, json={"action": "satisfied"}).json()
    assert closed["state"] == "closed" and closed["satisfied"] is True
    assert db["staff"].post(url, json={"action": "reopen"}).status_code == 403
    assert db["cc"].post(url, json={"action": "reopen"}).json()["state"] == "handle"
    history = db["admin"].get(f"/incidents/{inc['id']}").json()["history"]
    assert [h["to_state"] for h in history] == [
        "visit", "report", "study", "handle", "follow_up", "handle", "follow_up", "closed", "handle"]
    eng = create_engine(db["url"], poolclass=NullPool)
    with pytest.raises(DBAPIError, match="immutable"), eng.begin() as c:
        c.execute(text("UPDATE incident_event SET note = 'rewritten' WHERE incident_id = :i"), {"i": inc["id"]})
    eng.dispose()


def test_grid_staff_see_only_their_grids_incidents(db, town):
    mine = post(db["admin"], lon=town["own_pt"].x, lat=town["own_pt"].y).json()
    theirs = post(db["admin"], lon=town["other_pt"].x, lat=town["other_pt"].y).json()
    listed = db["staff"].get("/incidents", params={"limit": 1000}).json()
    ids = {i["id"] for i in listed["items"]}
    assert mine["id"] in ids and theirs["id"] not in ids
    assert db["staff"].get(f"/incidents/{theirs['id']}").status_code == 404
    assert db["staff"].post(f"/incidents/{theirs['id']}/transitions", json={"action": "advance"}).status_code == 404
    csv_text = db["staff"].get("/incidents", params={"format": "csv"}).text
    assert csv_text.startswith("\ufeff") and f"\n{theirs['id']}," not in csv_text
    # A village code selects the whole subtree.
    by_village = db["admin"].get("/incidents", params={"grid_code": town["own"][:12] + "000", "limit": 5000}).json()
    assert mine["id"] in {i["id"] for i in by_village["items"]}


def test_overdue_and_escalation_on_a_controllable_clock(session, accounts, town):
    from gis.auth.principal import Principal
    from gis.auth.roles import Role
    from gis.incidents import service

    admin = Principal(accounts["admin"]["id"], "test_admin", Role.ADMIN)
    t0 = dt.datetime(2026, 6, 1, 8, tzinfo=dt.UTC)
    req = service.IntakeRequest(category="disaster", description="积水", occurred_at=t0,
                                lon=town["own_pt"].x, lat=town["own_pt"].y)
    iid = service.intake(session, admin, req, outside_tolerance_m=200, duplicate_radius_m=100,
                         duplicate_window_hours=72, now=t0).id
    rows, _ = service.list_incidents(session, admin, overdue=True, grid_code=town["own"], limit=10_000,
                                     now=t0 + dt.timedelta(minutes=30))
    assert iid not in {r["id"] for r in rows}
    rows, _ = service.list_incidents(session, admin, overdue=True, grid_code=town["own"], limit=10_000,
                                     now=t0 + dt.timedelta(minutes=61))
    hit = next(r for r in rows if r["id"] == iid)
    assert hit["escalation_level"] == 3 and hit["escalated_to"] == town["own"][:12] + "000"
    later = service.get_incident(session, admin, iid, now=t0 + dt.timedelta(hours=3, minutes=1))
    assert later["escalation_level"] == 1 and later["escalated_to"].endswith("000000")
    service.transition(session, admin, iid, "advance", now=t0 + dt.timedelta(hours=3, minutes=2))
    fresh = service.get_incident(session, admin, iid, now=t0 + dt.timedelta(hours=3, minutes=30))
    assert fresh["state"] == "report" and not fresh["overdue"]


def test_stats_per_grid_follow_the_loop_and_the_scope(db, town):
    p = town["own_pt"]
    inc = post(db["staff"], lon=p.x, lat=p.y, category="environment").json()
    url = f"/incidents/{inc['id']}/transitions"
    for _ in range(4):
        db["staff"].post(url, json={"action": "advance"})
    db["staff"].post(url, json={"action": "not_satisfied"})
    db["staff"].post(url, json={"action": "advance"})
    db["staff"].post(url, json={"action": "satisfied"})
    own_stats = db["staff"].get("/incidents/stats", params={"level": 4}).json()
    assert {s["code"] for s in own_stats} == {town["own"]}  # grid staff: their grid only
    row = own_stats[0]
    assert row["by_category"]["environment"] >= 1 and row["by_state"]["closed"] >= 1
    assert row["follow_ups"] == 2 and row["satisfaction_rate"] == 0.5
    assert {"visit", "report", "study", "handle", "follow_up"} <= set(row["stages"])
    assert row["stages"]["visit"]["on_time_rate"] == 1.0 and row["on_time_rate"] == 1.0
    town_stats = db["admin"].get("/incidents/stats", params={"level": 3}).json()
    assert len(town_stats) == 20 and sum(s["total"] for s in town_stats) >= 5000


def _png() -> bytes:
    # A whole, decodable image: photos are accepted only once Pillow has decoded them (issue 11).
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (2, 2), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()


def test_photos_are_checked_by_content_listed_as_metadata_and_scoped(db, town):
    mine = post(db["staff"], lon=town["own_pt"].x, lat=town["own_pt"].y).json()
    theirs = post(db["admin"], lon=town["other_pt"].x, lat=town["other_pt"].y).json()
    ok = db["staff"].post(f"/incidents/{mine['id']}/attachments", files={"file": ("现场.png", PNG)})
    assert ok.status_code == 201, ok.text
    meta = ok.json()
    assert meta["content_type"] == "image/png" and meta["size"] == len(PNG) and "data" not in meta
    listed = db["staff"].get(f"/incidents/{mine['id']}").json()["attachments"]
    assert [a["id"] for a in listed] == [meta["id"]] and "data" not in listed[0]
    raw = db["staff"].get(f"/incidents/{mine['id']}/attachments/{meta['id']}")
    assert raw.content == PNG and raw.headers["content-type"] == "image/png"
    assert raw.headers["x-content-type-options"] == "nosniff"
    fake = db["staff"].post(f"/incidents/{mine['id']}/attachments",
                            files={"file": ("photo.png", b"<svg onload=alert(1)></svg>")})
    assert fake.status_code == 422 and fake.json()["errors"][0]["type"] == "unsupported_type"
    other = db["staff"].post(f"/incidents/{theirs['id']}/attachments", files={"file": ("a.png", PNG)})
    assert other.status_code == 404
    assert db["staff"].get(f"/incidents/{mine['id']}/attachments/{meta['id'] + 999}").status_code == 404


def test_oversize_photo_is_refused(scratch_db_url, accounts, town):
    with make_client(scratch_db_url, "admin", max_attachment_bytes=1000) as admin:
        inc = post(admin, lon=town["own_pt"].x, lat=town["own_pt"].y).json()
        big = PNG + b"\x00" * 2000
        r = admin.post(f"/incidents/{inc['id']}/attachments", files={"file": ("big.png", big)})
        assert r.status_code in (413, 422), r.text
