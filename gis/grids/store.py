"""Grids in PostGIS: read the current hierarchy, export it, and import a validated file as new versions."""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.bulk import copy_rows, ewkt
from gis.errors import InputError

GRID_COLUMNS = ["code", "name", "level", "parent_code", "valid_from", "geometry"]


def current_grids(
    session: Session,
    *,
    level: int | None = None,
    parent_code: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> gpd.GeoDataFrame:
    """Current versions, ordered by code; filters are optional and combine with AND."""
    where = ["valid_to IS NULL"]
    params: dict = {"offset": offset}
    if level is not None:
        where.append("level = :level")
        params["level"] = level
    if parent_code is not None:
        where.append("parent_code = :parent_code")
        params["parent_code"] = parent_code
    if bbox is not None:
        where.append("geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)")
        params.update(x0=bbox[0], y0=bbox[1], x1=bbox[2], y1=bbox[3])
    sql = (
        "SELECT code, name, level, parent_code, valid_from, ST_AsBinary(geom) AS wkb FROM grid "
        f"WHERE {' AND '.join(where)} ORDER BY code"
    )
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = limit
    sql += " OFFSET :offset"
    rows = session.execute(text(sql), params).all()
    return _frame(rows)


def count_current_grids(session: Session, **filters) -> int:
    where = ["valid_to IS NULL"]
    if filters.get("level") is not None:
        where.append("level = :level")
    if filters.get("parent_code") is not None:
        where.append("parent_code = :parent_code")
    if filters.get("bbox") is not None:
        x0, y0, x1, y1 = filters["bbox"]
        filters = {**filters, "x0": x0, "y0": y0, "x1": x1, "y1": y1}
        where.append("geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)")
    params = {k: v for k, v in filters.items() if k != "bbox" and v is not None}
    return session.execute(text(f"SELECT count(*) FROM grid WHERE {' AND '.join(where)}"), params).scalar_one()


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


def _frame(rows, extra: tuple[str, ...] = ()) -> gpd.GeoDataFrame:
    cols = GRID_COLUMNS[:-1] + list(extra)
    data = {c: [getattr(r, c) for r in rows] for c in cols}
    geoms = shapely.from_wkb([bytes(r.wkb) for r in rows]) if rows else []
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geoms, crs="EPSG:4326"), crs="EPSG:4326")


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
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
) -> ImportReport:
    """Validate `new` against the stored hierarchy, then write it as new versions — or nothing.

    A code already stored gets a new version (the old one is closed, kept as history) unless name,
    parent and geometry are all unchanged. Codes not in the file stay as they are. Every problem
    found is reported at once (InputError) and the caller's transaction is left untouched.
    """
    from gis.grids.validate import validate_grids

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
    )
    if problems:
        raise InputError(problems, title="The grid file was not imported")

    by_code = {r.code: (r, g) for r, g in zip(stored.itertuples(), stored.geometry, strict=True)}
    report = ImportReport()
    to_write = []
    for r, g in zip(new.itertuples(), new.geometry, strict=True):
        parent = r.parent_code if isinstance(r.parent_code, str) and r.parent_code else None
        old = by_code.get(r.code)
        if old is not None:
            o, og = old
            same = o.name == r.name and o.parent_code == parent and int(o.level) == int(r.level)
            if same and shapely.equals_exact(og.normalize(), g.normalize(), tolerance=1e-9):
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
