"""House → grid in one place: household_grid_at (migration 0010) follows grid_at, a house on a shared
edge belongs to one grid (the smallest code) on every path, and the in-memory kernel of the flood
finder gives the same group grid as the SQL definition."""

from __future__ import annotations

import numpy as np
from sqlalchemy import text

from gis.flood import finder
from gis.households import counts_by_grid, list_households
from gis.people import household_counts
from tests.conftest import insert_household


def _shared_edge_points(session, n: int = 12) -> list[tuple[float, float, list[str]]]:
    """Points on the shared edge of two neighbouring group grids, with the codes of both."""
    # Vertices of one grid that the neighbour's closed polygon also holds: exact shared points (a
    # point interpolated along an edge is usually rounded off it).
    rows = session.execute(
        text(
            """
            SELECT DISTINCT ON (a.code, b.code) ST_X(d.geom), ST_Y(d.geom), a.code, b.code
            FROM grid a JOIN grid b ON a.code < b.code AND a.geom && b.geom
            CROSS JOIN LATERAL ST_DumpPoints(a.geom) d
            WHERE a.valid_to IS NULL AND b.valid_to IS NULL AND a.level = 4 AND b.level = 4
              AND ST_Intersects(b.geom, d.geom)
            ORDER BY a.code, b.code, d.path
            LIMIT :n
            """
        ),
        {"n": n},
    ).all()
    out = []
    for x, y, _a, _b in rows:
        holding = session.execute(
            text("SELECT code FROM grid WHERE valid_to IS NULL AND level = 4 "
                 "AND ST_Intersects(geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326)) ORDER BY code"),
            {"x": x, "y": y},
        ).scalars().all()
        if len(holding) >= 2:  # the interpolated point really lies on both (not rounded off the edge)
            out.append((x, y, holding))
    return out


def test_house_on_a_shared_edge_belongs_to_the_smallest_code(session):
    points = _shared_edge_points(session)
    assert len(points) >= 3, "the sample town has neighbouring group grids"
    for x, y, holding in points:
        row = session.execute(
            text("SELECT * FROM household_grid_at(ST_SetSRID(ST_MakePoint(:x, :y), 4326))"), {"x": x, "y": y}
        ).mappings().one()
        assert row["group_code"] == min(holding)
        assert row["on_boundary"] is True
        assert row["village_code"] == row["group_code"][:12] + "000"
        # grid_at, the point → grid rule, and house → grid agree
        at = session.execute(
            text("SELECT code FROM grid_at(ST_SetSRID(ST_MakePoint(:x, :y), 4326))"), {"x": x, "y": y}
        ).scalar_one()
        assert at == row["grid_code"] == row["group_code"]


def test_edge_house_is_listed_counted_and_ranked_in_one_grid_only(session):
    from gis.auth.principal import Principal
    from gis.auth.roles import Role

    x, y, holding = _shared_edge_points(session)[0]
    hid = insert_household(session, "EDGE-TEST-1", x, y, residents=3, elderly=0)
    admin = Principal(user_id=0, username="t", role=Role.ADMIN)
    listed = {code: {r["id"] for r in list_households(session, admin, grid_code=code, limit=100_000)[0]}
              for code in holding}
    assert hid in listed[min(holding)]
    assert all(hid not in listed[c] for c in holding if c != min(holding))
    got = next(r for r in list_households(session, admin, grid_code=min(holding), limit=100_000)[0] if r["id"] == hid)
    assert got["grid_code"] == min(holding)
    # the per-grid counts add up: every household once per level
    per_level = {}
    for r in counts_by_grid(session):
        per_level[r["level"]] = per_level.get(r["level"], 0) + r["households"]
    total = session.execute(text("SELECT count(*) FROM household")).scalar_one()
    assert per_level[1] == total
    in_groups = session.execute(text("SELECT count(*) FROM household_grid WHERE group_code IS NOT NULL")).scalar_one()
    assert per_level[4] == in_groups
    assert household_counts(session)[min(holding)]["households"] == next(
        r["households"] for r in counts_by_grid(session, 4) if r["code"] == min(holding))


def test_finder_kernel_matches_the_sql_definition(session):
    rows = session.execute(
        text("SELECT h.id, ST_X(h.geom), ST_Y(h.geom), hg.group_code FROM household h "
             "LEFT JOIN LATERAL household_grid_at(h.geom) hg ON true ORDER BY h.id")
    ).all()
    edge = _shared_edge_points(session)
    lons = np.array([r[1] for r in rows] + [p[0] for p in edge])
    lats = np.array([r[2] for r in rows] + [p[1] for p in edge])
    expected = [r[3] for r in rows] + [min(p[2]) for p in edge]
    assert finder.group_codes(session, lons, lats) == expected
