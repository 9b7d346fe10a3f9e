"""Read grid boundary files (GeoJSON, GeoPackage, zipped Shapefile, KML) into one table."""

from __future__ import annotations

import math
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from shapely.geometry import MultiPolygon, Polygon

from gis.codes import GridLevel, level_of_code
from gis.crs import CoordSystem, from_pyproj, parse_crs, transform_geometry
from gis.errors import InputError, Problem

COLUMNS = ["code", "name", "level", "parent_code", "geometry", "row"]
SUFFIXES = {
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".gpkg": "GeoPackage",
    ".zip": "zipped Shapefile",
    ".kml": "KML",
}

# Alternative column names, compared after lower-casing and dropping spaces, '_' and '-'.
# Earlier entries win when a file has several of them.
_ALIASES: dict[str, tuple[str, ...]] = {
    "code": ("code", "gridcode", "网格编码", "编码", "网格代码", "代码", "wgbm", "bm"),
    "name": ("name", "gridname", "网格名称", "名称", "名字", "wgmc", "mc"),
    "level": ("level", "gridlevel", "网格层级", "层级", "网格级别", "级别", "等级"),
    "parent_code": (
        "parentcode",
        "parentcod",
        "parent",
        "上级编码",
        "上级网格编码",
        "父级编码",
        "上级代码",
        "上级",
        "sjbm",
    ),
}

# Entries this small cannot do harm however well they compress.
_RATIO_MIN_BYTES = 1 << 20
_COPY_CHUNK = 1 << 20
_MAX_REPORTED = 50


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what an upload may cost to read."""

    max_file_bytes: int = 50 * 1024 * 1024
    max_features: int = 10_000
    max_vertices_per_geometry: int = 100_000
    max_zip_entries: int = 100
    max_unzipped_bytes: int = 200 * 1024 * 1024
    max_compression_ratio: float = 200.0

    @classmethod
    def from_settings(cls, settings) -> ReadLimits:
        """The caps configured for uploads (gis.settings.Settings)."""
        return cls(
            max_file_bytes=settings.max_upload_bytes,
            max_features=settings.max_features_per_file,
            max_vertices_per_geometry=settings.max_vertices_per_geometry,
            max_zip_entries=settings.max_zip_entries,
            max_unzipped_bytes=settings.max_unzipped_bytes,
        )


def _file_error(
    msg: str, type_: str, ctx: dict | None = None, title: str = "Cannot read the grid file"
) -> InputError:
    return InputError(Problem(("file",), msg, type_, ctx), title)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"


# --- zip handling ---------------------------------------------------------------------


def _unsafe(msg: str, ctx: dict | None = None) -> InputError:
    return _file_error(msg, "unsafe_archive", ctx, "Refused archive")


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
        raise _file_error(
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
                raise _file_error(
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
        raise _file_error("the zip holds no .shp file", "no_shapefile")
    if len(shps) > 1:
        if layer:
            chosen = [p for p in shps if p.stem == layer]
            if len(chosen) == 1:
                return chosen[0]
        names = ", ".join(p.relative_to(dest).as_posix() for p in shps)
        raise _file_error(
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
            raise _file_error(
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
        raise _file_error(
            "the attribute table uses an unknown text encoding; add a .cpg file", "unreadable_file"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any GDAL failure means the upload is unreadable
        raise _file_error(f"cannot read the file: {_short(exc)}", "unreadable_file") from None


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _list_layers(path: Path) -> list[tuple[str, str | None]]:
    try:
        return [(str(n), None if g is None else str(g)) for n, g in pyogrio.list_layers(path)]
    except Exception as exc:  # noqa: BLE001
        raise _file_error(f"cannot read the file: {_short(exc)}", "unreadable_file") from None


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
                "Cannot read the grid file",
            )
        return layer
    spatial = [n for n, g in layers if g is not None]
    if len(spatial) == 1:
        return spatial[0]
    if not spatial:
        raise _file_error("the file has no layer with geometries", "empty_file")
    raise _file_error(
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
            raise _file_error(
                f"the file has more than {limits.max_features} features",
                "too_many_features",
                {"limit": limits.max_features},
            )
        if len(gdf):
            frames.append(gdf)
    if not frames:
        raise _file_error("the file holds no features", "empty_file")
    return gpd.GeoDataFrame(
        pd.concat(frames, ignore_index=True), geometry="geometry", crs=frames[0].crs
    )


def _read_raw(path: Path, layer: str | None, limits: ReadLimits) -> tuple[gpd.GeoDataFrame, bool]:
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
    raise _file_error(
        f"unsupported file type {suffix or '(none)'!r}: "
        "use .geojson, .json, .gpkg, .zip (Shapefile) or .kml",
        "unsupported_format",
    )


# --- normalisation --------------------------------------------------------------------


def _norm_name(col: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(col)).lower()


def _map_columns(columns) -> dict[str, str]:
    """Target column -> the file's column that provides it."""
    by_norm: dict[str, str] = {}
    for col in columns:
        if col == "geometry":
            continue
        by_norm.setdefault(_norm_name(col), col)
    found = {}
    for target, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in by_norm:
                found[target] = by_norm[alias]
                break
    return found


def _is_missing(v) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _code_text(v) -> str:
    if _is_missing(v):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        # Shapefile DBFs often store codes as numbers; 15 digits are exact in a double.
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    s = str(v).strip()
    m = re.fullmatch(r"(\d+)\.0*", s)
    return m.group(1) if m else s


def _level_value(v) -> int | None:
    """The level as an int, None when blank; raises ValueError when it is not a whole number."""
    if _is_missing(v):
        return None
    if isinstance(v, (bool, np.bool_)):
        raise ValueError
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        if not float(v).is_integer():
            raise ValueError
        return int(v)
    s = str(v).strip()
    if not s:
        return None
    m = re.fullmatch(r"(\d+)(?:\.0*)?", s)
    if not m:
        raise ValueError
    return int(m.group(1))


def _derived_parent(code: str, level: int) -> str | None:
    # Only these two parents follow from the code alone; a village's area does not.
    if level == GridLevel.AREA and len(code) == 15:
        return code[:9] + "000000"
    if level == GridLevel.GROUP and len(code) == 15:
        return code[:12] + "000"
    return None


def _as_multipolygon(geom) -> MultiPolygon | None:
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
            mp = _as_multipolygon(part)
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
        raise _file_error("the file has coordinates that are not finite numbers", "bad_coordinates")
    source = f"crs={label}" if stated else f"the file declares {label}"
    if xmin >= 3 and xmax <= 54 and ymin >= 73 and ymax <= 136:
        raise _file_error(
            f"coordinates look swapped (latitude first) but {source}; give longitude first",
            "wrong_crs",
            {"bounds": [xmin, ymin, xmax, ymax]},
        )
    if max(abs(xmin), abs(xmax)) > 180 or max(abs(ymin), abs(ymax)) > 90:
        raise _file_error(
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
        raise _file_error(
            f"coordinates look like longitude/latitude but {source} (metres)",
            "wrong_crs",
            {"bounds": [xmin, ymin, xmax, ymax]},
        )


def _to_wgs84(gdf: gpd.GeoDataFrame, crs: str | None, default_wgs84: bool) -> np.ndarray:
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
        raise _file_error("the file declares no CRS; say which with crs=", "no_crs")
    if cs.is_lonlat:
        _check_crs_fit(geoms, label, stated)
    else:
        _check_projected_fit(geoms, label, stated)
    if cs.kind == "wgs84":
        return geoms
    out = transform_geometry(geoms, cs)
    present = out[~shapely.is_empty(out) & ~shapely.is_missing(out)]
    if len(present):
        b = shapely.total_bounds(present)
        if not (
            np.all(np.isfinite(b)) and b[0] >= -180 and b[2] <= 180 and b[1] >= -90 and b[3] <= 90
        ):
            raise _file_error(
                f"the coordinates do not fit {label}: they fall outside the earth", "wrong_crs"
            )
    return out


def _normalise(raw: gpd.GeoDataFrame, geoms: np.ndarray) -> gpd.GeoDataFrame:
    cols = _map_columns(raw.columns)
    missing = [c for c in ("code", "name") if c not in cols]
    problems: list[Problem] = []

    codes = [_code_text(v) for v in raw[cols["code"]]] if "code" in cols else [""] * len(raw)
    names = (
        [("" if _is_missing(v) else str(v).strip()) for v in raw[cols["name"]]]
        if "name" in cols
        else []
    )

    levels: list[int] = []
    level_values = list(raw[cols["level"]]) if "level" in cols else [None] * len(raw)
    for i, (code, v) in enumerate(zip(codes, level_values, strict=True)):
        row = i + 1
        try:
            lvl = _level_value(v)
        except ValueError:
            problems.append(
                Problem(
                    ("features", row, "level"),
                    f"level must be a whole number 1-4, got {v!r}",
                    "bad_level",
                )
            )
            levels.append(0)
            continue
        if lvl is None:
            derived = level_of_code(code) if "code" in cols else None
            if derived is None and "code" in cols:
                problems.append(
                    Problem(
                        ("features", row, "code"),
                        f"cannot tell the level: {code!r} is not a valid grid code "
                        "and no level is given",
                        "bad_code",
                    )
                )
            lvl = int(derived) if derived is not None else 0
        levels.append(lvl)

    if "parent_code" in cols:
        parents = [_code_text(v) or None for v in raw[cols["parent_code"]]]
    else:
        parents = [None] * len(raw)
        if "code" in cols and any(lvl == GridLevel.VILLAGE for lvl in levels):
            missing.append("parent_code (villages need it)")
    parents = [
        p if p else _derived_parent(c, lvl)
        for c, lvl, p in zip(codes, levels, parents, strict=True)
    ]

    if missing:
        have = ", ".join(str(c) for c in raw.columns if c != "geometry") or "none"
        raise InputError(
            Problem(
                ("file",),
                f"missing column(s): {', '.join(missing)}; the file has: {have}",
                "missing_columns",
                {"missing": missing},
            ),
            "Cannot read the grid file",
        )

    multi = []
    for i, g in enumerate(shapely.force_2d(geoms)):
        mp = _as_multipolygon(g)
        if mp is None:
            problems.append(
                Problem(
                    ("features", i + 1, "geometry"),
                    f"feature {i + 1} is a {g.geom_type}; grid boundaries must be polygons",
                    "bad_geometry_type",
                    {"geom_type": g.geom_type},
                )
            )
            mp = MultiPolygon()
        multi.append(mp)

    if problems:
        raise InputError(problems[:_MAX_REPORTED], "Cannot read the grid file")

    gdf = gpd.GeoDataFrame(
        {
            "code": pd.Series(codes, dtype=object),
            "name": pd.Series(names, dtype=object),
            "level": pd.Series(levels, dtype="int64"),
            "parent_code": pd.Series(parents, dtype=object),
            "row": pd.Series(np.arange(1, len(raw) + 1), dtype="int64"),
        },
        geometry=gpd.GeoSeries(multi, crs="EPSG:4326"),
        crs="EPSG:4326",
    )
    return gdf[COLUMNS]


def read_grid_file(
    path: Path,
    *,
    crs: str | None = None,
    layer: str | None = None,
    limits: ReadLimits | None = None,
) -> gpd.GeoDataFrame:
    """Read a grid file into columns code, name, level, parent_code, geometry, row (EPSG:4326).

    `crs` states the coordinate system when the file does not (or overrides it): "gcj02",
    "bd09", "wgs84", "cgcs2000" or "EPSG:<code>". `row` is the 1-based feature number in the
    file. Every failure is an InputError; hierarchy rules are checked by validate_grids."""
    limits = limits or ReadLimits()
    path = Path(path)
    if crs is not None and str(crs).strip():
        parse_crs(crs, "crs")  # fail on a bad crs= before touching the file
    if not path.is_file():
        raise _file_error("the file does not exist", "unreadable_file")
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise _file_error(
            f"the file is {_mb(size)}; at most {_mb(limits.max_file_bytes)} are allowed",
            "file_too_large",
            {"bytes": size, "limit": limits.max_file_bytes},
        )
    if size == 0:
        raise _file_error("the file is empty", "empty_file")

    raw, default_wgs84 = _read_raw(path, layer, limits)
    if len(raw) == 0:
        raise _file_error("the file holds no features", "empty_file")
    if len(raw) > limits.max_features:
        raise _file_error(
            f"the file has {len(raw)} features; at most {limits.max_features} are allowed",
            "too_many_features",
            {"features": len(raw), "limit": limits.max_features},
        )
    if raw.geometry.name not in raw.columns or raw.geometry.isna().all():
        raise _file_error("the file holds no geometries", "empty_file")

    geoms = np.asarray(raw.geometry.array, dtype=object)
    counts = shapely.get_num_coordinates(geoms)
    too_big = np.flatnonzero(counts > limits.max_vertices_per_geometry)
    if len(too_big):
        raise InputError(
            [
                Problem(
                    ("features", int(i) + 1, "geometry"),
                    f"feature {int(i) + 1} has {int(counts[i])} vertices; at most "
                    f"{limits.max_vertices_per_geometry} are allowed per boundary",
                    "too_many_vertices",
                    {"vertices": int(counts[i]), "limit": limits.max_vertices_per_geometry},
                )
                for i in too_big[:_MAX_REPORTED]
            ],
            "Cannot read the grid file",
        )

    wgs = _to_wgs84(raw, crs, default_wgs84)
    return _normalise(raw, wgs)
