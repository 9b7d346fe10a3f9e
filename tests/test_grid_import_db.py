"""Grid import through the API and the CLI: broken files change nothing; a redraw keeps history."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

FINGERPRINT = text(
    "SELECT count(*), md5(string_agg(code || coalesce(valid_to::text, '-') || ST_AsEWKT(geom), ','"
    " ORDER BY id)) FROM grid"
)


def fingerprint(url):
    eng = create_engine(url, poolclass=NullPool)
    with eng.connect() as c:
        out = tuple(c.execute(FINGERPRINT).one())
    eng.dispose()
    return out


def village_groups(client, village_code=None):
    if village_code is None:
        villages = client.get("/grids", params={"level": 3}).json()["features"]
        village_code = villages[0]["properties"]["code"]
    fc = client.get("/grids", params={"parent_code": village_code}).json()
    frame = gpd.GeoDataFrame.from_features(fc["features"], crs="EPSG:4326")
    return village_code, frame[["code", "name", "level", "parent_code", "geometry"]]


def write_geojson(frame, path, crs_name=None):
    fc = json.loads(frame.to_json())
    if crs_name:
        fc["crs"] = {"type": "name", "properties": {"name": crs_name}}
    path.write_text(json.dumps(fc, ensure_ascii=False))
    return path


def upload(client, path, **form):
    with path.open("rb") as fh:
        return client.post("/grids/import", files={"file": (path.name, fh)}, data=form)


def neighbours(frame):
    tree = shapely.STRtree(frame.geometry.values)
    a, b = tree.query(frame.geometry.values, predicate="touches")
    i, j = next((i, j) for i, j in zip(a, b, strict=True) if i < j)
    return i, j


def _overlap(frame):
    i, j = neighbours(frame)
    grown = frame.geometry.iloc[i].union(frame.geometry.iloc[j].buffer(-0.0003).intersection(
        frame.geometry.iloc[i].buffer(0.0005)))
    frame.loc[frame.index[i], "geometry"] = MultiPolygon(shapely.get_parts(grown.buffer(0)).tolist())
    return frame, "overlap"


def _gap(frame):
    g = frame.geometry.iloc[0].buffer(-0.0004)
    frame.loc[frame.index[0], "geometry"] = MultiPolygon(shapely.get_parts(g).tolist())
    return frame, "gap"


def _outside(frame):
    frame.loc[frame.index[0], "geometry"] = shapely.affinity.translate(frame.geometry.iloc[0], 0.02, 0)
    return frame, "outside_parent"


def _invalid(frame):
    x0, y0, x1, y1 = frame.geometry.iloc[0].bounds
    bowtie = Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1), (x0, y0)])
    frame.loc[frame.index[0], "geometry"] = MultiPolygon([bowtie])
    return frame, "invalid_geometry"


def _duplicate(frame):
    frame.loc[frame.index[1], "code"] = frame["code"].iloc[0]
    return frame, "duplicate_code"


@pytest.mark.parametrize("breaker", [_overlap, _gap, _outside, _invalid, _duplicate])
def test_broken_file_is_refused_and_changes_nothing(scratch_client, scratch_db_url, tmp_path, breaker):
    import shapely.affinity  # noqa: F401  (used by _outside)

    _, frame = village_groups(scratch_client)
    before = fingerprint(scratch_db_url)
    broken, expected = breaker(frame.copy())
    r = upload(scratch_client, write_geojson(broken, tmp_path / "grids.geojson"))
    assert r.status_code == 422, r.text
    body = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    types = {e["type"] for e in body["errors"]}
    assert expected in types, body
    # Problems point at a feature row of the file.
    assert all(e["loc"][0] in ("features", "file") for e in body["errors"])
    assert fingerprint(scratch_db_url) == before


def test_projected_coordinates_declared_as_lonlat_are_refused(scratch_client, scratch_db_url, tmp_path):
    _, frame = village_groups(scratch_client)
    before = fingerprint(scratch_db_url)
    metres = frame.to_crs(4546)
    fc = json.loads(metres.to_json())
    fc.pop("crs", None)  # claims nothing, so GeoJSON's default (lon/lat) applies
    path = tmp_path / "wrong_crs.geojson"
    path.write_text(json.dumps(fc))
    r = upload(scratch_client, path)
    assert r.status_code == 422, r.text
    assert "projected" in r.text.lower() or "crs" in r.text.lower()
    assert fingerprint(scratch_db_url) == before


def test_file_with_many_problems_reports_all_of_them(scratch_client, tmp_path):
    _, frame = village_groups(scratch_client)
    frame, _ = _invalid(frame)
    frame, _ = _duplicate(frame)
    r = upload(scratch_client, write_geojson(frame, tmp_path / "bad.geojson"))
    types = {e["type"] for e in r.json()["errors"]}
    assert {"invalid_geometry", "duplicate_code"} <= types


def test_redraw_moves_a_boundary_and_keeps_history(scratch_client, scratch_db_url, tmp_path):
    village, frame = village_groups(scratch_client)
    i, j = neighbours(frame)
    a, b = frame.geometry.iloc[i], frame.geometry.iloc[j]
    shared = a.boundary.intersection(b.boundary)
    pivot = shapely.line_interpolate_point(shapely.line_merge(shared), 0.5, normalized=True) \
        if shared.geom_type != "Point" else shared
    chunk = b.intersection(pivot.buffer(0.002))
    new_a = a.union(chunk)
    new_b = b.difference(chunk)
    frame.loc[frame.index[i], "geometry"] = MultiPolygon(shapely.get_parts(new_a).tolist())
    frame.loc[frame.index[j], "geometry"] = MultiPolygon(shapely.get_parts(new_b).tolist())
    code_a, code_b = frame["code"].iloc[i], frame["code"].iloc[j]

    probe = chunk.representative_point()
    before = scratch_client.get("/grids/locate", params={"lon": probe.x, "lat": probe.y}).json()
    assert before["grids"]["4"]["code"] == code_b

    dry = upload(scratch_client, write_geojson(frame, tmp_path / "redraw.geojson"), dry_run="true")
    assert dry.status_code == 200, dry.text
    assert dry.json()["replaced"] == 2
    after_dry = scratch_client.get("/grids/locate", params={"lon": probe.x, "lat": probe.y}).json()
    assert after_dry["grids"]["4"]["code"] == code_b  # a dry run writes nothing

    r = upload(scratch_client, write_geojson(frame, tmp_path / "redraw.geojson"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["replaced"], body["created"]) == (2, 0)
    assert body["unchanged"] == len(frame) - 2
    after = scratch_client.get("/grids/locate", params={"lon": probe.x, "lat": probe.y}).json()
    assert after["grids"]["4"]["code"] == code_a

    hist = scratch_client.get(f"/grids/{code_b}/history").json()["features"]
    assert len(hist) == 2
    assert hist[0]["properties"]["valid_to"] is not None and hist[1]["properties"]["valid_to"] is None
    old_area = shapely.geometry.shape(hist[0]["geometry"]).area
    new_area = shapely.geometry.shape(hist[1]["geometry"]).area
    assert new_area < old_area


def test_new_village_in_gcj02_is_converted(scratch_client, scratch_db_url, tmp_path):
    """A whole file given in GCJ-02 lands on the WGS84 truth (here: re-importing a village unchanged)."""
    from gis.crs import wgs84_to_gcj02

    _, frame = village_groups(scratch_client)
    shifted = frame.copy()
    shifted["geometry"] = shapely.transform(
        frame.geometry.values, lambda c: np.column_stack(wgs84_to_gcj02(c[:, 0], c[:, 1]))
    )
    before = fingerprint(scratch_db_url)
    r = upload(scratch_client, write_geojson(shifted, tmp_path / "gcj.geojson"), crs="gcj02", dry_run="true")
    # Converted back within centimetres, the grids still tile the village: only tiny redraws.
    assert r.status_code == 200, r.text
    assert fingerprint(scratch_db_url) == before


def test_export_filters(client):
    fc = client.get("/grids", params={"level": 3}).json()
    assert fc["numberMatched"] == 20 and len(fc["features"]) == 20
    page = client.get("/grids", params={"level": 4, "limit": 50, "offset": 50}).json()
    assert page["numberMatched"] == 282 and page["numberReturned"] == 50
    village = fc["features"][0]["properties"]["code"]
    kids = client.get("/grids", params={"parent_code": village}).json()["features"]
    assert kids and all(f["properties"]["code"].startswith(village[:12]) for f in kids)
    x0, y0, x1, y1 = shapely.geometry.shape(kids[0]["geometry"]).bounds
    boxed = client.get("/grids", params={"level": 4, "bbox": f"{x0},{y0},{x1},{y1}"}).json()
    assert kids[0]["properties"]["code"] in {f["properties"]["code"] for f in boxed["features"]}
    assert boxed["numberMatched"] < 282
    bad = client.get("/grids", params={"bbox": "1,2,3"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", "bbox"]


def test_cli_import_reports_problems_and_exit_code(scratch_db_url, tmp_path, monkeypatch, client):
    from typer.testing import CliRunner

    from gis import settings as settings_mod
    from gis.cli import app

    _, frame = village_groups(client)
    broken, _ = _gap(frame.copy())
    path = write_geojson(broken, tmp_path / "gap.geojson")
    monkeypatch.setenv("DATABASE_URL", scratch_db_url.render_as_string(hide_password=False))
    settings_mod.get_settings.cache_clear()
    try:
        before = fingerprint(scratch_db_url)
        result = CliRunner().invoke(app, ["grids", "import", str(path)])
        assert result.exit_code == 1, result.output
        assert "gap" in result.output
        assert fingerprint(scratch_db_url) == before
        ok = CliRunner().invoke(app, ["grids", "import", str(write_geojson(frame, tmp_path / "ok.geojson"))])
        assert ok.exit_code == 0, ok.output
        assert f"0 new, 0 redrawn, {len(frame)} unchanged" in ok.output
        out = tmp_path / "export.gpkg"
        exp = CliRunner().invoke(app, ["grids", "export", str(out), "--level", "3"])
        assert exp.exit_code == 0, exp.output
        assert len(gpd.read_file(out)) == 20
    finally:
        settings_mod.get_settings.cache_clear()
