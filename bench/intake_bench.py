"""Single intake under load: Wangge's real POST /incidents against a minimal PostGIS-lookup app.

    apt-get install -y wrk                      # once (Debian)
    .venv/bin/python bench/city.py --skip-csv   # once, if wangge_bench does not exist yet
    .venv/bin/python bench/intake_bench.py      # about 1.5 minutes
    git worktree add /tmp/earlier HEAD~1 && ln -s "$PWD/.venv" /tmp/earlier/.venv
    .venv/bin/python bench/intake_bench.py --compare /tmp/earlier   # and the code before a change, in the same rounds

Both apps run the same way: uvicorn, 1 worker, 127.0.0.1 only, access log off, the same
database engine settings, against a fresh copy of the generated city (`wangge_bench_intake`,
60,611 grids, no incidents; `--db NAME --reuse` to use an existing database instead). Each gets
a 3 s warm-up, then `wrk -t2 -c32 -d20s --timeout 10s --latency` with bench/intake.lua, which
posts random points inside the town:

* minimal: POST /locate {"lon", "lat"} -> the group grid by one PostGIS query (bench/minimal_app.py);
* wangge:  POST /incidents with a bearer token (64 tokens of one command_center account, taken
           in turn, as many field devices would), a unique external_id per request (--no-ids: none),
           category, description, occurred_at: validated, located at every level, stored with history,
           routing, duplicate links and an audit record, committed, the stored incident returned.

Reported: requests/s, p99 latency, errors (non-2xx answers and socket errors), and the ratio
wangge / minimal; per run also the CPU per request of the app and of PostgreSQL, the share of the
machine's CPU left idle (a run that leaves it idle is bound by waiting, not by CPU) and what the
database's backends were doing on average (`WaitSampler`: running, held by the app between
statements, waiting on a lock or on the WAL's flush). Results are printed and written to
var/bench/intake_results.json. The servers are stopped by their process ids at the end of each run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from city import DEFAULT_DB, bench_url, write_results  # noqa: E402
from import_bench import clone_database  # noqa: E402

RESULTS = ROOT / "var" / "bench" / "intake_results.json"
PY = str(ROOT / ".venv" / "bin" / "python")


def make_tokens(engine: Engine, n: int) -> list[str]:
    import secrets

    from gis.auth import accounts
    from gis.auth.roles import Role
    from gis.db import transaction

    with transaction(engine) as session:
        name = f"bench-intake-{secrets.token_hex(3)}"
        user = accounts.create_user(session, name, secrets.token_urlsafe(16) + "aA1!", Role.COMMAND_CENTER)
        return [accounts.create_token(session, user.id, f"device {i}")[0] for i in range(n)]


def town_box(engine: Engine, inset: float = 0.02) -> tuple[float, float, float, float]:
    from sqlalchemy import text

    with engine.connect() as conn:
        x0, y0, x1, y1 = conn.execute(text(
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
            "(SELECT ST_Extent(geom) AS e FROM grid WHERE level = 1 AND valid_to IS NULL) s")).one()
    dx, dy = (x1 - x0) * inset, (y1 - y0) * inset
    return x0 + dx, y0 + dy, x1 - dx, y1 - dy


def serve(app: str, port: int, env: dict[str, str], app_dir: str | None = None,
          cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    cmd = [PY, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--no-access-log", "--log-level", "warning"]
    if app_dir:
        cmd += ["--app-dir", app_dir]
    return subprocess.Popen(cmd, cwd=cwd, env=env)


def wait_ready(port: int, path: str, body: bytes | None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status < 500:
                    return
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                raise
        time.sleep(0.3)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    assert m is not None, value
    return float(m.group(1)) * _UNIT[m.group(2)]


def _found(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    assert m is not None, f"wrk printed no {pattern!r}:\n{text}"
    return m.group(1)


def _cpu_s(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system) process `pid` has used so far (0 when it is gone); `children`: with those of
    its children that have ended (a backend of a closed connection)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(f) for f in fields[11:15 if children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def _postgres_pids() -> list[int]:
    """This project's PostgreSQL: the postmaster (var/pg/postmaster.pid) and its children (the backends);
    empty for a server elsewhere (DATABASE_URL)."""
    pidfile = ROOT / "var" / "pg" / "postmaster.pid"
    if not pidfile.exists():
        return []
    master = int(pidfile.read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master:
                children.append(int(stat.parent.name))
        except (OSError, ValueError):
            continue
    return [master, *children]


def _sessions(engine: Engine) -> int:
    """Connections made to the bench database so far (each one a new PostgreSQL backend), this one included."""
    from sqlalchemy import text

    with engine.connect() as conn:
        return int(conn.execute(text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()"))
                   .scalar_one())


def db_counters(engine: Engine) -> dict[str, int]:
    """The server's WAL written so far (bytes, full-page images), checkpoints begun, and autovacuum/autoanalyze
    passes over the bench database's tables: what the database did beside the requests during a run (PostgreSQL
    14 to 16's statistics views; zeros where the server has other ones)."""
    from sqlalchemy import text
    from sqlalchemy.exc import ProgrammingError

    with engine.connect() as conn:
        try:
            row = conn.execute(text(
                "SELECT w.wal_bytes::bigint AS wal_bytes, w.wal_fpi AS wal_fpi, "
                "b.checkpoints_timed + b.checkpoints_req AS checkpoints, "
                "(SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) FROM pg_stat_user_tables)::bigint "
                "AS autovacuum FROM pg_stat_wal w, pg_stat_bgwriter b")).mappings().one()
        except ProgrammingError:
            return dict.fromkeys(("wal_bytes", "wal_fpi", "checkpoints", "autovacuum"), 0)
    return {key: int(value) for key, value in row.items()}


def cpu_use(server: int) -> dict[str, float]:
    """CPU seconds used so far by the app's server process and by PostgreSQL's processes."""
    pids = _postgres_pids()
    return {"server": _cpu_s(server), "postgres": sum(_cpu_s(p, children=i == 0) for i, p in enumerate(pids))}


def machine_ticks() -> tuple[int, int]:
    """The whole machine's CPU ticks so far: (idle and waiting on I/O, all), from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return ticks[3] + ticks[4], sum(ticks)


class WaitSampler:
    """What the bench database's client backends are doing during a run: every `every_s`, their state and wait
    event from pg_stat_activity, on a connection of its own (~20 cheap queries a second). `averages()`: how many
    backends were in each (state, wait) on average, e.g. "active" (running or ready to run), "idle ClientRead"
    (a connection held by the app, waiting for its next statement), "active Lock:object" (NOTIFY's commit lock).
    """

    SQL = ("SELECT state, wait_event_type, wait_event FROM pg_stat_activity WHERE datname = current_database() "
           "AND backend_type = 'client backend' AND application_name = %s")

    def __init__(self, url: Any, app: str, every_s: float = 0.05):
        import threading

        self.url, self.app, self.every_s = url, app, every_s   # app: the application_name of its connections
        self.counts: dict[str, int] = {}
        self.samples = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WaitSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        self.thread.join()

    def _run(self) -> None:
        import psycopg

        conninfo = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            while not self.stopping.wait(self.every_s):
                self.samples += 1
                for state, kind, event in conn.execute(self.SQL, (self.app,)).fetchall():
                    key = " ".join(p for p in (state or "?", f"{kind}:{event}" if kind else "") if p)
                    self.counts[key] = self.counts.get(key, 0) + 1

    def averages(self) -> dict[str, float]:
        n = max(self.samples, 1)
        return {k: round(v / n, 2) for k, v in sorted(self.counts.items(), key=lambda kv: -kv[1])}


def run_wrk(port: int, seconds: int, conns: int, script_args: list[str]) -> dict[str, Any]:
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "--latency",
           "-s", str(ROOT / "bench" / "intake.lua"), f"http://127.0.0.1:{port}", "--", *script_args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    res: dict[str, Any] = {"raw": out}
    res["requests_per_s"] = float(_found(r"Requests/sec:\s+([\d.]+)", out))
    res["requests"] = int(_found(r"(\d+) requests in", out))
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.M))
    res.update({f"p{k}_ms": _ms(v) for k, v in pct.items()})
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    res["socket_errors"] = sum(int(g) for g in sock.groups()) if sock else 0
    res["errors"] = res["non_2xx"] + res["socket_errors"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--template", default=DEFAULT_DB)
    ap.add_argument("--db", default=DEFAULT_DB + "_intake")
    ap.add_argument("--reuse", action="store_true", help="use --db as it is (no fresh copy)")
    ap.add_argument("--seconds", type=int, default=15, help="per run; each app runs once per round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--no-ids", action="store_true", help="post without external_id")
    ap.add_argument("--port", type=int, default=8801)
    ap.add_argument("--compare", type=Path, metavar="CHECKOUT",
                    help="also serve Wangge from this checkout (e.g. a `git worktree` of an earlier commit, with this "
                         "one's .venv) as 'earlier', in the same rounds: a change measured against the code before it")
    args = ap.parse_args()

    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    url = bench_url(args.db) if args.reuse else clone_database(args.template, args.db)
    engine = create_engine(url, poolclass=NullPool)
    if not args.reuse:
        # A served database has been vacuumed and analysed; a fresh copy (with the migrations the template
        # lacked just run on it) has not, and autovacuum's first pass over it would run during round 1.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    tokens = make_tokens(engine, 64)
    box = town_box(engine)
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM incident")).scalar_one()
    tag = dt.datetime.now(dt.UTC).strftime("%H%M%S")
    env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)}
    info = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "loadavg_before": [round(v, 2) for v in os.getloadavg()], "db": args.db,
            "incidents_before": before, "seconds": args.seconds, "connections": args.connections,
            "external_ids": not args.no_ids}
    print(f"{info['date']}  {info['cpus']} cpus  load {info['loadavg_before']}  db {args.db} "
          f"({before} incidents before)", flush=True)
    results: dict[str, Any] = {"machine": info}
    with tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False) as f:
        f.write("\n".join(tokens) + "\n")
        tokens_file = f.name
    procs = {}
    try:
        # Both servers up at once on their own ports; rounds alternate A B / B A so that a change in
        # the machine's load during the run falls on both alike.
        # Each app's connections are named (libpq's PGAPPNAME), so that WaitSampler sees the app under test only.
        procs["minimal"] = serve("minimal_app:app", args.port, {**env, "PGAPPNAME": "bench-minimal"},
                                 app_dir=str(ROOT / "bench"))
        procs["wangge"] = serve("api.main:app", args.port + 1, {**env, "PGAPPNAME": "bench-wangge"})
        ports = {"minimal": args.port, "wangge": args.port + 1}
        if args.compare is not None:
            procs["earlier"] = serve("api.main:app", args.port + 2, {**env, "PGAPPNAME": "bench-earlier"},
                                     cwd=args.compare.resolve())
            ports["earlier"] = args.port + 2
        wait_ready(ports["minimal"], "/locate", json.dumps({"lon": box[0], "lat": box[1]}).encode())
        for name in ports.keys() - {"minimal"}:
            wait_ready(ports[name], "/healthz", None)
        ids = "none" if args.no_ids else "ids"
        names = list(ports)
        for name in names:                                                          # warm-up, not counted
            run_wrk(ports[name], 3, args.connections, [_mode(name), tokens_file, *map(str, box), f"{tag}9{len(name)}",
                                                       ids])
        rounds: list[dict[str, Any]] = []
        for k in range(args.rounds):
            # Two apps: A B / B A. Three: each order in turn (A B C, B C A, C A B).
            order = (names[k % 3:] + names[:k % 3]) if len(names) == 3 else names[::1 if k % 2 == 0 else -1]
            this: dict[str, Any] = {}
            for name in order:
                script = [_mode(name), tokens_file, *map(str, box), f"{tag}{k}{len(name)}", ids]
                cpu0, sessions0, db0 = cpu_use(procs[name].pid), _sessions(engine), db_counters(engine)
                idle0 = machine_ticks()
                with WaitSampler(url, f"bench-{name}") as waits:
                    r = this[name] = run_wrk(ports[name], args.seconds, args.connections, script)
                cpu1, idle1 = cpu_use(procs[name].pid), machine_ticks()
                # A run that leaves the machine idle is not bound by CPU: where its requests wait instead.
                r["machine_idle_share"] = round((idle1[0] - idle0[0]) / max(idle1[1] - idle0[1], 1), 3)
                r["backends"] = waits.averages()
                time.sleep(0.6)   # the statistics of the backends that ended are flushed within 0.5 s
                r["new_connections"] = _sessions(engine) - sessions0 - 1
                db1 = db_counters(engine)
                r["wal_kb_per_request"] = round((db1["wal_bytes"] - db0["wal_bytes"]) / 1024 / max(r["requests"], 1), 2)
                r["wal_fpi_per_request"] = round((db1["wal_fpi"] - db0["wal_fpi"]) / max(r["requests"], 1), 2)
                r["checkpoints"] = db1["checkpoints"] - db0["checkpoints"]
                r["autovacuum_passes"] = db1["autovacuum"] - db0["autovacuum"]
                # CPU per request: the app's process and PostgreSQL's (wrk's own is not counted).
                r.update({f"cpu_ms_per_request_{part}":
                          round((cpu1[part] - cpu0[part]) * 1000 / max(r["requests"], 1), 3) for part in cpu0})
                print(f"round {k + 1} {name:8} {r['requests_per_s']:8.1f} req/s  p50 {r.get('p50_ms', 0):7.1f} ms  "
                      f"p99 {r.get('p99_ms', 0):7.1f} ms  errors {r['errors']} "
                      f"(non-2xx {r['non_2xx']}, socket {r['socket_errors']})  CPU per request: server "
                      f"{r['cpu_ms_per_request_server']:.2f} ms, PostgreSQL {r['cpu_ms_per_request_postgres']:.2f} ms; "
                      f"{r['new_connections']} new database connections; WAL {r['wal_kb_per_request']:.1f} KB "
                      f"({r['wal_fpi_per_request']:.2f} full pages) per request, {r['checkpoints']} checkpoints "
                      f"begun, {r['autovacuum_passes']} autovacuum passes; machine idle "
                      f"{r['machine_idle_share'] * 100:.0f} %; backends on average: "
                      + ", ".join(f"{k} {v:.2f}" for k, v in list(r["backends"].items())[:4]), flush=True)
            this["ratio"] = this["wangge"]["requests_per_s"] / this["minimal"]["requests_per_s"]
            if "earlier" in this:
                this["ratio_earlier"] = this["earlier"]["requests_per_s"] / this["minimal"]["requests_per_s"]
                print(f"round {k + 1}: wangge / minimal {this['ratio']:.3f}, earlier / minimal "
                      f"{this['ratio_earlier']:.3f}, wangge / earlier "
                      f"{this['wangge']['requests_per_s'] / this['earlier']['requests_per_s']:.3f}", flush=True)
            rounds.append(this)
    finally:
        for proc in procs.values():
            stop(proc)
        os.unlink(tokens_file)
    results["rounds"] = rounds
    for name in names:
        rs = [r[name] for r in rounds]
        results[name] = {
            "requests_per_s": sum(r["requests_per_s"] for r in rs) / len(rs),
            "p99_ms_worst": max(r.get("p99_ms", 0) for r in rs),
            "p50_ms_median": float(np.median([r.get("p50_ms", 0) for r in rs])),
            "errors": sum(r["errors"] for r in rs),
        }
    with engine.connect() as conn:
        after = conn.execute(text("SELECT count(*) FROM incident")).scalar_one()
        dups = conn.execute(text("SELECT count(*) FROM incident_duplicate")).scalar_one()
    engine.dispose()
    results["incidents_created"] = after - before
    results["duplicate_links"] = dups
    results["ratio"] = results["wangge"]["requests_per_s"] / results["minimal"]["requests_per_s"]
    results["ratio_per_round"] = [round(r["ratio"], 3) for r in rounds]
    if args.compare is not None:
        results["compare"] = str(args.compare)
        results["ratio_earlier_per_round"] = [round(r["ratio_earlier"], 3) for r in rounds]
    print(f"incidents created during the runs: {after - before} (duplicate links {dups})")
    for name in names:
        r = results[name]
        print(f"{name:8} mean {r['requests_per_s']:8.1f} req/s  median p50 {r['p50_ms_median']:.1f} ms  "
              f"worst p99 {r['p99_ms_worst']:.1f} ms  errors {r['errors']}")
    results["machine"]["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    print(f"RATIO wangge / minimal = {results['ratio']:.2f} (mean of rounds; per round "
          f"{results['ratio_per_round']}; goal >= 0.5 on every round, errors 0); load average after "
          f"{results['machine']['loadavg_after']}")
    if args.compare is not None:
        print(f"earlier ({args.compare}) / minimal per round {results['ratio_earlier_per_round']}")
    write_results(RESULTS, results)


def _mode(name: str) -> str:
    """The wrk script's mode for an app: the minimal app's, or Wangge's (this checkout or the earlier one)."""
    return "minimal" if name == "minimal" else "wangge"


if __name__ == "__main__":
    main()
