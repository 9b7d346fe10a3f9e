"""Every JSON route documents its response in /openapi.json, and real answers match what it says."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
from fastapi.encoders import jsonable_encoder
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.auth.principal import Principal
from gis.auth.roles import Role
from tests.conftest import WHEN, database_copy, make_client


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (2, 2), (30, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


def _square(lon: float, lat: float, half: float = 0.002) -> dict[str, Any]:
    ring = [[lon - half, lat - half], [lon + half, lat - half], [lon + half, lat + half],
            [lon - half, lat + half], [lon - half, lat - half]]
    return {"type": "Polygon", "coordinates": [ring]}


class Exchange:
    """One request made and its answer, keyed by the operation it reached ("GET /incidents/{incident_id}")."""

    def __init__(self, operation: str, role: str, response: Any):
        self.operation, self.role, self.response = operation, role, response
        self.status = response.status_code
        self.media_type = response.headers.get("content-type", "").split(";")[0]

    def json(self) -> Any:
        return self.response.json()

    def __repr__(self) -> str:
        return f"{self.operation} as {self.role}: {self.status}"


def _run_every_route(url: Any, accounts: dict[str, dict[str, Any]]) -> list[Exchange]:
    """Call every JSON route as the admin (who sees every field) and as roles that see masked fields."""
    out: list[Exchange] = []
    clients = {role: make_client(url, role) for role in ("admin", "command_center", "grid_staff", "emergency")}
    clients["anonymous"] = make_client(url, None)
    for c in clients.values():
        c.__enter__()
    try:
        def call(role: str, method: str, operation: str, path: str, **kw: Any) -> Any:
            r = clients[role].request(method, path, **kw)
            out.append(Exchange(f"{method} {operation}", role, r))
            return r

        eng = create_engine(url, poolclass=NullPool)
        with eng.connect() as c:
            group = c.execute(text("SELECT min(code) FROM grid WHERE level = 4 AND valid_to IS NULL")).scalar_one()
            lon, lat = c.execute(text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM grid WHERE code = :c "
                "AND valid_to IS NULL) s"), {"c": group}).one()
            household = c.execute(text("SELECT min(id) FROM household")).scalar_one()
            # A point on the edge two group grids share: its incident is flagged for review.
            edge_lon, edge_lat = c.execute(text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(ST_Intersection(ST_Boundary(a.geom), "
                "ST_Boundary(b.geom))) p FROM grid a JOIN grid b ON a.code < b.code AND ST_Touches(a.geom, b.geom) "
                "WHERE a.code = :c AND b.level = 4 AND a.valid_to IS NULL AND b.valid_to IS NULL LIMIT 1) s"),
                {"c": group}).one()
        eng.dispose()

        # service and accounts
        call("admin", "GET", "/healthz", "/healthz")
        call("admin", "GET", "/stats", "/stats")
        call("anonymous", "POST", "/auth/login", "/auth/login",
             json={"username": accounts["planner"]["username"], "password": accounts["planner"]["password"]})
        call("anonymous", "POST", "/auth/login", "/auth/login",
             json={"username": accounts["planner"]["username"], "password": "wrong-password"})
        call("anonymous", "POST", "/auth/logout", "/auth/logout")
        for role in ("admin", "grid_staff"):
            call(role, "GET", "/auth/me", "/auth/me")
        call("admin", "GET", "/admin/users", "/admin/users")
        user = call("admin", "POST", "/admin/users", "/admin/users",
                    json={"username": "schema_probe", "password": "x-long-password", "role": "supervisor",
                          "scope_codes": [group], "display_name": "探针"}).json()
        call("admin", "PATCH", "/admin/users/{user_id}", f"/admin/users/{user['id']}",
             json={"display_name": "探针二", "active": True})
        token = call("admin", "POST", "/admin/users/{user_id}/tokens", f"/admin/users/{user['id']}/tokens",
                     json={"name": "probe", "expires_days": 3}).json()
        call("admin", "GET", "/admin/users/{user_id}/tokens", f"/admin/users/{user['id']}/tokens")
        call("admin", "DELETE", "/admin/tokens/{token_id}", f"/admin/tokens/{token['id']}")

        # grids
        for params in ({"level": 4, "limit": 3}, {"level": 1}):
            call("admin", "GET", "/grids", "/grids", params=params)
        call("admin", "GET", "/grids/{code}/history", f"/grids/{group}/history")
        call("admin", "GET", "/grids/{code}/timeline", f"/grids/{group}/timeline")
        call("admin", "GET", "/grids/publishes", "/grids/publishes")
        with eng.begin() as c:   # a scheduled publish to withdraw
            pending = c.execute(text("INSERT INTO grid_publish (name, changes, effective_at) VALUES ('探针', '[]', "
                                     "now() + interval '1 day') RETURNING id")).scalar_one()
        call("admin", "POST", "/grids/publishes/{publish_id}/cancel", f"/grids/publishes/{pending}/cancel")
        call("admin", "POST", "/grids/publishes/{publish_id}/cancel", f"/grids/publishes/{pending}/cancel")
        call("admin", "GET", "/grids/locate", "/grids/locate", params={"lon": lon, "lat": lat})
        call("admin", "GET", "/grids/locate", "/grids/locate", params={"lon": 100.0, "lat": 20.0})
        call("admin", "POST", "/grids/locate", "/grids/locate",
             json={"points": [{"lon": lon, "lat": lat}, {"lon": 100.0, "lat": 20.0}], "include_staff": True})
        grids_fc = clients["admin"].get("/grids", params={"parent_code": group[:12] + "000"}).content
        call("admin", "POST", "/grids/import", "/grids/import",
             files={"file": ("grids.geojson", grids_fc)}, data={"dry_run": "true"})
        # balanced suggestions for a village (a short chain keeps the probe quick); an unreachable target
        shown = call("admin", "GET", "/plans/suggestions", "/plans/suggestions",
                     params={"village": group[:12] + "000", "n": 3, "count": 1, "steps": 5}).json()
        call("admin", "GET", "/plans/suggestions", "/plans/suggestions",
             params={"village": group[:12] + "000", "target": 10**6, "tolerance": 0.05})
        call("admin", "GET", "/plans/units", "/plans/units", params={"village": group[:12] + "000", "units": "group"})
        as_shown = {"village": group[:12] + "000", "n": 3, "steps": 5, "seed": shown["suggestions"][0]["seed"],
                    "fingerprint": shown["suggestions"][0]["fingerprint"], "base": shown["base"]}
        call("admin", "GET", "/plans/suggestions/impact", "/plans/suggestions/impact",
             params={k: v for k, v in as_shown.items() if k != "base"})
        draft_body = {k: v for k, v in as_shown.items() if k != "base"}
        call("admin", "POST", "/plans/suggestions", "/plans/suggestions", json={**draft_body, "name": "建议草案"})
        call("admin", "POST", "/plans/suggestions/publish", "/plans/suggestions/publish",
             json={**as_shown, "fingerprint": "0" * 20})  # not what was shown: 409
        call("admin", "POST", "/plans/suggestions/publish", "/plans/suggestions/publish",
             json={**as_shown, "effective_at": "2099-01-01T00:00:00+08:00"})  # scheduled: pending

        # households
        for role in ("admin", "command_center", "grid_staff"):
            call(role, "GET", "/households", "/households", params={"limit": 3})
            call(role, "GET", "/households", "/households", params={"limit": 2, "format": "geojson"})
        call("admin", "GET", "/households/counts", "/households/counts", params={"level": 3})

        # the register (issue 14): import, history, edits
        eng = create_engine(url, poolclass=NullPool)
        with eng.connect() as c:
            reg_no, reg_id = c.execute(text(
                "SELECT h.household_no, min(r.id_number) FROM household h JOIN resident r ON r.household_id = h.id "
                "WHERE h.residents >= 2 AND r.id_number IS NOT NULL GROUP BY h.id ORDER BY h.id LIMIT 1")).one()
        eng.dispose()
        reg_csv = f"户号,姓名,经度,纬度\nR1,张三,{lon},{lat}\nR2,李四,{lat},{lon}\n".encode("gbk")
        call("admin", "POST", "/register/households/import", "/register/households/import",
             files={"file": ("户.csv", reg_csv)}, data={"dry_run": "true"})
        call("command_center", "POST", "/register/households/import", "/register/households/import",
             files={"file": ("户.csv", reg_csv)}, data={"mode": "good_rows", "as_of": "2026-06-01"})
        call("admin", "PATCH", "/register/households/{household_no}", f"/register/households/{reg_no}",
             json={"phone": "13800001111"})
        call("admin", "PATCH", "/register/households/{household_no}/residents/{id_number}",
             f"/register/households/{reg_no}/residents/{reg_id}", json={"status": "moved_out",
                                                                     "effective_date": "2026-05-01"})
        for role in ("admin", "command_center"):
            call(role, "GET", "/register/households/{household_no}/residents",
                 f"/register/households/{reg_no}/residents", params={"on": "2026-04-01"})
            call(role, "GET", "/register/households/{household_no}/changes", f"/register/households/{reg_no}/changes")
        for role in ("admin", "command_center"):
            call(role, "GET", "/households/{household_id}", f"/households/{household}")

        # incidents
        body = {"category": "dispute", "dispute_kind": "neighbour", "description": "探针：邻里纠纷",
                "external_id": "schema-probe-1",
                "occurred_at": WHEN, "lon": lon, "lat": lat, "reporter_name": "王五", "reporter_phone": "13800001111"}
        incident = call("admin", "POST", "/incidents", "/incidents", json=body).json()
        call("admin", "POST", "/incidents", "/incidents", json=body)  # the same external_id again: 200
        call("admin", "POST", "/incidents", "/incidents",
             json={"category": "矛盾纠纷", "description": "探针：地名", "occurred_at": "2026-11-20 09:00",
                   "place": "尹营村三组"})
        edge = call("admin", "POST", "/incidents", "/incidents",
                    json={**body, "external_id": "schema-probe-2", "description": "探针：边界", "lon": edge_lon,
                          "lat": edge_lat}).json()
        for role in ("admin", "command_center"):
            call(role, "GET", "/incidents", "/incidents", params={"limit": 3})
            call(role, "GET", "/incidents", "/incidents", params={"limit": 2, "format": "geojson"})
            call(role, "GET", "/incidents/{incident_id}", f"/incidents/{incident['id']}")
        call("admin", "GET", "/incidents", "/incidents", params={"limit": 2, "overdue": "true"})
        call("admin", "GET", "/incidents/stats", "/incidents/stats", params={"level": 3})
        call("admin", "GET", "/incidents/stats", "/incidents/stats", params={"level": 4})
        call("admin", "GET", "/incidents/review", "/incidents/review")
        call("admin", "POST", "/incidents/{incident_id}/review", f"/incidents/{incident['id']}/review")
        candidates = call("command_center", "GET", "/incidents/{incident_id}/review/candidates",
                          f"/incidents/{edge['id']}/review/candidates").json()
        call("command_center", "POST", "/incidents/{incident_id}/review", f"/incidents/{edge['id']}/review",
             json={"grid_code": next(c["code"] for c in candidates if not c["current"])})
        call("admin", "POST", "/incidents/{incident_id}/transitions", f"/incidents/{incident['id']}/transitions",
             json={"action": "advance", "note": "已受理"})
        call("admin", "POST", "/incidents/{incident_id}/attachments", f"/incidents/{incident['id']}/attachments",
             files={"file": ("a.png", _png(), "image/png")})
        call("admin", "GET", "/incidents/{incident_id}/attachments", f"/incidents/{incident['id']}/attachments")
        csv = ("category,description,occurred_at,lon,lat\n"
               f"dispute,导入一,{WHEN},{lon},{lat}\n"
               f"dispute,导入二,not-a-time,{lon},{lat}\n").encode()
        call("admin", "POST", "/incidents/import", "/incidents/import", files={"file": ("probe.csv", csv)})
        call("admin", "GET", "/incidents/{incident_id}", "/incidents/999999999")

        # emergencies
        em = call("admin", "POST", "/emergencies", "/emergencies",
                  json={"title": "汛情", "reason": "探针", "extent": _square(lon, lat)}).json()
        call("admin", "GET", "/emergencies", "/emergencies")
        call("admin", "GET", "/emergencies/{emergency_id}", f"/emergencies/{em['id']}")
        call("emergency", "GET", "/households", "/households", params={"limit": 2})
        call("admin", "POST", "/emergencies/{emergency_id}/close", f"/emergencies/{em['id']}/close",
             json={"reason": "结束"})
        call("admin", "GET", "/emergencies", "/emergencies")

        # flood
        call("admin", "GET", "/flood/scenarios", "/flood/scenarios")
        scen = call("admin", "POST", "/flood/scenarios", "/flood/scenarios", json={"stage_m": 1.0}).json()
        call("admin", "GET", "/flood/scenarios/{stage_or_name}", "/flood/scenarios/1.0")
        call("admin", "GET", "/flood/scenarios", "/flood/scenarios")
        drawn = call("admin", "POST", "/flood/extents/drawn", "/flood/extents/drawn",
                     json={"name": "画的范围", "geometry": _square(lon, lat, 0.004)}).json()
        fc = json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {}, "geometry": _square(lon, lat, 0.003)}]})
        call("admin", "POST", "/flood/extents", "/flood/extents", files={"file": ("survey.geojson", fc.encode())})
        call("admin", "GET", "/flood/extents", "/flood/extents")
        call("admin", "GET", "/flood/extents/{extent_id}", f"/flood/extents/{scen['id']}")
        call("admin", "GET", "/flood/extents/{extent_id}", f"/flood/extents/{drawn['id']}")
        for role in ("admin", "command_center"):
            call(role, "GET", "/flood/households", "/flood/households",
                 params={"scenario": "2023-09-23", "limit": 3, "buffer_m": 50})
            call(role, "GET", "/flood/households", "/flood/households",
                 params={"extent": drawn["id"], "limit": 2, "format": "geojson"})
        call("admin", "GET", "/flood/households", "/flood/households", params={"extent": scen["id"], "limit": 3})
        call("admin", "GET", "/flood/risk", "/flood/risk", params={"level": 3})
        # the flood page's layers (GeoJSON by view)
        for params in ({"scenario": "2023-09-23", "zoom": 15}, {"extent": drawn["id"]}):
            call("admin", "GET", "/flood/map/water", "/flood/map/water", params=params)
        call("admin", "GET", "/flood/map/shelters", "/flood/map/shelters", params={"scenario": "2023-09-23"})
        call("admin", "GET", "/flood/map/shelters", "/flood/map/shelters")
        call("command_center", "GET", "/flood/map/assignments", "/flood/map/assignments",
             params={"scenario": "2023-09-23"})
        call("admin", "GET", "/flood/map/network", "/flood/map/network", params={"zoom": 13})
        call("admin", "GET", "/flood/map/places", "/flood/map/places")

        # hot spots and audit
        call("admin", "GET", "/hotspots", "/hotspots", params={"permutations": 99})
        hs = call("admin", "GET", "/hotspots", "/hotspots", params={"format": "geojson", "permutations": 99}).json()
        unit = next(f["properties"]["unit_id"] for f in hs["features"] if f["properties"].get("incidents"))
        for role in ("admin", "command_center"):
            call(role, "GET", "/hotspots/units/{unit_id}/incidents", f"/hotspots/units/{unit}/incidents")
        call("command_center", "GET", "/hotspots/map", "/hotspots/map")
        call("admin", "GET", "/grids/{code}/card", f"/grids/{group}/card")
        call("command_center", "GET", "/hotspots/map", "/hotspots/map", params={"units": "grid3"})
        # command center: search and the numbers of a view
        for role, q in (("admin", "村"), ("command_center", "村"), ("grid_staff", "村"), ("admin", str(group))):
            call(role, "GET", "/search", "/search", params={"q": q, "limit": 20})
        call("command_center", "GET", "/shelters", "/shelters")
        call("emergency", "GET", "/shelters", "/shelters",
             params={"bbox": f"{lon - 0.2},{lat - 0.2},{lon + 0.2},{lat + 0.2}"})
        for role in ("admin", "grid_staff"):
            call(role, "GET", "/incidents/summary", "/incidents/summary",
                 params={"bbox": f"{lon - 0.05},{lat - 0.05},{lon + 0.05},{lat + 0.05}", "open": "false"})
        # vector tiles: the layers' metadata (the .pbf tiles are not JSON)
        for role in ("admin", "grid_staff"):
            call(role, "GET", "/tiles/layers", "/tiles/layers")

        # the register's data-quality report (issue 14)
        for role in ("admin", "command_center", "grid_staff"):
            call(role, "GET", "/register/quality", "/register/quality", params={"member_limit": 3, "per_kind": 5})
        # issue 14, roster: places and a DEM upload (polled until its job ends)
        from tests.test_places_dem import small_dem_bytes, wait_for_job

        shelters = json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"名称": "探针避难所", "容量": 50},
             "geometry": {"type": "Point", "coordinates": [lon, lat]}}]})
        call("admin", "POST", "/places/{kind}/import", "/places/shelters/import",
             files={"file": ("shelters.geojson", shelters.encode())}, data={"dry_run": "true"})
        job = call("admin", "POST", "/flood/dem", "/flood/dem", files={"file": ("v.tif", small_dem_bytes())}).json()
        wait_for_job(clients["admin"], job)
        call("admin", "GET", "/flood/dem/jobs/{job_id}", f"/flood/dem/jobs/{job['id']}")
        from tests.register_files import csv_bytes

        roster_csv = csv_bytes(["姓名", "联系电话", "职务", "网格编码"], [["探针", "13700002222", "网格员", group]])
        call("admin", "POST", "/staff/import", "/staff/import", files={"file": ("r.csv", roster_csv)},
             data={"whole_roster": "false"})
        probe = call("admin", "POST", "/staff", "/staff",
                     json={"name": "探针二", "phone": "13700003333", "role": "网格长", "grid_code": group}).json()
        call("command_center", "PATCH", "/staff/{staff_id}", f"/staff/{probe['id']}", json={"role": "网格员"})
        hno = clients["admin"].get(f"/households/{household}").json()["household_no"]
        links = csv_bytes(["户号", "网格员电话"], [[hno, "13700003333"]])
        call("admin", "POST", "/staff/responsibilities/import", "/staff/responsibilities/import",
             files={"file": ("l.csv", links)}, data={"whole_list": "false"})
        for role in ("admin", "grid_staff"):
            call(role, "GET", "/grids/{code}/staff", f"/grids/{group}/staff")

        call("admin", "GET", "/audit", "/audit", params={"limit": 5})
        call("admin", "GET", "/audit", "/audit", params={"limit": 5, "offset": 3, "action": "read_personal"})

        # the phone (api/mobile_pages.py): place suggestions (a house address among them), my grids, my tasks
        for role in ("admin", "grid_staff"):
            call(role, "GET", "/places/suggest", "/places/suggest", params={"q": "尹营村一组1"})
            call(role, "GET", "/me/grids", "/me/grids")
            call(role, "GET", "/incidents", "/incidents", params={"open": "true", "order": "deadline", "limit": 3})

        # plans (last: publishing one makes new grid versions): drafts, edits (If-Match), files, publish and undo
        pid = call("admin", "POST", "/plans", "/plans", json={"name": "探针方案"}).json()["id"]
        call("admin", "GET", "/plans", "/plans")
        call("admin", "PATCH", "/plans/{plan_id}", f"/plans/{pid}", json={"note": "探针"}, headers={"If-Match": "1"})
        edit = {"kind": "rename", "code": group, "name": "探针网格"}
        call("admin", "POST", "/plans/{plan_id}/edits", f"/plans/{pid}/edits", json=edit)   # 428
        call("admin", "POST", "/plans/{plan_id}/edits", f"/plans/{pid}/edits", json=edit, headers={"If-Match": "1"})
        call("admin", "POST", "/plans/{plan_id}/edits", f"/plans/{pid}/edits", json=edit, headers={"If-Match": "2"})
        call("admin", "GET", "/plans/{plan_id}", f"/plans/{pid}")
        call("admin", "GET", "/plans/{plan_id}/validation", f"/plans/{pid}/validation")
        call("admin", "GET", "/plans/{plan_id}/impact", f"/plans/{pid}/impact", params={"target": 30, "tolerance": 0.2})
        call("admin", "GET", "/plans/{plan_id}/boundaries", f"/plans/{pid}/boundaries")
        with eng.connect() as c:
            household_no = c.execute(text(
                "SELECT min(h.household_no) FROM household h JOIN grid g ON ST_Covers(g.geom, h.geom) "
                "WHERE g.code = :c AND g.valid_to IS NULL"), {"c": group}).scalar_one()
        eng.dispose()
        call("admin", "POST", "/plans/{plan_id}/equivalency", f"/plans/{pid}/equivalency", headers={"If-Match": "3"},
             files={"file": ("对照.csv", f"单元编号,网格编码\n{household_no},{group}\n".encode())})
        call("admin", "POST", "/plans/{plan_id}/publish", f"/plans/{pid}/publish", json={}, headers={"If-Match": "4"})
        call("admin", "POST", "/plans/{plan_id}/undo", f"/plans/{pid}/undo", json={}, headers={"If-Match": "5"})
        later = call("admin", "POST", "/plans", "/plans", json={"name": "探针定时"}).json()["id"]
        call("admin", "POST", "/plans/{plan_id}/edits", f"/plans/{later}/edits", json=edit, headers={"If-Match": "1"})
        call("admin", "POST", "/plans/{plan_id}/publish", f"/plans/{later}/publish", headers={"If-Match": "2"},
             json={"effective_at": "2099-01-01T08:00:00+08:00"})
        call("admin", "POST", "/plans/{plan_id}/cancel", f"/plans/{later}/cancel", headers={"If-Match": "3"})
        call("admin", "POST", "/plans/{plan_id}/discard", f"/plans/{later}/discard", headers={"If-Match": "4"})
    finally:
        for c in clients.values():
            c.__exit__(None, None, None)
    return out


JSON_MEDIA_TYPES = ("application/json", "application/geo+json", "application/problem+json")


@pytest.fixture(scope="module")
def database_url(test_db_url: Any) -> Iterator[Any]:
    """A private copy of the sample town: the routes below write (accounts, incidents, extents)."""
    with database_copy(test_db_url) as url:
        yield url


@pytest.fixture(scope="module")
def exchanges(database_url: Any, accounts: dict[str, dict[str, Any]]) -> list[Exchange]:
    return _run_every_route(database_url, accounts)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    from api.main import create_app

    return create_app().openapi()


def _json_operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """'METHOD /path' -> the operation, for every operation that answers JSON on success."""
    out: dict[str, dict[str, Any]] = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            success = [r for status, r in op["responses"].items() if status.startswith("2")]
            media = {m.split(";")[0] for r in success for m in (r.get("content") or {})}
            if media & {"application/json", "application/geo+json"}:
                out[f"{method.upper()} {path}"] = op
    return out


def _strict(node: Any) -> Any:
    """A copy of a JSON schema where an object lists every key it may have: `additionalProperties`
    false wherever the schema declares properties and says nothing else, so an undeclared key fails."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "$defs", "schemas"):
            out[key] = {name: _strict(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not", "contains", "anyOf", "oneOf", "allOf",
                     "prefixItems"):
            out[key] = _strict(value)
        else:
            out[key] = value
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> Any:
    models = {name: _strict(model) for name, model in doc["components"]["schemas"].items()}
    root = {**_strict(schema), "components": {"schemas": models}}
    return jsonschema_rs.Draft202012Validator(root, validate_formats=True)


def _documented_schema(doc: dict[str, Any], exchange: Exchange) -> dict[str, Any] | None:
    method, path = exchange.operation.split(" ", 1)
    response = doc["paths"][path][method.lower()]["responses"].get(str(exchange.status))
    if response is None:
        return None
    for media, content in (response.get("content") or {}).items():
        if media.split(";")[0] == exchange.media_type:
            schema: dict[str, Any] | None = content.get("schema")
            return schema
    return None


def test_every_json_operation_documents_a_success_shape(doc: dict[str, Any]) -> None:
    ops = _json_operations(doc)
    assert len(ops) >= 40  # the JSON API: accounts, grids, households, incidents, flood, hot spots, audit …
    empty = []
    for name, op in ops.items():
        for status, response in op["responses"].items():
            if not status.startswith("2"):
                continue
            for media, content in (response.get("content") or {}).items():
                schema = content.get("schema") or {}
                if media.split(";")[0] in JSON_MEDIA_TYPES and not (
                        "$ref" in schema or "properties" in schema or "$ref" in (schema.get("items") or {})):
                    empty.append(f"{name} {status} {media}")
    assert empty == []


def test_every_json_error_is_documented_as_problem_json(doc: dict[str, Any]) -> None:
    undocumented = [
        f"{name} {status}"
        for name, op in _json_operations(doc).items()
        for status, response in op["responses"].items()
        if status[0] in "45" and set(response.get("content") or {}) != {"application/problem+json"}
    ]
    assert undocumented == []


def test_every_json_operation_was_called(doc: dict[str, Any], exchanges: list[Exchange]) -> None:
    answered = {e.operation for e in exchanges if 200 <= e.status < 300}
    assert sorted(set(_json_operations(doc)) - answered) == []
    masked = {e.operation for e in exchanges if e.role in ("command_center", "grid_staff") and e.status == 200}
    assert {"GET /households", "GET /households/{household_id}", "GET /incidents", "GET /flood/households",
            "GET /hotspots/units/{unit_id}/incidents"} <= masked


def test_real_answers_match_the_documented_schema_key_for_key(doc: dict[str, Any], exchanges: list[Exchange]) -> None:
    """Every JSON answer (2xx and problem+json), as admin and as roles that see masked fields,
    validates against the operation's schema with no key the schema does not declare."""
    failures: list[str] = []
    checked = 0
    for e in exchanges:
        if e.media_type not in JSON_MEDIA_TYPES:
            continue
        schema = _documented_schema(doc, e)
        if schema is None:
            failures.append(f"{e}: no schema for {e.media_type}")
            continue
        errors = [f"{'/'.join(map(str, err.instance_path))}: {err.message}"[:300]
                  for err in _validator(doc, schema).iter_errors(e.json())]
        failures += [f"{e}: {m}" for m in errors[:5]]
        checked += 1
    assert failures == []
    assert checked >= 70


def test_the_key_for_key_check_fails_on_an_undeclared_or_mistyped_field(
        doc: dict[str, Any], exchanges: list[Exchange]) -> None:
    e = next(x for x in exchanges if x.operation == "GET /households/{household_id}" and x.status == 200)
    validator = _validator(doc, _documented_schema(doc, e) or {})
    body = e.json()
    assert validator.is_valid(body)
    assert not validator.is_valid({**body, "undeclared": 1})
    assert not validator.is_valid({**body, "members": [{**body["members"][0], "undeclared": 1}]})
    assert not validator.is_valid({**body, "residents": "4"})
    assert not validator.is_valid({**body, "personal_fields": "partly"})


def _typed(value: Any) -> Any:
    """JSON data where an int and a float of the same value differ (3 != 3.0), to catch a model that
    turns one into the other; keys compared as they are."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_typed(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    return (type(value).__name__, value)


def _principal(accounts: dict[str, dict[str, Any]], role: str) -> Principal:
    a = accounts[role]
    return Principal(a["id"], a["username"], Role(role), tuple(a["scope_codes"]))


def test_models_drop_no_field_and_change_no_value(
        database_url: Any, accounts: dict[str, dict[str, Any]], exchanges: list[Exchange]) -> None:
    """Routes whose data FastAPI validates through the model answer exactly what the gis/ function
    returns: every key (the union of the masked and the full fields), every value and number type."""
    from gis import audit, emergencies
    from gis import households as hh
    from gis.auth import accounts as users
    from gis.db import make_sessionmaker
    from gis.flood import answers, extents, finder
    from gis.flood import dem as flood_dem
    from gis.flood.risk import flood_risk, parse_stages
    from gis.incidents.grid_stats import grid_stats
    from gis.town_summary import town_counts

    engine = create_engine(database_url, poolclass=NullPool)
    admin_p, cc_p = _principal(accounts, "admin"), _principal(accounts, "command_center")
    with make_client(database_url, "admin") as admin, make_client(database_url, "command_center") as cc, \
            make_sessionmaker(engine)() as session:
        def same(api_body: Any, data: Any) -> None:
            assert _typed(api_body) == _typed(jsonable_encoder(data))

        page = admin.get("/households", params={"limit": 5}).json()
        rows, total = hh.list_households(session, admin_p, limit=5)
        assert page.pop("next") == "https://testserver/households?offset=5&limit=5"
        same(page, {"total": total, "offset": 0, "items": rows})
        masked = cc.get("/households", params={"limit": 5}).json()
        same(masked["items"], hh.list_households(session, cc_p, limit=5)[0])
        assert {r["personal_fields"] for r in masked["items"]} == {"masked"}
        first = rows[0]["id"]
        same(admin.get(f"/households/{first}").json(), hh.get_household(session, admin_p, first))
        same(cc.get(f"/households/{first}").json(), hh.get_household(session, cc_p, first))
        same(admin.get("/households/counts", params={"level": 4}).json(), hh.counts_by_grid(session, 4))
        same(admin.get("/stats").json(), town_counts(session))
        same(admin.get("/admin/users").json(), [u.as_dict() for u in users.list_users(session)])
        same(admin.get("/emergencies").json(), emergencies.list_emergencies(session))
        same(admin.get("/flood/extents").json(), extents.list_extents(session, None))
        scenarios = admin.get("/flood/scenarios").json()
        same(scenarios["dems"], flood_dem.list_dems(session))
        same(scenarios["computed"], extents.list_extents(session, "model"))
        same(admin.get("/flood/risk", params={"level": 3}).json(),
             flood_risk(session, level=3, stages=parse_stages(None)))
        same(admin.get("/incidents/stats", params={"level": 4}).json(), grid_stats(session, admin_p, 4, None, None))
        page = audit.list_audit(session, audit.AuditFilters(action="login"), limit=100, offset=0)
        assert page.next_after is None  # one page: the answer's next link is null
        same(admin.get("/audit", params={"action": "login"}).json(),
             {"total": page.total, "total_exact": page.total_exact, "offset": 0, "items": page.items, "next": None})

        # The flood list: a masked page and the finder's own rows (shelters, members, priority parts).
        ext = finder.resolve_extent(session, None, "2023-09-23")
        found = finder.flooded_households(session, cc_p, ext, 50.0)
        flood = cc.get("/flood/households", params={"scenario": "2023-09-23", "buffer_m": 50, "limit": 7}).json()
        same(flood["items"], found.households[:7])
        same({k: flood[k] for k in ("extent", "totals", "shelter_method", "distance_kind", "shelters")},
             {"extent": found.extent, "totals": found.totals, "shelter_method": found.shelter_method,
              "distance_kind": found.distance_kind, "shelters": found.shelters})
        # `unplaced` lists the page's households no shelter could take (the page as the list reads it).
        stored = answers.households_page(session, cc_p, ext, 50.0, None, limit=7, offset=0)
        same(flood["unplaced"], stored.unplaced)
        assert {u["id"] for u in flood["unplaced"]} <= {h["id"] for h in flood["items"]}
        session.rollback()
    engine.dispose()
