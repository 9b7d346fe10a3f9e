"""The grid import is one operation (gis.grids.store.import_grid_file) for the API and the CLI, with
its own audit row; the grid list pages in SQL and links its next page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.test_grid_import_db import fingerprint, upload, village_groups, write_geojson

ROOT = Path(__file__).resolve().parent.parent


def _redrawn_village(client, tmp_path: Path) -> Path:
    """The first village's group grids with one name changed: a file that redraws one grid."""
    _, frame = village_groups(client)
    frame.loc[frame.index[0], "name"] = frame["name"].iloc[0] + "（改）"
    return write_geojson(frame, tmp_path / "redraw.geojson")


def _grid_imports(url) -> list[tuple]:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT actor, method, path, resource_ids, detail FROM audit_log "
                 "WHERE action = 'import' AND resource = 'grid' ORDER BY id")
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def _cli(url, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)}
    return subprocess.run([sys.executable, "-m", "gis.cli", "grids", "import", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_api_and_cli_dry_runs_agree_and_write_nothing(scratch_client, scratch_db_url, tmp_path):
    path = _redrawn_village(scratch_client, tmp_path)
    before = fingerprint(scratch_db_url)
    api = upload(scratch_client, path, dry_run="true")
    assert api.status_code == 200, api.text
    report = api.json()
    assert report["dry_run"] is True and report["replaced"] == 1 and report["created"] == 0
    cli = _cli(scratch_db_url, str(path), "--dry-run")
    assert cli.returncode == 0, cli.stderr
    assert f"would write: {report['created']} new, {report['replaced']} redrawn, {report['unchanged']} unchanged" \
        in cli.stdout
    assert fingerprint(scratch_db_url) == before
    assert _grid_imports(scratch_db_url) == []  # nothing written, nothing audited


def test_api_and_cli_imports_write_their_audit_rows(scratch_client, scratch_db_url, tmp_path):
    path = _redrawn_village(scratch_client, tmp_path)
    api = upload(scratch_client, path)
    assert api.status_code == 200, api.text
    redrawn = api.json()["codes"]["replaced"]
    assert len(redrawn) == 1
    # The same file again through the CLI: unchanged now, but still an import, recorded as the CLI's.
    cli = _cli(scratch_db_url, str(path))
    assert cli.returncode == 0, cli.stderr
    assert "wrote: 0 new, 0 redrawn" in cli.stdout
    rows = _grid_imports(scratch_db_url)
    assert len(rows) == 2
    (api_actor, api_method, api_path, api_ids, api_detail), (cli_actor, cli_method, cli_path, cli_ids, _) = rows
    assert api_method == "POST" and api_path == "/grids/import" and api_ids == redrawn
    assert api_detail == {"file": "redraw.geojson", "created": 0, "replaced": 1}
    assert cli_actor.startswith("cli") and cli_method == "CLI" and cli_path.startswith("grids import")
    assert cli_ids == []


def test_a_refused_file_writes_no_audit_row(scratch_client, scratch_db_url, tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": []}')
    assert upload(scratch_client, bad).status_code == 422
    assert _cli(scratch_db_url, str(bad)).returncode == 1
    assert _grid_imports(scratch_db_url) == []


def test_grid_list_pages_follow_next_links(client, engine):
    with engine.connect() as conn:
        expected = conn.execute(
            text("SELECT code FROM grid WHERE valid_to IS NULL AND level = 4 ORDER BY code")
        ).scalars().all()
    assert len(expected) > 100
    url: str | None = "/grids?level=4&limit=40"
    seen: list[str] = []
    pages = 0
    while url is not None:
        body = client.get(url).json()
        assert body["numberMatched"] == len(expected)
        assert body["numberReturned"] == len(body["features"]) <= 40
        seen += [f["properties"]["code"] for f in body["features"]]
        url = body["next"]
        pages += 1
    assert seen == expected  # stable order, no page repeats or skips a grid
    assert pages == -(-len(expected) // 40)


def test_grid_list_last_page_has_no_next(client):
    body = client.get("/grids", params={"level": 1}).json()
    assert body["numberMatched"] == 1 and body["next"] is None
