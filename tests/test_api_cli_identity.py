"""The same query through the API and the CLI gives the same rows and the same CSV bytes: the flood
households list (JSON rows, CSV) and the incident export (CSV), on the same database."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from tests.conftest import make_client


@pytest.fixture
def cli(test_db_url, accounts, monkeypatch):
    from gis import cli as cli_mod
    from gis import settings as settings_mod
    from gis.cli import app

    monkeypatch.setenv("DATABASE_URL", test_db_url.render_as_string(hide_password=False))
    settings_mod.get_settings.cache_clear()
    # Connections that close after each command: an idle pooled one left on the shared database
    # would keep later tests from copying it as a template.
    monkeypatch.setattr(cli_mod, "_engine", lambda: create_engine(test_db_url, poolclass=NullPool))
    runner = CliRunner()

    def run(*args: str) -> None:
        r = runner.invoke(app, list(args))
        assert r.exit_code == 0, r.output

    yield run
    settings_mod.get_settings.cache_clear()


def _village_of_flood(client) -> str:
    r = client.get("/flood/households", params={"scenario": "3", "limit": 1000, "reason": "核对"})
    assert r.status_code == 200, r.text
    villages = sorted({h["village_code"] for h in r.json()["items"] if h["village_code"]})
    assert villages, "the 3 m stage floods households"
    return villages[0]


@pytest.mark.parametrize("query", [
    {"scenario": "3"},
    {"scenario": "3", "limit": 7, "offset": 3},
    {"scenario": "3", "grid_code": "village"},
    {"scenario": "3", "grid_code": "411324105000000", "limit": 20},   # the town code keeps everything
    {"scenario": "3", "buffer_m": 40, "limit": 25},                   # not stored: computed on read
])
def test_flood_households_api_equals_cli(test_db_url, accounts, cli, tmp_path, query):
    with make_client(test_db_url, "admin") as client:
        query = dict(query)
        if query.get("grid_code") == "village":
            query["grid_code"] = _village_of_flood(client)
        api_params = {"limit": 1000, **query, "reason": "防汛核对"}
        r_json = client.get("/flood/households", params=api_params)
        r_csv = client.get("/flood/households", params={**api_params, "format": "csv"})
    assert r_json.status_code == 200 and r_csv.status_code == 200, (r_json.text, r_csv.text)
    api_answer = r_json.json()
    api_answer.pop("next")
    args = ["flood", "households", "--scenario", query["scenario"], "--limit", str(api_params["limit"])]
    for key, flag in (("offset", "--offset"), ("grid_code", "--grid-code"), ("buffer_m", "--buffer-m")):
        if key in query:
            args += [flag, str(query[key])]
    cli(*args, "--json", str(tmp_path / "f.json"), "--csv", str(tmp_path / "f.csv"))
    cli_answer = json.loads((tmp_path / "f.json").read_text(encoding="utf-8"))
    assert api_answer["items"], "a query that finds households"
    assert all(h["personal_fields"] == "shown" for h in api_answer["items"])
    assert cli_answer == api_answer
    assert (tmp_path / "f.csv").read_bytes() == r_csv.content
    assert "是".encode() in r_csv.content or "否".encode() in r_csv.content


@pytest.mark.parametrize("query", [
    {"limit": 200},
    {"category": "dispute", "limit": 50, "offset": 10},
    {"grid_code": "411324105001000", "limit": 100},
    {"overdue": "true", "limit": 100},
])
def test_incident_export_api_equals_cli(test_db_url, accounts, cli, tmp_path, query):
    with make_client(test_db_url, "admin") as client:
        r = client.get("/incidents", params={**query, "format": "csv"})
    assert r.status_code == 200, r.text
    assert r.content.count(b"\n") > 1, "a query that finds incidents"
    args = ["incidents", "export", str(tmp_path / "i.csv"), "--as", accounts["admin"]["username"]]
    for key, value in query.items():
        if key == "overdue":
            args.append("--overdue" if value == "true" else "--no-overdue")
        else:
            args += [f"--{key.replace('_', '-')}", str(value)]
    cli(*args)
    assert (tmp_path / "i.csv").read_bytes() == r.content
