"""Declaring an emergency by naming the extent: a stored extent's id or a scenario, not only pasted GeoJSON."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import database_copy, make_client


@pytest.fixture(scope="module")
def db(test_db_url: Any) -> Iterator[Any]:
    with database_copy(test_db_url, "emergency_by_extent") as url:
        yield url


@pytest.fixture(scope="module")
def cc(db: Any, accounts: dict[str, Any]) -> Iterator[Any]:
    with make_client(db, "command_center") as c:
        yield c


def _sql(url: Any, sql: str, **params: Any) -> Any:
    eng = create_engine(url, poolclass=NullPool)
    try:
        with eng.connect() as c:
            return c.execute(text(sql), params).all()
    finally:
        eng.dispose()


def _model_extent(cc: Any, stage: float, mode: str = "fluvial") -> dict[str, Any]:
    computed = cc.get("/flood/scenarios").json()["computed"]
    return next(e for e in computed if e["stage_m"] == stage and e["mode"] == mode)


def _declare(cc: Any, **form: Any) -> Any:
    return cc.post("/emergencies", json={"title": "防汛应急（测试）", "reason": "河水上涨", **form})


def _same_area(url: Any, emergency_id: int, extent_id: int) -> bool:
    return bool(_sql(url, "SELECT ST_Equals(e.extent, f.geom) AND ST_NPoints(e.extent) = ST_NPoints(f.geom) "
                          "FROM emergency e, flood_extent f WHERE e.id = :e AND f.id = :f",
                     e=emergency_id, f=extent_id)[0][0])


def _audit(db: Any, emergency_id: int) -> dict[str, Any]:
    with make_client(db, "admin") as admin:
        rows = admin.get("/audit", params={"action": "declare_emergency", "resource_id": str(emergency_id)}).json()
    (row,) = rows["items"]
    return row  # type: ignore[no-any-return]


def test_each_form_declares_the_extent_the_geometry_form_would(db: Any, cc: Any, accounts: dict[str, Any]) -> None:
    night = _model_extent(cc, 2.0)  # the 2023-09-23 scenario is the 2 m fluvial stage
    pasted = cc.get(f"/flood/extents/{night['id']}").json()["features"][0]["geometry"]
    by_geometry = _declare(cc, extent=pasted)
    by_id = _declare(cc, extent_id=night["id"])
    by_name = _declare(cc, scenario="2023-09-23")
    by_stage = _declare(cc, scenario="2")
    for r in (by_geometry, by_id, by_name, by_stage):
        assert r.status_code == 201, r.text
        assert r.json()["active"] is True and r.json()["declared_by"] == accounts["command_center"]["username"]
    for r in (by_geometry, by_id, by_name, by_stage):
        assert _same_area(db, r.json()["id"], night["id"])
    # The answers carry the same polygon, whichever way it was named.
    assert by_id.json()["extent"] == by_name.json()["extent"] == by_stage.json()["extent"]
    assert _sql(db, "SELECT bool_and(ST_Equals(a.extent, b.extent)) FROM emergency a, emergency b "
                    "WHERE a.id = :g AND b.id IN (:i, :n)",
                g=by_geometry.json()["id"], i=by_id.json()["id"], n=by_name.json()["id"])[0][0]

    # Audited, saying how the extent was named.
    assert _audit(db, by_geometry.json()["id"])["detail"]["extent_from"] == "geojson"
    assert _audit(db, by_id.json()["id"])["detail"] == {
        "title": "防汛应急（测试）", "extent_from": "extent_id", "extent_id": night["id"]}
    named = _audit(db, by_name.json()["id"])
    assert named["actor"] == accounts["command_center"]["username"] and named["reason"] == "河水上涨"
    assert named["detail"] == {"title": "防汛应急（测试）", "extent_from": "scenario", "scenario": "2023-09-23",
                               "mode": "fluvial", "extent_id": night["id"]}

    for r in (by_geometry, by_id, by_name, by_stage):
        closed = cc.post(f"/emergencies/{r.json()['id']}/close", json={"reason": "水退"})
        assert closed.status_code == 200 and closed.json()["active"] is False


def test_a_pluvial_stage_and_another_stage_name_their_own_extents(db: Any, cc: Any) -> None:
    for stage, mode in ((1.5, "fluvial"), (1.0, "pluvial")):
        ext = _model_extent(cc, stage, mode)
        r = _declare(cc, scenario=f"{stage:g}", mode=mode)
        assert r.status_code == 201, r.text
        assert _same_area(db, r.json()["id"], ext["id"])
        cc.post(f"/emergencies/{r.json()['id']}/close", json={"reason": "演练结束"})


def test_an_uploaded_or_drawn_extent_is_declared_by_its_id(db: Any, cc: Any) -> None:
    (lon, lat), = _sql(db, "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM grid "
                           "WHERE level = 3 AND valid_to IS NULL AND name = '小岗村') s")
    square = {"type": "Polygon", "coordinates": [[[lon - 0.003, lat - 0.002], [lon + 0.003, lat - 0.002],
                                                  [lon + 0.003, lat + 0.002], [lon - 0.003, lat + 0.002],
                                                  [lon - 0.003, lat - 0.002]]]}
    drawn = cc.post("/flood/extents/drawn", json={"name": "巡查圈定", "geometry": square})
    assert drawn.status_code == 201, drawn.text
    r = _declare(cc, extent_id=drawn.json()["id"])
    assert r.status_code == 201 and _same_area(db, r.json()["id"], drawn.json()["id"])
    cc.post(f"/emergencies/{r.json()['id']}/close", json={"reason": "核查完毕"})


def _locs(r: Any) -> list[list[Any]]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return [e["loc"] for e in r.json()["errors"]]


def test_bad_forms_are_422_naming_the_field_and_write_nothing(db: Any, cc: Any) -> None:
    before = _sql(db, "SELECT count(*) FROM emergency")[0][0]
    night = _model_extent(cc, 2.0)
    pasted = cc.get(f"/flood/extents/{night['id']}").json()["features"][0]["geometry"]
    assert _locs(_declare(cc)) == [["body", "extent"], ["body", "extent_id"], ["body", "scenario"]]
    assert _locs(_declare(cc, extent_id=night["id"], scenario="2023-09-23")) == [
        ["body", "extent_id"], ["body", "scenario"]]
    assert _locs(_declare(cc, extent=pasted, extent_id=night["id"])) == [["body", "extent"], ["body", "extent_id"]]
    unknown = _sql(db, "SELECT max(id) + 1000 FROM flood_extent")[0][0]
    assert _locs(_declare(cc, extent_id=unknown)) == [["body", "extent_id"]]
    assert _locs(_declare(cc, extent_id=0)) == [["body", "extent_id"]]
    for scenario in ("1900-07-01", "1.3", "19.5", "-1", "nan", "洪水"):
        r = _declare(cc, scenario=scenario)
        assert _locs(r) == [["body", "scenario"]], scenario
    # A stage of the allowed set not computed yet: the message says how to compute it.
    r = _declare(cc, scenario="7.5")
    assert _locs(r) == [["body", "scenario"]]
    assert "尚未计算" in r.json()["errors"][0]["msg"] and "POST /flood/scenarios" in r.json()["errors"][0]["msg"]
    assert _locs(_declare(cc, scenario="1", mode="tidal")) == [["body", "mode"]]
    assert _sql(db, "SELECT count(*) FROM emergency")[0][0] == before


def test_only_the_roles_that_manage_emergencies_declare(db: Any, cc: Any) -> None:
    before = _sql(db, "SELECT count(*) FROM emergency")[0][0]
    for role in ("emergency", "grid_staff", "planner"):
        with make_client(db, role) as c:
            assert _declare(c, scenario="2023-09-23").status_code == 403
    assert _sql(db, "SELECT count(*) FROM emergency")[0][0] == before
