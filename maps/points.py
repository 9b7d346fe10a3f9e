"""What the map pages with data by URL share (grids, incidents, households, hot spots): the page
around the map (the shell, the page's config, its scripts), the grid outlines' look, the view a page
opens on. No page embeds a feature: its script loads them for the view."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from maps.grid_map import LEVEL_STYLES
from maps.page import EMPTY_VIEW, finish_page, new_page_map

STATIC = "/static/wangge/"
COMMON_SCRIPT = STATIC + "view_layers.js"
STYLESHEET = STATIC + "datamaps.css"
# Only the outlines' colours and dashes come from the grid page: on the point pages they are
# context, so even the finest level needs a line that stays visible under the markers.
MIN_OUTLINE_WEIGHT = 1.5
# From this zoom the point pages outline the group grids too (below it, villages only).
GROUP_OUTLINE_ZOOM = 13

Bounds = list[list[float]]


def grid_label(name: str | None, code: str | None) -> str | None:
    """尹营村第一网格（411324105001001）: the name people know, the code that is unambiguous."""
    if name and code:
        return f"{name}（{code}）"
    return name or code


def outline_style(level: int) -> dict[str, Any]:
    s = LEVEL_STYLES[level]
    out = {"color": s["color"], "weight": max(s["weight"], MIN_OUTLINE_WEIGHT), "opacity": 0.9, "fill": False}
    if s["dashArray"]:
        out["dashArray"] = s["dashArray"]
    return out


def outline_styles() -> dict[str, dict[str, Any]]:
    """The outline look per level, keyed as the page's script reads it ("1" … "4")."""
    return {str(level): outline_style(level) for level in LEVEL_STYLES}


def grid_bounds(session: Session, codes: Iterable[str] | None) -> Bounds | None:
    """[[south, west], [north, east]] of the current grids `codes` (None: the whole town), or None
    when there is no such grid: the view a page opens on, one aggregate query whatever the size."""
    chosen = None if codes is None else sorted(set(codes))
    row = session.execute(
        text(
            "SELECT ST_XMin(e) AS w, ST_YMin(e) AS s, ST_XMax(e) AS e, ST_YMax(e) AS n FROM ("
            "SELECT ST_Extent(geom) AS e FROM grid WHERE valid_to IS NULL "
            "AND (CAST(:codes AS text[]) IS NULL OR code = ANY(:codes))) x"
        ),
        {"codes": chosen},
    ).one()
    if row.w is None:
        return None
    return [[float(row.s), float(row.w)], [float(row.n), float(row.e)]]


def data_map_page(
    *,
    title: str,
    shell: Any,
    script: str,
    config: Mapping[str, Any],
    bounds: Bounds | None,
    badge_hint: str,
    synthetic: bool,
    tile_url: str | None,
    tile_attribution: str | None,
    scripts: Sequence[str] = (),
) -> str:
    """A map page in the shell whose `script` (a file in maps/static) loads its layers by URL;
    `config` (data, never markup) is what that script reads as Wangge.config."""
    center, zoom = EMPTY_VIEW
    if bounds is not None:
        center = [(bounds[0][0] + bounds[1][0]) / 2, (bounds[0][1] + bounds[1][1]) / 2]
        zoom = 13
    m = new_page_map(
        title,
        shell=shell,
        badge_hint=badge_hint,
        synthetic=synthetic,
        location=center,
        zoom_start=zoom,
        min_zoom=3 if bounds is None else 6,
        panes=[],
        tile_url=tile_url,
        tile_attribution=tile_attribution,
    )
    return finish_page(
        m,
        title,
        exposed={},
        config={**config, "bounds": bounds},
        scripts=[*scripts, COMMON_SCRIPT, STATIC + script],
        styles=[STYLESHEET],
    )
