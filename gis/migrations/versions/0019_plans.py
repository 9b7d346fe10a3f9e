"""Plans: a planner's named draft of grid changes, invisible to live views until published.

`plan` carries the owner, the status, a version (bumped by every saved edit: a save made against a
stale version is refused, never last-write-wins) and the base: {code: grid.id} of the current
version of every grid the plan touches, as it was when the plan first touched it (publish refuses
a plan whose base grids changed since). `plan_grid` holds the plan's proposed state of each grid
it touches: a new geometry, name, parent or code (`old_code` names the current code it replaces),
or its retirement (no geometry).

Revision ID: 0019
Revises: 0017 (as main chains them: 0015, 0018, 0017, then this)
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects.postgresql import JSONB

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plan",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.BigInteger(), sa.ForeignKey("app_user.id"), nullable=True),
        sa.Column("status", sa.String(10), nullable=False, server_default="draft"),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("base", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('draft', 'scheduled', 'published', 'discarded')", name="known_status"),
        sa.CheckConstraint("version >= 1", name="version_positive"),
        sa.CheckConstraint("(status IN ('scheduled', 'published')) = (effective_at IS NOT NULL)",
                           name="published_has_effective_date"),
    )
    op.create_index("plan_owner", "plan", ["owner_id"])
    op.create_table(
        "plan_grid",
        sa.Column("plan_id", sa.BigInteger(), sa.ForeignKey("plan.id", ondelete="CASCADE"), nullable=False),
        sa.Column("code", sa.String(15), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("parent_code", sa.String(15), nullable=True),
        sa.Column("geom", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=True),
        sa.Column("old_code", sa.String(15), nullable=True),
        sa.Column("retired", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("allow_parts", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("plan_id", "code"),
        sa.CheckConstraint("level BETWEEN 1 AND 4", name="plan_grid_level_range"),
        sa.CheckConstraint("retired = (geom IS NULL)", name="retired_iff_no_geometry"),
    )


def downgrade() -> None:
    op.drop_table("plan_grid")
    op.drop_index("plan_owner", table_name="plan")
    op.drop_table("plan")
