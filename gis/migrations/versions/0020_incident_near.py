"""Possible duplicates of an incident as one SQL function, `incident_near(...)`, planned with its index.

The rule (the intake statement and `_link_duplicates` both call it): open incidents of the same category
within `radius_m` metres (geodesic) and `window_h` hours of the given point and time. A degree box first, so
the GiST index on incident.geom finds the candidates (80 km per degree is safe up to ~44°N), then the exact
geodesic test.

Why a function with `SET enable_seqscan = off`: the intake statement is prepared, and PostgreSQL keeps one
generic plan per connection until the table's statistics change. Made while the incident table was small (a
new town, or a bench's fresh database), that plan read every incident for every report (a sequential scan
and a hash join on the category), and kept doing so while the table grew, until autovacuum next analysed it
(one minute or more): the intake fell to half its speed for the first ~60 s of a fresh database
(bench/intake_bench.py). The SET keeps the function from being inlined, so its own query is planned each
time it runs (a small query), with current sizes and without a sequential scan.

STABLE: it reads with the calling statement's snapshot, so the intake statement's new incident, inserted
by that same statement, is not among its own duplicates.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION incident_near(g geometry, cat text, at timestamptz, radius_m double precision,
                                      window_h double precision)
        RETURNS TABLE (other_id bigint, distance_m double precision)
        LANGUAGE sql STABLE PARALLEL SAFE
        SET enable_seqscan = off
        AS $$
            SELECT o.id, ST_Distance(g::geography, o.geom::geography)
            FROM incident o
            WHERE o.category = cat AND o.state <> 'closed'
              AND o.geom && ST_Expand(g, radius_m / 80000.0)
              AND ST_DWithin(g::geography, o.geom::geography, radius_m)
              AND abs(extract(epoch FROM o.occurred_at - at)) <= window_h * 3600
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION incident_near(geometry, text, timestamptz, double precision, double precision)")
