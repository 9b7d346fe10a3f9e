"""The household map page: grid outlines and one marker per household, masked by the caller."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import folium
import geopandas as gpd
import numpy as np
from branca.element import MacroElement
from folium.map import Layer
from folium.template import Template
from shapely.geometry import mapping

from maps import labels

# The grid page's look (title bar, badge, legend and popup styling, level colours) is shared so
# both pages read as one product.
from maps.grid_map import BACKGROUND, COORD_DECIMALS, LEVEL_STYLES, display_geometries, PageChrome
from maps.offline import DEFAULT_PREFIX, localize, remote_urls

# Keys of the popup rows after the first (household_no travels as the feature id).
_VALUE_KEYS = tuple(key for key, _ in labels.HOUSEHOLD_POPUP_FIELDS[1:])

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

OUTLINE_PANE = ("wangge-outlines", 410)
HOUSEHOLD_PANE = ("wangge-households", 450)
# Only the outlines' colours and dashes come from the grid page: here they are context, so even
# the finest level needs a line that stays visible under the markers.
MIN_OUTLINE_WEIGHT = 1.5

# Where a page has nothing to fit to, it opens on China rather than on (0, 0) in the ocean.
EMPTY_VIEW = ([35.0, 105.0], 4)


def vulnerability_class(record: Mapping[str, Any]) -> str:
    """'carry': someone bedridden or disabled; 'assist': elderly or pregnant; else 'other'."""

    def has(key: str) -> bool:
        return (record.get(key) or 0) > 0

    if has("bedridden") or has("disabled"):
        return "carry"
    if has("elderly") or has("pregnant"):
        return "assist"
    return "other"


def _grid_text(record: Mapping[str, Any]) -> str | None:
    name, code = record.get("grid_name"), record.get("grid_code")
    if name and code:
        return f"{name}（{code}）"
    return name or code


def _feature(record: Mapping[str, Any]) -> dict:
    lon, lat = record.get("lon"), record.get("lat")
    if lon is None or lat is None:
        raise ValueError(f"household {record.get('household_no')!r} has no location")
    values = {**record, "grid": _grid_text(record)}
    return {
        "type": "Feature",
        "id": record.get("household_no"),
        "properties": {"k": vulnerability_class(record), "v": [values.get(k) for k in _VALUE_KEYS]},
        "geometry": {
            "type": "Point",
            "coordinates": [round(float(lon), COORD_DECIMALS), round(float(lat), COORD_DECIMALS)],
        },
    }


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element; Chinese stays UTF-8 (half the bytes of \\u escapes)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)
    # '<' stops '</script>' in a value from ending the element; the line separators are not
    # valid inside JavaScript strings in older engines.
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return text


def _outline_style(level: int) -> dict[str, Any]:
    s = LEVEL_STYLES[level]
    weight = max(s["weight"], MIN_OUTLINE_WEIGHT)
    out = {"color": s["color"], "weight": weight, "opacity": 0.9, "fill": False}
    if s["dashArray"]:
        out["dashArray"] = s["dashArray"]
    return out


class _HouseholdLayer(Layer):
    """Households as circle markers on a canvas (light for thousands), popups built when opened."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = (function () {
            var fields = {{ this.fields_json }};
            var styles = {{ this.styles_json }};
            var blank = {{ this.blank_json }};
            var renderer = L.canvas({padding: 0.5, pane: {{ this.pane_json }}});
            // Text nodes only: names and addresses never pass through an HTML parser.
            function popupContent(feature) {
                var table = document.createElement('table');
                table.className = 'wangge-popup-table';
                table.setAttribute('data-household-no', feature.id);
                var values = [feature.id].concat(feature.properties.v);
                fields.forEach(function (label, i) {
                    var row = table.insertRow();
                    var th = document.createElement('th');
                    th.textContent = label;
                    var td = document.createElement('td');
                    var v = values[i];
                    var empty = v === null || v === undefined || v === '';
                    td.textContent = empty ? blank : String(v);
                    row.appendChild(th);
                    row.appendChild(td);
                });
                return table;
            }
            return L.geoJson({{ this.data_json }}, {
                pane: {{ this.pane_json }},
                pointToLayer: function (feature, latlng) {
                    var opts = Object.assign({renderer: renderer, pane: {{ this.pane_json }}},
                                             styles[feature.properties.k]);
                    return L.circleMarker(latlng, opts);
                },
                onEachFeature: function (feature, layer) {
                    layer.bindPopup(function () { return popupContent(feature); },
                                    {maxWidth: 340, className: 'wangge-popup'});
                }
            });
        })();
        {% endmacro %}
        """
    )

    def __init__(self, features: list[dict], name: str, pane: str):
        super().__init__(name=name, overlay=True, control=True, show=True)
        self._name = "WanggeHouseholds"
        self.data_json = _script_json({"type": "FeatureCollection", "features": features})
        self.fields_json = _script_json([label for _, label in labels.HOUSEHOLD_POPUP_FIELDS])
        self.styles_json = _script_json(CLASS_STYLES)
        self.blank_json = _script_json(labels.UNKNOWN)
        self.pane_json = _script_json(pane)


class _HouseholdLegend(MacroElement):
    """Marker classes, the outline, how many households are shown, the masking and cut notes."""

    _template = Template(
        """
        {% macro html(this, kwargs) %}
        <div class="wangge-ui wangge-legend" id="wangge-legend">
            <h4>{{ this.title|e }}</h4>
            {%- for item in this.classes %}
            <div class="row-item" data-class="{{ item.key }}">
                <svg width="34" height="14" aria-hidden="true">
                    <circle cx="17" cy="7" r="{{ item.radius }}" fill="{{ item.fill }}"
                            fill-opacity="{{ item.fill_opacity }}" stroke="{{ item.color }}"
                            stroke-width="1"/>
                </svg>
                <span>{{ item.label|e }}</span>
            </div>
            {%- endfor %}
            <div class="row-item">
                <svg width="34" height="14" aria-hidden="true">
                    <line x1="1" y1="7" x2="33" y2="7" stroke="{{ this.outline_color }}"
                          stroke-width="2"/>
                </svg>
                <span>{{ this.outline_label|e }}</span>
            </div>
            <div id="wangge-household-count">{{ this.count_text|e }}</div>
            {%- if this.truncated_text %}
            <div class="note" id="wangge-truncated-note">{{ this.truncated_text|e }}</div>
            {%- endif %}
            {%- if this.masked_note %}
            <div class="note" id="wangge-masked-note"
                 title="{{ this.masked_hint|e }}">{{ this.masked_note|e }}</div>
            {%- endif %}
        </div>
        {% endmacro %}
        """
    )

    def __init__(self, *, shown: int, total: int, masked: bool):
        super().__init__()
        self._name = "WanggeHouseholdLegend"
        self.title = labels.LEGEND_TITLE
        self.classes = [
            {
                "key": key,
                "label": labels.HOUSEHOLD_CLASSES[key],
                "radius": CLASS_STYLES[key]["radius"],
                "fill": CLASS_STYLES[key]["fillColor"],
                "fill_opacity": CLASS_STYLES[key]["fillOpacity"],
                "color": CLASS_STYLES[key]["color"],
            }
            for key in reversed(DRAW_ORDER)
        ]
        self.outline_color = LEVEL_STYLES[4]["color"]
        self.outline_label = labels.GRID_OUTLINE_LAYER
        self.count_text = (
            labels.HOUSEHOLD_COUNT.format(shown=shown) if shown else labels.HOUSEHOLDS_NONE
        )
        self.truncated_text = (
            labels.HOUSEHOLDS_TRUNCATED.format(shown=shown, total=total) if total > shown else None
        )
        self.masked_note = labels.PERSONAL_MASKED_NOTE if masked else None
        self.masked_hint = labels.PERSONAL_MASKED_HINT


class _Registry(MacroElement):
    """Puts the map and its layers on window (for tests and tools) and marks the page ready."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        window.wanggeMap = {{ this._parent.get_name() }};
        window.wanggeHouseholds = {{ this.households.get_name() }};
        window.wanggeGridOutlines = {{ this.outlines.get_name() if this.outlines else "null" }};
        document.documentElement.setAttribute('data-wangge-ready', '1');
        {% endmacro %}
        """
    )

    def __init__(self, households: _HouseholdLayer, outlines: folium.GeoJson | None):
        super().__init__()
        self._name = "WanggeRegistry"
        self.households = households
        self.outlines = outlines


def _outline_layer(grids: gpd.GeoDataFrame) -> folium.GeoJson | None:
    grids = grids[~(grids.geometry.isna() | grids.geometry.is_empty)]
    if grids.empty:
        return None
    if grids.crs is not None and not grids.crs.equals("EPSG:4326"):
        grids = grids.to_crs("EPSG:4326")
    # Coarse levels last, so a village line is not hidden under its group grids' lines.
    grids = grids.assign(level=grids["level"].astype(int), code=grids["code"].astype(str))
    grids = grids.sort_values(["level", "code"], ascending=[False, True])
    display = display_geometries(grids.geometry.values)
    features = [
        {
            "type": "Feature",
            "id": code,
            "properties": {"code": code, "level": level},
            "geometry": mapping(geom),
        }
        for code, level, geom in zip(grids["code"], grids["level"], display, strict=True)
    ]
    layer = folium.GeoJson(
        {"type": "FeatureCollection", "features": features},
        name=labels.GRID_OUTLINE_LAYER,
        overlay=True,
        control=True,
        style_function=lambda f: _outline_style(f["properties"]["level"]),
        # Outlines are context only: clicks must reach the households above them.
        interactive=False,
        pane=OUTLINE_PANE[0],
    )
    layer._id = "grid_outlines"
    return layer


def _bounds(features: Sequence[dict], grids: gpd.GeoDataFrame) -> list[list[float]] | None:
    boxes = []
    if features:
        xy = np.array([f["geometry"]["coordinates"] for f in features], dtype=float)
        boxes.append([*xy.min(axis=0), *xy.max(axis=0)])
    drawn = grids[~(grids.geometry.isna() | grids.geometry.is_empty)]
    if len(drawn):
        if drawn.crs is not None and not drawn.crs.equals("EPSG:4326"):
            drawn = drawn.to_crs("EPSG:4326")
        boxes.append(list(drawn.total_bounds))
    if not boxes:
        return None
    arr = np.array(boxes, dtype=float)
    west, south = arr[:, 0].min(), arr[:, 1].min()
    east, north = arr[:, 2].max(), arr[:, 3].max()
    return [[float(south), float(west)], [float(north), float(east)]]


def build_household_map(
    households: list[dict],
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
    if tile_url and not tile_attribution:
        raise ValueError("an online base map needs its attribution (tile_attribution)")
    shown = len(households)
    total = shown if total is None else max(int(total), shown)

    features = [_feature(r) for r in households]
    rank = {k: i for i, k in enumerate(DRAW_ORDER)}
    # Stable sort: within a class the caller's order (by id) is kept, so the page is reproducible.
    features.sort(key=lambda f: rank[f["properties"]["k"]])
    masked = any(r.get("personal_fields") == "masked" for r in households)

    bounds = _bounds(features, grids)
    center, zoom = EMPTY_VIEW
    if bounds is not None:
        center = [(bounds[0][0] + bounds[1][0]) / 2, (bounds[0][1] + bounds[1][1]) / 2]
        zoom = 14
    m = folium.Map(location=center, zoom_start=zoom, tiles=None, control_scale=True)
    m.options.update(minZoom=3 if bounds is None else 8, maxZoom=19)
    # Fixed ids keep the page byte-for-byte stable between builds (cacheable, diffable).
    m._id = "wangge"
    m.get_root().title = html.escape(title)  # branca writes it into <title> unescaped
    m.add_child(
        PageChrome(
            title,
            labels.SYNTHETIC_BADGE if synthetic else None,
            labels.HOUSEHOLD_SYNTHETIC_HINT,
            BACKGROUND,
        )
    )
    # The outline pane lets the mouse through; the households' canvas must take clicks itself.
    for (name, z), clickable in ((OUTLINE_PANE, False), (HOUSEHOLD_PANE, True)):
        pane = folium.map.CustomPane(name, z_index=z, pointer_events=clickable)
        pane._id = name.replace("-", "_")
        m.add_child(pane)

    if tile_url:
        tiles = folium.TileLayer(
            tiles=tile_url,
            attr=tile_attribution,
            name=labels.TILE_LAYER,
            overlay=True,
            control=True,
            show=True,
            max_zoom=19,
        )
        tiles._id = "online"
        m.add_child(tiles)

    outlines = _outline_layer(grids)
    if outlines is not None:
        m.add_child(outlines)
    layer = _HouseholdLayer(features, labels.HOUSEHOLD_LAYER, HOUSEHOLD_PANE[0])
    layer._id = "layer"
    m.add_child(layer)

    control = folium.LayerControl(collapsed=False, position="topright")
    control._id = "wangge"
    m.add_child(control)
    legend = _HouseholdLegend(shown=shown, total=total, masked=masked)
    legend._id = "legend"
    m.add_child(legend)
    if bounds is not None:
        m.fit_bounds(bounds, padding=(30, 30), max_zoom=18)
    registry = _Registry(layer, outlines)
    registry._id = "registry"
    m.add_child(registry)

    localize(m, asset_prefix)
    page = m.get_root().render().replace("<html>", '<html lang="zh-CN">', 1)
    leftover = remote_urls(page)
    if leftover:
        raise RuntimeError(f"the household map page still loads remote assets: {leftover}")
    return page
