"""Batch import: exactly the bad rows reported, exactly the good rows stored, and no duplicates on re-run."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import make_client


def count(url, sql="SELECT count(*) FROM incident"):
    eng = create_engine(url, poolclass=NullPool)
    with eng.connect() as c:
        n = c.execute(text(sql)).scalar_one()
    eng.dispose()
    return n


@pytest.fixture(scope="module")
def inside_point(engine):
    with engine.connect() as c:
        return c.execute(text("SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM grid "
                              "WHERE level = 4 AND valid_to IS NULL ORDER BY code LIMIT 1")).one()


def mixed_rows(x, y) -> pd.DataFrame:
    good = dict(category="environment", description="垃圾堆放", occurred_at="2024-05-01T10:00:00+08:00", lon=x, lat=y)
    rows = [                                                # data rows 1-8 = lines 2-9 of the file
        {**good, "external_id": "imp-1"},                                   # 1 good
        {**good, "external_id": "imp-2", "category": "magic"},               # 2 unknown category
        {**good, "external_id": "imp-3", "lon": "abc"},                       # 3 bad coordinate
        {**good, "external_id": "imp-4", "lon": x + 0.5},                     # 4 outside the town
        {**good, "external_id": "imp-5", "occurred_at": "yesterday-ish"},     # 5 bad time
        {**good, "external_id": "imp-6", "category": "矛盾纠纷", "dispute_kind": "land"},  # 6 good (Chinese)
        {**good, "external_id": "imp-7", "dispute_kind": "land"},            # 7 kind on a non-dispute
        {**good, "description": "无编号事项"},                                # 8 good, no external_id
    ]
    return pd.DataFrame(rows)


def upload(client, name, payload: bytes, **form):
    return client.post("/incidents/import", files={"file": (name, payload)}, data=form)


def test_mixed_file_reports_exactly_the_bad_rows_and_rerun_adds_nothing(scratch_db_url, inside_point):
    x, y = inside_point
    csv_bytes = mixed_rows(x, y).to_csv(index=False).encode("utf-8-sig")
    before = count(scratch_db_url)
    with make_client(scratch_db_url, "command_center") as cc:
        r = upload(cc, "mixed.csv", csv_bytes)
        assert r.status_code == 200, r.text
        body = r.json()
        assert [(f["row"], f["column"]) for f in body["failed"]] == [
            # spreadsheet lines: the header is line 1
            (3, "category"), (4, "lon"), (5, "lon"), (6, "occurred_at"), (8, "dispute_kind")]
        assert "outside the town" in body["failed"][2]["reason"]
        assert body["created"] == 3 and count(scratch_db_url) == before + 3
        again = upload(cc, "mixed.csv", csv_bytes).json()
        assert again["created"] == 0 and again["already_present"] == 3
        assert count(scratch_db_url) == before + 3
        assert count(scratch_db_url, "SELECT count(*) FROM incident WHERE external_id IN ('imp-1', 'imp-6')") == 2
        assert count(scratch_db_url, "SELECT count(*) FROM incident_assignee a JOIN incident i ON i.id = a.incident_id "
                                     "WHERE i.external_id = 'imp-1'") >= 2


def test_all_or_nothing_writes_nothing_when_a_row_fails(scratch_db_url, inside_point):
    x, y = inside_point
    before = count(scratch_db_url)
    with make_client(scratch_db_url, "admin") as admin:
        r = upload(admin, "mixed.csv", mixed_rows(x, y).to_csv(index=False).encode(), all_or_nothing="true")
        assert r.status_code == 200 and r.json()["written"] is False and len(r.json()["failed"]) == 5
    assert count(scratch_db_url) == before


@pytest.mark.parametrize("fmt", ["xlsx", "geojson"])
def test_excel_and_geojson_go_through_the_same_path(scratch_db_url, inside_point, fmt, tmp_path):
    import geopandas as gpd

    x, y = inside_point
    frame = mixed_rows(x, y).iloc[[0, 5]].copy()
    frame["external_id"] = [f"{fmt}-a", f"{fmt}-b"]
    if fmt == "xlsx":
        buf = io.BytesIO()
        frame.to_excel(buf, index=False)
        payload = buf.getvalue()
    else:
        gdf = gpd.GeoDataFrame(frame.drop(columns=["lon", "lat"]), geometry=gpd.points_from_xy(frame.lon, frame.lat),
                               crs=4326)
        payload = gdf.to_json().encode()
    with make_client(scratch_db_url, "admin") as admin:
        r = upload(admin, f"incidents.{fmt}", payload)
        assert r.status_code == 200, r.text
        assert r.json()["created"] == 2 and r.json()["failed"] == []


def test_sample_town_incidents_were_loaded_through_the_import_path(engine):
    with engine.connect() as c:
        total = c.execute(text("SELECT count(*) FROM incident WHERE external_id LIKE 'sample-%'")).scalar_one()
        disputes = c.execute(text("SELECT count(*) FROM incident WHERE category = 'dispute'")).scalar_one()
        flood = c.execute(text(
            "SELECT count(*), count(DISTINCT village_code) FROM incident WHERE category = 'disaster' "
            "AND occurred_at >= '2023-09-23 20:00+08' AND occurred_at < '2023-09-24 04:01+08'"
            " AND description LIKE '强降雨%'")).one()
        low_villages = set(c.execute(text(
            "SELECT code FROM grid WHERE level = 3 AND name IN ('岁坡村', '小岗村', '周湾村', '陈洼村')")).scalars())
        flood_villages = set(c.execute(text(
            "SELECT DISTINCT village_code FROM incident WHERE category = 'disaster' AND occurred_at >= "
            "'2023-09-23 20:00+08' AND occurred_at < '2023-09-24 04:01+08'")).scalars())
        events = c.execute(text("SELECT count(*) FROM incident_event WHERE action = 'import'")).scalar_one()
    assert total == 5000 and disputes == 600
    assert 44 <= flood[0] <= 50 and flood_villages <= low_villages | flood_villages and low_villages <= flood_villages
    assert events >= 5000


def test_cli_import_prints_failed_rows(scratch_db_url, inside_point, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gis import settings as settings_mod
    from gis.cli import app

    x, y = inside_point
    path = tmp_path / "mixed.csv"
    mixed_rows(x, y).to_csv(path, index=False)
    monkeypatch.setenv("DATABASE_URL", scratch_db_url.render_as_string(hide_password=False))
    settings_mod.get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["incidents", "import", str(path)])
        assert result.exit_code == 1, result.output
        assert "5 rows failed" in result.output and "3 new" in result.output
    finally:
        settings_mod.get_settings.cache_clear()


def test_a_nul_character_is_a_row_error_not_a_crash(scratch_db_url, inside_point):
    x, y = inside_point
    rows = mixed_rows(x, y).iloc[[0]].copy()
    rows["description"] = "bad\x00text"
    with make_client(scratch_db_url, "admin") as admin:
        r = upload(admin, "nul.csv", rows.to_csv(index=False).encode())
        assert r.status_code == 200, r.text
        assert r.json()["failed"] == [
            {"row": 2, "column": "description", "reason": "contains a NUL character"}]
