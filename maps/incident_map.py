"""The incident map page: grid matters coloured by category, overdue ones ringed red on top."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import geopandas as gpd

from gis.incidents.categories import CATEGORY_NAMES_ZH, DISPUTE_NAMES_ZH, Category
from gis.incidents.loop import STATE_NAMES_ZH
from maps import labels
from maps.points import (
    PointKind,
    PointLegend,
    build_point_page,
    grid_label,
    in_draw_order,
    legend_line,
    legend_marker,
    result_notes,
)

# Times are shown as the town reads its clock; China has kept UTC+8 without summer time since 1991.
LOCAL_TIME = dt.timezone(dt.timedelta(hours=8))

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
# Overdue incidents are drawn on top of the rest; no category hides another.
DRAW_RANK = {key: int(key.endswith(OVERDUE_SUFFIX)) for key in MARKER_STYLES}

INCIDENTS = PointKind(
    layer_name=labels.INCIDENT_LAYER, popup_fields=labels.INCIDENT_POPUP_FIELDS,
    styles=MARKER_STYLES, synthetic_hint=labels.INCIDENT_SYNTHETIC_HINT,
    global_name="wanggeIncidents", id_attribute="data-incident-id",
)


def marker_key(record: Mapping[str, Any]) -> str:
    category = record.get("category")
    key = category if category in CATEGORY_COLOURS else OTHER
    return key + (OVERDUE_SUFFIX if record.get("overdue") else "")


def local_time(value: str | dt.datetime | None) -> str | None:
    """'2024-05-01 08:30' in the town's time, from an ISO string or an aware datetime."""
    if value is None or value == "":
        return None
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(LOCAL_TIME).strftime("%Y-%m-%d %H:%M")


# The Chinese names by code as the records carry it (a plain string, possibly one we do not know).
_CATEGORY_NAMES: dict[str, str] = {c.value: name for c, name in CATEGORY_NAMES_ZH.items()}
_DISPUTE_NAMES: dict[str, str] = {k.value: name for k, name in DISPUTE_NAMES_ZH.items()}


def category_text(category: str | None, dispute_kind: str | None) -> str | None:
    name = _CATEGORY_NAMES.get(category, category) if category else None
    kind = _DISPUTE_NAMES.get(dispute_kind, dispute_kind) if dispute_kind else None
    if name and kind:
        return f"{name}{labels.INCIDENT_CATEGORY_JOIN}{kind}"
    return name or kind


def _grid_text(code: str | None, names: Mapping[str, str]) -> str | None:
    return grid_label(names.get(code), code) if code else None


def _urgency_text(record: Mapping[str, Any], names: Mapping[str, str]) -> str | None:
    if record.get("overdue"):
        place = _grid_text(record.get("escalated_to"), names) or labels.UNKNOWN
        return labels.INCIDENT_OVERDUE.format(place=place)
    # A closed incident has no deadline, so "on time" would say nothing about it.
    return labels.INCIDENT_ON_TIME if record.get("deadline") else None


def _feature(record: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    state = record.get("state")
    values = {
        **record,
        "category": category_text(record.get("category"), record.get("dispute_kind")),
        "state": STATE_NAMES_ZH.get(state, state) if state else None,
        "occurred_at": local_time(record.get("occurred_at")),
        "deadline": local_time(record.get("deadline")),
        "urgency": _urgency_text(record, names),
        "grid": _grid_text(record.get("group_code"), names),
    }
    return INCIDENTS.feature(values, marker_key(record))


def filter_text(filters: Mapping[str, Any]) -> str | None:
    """The filters a page was asked with, in Chinese; None when there are none."""
    phrases = []
    category, state = filters.get("category"), filters.get("state")
    if category:
        phrases.append(labels.INCIDENT_FILTER_CATEGORY.format(value=category_text(category, None)))
    if state:
        phrases.append(labels.INCIDENT_FILTER_STATE.format(value=STATE_NAMES_ZH.get(state, state)))
    if filters.get("since"):
        phrases.append(labels.INCIDENT_FILTER_SINCE.format(value=local_time(filters["since"])))
    if filters.get("until"):
        phrases.append(labels.INCIDENT_FILTER_UNTIL.format(value=local_time(filters["until"])))
    if filters.get("overdue") is not None:
        phrases.append(labels.INCIDENT_FILTER_OVERDUE[bool(filters["overdue"])])
    if not phrases:
        return None
    return labels.INCIDENT_FILTER_PREFIX + labels.INCIDENT_FILTER_JOIN.join(phrases)


def _legend(
    features: list[dict[str, Any]], *, total: int, masked: bool, filters: Mapping[str, Any]
) -> PointLegend:
    # Only the categories on the page: a filtered page's legend should not list what it hides.
    present = {f["properties"]["k"] for f in features}
    markers = [
        legend_marker(key, category_text(key, None) or key, MARKER_STYLES[key])
        for key in CATEGORY_COLOURS
        if key in present or key + OVERDUE_SUFFIX in present
    ]
    if OTHER in present or OTHER + OVERDUE_SUFFIX in present:
        markers.append(legend_marker(OTHER, labels.INCIDENT_OTHER_CATEGORY, MARKER_STYLES[OTHER]))
    if any(k.endswith(OVERDUE_SUFFIX) for k in present):
        ring = {**MARKER_STYLES[OTHER + OVERDUE_SUFFIX], "fillColor": "#ffffff"}
        markers.append(legend_marker("overdue", labels.INCIDENT_OVERDUE_LEGEND, ring))
    shown = len(features)
    count = labels.INCIDENT_COUNT.format(total=total) if total else labels.INCIDENTS_NONE
    lines = [legend_line("wangge-incident-count", count)]
    described = filter_text(filters)
    if described:
        lines.append(legend_line("wangge-incident-filters", described))
    cut = labels.INCIDENTS_TRUNCATED.format(shown=shown, total=total) if total > shown else None
    lines += result_notes(cut_text=cut,
                          masked_hint=labels.INCIDENT_REPORTER_MASKED_HINT if masked else None)
    return PointLegend(markers, lines)


def build_incident_map(
    incidents: list[dict[str, Any]],
    grids: gpd.GeoDataFrame,
    *,
    grid_names: Mapping[str, str] | None = None,
    total: int | None = None,
    reporter_masked: bool = False,
    filters: Mapping[str, Any] | None = None,
    **page: Any,
) -> str:
    """The incident map page as a complete HTML document.

    `incidents` are records as made by gis.incidents.service.list_incidents, in its order; the
    reporter fields are shown exactly as given, so the caller masks them first and says so with
    `reporter_masked` (the page then notes it when it shows any incident). `grid_names` (code ->
    name) names the grids in popups. `total` is how many matched before a limit cut the list.
    `filters` (category, state, since, until, overdue) are repeated on the page in Chinese.
    `page` (title, synthetic, asset_prefix, tile_url, tile_attribution) goes to
    maps.points.build_point_page.
    """
    shown = len(incidents)
    total = shown if total is None else max(int(total), shown)
    names = grid_names or {}
    features = in_draw_order([_feature(r, names) for r in incidents], DRAW_RANK)
    legend = _legend(features, total=total, masked=reporter_masked and shown > 0,
                     filters=filters or {})
    return build_point_page(INCIDENTS, features, legend, grids, **page)
