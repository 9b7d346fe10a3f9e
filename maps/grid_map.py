"""The four-level grid map page: levels loaded for the view from the grid list, a grid's card (staff,
households) when its popup opens (maps/static/grids.js), the hillshade as an image by URL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis import households as hh
from gis import tiles as tile_layers
from gis.errors import NotFound
from gis.people import staff_by_grid
from maps import labels

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


# The zoom from which each level is loaded (below it a level would be too many polygons to read).
MIN_ZOOM = {1: 0, 2: 0, 3: 9, 4: 12}


def title(session: Session, synthetic: bool) -> str:
    if synthetic:
        return labels.SYNTHETIC_PAGE_TITLE
    towns = session.execute(text("SELECT name FROM grid WHERE level = 1 AND valid_to IS NULL")).scalars().all()
    return f"{labels.PAGE_TITLE} — {towns[0]}" if len(towns) == 1 and towns[0] else labels.PAGE_TITLE


def page_config(*, limit: int, hillshade_bounds: Sequence[Sequence[float]] | None, synthetic: bool) -> dict[str, Any]:
    """What maps/static/grids.js reads: where the levels and cards are, how each level looks, the
    hillshade's URL and corners, and the page's Chinese."""
    return {
        "grids_url": "/grids",
        "card_url": "/grids/{code}/card",
        "limit": limit,
        "min_zoom": MIN_ZOOM,
        "styles": {level: _style(level) for level in LEVELS},
        "highlights": {level: _highlight(level) for level in LEVELS},
        "outline_styles": {level: _outline_style(level) for level in LINE_PANES},
        "fill_panes": {level: list(p) for level, p in FILL_PANES.items()},
        "line_panes": {level: list(p) for level, p in LINE_PANES.items()},
        "level_names": {str(k): v for k, v in labels.LEVEL_LAYER_NAMES.items()},
        "staff_roles": labels.STAFF_ROLES,
        "hillshade": None if hillshade_bounds is None else {
            "url": "/grids/hillshade.png",
            "bounds": [[float(v) for v in corner] for corner in hillshade_bounds],
        },
        "synthetic_note": labels.SYNTHETIC_BADGE_HINT if synthetic else None,
        # The group grids of a view too large for one answer come as vector tiles (api/tiles.py).
        "tiles": {"url": "/tiles/grids/{z}/{x}/{y}.pbf", "maxzoom": tile_layers.LAYERS["grids"].maxzoom},
        "text": {
            "legend_title": labels.LEGEND_TITLE,
            "legend_hillshade": labels.LEGEND_HILLSHADE,
            "hillshade": labels.HILLSHADE_LAYER,
            "blank": labels.UNKNOWN,
            "none_recorded": labels.NONE_RECORDED,
            "loading": labels.LOADING,
            "zoom_in": labels.ZOOM_IN_FOR_GRIDS,
            "code": labels.POPUP_CODE,
            "name": labels.POPUP_NAME,
            "level": labels.POPUP_LEVEL,
            "parent": labels.POPUP_PARENT,
            "staff": labels.POPUP_STAFF,
            "households": labels.POPUP_HOUSEHOLDS,
            "household_unit": labels.HOUSEHOLD_UNIT,
        },
    }


def grid_card(session: Session, code: str) -> dict[str, Any]:
    """One current grid as its popup shows it: names, its staff (public by design: the grid's
    board) and how many households it serves (by the house -> grid rule); no personal field."""
    row = session.execute(
        text(
            "SELECT g.code, g.name, g.level, g.parent_code, p.name AS parent_name FROM grid g "
            "LEFT JOIN grid p ON p.code = g.parent_code AND p.valid_to IS NULL "
            "WHERE g.code = :code AND g.valid_to IS NULL"
        ),
        {"code": code},
    ).mappings().first()
    if row is None:
        raise NotFound(f"no current grid {code}")
    households = session.execute(
        text(f"SELECT count(*) FROM household h WHERE {hh.IN_GRID}"), {"grid_code": code}
    ).scalar_one()
    staff = [
        {"role": p["role"], "name": p["name"], "phone": p["phone"]}
        for p in staff_by_grid(session, [code]).get(code, [])
    ]
    return {**dict(row), "level": int(row["level"]), "staff": staff, "households": int(households)}
