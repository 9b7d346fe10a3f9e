"""The command center page (/maps/command) at city scale, measured in headless Chromium.

    .venv/bin/python bench/command_page_bench.py                # ~3-5 min on 2 shared cores
    .venv/bin/python bench/command_page_bench.py --pans 10 --intakes 10

Database `wangge_bench_command` (recreated when it lacks the city): a copy of a benchmark database
that already holds bench/city.py's city (60,611 grids, ~1,000,000 incidents; with 3,000,000
households where the copy has them, e.g. bench/tiles_bench.py's `wangge_bench_tiles`), migrated to
head, plus one command-center account.

What it measures, on the real app served on a local port (uvicorn in a thread) and a fresh browser
context (empty cache) logged in by POST /auth/login:

* first load: every response of opening the page at its default view (the whole town) until the
  network is idle and the numbers are shown — HTML, JS, CSS, vector tiles, GeoJSON, the numbers —
  summed as bytes on the wire (response headers + body as transferred, gzip included) by Chromium's
  own accounting (Playwright `request.sizes()`); goal <= 3 MB;
* requests per pan: the map panned by half its width, `--pans` times, at the default zoom and at
  z14 (single incidents); the requests each pan makes (tiles + the numbers), median and max;
* intake to page: an incident POSTed by another client (httpx, bearer token) inside the view, timed
  from just before the POST until the open page has drawn its marker (window.commandLive), `--intakes`
  times; needs the live feed (api/events.py) in this checkout.

Results are printed and written to var/bench/command_page_results.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from city import bench_url, table_counts, write_results  # noqa: E402

DB = "wangge_bench_command"
# Databases that already hold the city (grids and incidents; households where present), best first.
SOURCES = ("wangge_bench_tiles", "wangge_bench_list", "wangge_bench_run")
RESULTS = ROOT / "var" / "bench" / "command_page_results.json"
USER, PASSWORD = "bench_command", "bench-command-password-1"
GOAL_BYTES = 3 * 1024 * 1024


def _counts(url: Any) -> tuple[int, ...] | None:
    return table_counts(url, "grid", "incident", "household")


def prepare() -> Any:
    """The benchmark database: a copy of the best source, migrated, with the account."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from gis.auth import accounts
    from gis.auth.roles import Role
    from gis.db import transaction, upgrade

    url = bench_url(DB)
    counts = _counts(url)
    if counts is None or counts[1] < 900_000:
        ranked = [(s, _counts(bench_url(s))) for s in SOURCES]
        usable = [(s, c) for s, c in ranked if c is not None and c[1] >= 900_000]
        if not usable:
            raise SystemExit("no city database: run bench/tiles_bench.py or bench/incident_list_bench.py first")
        source = max(usable, key=lambda sc: (sc[1][2], sc[1][1]))[0]
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)'))
            print(f"copying {source} -> {DB}", flush=True)
            t = time.perf_counter()
            c.execute(text(f'CREATE DATABASE "{DB}" TEMPLATE "{source}"'))
            print(f"copied in {time.perf_counter() - t:.0f} s", flush=True)
        admin.dispose()
    engine = create_engine(url, poolclass=NullPool)
    upgrade(engine)
    with transaction(engine) as session:
        exists = session.execute(text("SELECT 1 FROM app_user WHERE username = :u"), {"u": USER}).first()
        if exists is None:
            accounts.create_user(session, USER, PASSWORD, Role.COMMAND_CENTER)
    with engine.connect() as c:
        c.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    engine.dispose()
    print(f"{DB}: grids, incidents, households = {_counts(url)}", flush=True)
    return url


def admin_token(url: Any) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from gis.auth import accounts
    from gis.auth.roles import Role
    from gis.db import transaction

    engine = create_engine(url, poolclass=NullPool)
    with transaction(engine) as session:
        user = session.execute(text("SELECT id FROM app_user WHERE username = 'bench_intake'")).scalar()
        if user is None:
            user = accounts.create_user(session, "bench_intake", PASSWORD, Role.ADMIN).id
        secret, _ = accounts.create_token(session, user, "command page bench")
    engine.dispose()
    return str(secret)


class Traffic:
    """Every finished response of a page: URL, status and bytes on the wire (headers + transferred body);
    and how many requests are still in flight."""

    def __init__(self, page: Any):
        self.items: list[tuple[str, int, int]] = []
        self.in_flight = 0
        page.on("request", self._started)
        page.on("requestfinished", self._done)
        page.on("requestfailed", self._failed)

    @staticmethod
    def streaming(request: Any) -> bool:
        # The live feed's event stream stays open as long as the page: not a request to wait for.
        return "/events/" in request.url

    def _started(self, request: Any) -> None:
        if not self.streaming(request):
            self.in_flight += 1

    def _done(self, request: Any) -> None:
        if self.streaming(request):
            return
        self.in_flight -= 1
        sizes = request.sizes()
        response = request.response()
        status = response.status if response is not None else 0
        self.items.append((request.url, status, int(sizes["responseHeadersSize"]) + int(sizes["responseBodySize"])))

    def _failed(self, request: Any) -> None:
        if self.streaming(request):
            return
        self.in_flight -= 1
        self.items.append((request.url, 0, 0))

    def take(self) -> list[tuple[str, int, int]]:
        out, self.items = self.items, []
        return out

    def settle(self, page: Any, quiet_ms: int = 700, timeout_s: float = 180.0) -> None:
        """Wait until no request has been in flight for `quiet_ms` (the numbers are debounced 250 ms)."""
        deadline = time.monotonic() + timeout_s
        quiet_since = None
        while time.monotonic() < deadline:
            page.wait_for_timeout(50)
            if self.in_flight > 0:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif (time.monotonic() - quiet_since) * 1000 >= quiet_ms:
                return
        raise TimeoutError("the page did not settle")


def kind_of(url: str) -> str:
    path = url.split("://", 1)[-1].split("/", 1)[-1]
    for prefix, kind in (("tiles/", "tiles"), ("static/", "js/css"), ("incidents/summary", "numbers"),
                         ("maps/command", "html")):
        if path.startswith(prefix):
            return kind
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pans", type=int, default=6)
    ap.add_argument("--intakes", type=int, default=6)
    args = ap.parse_args()

    import httpx

    from api.main import create_app
    from gis.settings import Settings
    from tests.browser import launch_chromium, serve_app_in_thread

    url = prepare()
    token = admin_token(url)
    settings = Settings(DATABASE_URL=url.render_as_string(hide_password=False))
    results: dict[str, Any] = {"database": DB, "counts": dict(zip(("grids", "incidents", "households"),
                                                                   _counts(url) or (0, 0, 0), strict=True)),
                               "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    with serve_app_in_thread(create_app(settings)) as base, launch_chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
        login = context.request.post(base + "/auth/login", data={"username": USER, "password": PASSWORD})
        assert login.ok, login.text()
        page = context.new_page()
        traffic = Traffic(page)
        t = time.perf_counter()
        page.goto(base + "/maps/command")
        page.wait_for_function("document.documentElement.dataset.commandReady === '1'", timeout=120_000)
        traffic.settle(page)
        load_s = time.perf_counter() - t
        first = traffic.take()
        by_kind: dict[str, list[int]] = {}
        for u, _, n in first:
            by_kind.setdefault(kind_of(u), []).append(n)
        results["first_load"] = {
            "bytes": sum(n for _, _, n in first), "requests": len(first), "seconds": round(load_s, 2),
            "refused": [u for u, status, _ in first if status >= 400 or status == 0],
            "zoom": page.evaluate("window.wanggeMap.getZoom()"), "goal_bytes": GOAL_BYTES,
            "by_kind": {k: {"requests": len(v), "bytes": sum(v)} for k, v in sorted(by_kind.items())},
            "largest": sorted(([u, n] for u, _, n in first), key=lambda un: -un[1])[:5],
        }
        print(f"first load: {results['first_load']['bytes'] / 1024:.0f} KiB in {len(first)} requests, "
              f"{load_s:.1f} s, zoom {results['first_load']['zoom']}", flush=True)

        pans: dict[str, Any] = {}
        for label, zoom in (("default", None), ("z14", 14)):
            if zoom is not None:
                page.evaluate(f"void window.wanggeMap.setZoom({zoom}, {{animate: false}})")
                traffic.settle(page)
                traffic.take()
            counts, sizes, refused = [], [], 0
            for i in range(args.pans):
                dx = 700 if i % 2 == 0 else -350
                page.evaluate(f"void window.wanggeMap.panBy([{dx}, 0], {{animate: false}})")
                traffic.settle(page)
                done = traffic.take()
                counts.append(len(done))
                sizes.append(sum(n for _, _, n in done))
                refused += sum(1 for _, status, _ in done if status >= 400 or status == 0)
            pans[label] = {"requests_median": statistics.median(counts), "requests_max": max(counts),
                           "bytes_median": statistics.median(sizes), "refused": refused, "runs": counts}
            print(f"pan ({label}): {pans[label]}", flush=True)
        results["pans"] = pans

        # The page's own queries, timed alone (best of 3, through HTTP with a bearer token).
        town = page.evaluate("Wangge.config.town_bbox")
        x0, y0, x1, y1 = town
        small = [x0 + (x1 - x0) * 0.4, y0 + (y1 - y0) * 0.4, x0 + (x1 - x0) * 0.43, y0 + (y1 - y0) * 0.43]
        calls = {
            "summary_town_open": ("/incidents/summary", {"bbox": ",".join(map(str, town))}),
            "summary_town_all": ("/incidents/summary", {"bbox": ",".join(map(str, town)), "open": "false"}),
            "summary_village_view": ("/incidents/summary", {"bbox": ",".join(map(str, small))}),
            "search_code_prefix": ("/search", {"q": "410105101"}),
            "search_name_3_chars": ("/search", {"q": "村001"}),
            "search_name_prefix": ("/search", {"q": "30"}),
        }
        timings = {}
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
            for name, (path, params) in calls.items():
                best = float("inf")
                for _ in range(3):
                    t0 = time.perf_counter()
                    assert client.get(path, params=params).status_code == 200
                    best = min(best, time.perf_counter() - t0)
                timings[name] = round(best * 1000, 1)
        results["queries_ms"] = timings
        print(f"queries (ms): {timings}", flush=True)

        has_live = page.evaluate("!!(Wangge.config.can || {}).live")
        if has_live:
            # Back to the middle of the town (the pans moved the view), at z14 where single markers show.
            centre = [(x0 + x1) / 2, (y0 + y1) / 2]
            page.evaluate(f"void window.wanggeMap.setView([{centre[1]}, {centre[0]}], 14, {{animate: false}})")
            traffic.settle(page)
            delays = []
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
                for i in range(args.intakes):
                    lon, lat = centre[0] + 0.0003 * i, centre[1] + 0.0002 * i
                    t0 = time.perf_counter()
                    r = client.post("/incidents", json={"category": "environment", "description": f"基准 {i}",
                                                        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
                                                        "lon": lon, "lat": lat})
                    assert r.status_code == 201, r.text
                    new_id = r.json()["id"]
                    page.wait_for_function(f"!!(window.commandLive || {{}})[{new_id}]", timeout=30_000, polling=20)
                    delays.append(time.perf_counter() - t0)
                    page.wait_for_timeout(300)
            results["intake_to_page_s"] = {"median": round(statistics.median(delays), 3),
                                           "max": round(max(delays), 3), "runs": [round(d, 3) for d in delays]}
            print(f"intake -> page: {results['intake_to_page_s']}", flush=True)
        else:
            results["intake_to_page_s"] = None
            print("intake -> page: not measured (no live feed in this checkout)", flush=True)
        context.close()
    write_results(RESULTS, results)


if __name__ == "__main__":
    main()
