"""Modelled flood stages: the bounded set of stages, depth rasters and the extents computed from them.

Modelled stages form a bounded set (multiples of settings.flood_stage_step_m up to
settings.flood_max_stage_m, per DEM and mode). Those of settings.flood_precomputed_* and of the
named scenarios are computed when a DEM is imported; any other one only on an explicit request
(`scenario_extent`: POST /flood/scenarios, the CLI). Readers (`stored_scenario`, every GET) never
compute or store one: a stage not stored yet is StageNotComputed (404), saying how to compute it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import MultiPolygon
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.context import Context
from gis.errors import InputError, NotFound, Problem
from gis.flood import hydrology
from gis.flood import labels as L
from gis.flood.dem import _dem_row, _DemRow, _to_crs, conditioned
from gis.flood.extent_row import _EXTENT_SQL, FloodExtent, _as_multipolygon, _extent, _store_answer

MODES = ("fluvial", "pluvial")


@dataclass(frozen=True)
class NamedScenario:
    name: str
    stage_m: float
    mode: str
    title: str  # for people (Chinese UI)
    note: str


# The stage that reproduces the night of 2023-09-23 on the sample town: the 47 floodplain houses of
# the four low-lying villages stand at most 1.5 m above the channel, every other house there at
# least 2.5 m, so 2.0 m sits in the middle of that gap.
NAMED_SCENARIOS: dict[str, NamedScenario] = {
    "2023-09-23": NamedScenario(
        "2023-09-23", 2.0, "fluvial", "2023年9月23日夜 暴雨内涝（重现）",
        "river stage 2.0 m above the channel; reproduces the 47 flooded households",
    ),
}


class StageNotComputed(NotFound):
    """A modelled stage that is allowed but not stored yet: a reader may not compute it."""

    def __init__(self, loc: tuple[Any, ...], stage: float, mode: str, computed: list[float]):
        super().__init__(
            L.STAGE_NOT_COMPUTED.format(field=loc[-1], stage=stage, mode=mode,
                                        mode_name=L.MODE_NAMES.get(mode, mode),
                                        computed="、".join(f"{c:g}" for c in computed) or "无"),
            {"loc": list(loc), "stage_m": stage, "mode": mode, "computed_stages_m": computed,
             "compute": {"method": "POST", "path": "/flood/scenarios",
                         "body": {"stage_m": stage, "mode": mode}}},
        )


def stage_limits() -> tuple[float, float]:
    """(step, maximum) in metres: the modelled stages are the multiples of step up to maximum."""
    from gis.settings import get_settings

    settings = get_settings()
    return float(settings.flood_stage_step_m), float(settings.flood_max_stage_m)


def check_stage(stage_m: Any, mode: str, loc: tuple[Any, ...] = ("stage_m",)) -> float:
    step, top = stage_limits()
    try:
        stage = float(stage_m)
    except (TypeError, ValueError):
        raise InputError(Problem(loc, L.STAGE_RANGE.format(step=step, max=top, value=stage_m),
                                 "not_a_number")) from None
    # Centimetres: stages that differ below that are the same scenario (and the same cache row).
    stage = round(stage, 2) if math.isfinite(stage) else stage
    steps = stage / step if math.isfinite(stage) else math.nan
    if not (0 < stage <= top + 1e-9) or abs(steps - round(steps)) > 1e-6:
        raise InputError(Problem(loc, L.STAGE_RANGE.format(step=step, max=top, value=stage_m),
                                 "out_of_range"))
    if mode not in MODES:
        raise InputError(Problem(("mode",), f"one of {', '.join(MODES)}, got {mode!r}", "unknown_mode"))
    return stage


def precomputed_stages() -> list[tuple[float, str]]:
    """(stage, mode) computed whenever a DEM is imported: those configured, the named scenarios'."""
    from gis.settings import get_settings

    settings = get_settings()
    wanted = [(s, "fluvial") for s in settings.flood_precomputed_fluvial_m]
    wanted += [(s, "pluvial") for s in settings.flood_precomputed_pluvial_m]
    wanted += [(n.stage_m, n.mode) for n in NAMED_SCENARIOS.values()]
    loc = ("settings", "flood_precomputed_stages")
    return sorted({(check_stage(s, m, loc), m) for s, m in wanted}, key=lambda sm: (sm[1], sm[0]))


_DEPTHS: dict[tuple[str, float, str], np.ndarray] = {}


_DEPTHS_LOCK = threading.Lock()


_DEPTHS_KEPT = 6  # the planning stages (0.5, 1, 2, 3 m) and a named scenario or two


def depth_raster(row: _DemRow, stage_m: float, mode: str) -> np.ndarray:
    """Water depth (m, NaN where dry) on the DEM's grid; the last few are kept in memory."""
    key = (row.digest, float(stage_m), mode)
    with _DEPTHS_LOCK:
        found = _DEPTHS.pop(key, None)
        if found is not None:
            _DEPTHS[key] = found
            return found
    cond = conditioned(row)
    if mode == "fluvial":
        depth = hydrology.fluvial_depth(cond.hand, cond.drain, stage_m)
    else:
        depth = hydrology.pluvial_depth(cond.dem, cond.filled, cond.drain, stage_m)
    depth.flags.writeable = False  # shared between callers
    with _DEPTHS_LOCK:
        _DEPTHS[key] = depth
        while len(_DEPTHS) > _DEPTHS_KEPT:
            _DEPTHS.pop(next(iter(_DEPTHS)))
    return depth


def _depth_sampler(row: _DemRow, stage_m: float, mode: str) -> Callable[[np.ndarray], np.ndarray]:
    import pyproj

    tr = pyproj.Transformer.from_crs("EPSG:4326", pyproj.CRS.from_wkt(row.crs.to_wkt()), always_xy=True)
    def depth_at(lonlat: np.ndarray) -> np.ndarray:
        """Water depth (m) at lon/lat points, NaN where dry or off the DEM."""
        pts = np.asarray(lonlat, dtype=np.float64).reshape(-1, 2)
        x, y = tr.transform(pts[:, 0], pts[:, 1])
        return hydrology.sample(depth_raster(row, stage_m, mode), row.transform, np.asarray(x), np.asarray(y))

    return depth_at


def _scenario_name(stage_m: float, mode: str) -> str:
    return f"{'河道水位' if mode == 'fluvial' else '洼地积水'} {stage_m:g} m"


def computed_stages(session: Session, dem_id: int, mode: str) -> list[float]:
    return [float(v) for v in session.execute(
        text("SELECT stage_m FROM flood_extent WHERE source = 'model' AND dem_id = :d "
             "AND mode = :m ORDER BY stage_m"), {"d": dem_id, "m": mode}).scalars()]


def stored_scenario(session: Session, stage_m: float | str, mode: str = "fluvial",
                    dem_name: str | None = None, loc: tuple[Any, ...] = ("stage_m",)) -> FloodExtent:
    """The stored extent at `stage_m` (reads only): StageNotComputed when that stage has not been
    computed on the DEM yet, an InputError at `loc` when it is outside the allowed set."""
    stage = check_stage(stage_m, mode, loc)
    row = _dem_row(session, dem_name, import_sample=False)
    found = _find_model_extent(session, row, stage, mode)
    if found is None:
        raise StageNotComputed(loc, stage, mode, computed_stages(session, row.id, mode))
    return found


def scenario_extent(
    session: Session, stage_m: float, mode: str = "fluvial", dem_name: str | None = None
) -> FloodExtent:
    """The flood extent at `stage_m` metres above the channel (fluvial) or of ponding up to that
    depth (pluvial), on the named DEM or the latest one; computed and stored when missing (a write:
    DEM import, POST /flood/scenarios and the CLI only; readers use `stored_scenario`)."""
    stage = check_stage(stage_m, mode)
    row = _dem_row(session, dem_name)
    found = _find_model_extent(session, row, stage, mode)
    if found is not None:
        return found
    depth = depth_raster(row, stage, mode)
    wet = np.isfinite(depth)
    cell_area = abs(row.transform.a * row.transform.e)
    classes = hydrology.depth_classes(depth, row.transform)
    whole = _polygonise(wet, row.transform)
    geom = _to_wgs84_multipolygon(whole, row.crs)
    new_id = session.execute(
        text(
            "INSERT INTO flood_extent (name, source, stage_m, mode, dem_id, geom, area_m2) VALUES "
            "(:name, 'model', :stage, :mode, :dem, ST_GeomFromWKB(:geom, 4326), :area) "
            "ON CONFLICT ON CONSTRAINT one_model_extent_per_stage DO NOTHING RETURNING id"
        ),
        {"name": _scenario_name(stage, mode), "stage": stage, "mode": mode, "dem": row.id,
         "geom": shapely.to_wkb(geom), "area": float(np.count_nonzero(wet) * cell_area)},
    ).scalar_one_or_none()
    if new_id is None:  # another request stored the same scenario meanwhile
        return _stored_model_extent(session, row, stage, mode)
    for name, parts in classes.items():
        if not parts:
            continue
        local = MultiPolygon(parts)
        session.execute(
            text(
                "INSERT INTO flood_extent_class (extent_id, depth_class, geom, area_m2) "
                "VALUES (:id, :k, ST_GeomFromWKB(:geom, 4326), :area)"
            ),
            {"id": new_id, "k": name, "geom": shapely.to_wkb(_to_wgs84_multipolygon(local, row.crs)),
             "area": float(local.area)},
        )
    created = _stored_model_extent(session, row, stage, mode)
    _store_answer(session, created)
    return created


def _stored_model_extent(session: Session, row: _DemRow, stage: float, mode: str) -> FloodExtent:
    found = _find_model_extent(session, row, stage, mode)
    if found is None:
        raise RuntimeError(f"the {mode} {stage:g} m extent was stored in this transaction and is gone")
    return found


def _polygonise(mask: np.ndarray, transform: Any) -> MultiPolygon:
    from rasterio.features import shapes
    from shapely.geometry import shape

    parts = [shape(g) for g, _ in shapes(mask.astype(np.uint8), mask=mask, transform=transform)]
    return MultiPolygon(parts) if parts else MultiPolygon()


def _to_wgs84_multipolygon(geom: Any, crs: Any) -> MultiPolygon:
    if geom.is_empty:
        return MultiPolygon()
    out = _to_crs(geom, crs, inverse=True)
    if not out.is_valid:
        out = shapely.make_valid(out)
    return _as_multipolygon(out)


def _find_model_extent(session: Session, row: _DemRow, stage: float, mode: str) -> FloodExtent | None:
    found = session.execute(
        text(_EXTENT_SQL + "WHERE dem_id = :d AND stage_m = :s AND mode = :m"),
        {"d": row.id, "s": stage, "m": mode},
    ).one_or_none()
    if found is None:
        return None
    return _extent(session, found, _depth_sampler(row, stage, mode))


def named_scenario(session: Session, name: str, *, stored_only: bool = False,
                   loc: tuple[Any, ...] = ("scenario",)) -> FloodExtent:
    """A scenario known by name (e.g. "2023-09-23"), as its stage on the latest DEM (only when
    already stored, with `stored_only`)."""
    named = NAMED_SCENARIOS.get(str(name).strip())
    if named is None:
        raise NotFound(f"no scenario named {name!r}; known: {', '.join(NAMED_SCENARIOS)}")
    if stored_only:
        extent = stored_scenario(session, named.stage_m, named.mode, loc=loc)
    else:
        extent = scenario_extent(session, named.stage_m, named.mode)
    extent.name = named.name
    return extent


def scenario(session: Session, stage_or_name: str, mode: str = "fluvial", *,
             stored_only: bool = False) -> FloodExtent:
    """A stage in metres ("1.5") or a scenario name ("2023-09-23"); with `stored_only` (readers)
    only one already stored."""
    value = str(stage_or_name).strip()
    loc = ("path", "stage_or_name")
    if value in NAMED_SCENARIOS:
        return named_scenario(session, value, stored_only=stored_only, loc=loc)
    try:
        stage = float(value.removesuffix("m").strip())
    except ValueError:
        raise NotFound(
            f"{stage_or_name!r} is neither a stage in metres nor a scenario name "
            f"({', '.join(NAMED_SCENARIOS)})"
        ) from None
    stage = check_stage(stage, mode, loc)
    if stored_only:
        return stored_scenario(session, stage, mode, loc=loc)
    return scenario_extent(session, stage, mode)


def compute_stage(session: Session, ctx: Context, stage_m: float, mode: str = "fluvial",
                  loc: tuple[Any, ...] = ("body", "stage_m")) -> FloodExtent:
    """A modelled stage of the allowed set, computed and stored when missing, with its households
    list (worked out again when the data changed since); audited (`flood_extent_model`)."""
    from gis.flood.answers import ensure_answer

    stage = check_stage(stage_m, mode, loc)
    extent = scenario_extent(session, stage, mode)
    ensure_answer(session, extent)
    ctx.audit(session, "flood_extent_model", resource="flood_extent", resource_ids=[extent.id],
              detail={"stage_m": stage, "mode": mode})
    return extent
