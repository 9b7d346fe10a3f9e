"""Incidents: the review queue's own index, so its pages cost the same whatever the table holds.

The command center's review queue lists the flagged incidents nobody has checked yet
(gis.incidents.service.REVIEW_QUEUE: on a shared edge, outside the town, or assigned above the
group level; `reviewed_at` empty), newest first. They are a small share of the table: read through
the list's index (incident_newest) a page would skip every unflagged row before it. This partial
index holds exactly the queue's rows in the list's order; its predicate is the condition the
query writes (FLAGGED_SQL and `reviewed_at IS NULL`), so the planner proves it applies.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX incident_review_queue ON incident (occurred_at, id) "
        "WHERE reviewed_at IS NULL AND (on_boundary OR outside_distance_m IS NOT NULL "
        "OR village_code IS NULL OR group_code = village_code)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX incident_review_queue")
