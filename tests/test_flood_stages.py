"""Modelled flood stages: GETs never compute or store one; a bounded set, one limit (issue 11, 8).

Every GET route under /flood is called with stages that would once have been computed on the spot
(an allowed stage not stored yet, a stage off the step, named scenarios on a database whose DEM is
not imported): every table's row count (the audit log aside: reads are audited by design) and the
flood_extent / flood_dem rows must be the same afterwards. Stages are computed only by
POST /flood/scenarios (admin, command center) within the one configured limit.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import database_copy, make_client

# GET routes under /flood and the requests that would have made them model a new stage.
NOT_STORED = 8.0  # allowed (a multiple of the step, under the maximum) but not precomputed
GET_REQUESTS = {
    "/flood/households": [{"scenario": f"{NOT_STORED:g}"}, {"scenario": "0.37"},
                          {"scenario": "2023-09-23"},
                          {"scenario": f"{NOT_STORED:g}", "format": "csv"},
                          {"scenario": f"{NOT_STORED:g}", "format": "geojson"}],
    "/flood/checklist": [{"scenario": f"{NOT_STORED:g}"}, {"scenario": "0.37", "format": "pdf"}],
    "/flood/risk": [{"stages": f"0.5,{NOT_STORED:g}"}, {"stages": "0.37"}, {}],
    "/flood/scenarios/{stage_or_name}": [("8", {}), ("0.37", {}), ("1.5", {"mode": "pluvial"}),
                                         ("2023-09-23", {})],
    "/flood/scenarios": [{}],
    "/flood/extents": [{}, {"source": "model"}],
    "/flood/extents/{extent_id}": [("1", {})],
    # The flood page's layers (api/flood_pages.py).
    "/flood/map/water": [{"scenario": f"{NOT_STORED:g}"}, {"scenario": "0.37"}, {"scenario": "2023-09-23"}],
    "/flood/map/shelters": [{}, {"scenario": f"{NOT_STORED:g}"}, {"scenario": "2023-09-23"}],
    "/flood/map/assignments": [{"scenario": f"{NOT_STORED:g}"}, {"scenario": "2023-09-23"}],
    "/flood/map/network": [{}],
    "/flood/map/places": [{}],
    # A DEM upload's job (api/places.py): its state is read, nothing is computed.
    "/flood/dem/jobs/{job_id}": [("1", {})],
}


def snapshot(url) -> dict:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as c:
        tables = c.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                "AND tablename <> 'audit_log' ORDER BY tablename")).scalars().all()
        out = {t: c.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in tables}
        out["flood_extent rows"] = c.execute(text(
            "SELECT array_agg(ARRAY[id::text, source, coalesce(stage_m::text, ''), "
            "coalesce(mode, ''), md5(ST_AsBinary(geom))] ORDER BY id) FROM flood_extent")
        ).scalar_one()
        out["flood_dem rows"] = c.execute(text(
            "SELECT array_agg(ARRAY[id::text, digest, created_at::text] ORDER BY id) "
            "FROM flood_dem")).scalar_one()
    engine.dispose()
    return out


@pytest.fixture(scope="module")
def db(test_db_url, accounts):
    with database_copy(test_db_url, "stages") as url:
        yield url


def _requests():
    for path, calls in GET_REQUESTS.items():
        for call in calls:
            if isinstance(call, tuple):
                value, params = call
                yield (path.replace("{stage_or_name}", value).replace("{extent_id}", value)
                       .replace("{job_id}", value), params)
            else:
                yield path, call


def test_every_get_route_under_flood_is_covered(client):
    from tests.test_permissions import app_routes

    gets = {r.path for r in app_routes(client.app)
            if r.path.startswith("/flood") and "GET" in r.methods}
    assert gets == set(GET_REQUESTS)


def test_gets_never_compute_or_store_a_stage(db):
    before = snapshot(db)
    assert before["flood_extent"] > 0, "the DEM import stored the precomputed stages"
    with make_client(db, "admin") as admin:
        for path, params in _requests():
            r = admin.get(path, params=params)
            assert r.status_code < 500, (path, params, r.text)
            last_stage = params.get("stages", "").split(",")[-1]
            if "8" in (params.get("scenario"), last_stage) or path.endswith("/8"):
                assert r.status_code == 404, (path, r.text)
                body = r.json()
                assert "尚未计算" in body["detail"] and "POST /flood/scenarios" in body["detail"]
                field = body["loc"][-1]
                assert field in ("scenario", "stages", "stage_or_name") and field in body["detail"]
            if "0.37" in (params.get("scenario"), params.get("stages")) or path.endswith("/0.37"):
                assert r.status_code == 422, (path, r.text)
                assert r.json()["errors"][0]["loc"][-1] in ("scenario", "stages", "stage_or_name")
    assert snapshot(db) == before


def test_gets_without_an_imported_dem_do_not_import_it(test_db_url, accounts):
    with database_copy(test_db_url, "nodem") as url:
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as c:
            c.execute(text("DELETE FROM flood_dem"))
        engine.dispose()
        before = snapshot(url)
        with make_client(url, "command_center") as cc:
            for path, params in _requests():
                assert cc.get(path, params=params).status_code < 500, (path, params)
            assert cc.get("/flood/households", params={"scenario": "2023-09-23"}).status_code == 404
        assert snapshot(url) == before


def test_a_stage_is_computed_only_by_an_allowed_role_then_read(db):
    with make_client(db, "emergency") as em, make_client(db, "grid_staff") as gs:
        for c in (em, gs):
            assert c.post("/flood/scenarios", json={"stage_m": 4.5}).status_code == 403
    before = snapshot(db)
    with make_client(db, "command_center") as cc:
        assert cc.get("/flood/scenarios/4.5").status_code == 404
        r = cc.post("/flood/scenarios", json={"stage_m": 4.5})
        assert r.status_code == 201, r.text
        assert r.json()["stage_m"] == 4.5 and r.json()["modelled"]
        again = cc.post("/flood/scenarios", json={"stage_m": 4.5})
        assert again.json()["id"] == r.json()["id"]  # the same stage once
        assert cc.get("/flood/scenarios/4.5").json()["properties"]["id"] == r.json()["id"]
        assert cc.get("/flood/households", params={"scenario": "4.5"}).status_code == 200
        bad = cc.post("/flood/scenarios", json={"stage_m": 4.37})
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "stage_m"]
    after = snapshot(db)
    assert after["flood_extent"] == before["flood_extent"] + 1


def test_one_stage_limit_for_every_entry_point(db):
    from gis.flood.stages import stage_limits

    step, top = stage_limits()
    over, at_top = f"{top + step:g}", f"{top:g}"
    with make_client(db, "admin") as admin:
        for path, params in (("/flood/households", {"scenario": over}),
                             ("/flood/risk", {"stages": over}), (f"/flood/scenarios/{over}", {})):
            r = admin.get(path, params=params)
            assert r.status_code == 422, (path, r.text)
            assert f"{top:g} 米" in r.json()["errors"][0]["msg"]
        assert admin.post("/flood/scenarios", json={"stage_m": top + step}).status_code == 422
        # The maximum itself is allowed: not stored yet (404), never out of range.
        for path, params in (("/flood/households", {"scenario": at_top}),
                             ("/flood/risk", {"stages": at_top}),
                             (f"/flood/scenarios/{at_top}", {})):
            assert admin.get(path, params=params).status_code == 404, path
