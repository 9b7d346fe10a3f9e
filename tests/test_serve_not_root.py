"""`wangge serve` started as root serves as an unprivileged system user, not as root."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _uids(pid: int) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(v) for v in line.split()[1:]]
    raise AssertionError(f"no Uid line for {pid}")


def _listener_pids(port: int) -> set[int]:
    """Processes holding the listening socket of `port`, found through /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "0A":  # 0A: LISTEN
                inodes.add(f[9])
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in {f"socket:[{i}]" for i in inodes}:
                    pids.add(int(pid))
        except OSError:
            continue
    return pids


@pytest.fixture
def open_dirs():
    """A var/ and a data folder every user may enter (pytest's own tmp is root-only)."""
    base = Path(tempfile.mkdtemp(prefix="wangge-serve-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def restored_modes():
    """Folders `wangge serve` may open for its user (here: pyenv under /root) get their modes
    back afterwards, so the test leaves the machine as it found it."""
    from gis.service_user import closed_folders, ensure_system_user

    before = {f: f.stat().st_mode & 0o7777 for f, _ in closed_folders(ensure_system_user("wangge"))}
    yield before
    for folder, mode in before.items():
        folder.chmod(mode)


def test_serve_started_as_root_runs_unprivileged(test_db_url, open_dirs, restored_modes):
    assert os.geteuid() == 0, "this test starts the server as root, as `make serve` does"
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": test_db_url.render_as_string(hide_password=False),
        "WANGGE_VAR_DIR": str(open_dirs / "var"),
        "WANGGE_DATA_DIR": str(open_dirs / "var" / "data"),
        "WANGGE_PORT": str(port),
    }
    env.pop("NUMBA_CACHE_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "gis.cli", "serve"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        if answer is None:
            output = proc.communicate(timeout=5)[0] if proc.poll() is not None else ""
            pytest.fail(f"the server did not answer /healthz: {output}")
        assert answer.status_code == 200 and answer.json()["status"] == "ok"
        # The process that answers: the one holding the listening socket (the started one).
        holders = _listener_pids(port)
        assert holders == {proc.pid}
        real, effective, saved, fs = _uids(proc.pid)
        assert 0 not in (real, effective, saved, fs)
        import pwd

        assert pwd.getpwuid(effective).pw_name == "wangge"
        # It may write only its own folders: the data folder is its, the code is not.
        data = open_dirs / "var" / "data"
        assert data.stat().st_uid == effective
        assert (ROOT / "gis").stat().st_uid != effective
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_serve_refuses_a_checkout_the_service_user_cannot_enter(tmp_path):
    """A checkout under a root-only folder (pytest's tmp is 0700, like /root) with opening
    folders turned off: a clear message naming the folders and what to do, exit 1, nothing
    served, and no folder's mode changed."""
    checkout = tmp_path / "closed" / "wangge"
    checkout.mkdir(parents=True)
    (tmp_path / "closed").chmod(0o700)
    ignore = shutil.ignore_patterns("node_modules", "__pycache__", "*.geojson")
    for package in ("api", "gis", "maps"):
        shutil.copytree(ROOT / package, checkout / package, ignore=ignore)
    port = _free_port()
    env = {**os.environ, "WANGGE_PORT": str(port), "DATABASE_URL": "postgresql://x@127.0.0.1:9/x",
           "WANGGE_SERVICE_OPEN_FOLDERS": "false"}
    done = subprocess.run([sys.executable, "-m", "gis.cli", "serve"], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    message = " ".join((done.stdout + done.stderr).split())
    assert "cannot read the code" in message and "'wangge'" in message
    assert f"{tmp_path / 'closed'} (mode 0o700)" in message and "chmod o+x" in message
    assert (tmp_path / "closed").stat().st_mode & 0o777 == 0o700
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
