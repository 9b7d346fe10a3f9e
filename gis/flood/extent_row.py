"""A flood extent as stored: one row of `flood_extent` (MultiPolygon, EPSG:4326), whatever made it.

A modelled one also has its depth classes in `flood_extent_class` and can tell the water depth at
any point (`depth_at`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from sqlalchemy import text
from sqlalchemy.orm import Session

SOURCES = ("model", "upload", "drawn")


@dataclass
class FloodExtent:
    id: int
    name: str
    source: str
    stage_m: float | None
    # The polygon is read on first use (`geom`): a realistic extent has ~10^5 vertices (~50 ms to
    # read and parse), and a list page that reads a stored answer never needs it.
    load_geom: Callable[[], MultiPolygon] = field(repr=False)
    depth_at: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    mode: str | None = None
    dem_id: int | None = None
    area_m2: float = 0.0
    created_at: dt.datetime | None = None
    _geom: MultiPolygon | None = field(default=None, init=False, repr=False)

    @property
    def geom(self) -> MultiPolygon:
        """The extent (EPSG:4326)."""
        if self._geom is None:
            self._geom = self.load_geom()
        return self._geom


def _store_answer(session: Session, extent: FloodExtent | None) -> None:
    """A new extent's households list, worked out now, in the write that creates it (readers never write)."""
    from gis.flood.answers import store_answer

    if extent is not None:
        store_answer(session, extent)


def _as_multipolygon(geom: Any) -> MultiPolygon:
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    polys = [p for p in shapely.get_parts(geom) if isinstance(p, Polygon) and not p.is_empty]
    polys += [q for p in shapely.get_parts(geom) if isinstance(p, MultiPolygon) for q in p.geoms]
    return MultiPolygon(polys)


_EXTENT_SQL = "SELECT id, name, source, stage_m, mode, dem_id, area_m2, created_at FROM flood_extent "


def _extent(session: Session, r: Any, depth_at: Callable[[np.ndarray], np.ndarray] | None = None) -> FloodExtent:
    def load() -> MultiPolygon:
        wkb = session.execute(
            text("SELECT ST_AsBinary(geom) FROM flood_extent WHERE id = :id"), {"id": r.id}
        ).scalar_one()
        return _as_multipolygon(shapely.from_wkb(bytes(wkb)))

    return FloodExtent(
        id=r.id, name=r.name, source=r.source, stage_m=r.stage_m, load_geom=load, depth_at=depth_at,
        mode=r.mode, dem_id=r.dem_id, area_m2=r.area_m2, created_at=r.created_at,
    )
