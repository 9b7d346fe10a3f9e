"""What the flood map draws, as GeoJSON for the part of the town in view: water by depth class,
shelters with the room left, household → shelter assignment lines, roads and the river, place names.

Each layer is clipped to the view (`bbox`) and, for lines and polygons, simplified to what a pixel
at `zoom` can show, so the page asks for only what it draws. The assignment lines come from the
flood households list (gis/flood/answers.py) with its access rule: a reader gets the lines of the
households they may see, and no personal field.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.auth.principal import Principal
from gis.flood import hydrology
from gis.flood.extent_row import FloodExtent

Bbox = tuple[float, float, float, float]
# The whole town when a caller gives no view.
WORLD: Bbox = (-180.0, -90.0, 180.0, 90.0)


def tolerance_deg(zoom: int) -> float:
    """Half a screen pixel at `zoom`, in degrees (256-pixel tiles): detail finer than this is not drawn."""
    return 360.0 / (256 * 2.0**zoom) / 2


def _collection(features: list[dict[str, Any]], **props: Any) -> dict[str, Any]:
    return {"type": "FeatureCollection", "properties": props, "features": features}


_CLIP = "ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)"


def _view(bbox: Bbox | None, zoom: int) -> dict[str, Any]:
    x0, y0, x1, y1 = bbox or WORLD
    return {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "tol": tolerance_deg(zoom)}


def water(session: Session, ext: FloodExtent, bbox: Bbox | None, zoom: int) -> dict[str, Any]:
    """The water of `ext` in view: one feature per depth class when modelled, else the extent itself
    (depth_class null)."""
    params = {**_view(bbox, zoom), "id": ext.id}
    shape = (f"ST_AsGeoJSON(ST_CollectionExtract(ST_SimplifyPreserveTopology("
             f"ST_Intersection(geom, {_CLIP}), :tol), 3), 6)")
    rows = session.execute(
        text(f"SELECT depth_class, area_m2, {shape} AS g FROM flood_extent_class "
             f"WHERE extent_id = :id AND geom && {_CLIP}"),
        params,
    ).all()
    order = {name: i for i, (name, _, _) in enumerate(hydrology.DEPTH_CLASSES)}
    features = [
        {"type": "Feature", "properties": {"depth_class": r.depth_class, "area_m2": round(r.area_m2, 1)},
         "geometry": json.loads(r.g)}
        for r in sorted(rows, key=lambda r: order.get(r.depth_class, 99))
    ]
    if not rows and ext.source != "model":
        whole = session.execute(
            text(f"SELECT area_m2, {shape} AS g FROM flood_extent WHERE id = :id AND geom && {_CLIP}"), params
        ).first()
        if whole is not None:
            features = [{"type": "Feature", "properties": {"depth_class": None, "area_m2": round(whole.area_m2, 1)},
                         "geometry": json.loads(whole.g)}]
    features = [f for f in features if f["geometry"]["coordinates"]]  # a class only touching the view
    return _collection(features, extent_id=ext.id, name=ext.name, source=ext.source, stage_m=ext.stage_m,
                       mode=ext.mode)


def shelters(session: Session, ext: FloodExtent | None, bbox: Bbox | None) -> dict[str, Any]:
    """Shelters in view with their capacity; with an extent, whether each is dry and the residents the
    extent's households list places there (the room left)."""
    from gis.flood.answers import households_page

    rows = session.execute(
        text(f"SELECT id, name, kind, capacity, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM shelter "
             f"WHERE geom && {_CLIP} ORDER BY id"),
        _view(bbox, 0),
    ).mappings().all()
    loads: dict[int, dict[str, Any]] = {}
    if ext is not None:
        # The shelters' loads are worked out over the whole extent (the same whoever asks): a trusted read.
        page = households_page(session, None, ext, limit=1, with_members=False)
        loads = {int(s["id"]): s for s in page.shelters}
        if not page.shelters:
            dry = session.execute(
                text("SELECT s.id, NOT ST_Intersects(s.geom, e.geom) FROM shelter s, flood_extent e WHERE e.id = :e"),
                {"e": ext.id},
            ).all()
            loads = {int(i): {"dry": bool(d), "assigned": 0} for i, d in dry}
    features = []
    for r in rows:
        load = loads.get(int(r["id"]), {})
        assigned = int(load.get("assigned", 0))
        features.append({
            "type": "Feature", "id": r["id"],
            "geometry": {"type": "Point", "coordinates": [r["lon"], r["lat"]]},
            "properties": {"id": r["id"], "name": r["name"], "kind": r["kind"], "capacity": r["capacity"],
                           "dry": load.get("dry"), "assigned": assigned if ext is not None else None,
                           "remaining": int(r["capacity"]) - assigned if ext is not None else None},
        })
    return _collection(features, extent_id=ext.id if ext is not None else None)


def assignment_lines(session: Session, principal: Principal, ext: FloodExtent, limit: int) -> dict[str, Any]:
    """A line from each household the reader may see (in rescue order, at most `limit`) to its shelter."""
    from gis.flood.answers import households_page

    page = households_page(session, principal, ext, limit=limit, with_members=False)
    features = []
    for h in page.items:
        if h.get("shelter_id") is None:
            continue
        features.append({
            "type": "Feature", "id": h["id"],
            "geometry": {"type": "LineString", "coordinates": [[h["lon"], h["lat"]],
                                                               [h["shelter_lon"], h["shelter_lat"]]]},
            "properties": {"household_id": h["id"], "household_no": h["household_no"],
                           "priority_rank": h["priority_rank"], "shelter_id": h["shelter_id"],
                           "shelter_name": h["shelter_name"], "distance_m": h["shelter_distance_m"]},
        })
    return _collection(features, extent_id=ext.id, households=page.total, returned=len(page.items))


def roads_and_rivers(session: Session, bbox: Bbox | None, zoom: int) -> dict[str, Any]:
    """Roads (kind road, with their class) and rivers (kind river) in view, simplified for `zoom`."""
    shape = f"ST_AsGeoJSON(ST_CollectionExtract(ST_Simplify(ST_Intersection(geom, {_CLIP}), :tol), 2), 6)"
    rows = session.execute(
        text(f"SELECT 'river' AS kind, id, name, NULL AS road_class, {shape} AS g FROM river "
             f"WHERE geom && {_CLIP} UNION ALL "
             f"SELECT 'road', id, name, road_class, {shape} FROM road WHERE geom && {_CLIP} ORDER BY 1, 2"),
        _view(bbox, zoom),
    ).all()
    features = []
    for r in rows:
        geom = json.loads(r.g)
        if not geom["coordinates"]:
            continue  # the view only touches the line at a point
        features.append({"type": "Feature", "id": f"{r.kind}-{r.id}", "geometry": geom,
                         "properties": {"kind": r.kind, "name": r.name, "road_class": r.road_class}})
    return _collection(features)


def places(session: Session, bbox: Bbox | None) -> dict[str, Any]:
    """Names to label: administrative villages (a point inside each village grid) and natural villages."""
    rows = session.execute(
        text(f"SELECT 'village' AS kind, code, name, ST_X(p) AS lon, ST_Y(p) AS lat FROM "
             f"(SELECT code, name, ST_PointOnSurface(geom) AS p FROM grid WHERE level = 3 AND valid_to IS NULL "
             f"AND geom && {_CLIP}) v WHERE p && {_CLIP} UNION ALL "
             f"SELECT 'natural_village', village_code, name, ST_X(geom), ST_Y(geom) FROM natural_village "
             f"WHERE geom && {_CLIP} ORDER BY 1 DESC, 2, 3"),
        _view(bbox, 0),
    ).all()
    return _collection([
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [r.lon, r.lat]},
         "properties": {"kind": r.kind, "name": r.name, "village_code": r.code}}
        for r in rows
    ])
