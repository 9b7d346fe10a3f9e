"""The sample town as stored in PostGIS: counts, tiling, and the rules the database itself enforces."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError


def scalar(session, sql, **params):
    return session.execute(text(sql), params).scalar_one()


def test_reference_counts_queried_from_database(session):
    levels = dict(
        session.execute(text("SELECT level, count(*) FROM grid WHERE valid_to IS NULL GROUP BY level")).all()
    )
    assert levels == {1: 1, 2: 4, 3: 20, 4: 282}
    assert scalar(session, "SELECT count(*) FROM natural_village") == 92
    assert scalar(session, "SELECT count(*) FROM resident") == 62_600
    assert scalar(session, "SELECT sum(residents) FROM household") == 62_600
    assert 17_500 <= scalar(session, "SELECT count(*) FROM household") <= 18_500
    roles = dict(session.execute(text("SELECT role, count(*) FROM staff GROUP BY role")).all())
    assert roles == {"grid_leader": 307, "grid_member": 3087, "party_household": 487, "supervisor": 20}
    names = set(session.execute(text("SELECT name FROM grid WHERE level = 3")).scalars())
    assert {"李邦相村", "尹营村", "岁坡村", "小岗村"} <= names
    assert scalar(session, "SELECT count(*) FROM shelter") >= 20
    assert scalar(session, "SELECT count(*) FROM river") >= 1
    assert scalar(session, "SELECT (value->>'synthetic')::boolean FROM dataset_info WHERE key = 'sample_town'")


def test_every_level_tiles_its_parent_in_postgis(session):
    # Area in m² (geography) of parent XOR union(children), and of pairwise sibling overlaps.
    rows = session.execute(
        text(
            """
            SELECT p.code,
                   ST_Area(ST_SymDifference(p.geom, ST_Union(c.geom))::geography) AS mismatch
            FROM grid p JOIN grid c ON c.parent_code = p.code AND c.valid_to IS NULL
            WHERE p.valid_to IS NULL
            GROUP BY p.code, p.geom
            """
        )
    ).all()
    assert len(rows) == 1 + 4 + 20
    worst = max(r.mismatch for r in rows)
    assert worst < 1.0, f"a parent is not exactly covered by its children ({worst:.3f} m²)"
    overlap = scalar(
        session,
        """
        SELECT coalesce(max(ST_Area(ST_Intersection(a.geom, b.geom)::geography)), 0)
        FROM grid a JOIN grid b
          ON a.parent_code = b.parent_code AND a.code < b.code AND ST_Intersects(a.geom, b.geom)
        WHERE a.valid_to IS NULL AND b.valid_to IS NULL
        """,
    )
    assert overlap < 0.01


def test_every_household_lies_in_exactly_one_group_grid(session):
    counts = session.execute(
        text(
            """
            SELECT n, count(*) FROM (
              SELECT h.id, count(g.id) AS n FROM household h
              LEFT JOIN grid g ON g.level = 4 AND g.valid_to IS NULL AND ST_Intersects(g.geom, h.geom)
              GROUP BY h.id) t
            GROUP BY n
            """
        )
    ).all()
    assert dict(counts) == {1: scalar(session, "SELECT count(*) FROM household")}


def test_spatial_indexes_exist(session):
    indexed = set(
        session.execute(
            text("SELECT tablename FROM pg_indexes WHERE indexdef ILIKE '%USING gist%'")
        ).scalars()
    )
    assert {"grid", "household", "natural_village", "shelter", "road", "river"} <= indexed


def _insert_grid(session, code, level, parent, wkt="MULTIPOLYGON(((112 33,112.001 33,112.001 33.001,112 33)))"):
    session.execute(
        text(
            "INSERT INTO grid (code, name, level, parent_code, geom) "
            "VALUES (:c, 'x', :l, :p, ST_GeomFromText(:w, 4326))"
        ),
        {"c": code, "l": level, "p": parent, "w": wkt},
    )


@pytest.mark.parametrize(
    ("code", "level", "parent", "wkt", "constraint"),
    [
        # a self-intersecting ring (bow-tie)
        ("411324105001099", 4, "411324105001000",
         "MULTIPOLYGON(((112 33,112.001 33.001,112.001 33,112 33.001,112 33)))", "geom_valid"),
        ("411324105001099", 3, "411324105901000", None, "code_fits_level"),
        ("411324105001099", 4, "411324105002000", None, "group_parent_is_its_village"),
        ("411324105000000", 1, "411324105901000", None, "parent_iff_not_town"),
        ("411324106001000", 3, "411324105901000", None, "parent_same_township"),
    ],
)
def test_database_refuses_broken_grids(engine, code, level, parent, wkt, constraint):
    from gis.db import transaction

    with pytest.raises(IntegrityError, match=constraint), transaction(engine) as s:
        if wkt:
            _insert_grid(s, code, level, parent, wkt)
        else:
            _insert_grid(s, code, level, parent)


def test_database_refuses_a_second_current_version_of_a_code(engine):
    from gis.db import transaction

    with transaction(engine) as s:
        code = scalar(s, "SELECT code FROM grid WHERE level = 4 ORDER BY code LIMIT 1")
    with pytest.raises(IntegrityError, match="grid_current_code"), transaction(engine) as s:
        _insert_grid(s, code, 4, code[:12] + "000")


def test_parent_must_exist_when_the_transaction_commits(engine):
    from gis.db import transaction

    # Village 888 does not exist: the deferred trigger refuses the whole transaction.
    with pytest.raises(DBAPIError, match="not a current level-3 grid"), transaction(engine) as s:
        _insert_grid(s, "411324105888001", 4, "411324105888000")


def test_closing_a_parent_with_current_children_is_refused(engine):
    from gis.db import transaction

    with pytest.raises(DBAPIError, match="has no current version but its child"), transaction(engine) as s:
        s.execute(text("UPDATE grid SET valid_to = now() + interval '1 second' WHERE level = 3 AND valid_to IS NULL "
                       "AND code = (SELECT min(code) FROM grid WHERE level = 3)"))
