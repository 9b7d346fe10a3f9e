"""Rounded boundary files: slivers narrower than the distance tolerance are not problems, and an
outline that moved no more than it is unchanged; anything wider is still reported or redrawn."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import shapely
import shapely.affinity
from shapely.geometry import MultiPolygon, Polygon, box, mapping
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.grids.io import read_grid_file
from gis.grids.store import current_grids, import_grids
from gis.grids.validate import TOLERANCE_SETTING, validate_grids
from gis.settings import Settings
from tests.conftest import create_database, drop_database
from tests.test_grid_validate import frame, hierarchy_rows, row_of

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "boundaries"
LAYERS = ("town", "areas", "villages", "grids")
TOL_M = Settings().boundary_tolerance_m
# Metres per degree of latitude around 33°N (enough for building test shapes of a given width).
M_PER_DEG_LAT = 110_900.0


def _engine(url):
    return create_engine(url, poolclass=NullPool)


def _import(url, path: Path):
    from gis.db import transaction

    engine = _engine(url)
    try:
        with transaction(engine) as session:
            return import_grids(
                session, read_grid_file(path), source=f"test:{path.name}",
                boundary_tolerance_m=TOL_M,
            )
    finally:
        engine.dispose()


def _versions(url) -> int:
    engine = _engine(url)
    with engine.connect() as c:
        n = c.execute(text("SELECT count(*) FROM grid")).scalar_one()
    engine.dispose()
    return n


@pytest.fixture
def empty_db_url(test_db_url):
    from gis.db import upgrade

    url = test_db_url.set(database=f"{test_db_url.database}_empty_{uuid.uuid4().hex[:8]}")
    create_database(url)
    engine = _engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    drop_database(url)


@pytest.fixture(params=["shipped", "written"])
def boundary_dir(request, sample_town, tmp_path) -> Path:
    """data/boundaries/ as committed, or what `wangge sample write-boundaries` writes now."""
    if request.param == "shipped":
        return SHIPPED
    from gis.sample_town import write_boundaries

    write_boundaries(sample_town, tmp_path)
    return tmp_path


def test_boundary_files_import_into_an_empty_database(empty_db_url, boundary_dir):
    created = 0
    for layer in LAYERS:
        report = _import(empty_db_url, boundary_dir / f"{layer}.geojson")  # InputError would fail
        assert not report.replaced and not report.unchanged
        created += len(report.created)
    assert created == _versions(empty_db_url) == 307


def test_reimport_into_the_sample_town_writes_no_new_version(scratch_db_url, boundary_dir):
    before = _versions(scratch_db_url)
    # The group grids alone first: checked against the stored (unrounded) villages.
    for layer in ("grids", *LAYERS):
        report = _import(scratch_db_url, boundary_dir / f"{layer}.geojson")
        assert report.created == [] and report.replaced == [], layer
        assert len(report.unchanged) > 0
    assert _versions(scratch_db_url) == before


def _noisy(geom, rng, amplitude_deg: float) -> MultiPolygon:
    """Every vertex moved independently by up to `amplitude_deg` (rings stay closed)."""
    polygons = []
    for part in shapely.get_parts(geom):
        rings = []
        for ring in (part.exterior, *part.interiors):
            xy = np.asarray(ring.coords)
            xy = xy + rng.uniform(-amplitude_deg, amplitude_deg, size=xy.shape)
            xy[-1] = xy[0]
            rings.append(xy)
        polygons.append(Polygon(rings[0], rings[1:]))
    return MultiPolygon(polygons)


def test_rounding_noise_is_unchanged_and_a_real_move_is_a_new_version(
    scratch_db_url, tmp_path
):
    from gis.db import transaction

    engine = _engine(scratch_db_url)
    with transaction(engine) as session:
        town = current_grids(session)[["code", "name", "level", "parent_code", "geometry"]]
    engine.dispose()
    rng = np.random.default_rng(11)
    before = _versions(scratch_db_url)

    noisy = town.copy()
    noisy["geometry"] = [_noisy(g, rng, 1e-7) for g in town.geometry]
    path = tmp_path / "noisy.geojson"
    path.write_text(noisy.to_json(), encoding="utf-8")
    report = _import(scratch_db_url, path)
    assert report.created == [] and report.replaced == []
    assert len(report.unchanged) == len(town) == 307
    assert _versions(scratch_db_url) == before

    # The whole town moved north by twice the tolerance (plus the same noise): a real redraw.
    shift = 2 * TOL_M / M_PER_DEG_LAT
    moved = noisy.copy()
    moved["geometry"] = noisy.geometry.translate(yoff=shift)
    path = tmp_path / "moved.geojson"
    path.write_text(moved.to_json(), encoding="utf-8")
    report = _import(scratch_db_url, path)
    assert len(report.replaced) == 307 and report.unchanged == []
    assert _versions(scratch_db_url) == before + 307


# --- just above and just below the tolerance, on the synthetic hierarchy --------------------


def _width_deg(factor: float) -> float:
    return factor * TOL_M / M_PER_DEG_LAT


def _problems_with_edge_moved(code: str, *, east_deg: float = 0.0, south_deg: float = 0.0) -> list:
    """What validation finds once grid `code`'s east edge moves east by `east_deg` and its south edge
    north by `south_deg` (south where negative), the rest of the hierarchy as it is."""
    rows = hierarchy_rows()
    r = row_of(rows, code)
    a, b, c, d = rows[r - 1][4].bounds
    rows[r - 1][4] = box(a, b + south_deg, c + east_deg, d)
    return validate_grids(frame(rows), boundary_tolerance_m=TOL_M)


@pytest.mark.parametrize("factor,reported", [(0.5, False), (1.5, True)])
def test_overlap_at_the_tolerance(factor, reported):
    # Grid 001 reaches into grid 002 (east of it) along their whole shared edge: ~1 km long.
    east = _width_deg(factor) / np.cos(np.radians(33))
    _check(_problems_with_edge_moved("411324105001001", east_deg=east), "overlap", factor, reported)


@pytest.mark.parametrize("factor,reported", [(0.5, False), (1.5, True)])
def test_gap_at_the_tolerance(factor, reported):
    _check(_problems_with_edge_moved("411324105004002", south_deg=_width_deg(factor)), "gap", factor, reported)


@pytest.mark.parametrize("factor,reported", [(0.5, False), (1.5, True)])
def test_outside_parent_at_the_tolerance(factor, reported):
    # South: beyond the village, the area and the town outline at once.
    problems = _problems_with_edge_moved("411324105003001", south_deg=-_width_deg(factor))
    _check(problems, "outside_parent", factor, reported)


def _check(problems, kind: str, factor: float, reported: bool) -> None:
    if not reported:
        assert problems == []
        return
    assert problems and {p.type for p in problems} == {kind}
    p = problems[0]
    assert p.ctx["width_m"] == pytest.approx(factor * TOL_M, rel=0.1)
    # The strip is ~1 km long: tens of m², far above the 1 m² area tolerance.
    assert p.ctx["area_m2"] > 50
    assert TOLERANCE_SETTING in p.msg and f"{p.ctx['width_m']:.2f} m" in p.msg


def test_rounded_copy_of_a_hierarchy_validates_clean(tmp_path):
    """The synthetic hierarchy, written with 6 decimals (11 cm steps), is clean with the default
    tolerance only because of it: with none, the rounding shows up as problems."""
    rows = hierarchy_rows()
    # Move every vertex off the 0.01° grid so rounding does change it, the same way in each row.
    rows = [[*r[:4], shapely.affinity.rotate(r[4], 0.7, origin=(112.17, 32.97))] for r in rows]
    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"code": r[0], "name": r[1], "level": r[2], "parent_code": r[3]},
                "geometry": mapping(shapely.set_precision(r[4], 1e-6)),
            }
            for r in rows
        ],
    }
    path = tmp_path / "rounded.geojson"
    path.write_text(json.dumps(fc), encoding="utf-8")
    rounded = read_grid_file(path)
    assert validate_grids(rounded, boundary_tolerance_m=0, gap_tolerance_m2=0,
                          overlap_tolerance_m2=0) != []
    assert validate_grids(rounded, boundary_tolerance_m=TOL_M, gap_tolerance_m2=0,
                          overlap_tolerance_m2=0) == []
