"""The household map page: grid outlines and one marker per household, masked by the caller."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import geopandas as gpd

from maps import labels
from maps.offline import DEFAULT_PREFIX
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

HOUSEHOLDS = PointKind(
    layer_name=labels.HOUSEHOLD_LAYER, popup_fields=labels.HOUSEHOLD_POPUP_FIELDS,
    styles=CLASS_STYLES, synthetic_hint=labels.HOUSEHOLD_SYNTHETIC_HINT,
    global_name="wanggeHouseholds", id_attribute="data-household-no",
)


def vulnerability_class(record: Mapping[str, Any]) -> str:
    """'carry': someone bedridden or disabled; 'assist': elderly or pregnant; else 'other'."""

    def has(key: str) -> bool:
        return (record.get(key) or 0) > 0

    if has("bedridden") or has("disabled"):
        return "carry"
    if has("elderly") or has("pregnant"):
        return "assist"
    return "other"


def _feature(record: Mapping[str, Any]) -> dict[str, Any]:
    grid = grid_label(record.get("grid_name"), record.get("grid_code"))
    return HOUSEHOLDS.feature({**record, "grid": grid}, vulnerability_class(record))


def _legend(*, shown: int, total: int, masked: bool) -> PointLegend:
    markers = [
        legend_marker(key, labels.HOUSEHOLD_CLASSES[key], CLASS_STYLES[key])
        for key in reversed(DRAW_ORDER)
    ]
    count = labels.HOUSEHOLD_COUNT.format(shown=shown) if shown else labels.HOUSEHOLDS_NONE
    cut = labels.HOUSEHOLDS_TRUNCATED.format(shown=shown, total=total) if total > shown else None
    lines = [
        legend_line("wangge-household-count", count),
        *result_notes(cut_text=cut, masked_hint=labels.PERSONAL_MASKED_HINT if masked else None),
    ]
    return PointLegend(markers, lines)


def build_household_map(
    households: list[dict[str, Any]],
    grids: gpd.GeoDataFrame,
    *,
    title: str,
    total: int | None = None,
    asset_prefix: str = DEFAULT_PREFIX,
    synthetic: bool = False,
    tile_url: str | None = None,
    tile_attribution: str | None = None,
) -> str:
    """The household map page as a complete HTML document.

    `households` are records as made by gis.households.list_households: personal fields are shown
    exactly as given, so the caller masks them first; a record whose `personal_fields` is
    "masked" makes the page say so. `grids` (code, level, geometry) are drawn as outlines.
    `total` is how many households matched before a limit cut the list; when it is larger than
    the list, the page says the result was cut. `tile_url` adds an online base map in WGS84
    alignment (never a GCJ-02 one); without it the page requests nothing remote.
    """
    shown = len(households)
    total = shown if total is None else max(int(total), shown)
    features = in_draw_order(
        [_feature(r) for r in households], {k: i for i, k in enumerate(DRAW_ORDER)}
    )
    masked = any(r.get("personal_fields") == "masked" for r in households)
    return build_point_page(
        HOUSEHOLDS,
        features,
        _legend(shown=shown, total=total, masked=masked),
        grids,
        title=title,
        synthetic=synthetic,
        asset_prefix=asset_prefix,
        tile_url=tile_url,
        tile_attribution=tile_attribution,
    )
