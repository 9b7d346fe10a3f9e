"""Audit log: an index for every filter of its list, in the list's order.

The list pages oldest first (at, id) and counts at most a fixed number of matches. With an index
per filter that yields rows in `at` order (audit_log_at, _actor, _resource, and now _action), a
page and its count read about as many index entries as they return, however long the log is. A
filter on one resource id (`resource_ids @> ARRAY[id]`) is answered by a GIN index.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX audit_log_action ON audit_log (action, at)")
    op.execute("CREATE INDEX audit_log_resource_ids ON audit_log USING gin (resource_ids)")


def downgrade() -> None:
    op.execute("DROP INDEX audit_log_resource_ids")
    op.execute("DROP INDEX audit_log_action")
