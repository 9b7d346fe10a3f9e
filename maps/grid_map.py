"""The four-level grid map page: one self-contained HTML document that loads only local assets."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from branca.element import MacroElement
from folium.template import Template
from folium.utilities import JsCode
from shapely.geometry import mapping

from maps import labels
from maps.offline import DEFAULT_PREFIX
from maps.page import add_layer_control, finish_page, legend_template, new_page_map

LEVELS = (1, 2, 3, 4)

# About 5 m: invisible at the zooms a township is viewed at, and it keeps 282 grids light.
SIMPLIFY_DEGREES = 5.0 / 111_320.0
COORD_DECIMALS = 6  # ~0.1 m



# Per level: outline colour, width, dash, and (level 4 only) fill. Coarser levels draw thicker
# lines on top so village and area boundaries stay readable over the grid mesh.
LEVEL_STYLES: dict[int, dict[str, Any]] = {
    1: {"color": "#b2182b", "weight": 4.0, "dashArray": None},
    2: {"color": "#7b3294", "weight": 3.0, "dashArray": "10 5"},
    3: {"color": "#2166ac", "weight": 2.0, "dashArray": None},
    4: {
        "color": "#1a7f45",
        "weight": 0.8,
        "dashArray": None,
        "fillColor": "#9fd88a",
        "fillOpacity": 0.22,
    },
}

# Panes, bottom to top. Clicks must reach the finest visible level, while coarse boundaries
# must be drawn above fine ones; so levels 1-3 are split into an invisible clickable fill
# (under level 4) and a non-interactive outline (over level 4).
HILLSHADE_PANE = ("wangge-hillshade", 390)
FILL_PANES = {
    1: ("wangge-level-1-fill", 410),
    2: ("wangge-level-2-fill", 411),
    3: ("wangge-level-3-fill", 412),
    4: ("wangge-level-4", 420),
}
LINE_PANES = {
    3: ("wangge-level-3-line", 430),
    2: ("wangge-level-2-line", 431),
    1: ("wangge-level-1-line", 432),
}

REQUIRED_COLUMNS = ("code", "name", "level", "parent_code", "geometry")

# Tooltip text goes in as a DOM text node, so names are never parsed as HTML; the popup HTML
# was built and escaped on the server.
_ON_EACH_FEATURE = JsCode(
    """
    function(feature, layer) {
        var tip = document.createElement('span');
        tip.textContent = feature.properties.name;
        layer.bindTooltip(tip, {sticky: true, className: 'wangge-tooltip'});
        layer.bindPopup(feature.properties.popup, {maxWidth: 380, className: 'wangge-popup'});
    }
    """
)


def _style(level: int) -> dict[str, Any]:
    s = LEVEL_STYLES[level]
    if level == 4:
        return {
            "color": s["color"],
            "weight": s["weight"],
            "fillColor": s["fillColor"],
            "fillOpacity": s["fillOpacity"],
            "opacity": 0.9,
        }
    # Transparent but filled, so the inside of the polygon still receives clicks.
    return {"stroke": False, "fill": True, "fillColor": s["color"], "fillOpacity": 0.0}


def _highlight(level: int) -> dict[str, Any]:
    s = LEVEL_STYLES[level]
    if level == 4:
        return {"weight": 2.5, "fillOpacity": 0.45}
    return {"fillColor": s["color"], "fillOpacity": 0.10}


def _outline_style(level: int) -> dict[str, Any]:
    s = LEVEL_STYLES[level]
    out = {"color": s["color"], "weight": s["weight"], "opacity": 0.95, "fill": False}
    if s["dashArray"]:
        out["dashArray"] = s["dashArray"]
    return out


def display_geometries(geoms: Sequence[Any]) -> np.ndarray:
    arr = np.asarray(geoms, dtype=object)
    arr = shapely.simplify(arr, SIMPLIFY_DEGREES, preserve_topology=True)
    rounded: np.ndarray = shapely.transform(arr, lambda xy: np.round(xy, COORD_DECIMALS))
    return rounded


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    # Columns read from files or the database hold NaN / pd.NA where a value is absent.
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return True
    return str(value).strip() == ""


def _text(value: Any) -> str:
    return "" if _is_blank(value) else str(value)


def _staff_html(staff: Sequence[Mapping[str, Any]] | None) -> str:
    if not staff:
        return _esc(labels.NONE_RECORDED)
    rows = []
    for person in staff:
        parts = [labels.staff_role(person.get("role"))]
        for key in ("name", "phone"):
            if not _is_blank(person.get(key)):
                parts.append(str(person[key]))
        rows.append(f'<div class="wangge-staff">{" ".join(_esc(p) for p in parts)}</div>')
    return "".join(rows)


def _rolled_up_households(
    parents: Mapping[str, str | None], counts: Mapping[str, int] | None
) -> dict[str, int]:
    """Counts as given, plus sums for parents the caller gave no count for."""
    if counts is None:
        return {}
    given = {str(k): int(v) for k, v in counts.items() if v is not None}
    sums: dict[str, int] = {}
    for code, n in given.items():
        seen = {code}
        parent = parents.get(code)
        while parent and parent not in seen:
            seen.add(parent)
            if parent not in given:
                sums[parent] = sums.get(parent, 0) + n
            parent = parents.get(parent)
    return {**sums, **given}


def _popup_html(
    row: Mapping[str, Any],
    names: Mapping[str, str],
    staff: Sequence[Mapping[str, Any]] | None,
    households: int | None,
    show_households: bool,
) -> str:
    level = int(row["level"])
    parent = row.get("parent_code")
    if _is_blank(parent):
        parent_text = labels.UNKNOWN
    else:
        parent = str(parent)
        parent_text = f"{names[parent]}（{parent}）" if names.get(parent) else parent
    fields = [
        (labels.POPUP_CODE, _esc(row["code"])),
        (labels.POPUP_NAME, _esc(_text(row["name"]) or labels.UNKNOWN)),
        (labels.POPUP_LEVEL, _esc(labels.LEVEL_LAYER_NAMES.get(level, str(level)))),
        (labels.POPUP_PARENT, _esc(parent_text)),
        (labels.POPUP_STAFF, _staff_html(staff)),
    ]
    if show_households:
        count = labels.UNKNOWN if households is None else f"{households} {labels.HOUSEHOLD_UNIT}"
        fields.append((labels.POPUP_HOUSEHOLDS, _esc(count)))
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{v}</td></tr>" for k, v in fields)
    return f'<table class="wangge-popup-table" data-code="{_esc(row["code"])}">{body}</table>'


def _check_grids(grids: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in grids.columns]
    if missing:
        raise ValueError(f"grids lacks column(s) {', '.join(missing)}")
    if grids.crs is not None and not grids.crs.equals("EPSG:4326"):
        grids = grids.to_crs("EPSG:4326")
    grids = grids[~(grids.geometry.isna() | grids.geometry.is_empty)].copy()
    if grids.empty:
        raise ValueError("grids has no geometry to draw")
    grids["code"] = grids["code"].astype(str)
    grids["level"] = grids["level"].astype(int)
    bad = sorted(set(grids["level"]) - set(LEVELS))
    if bad:
        raise ValueError(f"grid levels must be 1-4, found {bad}")
    return grids.sort_values(["level", "code"])


class _Legend(MacroElement):
    """Legend of the four levels (and the hillshade when shown), in Chinese."""

    _template = legend_template(
        """
            {%- for item in this.items %}
            <div class="row-item" data-level="{{ item.level }}">
                <svg width="34" height="14" aria-hidden="true">
                {%- if item.fill %}
                    <rect x="1" y="1" width="32" height="12" fill="{{ item.fill }}"
                          fill-opacity="{{ item.fill_opacity }}" stroke="{{ item.color }}"
                          stroke-width="{{ item.weight }}"/>
                {%- else %}
                    <line x1="1" y1="7" x2="33" y2="7" stroke="{{ item.color }}"
                          stroke-width="{{ item.weight }}"
                          {%- if item.dash %} stroke-dasharray="{{ item.dash }}"{% endif %}/>
                {%- endif %}
                </svg>
                <span>{{ item.label|e }}</span>
            </div>
            {%- endfor %}
            {%- if this.hillshade_label %}
            <div class="row-item">
                <svg width="34" height="14" aria-hidden="true">
                    <defs><linearGradient id="wangge-hs-swatch">
                        <stop offset="0" stop-color="#444"/><stop offset="1" stop-color="#fff"/>
                    </linearGradient></defs>
                    <rect x="1" y="1" width="32" height="12" fill="url(#wangge-hs-swatch)"
                          fill-opacity="0.6" stroke="#999" stroke-width="0.5"/>
                </svg>
                <span>{{ this.hillshade_label|e }}</span>
            </div>
            {%- endif %}
            {%- if this.note %}
            <div class="note">{{ this.note|e }}</div>
            {%- endif %}"""
    )

    def __init__(self, title: str, hillshade_label: str | None, note: str | None):
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "WanggeLegend"
        self.title = title
        self.hillshade_label = hillshade_label
        self.note = note
        self.lines: list[dict[str, Any]] = []  # the grid page says its note in the symbol rows
        self.items = []
        for level in LEVELS:
            s = LEVEL_STYLES[level]
            self.items.append(
                {
                    "level": level,
                    "label": labels.LEVEL_LAYER_NAMES[level],
                    "color": s["color"],
                    "weight": max(s["weight"], 1.0),
                    "dash": s["dashArray"],
                    "fill": s.get("fillColor"),
                    "fill_opacity": s.get("fillOpacity", 0),
                }
            )


class _Outline(MacroElement):
    """Non-interactive copy of a level's boundaries, drawn above finer levels.

    The copy is made in the browser from the fill layer, so the geometry is sent only once.
    """

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = L.geoJson(
            {{ this.source.get_name() }}.toGeoJSON({{ this.precision }}), {
            pane: {{ this.pane|tojson }},
            interactive: false,
            style: {{ this.style|tojson }}
        }).addTo({{ this._parent.get_name() }});
        {% endmacro %}
        """
    )

    def __init__(self, source: folium.GeoJson, pane: str, style: dict[str, Any]):
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "WanggeOutline"
        self.source = source
        self.pane = pane
        self.style = style
        self.precision = COORD_DECIMALS


# The grid page's own script: find a grid's layer by its code (for the page's tests and tools).
_FIND_GRID_JS = """window.wanggeFindGrid = function (code) {
            var found = null;
            Object.keys(window.wanggeLayers).forEach(function (level) {
                window.wanggeLayers[level].eachLayer(function (layer) {
                    if (layer.feature && layer.feature.properties.code === String(code)) {
                        found = layer;
                    }
                });
            });
            return found;
        };"""


def _title(grids: gpd.GeoDataFrame, synthetic: bool) -> str:
    if synthetic:
        return labels.SYNTHETIC_PAGE_TITLE
    towns = [_text(n) for n in grids.loc[grids["level"] == 1, "name"] if not _is_blank(n)]
    return f"{labels.PAGE_TITLE} — {towns[0]}" if len(towns) == 1 else labels.PAGE_TITLE


def build_grid_map(
    grids: gpd.GeoDataFrame,
    *,
    staff_by_code: dict[str, list[dict[str, Any]]] | None = None,
    household_counts: dict[str, int] | None = None,
    hillshade: tuple[bytes, Sequence[Sequence[float]]] | None = None,
    tile_url: str | None = None,
    tile_attribution: str | None = None,
    asset_prefix: str = DEFAULT_PREFIX,
    synthetic: bool = False,
) -> str:
    """The grid map page as a complete HTML document.

    `grids` has columns code, name, level (1-4), parent_code and geometry. Staff values are
    shown exactly as given (mask them before calling). `hillshade` is (PNG bytes, [[south,
    west], [north, east]]) as made by maps.hillshade.hillshade_png. `tile_url` adds an online
    base map; it must be in WGS84 alignment (not a GCJ-02 map such as Amap or Tencent), and
    the page then loads tiles from that host. Without it the page requests nothing remote.
    """
    grids = _check_grids(grids)
    title = _title(grids, synthetic)

    names = {c: _text(n) for c, n in zip(grids["code"], grids["name"], strict=True)}
    parents = {
        c: (None if _is_blank(p) else str(p))
        for c, p in zip(grids["code"], grids["parent_code"], strict=True)
    }
    households = _rolled_up_households(parents, household_counts)
    staff_by_code = {str(k): v for k, v in (staff_by_code or {}).items()}
    display = display_geometries(grids.geometry.values)

    west, south, east, north = grids.total_bounds
    # Pane divs stay transparent to the mouse; only interactive paths take clicks.
    panes = [(name, z, False) for name, z in [HILLSHADE_PANE, *FILL_PANES.values(), *LINE_PANES.values()]]
    m = new_page_map(
        title,
        badge_hint=labels.SYNTHETIC_BADGE_HINT,
        synthetic=synthetic,
        location=[(south + north) / 2, (west + east) / 2],
        zoom_start=13,
        min_zoom=8,
        panes=panes,
        tile_url=tile_url,
        tile_attribution=tile_attribution,
    )

    if hillshade is not None:
        png, bounds = hillshade
        overlay = folium.raster_layers.ImageOverlay(
            image="data:image/png;base64," + base64.b64encode(png).decode("ascii"),
            bounds=[
                [float(bounds[0][0]), float(bounds[0][1])],
                [float(bounds[1][0]), float(bounds[1][1])],
            ],
            name=labels.HILLSHADE_LAYER,
            opacity=0.55,
            pixelated=False,
            interactive=False,
            class_name="wangge-hillshade",
            pane=HILLSHADE_PANE[0],
        )
        overlay._id = "hillshade"
        m.add_child(overlay)

    layers: dict[int, folium.GeoJson] = {}
    groups: dict[int, folium.FeatureGroup] = {}
    levels = grids["level"].to_numpy()
    for level in LEVELS:
        features = []
        for i in np.flatnonzero(levels == level):
            row = grids.iloc[i]
            code = row["code"]
            features.append(
                {
                    "type": "Feature",
                    "properties": {
                        "code": code,
                        "name": _text(row["name"]),
                        "level": level,
                        "popup": _popup_html(
                            row,
                            names,
                            staff_by_code.get(code),
                            households.get(code),
                            household_counts is not None,
                        ),
                    },
                    "geometry": mapping(display[i]),
                }
            )
        group = folium.FeatureGroup(
            name=labels.LEVEL_LAYER_NAMES[level], overlay=True, control=True, show=True
        )
        group._id = f"level_{level}"
        style, highlight = _style(level), _highlight(level)
        layer = folium.GeoJson(
            {"type": "FeatureCollection", "features": features},
            style_function=lambda _f, s=style: s,
            highlight_function=lambda _f, s=highlight: s,
            on_each_feature=_ON_EACH_FEATURE,
            control=False,
            pane=FILL_PANES[level][0],
        )
        layer._id = f"level_{level}"
        group.add_child(layer)
        if level in LINE_PANES:
            outline = _Outline(layer, LINE_PANES[level][0], _outline_style(level))
            outline._id = f"level_{level}"
            group.add_child(outline)
        m.add_child(group)
        layers[level], groups[level] = layer, group

    add_layer_control(m)
    m.add_child(
        _Legend(
            labels.LEGEND_TITLE,
            labels.LEGEND_HILLSHADE if hillshade is not None else None,
            labels.SYNTHETIC_BADGE_HINT if synthetic else None,
        )
    )
    m.fit_bounds([[south, west], [north, east]], padding=(20, 20))
    return finish_page(
        m,
        "grid map",
        exposed={"wanggeLayers": layers, "wanggeGroups": groups},
        script=_FIND_GRID_JS,
        asset_prefix=asset_prefix,
    )
