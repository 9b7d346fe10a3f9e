"""Point map pages: thousands of records as light circle markers over grid outlines, offline."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
# every page reads as one product.
from maps.grid_map import COORD_DECIMALS, LEVEL_STYLES, display_geometries
from maps.offline import DEFAULT_PREFIX
from maps.page import EMPTY_VIEW, add_layer_control, finish_page, legend_template, new_page_map

OUTLINE_PANE = ("wangge-outlines", 410)
POINT_PANE = ("wangge-points", 450)
# Only the outlines' colours and dashes come from the grid page: here they are context, so even
# the finest level needs a line that stays visible under the markers.
MIN_OUTLINE_WEIGHT = 1.5



@dataclass(frozen=True)
class PointKind:
    """What a page's markers are.

    `popup_fields` are (record key, label) pairs, the record's id first; `styles` give the marker
    look per style key; tests and tools find the layer on `window[global_name]` and a popup's
    record by its `id_attribute`; `synthetic_hint` is what the synthetic-data badge says.
    """

    layer_name: str
    popup_fields: tuple[tuple[str, str], ...]
    styles: Mapping[str, Mapping[str, Any]]
    global_name: str
    id_attribute: str
    synthetic_hint: str

    def feature(self, record: Mapping[str, Any], key: str) -> dict[str, Any]:
        """A marker: `key` picks its style; the popup rows come from `record` by their keys."""
        feature_id = record.get(self.popup_fields[0][0])
        lon, lat = record.get("lon"), record.get("lat")
        if lon is None or lat is None:
            raise ValueError(f"record {feature_id!r} has no location")
        xy = [round(float(lon), COORD_DECIMALS), round(float(lat), COORD_DECIMALS)]
        return {
            "type": "Feature",
            "id": feature_id,
            "properties": {"k": key, "v": [record.get(k) for k, _ in self.popup_fields[1:]]},
            "geometry": {"type": "Point", "coordinates": xy},
        }


def grid_label(name: str | None, code: str | None) -> str | None:
    """尹营村第一网格（411324105001001）: the name people know, the code that is unambiguous."""
    if name and code:
        return f"{name}（{code}）"
    return name or code


def in_draw_order(features: list[dict[str, Any]], rank: Mapping[str, int]) -> list[dict[str, Any]]:
    """Features sorted so the keys of high `rank` are drawn last, on top where points crowd."""
    # Stable sort: within a rank the caller's order (by id) is kept, so the page is reproducible.
    return sorted(features, key=lambda f: rank[f["properties"]["k"]])


def script_json(value: Any) -> str:
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


# A popup's table, built from text nodes: names and descriptions never pass through an HTML parser.
# Shared by the point layers and the hot-spot units (maps/hotspot_map.py).
POPUP_TABLE_JS = """
            function popupTable(fields, values, blank, idAttribute, id) {
                var table = document.createElement('table');
                table.className = 'wangge-popup-table';
                table.setAttribute(idAttribute, id);
                fields.forEach(function (label, i) {
                    var row = table.insertRow();
                    var th = document.createElement('th');
                    th.textContent = label;
                    var td = document.createElement('td');
                    var v = values[i];
                    td.textContent = (v === null || v === undefined || v === '') ? blank : String(v);
                    row.appendChild(th);
                    row.appendChild(td);
                });
                return table;
            }
"""


def popup_layer_template(own_script: str, layer_options: str, popup_max_width: int) -> Template:
    """The script of a PopupLayer: the popup table and `own_script` (the layer's own variables and its
    `popupContent(feature)`) inside one function, then the GeoJSON layer on its pane with
    `layer_options` (how features look) and a popup, built when opened, on each feature."""
    template: Template = Template(
        """
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = (function () {
            var fields = {{ this.fields_json }};
            var blank = {{ this.blank_json }};"""
        + own_script
        + """
            {{ this.popup_table_js }}
            return L.geoJson({{ this.data_json }}, {
                pane: {{ this.pane_json }},"""
        + layer_options
        + """
                onEachFeature: function (feature, layer) {
                    layer.bindPopup(function () { return popupContent(feature); },
                                    {maxWidth: """
        + str(popup_max_width)
        + """, className: 'wangge-popup'});
                }
            });
        })();
        {% endmacro %}
        """
    )
    return template


class PopupLayer(Layer):
    """A GeoJSON layer of `features` whose popups are tables of `popup_fields`' labels, built as text
    when opened (POPUP_TABLE_JS); `element_name` is the layer's fixed name in the page (stable pages)."""

    def __init__(self, name: str, element_name: str, features: list[dict[str, Any]],
                 popup_fields: Sequence[tuple[str, str]], pane: str):
        super().__init__(name=name, overlay=True, control=True, show=True)
        self._name = element_name
        self.data_json = script_json({"type": "FeatureCollection", "features": features})
        self.fields_json = script_json([label for _, label in popup_fields])
        self.blank_json = script_json(labels.UNKNOWN)
        self.pane_json = script_json(pane)
        self.popup_table_js = POPUP_TABLE_JS


class _PointLayer(PopupLayer):
    """Circle markers on a canvas (light for thousands), popups built as text when opened."""

    _template = popup_layer_template(
        own_script="""
            var styles = {{ this.styles_json }};
            var idAttribute = {{ this.id_attribute_json }};
            var renderer = L.canvas({padding: 0.5, pane: {{ this.pane_json }}});
            function popupContent(feature) {
                return popupTable(fields, [feature.id].concat(feature.properties.v), blank, idAttribute, feature.id);
            }""",
        layer_options="""
                pointToLayer: function (feature, latlng) {
                    var opts = Object.assign({renderer: renderer, pane: {{ this.pane_json }}},
                                             styles[feature.properties.k]);
                    return L.circleMarker(latlng, opts);
                },""",
        popup_max_width=340,
    )

    def __init__(self, kind: PointKind, features: list[dict[str, Any]]):
        super().__init__(kind.layer_name, "WanggePoints", features, kind.popup_fields, POINT_PANE[0])
        self.styles_json = script_json(kind.styles)
        self.id_attribute_json = script_json(kind.id_attribute)


def legend_marker(key: str, label: str, style: Mapping[str, Any]) -> dict[str, Any]:
    """A legend row drawn like the markers of `style`."""
    return {
        "key": key,
        "label": label,
        "radius": style["radius"],
        "fill": style["fillColor"],
        "fill_opacity": style["fillOpacity"],
        "color": style["color"],
        "weight": style["weight"],
    }


def legend_line(element_id: str, text: str, *, note: bool = False, hint: str | None = None) -> dict[str, Any]:
    """A line of text under the legend's symbols; a note stands out (a cut result, masking)."""
    return {"id": element_id, "text": text, "note": note, "hint": hint}


def result_notes(*, cut_text: str | None, masked_hint: str | None) -> list[dict[str, Any]]:
    """The legend's notes that a result was cut (`cut_text`) and that personal fields are masked
    (`masked_hint` says which); none when neither is given."""
    lines = []
    if cut_text:
        lines.append(legend_line("wangge-truncated-note", cut_text, note=True))
    if masked_hint:
        lines.append(legend_line("wangge-masked-note", labels.PERSONAL_MASKED_NOTE, note=True,
                                 hint=masked_hint))
    return lines


class PointLegend(MacroElement):
    """Marker symbols, the outline, then lines of text (count, filters, cut and masking notes)."""

    _template = legend_template(
        """
            {%- for item in this.markers %}
            <div class="row-item" data-class="{{ item.key }}">
                <svg width="34" height="16" aria-hidden="true">
                    <circle cx="17" cy="8" r="{{ item.radius }}" fill="{{ item.fill }}"
                            fill-opacity="{{ item.fill_opacity }}" stroke="{{ item.color }}"
                            stroke-width="{{ item.weight }}"/>
                </svg>
                <span>{{ item.label|e }}</span>
            </div>
            {%- endfor %}
            <div class="row-item">
                <svg width="34" height="16" aria-hidden="true">
                    <line x1="1" y1="8" x2="33" y2="8" stroke="{{ this.outline_color }}"
                          stroke-width="2"/>
                </svg>
                <span>{{ this.outline_label|e }}</span>
            </div>"""
    )

    def __init__(self, markers: Sequence[dict[str, Any]], lines: Sequence[dict[str, Any]]):
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "WanggePointLegend"
        self.title = labels.LEGEND_TITLE
        self.markers = list(markers)
        self.outline_color = LEVEL_STYLES[4]["color"]
        self.outline_label = labels.GRID_OUTLINE_LAYER
        self.lines = list(lines)


def _drawable(grids: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    grids = grids[~(grids.geometry.isna() | grids.geometry.is_empty)]
    if grids.crs is not None and not grids.crs.equals("EPSG:4326"):
        grids = grids.to_crs("EPSG:4326")
    return grids


def _outline_layer(grids: gpd.GeoDataFrame) -> folium.GeoJson | None:
    grids = _drawable(grids)
    if grids.empty:
        return None
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
        # Outlines are context only: clicks must reach the markers above them.
        interactive=False,
        pane=OUTLINE_PANE[0],
    )
    layer._id = "grid_outlines"
    return layer


def _bounds(features: Sequence[dict[str, Any]], grids: gpd.GeoDataFrame) -> list[list[float]] | None:
    boxes = []
    if features:
        xy = np.array([f["geometry"]["coordinates"] for f in features], dtype=float)
        boxes.append([*xy.min(axis=0), *xy.max(axis=0)])
    drawn = _drawable(grids)
    if len(drawn):
        boxes.append(list(drawn.total_bounds))
    if not boxes:
        return None
    arr = np.array(boxes, dtype=float)
    west, south = arr[:, 0].min(), arr[:, 1].min()
    east, north = arr[:, 2].max(), arr[:, 3].max()
    return [[float(south), float(west)], [float(north), float(east)]]


def build_point_page(
    kind: PointKind,
    features: list[dict[str, Any]],
    legend: PointLegend,
    grids: gpd.GeoDataFrame,
    *,
    title: str,
    synthetic: bool = False,
    asset_prefix: str = DEFAULT_PREFIX,
    tile_url: str | None = None,
    tile_attribution: str | None = None,
) -> str:
    """A complete HTML document: `features` (drawn in their order) over the outlines of `grids`
    (code, level, geometry). `synthetic` shows the synthetic-data badge. `tile_url` adds an online
    base map in WGS84 alignment (never a GCJ-02 one); without it the page requests nothing remote.
    """
    points = _PointLayer(kind, features)
    bounds = _bounds(features, grids)
    center, zoom = EMPTY_VIEW
    if bounds is not None:
        center = [(bounds[0][0] + bounds[1][0]) / 2, (bounds[0][1] + bounds[1][1]) / 2]
        zoom = 14
    m = new_page_map(
        title,
        badge_hint=kind.synthetic_hint,
        synthetic=synthetic,
        location=center,
        zoom_start=zoom,
        min_zoom=3 if bounds is None else 8,
        # The outline pane lets the mouse through; the markers' canvas must take clicks itself.
        panes=[(*OUTLINE_PANE, False), (*POINT_PANE, True)],
        tile_url=tile_url,
        tile_attribution=tile_attribution,
    )

    outlines = _outline_layer(grids)
    if outlines is not None:
        m.add_child(outlines)
        # The legend's line looks like the finest level drawn, the one most of the lines are.
        legend.outline_color = LEVEL_STYLES[int(_drawable(grids)["level"].max())]["color"]
    points._id = "layer"
    m.add_child(points)

    add_layer_control(m)
    legend._id = "legend"
    m.add_child(legend)
    if bounds is not None:
        m.fit_bounds(bounds, padding=(30, 30), max_zoom=18)
    return finish_page(
        m,
        title,
        exposed={kind.global_name: points, "wanggeGridOutlines": outlines},
        asset_prefix=asset_prefix,
    )
