"""What every map page shares: the map with fixed ids, the title bar and synthetic-data badge,
panes, the optional on-line base map, the layer control, and the registry that puts the page's
layers on `window` (for the page's tests and tools) and marks the page ready."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

import folium
from branca.element import Element, Figure, MacroElement
from folium.template import Template

from maps import labels
from maps.offline import DEFAULT_PREFIX
from maps.render import render_page
from maps.shell import Shell, config_script, head_links, top_bar

BACKGROUND = "#eef0ea"
MAX_ZOOM = 19
# Where a page has nothing to fit to, it opens on China rather than on (0, 0) in the ocean.
EMPTY_VIEW = ([35.0, 105.0], 4)

# What a page exposes on window: a layer, nothing yet (null), or layers by key (the grid levels).
Exposed = Element | None | Mapping[Any, Element]
_JS_NAME = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


class PageChrome(MacroElement):
    """Page title bar, synthetic-data badge, background and popup/legend styling."""

    _template = Template(
        """
        {% macro header(this, kwargs) %}
        {#- An empty icon stops the browser from asking the server for /favicon.ico. #}
        <link rel="icon" href="data:,">
        <style>
            .folium-map.leaflet-container { background: {{ this.background }}; }
            .wangge-ui, .wangge-popup, .wangge-tooltip {
                font-family: system-ui, "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei",
                             "Source Han Sans SC", sans-serif;
            }
            .wangge-title {
                position: fixed; top: 10px; left: 50%; transform: translateX(-50%);
                z-index: 1000; background: rgba(255,255,255,0.94); padding: 6px 14px;
                border-radius: 6px; box-shadow: 0 1px 4px rgba(0,0,0,0.3);
                font-size: 16px; font-weight: 600; color: #222; white-space: nowrap;
            }
            .wangge-title .fa-solid { color: #2166ac; margin-right: 6px; }
            .wangge-badge {
                display: inline-block; margin-left: 10px; padding: 1px 8px; border-radius: 10px;
                background: #d9480f; color: #fff; font-size: 12px; font-weight: 600;
                vertical-align: 2px;
            }
            .wangge-legend {
                position: fixed; bottom: 28px; right: 10px; z-index: 1000;
                background: rgba(255,255,255,0.94); padding: 8px 12px; border-radius: 6px;
                box-shadow: 0 1px 4px rgba(0,0,0,0.3); font-size: 13px; color: #222;
                line-height: 1.5;
            }
            .wangge-legend h4 { margin: 0 0 4px; font-size: 14px; font-weight: 600; }
            .wangge-legend .row-item { display: flex; align-items: center; gap: 8px; }
            .wangge-legend svg { flex: none; }
            .wangge-legend .note { margin-top: 4px; color: #d9480f; font-size: 12px; }
            .wangge-popup-table { border-collapse: collapse; font-size: 13px; }
            .wangge-popup-table th {
                text-align: left; font-weight: 600; color: #555; padding: 2px 10px 2px 0;
                vertical-align: top; white-space: nowrap;
            }
            .wangge-popup-table td { padding: 2px 0; vertical-align: top; }
            .wangge-staff { white-space: nowrap; }
        </style>
        {% endmacro %}
        {% macro html(this, kwargs) %}
        <div class="wangge-ui wangge-title" id="wangge-title">
            <i class="fa-solid fa-map-location-dot" aria-hidden="true"></i>{{ this.title|e }}
            {%- if this.badge %}
            <span class="wangge-badge" id="wangge-synthetic-badge"
                  title="{{ this.badge_hint|e }}">{{ this.badge|e }}</span>
            {%- endif %}
        </div>
        {% endmacro %}
        """
    )

    def __init__(self, title: str, badge: str | None, badge_hint: str, background: str):
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "WanggePageChrome"
        self.title = title
        self.badge = badge
        self.badge_hint = badge_hint
        self.background = background


class ShellChrome(MacroElement):
    """The page shell on a map page: the top bar with navigation and logout, the error banner, the
    shell's stylesheet and script (and the page's own, set by `finish_page`), and the page config as
    JSON. Every piece is built by maps.shell as escaped text, never compiled as a template."""

    _template = Template(
        """
        {% macro header(this, kwargs) %}
        <link rel="icon" href="data:,">
        {{ this.head() }}
        {% endmacro %}
        {% macro html(this, kwargs) %}
        {{ this.bar }}
        {{ this.config_html() }}
        {% endmacro %}
        """
    )

    def __init__(self, title: str, shell: Shell):
        super().__init__()  # type: ignore[no-untyped-call]
        self._name = "WanggeShell"
        self.shell = shell
        self.bar = top_bar(title, shell)
        self.config: Mapping[str, Any] = {}
        self.scripts: Sequence[str] = ()
        self.styles: Sequence[str] = ()

    def head(self) -> str:
        return head_links(self.styles, self.scripts)

    def config_html(self) -> str:
        return config_script(self.shell, self.config)


# What a shell page loads from folium's defaults: Leaflet alone (no jQuery, Bootstrap or icon fonts).
# (folium's own entries by name; maps.offline serves them locally.)
SHELL_DEFAULT_JS = [(name, url) for name, url in folium.Map.default_js if name == "leaflet"]
SHELL_DEFAULT_CSS = [(name, url) for name, url in folium.Map.default_css if name == "leaflet_css"]


def legend_template(symbol_rows: str) -> Template:
    """A page's legend box, the same on every page: its title, `symbol_rows` (the page's own symbols,
    Jinja over `this`), then `this.lines`, lines of text; a line with `note` stands out, one with a
    `hint` explains itself on hover."""
    template: Template = Template(
        """
        {% macro html(this, kwargs) %}
        <div class="wangge-ui wangge-legend" id="wangge-legend">
            <h4>{{ this.title|e }}</h4>"""
        + symbol_rows
        + """
            {%- for line in this.lines %}
            <div id="{{ line.id }}"{% if line.note %} class="note"{% endif %}
                 {%- if line.hint %} title="{{ line.hint|e }}"{% endif %}>{{ line.text|e }}</div>
            {%- endfor %}
        </div>
        {% endmacro %}
        """
    )
    return template


def add_pane(m: folium.Map, name: str, z_index: int, *, clickable: bool) -> None:
    """A named map pane with a fixed id (stable pages)."""
    pane = folium.map.CustomPane(name, z_index=z_index, pointer_events=clickable)
    pane._id = name.replace("-", "_")
    m.add_child(pane)


def add_online_tiles(m: folium.Map, tile_url: str | None, tile_attribution: str | None) -> None:
    """The optional on-line base map, as a layer that can be switched off; nothing when not configured."""
    if not tile_url:
        return
    tiles = folium.TileLayer(
        tiles=tile_url,
        attr=tile_attribution,
        name=labels.TILE_LAYER,
        overlay=True,
        control=True,
        show=True,
        max_zoom=MAX_ZOOM,
    )
    tiles._id = "online"
    m.add_child(tiles)


def new_page_map(
    title: str,
    *,
    badge_hint: str,
    synthetic: bool,
    location: Sequence[float],
    zoom_start: int,
    min_zoom: int | None,
    panes: Sequence[tuple[str, int, bool]],
    tile_url: str | None,
    tile_attribution: str | None,
    shell: Shell | None = None,
) -> folium.Map:
    """An empty page map: fixed ids, `title` in the title bar (with the synthetic-data badge when
    `synthetic`), the (name, z-index, clickable) `panes`, and the on-line base map when `tile_url`
    is given (it must be in WGS84 alignment, never a GCJ-02 one).

    With `shell` the page gets the shell's top bar (navigation, who is logged in, logout, the error
    banner; maps.shell) instead of the floating title, and loads only Leaflet from folium's defaults."""
    if tile_url and not tile_attribution:
        raise ValueError("an online base map needs its attribution (tile_attribution)")
    m = folium.Map(location=list(location), zoom_start=zoom_start, tiles=None, control_scale=True)
    # folium hands min/max zoom only to its own tile layer; without one they must be map options
    # or the zoom would be unbounded.
    m.options.update({**({"minZoom": min_zoom} if min_zoom is not None else {}), "maxZoom": MAX_ZOOM})
    # Fixed ids keep the page byte-for-byte stable between builds (cacheable, diffable).
    m._id = "wangge"
    cast(Figure, m.get_root()).title = html.escape(title)  # branca writes it into <title> unescaped
    if shell is not None:
        m.default_js = list(SHELL_DEFAULT_JS)
        m.default_css = list(SHELL_DEFAULT_CSS)
        chrome = ShellChrome(title, shell)
        chrome._id = "shell"
        m.add_child(chrome)
    else:
        m.add_child(PageChrome(title, labels.SYNTHETIC_BADGE if synthetic else None, badge_hint, BACKGROUND))
    for name, z_index, clickable in panes:
        add_pane(m, name, z_index, clickable=clickable)
    add_online_tiles(m, tile_url, tile_attribution)
    return m


def add_layer_control(m: folium.Map) -> None:
    control = folium.LayerControl(collapsed=False, position="topright")
    control._id = "wangge"
    m.add_child(control)


def _js_value(value: Exposed) -> str:
    if value is None:
        return "null"
    if isinstance(value, Element):
        return value.get_name()
    entries = [f"{json.dumps(str(key))}: {element.get_name()}" for key, element in value.items()]
    return "{" + ", ".join(entries) + "}"


class Registry(MacroElement):
    """Puts the map and the page's layers on window, runs the page's own script (constant code,
    never data) and marks the page ready."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        window.wanggeMap = {{ this._parent.get_name() }};
        {%- for name, value in this.assignments() %}
        window.{{ name }} = {{ value }};
        {%- endfor %}
        {%- if this.script %}
        {{ this.script }}
        {%- endif %}
        document.documentElement.setAttribute('data-wangge-ready', '1');
        {% endmacro %}
        """
    )

    def __init__(self, exposed: Mapping[str, Exposed], script: str = ""):
        super().__init__()  # type: ignore[no-untyped-call]
        bad = [name for name in exposed if not _JS_NAME.match(name)]
        if bad:
            raise ValueError(f"not JavaScript names: {bad}")
        self._name = "WanggeRegistry"
        self.exposed = dict(exposed)
        self.script = script

    def assignments(self) -> list[tuple[str, str]]:
        # Names are read when the page renders, after every layer has its final id.
        return [(name, _js_value(value)) for name, value in self.exposed.items()]


def finish_page(
    m: folium.Map,
    what: str,
    *,
    exposed: Mapping[str, Exposed],
    script: str = "",
    asset_prefix: str = DEFAULT_PREFIX,
    config: Mapping[str, Any] | None = None,
    scripts: Sequence[str] = (),
    styles: Sequence[str] = (),
) -> str:
    """Add the registry (last, so every layer exists when it runs) and render the page;
    `what` names the page in errors. On a shell page (`new_page_map(shell=...)`), `config` is the
    page's data as JSON (Wangge.config) and `scripts`/`styles` its own files (maps/static)."""
    chrome = next((c for c in m._children.values() if isinstance(c, ShellChrome)), None)
    if chrome is not None:
        chrome.config = dict(config or {})
        chrome.scripts = list(scripts)
        chrome.styles = list(styles)
    elif config or scripts or styles:
        raise ValueError("config, scripts and styles need a shell page (new_page_map(shell=...))")
    registry = Registry(exposed, script)
    registry._id = "registry"
    m.add_child(registry)
    return render_page(m, what, asset_prefix)
