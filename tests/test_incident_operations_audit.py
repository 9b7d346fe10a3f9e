"""Incident operations write their own audit rows (issue 12 item 5): the same operation leaves the
same trail whichever door it came through — the API (method and path of the request) or the CLI
(method CLI, the command, the machine's user) — and the adapters write none themselves."""

from __future__ import annotations

import io

import pandas as pd
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import make_client


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _rows(url, since_id: int) -> list[dict]:
    eng = create_engine(url, poolclass=NullPool)
    with eng.connect() as c:
        rows = c.execute(text(
            "SELECT actor, action, resource, resource_ids, method, path, detail FROM audit_log "
            "WHERE id > :i ORDER BY id"), {"i": since_id}).mappings().all()
        top = c.execute(text("SELECT coalesce(max(id), 0) FROM audit_log")).scalar_one()
    eng.dispose()
    return [dict(r) for r in rows] + [{"top": top}]


def _inside(url) -> tuple[float, float]:
    eng = create_engine(url, poolclass=NullPool)
    with eng.connect() as c:
        x, y = c.execute(text("SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM grid "
                              "WHERE level = 4 AND valid_to IS NULL ORDER BY code LIMIT 1")).one()
    eng.dispose()
    return x, y


def test_api_operations_each_write_one_audit_row(scratch_db_url, accounts):
    x, y = _inside(scratch_db_url)
    start = _rows(scratch_db_url, 0)[-1]["top"]
    with make_client(scratch_db_url, "admin") as admin:
        inc = admin.post("/incidents", json={
            "category": "dispute", "description": "邻里纠纷", "occurred_at": "2024-05-01T08:00:00+08:00",
            "lon": x, "lat": y, "reporter_name": "张三", "reporter_phone": "13800000000"}).json()
        iid = inc["id"]
        assert admin.post(f"/incidents/{iid}/transitions", json={"action": "advance"}).status_code == 200
        photo = admin.post(f"/incidents/{iid}/attachments", files={"file": ("现场.png", _png())})
        assert photo.status_code == 201, photo.text
        assert admin.get(f"/incidents/{iid}").status_code == 200
        assert admin.post(f"/incidents/{iid}/review").status_code == 200
        frame = pd.DataFrame([{"category": "environment", "description": "垃圾", "external_id": "audit-1",
                               "occurred_at": "2024-05-01T10:00:00+08:00", "lon": x, "lat": y}])
        imported = admin.post("/incidents/import", files={"file": ("a.csv", frame.to_csv(index=False).encode())})
        assert imported.status_code == 200 and imported.json()["created"] == 1
    rows = _rows(scratch_db_url, start)[:-1]
    seen = [(r["actor"], r["action"], r["resource"], r["method"], r["path"]) for r in rows]
    assert seen == [
        ("test_admin", "create", "incident", "POST", "/incidents"),
        ("test_admin", "update", "incident", "POST", f"/incidents/{iid}/transitions"),
        ("test_admin", "create", "incident_attachment", "POST", f"/incidents/{iid}/attachments"),
        ("test_admin", "read_personal", "incident", "GET", f"/incidents/{iid}"),
        ("test_admin", "review", "incident", "POST", f"/incidents/{iid}/review"),
        ("test_admin", "import", "incident", "POST", "/incidents/import"),
    ]
    assert rows[1]["detail"] == {"action": "advance", "state": "report"}
    assert rows[2]["detail"] == {"incident_id": iid, "size": len(_png())}
    assert rows[3]["resource_ids"] == [str(iid)]
    assert rows[5]["detail"] == {"file": "a.csv", "created": 1, "failed": 0}


def test_cli_import_is_audited_by_the_operation(scratch_db_url, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gis import settings as settings_mod
    from gis.cli import app
    from gis.context import cli_actor

    x, y = _inside(scratch_db_url)
    start = _rows(scratch_db_url, 0)[-1]["top"]
    path = tmp_path / "one.csv"
    pd.DataFrame([{"category": "environment", "description": "垃圾", "external_id": "cli-audit-1",
                   "occurred_at": "2024-05-01T10:00:00+08:00", "lon": x, "lat": y}]).to_csv(path, index=False)
    monkeypatch.setenv("DATABASE_URL", scratch_db_url.render_as_string(hide_password=False))
    settings_mod.get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["incidents", "import", str(path)])
        assert result.exit_code == 0, result.output
        again = CliRunner().invoke(app, ["incidents", "import", str(path)])    # adds nothing
        assert again.exit_code == 0 and "0 new" in again.output, again.output
    finally:
        settings_mod.get_settings.cache_clear()
    rows = _rows(scratch_db_url, start)[:-1]
    assert [(r["actor"], r["action"], r["resource"], r["method"], r["path"], r["detail"]) for r in rows] == [
        (cli_actor(), "import", "incident", "CLI", "incidents import", {"file": "one.csv", "created": 1, "failed": 0}),
    ]
