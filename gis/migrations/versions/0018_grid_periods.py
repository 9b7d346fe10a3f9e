"""Grid periods: no two versions of one code overlap in time; dated publishes (`grid_publish`).

Each grid version's life is `period` = [valid_from, valid_to) (a generated tstzrange), and an
exclusion constraint over (code WITH =, period WITH &&) (btree_gist) makes the database refuse two
versions of one code alive at the same instant — whichever path writes them. "Current" stays
`valid_to IS NULL` everywhere (grid_at, household_grid_at, the tiles); `period @> t` answers
"as of t" with the same constraint's GiST index.

`grid_publish` is every publish of grid changes (gis/planning/publish.py): the changes and the
base they were drafted on, the effective instant, who asked and when, and the inverse changes
(undo = publish the inverse). A publish dated in the future is stored `pending` and applied
by `apply_due` once the clock passes it (then `applied`, with valid_from = effective_at).

Revision ID: 0018
Revises: 0015
Create Date: 2026-12-06
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.execute(
        "ALTER TABLE grid ADD COLUMN period tstzrange "
        "GENERATED ALWAYS AS (tstzrange(valid_from, valid_to, '[)')) STORED"
    )
    op.execute(
        "ALTER TABLE grid ADD CONSTRAINT grid_period_no_overlap EXCLUDE USING gist (code WITH =, period WITH &&)"
    )
    op.execute(
        """
        CREATE TABLE grid_publish (
            id bigserial PRIMARY KEY,
            plan_id bigint,
            name text NOT NULL,
            changes jsonb NOT NULL,
            base jsonb,
            effective_at timestamptz NOT NULL,
            status varchar(10) NOT NULL DEFAULT 'pending',
            inverse jsonb,
            result jsonb,
            failure text,
            created_by bigint REFERENCES app_user (id),
            created_by_name text,
            created_at timestamptz NOT NULL DEFAULT now(),
            applied_at timestamptz,
            CONSTRAINT grid_publish_known_status CHECK (status IN ('pending', 'applied', 'cancelled', 'failed'))
        )
        """
    )
    op.execute("CREATE INDEX grid_publish_due ON grid_publish (effective_at) WHERE status = 'pending'")
    op.execute("CREATE INDEX grid_publish_newest ON grid_publish (created_at)")


def downgrade() -> None:
    op.execute("DROP TABLE grid_publish")
    op.execute("ALTER TABLE grid DROP CONSTRAINT grid_period_no_overlap")
    op.execute("ALTER TABLE grid DROP COLUMN period")
