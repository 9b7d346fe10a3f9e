"""Incidents, their immutable loop history, routing to staff and possible-duplicate links.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from collections.abc import Iterable

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CATEGORIES = ("dispute", "safety_hazard", "environment", "livelihood", "public_order", "disaster")
DISPUTE_KINDS = ("land", "neighbour", "family", "wages", "demolition")
STATES = ("visit", "report", "study", "handle", "follow_up", "closed")


def _in(column: str, values: Iterable[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


IMMUTABLE_SQL = """
CREATE FUNCTION incident_event_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'incident history is immutable (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER incident_event_no_change BEFORE UPDATE OR DELETE ON incident_event
  FOR EACH ROW EXECUTE FUNCTION incident_event_immutable();
CREATE TRIGGER incident_event_no_truncate BEFORE TRUNCATE ON incident_event
  FOR EACH STATEMENT EXECUTE FUNCTION incident_event_immutable();
"""


def upgrade() -> None:
    op.create_table(
        "incident",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("external_id", sa.Text(), nullable=True, unique=True),
        sa.Column("category", sa.String(20), nullable=False),
        sa.Column("dispute_kind", sa.String(20), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("reporter_name", sa.Text(), nullable=True),
        sa.Column("reporter_phone", sa.String(20), nullable=True),
        sa.Column("geom", Geometry("POINT", srid=4326, spatial_index=False), nullable=False),
        sa.Column("location_source", sa.String(20), nullable=False),
        sa.Column("input_crs", sa.Text(), nullable=True),
        sa.Column("place_query", sa.Text(), nullable=True),
        sa.Column("place_match", sa.Text(), nullable=True),
        sa.Column("precision_m", sa.Float(), nullable=True),
        sa.Column("group_code", sa.String(15), nullable=False),
        sa.Column("village_code", sa.String(15), nullable=True),
        sa.Column("area_code", sa.String(15), nullable=True),
        sa.Column("town_code", sa.String(15), nullable=True),
        sa.Column("grid_version_id", sa.BigInteger(), sa.ForeignKey("grid.id"), nullable=False),
        sa.Column("on_boundary", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("outside_distance_m", sa.Float(), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(12), nullable=False, server_default="visit"),
        sa.Column("state_entered_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("satisfied", sa.Boolean(), nullable=True),
        sa.Column("created_by", sa.BigInteger(), sa.ForeignKey("app_user.id"), nullable=True),
        sa.CheckConstraint(_in("category", CATEGORIES), name="known_category"),
        sa.CheckConstraint(
            "dispute_kind IS NULL OR (category = 'dispute' AND " + _in("dispute_kind", DISPUTE_KINDS) + ")",
            name="dispute_kind_only_for_disputes",
        ),
        sa.CheckConstraint(_in("state", STATES), name="known_state"),
        sa.CheckConstraint(_in("location_source", ("coordinates", "gazetteer")), name="known_location_source"),
        sa.CheckConstraint("outside_distance_m IS NULL OR outside_distance_m >= 0", name="distance_positive"),
    )
    op.create_index("idx_incident_geom", "incident", ["geom"], postgresql_using="gist")
    for col in ("group_code", "village_code", "area_code", "state", "category", "occurred_at"):
        op.create_index(f"incident_{col}", "incident", [col])

    op.create_table(
        "incident_event",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("incident_id", sa.BigInteger(), sa.ForeignKey("incident.id"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("clock_timestamp()")),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("from_state", sa.String(12), nullable=True),
        sa.Column("to_state", sa.String(12), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_index("incident_event_incident", "incident_event", ["incident_id", "id"])
    op.execute(IMMUTABLE_SQL)

    op.create_table(
        "incident_assignee",
        sa.Column("incident_id", sa.BigInteger(), sa.ForeignKey("incident.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("staff_id", sa.BigInteger(), sa.ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("duty", sa.String(20), nullable=False),
    )
    op.create_table(
        "incident_duplicate",
        sa.Column("incident_id", sa.BigInteger(), sa.ForeignKey("incident.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("other_id", sa.BigInteger(), sa.ForeignKey("incident.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("distance_m", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("incident_duplicate")
    op.drop_table("incident_assignee")
    op.execute("DROP TABLE incident_event CASCADE")
    op.execute("DROP FUNCTION IF EXISTS incident_event_immutable()")
    op.drop_table("incident")
