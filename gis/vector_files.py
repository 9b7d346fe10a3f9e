"""Reading vector files safely (GeoJSON, GeoPackage, zipped Shapefile, KML): bounded in size,
features and vertices, archives checked before extraction, coordinates brought to EPSG:4326.

Grid boundaries (gis/grids/io.py), flood extents and river lines are read through it.
"""

from __future__ import annotations

import math
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from gis.crs import CoordSystem, from_pyproj, parse_crs, transform_geometry
from gis.errors import InputError, Problem
from gis.settings import Settings

# The title of a problem with a file as read; a reader of one kind of file (grids) may give its own.
FILE_TITLE = "Cannot read the file"

SUFFIXES = {
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".gpkg": "GeoPackage",
    ".zip": "zipped Shapefile",
    ".kml": "KML",
}

# Entries this small cannot do harm however well they compress.
_RATIO_MIN_BYTES = 1 << 20
_COPY_CHUNK = 1 << 20


_SETTING_DEFAULTS = Settings.model_fields


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what an upload may cost to read."""

    # The defaults are the service's configured defaults (gis.settings), declared there once.
    max_file_bytes: int = _SETTING_DEFAULTS["max_upload_bytes"].default
    max_features: int = _SETTING_DEFAULTS["max_features_per_file"].default
    max_vertices_per_geometry: int = _SETTING_DEFAULTS["max_vertices_per_geometry"].default
    max_zip_entries: int = _SETTING_DEFAULTS["max_zip_entries"].default
    max_unzipped_bytes: int = _SETTING_DEFAULTS["max_unzipped_bytes"].default
    max_compression_ratio: float = 200.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ReadLimits:
        """The caps configured for uploads (gis.settings.Settings)."""
        return cls(
            max_file_bytes=settings.max_upload_bytes,
            max_features=settings.max_features_per_file,
            max_vertices_per_geometry=settings.max_vertices_per_geometry,
            max_zip_entries=settings.max_zip_entries,
            max_unzipped_bytes=settings.max_unzipped_bytes,
        )


def file_error(msg: str, type_: str, ctx: dict[str, Any] | None = None, title: str = FILE_TITLE) -> InputError:
    """A problem with the file as a whole (not one feature of it)."""
    return InputError(Problem(("file",), msg, type_, ctx), title)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"


# --- zip handling ---------------------------------------------------------------------


def _unsafe(msg: str, ctx: dict[str, Any] | None = None) -> InputError:
    return file_error(msg, "unsafe_archive", ctx, "Refused archive")


def _check_zip_entries(zf: zipfile.ZipFile, limits: ReadLimits) -> list[zipfile.ZipInfo]:
    """Refuse an archive from its directory alone, before a single byte is extracted."""
    infos = zf.infolist()
    if len(infos) > limits.max_zip_entries:
        raise _unsafe(
            f"the zip has {len(infos)} entries; at most {limits.max_zip_entries} are allowed",
            {"entries": len(infos), "limit": limits.max_zip_entries},
        )
    total = 0
    for info in infos:
        name = info.filename
        parts = re.split(r"[\\/]+", name)
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
            raise _unsafe(f"the zip entry {name!r} points outside the archive", {"entry": name})
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _unsafe(f"the zip entry {name!r} is a symbolic link", {"entry": name})
        if info.flag_bits & 0x1:
            raise _unsafe(f"the zip entry {name!r} is encrypted", {"entry": name})
        if info.is_dir():
            continue
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _RATIO_MIN_BYTES and ratio > limits.max_compression_ratio:
            raise _unsafe(
                f"the zip entry {name!r} expands {ratio:.0f} times; this looks like a zip bomb",
                {"entry": name, "ratio": round(ratio, 1), "limit": limits.max_compression_ratio},
            )
    if total > limits.max_unzipped_bytes:
        raise _unsafe(
            f"the zip expands to {_mb(total)}; "
            f"at most {_mb(limits.max_unzipped_bytes)} are allowed",
            {"unzipped_bytes": total, "limit": limits.max_unzipped_bytes},
        )
    return infos


def _extract_zip(path: Path, dest: Path, limits: ReadLimits) -> None:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise file_error(
            f"the file is not a readable zip archive ({exc})", "unreadable_file"
        ) from None
    with zf:
        infos = _check_zip_entries(zf, limits)
        root = dest.resolve()
        written = 0
        for info in infos:
            if info.is_dir():
                continue
            target = (dest / PurePosixPath(info.filename.replace("\\", "/"))).resolve()
            if root not in target.parents:
                raise _unsafe(
                    f"the zip entry {info.filename!r} points outside the archive",
                    {"entry": info.filename},
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            # Sizes in the zip directory are attacker-controlled, so count what actually comes out.
            entry_bytes = 0
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(_COPY_CHUNK):
                        entry_bytes += len(chunk)
                        written += len(chunk)
                        if entry_bytes > info.file_size or written > limits.max_unzipped_bytes:
                            raise _unsafe(
                                f"the zip entry {info.filename!r} expands beyond "
                                "its declared size or the size limit",
                                {"entry": info.filename},
                            )
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
                raise file_error(
                    f"cannot extract {info.filename!r} from the zip ({exc})", "unreadable_file"
                ) from None


def _pick_shapefile(dest: Path, layer: str | None) -> Path:
    shps = sorted(
        p
        for p in dest.rglob("*")
        if p.suffix.lower() == ".shp"
        and p.is_file()
        and "__MACOSX" not in p.parts
        and not p.name.startswith("._")
    )
    if not shps:
        raise file_error("the zip holds no .shp file", "no_shapefile")
    if len(shps) > 1:
        if layer:
            chosen = [p for p in shps if p.stem == layer]
            if len(chosen) == 1:
                return chosen[0]
        names = ", ".join(p.relative_to(dest).as_posix() for p in shps)
        raise file_error(
            f"the zip holds {len(shps)} shapefiles ({names}); keep one, or name it with layer=",
            "several_shapefiles",
            {"shapefiles": [p.relative_to(dest).as_posix() for p in shps]},
        )
    return shps[0]


def _shapefile_encoding(shp: Path) -> str | None:
    """An encoding to force for a .dbf that does not say its own, else None (let GDAL decide)."""
    if any(shp.with_suffix(s).exists() for s in (".cpg", ".CPG")):
        return None
    dbf = next((shp.with_suffix(s) for s in (".dbf", ".DBF") if shp.with_suffix(s).exists()), None)
    if dbf is None:
        return None
    with open(dbf, "rb") as f:
        header = f.read(32)
    # Byte 29 is the dBASE language driver id; 0 means "not stated", where GDAL would
    # assume Latin-1 and garble the GBK text Chinese desktop GIS writes.
    if len(header) < 30 or header[29] != 0:
        return None
    return "utf-8"


# --- reading --------------------------------------------------------------------------


def _read_layer(
    path: Path, layer: str | int | None, limits: ReadLimits, encoding: str | None = None
) -> gpd.GeoDataFrame:
    try:
        info = pyogrio.read_info(path, layer=layer, force_feature_count=True, encoding=encoding)
        count = int(info.get("features") or 0)
        if count > limits.max_features:
            raise file_error(
                f"the file has {count} features; at most {limits.max_features} are allowed",
                "too_many_features",
                {"features": count, "limit": limits.max_features},
            )
        return gpd.read_file(path, layer=layer, engine="pyogrio", encoding=encoding)
    except InputError:
        raise
    except UnicodeDecodeError:
        # Text that is not UTF-8 in a .dbf without a .cpg is GBK in practice (gb18030 covers it).
        if encoding and encoding.lower().replace("-", "") == "utf8":
            return _read_layer(path, layer, limits, "gb18030")
        raise file_error(
            "the attribute table uses an unknown text encoding; add a .cpg file", "unreadable_file"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any GDAL failure means the upload is unreadable
        raise file_error(f"cannot read the file: {_short(exc)}", "unreadable_file") from None


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _list_layers(path: Path) -> list[tuple[str, str | None]]:
    try:
        return [(str(n), None if g is None else str(g)) for n, g in pyogrio.list_layers(path)]
    except Exception as exc:  # noqa: BLE001
        raise file_error(f"cannot read the file: {_short(exc)}", "unreadable_file") from None


def _choose_layer(path: Path, layer: str | None) -> str:
    layers = _list_layers(path)
    names = [n for n, _ in layers]
    if layer is not None:
        if layer not in names:
            raise InputError(
                Problem(
                    ("layer",),
                    f"no layer {layer!r} in the file; it has: {', '.join(names)}",
                    "unknown_layer",
                ),
                FILE_TITLE,
            )
        return layer
    spatial = [n for n, g in layers if g is not None]
    if len(spatial) == 1:
        return spatial[0]
    if not spatial:
        raise file_error("the file has no layer with geometries", "empty_file")
    raise file_error(
        f"the file has {len(spatial)} layers ({', '.join(spatial)}); say which with layer=",
        "several_layers",
        {"layers": spatial},
    )


def _read_kml(path: Path, layer: str | None, limits: ReadLimits) -> gpd.GeoDataFrame:
    # KML folders become separate layers; a file split into folders is still one set of grids.
    if layer is not None:
        return _read_layer(path, _choose_layer(path, layer), limits)
    frames = []
    total = 0
    for name, _ in _list_layers(path):
        gdf = _read_layer(path, name, limits)
        total += len(gdf)
        if total > limits.max_features:
            raise file_error(
                f"the file has more than {limits.max_features} features",
                "too_many_features",
                {"limit": limits.max_features},
            )
        if len(gdf):
            frames.append(gdf)
    if not frames:
        raise file_error("the file holds no features", "empty_file")
    return gpd.GeoDataFrame(
        pd.concat(frames, ignore_index=True), geometry="geometry", crs=frames[0].crs
    )


def read_features(path: Path, layer: str | None, limits: ReadLimits) -> tuple[gpd.GeoDataFrame, bool]:
    """The file's first layer as read, and whether a missing CRS means WGS84 (GeoJSON, KML)."""
    suffix = path.suffix.lower()
    if suffix in (".geojson", ".json"):
        return _read_layer(path, None, limits), True
    if suffix == ".gpkg":
        return _read_layer(path, _choose_layer(path, layer), limits), False
    if suffix == ".kml":
        return _read_kml(path, layer, limits), True
    if suffix == ".zip":
        tmp = Path(tempfile.mkdtemp(prefix="wangge-zip-"))
        try:
            _extract_zip(path, tmp, limits)
            shp = _pick_shapefile(tmp, layer)
            gdf = _read_layer(shp, None, limits, _shapefile_encoding(shp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return gdf, False
    raise file_error(
        f"unsupported file type {suffix or '(none)'!r}: "
        "use .geojson, .json, .gpkg, .zip (Shapefile) or .kml",
        "unsupported_format",
    )


def as_multipolygon(geom: BaseGeometry | None) -> MultiPolygon | None:
    """The geometry as a MultiPolygon, or None when it is not polygonal."""
    if geom is None or geom.is_empty:
        return MultiPolygon()
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon([geom])
    if geom.geom_type == "GeometryCollection":
        polys = []
        for part in geom.geoms:
            mp = as_multipolygon(part)
            if mp is None:
                return None
            polys.extend(mp.geoms)
        return MultiPolygon(polys)
    return None


def _check_crs_fit(geoms: np.ndarray, label: str, stated: bool) -> None:
    present = geoms[~shapely.is_empty(geoms) & ~shapely.is_missing(geoms)]
    if not len(present):
        return
    xmin, ymin, xmax, ymax = shapely.total_bounds(present)
    if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)):
        raise file_error("the file has coordinates that are not finite numbers", "bad_coordinates")
    source = f"crs={label}" if stated else f"the file declares {label}"
    if xmin >= 3 and xmax <= 54 and ymin >= 73 and ymax <= 136:
        raise file_error(
            f"coordinates look swapped (latitude first) but {source}; give longitude first",
            "wrong_crs",
            {"bounds": [xmin, ymin, xmax, ymax]},
        )
    if max(abs(xmin), abs(xmax)) > 180 or max(abs(ymin), abs(ymax)) > 90:
        raise file_error(
            f"coordinates look projected (metres) but {source}",
            "wrong_crs",
            {"bounds": [xmin, ymin, xmax, ymax]},
        )


def _check_projected_fit(geoms: np.ndarray, label: str, stated: bool) -> None:
    present = geoms[~shapely.is_empty(geoms) & ~shapely.is_missing(geoms)]
    if not len(present):
        return
    xmin, ymin, xmax, ymax = shapely.total_bounds(present)
    # Real grid layers in metres span kilometres; a whole layer inside +-180 x +-90 is lon/lat.
    if max(abs(xmin), abs(xmax)) <= 180 and max(abs(ymin), abs(ymax)) <= 90:
        source = f"crs={label}" if stated else f"the file declares {label}"
        raise file_error(
            f"coordinates look like longitude/latitude but {source} (metres)",
            "wrong_crs",
            {"bounds": [xmin, ymin, xmax, ymax]},
        )


def geometries_in_wgs84(gdf: gpd.GeoDataFrame, crs: str | None, default_wgs84: bool) -> np.ndarray:
    geoms = np.asarray(gdf.geometry.array, dtype=object)
    if crs is not None and str(crs).strip():
        cs: CoordSystem = parse_crs(crs, "crs")
        stated = True
        label = str(cs)
    elif gdf.crs is not None:
        cs = from_pyproj(gdf.crs)
        stated = False
        epsg = gdf.crs.to_epsg()
        label = f"EPSG:{epsg}" if epsg else (gdf.crs.name or "a custom CRS")
    elif default_wgs84:
        cs = parse_crs(None)
        stated = False
        label = "EPSG:4326"
    else:
        raise file_error("the file declares no CRS; say which with crs=", "no_crs")
    if cs.is_lonlat:
        _check_crs_fit(geoms, label, stated)
    else:
        _check_projected_fit(geoms, label, stated)
    if cs.kind == "wgs84":
        return geoms
    out: np.ndarray = transform_geometry(geoms, cs)
    present = out[~shapely.is_empty(out) & ~shapely.is_missing(out)]
    if len(present):
        b = shapely.total_bounds(present)
        if not (
            np.all(np.isfinite(b)) and b[0] >= -180 and b[2] <= 180 and b[1] >= -90 and b[3] <= 90
        ):
            raise file_error(
                f"the coordinates do not fit {label}: they fall outside the earth", "wrong_crs"
            )
    return out
