"""The command center's map page (/maps/command): a few kilobytes of page, every layer by URL.

The page embeds no feature: grids and incidents come as vector tiles (/tiles/...), the numbers of
the view from /incidents/summary, hot spots, flood risk, shelters and the active emergency as
GeoJSON when their layer is switched on, new incidents from the live feed. What the page carries is
its configuration: the town's extent, the URLs and the Chinese labels (maps/static/command.js)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from maps.offline import ASSET_PATHS
from maps.page import finish_page, new_page_map
from maps.shell import STATIC_PREFIX, Shell

TITLE = "指挥中心"
SCRIPT = f"{STATIC_PREFIX}/command.js"
STYLE = f"{STATIC_PREFIX}/command.css"
LIVE_SCRIPT = f"{STATIC_PREFIX}/live.js"

# Loop states in the order of the loop, with the colour each is drawn in (closed: grey).
STATE_COLOURS = {
    "visit": "#e6550d", "report": "#fd8d3c", "study": "#756bb1", "handle": "#3182bd", "follow_up": "#31a354",
    "closed": "#969696",
}
LEVEL_STYLES = {
    1: {"color": "#252525", "weight": 3.0}, 2: {"color": "#6a51a3", "weight": 2.5},
    3: {"color": "#2171b5", "weight": 1.8}, 4: {"color": "#74a9cf", "weight": 0.8},
}
# The time windows of the filter: label -> days back (None: all).
TIME_WINDOWS = [("全部时间", None), ("今天", 0), ("近7天", 7), ("近30天", 30), ("近一年", 365)]


def build_command_map(
    shell: Shell,
    *,
    town_bbox: Sequence[float] | None,
    urls: Mapping[str, str | None],
    can: Mapping[str, bool],
    asset_prefix: str,
    tile_url: str | None = None,
    tile_attribution: str | None = None,
    live_script: bool = False,
) -> str:
    """The page's HTML: the map in the shell, the configuration, command.js/css; no data."""
    if town_bbox:
        x0, y0, x1, y1 = town_bbox
        location, zoom = [(y0 + y1) / 2, (x0 + x1) / 2], 12
    else:
        location, zoom = [35.0, 105.0], 4
    m = new_page_map(
        TITLE, badge_hint="", synthetic=shell.synthetic, location=location, zoom_start=zoom, min_zoom=8,
        panes=[("grids", 410, False), ("areas", 420, True), ("incidents", 450, True), ("live", 460, True)],
        tile_url=tile_url, tile_attribution=tile_attribution, shell=shell,
    )
    config: dict[str, Any] = {
        "town_bbox": list(town_bbox) if town_bbox else None,
        "urls": dict(urls),
        "can": dict(can),
        "state_colours": STATE_COLOURS,
        "level_styles": {str(k): v for k, v in LEVEL_STYLES.items()},
        "time_windows": [{"label": label, "days": days} for label, days in TIME_WINDOWS],
    }
    # Leaflet.VectorGrid from the local npm install, as on the other tile pages; before the page's script.
    vector_grid = f"{asset_prefix.rstrip('/')}/{ASSET_PATHS['vectorGrid']}"
    scripts = [vector_grid, LIVE_SCRIPT, SCRIPT] if live_script else [vector_grid, SCRIPT]
    return finish_page(m, "command center", exposed={}, asset_prefix=asset_prefix, config=config,
                       scripts=scripts, styles=[STYLE])
