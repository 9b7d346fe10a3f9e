"""Point to grid: which grid at every level holds a point, by one deterministic rule.

The rule, for a point P (EPSG:4326):
1. Candidates are the current grids whose closed polygon contains P (interior or boundary).
2. Among the candidates of the deepest level present, the grid with the smallest code wins; its
   ancestors follow from the parent chain, so the four levels always agree with each other.
3. `on_boundary` is true when P lies on the boundary of that grid (so it also touched a neighbour,
   or the town's outer edge).
4. A point that no grid contains is "outside": the answer names the nearest group grid and the
   geodesic distance to it in metres.
Many points are answered by one query (unnest), so bulk callers and the single-point API share
the same code path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION
from sqlalchemy.orm import Session


@dataclass
class GridRef:
    code: str
    name: str
    level: int
    parent_code: str | None


@dataclass
class Location:
    lon: float
    lat: float
    inside: bool
    on_boundary: bool = False
    # Level -> grid, from the town (1) down to the deepest level that contains the point.
    path: dict[int, GridRef] = field(default_factory=dict)
    candidates: int = 0
    nearest: GridRef | None = None
    distance_m: float | None = None

    @property
    def deepest(self) -> GridRef | None:
        return self.path[max(self.path)] if self.path else None


_CONTAINING = text(
    """
    WITH pts AS (
        SELECT t.i, ST_SetSRID(ST_MakePoint(t.x, t.y), 4326) AS g
        FROM unnest(:xs, :ys) WITH ORDINALITY AS t(x, y, i)
    )
    SELECT p.i, c.code, c.n, c.on_edge
    FROM pts p
    LEFT JOIN LATERAL (
        SELECT g.code,
               count(*) OVER () AS n,
               ST_Intersects(ST_Boundary(g.geom), p.g) AS on_edge
        FROM grid g
        WHERE g.valid_to IS NULL AND ST_Intersects(g.geom, p.g)
        ORDER BY g.level DESC, g.code
        LIMIT 1
    ) c ON true
    """
).bindparams(
    bindparam("xs", type_=ARRAY(DOUBLE_PRECISION)), bindparam("ys", type_=ARRAY(DOUBLE_PRECISION))
)

_NEAREST = text(
    """
    WITH pts AS (
        SELECT t.i, ST_SetSRID(ST_MakePoint(t.x, t.y), 4326) AS g
        FROM unnest(:xs, :ys) WITH ORDINALITY AS t(x, y, i)
    )
    SELECT p.i, n.code, n.d
    FROM pts p
    CROSS JOIN LATERAL (
        SELECT k.code, ST_Distance(k.geom::geography, p.g::geography) AS d
        FROM (
            SELECT g.code, g.geom FROM grid g
            WHERE g.valid_to IS NULL
              AND g.level = (SELECT max(level) FROM grid WHERE valid_to IS NULL)
            ORDER BY g.geom <-> p.g
            LIMIT 8
        ) k
        ORDER BY d, k.code
        LIMIT 1
    ) n
    """
).bindparams(
    bindparam("xs", type_=ARRAY(DOUBLE_PRECISION)), bindparam("ys", type_=ARRAY(DOUBLE_PRECISION))
)


def current_hierarchy(session: Session) -> dict[str, GridRef]:
    rows = session.execute(
        text("SELECT code, name, level, parent_code FROM grid WHERE valid_to IS NULL")
    )
    return {r.code: GridRef(r.code, r.name, r.level, r.parent_code) for r in rows}


def path_to_town(code: str, hierarchy: dict[str, GridRef]) -> dict[int, GridRef]:
    path: dict[int, GridRef] = {}
    ref = hierarchy.get(code)
    while ref is not None:
        path[ref.level] = ref
        ref = hierarchy.get(ref.parent_code) if ref.parent_code else None
    return path


def locate_points(session: Session, lons, lats) -> list[Location]:
    """Locate many WGS84 points at once; the i-th answer belongs to the i-th point."""
    xs = np.asarray(lons, dtype=float).tolist()
    ys = np.asarray(lats, dtype=float).tolist()
    if not xs:
        return []
    hierarchy = current_hierarchy(session)
    out = [Location(lon=x, lat=y, inside=False) for x, y in zip(xs, ys, strict=True)]
    outside: list[int] = []
    for i, code, n, on_edge in session.execute(_CONTAINING, {"xs": xs, "ys": ys}):
        loc = out[i - 1]
        if code is None:
            outside.append(i - 1)
            continue
        loc.inside = True
        loc.path = path_to_town(code, hierarchy)
        loc.candidates = int(n)
        loc.on_boundary = bool(on_edge)
    if outside:
        params = {"xs": [xs[i] for i in outside], "ys": [ys[i] for i in outside]}
        for j, code, d in session.execute(_NEAREST, params):
            loc = out[outside[j - 1]]
            loc.nearest = hierarchy.get(code)
            loc.distance_m = float(d)
    return out
