"""Grids in PostGIS: read the current hierarchy, export it, and import a validated file as new versions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import shapely
from sqlalchemy import Row, text
from sqlalchemy.orm import Session

from gis.bulk import copy_rows, ewkt
from gis.crs import metric_crs_for, metric_transformer
from gis.errors import InputError
from gis.grids.validate import DEFAULT_TOLERANCE_M, validate_grids

if TYPE_CHECKING:
    from gis.context import Context
    from gis.settings import Settings

GRID_COLUMNS = ["code", "name", "level", "parent_code", "valid_from", "geometry"]


Bbox = tuple[float, float, float, float]


def _current(level: int | None, parent_code: str | None, bbox: Bbox | None,
             as_of: dt.datetime | None = None) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (and its parameters) of the current grids (or those alive at `as_of`:
    one version per code, migration 0018) with these filters."""
    where, params = ["valid_to IS NULL" if as_of is None else "period @> CAST(:as_of AS timestamptz)"], dict[str, Any]()
    if as_of is not None:
        params["as_of"] = as_of
    if level is not None:
        where.append("level = :level")
        params["level"] = level
    if parent_code is not None:
        where.append("parent_code = :parent_code")
        params["parent_code"] = parent_code
    if bbox is not None:
        where.append("geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)")
        params.update(x0=bbox[0], y0=bbox[1], x1=bbox[2], y1=bbox[3])
    return " AND ".join(where), params


def current_grids(
    session: Session,
    *,
    level: int | None = None,
    parent_code: str | None = None,
    bbox: Bbox | None = None,
    limit: int | None = None,
    offset: int = 0,
    as_of: dt.datetime | None = None,
) -> gpd.GeoDataFrame:
    """Current versions (or those of the instant `as_of`), ordered by code (unique among current grids: pages
    neither repeat nor skip); filters are optional and combine with AND."""
    where, params = _current(level, parent_code, bbox, as_of)
    sql = (
        "SELECT code, name, level, parent_code, valid_from, ST_AsBinary(geom) AS wkb FROM grid "
        f"WHERE {where} ORDER BY code"
    )
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit
    sql += " OFFSET :offset"
    params["offset"] = offset
    return _frame(session.execute(text(sql), params).all())


def count_current_grids(
    session: Session, *, level: int | None = None, parent_code: str | None = None, bbox: Bbox | None = None,
    as_of: dt.datetime | None = None,
) -> int:
    where, params = _current(level, parent_code, bbox, as_of)
    return int(session.execute(text(f"SELECT count(*) FROM grid WHERE {where}"), params).scalar_one())


def grid_history(session: Session, code: str) -> gpd.GeoDataFrame:
    rows = session.execute(
        text(
            "SELECT code, name, level, parent_code, valid_from, valid_to, source, "
            "ST_AsBinary(geom) AS wkb FROM grid WHERE code = :code ORDER BY valid_from"
        ),
        {"code": code},
    ).all()
    frame = _frame(rows, extra=("valid_to", "source"))
    return frame


def _frame(rows: Sequence[Row[Any]], extra: tuple[str, ...] = ()) -> gpd.GeoDataFrame:
    cols = GRID_COLUMNS[:-1] + list(extra)
    data = {c: [getattr(r, c) for r in rows] for c in cols}
    geoms = shapely.from_wkb([bytes(r.wkb) for r in rows]) if rows else []
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geoms, crs="EPSG:4326"), crs="EPSG:4326")


def _code_or_none(value: object) -> str | None:
    """A parent code as stored or read; pandas turns a missing one into NaN or None."""
    return value if isinstance(value, str) and value else None


def _moved_m(new: gpd.GeoDataFrame, by_code: dict[str, tuple[Any, Any]]) -> dict[str, float]:
    """For each code in `new` that is stored: how far its outline moved, in metres (the Hausdorff
    distance between the stored and the new outline, in the metric CRS of the file's area)."""
    pairs = [(c, by_code[c][1], g) for c, g in zip(new["code"], new.geometry, strict=True)
             if c in by_code and g is not None and by_code[c][1] is not None]
    if not pairs:
        return {}
    old = np.asarray([p[1] for p in pairs], dtype=object)
    cur = np.asarray([p[2] for p in pairs], dtype=object)
    xmin, ymin, xmax, ymax = shapely.total_bounds(cur)
    fwd = metric_transformer(metric_crs_for((xmin + xmax) / 2, (ymin + ymax) / 2))

    def project(a: np.ndarray) -> np.ndarray:
        moved: np.ndarray = shapely.transform(a, lambda x, y: fwd.transform(x, y), interleaved=False)
        return moved

    dist = shapely.hausdorff_distance(project(old), project(cur))
    return {p[0]: float(d) for p, d in zip(pairs, dist, strict=True)}


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": len(self.created),
            "replaced": len(self.replaced),
            "unchanged": len(self.unchanged),
            "codes": {"created": self.created, "replaced": self.replaced, "unchanged": self.unchanged},
        }


def import_grids(
    session: Session,
    new: gpd.GeoDataFrame,
    *,
    source: str,
    gap_tolerance_m2: float = 1.0,
    overlap_tolerance_m2: float = 1.0,
    boundary_tolerance_m: float = DEFAULT_TOLERANCE_M,
) -> ImportReport:
    """Validate `new` against the stored hierarchy, then write it as new versions — or nothing.

    A code already stored gets a new version (the old one is closed, kept as history) unless name,
    parent and level are the same and no vertex of either outline lies farther than
    `boundary_tolerance_m` from the other (a file exported and read back with rounded coordinates
    is unchanged). Codes not in the file stay as they are. Every problem found is reported at once
    (InputError) and the caller's transaction is left untouched.
    """

    # Serialise imports: two concurrent redraws must not both validate against the old state.
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext('wangge.grid_import'))"))
    stored = current_grids(session)
    incoming = set(new["code"])
    kept = stored[~stored["code"].isin(incoming)].reset_index(drop=True)
    problems = validate_grids(
        new,
        kept,
        gap_tolerance_m2=gap_tolerance_m2,
        overlap_tolerance_m2=overlap_tolerance_m2,
        boundary_tolerance_m=boundary_tolerance_m,
    )
    if problems:
        raise InputError(problems, title="The grid file was not imported")

    by_code = {r.code: (r, g) for r, g in zip(stored.itertuples(), stored.geometry, strict=True)}
    moved = _moved_m(new, by_code)
    report = ImportReport()
    to_write = []
    for r, g in zip(new.itertuples(), new.geometry, strict=True):
        parent = _code_or_none(r.parent_code)
        old = by_code.get(r.code)
        if old is not None:
            o, _ = old
            same = (
                o.name == r.name
                and _code_or_none(o.parent_code) == parent
                and int(o.level) == int(r.level)
            )
            if same and moved[r.code] <= boundary_tolerance_m:
                report.unchanged.append(r.code)
                continue
            report.replaced.append(r.code)
        else:
            report.created.append(r.code)
        to_write.append((r.code, r.name, int(r.level), parent, ewkt(g), source))
    if report.replaced:
        session.execute(
            text(
                "UPDATE grid SET valid_to = now() WHERE valid_to IS NULL AND code = ANY(:codes)"
            ),
            {"codes": report.replaced},
        )
    if to_write:
        copy_rows(session, "grid", ("code", "name", "level", "parent_code", "geom", "source"), to_write)
    return report


def import_grid_file(
    session: Session,
    ctx: Context,
    path: Path,
    *,
    file_name: str,
    source: str,
    settings: Settings,
    crs: str | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Read a grid file (`file_name` is what its sender called it), validate it against the stored
    hierarchy and store it as new grid versions — all or nothing — with its audit row.

    With `dry_run` everything is checked and the report says what would be written, inside a
    savepoint that is rolled back: nothing is written, so nothing is audited either. Every problem
    is an InputError; the caller's transaction is left as it was.
    """
    from gis.grids.io import read_grid_file
    from gis.vector_files import ReadLimits

    frame = read_grid_file(path, crs=crs, limits=ReadLimits.from_settings(settings))
    savepoint = session.begin_nested() if dry_run else None
    try:
        report = import_grids(
            session,
            frame,
            source=source,
            gap_tolerance_m2=settings.gap_tolerance_m2,
            overlap_tolerance_m2=settings.overlap_tolerance_m2,
            boundary_tolerance_m=settings.boundary_tolerance_m,
        )
    finally:
        if savepoint is not None:
            savepoint.rollback()
    if not dry_run:
        ctx.audit(
            session, "import", resource="grid", resource_ids=report.created + report.replaced,
            detail={"file": file_name, "created": len(report.created), "replaced": len(report.replaced)},
        )
    return report
