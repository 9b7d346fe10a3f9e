"""The hot-spot map page: units coloured hot to cold by Gi* confidence, outliers framed, the
incidents behind a unit in its popup, an optional density surface, and a form for the time window.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import folium
import numpy as np
from branca.element import MacroElement
from folium.template import Template
from pyproj import Transformer
from shapely.geometry import mapping

from gis.hotspots.density import kernel_density
from gis.incidents.categories import CATEGORY_NAMES_ZH, Category
from maps import labels
from maps.grid_map import display_geometries
from maps.offline import DEFAULT_PREFIX
from maps.page import EMPTY_VIEW, add_layer_control, finish_page, legend_template, new_page_map
from maps.points import PopupLayer, popup_layer_template, script_json

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
UNIT_PANE = ("wangge-hotspot-units", 420)
DENSITY_PANE = ("wangge-hotspot-density", 410)
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


class _UnitLayer(PopupLayer):
    """The units as polygons; popups built from text nodes when opened (names never parsed as HTML)."""

    _template = popup_layer_template(
        own_script="""
            var incidentsTitle = {{ this.incidents_title_json }};
            var moreText = {{ this.more_json }};
            function popupContent(feature) {
                var box = document.createElement('div');
                box.appendChild(popupTable(fields, feature.properties.v, blank, 'data-unit-id', feature.id));
                var list = feature.properties.incidents || [];
                var total = feature.properties.n || 0;
                if (total > 0) {
                    var h = document.createElement('div');
                    h.className = 'wangge-hotspot-incidents-title';
                    h.textContent = incidentsTitle.replace('{count}', total);
                    box.appendChild(h);
                    var ul = document.createElement('ul');
                    ul.className = 'wangge-hotspot-incidents';
                    list.forEach(function (item) {
                        var li = document.createElement('li');
                        li.setAttribute('data-incident-id', item[0]);
                        li.textContent = '#' + item[0] + ' ' + item.slice(1).filter(Boolean).join(' · ');
                        ul.appendChild(li);
                    });
                    box.appendChild(ul);
                    if (total > list.length) {
                        var more = document.createElement('div');
                        more.textContent = moreText.replace('{count}', total - list.length);
                        box.appendChild(more);
                    }
                }
                return box;
            }""",
        layer_options="""
                style: function (feature) { return feature.properties.s; },""",
        popup_max_width=380,
    )

    def __init__(self, features: list[dict[str, Any]]):
        super().__init__(labels.HOTSPOT_LAYER, "WanggeHotspotUnits", features, labels.HOTSPOT_POPUP_FIELDS,
                         UNIT_PANE[0])
        self.incidents_title_json = script_json(labels.HOTSPOT_POPUP_INCIDENTS)
        self.more_json = script_json(labels.HOTSPOT_POPUP_MORE)


class _Legend(MacroElement):
    _template = legend_template(
        """
            {%- for item in this.items %}
            <div class="row-item" data-bin="{{ item.key }}" data-legend-mode="{{ item.mode }}"
                 {%- if item.mode != "bins" %} style="display: none"{% endif %}>
                <svg width="34" height="14" aria-hidden="true">
                    <rect x="1" y="1" width="32" height="12" fill="{{ item.fill }}" fill-opacity="0.8"
                          stroke="{{ item.edge }}" stroke-width="{{ item.weight }}"/>
                </svg>
                <span>{{ item.label|e }}</span>
            </div>
            {%- endfor %}"""
    )

    def __init__(self, items: Sequence[dict[str, Any]], lines: Sequence[dict[str, Any]]):
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "WanggeHotspotLegend"
        self.title = labels.LEGEND_TITLE
        self.items = list(items)
        self.lines = list(lines)


class _Controls(MacroElement):
    """The time-window form: month inputs, unit and category; it reloads the page (GET)."""

    _template = Template(
        """
        {% macro header(this, kwargs) %}
        <style>
            .wangge-hotspot-form {
                position: fixed; top: 56px; left: 56px; z-index: 1000; font-size: 13px;
                background: rgba(255,255,255,0.94); padding: 8px 10px; border-radius: 6px;
                box-shadow: 0 1px 4px rgba(0,0,0,0.3); display: grid; gap: 4px;
                grid-template-columns: auto auto;
            }
            .wangge-hotspot-form button { grid-column: 1 / span 2; }
            .wangge-hotspot-incidents { margin: 4px 0 0 16px; padding: 0; max-height: 180px;
                overflow-y: auto; font-size: 12px; }
            .wangge-hotspot-incidents-title { margin-top: 6px; font-weight: 600; }
            .wangge-hotspot-refused { position: fixed; top: 50%; left: 50%; z-index: 1001;
                transform: translate(-50%, -50%); max-width: 520px; background: #fff; padding: 14px 18px;
                border-radius: 6px; box-shadow: 0 1px 6px rgba(0,0,0,0.35); font-size: 14px; }
            .wangge-hotspot-refused h3 { margin: 0 0 6px; font-size: 16px; color: #b2182b; }
        </style>
        {% endmacro %}
        {% macro html(this, kwargs) %}
        <form class="wangge-ui wangge-hotspot-form" id="wangge-hotspot-form" method="get" action="">
            <label for="wangge-since">{{ this.since_label|e }}</label>
            <input type="month" id="wangge-since" name="since_month" value="{{ this.since|e }}">
            <label for="wangge-until">{{ this.until_label|e }}</label>
            <input type="month" id="wangge-until" name="until_month" value="{{ this.until|e }}">
            <label for="wangge-units">{{ this.unit_label|e }}</label>
            <select id="wangge-units" name="units">
            {%- for value, text in this.unit_options %}
                <option value="{{ value|e }}"{% if value == this.unit %} selected{% endif %}>{{ text|e }}</option>
            {%- endfor %}
            </select>
            <label for="wangge-category">{{ this.category_label|e }}</label>
            <select id="wangge-category" name="category">
            {%- for value, text in this.category_options %}
                <option value="{{ value|e }}"{% if value == this.category %} selected{% endif %}>{{ text|e }}</option>
            {%- endfor %}
            </select>
            {%- for name, value in this.hidden %}
            <input type="hidden" name="{{ name|e }}" value="{{ value|e }}">
            {%- endfor %}
            <label for="wangge-colour-by">{{ this.colour_label|e }}</label>
            {#- No name: colouring changes the map in place, it is not a new analysis. #}
            <select id="wangge-colour-by" onchange="window.wanggeColourBy && window.wanggeColourBy(this.value)">
                <option value="bins" selected>{{ this.colour_bins|e }}</option>
                <option value="emerging">{{ this.colour_emerging|e }}</option>
            </select>
            <button type="submit">{{ this.submit_label|e }}</button>
        </form>
        {%- if this.refusal %}
        <div class="wangge-ui wangge-hotspot-refused" id="wangge-hotspot-refused" role="alert">
            <h3>{{ this.refusal_title|e }}</h3>
            {%- for line in this.refusal %}<p>{{ line|e }}</p>{%- endfor %}
        </div>
        {%- endif %}
        {% endmacro %}
        """
    )

    def __init__(self, form: Mapping[str, Any], refusal: Sequence[str] | None):
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "WanggeHotspotControls"
        self.since_label, self.until_label = labels.HOTSPOT_FORM_SINCE, labels.HOTSPOT_FORM_UNTIL
        self.unit_label, self.category_label = (
            labels.HOTSPOT_FORM_UNIT,
            labels.HOTSPOT_FORM_CATEGORY,
        )
        self.submit_label = labels.HOTSPOT_FORM_SUBMIT
        self.since, self.until = form.get("since_month") or "", form.get("until_month") or ""
        self.unit = form.get("units") or "grid4"
        self.unit_options = UNIT_OPTIONS
        self.category = form.get("category") or Category.DISPUTE.value
        self.category_options = [(c.value, CATEGORY_NAMES_ZH[c]) for c in Category] + [
            ("all", labels.HOTSPOT_FORM_ALL_CATEGORIES)
        ]
        self.hidden = [(k, v) for k, v in (form.get("hidden") or {}).items() if v not in (None, "")]
        self.refusal = list(refusal) if refusal else None
        self.refusal_title = labels.HOTSPOT_REFUSED
        self.colour_label = labels.HOTSPOT_COLOUR_BY
        self.colour_bins, self.colour_emerging = (
            labels.HOTSPOT_COLOUR_BINS,
            labels.HOTSPOT_COLOUR_EMERGING,
        )


UNIT_OPTIONS: list[tuple[str, str]] = [
    ("grid4", labels.HOTSPOT_UNIT_LEVEL[4]),
    ("grid3", labels.HOTSPOT_UNIT_LEVEL[3]),
    ("hex250", labels.HOTSPOT_UNIT_HEX.format(size=250)),
    ("hex500", labels.HOTSPOT_UNIT_HEX.format(size=500)),
    ("hex1000", labels.HOTSPOT_UNIT_HEX.format(size=1000)),
]


# The page's own script: colour the units by confidence bin ('bins') or by emerging-hot-spot
# category ('emerging').
_COLOUR_BY_JS = """window.wanggeColourBy = function (mode) {
            if (window.wanggeHotspots) {
                window.wanggeHotspots.setStyle(function (f) {
                    return mode === 'emerging' ? f.properties.e : f.properties.s;
                });
            }
            document.querySelectorAll('[data-legend-mode]').forEach(function (el) {
                el.style.display = el.dataset.legendMode === mode ? '' : 'none';
            });
            document.documentElement.setAttribute('data-wangge-colour', mode);
        };"""


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


def build_hotspot_map(
    records: list[dict[str, Any]],
    geometries: Sequence[Any],
    *,
    unit_names: Mapping[str, str] | None = None,
    incidents_by_unit: Mapping[str, list[Any]] | None = None,
    incident_counts: Mapping[str, int] | None = None,
    summary: Sequence[str] = (),
    warnings: Sequence[str] = (),
    density: tuple[str, list[list[float]]] | None = None,
    form: Mapping[str, Any] | None = None,
    refusal: Sequence[str] | None = None,
    title: str,
    synthetic: bool = False,
    asset_prefix: str = DEFAULT_PREFIX,
    tile_url: str | None = None,
    tile_attribution: str | None = None,
) -> str:
    """The page as a complete HTML document.

    `records` are gis.hotspots.service.unit_records (same order as `geometries`, EPSG:4326);
    `incidents_by_unit` maps a unit id to [id, category, date, state] rows already limited to
    what the caller may see (no personal fields), `incident_counts` to how many there are;
    `density` is a density_overlay; `refusal` replaces the map's content with the reason the
    analysis was refused (the form stays, to choose again)."""
    names = unit_names or {}
    listing = incidents_by_unit or {}
    totals = incident_counts or {}
    features = []
    shown: Any = display_geometries(list(geometries)) if len(records) else []
    for r, geom in zip(records, shown, strict=True):
        uid = r["unit_id"]
        unit_text = f"{names[uid]}（{uid}）" if names.get(uid) else uid
        features.append(
            {
                "type": "Feature",
                "id": uid,
                "geometry": mapping(geom),
                "properties": {
                    "v": _popup_values(r, unit_text),
                    "s": unit_style(r),
                    "e": emerging_style(r),
                    "bin": r.get("bin"),
                    "significant": r.get("significant"),
                    "outlier": r.get("outlier") or "",
                    "emerging": r.get("emerging"),
                    "incidents": listing.get(uid, [])[:MAX_INCIDENTS_IN_POPUP],
                    "n": int(totals.get(uid, len(listing.get(uid, [])))),
                },
            }
        )
    m = new_page_map(
        title,
        badge_hint=labels.HOTSPOT_SYNTHETIC_HINT,
        synthetic=synthetic,
        location=EMPTY_VIEW[0],
        zoom_start=EMPTY_VIEW[1],
        min_zoom=None,
        panes=[(name, z, name == UNIT_PANE[0]) for name, z in (DENSITY_PANE, UNIT_PANE)],
        tile_url=tile_url,
        tile_attribution=tile_attribution,
    )

    units_layer = None
    if features:
        units_layer = _UnitLayer(features)
        units_layer._id = "units"
        m.add_child(units_layer)
    density_layer = None
    if density is not None:
        density_layer = folium.raster_layers.ImageOverlay(
            density[0],
            bounds=density[1],
            name=labels.HOTSPOT_DENSITY_LAYER,
            opacity=0.85,
            show=False,
            interactive=False,
            pane=DENSITY_PANE[0],
        )
        density_layer._id = "density"
        m.add_child(density_layer)
    add_layer_control(m)

    items = [
        {
            "key": str(b),
            "label": labels.HOTSPOT_BINS[b],
            "fill": BIN_COLOURS[b],
            "edge": "#6b6b6b",
            "weight": 0.6,
            "mode": "bins",
        }
        for b in (3, 2, 1, 0, -1, -2, -3)
    ]
    items.append(
        {
            "key": "outlier",
            "label": labels.HOTSPOT_OUTLIER_LEGEND,
            "fill": "#ffffff",
            "edge": OUTLIER_EDGE,
            "weight": 3,
            "mode": "bins",
        }
    )
    if any(r.get("island") for r in records):
        items.append(
            {
                "key": "island",
                "label": labels.HOTSPOT_ISLAND,
                "fill": ISLAND_FILL,
                "edge": "#6b6b6b",
                "weight": 0.6,
                "mode": "bins",
            }
        )
    # The emerging legend lists only the categories on the map (most are usually absent).
    present = {r.get("emerging") for r in records}
    items += [
        {
            "key": c,
            "label": labels.HOTSPOT_EMERGING[c],
            "fill": colour,
            "edge": "#6b6b6b",
            "weight": 0.6,
            "mode": "emerging",
        }
        for c, colour in EMERGING_COLOURS.items()
        if c in present
    ]
    items.append(
        {
            "key": "no_pattern",
            "label": labels.HOTSPOT_EMERGING["no_pattern"],
            "fill": "#ffffff",
            "edge": "#6b6b6b",
            "weight": 0.6,
            "mode": "emerging",
        }
    )
    lines = [
        {"id": f"wangge-hotspot-summary-{i}", "text": t, "note": False}
        for i, t in enumerate(summary)
    ]
    lines += [
        {"id": f"wangge-hotspot-warning-{i}", "text": t, "note": True}
        for i, t in enumerate(warnings)
    ]
    if density is not None:
        lines.append(
            {
                "id": "wangge-hotspot-density-note",
                "text": labels.HOTSPOT_DENSITY_NOTE,
                "note": False,
            }
        )
    legend = _Legend(items, lines)
    legend._id = "legend"
    m.add_child(legend)
    controls = _Controls(form or {}, refusal)
    controls._id = "controls"
    m.add_child(controls)
    if features:
        xs = np.array([b for g in shown for b in g.bounds]).reshape(-1, 4)
        m.fit_bounds(
            [
                [float(xs[:, 1].min()), float(xs[:, 0].min())],
                [float(xs[:, 3].max()), float(xs[:, 2].max())],
            ],
            padding=(20, 20),
        )
    return finish_page(
        m,
        title,
        exposed={"wanggeHotspots": units_layer, "wanggeDensity": density_layer},
        script=_COLOUR_BY_JS,
        asset_prefix=asset_prefix,
    )
