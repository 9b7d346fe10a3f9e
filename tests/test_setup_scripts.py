"""Setup and start: the ensure scripts and `make serve` touch no network when nothing is missing,
the service's environment gets no test extras, and demo accounts survive a renamed village."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "scripts").glob("ensure_*.sh"))
# Tools that reach a package registry; in these tests each one only records that it was called.
NETWORK_TOOLS = ("apt-get", "apt", "pip", "pip3", "npm", "npx", "curl", "wget")
# A listing far larger than a pipe's buffer: `lister | grep -q` then kills the lister (SIGPIPE).
HUGE = 200_000


def _fake_bin(tmp_path: Path, log: Path) -> Path:
    """A bin/ with recording network tools and loud fc-list/ldconfig that list what is present."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in NETWORK_TOOLS:
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{log}"\nexit 1\n')
    (bin_dir / "fc-list").write_text(
        "#!/bin/sh\n"
        "echo '/usr/share/fonts/NotoSansCJK-Regular.ttc: Noto Sans CJK SC:style=Regular'\n"
        f"seq {HUGE} | sed 's/^/\\/usr\\/share\\/fonts\\/other-/'\n"
    )
    (bin_dir / "ldconfig").write_text(
        "#!/bin/sh\necho '\tlibpango-1.0.so.0 (libc6,x86-64) => /lib/libpango-1.0.so.0'\n"
        "echo '\tlibpangoft2-1.0.so.0 (libc6,x86-64) => /lib/libpangoft2-1.0.so.0'\n"
        f"seq {HUGE} | sed 's/^/\tlibother.so./'\n"
    )
    for p in bin_dir.iterdir():
        p.chmod(0o755)
    # What the scripts look for besides: present, so only a broken check would call a tool above.
    for tool in ("chromium", "node"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    return bin_dir


def _offline_env(bin_dir: Path) -> dict[str, str]:
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens, every request fails
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(PATH=f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", http_proxy=dead,
               https_proxy=dead, HTTP_PROXY=dead, HTTPS_PROXY=dead, PIP_NO_INDEX="1")
    return env


@pytest.mark.parametrize(
    "script", [s for s in SCRIPTS if s.name not in ("ensure_python.sh", "ensure_postgis.sh")],
    ids=lambda p: p.name,
)
def test_ensure_script_with_nothing_missing_reaches_no_registry(script, tmp_path):
    """Each check must decide "present" even when its listing is huge (pipefail + SIGPIPE)."""
    log = tmp_path / "calls.log"
    bin_dir = _fake_bin(tmp_path, log)
    if script.name == "ensure_node.sh":
        (bin_dir / "npm").write_text("#!/bin/sh\nexit 0\n")  # present: it is what the check asks
    for attempt in range(3):  # SIGPIPE depends on timing: a broken check fails on some tries
        done = subprocess.run(["bash", str(script)], cwd=ROOT, env=_offline_env(bin_dir),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (attempt, done.stderr)
    assert not log.exists(), log.read_text()


def test_postgis_script_pipes_cannot_misfire():
    """ensure_postgis.sh works on the shared cluster, so it is checked by reading: every pipe
    either ends in a reader of the whole input or is guarded, never `... | grep -q`."""
    for script in SCRIPTS:
        for n, line in enumerate(script.read_text().splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            assert "| grep -q" not in line, f"{script.name}:{n}: {line.strip()}"


def _checkout(tmp_path: Path) -> Path:
    """What the Makefile reads, copied into a fresh folder (as a clone would have it)."""
    tree = tmp_path / "clone"
    (tree / "maps" / "assets").mkdir(parents=True)
    for rel in ("Makefile", "pyproject.toml", "maps/assets/package.json",
                "maps/assets/package-lock.json"):
        shutil.copy2(ROOT / rel, tree / rel)
    shutil.copytree(ROOT / "scripts", tree / "scripts")
    return tree


def _make_dry_run(tree: Path, target: str) -> str:
    done = subprocess.run(["make", "-n", target], cwd=tree, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_serve_installs_runtime_dependencies_only(tmp_path):
    tree = _checkout(tmp_path)
    plan = _make_dry_run(tree, "serve")
    installs = [line for line in plan.splitlines() if "ensure_python.sh" in line]
    assert installs == ["bash scripts/ensure_python.sh .venv"], plan
    assert "[test]" not in plan
    test_plan = _make_dry_run(tree, "test")
    assert "bash scripts/ensure_python.sh .venv test" in test_plan.splitlines()


def test_second_make_serve_plans_no_install(tmp_path):
    """Once set up (the stamps written), `make serve` runs only the idempotent ensure scripts:
    no pip, npm or apt command of its own."""
    tree = _checkout(tmp_path)
    first = _make_dry_run(tree, "serve")
    assert "npm ci" in first and "ensure_python.sh" in first
    for stamp in (".venv/.installed-runtime", "maps/assets/node_modules/.installed"):
        (tree / stamp).parent.mkdir(parents=True, exist_ok=True)
        (tree / stamp).touch()
    plan = _make_dry_run(tree, "serve")
    for word in ("pip ", "npm ci", "apt-get", "ensure_python.sh", "ensure_node.sh"):
        assert word not in plan, plan
    assert "gis.cli serve" in plan


def test_demo_accounts_after_a_grid_import_renamed_their_village(
    scratch_db_url, tmp_path, monkeypatch
):
    from typer.testing import CliRunner

    from gis import settings as settings_mod
    from gis.cli import app

    villages = json.loads((ROOT / "data/boundaries/villages.geojson").read_text(encoding="utf-8"))
    renamed = [f for f in villages["features"] if f["properties"]["name"] == "尹营村"]
    assert len(renamed) == 1
    renamed[0]["properties"]["name"] = "尹营社区"
    path = tmp_path / "villages.geojson"
    path.write_text(json.dumps(villages, ensure_ascii=False), encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL", scratch_db_url.render_as_string(hide_password=False))
    settings_mod.get_settings.cache_clear()
    try:
        imported = CliRunner().invoke(app, ["grids", "import", str(path)])
        assert imported.exit_code == 0, imported.output
        assert "0 new, 1 redrawn, 19 unchanged" in imported.output
        result = CliRunner().invoke(app, ["sample", "demo-accounts"])
        assert result.exit_code == 0, (result.output, result.exception)
    finally:
        settings_mod.get_settings.cache_clear()
    engine = create_engine(scratch_db_url, poolclass=NullPool)
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM grid WHERE name = '尹营村' "
                              "AND valid_to IS NULL")).scalar_one() == 0
        scope = c.execute(text(
            "SELECT u.scope_codes FROM app_user u WHERE u.username = 'demo_grid_staff'"
        )).scalar_one()
        (code,) = scope
        level = c.execute(text("SELECT level FROM grid WHERE code = :c AND valid_to IS NULL"),
                          {"c": code}).scalar_one()
    engine.dispose()
    assert level == 4
    assert "demo_grid_staff" in result.output

