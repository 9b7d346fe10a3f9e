"""Flood extents: modelled from a conditioned DEM (cached per DEM, stage and mode), uploaded, or drawn.

Every extent is a row of `flood_extent` (MultiPolygon, EPSG:4326); a modelled one also has its
depth classes in `flood_extent_class` and can tell the water depth at any point (`depth_at`).
Conditioned rasters live on disk under `<data_dir>/flood/<digest>/`, named by a digest of the DEM,
the rivers and the method, and are rebuilt from the source DEM when that directory is missing.

Modelled stages form a bounded set (multiples of settings.flood_stage_step_m up to
settings.flood_max_stage_m, per DEM and mode). Those of settings.flood_precomputed_* and of the
named scenarios are computed when a DEM is imported; any other one only on an explicit request
(`scenario_extent`: POST /flood/scenarios, the CLI). Readers (`stored_scenario`, every GET) never
compute or store one: a stage not stored yet is StageNotComputed (404), saying how to compute it.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import MultiLineString, MultiPolygon, Polygon
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.errors import InputError, NotFound, Problem
from gis.flood import hydrology
from gis.flood import labels as L

SOURCES = ("model", "upload", "drawn")
MODES = ("fluvial", "pluvial")
DEFAULT_BURN_DEPTH_M = 10.0
MAX_DEM_CELLS = 64_000_000
# Bump when the conditioning changes, so cached rasters of the old method are not reused.
METHOD_VERSION = "priority-flood+steepest-d8+hand-3"


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

    def __init__(self, loc: tuple, stage: float, mode: str, computed: list[float]):
        super().__init__(
            L.STAGE_NOT_COMPUTED.format(field=loc[-1], stage=stage, mode=mode,
                                        mode_name=L.MODE_NAMES.get(mode, mode),
                                        computed="、".join(f"{c:g}" for c in computed) or "无"),
            {"loc": list(loc), "stage_m": stage, "mode": mode, "computed_stages_m": computed,
             "compute": {"method": "POST", "path": "/flood/scenarios",
                         "body": {"stage_m": stage, "mode": mode}}},
        )


@dataclass
class FloodExtent:
    id: int
    name: str
    source: str
    stage_m: float | None
    geom: MultiPolygon  # EPSG:4326
    depth_at: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    mode: str | None = None
    dem_id: int | None = None
    area_m2: float = 0.0
    created_at: object = None


# ----------------------------------------------------------------------------- DEM import


@dataclass
class _Dem:
    """A DEM read from a file, on a metric grid."""

    data: np.ndarray  # float32, NaN = no data
    transform: object  # affine.Affine
    crs: object  # rasterio CRS (projected)


def _dem_problem(msg: str, type_: str = "bad_dem", field_: str = "file") -> InputError:
    return InputError(Problem((field_,), msg, type_), "Cannot use the DEM")


def read_dem(path: Path, crs: str | None = None) -> _Dem:
    """A single-band elevation raster (GeoTIFF or any GDAL raster) on a metric grid.

    A DEM in degrees is warped to the local metric CRS (bilinear, about the same cell size)."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.errors import RasterioIOError

    path = Path(path)
    if not path.is_file():
        raise _dem_problem(f"no such file: {path.name}", "unreadable_file")
    try:
        src = rasterio.open(path)
    except RasterioIOError:
        raise _dem_problem(f"{path.name} is not a raster GDAL can read (GeoTIFF expected)", "not_a_raster") from None
    with src:
        if src.count < 1:
            raise _dem_problem("the raster has no bands")
        if src.width * src.height > MAX_DEM_CELLS:
            raise _dem_problem(
                f"the raster has {src.width} x {src.height} cells; at most {MAX_DEM_CELLS} are allowed",
                "too_large",
            )
        if src.width < 3 or src.height < 3:
            raise _dem_problem("the raster is smaller than 3 x 3 cells")
        if crs:
            try:
                src_crs = CRS.from_user_input(crs if ":" in crs else f"EPSG:{crs}")
            except Exception:
                raise _dem_problem(f"unknown CRS {crs!r}", "invalid_crs", "crs") from None
        elif src.crs is not None:
            src_crs = src.crs
        else:
            raise _dem_problem("the raster declares no CRS; say which with --crs EPSG:<code>", "no_crs")
        if src.transform.b != 0 or src.transform.d != 0:
            raise _dem_problem("rotated rasters are not supported; warp the DEM north-up first")
        band = src.read(1, masked=True)
        data = np.ma.filled(band.astype(np.float32), np.nan)
        transform = src.transform
    data[~np.isfinite(data)] = np.nan
    # Heights outside what the earth holds are no-data markers a file forgot to declare.
    data[(data < -500.0) | (data > 9000.0)] = np.nan
    if not np.isfinite(data).any():
        raise _dem_problem("the raster holds no valid elevations", "empty_dem")
    if src_crs.is_geographic:
        return _warp_to_metric(data, transform, src_crs)
    if not src_crs.is_projected:
        raise _dem_problem("the raster's CRS is neither projected nor geographic", "invalid_crs")
    if abs(abs(transform.a) - abs(transform.e)) > 1e-6 * abs(transform.a):
        raise _dem_problem("cells must be square (D8 needs equal x and y spacing); resample the DEM first")
    return _Dem(data, transform, src_crs)


def _warp_to_metric(data, transform, src_crs) -> _Dem:
    from rasterio.crs import CRS
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    from gis.crs import metric_crs_for

    h, w = data.shape
    left, top = transform.c, transform.f
    right, bottom = left + transform.a * w, top + transform.e * h
    lon, lat = (left + right) / 2.0, (top + bottom) / 2.0
    if not (
        min(left, right) >= -180 and max(left, right) <= 180 and min(top, bottom) >= -90 and max(top, bottom) <= 90
    ):
        raise _dem_problem("the raster says it is in degrees but its coordinates are not", "wrong_crs")
    dst_crs = CRS.from_user_input(metric_crs_for(lon, lat))
    dst_t, dw, dh = calculate_default_transform(src_crs, dst_crs, w, h, left, bottom, right, top)
    cell = max(abs(dst_t.a), abs(dst_t.e))
    dst_t, dw, dh = calculate_default_transform(
        src_crs, dst_crs, w, h, left, bottom, right, top, resolution=(cell, cell)
    )
    out = np.full((dh, dw), np.nan, dtype=np.float32)
    reproject(
        data, out, src_transform=transform, src_crs=src_crs, src_nodata=np.nan,
        dst_transform=dst_t, dst_crs=dst_crs, dst_nodata=np.nan, resampling=Resampling.bilinear,
    )
    return _Dem(out, dst_t, dst_crs)


def read_river_file(path: Path, crs: str | None = None) -> MultiLineString:
    """River lines (any vector file the grid reader takes) as one MultiLineString in EPSG:4326."""
    from gis.vector_files import geometries_in_wgs84 as _to_wgs84
    from gis.vector_files import read_features as _read_raw

    path = Path(path)
    if not path.is_file():
        raise InputError(Problem(("rivers",), f"no such file: {path.name}", "unreadable_file"))
    raw, default_wgs84 = _read_raw(path, None, _read_limits())
    geoms = _to_wgs84(raw, crs, default_wgs84)
    lines = []
    for g in geoms:
        if g is None or g.is_empty:
            continue
        if g.geom_type in ("Polygon", "MultiPolygon"):
            g = g.boundary  # a river drawn as an area: its banks still carry the channel
        lines.extend(p for p in shapely.get_parts(g) if p.geom_type in ("LineString", "LinearRing"))
    if not lines:
        raise InputError(Problem(("rivers",), "the file holds no river lines", "empty_file"))
    return MultiLineString([shapely.LineString(ln.coords) for ln in lines])


def _rivers_from_db(session: Session) -> MultiLineString | None:
    wkb = session.execute(
        text("SELECT ST_AsBinary(ST_Multi(ST_Union(geom))) FROM river WHERE NOT ST_IsEmpty(geom)")
    ).scalar_one_or_none()
    if wkb is None:
        return None
    geom = shapely.from_wkb(bytes(wkb))
    return geom if isinstance(geom, MultiLineString) else MultiLineString(list(shapely.get_parts(geom)))


def _to_crs(geom, crs, inverse: bool = False):
    import pyproj

    tr = pyproj.Transformer.from_crs(
        *(
            ("EPSG:4326", pyproj.CRS.from_user_input(crs.to_wkt()))
            if not inverse
            else (pyproj.CRS.from_user_input(crs.to_wkt()), "EPSG:4326")
        ),
        always_xy=True,
    )
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def _digest(dem: _Dem, rivers: MultiLineString | None, burn: float, threshold: float | None) -> str:
    h = hashlib.sha256()
    h.update(METHOD_VERSION.encode())
    h.update(dem.crs.to_wkt().encode())
    h.update(json.dumps(list(dem.transform)[:6]).encode())
    h.update(str(dem.data.shape).encode())
    h.update(np.ascontiguousarray(dem.data).tobytes())
    h.update(b"" if rivers is None else shapely.to_wkb(rivers))
    h.update(f"{burn}|{threshold}".encode())
    return h.hexdigest()


_RASTERS = ("dem", "filled", "d8", "accumulation", "drain", "hand")


def _flood_dir() -> Path:
    from gis.settings import get_settings

    return get_settings().data_dir / "flood"


def _river_cells(dem: _Dem, rivers: MultiLineString) -> np.ndarray:
    return hydrology.river_mask(list(_to_crs(rivers, dem.crs).geoms), dem.data.shape, dem.transform) & np.isfinite(
        dem.data
    )


def _condition(dem: _Dem, rivers: MultiLineString | None, burn: float, threshold: float | None):
    mask = None
    if rivers is not None:
        mask = _river_cells(dem, rivers)
        if not mask.any():
            raise InputError(Problem(("rivers",), "the river lines do not cross the DEM", "rivers_outside_dem"))
    cell_area = abs(dem.transform.a * dem.transform.e)
    return hydrology.condition(
        dem.data, mask, cell_area_m2=cell_area, burn_depth_m=burn, accumulation_threshold_km2=threshold
    )


def _save_rasters(store: Path, cond: hydrology.Conditioned) -> None:
    import os

    tmp = store.with_name(f"{store.name}.tmp{os.getpid()}-{threading.get_ident()}")
    tmp.mkdir(parents=True, exist_ok=True)
    for name in _RASTERS:
        np.save(tmp / f"{name}.npy", getattr(cond, name))
    try:
        tmp.rename(store)
    except OSError:
        if not store.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process stored the same content first


def import_dem(
    session: Session,
    path: Path,
    *,
    name: str | None = None,
    rivers: MultiLineString | None = None,
    use_db_rivers: bool = True,
    crs: str | None = None,
    burn_depth_m: float = DEFAULT_BURN_DEPTH_M,
    accumulation_threshold_km2: float | None = None,
    precompute: bool = True,
) -> dict:
    """Read, condition and store a DEM (replacing one of the same name, and its cached extents),
    then compute the precomputed stages on it (`precomputed_stages`) unless `precompute` is off.

    Rivers: `rivers` (EPSG:4326) when given, else the `river` table when `use_db_rivers` and its
    lines cross the DEM; with neither, drainage comes from `accumulation_threshold_km2` (default
    1 km² then)."""
    path = Path(path)
    name = (name or path.stem).strip()
    if not name:
        raise InputError(Problem(("name",), "give the DEM a name", "missing"))
    if not (0 < burn_depth_m <= 100):
        raise InputError(Problem(("burn_depth_m",), "between 0 and 100 m", "out_of_range"))
    dem = read_dem(path, crs)
    if rivers is None and use_db_rivers:
        rivers = _rivers_from_db(session)
        if rivers is not None and not _river_cells(dem, rivers).any():
            rivers = None  # the stored rivers are elsewhere: drain by upstream area instead
    if rivers is None and accumulation_threshold_km2 is None:
        accumulation_threshold_km2 = 1.0
    digest = _digest(dem, rivers, burn_depth_m, accumulation_threshold_km2)
    store = _flood_dir() / digest
    if not (store / "hand.npy").exists():
        cond = _condition(dem, rivers, burn_depth_m, accumulation_threshold_km2)
        _save_rasters(store, cond)
        _CACHE.put(digest, cond)
    source_copy = store / "source.tif"
    if not source_copy.exists():
        _write_geotiff(source_copy, dem)
    # Two first uses at once (two requests finding no DEM yet) must not both insert the same name.
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext('flood_dem:' || :n))"), {"n": name})
    old = session.execute(
        text("SELECT id, digest FROM flood_dem WHERE name = :n FOR UPDATE"), {"n": name}
    ).one_or_none()
    values = {
        "name": name,
        "crs": dem.crs.to_wkt(),
        "transform": json.dumps(list(dem.transform)[:6]),
        "height": int(dem.data.shape[0]),
        "width": int(dem.data.shape[1]),
        "digest": digest,
        "source_path": str(source_copy),
        "store_path": str(store),
        "rivers": None if rivers is None else shapely.to_wkb(rivers),
        "burn": float(burn_depth_m),
        "threshold": accumulation_threshold_km2,
        "stats": json.dumps(_stats(store)),
    }
    if old is not None:
        dem_id = old.id
        if old.digest != digest:
            session.execute(text("DELETE FROM flood_extent WHERE dem_id = :id"), {"id": dem_id})
        session.execute(
            text(
                "UPDATE flood_dem SET crs = :crs, transform = CAST(:transform AS jsonb), height = :height, "
                "width = :width, digest = :digest, source_path = :source_path, store_path = :store_path, "
                "rivers = ST_GeomFromWKB(:rivers, 4326), burn_depth_m = :burn, "
                "accumulation_threshold_km2 = :threshold, stats = CAST(:stats AS jsonb), created_at = now() "
                "WHERE id = :id"
            ),
            {**values, "id": dem_id},
        )
    else:
        dem_id = session.execute(
            text(
                "INSERT INTO flood_dem (name, crs, transform, height, width, digest, source_path, store_path, "
                "rivers, burn_depth_m, accumulation_threshold_km2, stats) VALUES (:name, :crs, "
                "CAST(:transform AS jsonb), :height, :width, :digest, :source_path, :store_path, "
                "ST_GeomFromWKB(:rivers, 4326), :burn, :threshold, CAST(:stats AS jsonb)) RETURNING id"
            ),
            values,
        ).scalar_one()
    # The bounded set readers may ask for right away: computed now, in the import's transaction.
    stages = [scenario_extent(session, stage, mode, dem_name=name).stage_m
              for stage, mode in precomputed_stages()] if precompute else []
    return {"id": dem_id, "name": name, "digest": digest, "shape": list(dem.data.shape),
            "cell_m": abs(dem.transform.a), "stages_m": sorted(set(stages)), **_stats(store)}


def _stats(store: Path) -> dict:
    drain = np.load(store / "drain.npy", mmap_mode="r")
    hand = np.load(store / "hand.npy", mmap_mode="r")
    return {
        "drainage_cells": int(np.count_nonzero(drain)),
        "cells_with_hand": int(np.count_nonzero(np.isfinite(hand))),
    }


def _write_geotiff(path: Path, dem: _Dem) -> None:
    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    import os

    tmp = path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}.tif")
    with rasterio.open(
        tmp, "w", driver="GTiff", dtype="float32", width=dem.data.shape[1], height=dem.data.shape[0],
        count=1, crs=dem.crs, transform=dem.transform, nodata=np.nan, compress="deflate", tiled=True,
    ) as dst:
        dst.write(dem.data, 1)
    tmp.rename(path)


# ----------------------------------------------------------------------------- conditioned cache


class _ConditionedCache:
    """The last few conditioned DEMs in memory (a sample-town DEM is ~40 MB of rasters)."""

    def __init__(self, size: int = 3):
        self.size = size
        self.items: dict[str, hydrology.Conditioned] = {}
        self.lock = threading.Lock()

    def get(self, digest: str) -> hydrology.Conditioned | None:
        with self.lock:
            item = self.items.pop(digest, None)
            if item is not None:
                self.items[digest] = item
            return item

    def put(self, digest: str, cond: hydrology.Conditioned) -> None:
        with self.lock:
            self.items.pop(digest, None)
            self.items[digest] = cond
            while len(self.items) > self.size:
                self.items.pop(next(iter(self.items)))


_CACHE = _ConditionedCache()


@dataclass
class _DemRow:
    id: int
    name: str
    crs: object
    transform: object
    digest: str
    source_path: str
    store_path: str
    rivers: MultiLineString | None
    burn_depth_m: float
    accumulation_threshold_km2: float | None


def _dem_row(session: Session, dem_name: str | None, import_sample: bool = True) -> _DemRow:
    """The named DEM or the latest one; with none imported yet, `import_sample` imports the one the
    loaded dataset names (a write: never on a reader's path)."""
    import affine
    from rasterio.crs import CRS

    sql = (
        "SELECT id, name, crs, transform, digest, source_path, store_path, ST_AsBinary(rivers) AS rivers, "
        "burn_depth_m, accumulation_threshold_km2 FROM flood_dem "
    )
    if dem_name:
        row = session.execute(text(sql + "WHERE name = :n"), {"n": dem_name}).one_or_none()
        if row is None:
            raise NotFound(f"no DEM named {dem_name!r}; import one with `wangge flood dem import`")
    else:
        row = session.execute(text(sql + "ORDER BY created_at DESC, id DESC LIMIT 1")).one_or_none()
        if row is None:
            if not import_sample:
                raise NotFound("no DEM is loaded; import one with `wangge flood dem import FILE`")
            _import_sample_dem(session)
            row = session.execute(text(sql + "ORDER BY created_at DESC, id DESC LIMIT 1")).one_or_none()
    return _DemRow(
        id=row.id, name=row.name, crs=CRS.from_wkt(row.crs), transform=affine.Affine(*row.transform),
        digest=row.digest, source_path=row.source_path, store_path=row.store_path,
        rivers=None if row.rivers is None else shapely.from_wkb(bytes(row.rivers)),
        burn_depth_m=row.burn_depth_m, accumulation_threshold_km2=row.accumulation_threshold_km2,
    )


def _import_sample_dem(session: Session) -> None:
    """No DEM imported yet: use the one the loaded dataset names (the sample town's), if any."""
    from gis.dataset_info import dataset_info

    info = dataset_info(session, "dem")
    if not info or not info.get("path") or not Path(info["path"]).is_file():
        raise NotFound("no DEM is loaded; import one with `wangge flood dem import FILE`")
    import_dem(session, Path(info["path"]), name="sample" if info.get("synthetic") else "dataset")


def conditioned(row: _DemRow) -> hydrology.Conditioned:
    """The conditioned rasters of a stored DEM: memory, then disk, else rebuilt from the source."""
    cond = _CACHE.get(row.digest)
    if cond is not None:
        return cond
    store = Path(row.store_path)
    if all((store / f"{n}.npy").exists() for n in _RASTERS):
        cond = hydrology.Conditioned(**{n: np.load(store / f"{n}.npy") for n in _RASTERS})
    else:
        source = Path(row.source_path)
        if not source.is_file():
            raise NotFound(
                f"the conditioned rasters and the source of DEM {row.name!r} are gone; import it again"
            )
        dem = read_dem(source)
        cond = _condition(dem, row.rivers, row.burn_depth_m, row.accumulation_threshold_km2)
        _save_rasters(store, cond)
    _CACHE.put(row.digest, cond)
    return cond


# ----------------------------------------------------------------------------- scenarios


def stage_limits() -> tuple[float, float]:
    """(step, maximum) in metres: the modelled stages are the multiples of step up to maximum."""
    from gis.settings import get_settings

    settings = get_settings()
    return float(settings.flood_stage_step_m), float(settings.flood_max_stage_m)


def check_stage(stage_m, mode: str, loc: tuple = ("stage_m",)) -> float:
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


def stored_scenario(session: Session, stage_m: float, mode: str = "fluvial",
                    dem_name: str | None = None, loc: tuple = ("stage_m",)) -> FloodExtent:
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
        return _find_model_extent(session, row, stage, mode)
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
    return _find_model_extent(session, row, stage, mode)


def _polygonise(mask: np.ndarray, transform) -> MultiPolygon:
    from rasterio.features import shapes
    from shapely.geometry import shape

    parts = [shape(g) for g, _ in shapes(mask.astype(np.uint8), mask=mask, transform=transform)]
    return MultiPolygon(parts) if parts else MultiPolygon()


def _to_wgs84_multipolygon(geom, crs) -> MultiPolygon:
    if geom.is_empty:
        return MultiPolygon()
    out = _to_crs(geom, crs, inverse=True)
    if not out.is_valid:
        out = shapely.make_valid(out)
    return _as_multipolygon(out)


def _as_multipolygon(geom) -> MultiPolygon:
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    polys = [p for p in shapely.get_parts(geom) if isinstance(p, Polygon) and not p.is_empty]
    polys += [q for p in shapely.get_parts(geom) if isinstance(p, MultiPolygon) for q in p.geoms]
    return MultiPolygon(polys)


_EXTENT_SQL = (
    "SELECT id, name, source, stage_m, mode, dem_id, ST_AsBinary(geom) AS geom, area_m2, created_at "
    "FROM flood_extent "
)


def _find_model_extent(session: Session, row: _DemRow, stage: float, mode: str) -> FloodExtent | None:
    found = session.execute(
        text(_EXTENT_SQL + "WHERE dem_id = :d AND stage_m = :s AND mode = :m"),
        {"d": row.id, "s": stage, "m": mode},
    ).one_or_none()
    if found is None:
        return None
    return _extent(found, _depth_sampler(row, stage, mode))


def _extent(r, depth_at=None) -> FloodExtent:
    return FloodExtent(
        id=r.id, name=r.name, source=r.source, stage_m=r.stage_m,
        geom=_as_multipolygon(shapely.from_wkb(bytes(r.geom))), depth_at=depth_at, mode=r.mode,
        dem_id=r.dem_id, area_m2=r.area_m2, created_at=r.created_at,
    )


def named_scenario(session: Session, name: str, *, stored_only: bool = False,
                   loc: tuple = ("scenario",)) -> FloodExtent:
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


def list_dems(session: Session) -> list[dict]:
    """The imported DEMs (no rasters), newest first."""
    rows = session.execute(
        text(
            "SELECT id, name, height, width, transform, burn_depth_m, accumulation_threshold_km2, stats, "
            "rivers IS NOT NULL AS has_rivers, created_at FROM flood_dem ORDER BY created_at DESC, id DESC"
        )
    ).mappings()
    out = []
    for r in rows:
        d = dict(r)
        d["cell_m"] = abs(d.pop("transform")[0])
        d["created_at"] = d["created_at"].isoformat() if d["created_at"] else None
        out.append(d)
    return out


# ----------------------------------------------------------------------------- uploaded / drawn


def _area_m2(geom: MultiPolygon) -> float:
    from gis.crs import metric_crs_for, metric_transformer

    if geom.is_empty:
        return 0.0
    c = geom.centroid
    tr = metric_transformer(metric_crs_for(c.x, c.y))
    local = shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    return float(local.area)


def save_extent(
    session: Session,
    geom,
    source: str,
    name: str,
    user_id: int | None = None,
    input_crs: str | None = None,
) -> FloodExtent:
    """Store an uploaded or drawn flood extent (`geom` a (Multi)Polygon in EPSG:4326)."""
    if source not in ("upload", "drawn"):
        raise InputError(Problem(("source",), "an uploaded or drawn extent ('upload' or 'drawn')", "bad_source"))
    name = (name or "").strip()
    if not name:
        raise InputError(Problem(("name",), "give the extent a name", "missing"))
    if len(name) > 200:
        raise InputError(Problem(("name",), "at most 200 characters", "too_long"))
    if geom is None or geom.is_empty:
        raise InputError(Problem(("geometry",), "the extent is empty", "empty_geometry"))
    if not isinstance(geom, Polygon | MultiPolygon):
        raise InputError(
            Problem(("geometry",), f"a Polygon or MultiPolygon, got {geom.geom_type}", "bad_geometry_type")
        )
    geom = _as_multipolygon(shapely.force_2d(geom))
    if not geom.is_valid:
        raise InputError(
            Problem(("geometry",), f"invalid polygon: {shapely.is_valid_reason(geom)}", "invalid_geometry")
        )
    minx, miny, maxx, maxy = geom.bounds
    if not (minx >= -180 and maxx <= 180 and miny >= -90 and maxy <= 90):
        raise InputError(Problem(("geometry",), "coordinates are not longitude/latitude", "wrong_crs"))
    new_id = session.execute(
        text(
            "INSERT INTO flood_extent (name, source, geom, area_m2, input_crs, created_by_user) VALUES "
            "(:name, :source, ST_GeomFromWKB(:geom, 4326), :area, :crs, :user) RETURNING id"
        ),
        {"name": name, "source": source, "geom": shapely.to_wkb(geom), "area": _area_m2(geom),
         "crs": input_crs, "user": user_id},
    ).scalar_one()
    return get_extent(session, new_id)


def _read_limits():
    from gis.settings import get_settings
    from gis.vector_files import ReadLimits

    return ReadLimits.from_settings(get_settings())


def read_extent_file(path: Path, crs: str | None = None, limits=None) -> MultiPolygon:
    """The polygons of a GeoJSON / KML / zipped Shapefile / GeoPackage file as one MultiPolygon in
    EPSG:4326 (`crs` = gcj02 | bd09 | EPSG:code when the file does not say, or to override it)."""
    try:
        return _read_extent_file(path, crs, limits)
    except InputError as exc:
        if exc.title == "Invalid coordinate system":
            raise
        raise InputError(exc.problems, "Cannot read the flood extent file") from None


def _read_extent_file(path: Path, crs: str | None, limits) -> MultiPolygon:
    from gis.crs import parse_crs
    from gis.vector_files import as_multipolygon as grid_multipolygon
    from gis.vector_files import file_error as _file_error
    from gis.vector_files import geometries_in_wgs84 as _to_wgs84
    from gis.vector_files import read_features as _read_raw

    limits = limits or _read_limits()
    path = Path(path)
    if crs is not None and str(crs).strip():
        parse_crs(crs, "crs")
    if not path.is_file():
        raise _file_error("the file does not exist", "unreadable_file")
    size = path.stat().st_size
    if size == 0:
        raise _file_error("the file is empty", "empty_file")
    if size > limits.max_file_bytes:
        raise _file_error(f"the file is larger than {limits.max_file_bytes} bytes", "file_too_large")
    raw, default_wgs84 = _read_raw(path, None, limits)
    if len(raw) == 0 or raw.geometry.isna().all():
        raise _file_error("the file holds no features", "empty_file")
    if len(raw) > limits.max_features:
        raise _file_error(f"the file has {len(raw)} features; at most {limits.max_features}", "too_many_features")
    vertices = int(shapely.get_num_coordinates(np.asarray(raw.geometry.array, dtype=object)).sum())
    if vertices > limits.max_vertices_per_geometry:
        raise _file_error(
            f"the extent has {vertices} vertices; at most {limits.max_vertices_per_geometry}", "too_many_vertices"
        )
    geoms = _to_wgs84(raw, crs, default_wgs84)
    polys: list[Polygon] = []
    problems: list[Problem] = []
    for i, g in enumerate(geoms, start=1):
        if g is None or g.is_empty:
            continue
        mp = grid_multipolygon(shapely.force_2d(g))
        if mp is None:
            problems.append(Problem(("features", i, "geometry"), f"feature {i} is a {g.geom_type}, not a polygon",
                                    "bad_geometry_type"))
            continue
        if not mp.is_valid:
            problems.append(Problem(("features", i, "geometry"),
                                    f"feature {i} is not a valid polygon: {shapely.is_valid_reason(mp)}",
                                    "invalid_geometry"))
            continue
        polys.extend(mp.geoms)
    if problems:
        raise InputError(problems[:50], "Cannot read the flood extent file")
    if not polys:
        raise _file_error("the file holds no polygons", "empty_file")
    # Features of one survey may overlap (two flights over the same field): dissolve them.
    return _as_multipolygon(shapely.union_all(polys))


# ----------------------------------------------------------------------------- reading


def get_extent(session: Session, extent_id: int) -> FloodExtent:
    r = session.execute(text(_EXTENT_SQL + "WHERE id = :id"), {"id": int(extent_id)}).one_or_none()
    if r is None:
        raise NotFound(f"no flood extent has the id {extent_id}")
    depth_at = None
    if r.source == "model":
        row = _dem_by_id(session, r.dem_id)
        depth_at = _depth_sampler(row, r.stage_m, r.mode)
    return _extent(r, depth_at)


def _dem_by_id(session: Session, dem_id: int) -> _DemRow:
    name = session.execute(text("SELECT name FROM flood_dem WHERE id = :id"), {"id": dem_id}).scalar_one()
    return _dem_row(session, name)


def list_extents(session: Session, source: str | None = None) -> list[dict]:
    """Every stored extent (without geometry), newest first."""
    if source is not None and source not in SOURCES:
        raise InputError(Problem(("query", "source"), f"one of {', '.join(SOURCES)}", "unknown_source"))
    rows = session.execute(
        text(
            "SELECT e.id, e.name, e.source, e.stage_m, e.mode, e.dem_id, d.name AS dem_name, e.area_m2, "
            "e.created_at, e.created_by_user, ST_NPoints(e.geom) AS vertices, "
            "ST_XMin(e.geom) AS xmin, ST_YMin(e.geom) AS ymin, ST_XMax(e.geom) AS xmax, ST_YMax(e.geom) AS ymax "
            "FROM flood_extent e LEFT JOIN flood_dem d ON d.id = e.dem_id "
            "WHERE (CAST(:source AS text) IS NULL OR e.source = :source) ORDER BY e.created_at DESC, e.id DESC"
        ),
        {"source": source},
    ).mappings()
    out = []
    for r in rows:
        d = dict(r)
        d["created_at"] = d["created_at"].isoformat() if d["created_at"] else None
        box = [d.pop(k) for k in ("xmin", "ymin", "xmax", "ymax")]
        d["bbox"] = None if box[0] is None else [round(v, 6) for v in box]
        out.append(d)
    return out


def extent_classes(session: Session, extent_id: int) -> list[dict]:
    """The depth classes of a modelled extent: class, area and GeoJSON geometry."""
    rows = session.execute(
        text(
            "SELECT depth_class, area_m2, ST_AsGeoJSON(geom, 7) AS geojson FROM flood_extent_class "
            "WHERE extent_id = :id"
        ),
        {"id": int(extent_id)},
    ).all()
    order = {name: i for i, (name, _, _) in enumerate(hydrology.DEPTH_CLASSES)}
    return sorted(
        ({"depth_class": r.depth_class, "area_m2": r.area_m2, "geometry": json.loads(r.geojson)} for r in rows),
        key=lambda d: order[d["depth_class"]],
    )


def extent_feature_collection(session: Session, extent: FloodExtent) -> dict:
    """GeoJSON: the extent as one feature, then one feature per depth class (when modelled)."""
    props = {
        "id": extent.id, "name": extent.name, "source": extent.source, "stage_m": extent.stage_m,
        "mode": extent.mode, "dem_id": extent.dem_id, "area_m2": round(extent.area_m2, 1),
        "created_at": extent.created_at.isoformat() if extent.created_at else None,
    }
    features = [{"type": "Feature", "properties": {"kind": "extent", **props},
                 "geometry": shapely.geometry.mapping(extent.geom)}]
    for c in extent_classes(session, extent.id):
        features.append({
            "type": "Feature",
            "properties": {"kind": "depth_class", "extent_id": extent.id, "depth_class": c["depth_class"],
                           "area_m2": round(c["area_m2"], 1)},
            "geometry": c["geometry"],
        })
    return {"type": "FeatureCollection", "properties": props, "features": features}
