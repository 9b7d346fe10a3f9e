"""Export of the whole register (issue 14): GET /register/export.gpkg / .xlsx and `wangge export town FILE`.

The GeoPackage is read back with GDAL (pyogrio) and compared with the tables themselves; the workbook with
openpyxl. Per role: who may export, which households come out, and whether their personal fields are shown or
masked; every export leaves one audit row saying who, which format and how many rows.
"""

from __future__ import annotations

import io
import re

import pyogrio
import pytest
import shapely
from openpyxl import load_workbook
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.register.export import LAYER_NAMES, read_back
from tests.conftest import database_copy, make_client

MASKED_PHONE = re.compile(r"^\d{3}\*{4}\d{4}$")
MASKED_ID = re.compile(r"^\d{6}\*{8}[\dX]{4}$")
SHEETS = ["网格", "住户", "居民", "网格人员", "安置点", "道路", "河流", "自然村"]
TABLES = {"grids": "grid WHERE valid_to IS NULL", "households": "household", "residents": "resident",
          "staff": "staff", "shelters": "shelter", "roads": "road", "rivers": "river",
          "natural_villages": "natural_village"}


@pytest.fixture(scope="module")
def town(test_db_url, accounts):
    with database_copy(test_db_url, "export") as url:
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as c:
            counts = {layer: c.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for layer, t in TABLES.items()}
            households = {r.household_no: r for r in c.execute(text(
                "SELECT household_no, head_name, phone, address, residents, ST_X(geom) AS lon, ST_Y(geom) AS lat "
                "FROM household"))}
            ids = {(r.household_no, r.id_number) for r in c.execute(text(
                "SELECT h.household_no, r.id_number FROM resident r JOIN household h ON h.id = r.household_id"))}
            grids = {r.code: shapely.from_wkb(bytes(r.g)) for r in c.execute(text(
                "SELECT code, ST_AsBinary(geom) AS g FROM grid WHERE valid_to IS NULL"))}
        yield {"url": url, "engine": engine, "counts": counts, "households": households, "ids": ids, "grids": grids}
        engine.dispose()


def _export_audits(engine, since_id: int):
    with engine.connect() as c:
        return c.execute(text("SELECT id, actor, role, detail FROM audit_log WHERE action = 'export_register' "
                              "AND id > :i ORDER BY id"), {"i": since_id}).all()


def _last_audit_id(engine) -> int:
    with engine.connect() as c:
        return c.execute(text("SELECT coalesce(max(id), 0) FROM audit_log")).scalar_one()


def _gpkg(client, tmp_path, name):
    r = client.get("/register/export.gpkg")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/geopackage+sqlite3")
    path = tmp_path / f"{name}.gpkg"
    path.write_bytes(r.content)
    return path


def test_the_admin_geopackage_holds_every_layer_as_stored(town, tmp_path):
    start = _last_audit_id(town["engine"])
    with make_client(town["url"], "admin") as admin:
        path = _gpkg(admin, tmp_path, "admin")
    layers = {str(name): geom for name, geom in pyogrio.list_layers(path)}
    assert set(layers) == set(LAYER_NAMES)
    assert layers["residents"] is None and layers["staff"] is None
    assert layers["grids"] == "MultiPolygon" and layers["households"] == "Point" and layers["roads"] == "LineString"
    for layer, n in town["counts"].items():
        assert pyogrio.read_info(path, layer=layer)["features"] == n, layer
    assert town["counts"]["households"] > 1000 and town["counts"]["residents"] > town["counts"]["households"]
    households = pyogrio.read_dataframe(path, layer="households")
    assert pyogrio.read_info(path, layer="households")["crs"] == "EPSG:4326"
    assert set(households["household_no"]) == set(town["households"])
    for row in households.head(200).itertuples():
        want = town["households"][row.household_no]
        assert (row.head_name, row.phone, row.address, row.residents) == (want.head_name, want.phone, want.address,
                                                                          want.residents)
        assert (row.geometry.x, row.geometry.y) == pytest.approx((want.lon, want.lat), abs=1e-9)
        assert row.personal_fields == "shown"
    residents = pyogrio.read_dataframe(path, layer="residents")
    assert set(zip(residents["household_no"], residents["id_number"], strict=True)) == town["ids"]
    grids = pyogrio.read_dataframe(path, layer="grids")
    for row in grids.itertuples():
        assert shapely.equals_exact(row.geometry, town["grids"][row.code], tolerance=1e-9), row.code
    audits = _export_audits(town["engine"], start)
    assert len(audits) == 1 and audits[0].actor == "test_admin"
    assert audits[0].detail["format"] == "gpkg" and audits[0].detail["rows"] == town["counts"]
    assert audits[0].detail["personal_shown"] == town["counts"]["households"]


def test_the_command_center_gets_every_household_masked(town, tmp_path):
    start = _last_audit_id(town["engine"])
    with make_client(town["url"], "command_center") as cc:
        path = _gpkg(cc, tmp_path, "cc")
    households = pyogrio.read_dataframe(path, layer="households")
    assert len(households) == town["counts"]["households"]
    assert set(households["personal_fields"]) == {"masked"}
    assert all(name.endswith("*") and name != town["households"][no].head_name
               for no, name in zip(households["household_no"], households["head_name"], strict=True))
    assert all(MASKED_PHONE.match(p) for p in households["phone"].dropna())
    residents = pyogrio.read_dataframe(path, layer="residents")
    assert all(MASKED_ID.match(n) for n in residents["id_number"].dropna())
    assert all(re.fullmatch(r"\d{4}-\*\*-\*\*", b) for b in residents["birth_date"].dropna())
    # Staff boards are public: shown in full.
    staff = pyogrio.read_dataframe(path, layer="staff")
    assert len(staff) == town["counts"]["staff"] and not any("*" in p for p in staff["phone"].dropna())
    audit = _export_audits(town["engine"], start)[0]
    assert audit.role == "command_center" and audit.detail["personal_masked"] == town["counts"]["households"]


def test_emergency_teams_get_only_households_of_an_active_emergency(town, tmp_path):
    with make_client(town["url"], "emergency") as em:
        path = _gpkg(em, tmp_path, "em")
    # No active emergency in the sample: no household and no resident; the places in full.
    assert pyogrio.read_info(path, layer="households")["features"] == 0
    assert pyogrio.read_info(path, layer="residents")["features"] == 0
    assert pyogrio.read_info(path, layer="shelters")["features"] == town["counts"]["shelters"]


@pytest.mark.parametrize("role", ["planner", "grid_staff", "supervisor", None])
def test_other_roles_may_not_export(town, role):
    start = _last_audit_id(town["engine"])
    with make_client(town["url"], role) as c:
        for fmt in ("gpkg", "xlsx"):
            r = c.get(f"/register/export.{fmt}")
            assert r.status_code == (401 if role is None else 403)
            assert r.headers["content-type"].startswith("application/problem+json")
    assert _export_audits(town["engine"], start) == []


def test_the_workbook_has_a_sheet_per_kind_with_chinese_headers(town):
    with make_client(town["url"], "admin") as admin:
        r = admin.get("/register/export.xlsx")
    assert r.status_code == 200
    wb = load_workbook(io.BytesIO(r.content), read_only=False)
    assert wb.sheetnames == SHEETS
    hh = wb["住户"]
    header = [c.value for c in hh[1]]
    assert header[:4] == ["户号", "户主姓名", "联系电话", "地址"] and "经度" in header
    assert hh.max_row - 1 == town["counts"]["households"]
    no = hh.cell(2, 1)
    assert no.data_type == "s" and no.value in town["households"]  # a 19-digit number kept as text
    assert wb["居民"].max_row - 1 == town["counts"]["residents"]
    ids = [c.value for c in wb["居民"]["E"][1:50]]
    assert all(isinstance(v, str) and len(v) == 18 for v in ids)
    roles = {c.value for c in wb["网格人员"]["C"][1:]}
    assert roles <= {"网格长", "网格员", "党员中心户", "网格督导员"} and "网格长" in roles
    assert [c.value for c in wb["网格"][1]][:3] == ["网格编码", "网格名称", "层级"]
    assert wb["网格"].max_row - 1 == town["counts"]["grids"]


def test_the_cli_writes_the_same_geopackage_as_the_api(town, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gis import settings as settings_mod
    from gis.cli import app

    with make_client(town["url"], "admin") as admin:
        api_file = _gpkg(admin, tmp_path, "api")
    monkeypatch.setenv("DATABASE_URL", town["url"].render_as_string(hide_password=False))
    settings_mod.get_settings.cache_clear()
    start = _last_audit_id(town["engine"])
    try:
        out = tmp_path / "town.gpkg"
        r = CliRunner().invoke(app, ["export", "town", str(out)])
        assert r.exit_code == 0, r.output
        assert f"households {town['counts']['households']}" in r.output
        bad = CliRunner().invoke(app, ["export", "town", str(tmp_path / "town.csv")])
        assert bad.exit_code == 2 and not (tmp_path / "town.csv").exists()
    finally:
        settings_mod.get_settings.cache_clear()
    assert read_back(out) == read_back(api_file)
    audits = _export_audits(town["engine"], start)
    assert len(audits) == 1 and audits[0].actor.startswith("cli") and audits[0].detail["file"] == "town.gpkg"


def test_round_trip_export_import_into_an_empty_database_export(town, tmp_path, test_db_url):
    """Export -> the real imports into an empty database (grids, natural villages, shelters, roads, rivers,
    households and residents, staff) -> export: the same content, layer by layer (but the grids' valid_from,
    which is the time of the new import)."""
    import datetime as dt

    import geopandas as gpd

    from gis.context import Context
    from gis.db import transaction, upgrade
    from gis.grids.store import import_grid_file
    from gis.register import households as register
    from gis.register.export import export_register
    from gis.register.places import import_place_file
    from gis.register.roster import import_roster
    from tests.conftest import create_database, drop_database, settings_for

    first_gpkg, first_xlsx = tmp_path / "first.gpkg", tmp_path / "first.xlsx"
    engine = town["engine"]
    with transaction(engine) as s:
        export_register(s, Context.cli("export"), None, first_gpkg, "gpkg")
        export_register(s, Context.cli("export"), None, first_xlsx, "xlsx")
    grids_file = tmp_path / "grids.gpkg"
    gpd.read_file(first_gpkg, layer="grids").to_file(grids_file, layer="grids", driver="GPKG")
    empty = test_db_url.set(database=f"{test_db_url.database}_roundtrip")
    create_database(empty)
    try:
        e2 = create_engine(empty, poolclass=NullPool)
        upgrade(e2)
        ctx = Context.cli("round trip")
        with transaction(e2) as s:
            import_grid_file(s, ctx, grids_file, file_name="grids.gpkg", source="round trip",
                             settings=settings_for(empty))
        with transaction(e2) as s:
            for kind in ("natural_villages", "shelters", "roads", "rivers"):
                import_place_file(s, ctx, kind, first_gpkg, layer_name=kind)
        with transaction(e2) as s:
            report = register.import_households(
                s, ctx, first_xlsx, first_xlsx.name,
                options=register.ImportOptions(household_sheet="住户", resident_sheet="居民",
                                               as_of=dt.date(2026, 6, 1))).as_dict()
        with transaction(e2) as s:
            import_roster(s, ctx, first_xlsx, file_name=first_xlsx.name, sheet="网格人员")
        second = tmp_path / "second.gpkg"
        with transaction(e2) as s:
            export_register(s, ctx, None, second, "gpkg")
        e2.dispose()
        a, b = read_back(first_gpkg), read_back(second)
        for rows in (a["grids"], b["grids"]):
            for r in rows:
                r.pop("valid_from")
        # A line's length is derived from its geometry (compared to 1e-7°): a re-imported line may round a
        # length that ends in .5 m the other way.
        for layer in ("roads", "rivers"):
            for x, y in zip(sorted(a[layer], key=repr), sorted(b[layer], key=repr), strict=True):
                assert abs(x.pop("length_m") - y.pop("length_m")) <= 1
        for layer in LAYER_NAMES:
            assert len(a[layer]) == len(b[layer]), (layer, report)
            if layer in ("households", "residents", "grids", "staff"):
                assert a[layer] == b[layer], layer  # the same rows in the same order
            else:  # lines and places of one name: the same set (their order among equal names may differ)
                assert sorted(map(repr, a[layer])) == sorted(map(repr, b[layer])), layer
        assert len(a["households"]) == town["counts"]["households"]
    finally:
        drop_database(empty)
