"""Read grid boundary files into one table: code, name, level, parent_code, geometry, row.

The file itself is read by gis.vector_files (formats, limits, archives, coordinate systems); this
module finds the grid columns under their many names and checks each feature.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import MultiPolygon

from gis.codes import GridLevel, level_of_code
from gis.crs import parse_crs
from gis.errors import InputError, Problem
from gis.vector_files import (
    FILE_TITLE,
    ReadLimits,
    as_multipolygon,
    file_error,
    geometries_in_wgs84,
    read_features,
)

COLUMNS = ["code", "name", "level", "parent_code", "geometry", "row"]
GRID_FILE_TITLE = "Cannot read the grid file"
_MAX_REPORTED = 50

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


def _file_error(msg: str, type_: str, ctx: dict[str, Any] | None = None) -> InputError:
    return file_error(msg, type_, ctx, GRID_FILE_TITLE)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB"


def _as_grid_file_problem(exc: InputError) -> InputError:
    """A file problem titled as the grid reader's (a refused archive or a bad crs= keep theirs)."""
    return InputError(exc.problems, GRID_FILE_TITLE) if exc.title == FILE_TITLE else exc


# --- normalisation --------------------------------------------------------------------


def _norm_name(col: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(col)).lower()


def _map_columns(columns: Iterable[Any]) -> dict[str, str]:
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


def _is_missing(v: object) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _code_text(v: object) -> str:
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


def _level_value(v: object) -> int | None:
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
        mp = as_multipolygon(g)
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

    try:
        raw, default_wgs84 = read_features(path, layer, limits)
    except InputError as exc:
        raise _as_grid_file_problem(exc) from None
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

    try:
        wgs = geometries_in_wgs84(raw, crs, default_wgs84)
    except InputError as exc:
        raise _as_grid_file_problem(exc) from None
    return _normalise(raw, wgs)
