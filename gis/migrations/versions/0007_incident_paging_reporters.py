"""Incidents: a stored stage deadline, indexes in the list's order, external ids per reporter.

- `stage_deadline`: when the incident's current stage is due (NULL once closed), a column
  generated from (category, state, state_entered_at) by `incident_stage_deadline`, whose hours
  come from gis.incidents.categories.STAGE_HOURS. Every write path (the one-statement intake, the
  general intake, the batch import's COPY, loop transitions) gets it without writing it, and the
  list's `overdue` filter is a plain comparison with it. A change of STAGE_HOURS needs a migration
  that redefines the function and rewrites the column (tests compare it with the Python rule).
- The list pages newest first (occurred_at DESC, id DESC): one index for the whole town (carrying
  the filter columns), one per village and per group grid for their subtrees, so a page reads
  about as many rows as it shows (an area's or a town's page filters the town's index).
- external_id is unique per reporting account (imports, with no account, share one namespace):
  one reporter re-sending gets their incident back; another account's id never collides with it,
  so the answer cannot tell whether someone else used the same id.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Frozen copy of gis.incidents.categories.STAGE_HOURS as of this revision (a migration must not
# change meaning when the code moves on); tests/test_incident_paging.py checks they agree.
STAGE_HOURS = {
    "dispute": {"visit": 24, "report": 24, "study": 168, "handle": 360, "follow_up": 168},
    "safety_hazard": {"visit": 12, "report": 12, "study": 48, "handle": 168, "follow_up": 168},
    "environment": {"visit": 24, "report": 24, "study": 72, "handle": 168, "follow_up": 168},
    "livelihood": {"visit": 48, "report": 24, "study": 168, "handle": 360, "follow_up": 168},
    "public_order": {"visit": 6, "report": 6, "study": 48, "handle": 168, "follow_up": 168},
    "disaster": {"visit": 1, "report": 1, "study": 2, "handle": 24, "follow_up": 72},
}


def _deadline_function() -> str:
    cases = "\n".join(
        f"    WHEN category = '{c}' AND state = '{s}' THEN {float(h)}"
        for c, stages in STAGE_HOURS.items()
        for s, h in stages.items()
    )
    # The span is added to the instant read as UTC wall time: timestamptz + interval is only
    # STABLE (a day or a month depends on the session's zone), timestamp + interval and AT TIME
    # ZONE 'UTC' are IMMUTABLE. With a truly immutable body PostgreSQL inlines the function into
    # the generated column; a body it may not inline ran per row through the SQL-function
    # executor and made a 1,000,000-row import's COPY ~14 s slower (bench/README.md).
    return f"""
CREATE FUNCTION incident_stage_deadline(category text, state text, entered timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT ((entered AT TIME ZONE 'UTC') + make_interval(secs => 3600 * CASE
{cases}
  END)) AT TIME ZONE 'UTC'
$$"""


def upgrade() -> None:
    op.execute(_deadline_function())
    op.execute(
        "ALTER TABLE incident ADD COLUMN stage_deadline timestamptz GENERATED ALWAYS AS "
        "(incident_stage_deadline(category, state, state_entered_at)) STORED"
    )
    op.execute("ALTER TABLE incident DROP CONSTRAINT incident_external_id_key")
    op.execute(
        "CREATE UNIQUE INDEX incident_external_id_per_reporter ON incident "
        "((coalesce(created_by, 0)), external_id)"
    )
    for col in ("group_code", "village_code", "area_code", "occurred_at", "category", "state"):
        op.execute(f"DROP INDEX incident_{col}")
    # The filters of the list ride along, so a filtered or deep page reads the index alone for the
    # rows it skips. Areas and towns are large shares of the table (a town is all of it in a
    # one-town database): their pages read this index and filter, instead of an index of their own.
    # Every index is rebuilt by a bulk import: the six-valued category and state columns got none
    # (a filter on them alone selects a sixth of the table, a sequential scan's job), and the
    # whole set costs a 1,000,000-row import about 8 s (bench/README.md).
    op.execute(
        "CREATE INDEX incident_newest ON incident (occurred_at, id) INCLUDE (category, state, "
        "stage_deadline, on_boundary, outside_distance_m, reviewed_at, created_by, area_code, "
        "town_code, village_code)"
    )
    for col in ("group_code", "village_code"):
        op.execute(f"CREATE INDEX incident_{col}_newest ON incident ({col}, occurred_at, id)")
    op.execute(
        "CREATE INDEX incident_stage_deadline ON incident (stage_deadline) "
        "WHERE stage_deadline IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX incident_created_by ON incident (created_by) WHERE created_by IS NOT NULL"
    )


def downgrade() -> None:
    for name in (
        "incident_created_by",
        "incident_stage_deadline",
        "incident_newest",
        *(f"incident_{c}_newest" for c in ("group_code", "village_code")),
    ):
        op.execute(f"DROP INDEX {name}")
    for col in ("group_code", "village_code", "area_code", "occurred_at", "category", "state"):
        op.execute(f"CREATE INDEX incident_{col} ON incident ({col})")
    op.execute("DROP INDEX incident_external_id_per_reporter")
    op.execute("ALTER TABLE incident ADD CONSTRAINT incident_external_id_key UNIQUE (external_id)")
    op.execute("ALTER TABLE incident DROP COLUMN stage_deadline")
    op.execute("DROP FUNCTION incident_stage_deadline(text, text, timestamptz)")
