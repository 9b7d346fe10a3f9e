"""Grid hierarchy, people and places; hierarchy rules enforced in the database.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from typing import Any

import sqlalchemy as sa
from alembic import op as alembic_op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# GeoAlchemy2's alembic helpers (imported by env.py) add create/drop_geospatial_table and _index to
# Alembic's operations at run time, which its type stubs cannot know.
op: Any = alembic_op

# Checked at commit (deferred) so that a whole hierarchy, or a parent and its redrawn children,
# can be written in any order inside one transaction.
HIERARCHY_SQL = r"""
CREATE FUNCTION grid_check_hierarchy() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  row_code text := CASE WHEN TG_OP = 'DELETE' THEN OLD.code ELSE NEW.code END;
  orphan text;
BEGIN
  IF TG_OP <> 'DELETE' AND NEW.valid_to IS NULL AND NEW.level > 1 THEN
    IF NOT EXISTS (SELECT 1 FROM grid p WHERE p.code = NEW.parent_code AND p.valid_to IS NULL
                   AND p.level = NEW.level - 1) THEN
      RAISE EXCEPTION 'grid %: parent % is not a current level-% grid',
        NEW.code, NEW.parent_code, NEW.level - 1 USING ERRCODE = 'foreign_key_violation';
    END IF;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM grid g WHERE g.code = row_code AND g.valid_to IS NULL) THEN
    SELECT c.code INTO orphan FROM grid c WHERE c.parent_code = row_code AND c.valid_to IS NULL LIMIT 1;
    IF orphan IS NOT NULL THEN
      RAISE EXCEPTION 'grid % has no current version but its child % does', row_code, orphan
        USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT s.name INTO orphan FROM staff s WHERE s.grid_code = row_code LIMIT 1;
    IF orphan IS NOT NULL THEN
      RAISE EXCEPTION 'grid % has no current version but staff still serve it', row_code
        USING ERRCODE = 'foreign_key_violation';
    END IF;
  END IF;
  RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER grid_hierarchy AFTER INSERT OR UPDATE OR DELETE ON grid
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION grid_check_hierarchy();

CREATE FUNCTION staff_check_grid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM grid g WHERE g.code = NEW.grid_code AND g.valid_to IS NULL) THEN
    RAISE EXCEPTION 'staff %: grid % is not a current grid', NEW.name, NEW.grid_code
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER staff_grid AFTER INSERT OR UPDATE ON staff
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION staff_check_grid();
"""

DROP_HIERARCHY_SQL = """
DROP TRIGGER IF EXISTS staff_grid ON staff;
DROP TRIGGER IF EXISTS grid_hierarchy ON grid;
DROP FUNCTION IF EXISTS staff_check_grid();
DROP FUNCTION IF EXISTS grid_check_hierarchy();
"""


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table(
        "dataset_info",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_geospatial_table(
        "grid",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=15), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("parent_code", sa.String(length=15), nullable=True),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("valid_from", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "(level = 1 AND code ~ '^[0-9]{9}000000$') "
            "OR (level = 2 AND code ~ '^[0-9]{9}9([0-9][1-9]|[1-9][0-9])000$') "
            "OR (level = 3 AND code ~ '^[0-9]{9}[0-8][0-9]{2}000$') "
            "OR (level = 4 AND code ~ '^[0-9]{9}[0-8][0-9]{2}[0-9]{3}$')",
            name="code_fits_level",
        ),
        sa.CheckConstraint("level <> 4 OR parent_code = left(code, 12) || '000'", name="group_parent_is_its_village"),
        sa.CheckConstraint("(level = 1) = (parent_code IS NULL)", name="parent_iff_not_town"),
        sa.CheckConstraint("ST_IsValid(geom) AND NOT ST_IsEmpty(geom)", name="geom_valid"),
        sa.CheckConstraint("level BETWEEN 1 AND 4", name="level_range"),
        sa.CheckConstraint("parent_code IS NULL OR left(parent_code, 9) = left(code, 9)", name="parent_same_township"),
        sa.CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name="validity_period"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("grid_current_code", "grid", ["code"], unique=True, postgresql_where=sa.text("valid_to IS NULL"))
    op.create_index(
        "grid_current_parent", "grid", ["parent_code"], unique=False, postgresql_where=sa.text("valid_to IS NULL")
    )
    op.create_geospatial_index(
        "idx_grid_geom", "grid", ["geom"], unique=False, postgresql_using="gist", postgresql_ops={}
    )
    op.create_geospatial_table(
        "natural_village",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("village_code", sa.String(length=15), nullable=False),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_geospatial_index(
        "idx_natural_village_geom",
        "natural_village",
        ["geom"],
        unique=False,
        postgresql_using="gist",
        postgresql_ops={},
    )
    op.create_index(op.f("ix_natural_village_village_code"), "natural_village", ["village_code"], unique=False)
    op.create_geospatial_table(
        "river",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="LINESTRING",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_geospatial_index(
        "idx_river_geom", "river", ["geom"], unique=False, postgresql_using="gist", postgresql_ops={}
    )
    op.create_geospatial_table(
        "road",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("road_class", sa.Text(), nullable=True),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="LINESTRING",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_geospatial_index(
        "idx_road_geom", "road", ["geom"], unique=False, postgresql_using="gist", postgresql_ops={}
    )
    op.create_geospatial_table(
        "shelter",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.CheckConstraint("capacity > 0", name="capacity_positive"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_geospatial_index(
        "idx_shelter_geom", "shelter", ["geom"], unique=False, postgresql_using="gist", postgresql_ops={}
    )
    op.create_geospatial_table(
        "household",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("household_no", sa.String(length=32), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("head_name", sa.Text(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("residents", sa.Integer(), nullable=False),
        sa.Column("elderly", sa.Integer(), nullable=False),
        sa.Column("children", sa.Integer(), nullable=False),
        sa.Column("disabled", sa.Integer(), nullable=False),
        sa.Column("pregnant", sa.Integer(), nullable=False),
        sa.Column("bedridden", sa.Integer(), nullable=False),
        sa.Column("floors", sa.SmallInteger(), nullable=False),
        sa.Column("natural_village_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "geom",
            Geometry(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.CheckConstraint("ST_X(geom) BETWEEN -180 AND 180 AND ST_Y(geom) BETWEEN -90 AND 90", name="lonlat_range"),
        sa.CheckConstraint("floors BETWEEN 1 AND 10", name="floors_range"),
        sa.CheckConstraint(
            "least(elderly, children, disabled, pregnant, bedridden) >= 0 "
            "AND greatest(elderly, children, disabled, pregnant, bedridden) <= residents",
            name="vulnerable_counts_fit",
        ),
        sa.CheckConstraint("residents >= 1", name="has_residents"),
        sa.ForeignKeyConstraint(["natural_village_id"], ["natural_village.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("household_no"),
    )
    op.create_geospatial_index(
        "idx_household_geom", "household", ["geom"], unique=False, postgresql_using="gist", postgresql_ops={}
    )
    op.create_index(op.f("ix_household_natural_village_id"), "household", ["natural_village_id"], unique=False)
    op.create_table(
        "resident",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("household_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("gender", sa.String(length=2), nullable=True),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("id_number", sa.String(length=18), nullable=True),
        sa.Column("relation_to_head", sa.String(length=8), nullable=True),
        sa.Column("is_disabled", sa.Boolean(), nullable=False),
        sa.Column("is_pregnant", sa.Boolean(), nullable=False),
        sa.Column("is_bedridden", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["household_id"], ["household.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_resident_household_id"), "resident", ["household_id"], unique=False)
    op.create_table(
        "staff",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("grid_code", sa.String(length=15), nullable=False),
        sa.Column("household_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("phone IS NULL OR phone ~ '^[0-9+-]{5,20}$'", name="phone_digits"),
        sa.CheckConstraint(
            "role IN ('grid_leader', 'grid_member', 'party_household', 'supervisor')", name="known_role"
        ),
        sa.ForeignKeyConstraint(["household_id"], ["household.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("staff_grid", "staff", ["grid_code"], unique=False)

    op.execute(HIERARCHY_SQL)


def downgrade() -> None:
    op.execute(DROP_HIERARCHY_SQL)
    op.drop_index("staff_grid", table_name="staff")
    op.drop_table("staff")
    op.drop_index(op.f("ix_resident_household_id"), table_name="resident")
    op.drop_table("resident")
    op.drop_index(op.f("ix_household_natural_village_id"), table_name="household")
    op.drop_geospatial_index("idx_household_geom", table_name="household", postgresql_using="gist", column_name="geom")
    op.drop_geospatial_table("household")
    op.drop_geospatial_index("idx_shelter_geom", table_name="shelter", postgresql_using="gist", column_name="geom")
    op.drop_geospatial_table("shelter")
    op.drop_geospatial_index("idx_road_geom", table_name="road", postgresql_using="gist", column_name="geom")
    op.drop_geospatial_table("road")
    op.drop_geospatial_index("idx_river_geom", table_name="river", postgresql_using="gist", column_name="geom")
    op.drop_geospatial_table("river")
    op.drop_index(op.f("ix_natural_village_village_code"), table_name="natural_village")
    op.drop_geospatial_index(
        "idx_natural_village_geom", table_name="natural_village", postgresql_using="gist", column_name="geom"
    )
    op.drop_geospatial_table("natural_village")
    op.drop_geospatial_index("idx_grid_geom", table_name="grid", postgresql_using="gist", column_name="geom")
    op.drop_index("grid_current_parent", table_name="grid", postgresql_where=sa.text("valid_to IS NULL"))
    op.drop_index("grid_current_code", table_name="grid", postgresql_where=sa.text("valid_to IS NULL"))
    op.drop_geospatial_table("grid")
    op.drop_table("dataset_info")
