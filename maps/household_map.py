"""The household map page: the households the viewer may see, one marker each, coloured by who needs
help first, loaded for the view (maps/static/households.js) from the household list, which masks
personal fields as the role requires and audits every unmasked read."""

from __future__ import annotations

from typing import Any

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


def page_config(*, query_code: str | None, reason: str | None, limit: int) -> dict[str, Any]:
    """What maps/static/households.js reads: where the data is (the list, for `query_code` or the
    viewer's own rows), how markers look, and the page's Chinese."""
    return {
        "list_url": "/households",
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
            "truncated": labels.HOUSEHOLDS_IN_VIEW_CUT,
            "masked": labels.PERSONAL_MASKED_NOTE,
            "masked_hint": labels.PERSONAL_MASKED_HINT,
        },
    }
