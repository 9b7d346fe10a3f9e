"""The incident map page: every incident the viewer may see under the page's filters (open ones by
default) as vector tiles (maps/static/incidents.js): counted blocks at low zoom, points coloured by
category with overdue ones ringed red from the layer's point zoom on; grid outlines by view."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gis import tiles
from gis.incidents.categories import CATEGORY_NAMES_ZH, DISPUTE_NAMES_ZH, Category
from gis.incidents.loop import STATE_NAMES_ZH
from maps import labels
from maps.points import GROUP_OUTLINE_ZOOM, outline_styles

# Red is kept for the overdue ring, so no category is filled red.
CATEGORY_COLOURS: dict[str, str] = {
    Category.DISPUTE: "#7b3294",
    Category.SAFETY_HAZARD: "#e66101",
    Category.ENVIRONMENT: "#1b9e77",
    Category.LIVELIHOOD: "#2c7bb6",
    Category.PUBLIC_ORDER: "#4d4d4d",
    Category.DISASTER: "#00a6ca",
}
OTHER = "other"
OTHER_COLOUR = "#9e9e9e"
OVERDUE_SUFFIX = ":overdue"
OVERDUE_RING = "#e31a1c"

_CATEGORY_KEYS = (*CATEGORY_COLOURS, OTHER)

# This page's own Chinese (the shared labels are in maps/labels.py).
LOADING = "正在读取…"
AGGREGATE_TITLE = "此处 {count} 件：点击放大"
AGGREGATE_LEGEND = "事项数（放大后显示单个事项）"
ZOOM_FOR_POINTS = "放大到第 {zoom} 级可查看单个事项"


def _style(colour: str, overdue: bool) -> dict[str, Any]:
    if overdue:
        return {"radius": 6.5, "color": OVERDUE_RING, "weight": 2.5, "fillColor": colour,
                "fillOpacity": 0.95}
    # A thin white edge keeps neighbouring markers apart where they crowd.
    return {"radius": 5, "color": "#ffffff", "weight": 1, "fillColor": colour, "fillOpacity": 0.9}


MARKER_STYLES: dict[str, dict[str, Any]] = {
    key + suffix: _style(CATEGORY_COLOURS.get(key, OTHER_COLOUR), bool(suffix))
    for suffix in ("", OVERDUE_SUFFIX)
    for key in _CATEGORY_KEYS
}

# The Chinese names by code as the records carry it (a plain string, possibly one we do not know).
_CATEGORY_NAMES: dict[str, str] = {c.value: name for c, name in CATEGORY_NAMES_ZH.items()}
_DISPUTE_NAMES: dict[str, str] = {k.value: name for k, name in DISPUTE_NAMES_ZH.items()}


POINT_MINZOOM = tiles.LAYERS["incidents"].point_minzoom or 0


def page_config(
    *,
    query_code: str | None,
    reason: str | None,
    filters: Mapping[str, Any],
    limit: int,
    reporter_masked: bool,
) -> dict[str, Any]:
    """What maps/static/incidents.js reads: where the data is, the filters asked with, how markers
    look and the page's Chinese. `filters` are the page's query (state: a state, 'all' or None for
    the open ones; category; since/until as aware datetimes; overdue)."""
    overdue = filters.get("overdue")
    return {
        "tiles": {"url": "/tiles/incidents/{z}/{x}/{y}.pbf", "maxzoom": tiles.LAYERS["incidents"].maxzoom,
                  "point_minzoom": POINT_MINZOOM},
        "detail_api_url": "/incidents/{id}",
        "grids_url": "/grids",
        # The incident's own page (detail, history, the loop actions the viewer may take).
        "detail_url": "/pages/incidents/{id}",
        "query": {"grid_code": query_code, "reason": reason},
        "filters": {
            "state": filters.get("state") or "",
            "category": filters.get("category") or "",
            "since": filters["since"].isoformat() if filters.get("since") else "",
            "until": filters["until"].isoformat() if filters.get("until") else "",
            "overdue": "" if overdue is None else ("true" if overdue else "false"),
        },
        "limit": limit,  # grid outlines per answer
        "reporter_masked": reporter_masked,
        "styles": MARKER_STYLES,
        "other": OTHER,
        "overdue_suffix": OVERDUE_SUFFIX,
        "category_order": list(_CATEGORY_KEYS),
        "categories": [[c.value, name] for c, name in CATEGORY_NAMES_ZH.items()],
        "states": [[code, name] for code, name in STATE_NAMES_ZH.items()],
        "zh": {"categories": _CATEGORY_NAMES, "kinds": _DISPUTE_NAMES, "states": dict(STATE_NAMES_ZH)},
        "level_names": {str(k): v for k, v in labels.ESCALATION_LEVEL_NAMES.items()},
        "fields": [list(f) for f in labels.INCIDENT_POPUP_FIELDS],
        "outline_styles": outline_styles(),
        "group_outline_zoom": GROUP_OUTLINE_ZOOM,
        "text": {
            "legend_title": labels.LEGEND_TITLE,
            "blank": labels.UNKNOWN,
            "overdue": labels.INCIDENT_OVERDUE,
            "on_time": labels.INCIDENT_ON_TIME,
            "category_join": labels.INCIDENT_CATEGORY_JOIN,
            "other_category": labels.INCIDENT_OTHER_CATEGORY,
            "overdue_legend": labels.INCIDENT_OVERDUE_LEGEND,
            "outline": labels.GRID_OUTLINE_LAYER,
            "count": labels.INCIDENTS_IN_VIEW,
            "none": labels.INCIDENTS_NONE,
            "loading": LOADING,
            "aggregate_title": AGGREGATE_TITLE,
            "aggregate_legend": AGGREGATE_LEGEND,
            "zoom_for_points": ZOOM_FOR_POINTS.format(zoom=POINT_MINZOOM),
            "masked": labels.PERSONAL_MASKED_NOTE,
            "masked_hint": labels.INCIDENT_REPORTER_MASKED_HINT,
            "open_detail": labels.INCIDENT_OPEN_DETAIL,
            "filter_title": labels.INCIDENT_FILTER_TITLE,
            "filter_prefix": labels.INCIDENT_FILTER_PREFIX,
            "filter_join": labels.INCIDENT_FILTER_JOIN,
            "filter_open": labels.INCIDENT_FILTER_OPEN,
            "filter_all_states": labels.INCIDENT_FILTER_ALL_STATES,
            "filter_state": labels.INCIDENT_FILTER_STATE,
            "filter_category": labels.INCIDENT_FILTER_CATEGORY,
            "filter_since": labels.INCIDENT_FILTER_SINCE,
            "filter_until": labels.INCIDENT_FILTER_UNTIL,
            "filter_overdue_true": labels.INCIDENT_FILTER_OVERDUE[True],
            "filter_overdue_false": labels.INCIDENT_FILTER_OVERDUE[False],
            "filter_open_option": labels.INCIDENT_FILTER_OPEN_OPTION,
            "filter_all_option": labels.INCIDENT_FILTER_ALL_OPTION,
            "all_categories": labels.INCIDENT_FILTER_ALL_CATEGORIES,
            "overdue_any": labels.INCIDENT_FILTER_OVERDUE_OPTIONS[""],
            "overdue_true": labels.INCIDENT_FILTER_OVERDUE_OPTIONS["true"],
            "overdue_false": labels.INCIDENT_FILTER_OVERDUE_OPTIONS["false"],
            "state_label": labels.INCIDENT_FILTER_LABELS["state"],
            "category_label": labels.INCIDENT_FILTER_LABELS["category"],
            "since_label": labels.INCIDENT_FILTER_LABELS["since"],
            "until_label": labels.INCIDENT_FILTER_LABELS["until"],
            "overdue_label": labels.INCIDENT_FILTER_LABELS["overdue"],
        },
    }
