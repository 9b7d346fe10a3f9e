"""Terrain models for the flood scenarios: DEM import, river burning and conditioning (cached on disk per digest)."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
from shapely.geometry import MultiLineString
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.errors import InputError, NotFound, Problem
from gis.flood import hydrology

DEFAULT_BURN_DEPTH_M = 10.0

if TYPE_CHECKING:
    from gis.vector_files import ReadLimits


MAX_DEM_CELLS = 64_000_000


# Bump when the conditioning changes, so cached rasters of the old method are not reused.
METHOD_VERSION = "priority-flood+steepest-d8+hand-3"


@dataclass
class _Dem:
    """A DEM read from a file, on a metric grid."""

    data: np.ndarray  # float32, NaN = no data
    transform: Any  # affine.Affine
    crs: Any  # rasterio CRS (projected)


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


def _warp_to_metric(data: np.ndarray, transform: Any, src_crs: Any) -> _Dem:
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
    lines: list[Any] = []
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


def _to_crs(geom: Any, crs: Any, inverse: bool = False) -> Any:
    import pyproj

    metric = pyproj.CRS.from_user_input(crs.to_wkt())
    src, dst = ("EPSG:4326", metric) if not inverse else (metric, "EPSG:4326")
    tr = pyproj.Transformer.from_crs(src, dst, always_xy=True)
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
    cells: np.ndarray = hydrology.river_mask(
        list(_to_crs(rivers, dem.crs).geoms), dem.data.shape, dem.transform
    ) & np.isfinite(dem.data)
    return cells


def _condition(
    dem: _Dem, rivers: MultiLineString | None, burn: float, threshold: float | None
) -> hydrology.Conditioned:
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
) -> dict[str, Any]:
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
    from gis.flood.stages import precomputed_stages, scenario_extent

    stages = [scenario_extent(session, stage, mode, dem_name=name).stage_m
              for stage, mode in precomputed_stages()] if precompute else []
    return {"id": dem_id, "name": name, "digest": digest, "shape": list(dem.data.shape),
            "cell_m": abs(dem.transform.a), "stages_m": sorted(set(stages)), **_stats(store)}


def _stats(store: Path) -> dict[str, Any]:
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
    crs: Any  # rasterio CRS (untyped)
    transform: Any  # affine.Affine
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
            row = session.execute(text(sql + "ORDER BY created_at DESC, id DESC LIMIT 1")).one()
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


def list_dems(session: Session) -> list[dict[str, Any]]:
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


def _dem_by_id(session: Session, dem_id: int) -> _DemRow:
    name = session.execute(text("SELECT name FROM flood_dem WHERE id = :id"), {"id": dem_id}).scalar_one()
    return _dem_row(session, name)

def _read_limits() -> ReadLimits:
    from gis.settings import get_settings
    from gis.vector_files import ReadLimits

    return ReadLimits.from_settings(get_settings())
