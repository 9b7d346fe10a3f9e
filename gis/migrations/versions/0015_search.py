"""Search: indexes for `GET /search` (grids, natural villages, households, incidents).

Names are found by prefix (a btree over `text_pattern_ops`, for queries of one or two characters)
and, from three characters, anywhere in the name (a pg_trgm GIN index: CJK text gives trigrams
too); a household by its number or address (trigrams); an incident by its external id (btree).
Each lookup reads about as many index entries as it returns, whatever the tables hold.

Revision ID: 0015
Revises: 0013 (chained after the live feed migration now on main)
Create Date: 2026-12-06
"""

from alembic import op

revision = "0015"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE INDEX grid_current_name_prefix ON grid (name text_pattern_ops) WHERE valid_to IS NULL")
    op.execute("CREATE INDEX grid_current_name_trgm ON grid USING gin (name gin_trgm_ops) WHERE valid_to IS NULL")
    op.execute("CREATE INDEX natural_village_name_prefix ON natural_village (name text_pattern_ops)")
    op.execute("CREATE INDEX natural_village_name_trgm ON natural_village USING gin (name gin_trgm_ops)")
    op.execute("CREATE INDEX household_no_trgm ON household USING gin (household_no gin_trgm_ops)")
    op.execute("CREATE INDEX household_address_trgm ON household USING gin (address gin_trgm_ops)")
    op.execute("CREATE INDEX incident_external_id ON incident (external_id)")


def downgrade() -> None:
    for name in ("incident_external_id", "household_address_trgm", "household_no_trgm", "natural_village_name_trgm",
                 "natural_village_name_prefix", "grid_current_name_trgm", "grid_current_name_prefix"):
        op.execute(f"DROP INDEX {name}")
