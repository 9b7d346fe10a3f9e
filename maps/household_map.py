"""The household map page: the households the viewer may see as vector tiles (maps/static/households.js):
counted blocks at low zoom, one marker each from the layer's point zoom on, coloured by who needs help
first, personal fields only where the role may see them (the tiles and GET /households/{id} audit every
unmasked read)."""

from __future__ import annotations

from typing import Any

from gis import tiles
from gis.privacy import PERSONAL_FIELDS
from maps import labels
from maps.points import GROUP_OUTLINE_ZOOM, outline_styles

# Marker look per class; the most urgent class is drawn last so it stays on top where points crowd.
CLASS_STYLES: dict[str, dict[str, Any]] = {
    "carry": {"radius": 6, "color": "#7f0000", "weight": 1, "fillColor": "#d7301f",
              "fillOpacity": 0.95},
    "assist": {"radius": 5, "color": "#8c510a", "weight": 1, "fillColor": "#fdae61",
               "fillOpacity": 0.95},
    "other": {"radius": 4, "color": "#1d4e89", "weight": 1, "fillColor": "#6baed6",
              "fillOpacity": 0.85},
}
DRAW_ORDER = ("other", "assist", "carry")
POINT_MINZOOM = tiles.LAYERS["households"].point_minzoom or 0

# This page's own Chinese (the shared labels are in maps/labels.py).
LOADING = "正在读取…"
AGGREGATE_TITLE = "此处 {count} 户：点击放大"
AGGREGATE_LEGEND = "住户数（放大后显示每一户）"
ZOOM_FOR_POINTS = "放大到第 {zoom} 级可查看每一户"


def page_config(*, query_code: str | None, reason: str | None, limit: int) -> dict[str, Any]:
    """What maps/static/households.js reads: where the data is (the tiles; `query_code` frames the
    view, the grid outlines come for it), how markers look, and the page's Chinese."""
    return {
        "tiles": {"url": "/tiles/households/{z}/{x}/{y}.pbf", "maxzoom": tiles.LAYERS["households"].maxzoom,
                  "point_minzoom": POINT_MINZOOM},
        "detail_api_url": "/households/{id}",
        "personal_fields": list(PERSONAL_FIELDS["household"]),
        "grids_url": "/grids",
        "query": {"grid_code": query_code, "reason": reason},
        "limit": limit,
        "styles": CLASS_STYLES,
        "classes": labels.HOUSEHOLD_CLASSES,
        "fields": [list(f) for f in labels.HOUSEHOLD_POPUP_FIELDS],
        "outline_styles": outline_styles(),
        "group_outline_zoom": GROUP_OUTLINE_ZOOM,
        "text": {
            "legend_title": labels.LEGEND_TITLE,
            "blank": labels.UNKNOWN,
            "outline": labels.GRID_OUTLINE_LAYER,
            "count": labels.HOUSEHOLD_COUNT,
            "none": labels.HOUSEHOLDS_NONE,
            "loading": LOADING,
            "aggregate_title": AGGREGATE_TITLE,
            "aggregate_legend": AGGREGATE_LEGEND,
            "zoom_for_points": ZOOM_FOR_POINTS.format(zoom=POINT_MINZOOM),
            "masked": labels.PERSONAL_MASKED_NOTE,
            "masked_hint": labels.PERSONAL_MASKED_HINT,
        },
    }
