"""The hot-spot map page: units coloured hot to cold by Gi* confidence, outliers framed, each popup
in plain words (the statistics one click away), a unit hot only through its neighbours shown as "in a
hot area", the incidents behind a unit on request, an optional density surface, a time-window form.
The page loads its units from /hotspots/map (maps/static/hotspots.js)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pyproj import Transformer
from shapely.geometry import mapping

from gis.hotspots.density import kernel_density
from gis.incidents.categories import CATEGORY_NAMES_ZH, DISPUTE_NAMES_ZH, Category
from gis.incidents.loop import STATE_NAMES_ZH
from maps import labels
from maps.grid_map import display_geometries

# Diverging hot/cold colours as in the standard hot-spot maps (red hot, blue cold, pale neutral).
BIN_COLOURS: dict[int, str] = {
    3: "#d62f27",
    2: "#ed7551",
    1: "#fab984",
    0: "#f2f0e6",
    -1: "#c0ccbe",
    -2: "#849eba",
    -3: "#4575b5",
}
OUTLIER_EDGE = "#111111"
ISLAND_FILL = "#bdbdbd"
MAX_INCIDENTS_IN_POPUP = 30
DENSITY_SHAPE = (200, 200)
# Density colours, light to dark (a sequential ramp distinct from the hot/cold bins).
DENSITY_RAMP = np.array(
    [[255, 247, 188], [254, 196, 79], [236, 112, 20], [153, 52, 4]], dtype=float
)


HOT_AREA_FILL = "#fde0d2"


def unit_status(record: Mapping[str, Any]) -> str:
    """What a unit is, in the page's words, by its confidence bin (as the map colours it): 'hot' (a hot
    spot with incidents of its own), 'hot_area' (hot only through its neighbours: none of its own),
    'cold', 'island' (no neighbour, no statistic) or 'neutral'."""
    if record.get("island"):
        return "island"
    bin_ = int(record.get("bin") or 0)
    if bin_ == 0:
        return "neutral"
    if bin_ < 0:
        return "cold"
    # Gi* counts the unit with its neighbours: a unit with nothing of its own can test "hot" only
    # because it sits among hot ones; calling it a hot spot would send people to the wrong place.
    return "hot" if int(record.get("incidents") or 0) > 0 else "hot_area"


def unit_style(props: Mapping[str, Any]) -> dict[str, Any]:
    outlier = bool(props.get("outlier"))
    status = unit_status(props)
    bin_ = int(props.get("bin") or 0)
    if status == "hot_area":
        # Framed in its bin's colour, filled pale and dashed: in the hot area, not a hot spot.
        return {"fillColor": HOT_AREA_FILL, "fillOpacity": 0.6, "color": BIN_COLOURS.get(bin_, BIN_COLOURS[1]),
                "weight": 2, "opacity": 0.95, "dashArray": "4 3"}
    fill = ISLAND_FILL if status == "island" else BIN_COLOURS.get(bin_, BIN_COLOURS[0])
    # Units that are not significant stay light, so the density layer and base map show through.
    neutral = status != "island" and bin_ == 0
    return {
        "fillColor": fill,
        "fillOpacity": 0.3 if neutral else 0.75,
        "color": OUTLIER_EDGE if outlier else "#6b6b6b",
        "weight": 3 if outlier else 0.6,
        "opacity": 0.9,
    }


# Emerging categories: warm for hot, cool for cold; intensifying/persistent strongest, a swing
# between hot and cold in violet/green; units without a pattern are left unfilled.
EMERGING_COLOURS: dict[str, str] = {
    "intensifying_hot": "#b30000",
    "persistent_hot": "#e34a33",
    "consecutive_hot": "#fc8d59",
    "new_hot": "#fdcc8a",
    "sporadic_hot": "#fee8c8",
    "diminishing_hot": "#d7b5d8",
    "oscillating_hot": "#c51b8a",
    "historical_hot": "#8c6bb1",
    "intensifying_cold": "#08519c",
    "persistent_cold": "#3182bd",
    "consecutive_cold": "#6baed6",
    "new_cold": "#bdd7e7",
    "sporadic_cold": "#eff3ff",
    "diminishing_cold": "#a1d99b",
    "oscillating_cold": "#31a354",
    "historical_cold": "#636363",
}


def emerging_style(props: Mapping[str, Any]) -> dict[str, Any]:
    colour = EMERGING_COLOURS.get(props.get("emerging") or "")
    return {
        "fillColor": colour or "#ffffff",
        "fillOpacity": 0.8 if colour else 0.0,
        "color": "#6b6b6b",
        "weight": 0.6,
        "opacity": 0.9,
    }


def _fmt(value: Any, digits: int = 2) -> Any:
    if value is None:
        return None
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 10**-digits or value == 0 else f"{value:.1e}"
    return value


def _popup_values(record: Mapping[str, Any], unit_text: str) -> list[Any]:
    bin_text = (
        labels.HOTSPOT_ISLAND
        if record.get("island")
        else labels.HOTSPOT_BINS.get(int(record.get("bin") or 0))
    )
    return [
        unit_text,
        record.get("incidents"),
        _fmt(record.get("value")),
        _fmt(record.get("expected"), 1),
        _fmt(record.get("gi_z")),
        _fmt(record.get("q_value"), 3),
        bin_text,
        labels.HOTSPOT_OUTLIERS.get(record.get("outlier") or ""),
        labels.HOTSPOT_EMERGING.get(record.get("emerging") or ""),
    ]


def period_text(since_month: str | None, until_month: str | None) -> str:
    """The analysis' time window in words: 在 2024-01 至 2024-06 期间, 自 … 以来, 在全部记录中."""
    if since_month and until_month:
        return labels.HOTSPOT_PERIOD_BOTH.format(since=since_month, until=until_month)
    if since_month:
        return labels.HOTSPOT_PERIOD_SINCE.format(since=since_month)
    if until_month:
        return labels.HOTSPOT_PERIOD_UNTIL.format(until=until_month)
    return labels.HOTSPOT_PERIOD_ALL


def unit_headline(record: Mapping[str, Any], what: str) -> str:
    """The popup's first line: what this unit is (热点, 位于热点区域, …)."""
    return labels.HOTSPOT_STATUS[unit_status(record)].format(what=what)


def unit_story(record: Mapping[str, Any], *, where: str, what: str, period: str, rate: bool) -> list[str]:
    """The popup in plain words: what the unit is, where, how many, and how sure; no statistic named."""
    status = unit_status(record)
    count = int(record.get("incidents") or 0)
    template = {
        "hot": labels.HOTSPOT_STORY_HOT,
        "hot_area": labels.HOTSPOT_STORY_HOT_AREA,
        "cold": labels.HOTSPOT_STORY_COLD,
        "island": labels.HOTSPOT_STORY_ISLAND,
        "neutral": labels.HOTSPOT_STORY_NEUTRAL,
    }[status]
    lines = [template.format(where=where, period=period, what=what, count=count)
             + (labels.HOTSPOT_STORY_RATE if rate and status in ("hot", "cold") else "")]
    bin_ = abs(int(record.get("bin") or 0))
    if status in ("hot", "hot_area", "cold") and bin_ in labels.HOTSPOT_SURE:
        lines.append(labels.HOTSPOT_STORY_SURE.format(sure=labels.HOTSPOT_SURE[bin_]))
    outlier = labels.HOTSPOT_STORY_OUTLIER.get(record.get("outlier") or "")
    if outlier:
        lines.append(outlier)
    trend = record.get("emerging")
    if trend and trend != "no_pattern" and trend in labels.HOTSPOT_EMERGING:
        lines.append(labels.HOTSPOT_STORY_TREND.format(trend=labels.HOTSPOT_EMERGING[trend]))
    return lines


def unit_stats(record: Mapping[str, Any], unit_text: str) -> list[list[Any]]:
    """The statistics behind the words, as (label, value) rows for the popup's 统计详情."""
    return [[label, value] for (_, label), value in
            zip(labels.HOTSPOT_POPUP_FIELDS, _popup_values(record, unit_text), strict=True)]


def page_features(
    records: Sequence[Mapping[str, Any]],
    geometries: Sequence[Any],
    *,
    names: Mapping[str, str],
    what: str,
    period: str,
    rate: bool,
) -> list[dict[str, Any]]:
    """The units as the page draws them: display geometry, style per colouring, headline, story, stats."""
    shown: Any = display_geometries(list(geometries)) if len(records) else []
    features = []
    for r, geom in zip(records, shown, strict=True):
        uid = str(r["unit_id"])
        name = names.get(uid)
        unit_text = f"{name}（{uid}）" if name else uid
        features.append({
            "type": "Feature",
            "id": uid,
            "geometry": mapping(geom),
            "properties": {
                "name": name,
                "incidents": int(r.get("incidents") or 0),
                "bin": int(r.get("bin") or 0),
                "significant": bool(r.get("significant")),
                "outlier": r.get("outlier") or "",
                "island": bool(r.get("island")),
                "emerging": r.get("emerging"),
                "status": unit_status(r),
                "headline": unit_headline(r, what),
                "story": unit_story(r, where=name or labels.HOTSPOT_THIS_UNIT, what=what, period=period,
                                    rate=rate),
                "stats": unit_stats(r, unit_text),
                "style": unit_style(r),
                "emerging_style": emerging_style(r),
            },
        })
    return features


def refusal_lines(problems: Sequence[Any]) -> list[str]:
    """Why an analysis was refused (its guard rails' problems), in Chinese, with what to do."""
    lines = []
    for p in problems:
        template = labels.HOTSPOT_REFUSALS.get(p.type)
        try:
            line = template.format(**(p.ctx or {})) if template else None
        except KeyError:   # a problem of that kind without its numbers
            line = labels.HOTSPOT_REFUSALS_PLAIN.get(p.type)
        lines.append(line or labels.HOTSPOT_REFUSAL_OTHER.format(reason=p.msg))
    return lines


UNIT_OPTIONS: list[tuple[str, str]] = [
    ("grid4", labels.HOTSPOT_UNIT_LEVEL[4]),
    ("grid3", labels.HOTSPOT_UNIT_LEVEL[3]),
    ("hex250", labels.HOTSPOT_UNIT_HEX.format(size=250)),
    ("hex500", labels.HOTSPOT_UNIT_HEX.format(size=500)),
    ("hex1000", labels.HOTSPOT_UNIT_HEX.format(size=1000)),
]


def density_overlay(
    lonlat: np.ndarray,
    bounds: tuple[float, float, float, float],
    shape: tuple[int, int] = DENSITY_SHAPE,
) -> tuple[str, list[list[float]]] | None:
    """A PNG (data URI) of the kernel density of `lonlat` over `bounds` (lon/lat), and its corners.

    Computed in Web Mercator, the projection Leaflet stretches an image overlay in, so the surface
    sits exactly under the units; the bandwidth rule is gis.hotspots.density's (Scott's rule),
    which does not depend on the projection's scale."""
    from PIL import Image

    if len(lonlat) < 2:
        return None
    fwd = Transformer.from_crs(4326, 3857, always_xy=True)
    xy = np.column_stack(fwd.transform(lonlat[:, 0], lonlat[:, 1]))
    x0, y0 = fwd.transform(bounds[0], bounds[1])
    x1, y1 = fwd.transform(bounds[2], bounds[3])
    if np.linalg.matrix_rank(np.cov(xy.T)) < 2:
        return None
    surface = kernel_density(xy, (x0, y0, x1, y1), shape)
    v = surface.values / surface.values.max() if surface.values.max() > 0 else surface.values
    pos = np.clip(v, 0, 1) * (len(DENSITY_RAMP) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(DENSITY_RAMP) - 2)
    t = (pos - lo)[..., None]
    rgb = DENSITY_RAMP[lo] * (1 - t) + DENSITY_RAMP[lo + 1] * t
    alpha = np.where(v < 0.03, 0, 60 + 170 * np.sqrt(v))
    rgba = np.dstack([rgb, alpha]).astype(np.uint8)[::-1]  # row 0 of the image is north
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG", optimize=True)
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return uri, [[bounds[1], bounds[0]], [bounds[3], bounds[2]]]


def page_config(form: Mapping[str, Any], drill_down: Mapping[str, Any]) -> dict[str, Any]:
    """What maps/static/hotspots.js reads: the form's values (the page's query), where the units and
    a unit's incidents are, the legend's colours and the page's Chinese."""
    return {
        "data_url": "/hotspots/map",
        "drill_url": "/hotspots/units/{id}/incidents",
        "drill_down": dict(drill_down),
        "max_listed": MAX_INCIDENTS_IN_POPUP,
        "form": dict(form),
        "unit_options": [list(o) for o in UNIT_OPTIONS],
        "category_options": [[c.value, CATEGORY_NAMES_ZH[c]] for c in Category]
        + [["all", labels.HOTSPOT_FORM_ALL_CATEGORIES]],
        "bins": [{"key": b, "label": labels.HOTSPOT_BINS[b], "fill": BIN_COLOURS[b]} for b in (3, 2, 1, 0, -1, -2, -3)],
        "hot_area": unit_style({"bin": 1, "incidents": 0}),
        "island_fill": ISLAND_FILL,
        "emerging": [{"key": c, "label": labels.HOTSPOT_EMERGING[c], "fill": colour}
                     for c, colour in EMERGING_COLOURS.items()]
        + [{"key": "no_pattern", "label": labels.HOTSPOT_EMERGING["no_pattern"], "fill": "#ffffff"}],
        "zh": {
            "categories": {c.value: n for c, n in CATEGORY_NAMES_ZH.items()},
            "kinds": {k.value: n for k, n in DISPUTE_NAMES_ZH.items()},
            "states": dict(STATE_NAMES_ZH),
        },
        "text": {
            "legend_title": labels.LEGEND_TITLE,
            "form_title": labels.HOTSPOT_FORM_TITLE,
            "since": labels.HOTSPOT_FORM_SINCE,
            "until": labels.HOTSPOT_FORM_UNTIL,
            "unit": labels.HOTSPOT_FORM_UNIT,
            "category": labels.HOTSPOT_FORM_CATEGORY,
            "submit": labels.HOTSPOT_FORM_SUBMIT,
            "colour_by": labels.HOTSPOT_COLOUR_BY,
            "colour_bins": labels.HOTSPOT_COLOUR_BINS,
            "colour_emerging": labels.HOTSPOT_COLOUR_EMERGING,
            "refused": labels.HOTSPOT_REFUSED,
            "hot_area": labels.HOTSPOT_LEGEND_HOT_AREA,
            "outlier": labels.HOTSPOT_OUTLIER_LEGEND,
            "island": labels.HOTSPOT_ISLAND,
            "units_layer": labels.HOTSPOT_LAYER,
            "density_layer": labels.HOTSPOT_DENSITY_LAYER,
            "density_note": labels.HOTSPOT_DENSITY_NOTE,
            "details": labels.HOTSPOT_DETAILS,
            "show_incidents": labels.HOTSPOT_SHOW_INCIDENTS,
            "incidents_title": labels.HOTSPOT_POPUP_INCIDENTS,
            "more": labels.HOTSPOT_POPUP_MORE,
            "blank": labels.UNKNOWN,
        },
    }
