"""Load the synthetic sample town into an empty database (all in one transaction)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shapely.geometry import MultiPolygon
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.bulk import copy_rows, ewkt
from gis.dataset_info import set_dataset_info

if TYPE_CHECKING:
    from gis.sample_town import SampleTown


def database_is_empty(session: Session) -> bool:
    return bool(session.execute(text("SELECT NOT EXISTS (SELECT 1 FROM grid)")).scalar_one())


def load_sample_town(session: Session, town: SampleTown, dem_path: Path | None = None) -> dict[str, int]:
    """Write every layer of `town` (a gis.sample_town.SampleTown); returns rows written per table."""
    from gis.sample_town import SEED, SYNTHETIC_NOTICE

    counts: dict[str, int] = {}
    counts["grid"] = copy_rows(
        session,
        "grid",
        ("code", "name", "level", "parent_code", "geom", "source"),
        (
            (
                r.code,
                r.name,
                int(r.level),
                r.parent_code if isinstance(r.parent_code, str) and r.parent_code else None,
                ewkt(g if g.geom_type == "MultiPolygon" else MultiPolygon([g])),
                "sample_town",
            )
            for r, g in zip(town.grids.itertuples(), town.grids.geometry, strict=True)
        ),
    )
    nv = town.natural_villages
    counts["natural_village"] = copy_rows(
        session,
        "natural_village",
        ("name", "village_code", "geom"),
        ((r.name, r.village_code, ewkt(g)) for r, g in zip(nv.itertuples(), nv.geometry, strict=True)),
    )
    nv_ids = {
        (name, vcode): i
        for i, name, vcode in session.execute(text("SELECT id, name, village_code FROM natural_village"))
    }
    hh = town.households
    counts["household"] = copy_rows(
        session,
        "household",
        (
            "household_no", "address", "head_name", "phone", "residents", "elderly", "children",
            "disabled", "pregnant", "bedridden", "floors", "natural_village_id", "geom",
        ),
        (
            (
                r.household_no, r.address, r.head_name, r.phone, int(r.residents), int(r.elderly),
                int(r.children), int(r.disabled), int(r.pregnant), int(r.bedridden), int(r.floors),
                nv_ids.get((r.natural_village, r.grid_code[:12] + "000")), ewkt(g),
            )
            for r, g in zip(hh.itertuples(), hh.geometry, strict=True)
        ),
    )
    hh_ids: dict[str, int] = dict(session.execute(text("SELECT household_no, id FROM household")).all())
    counts["resident"] = copy_rows(
        session,
        "resident",
        (
            "household_id", "name", "gender", "birth_date", "id_number", "relation_to_head",
            "is_disabled", "is_pregnant", "is_bedridden",
        ),
        (
            (
                hh_ids[r.household_no], r.name, r.gender, r.birth_date, r.id_number,
                r.relation_to_head, bool(r.is_disabled), bool(r.is_pregnant), bool(r.is_bedridden),
            )
            for r in town.residents.itertuples()
        ),
    )
    counts["staff"] = copy_rows(
        session,
        "staff",
        ("name", "phone", "role", "grid_code", "household_id"),
        (
            (
                r.name, r.phone, r.role, r.grid_code,
                hh_ids.get(r.household_no) if isinstance(r.household_no, str) else None,
            )
            for r in town.staff.itertuples()
        ),
    )
    sh = town.shelters
    counts["shelter"] = copy_rows(
        session,
        "shelter",
        ("name", "kind", "capacity", "geom"),
        ((r.name, r.kind, int(r.capacity), ewkt(g)) for r, g in zip(sh.itertuples(), sh.geometry, strict=True)),
    )
    counts["road"] = copy_rows(
        session,
        "road",
        ("name", "road_class", "geom"),
        (
            (r.name, r.road_class, ewkt(g))
            for r, g in zip(town.roads.itertuples(), town.roads.geometry, strict=True)
        ),
    )
    counts["river"] = copy_rows(
        session,
        "river",
        ("name", "geom"),
        ((r.name, ewkt(g)) for r, g in zip(town.rivers.itertuples(), town.rivers.geometry, strict=True)),
    )
    info = {
        "synthetic": True,
        "notice": SYNTHETIC_NOTICE,
        "seed": SEED,
        "loaded_at": dt.datetime.now(dt.UTC).isoformat(),
        "counts": counts,
    }
    set_dataset_info(session, "sample_town", info)
    if dem_path is not None:
        set_dataset_info(session, "dem", {"path": str(dem_path), "synthetic": True})
        # Import the DEM (and its precomputed flood stages) now: a reader must never trigger it.
        from gis.flood.dem import import_dem

        counts["flood_stages"] = len(import_dem(session, Path(dem_path), name="sample")["stages_m"])
    return counts


def load_sample_incidents(session: Session, town: SampleTown, csv_path: Path) -> dict[str, Any]:
    """Two years of synthetic incidents, written as an import file and loaded through the batch path."""
    from gis.incidents.batch import import_incidents, read_incident_file
    from gis.sample_incidents import generate_sample_incidents

    csv_path.parent.mkdir(parents=True, exist_ok=True)
    generate_sample_incidents(town).to_csv(csv_path, index=False, encoding="utf-8-sig")
    frame = read_incident_file(csv_path, max_rows=1_000_000)
    report = import_incidents(session, frame, source="sample_town", all_or_nothing=True)
    if report.failed:
        raise RuntimeError(f"the sample incidents did not import cleanly: {report.failed[:3]}")
    return report.as_dict()
