"""What finding a request's route costs in this FastAPI, by where the route stands (issues 12 and 13).

    .venv/bin/python bench/route_match.py

FastAPI walks the app's routes in order, and each included router's routes inside it, until one matches the
method and path. This times that walk alone (the top-level `route.matches(scope)` calls, as FastAPI's router
makes them), median of 300, for the hot routes and a few others; no database, no request sent.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PATHS = [("POST", "/incidents"), ("GET", "/incidents"), ("GET", "/tiles/incidents/14/13380/6493.pbf"),
         ("GET", "/grids"), ("GET", "/flood/households"), ("GET", "/healthz"), ("GET", "/no-such-page")]


def main() -> None:
    from starlette.routing import Match

    from api.main import create_app

    app = create_app()

    def walk(scope: dict[str, Any]) -> int | None:
        for position, route in enumerate(app.router.routes):
            if route.matches(scope)[0] == Match.FULL:
                return position
        return None

    print(f"{len(app.router.routes)} top-level routes (each included router is one)")
    for method, path in PATHS:
        times = []
        for _ in range(300):
            scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "root_path": "",
                     "query_string": b"", "headers": [], "app": app}
            t0 = time.perf_counter()
            position = walk(scope)
            times.append(time.perf_counter() - t0)
        print(f"{method:5} {path:38} at {position!s:>4}: {statistics.median(times) * 1e6:7.1f} µs")


if __name__ == "__main__":
    main()
