"""The incident change log the live feed reads (`incident_change`), filled by triggers on `incident`.

Every write path (the single intake, the batch import's COPY, loop transitions, the review) ends
in an INSERT or UPDATE of `incident`, so statement-level triggers with transition tables see them
all: one `created`/`changed` row per incident for a statement of at most 500 rows, and ONE `bulk`
row with the count for a larger statement (a batch import's part of 100,000 rows writes one row,
not 100,000); an UPDATE is logged only for incidents whose state, review, grid, category, place or
satisfaction changed. Each statement also sends `NOTIFY wangge_incident_change` (delivered at
commit; PostgreSQL folds a transaction's identical notifications into one).

Each row keeps the writing transaction's id (`xid`, xid8): a reader that follows row ids alone
can miss a row whose transaction committed after a later-numbered one, so the reader
(gis/live.py) reads only rows older than every transaction still running
(`xid < pg_snapshot_xmin(pg_current_snapshot())`), in (xid, id) order, with (xid, id) as its cursor.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# More rows than this in one statement: one `bulk` row ("reload the layer") instead of one per incident.
BULK_ROWS = 500

# The columns whose change a page shows (state and its clock, review, grid path, category, place, satisfaction).
WATCHED = ("state", "state_entered_at", "reviewed_at", "category", "dispute_kind", "group_code", "village_code",
           "area_code", "town_code", "on_boundary", "outside_distance_m", "satisfied", "geom")


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE incident_change (
            id bigserial PRIMARY KEY,
            xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            incident_id bigint,
            kind varchar(8) NOT NULL,
            count integer NOT NULL DEFAULT 1,
            at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT known_change_kind CHECK (kind IN ('created', 'changed', 'bulk')),
            CONSTRAINT bulk_has_no_incident CHECK ((kind = 'bulk') = (incident_id IS NULL))
        )
        """
    )
    op.execute("CREATE INDEX incident_change_order ON incident_change (xid, id)")
    op.execute("CREATE INDEX incident_change_at ON incident_change (at)")
    old = ", ".join(f"o.{c}" for c in WATCHED)
    new = ", ".join(f"n.{c}" for c in WATCHED)
    op.execute(
        f"""
        CREATE FUNCTION incident_change_logged() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            touched bigint;
        BEGIN
            SELECT count(*) INTO touched FROM new_rows;
            IF touched = 0 THEN
                RETURN NULL;
            END IF;
            IF touched > {BULK_ROWS} THEN
                INSERT INTO incident_change (incident_id, kind, count) VALUES (NULL, 'bulk', touched);
            ELSIF TG_OP = 'INSERT' THEN
                INSERT INTO incident_change (incident_id, kind) SELECT n.id, 'created' FROM new_rows n ORDER BY n.id;
            ELSE
                INSERT INTO incident_change (incident_id, kind)
                SELECT n.id, 'changed' FROM new_rows n JOIN old_rows o ON o.id = n.id
                WHERE ({old}) IS DISTINCT FROM ({new})
                ORDER BY n.id;
                IF NOT FOUND THEN
                    RETURN NULL;
                END IF;
            END IF;
            PERFORM pg_notify('wangge_incident_change', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER incident_change_insert AFTER INSERT ON incident
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION incident_change_logged()
        """
    )
    op.execute(
        """
        CREATE TRIGGER incident_change_update AFTER UPDATE ON incident
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION incident_change_logged()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER incident_change_update ON incident")
    op.execute("DROP TRIGGER incident_change_insert ON incident")
    op.execute("DROP FUNCTION incident_change_logged()")
    op.execute("DROP TABLE incident_change")
