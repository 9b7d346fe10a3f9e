"""The flood emergency page: a folium map in the page shell, every layer fetched by URL by flood.js.

The page itself carries no town data: the water, households, shelters, assignment lines, roads,
rivers and names come from the /flood/map/* and /flood/households routes for the extent the user
picks, each filtered and masked for the caller there. The config holds only where to look first
and what the viewer may do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import folium
from folium.plugins import Draw

from maps.offline import DEFAULT_PREFIX
from maps.page import finish_page, new_page_map
from maps.shell import STATIC_PREFIX, Shell

TITLE = "防汛应急"
SYNTHETIC_HINT = "本页住户、人员、安置点与淹没范围均为程序生成的示例，不代表真实情况"
# Panes, bottom to top: the water under the lines, households and shelters on top (clickable).
PANES: tuple[tuple[str, int, bool], ...] = (
    ("wanggeWater", 405, False),
    ("wanggeNetwork", 410, False),
    ("wanggeAssignments", 420, False),
    ("wanggeHouseholds", 440, True),
    ("wanggeShelters", 450, True),
    ("wanggeLabels", 460, False),
)
DRAW_OPTIONS = {
    "polyline": False, "rectangle": False, "circle": False, "marker": False, "circlemarker": False,
    "polygon": {"allowIntersection": False, "showArea": False,
                "shapeOptions": {"color": "#08519c", "weight": 2, "fillOpacity": 0.2}},
}


def build_flood_page(
    shell: Shell,
    *,
    town_bbox: Sequence[float] | None,
    can_declare: bool,
    can_draw: bool,
    asset_prefix: str = DEFAULT_PREFIX,
    tile_url: str | None = None,
    tile_attribution: str | None = None,
) -> str:
    """The page as HTML. `town_bbox` (min_lon, min_lat, max_lon, max_lat) frames the first view;
    `can_declare` shows the declare/close buttons, `can_draw` the upload form and the draw tool."""
    if town_bbox is not None:
        x0, y0, x1, y1 = town_bbox
        location: Sequence[float] = ((y0 + y1) / 2, (x0 + x1) / 2)
        zoom = 13
    else:
        location, zoom = (35.0, 105.0), 4
    m = new_page_map(TITLE, badge_hint=SYNTHETIC_HINT, synthetic=shell.synthetic, location=location,
                     zoom_start=zoom, min_zoom=9, panes=PANES, tile_url=tile_url, tile_attribution=tile_attribution,
                     shell=shell)
    drawn = folium.FeatureGroup(name="手绘范围", control=False)
    drawn._id = "drawn"
    m.add_child(drawn)
    exposed: dict[str, Any] = {"wanggeFloodDrawn": drawn}
    if can_draw:
        draw = Draw(position="topleft", draw_options=DRAW_OPTIONS, edit_options={"edit": False, "remove": False},
                    show_geometry_on_click=False, feature_group=drawn)  # type: ignore[no-untyped-call]
        draw._id = "draw"
        m.add_child(draw)
    config = {
        "flood": {
            "town_bbox": list(town_bbox) if town_bbox is not None else None,
            "can_declare": can_declare,
            "can_draw": can_draw,
            "page_size": 20,
            "map_households_limit": 2000,
        }
    }
    return finish_page(m, "flood", exposed=exposed, asset_prefix=asset_prefix, config=config,
                       scripts=[f"{STATIC_PREFIX}/flood.js"], styles=[f"{STATIC_PREFIX}/flood.css"])
