"""Flood: conditioned DEMs, flood extents (modelled, uploaded, drawn) and their depth classes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from collections.abc import Iterable

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DEPTH_CLASSES = ("0-0.5", "0.5-1", "1-2", ">2")


def _in(column: str, values: Iterable[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    op.create_table(
        "flood_dem",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False, unique=True),
        # The raster grid: CRS (WKT or EPSG:code), GDAL-order affine (a, b, c, d, e, f), shape.
        sa.Column("crs", sa.Text(), nullable=False),
        sa.Column("transform", JSONB(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        # Content digest of DEM + rivers + method: names the directory of conditioned rasters, so a
        # missing directory (a fresh machine) is rebuilt from the source and never mistaken.
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("source_path", sa.Text(), nullable=False),
        sa.Column("store_path", sa.Text(), nullable=False),
        # How it was conditioned, so the rasters can be rebuilt from the source file alone.
        sa.Column("rivers", Geometry("MULTILINESTRING", srid=4326, spatial_index=False), nullable=True),
        sa.Column("burn_depth_m", sa.Float(), nullable=False),
        sa.Column("accumulation_threshold_km2", sa.Float(), nullable=True),
        sa.Column("stats", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("height > 0 AND width > 0", name="shape_positive"),
    )
    op.create_table(
        "flood_extent",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("stage_m", sa.Float(), nullable=True),
        sa.Column("mode", sa.String(10), nullable=True),
        sa.Column("dem_id", sa.BigInteger(), sa.ForeignKey("flood_dem.id", ondelete="CASCADE"), nullable=True),
        sa.Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False),
        sa.Column("area_m2", sa.Float(), nullable=False),
        sa.Column("input_crs", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("created_by_user", sa.BigInteger(), sa.ForeignKey("app_user.id"), nullable=True),
        sa.CheckConstraint(_in("source", ("model", "upload", "drawn")), name="known_source"),
        sa.CheckConstraint("mode IS NULL OR " + _in("mode", ("fluvial", "pluvial")), name="known_mode"),
        sa.CheckConstraint(
            "(source = 'model') = (dem_id IS NOT NULL AND stage_m IS NOT NULL AND mode IS NOT NULL)",
            name="model_has_dem_stage_mode",
        ),
        sa.CheckConstraint("area_m2 >= 0", name="area_positive"),
        sa.UniqueConstraint("dem_id", "stage_m", "mode", name="one_model_extent_per_stage"),
    )
    op.create_index("idx_flood_extent_geom", "flood_extent", ["geom"], postgresql_using="gist")
    op.create_table(
        "flood_extent_class",
        sa.Column("extent_id", sa.BigInteger(), sa.ForeignKey("flood_extent.id", ondelete="CASCADE"), nullable=False),
        sa.Column("depth_class", sa.String(8), nullable=False),
        sa.Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False),
        sa.Column("area_m2", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("extent_id", "depth_class"),
        sa.CheckConstraint(_in("depth_class", DEPTH_CLASSES), name="known_depth_class"),
    )
    op.create_index("idx_flood_extent_class_geom", "flood_extent_class", ["geom"], postgresql_using="gist")


def downgrade() -> None:
    op.drop_table("flood_extent_class")
    op.drop_table("flood_extent")
    op.drop_table("flood_dem")
