"""Planning units of a village and their adjacency graph: what balanced suggestions are built from.

A unit is the smallest piece a planner moves between grids: a household (its Voronoi cell, clipped to
the village), a natural village (likewise, around its point) or an existing group grid (its polygon).
The cells of one village cover it exactly, so a grid made of cells is a union of cells and a plan made
of grids covers the village with no gap or overlap. Two units are neighbours when their cells share a
boundary of positive length (rook adjacency); the edge carries that length in metres.

Each unit's load is counted from what lies in its cell: the village's households, their residents, or
its incidents reported in the last `recent_days` days — the same rule a planner's check by point in
polygon uses, so the sums of a suggestion can be verified independently.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import networkx as nx
import numpy as np
import shapely
import shapely.geometry
from shapely import STRtree
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis import clock
from gis.codes import GridLevel
from gis.crs import metric_crs_for, metric_transformer
from gis.errors import InputError, NotFound, Problem

# Shared boundaries shorter than this (metres) are corners, not neighbours.
MIN_SHARED_M = 0.01


class UnitKind(StrEnum):
    HOUSEHOLD = "household"
    NATURAL_VILLAGE = "natural_village"
    GROUP = "group"


class Weight(StrEnum):
    HOUSEHOLDS = "households"
    RESIDENTS = "residents"
    INCIDENTS = "incidents"


@dataclass(frozen=True)
class Village:
    code: str
    name: str
    parent_code: str | None
    grid_id: int
    geom: BaseGeometry  # EPSG:4326
    group_codes: tuple[str, ...]  # its current group grids
    group_ids: tuple[int, ...] = ()  # their current versions' ids, in the same order


@dataclass(frozen=True)
class Unit:
    id: str  # household id, natural village id or group-grid code
    cell: BaseGeometry  # EPSG:4326, inside the village
    households: int
    residents: int
    incidents: int

    def load(self, weight: Weight) -> int:
        return {Weight.HOUSEHOLDS: self.households, Weight.RESIDENTS: self.residents,
                Weight.INCIDENTS: self.incidents}[weight]


@dataclass
class UnitGraph:
    """The units of one village and who neighbours whom.

    Node n of `graph` is `units[n]`, with attributes `load` (by `weight`), `area` (m²),
    `boundary_node` / `boundary_perim` (m of the village's outline it carries); edges carry
    `shared_perim` (m) — the attribute names GerryChain's GeographicPartition reads."""

    village: Village
    kind: UnitKind
    weight: Weight
    units: list[Unit]
    graph: nx.Graph[int]
    metric_crs: str

    @property
    def total_load(self) -> int:
        return sum(u.load(self.weight) for u in self.units)


def load_village(session: Session, code: str) -> Village:
    row = session.execute(
        text("SELECT id, code, name, parent_code, ST_AsBinary(geom) AS wkb FROM grid "
             "WHERE code = :code AND level = :level AND valid_to IS NULL"),
        {"code": code, "level": int(GridLevel.VILLAGE)},
    ).one_or_none()
    if row is None:
        raise NotFound(f"no current village (level 3) grid with code {code}")
    groups = session.execute(
        text("SELECT code, id FROM grid WHERE parent_code = :code AND level = :level AND valid_to IS NULL "
             "ORDER BY code"),
        {"code": code, "level": int(GridLevel.GROUP)},
    ).all()
    geom = shapely.make_valid(shapely.from_wkb(row.wkb))
    return Village(row.code, row.name, row.parent_code, int(row.id), geom, tuple(g.code for g in groups),
                   tuple(int(g.id) for g in groups))


def _xy(rows: Sequence[Any]) -> np.ndarray:
    """The (x, y) of SQL rows that have them, as an n × 2 array (0 × 2 when there are none)."""
    return np.array([(r.x, r.y) for r in rows], dtype=float).reshape(-1, 2)


def build_unit_graph(
    session: Session,
    village_code: str,
    *,
    kind: UnitKind = UnitKind.HOUSEHOLD,
    weight: Weight = Weight.HOUSEHOLDS,
    recent_days: int = 365,
    now: dt.datetime | None = None,
) -> UnitGraph:
    """The units of `village_code` (current grids) with their loads and rook adjacency."""
    village = load_village(session, village_code)
    homes = session.execute(
        text("SELECT h.id, ST_X(h.geom) AS x, ST_Y(h.geom) AS y, h.residents FROM household h "
             "JOIN household_grid hg ON hg.household_id = h.id WHERE hg.village_code = :code ORDER BY h.id"),
        {"code": village_code},
    ).all()
    home_xy = _xy(homes)
    if kind is UnitKind.HOUSEHOLD:
        ids, cells = _household_cells(village.geom, [str(r.id) for r in homes], home_xy)
    elif kind is UnitKind.NATURAL_VILLAGE:
        nvs = session.execute(
            text("SELECT id, ST_X(geom) AS x, ST_Y(geom) AS y FROM natural_village "
                 "WHERE village_code = :code ORDER BY id"),
            {"code": village_code},
        ).all()
        xy = _xy(nvs)
        ids, cells = _household_cells(village.geom, [str(r.id) for r in nvs], xy)
    else:
        rows = session.execute(
            text("SELECT code, ST_AsBinary(geom) AS wkb FROM grid WHERE parent_code = :code AND level = :level "
                 "AND valid_to IS NULL ORDER BY code"),
            {"code": village_code, "level": int(GridLevel.GROUP)},
        ).all()
        ids = [r.code for r in rows]
        cells = [_polygonal(shapely.intersection(shapely.make_valid(shapely.from_wkb(r.wkb)), village.geom))
                 for r in rows]
    if not ids:
        raise InputError(Problem(("query", "village"), f"village {village_code} has no {kind.value} units", "no_units"))

    incidents = session.execute(
        text("SELECT ST_X(geom) AS x, ST_Y(geom) AS y FROM incident "
             "WHERE village_code = :code AND occurred_at >= :since AND occurred_at <= :until"),
        {"code": village_code, "since": (now or clock.now()) - dt.timedelta(days=recent_days),
         "until": now or clock.now()},
    ).all()
    inc_xy = _xy(incidents)
    tree = STRtree(cells)
    home_of = _cell_of_points(tree, cells, home_xy)
    inc_of = _cell_of_points(tree, cells, inc_xy)
    n = len(ids)
    households = np.bincount(home_of, minlength=n)
    residents = np.bincount(home_of, weights=np.array([r.residents for r in homes], dtype=float), minlength=n)
    incident_counts = np.bincount(inc_of, minlength=n)
    units = [
        Unit(ids[i], cells[i], int(households[i]), int(round(residents[i])), int(incident_counts[i]))
        for i in range(n)
    ]
    c = shapely.centroid(village.geom)
    metric_crs = metric_crs_for(c.x, c.y)
    graph = _adjacency(units, village.geom, metric_crs, weight)
    return UnitGraph(village, kind, weight, units, graph, metric_crs)


def to_metric(geom: Any, metric_crs: str) -> Any:
    """`geom` (EPSG:4326, one geometry or an array) in `metric_crs`."""
    tr = metric_transformer(metric_crs)
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def _household_cells(
    village: BaseGeometry, ids: Sequence[str], xy: np.ndarray
) -> tuple[list[str], list[BaseGeometry]]:
    """Voronoi cells of the points `xy` clipped to `village`, one per distinct location.

    Points at the same spot (two households in one courtyard) share one cell: the unit id lists them
    joined by ','. The diagram is drawn with longitudes scaled by cos(latitude) so cells are those of
    ground distance; clipping happens in EPSG:4326 so the cells' union is the village polygon itself.
    A clipped cell cut in pieces by a bend of the outline keeps the piece around its point; the other
    pieces join the neighbour they share most boundary with, so every cell is one piece."""
    if len(ids) == 0:
        return [], []
    keys = np.round(xy, 9)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    groups: list[list[str]] = [[] for _ in range(len(uniq))]
    for i, g in enumerate(inverse):
        groups[int(g)].append(ids[i])
    unit_ids = [",".join(g) for g in groups]
    if len(uniq) == 1:
        return unit_ids, [village]
    scale = float(np.cos(np.radians(uniq[:, 1].mean())))
    scaled = uniq * np.array([scale, 1.0])
    minx, miny, maxx, maxy = village.bounds
    pad = 10 * max(maxx - minx, maxy - miny)
    extent = shapely.box(minx * scale - pad, miny - pad, maxx * scale + pad, maxy + pad)
    diagram = shapely.voronoi_polygons(shapely.multipoints(scaled), extend_to=extent)
    raw = list(shapely.get_parts(diagram))
    # voronoi_polygons does not keep the input order: match each cell to the point inside it.
    points = shapely.points(scaled)
    cell_tree = STRtree(raw)
    pi, ci = cell_tree.query(points, predicate="intersects")
    cell_of = np.full(len(uniq), -1)
    for p, c in zip(pi, ci, strict=True):
        if cell_of[p] < 0:
            cell_of[p] = c
    unscale = np.array([1.0 / scale, 1.0])
    clipped = []
    for p in range(len(uniq)):
        cell = shapely.transform(raw[int(cell_of[p])], lambda a: a * unscale)
        clipped.append(shapely.intersection(cell, village))
    return unit_ids, _one_piece_cells(clipped, uniq)


def _polygonal(geom: BaseGeometry) -> BaseGeometry:
    """Only the areas of an overlay's result (a touching edge or corner adds lines and points)."""
    parts = _polygons(geom)
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def _polygons(geom: BaseGeometry) -> list[Polygon]:
    return [g for g in shapely.get_parts(geom) if isinstance(g, Polygon) and not g.is_empty]


def _one_piece_cells(cells: list[BaseGeometry], xy: np.ndarray) -> list[BaseGeometry]:
    """Cells reduced to the piece around their point; stray pieces joined to a neighbour."""
    kept: list[BaseGeometry] = []
    strays: list[Polygon] = []
    for cell, (x, y) in zip(cells, xy, strict=True):
        parts = _polygons(cell)
        if len(parts) <= 1:
            kept.append(parts[0] if parts else cell)
            continue
        here = shapely.Point(x, y)
        best = min(range(len(parts)), key=lambda i: parts[i].distance(here))
        kept.append(parts[best])
        strays.extend(p for i, p in enumerate(parts) if i != best)
    for _ in range(3):
        if not strays:
            break
        tree = STRtree(kept)
        left: list[Polygon] = []
        for piece in strays:
            near = tree.query(piece, predicate="intersects")
            shared = [(shapely.intersection(piece.boundary, kept[int(j)].boundary).length, int(j)) for j in near]
            shared = [s for s in shared if s[0] > 0]
            if not shared:
                left.append(piece)
                continue
            j = max(shared)[1]
            kept[j] = shapely.union(kept[j], piece)
        strays = left
    for piece in strays:  # touching nothing but other strays: give it to the nearest cell
        j = int(np.argmin(shapely.distance(np.asarray(kept, dtype=object), piece)))
        kept[j] = shapely.union(kept[j], piece)
    return kept


def _cell_of_points(tree: STRtree, cells: Sequence[BaseGeometry], xy: np.ndarray) -> np.ndarray:
    """Index of the cell holding each point; a point outside all cells goes to the nearest one."""
    out = np.full(len(xy), -1, dtype=int)
    if len(xy) == 0:
        return out
    pts = shapely.points(xy)
    pi, ci = tree.query(pts, predicate="intersects")
    # A point on the line between two cells belongs to the lower index, for a stable answer.
    for p, c in sorted(zip(pi.tolist(), ci.tolist(), strict=True), reverse=True):
        out[p] = c
    missing = np.flatnonzero(out < 0)
    if len(missing):
        _, near = tree.query_nearest(pts[missing], return_distance=False, all_matches=False)
        out[missing] = near
    return out


def _adjacency(units: list[Unit], village: BaseGeometry, metric_crs: str, weight: Weight) -> nx.Graph[int]:
    cells_m = to_metric(np.asarray([u.cell for u in units], dtype=object), metric_crs)
    outline_m = to_metric(village.boundary, metric_crs)
    graph: nx.Graph[int] = nx.Graph()
    boundaries = shapely.boundary(cells_m)
    for i, u in enumerate(units):
        on_outline = float(shapely.intersection(boundaries[i], outline_m).length)
        graph.add_node(
            i, load=u.load(weight), area=float(shapely.area(cells_m[i])),
            boundary_perim=on_outline, boundary_node=on_outline > MIN_SHARED_M, unit_id=u.id,
        )
    tree = STRtree(cells_m)
    left, right = tree.query(cells_m, predicate="intersects")
    mask = left < right
    for i, j in zip(left[mask].tolist(), right[mask].tolist(), strict=True):
        shared = float(shapely.intersection(boundaries[i], boundaries[j]).length)
        if shared > MIN_SHARED_M:
            graph.add_edge(i, j, shared_perim=shared)
    return graph


def union_cells(cells: Sequence[BaseGeometry]) -> MultiPolygon:
    """The union of unit cells as a valid MultiPolygon (what a grid's geometry is stored as)."""
    merged = shapely.make_valid(shapely.union_all(np.asarray(cells, dtype=object)))
    polys = _polygons(merged)
    return MultiPolygon(polys)


def current_grid_of_units(session: Session, ug: UnitGraph) -> list[str | None]:
    """For each unit, the current group grid holding most of its cell (None outside them all)."""
    rows = session.execute(
        text("SELECT code, ST_AsBinary(geom) AS wkb FROM grid WHERE parent_code = :code AND level = :level "
             "AND valid_to IS NULL ORDER BY code"),
        {"code": ug.village.code, "level": int(GridLevel.GROUP)},
    ).all()
    if not rows:
        return [None] * len(ug.units)
    groups = [shapely.make_valid(shapely.from_wkb(r.wkb)) for r in rows]
    tree = STRtree(groups)
    out: list[str | None] = []
    for u in ug.units:
        near = tree.query(u.cell, predicate="intersects")
        shares = [(shapely.intersection(u.cell, groups[int(j)]).area, rows[int(j)].code) for j in near]
        out.append(max(shares)[1] if shares else None)
    return out


def unit_features(session: Session, ug: UnitGraph) -> dict[str, Any]:
    """The units as a GeoJSON FeatureCollection: cell, loads, and the current grid each lies in."""
    grids = current_grid_of_units(session, ug)
    return {
        "type": "FeatureCollection",
        "properties": {"village_code": ug.village.code, "village_name": ug.village.name, "unit_kind": ug.kind.value},
        "features": [
            {"type": "Feature", "id": u.id,
             "properties": {"unit_id": u.id, "households": u.households, "residents": u.residents,
                            "incidents": u.incidents, "grid_code": grids[i]},
             "geometry": shapely.geometry.mapping(u.cell)}
            for i, u in enumerate(ug.units)
        ],
    }
