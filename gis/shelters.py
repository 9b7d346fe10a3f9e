"""Shelters (安置点) as map features: name, kind and capacity at their point, optionally in a view."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

_SHELTERS = """
    SELECT id, name, kind, capacity, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM shelter
    WHERE CAST(:x0 AS float8) IS NULL OR geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)
    ORDER BY id
"""


def shelter_features(session: Session, bbox: tuple[float, float, float, float] | None = None) -> dict[str, Any]:
    """The shelters (inside `bbox` when given) as a GeoJSON FeatureCollection; no personal field."""
    x0, y0, x1, y1 = bbox if bbox is not None else (None, None, None, None)
    rows = session.execute(text(_SHELTERS), {"x0": x0, "y0": y0, "x1": x1, "y1": y1}).mappings()
    return {"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
        "properties": {"id": r["id"], "name": r["name"], "kind": r["kind"], "capacity": r["capacity"]},
    } for r in rows]}
