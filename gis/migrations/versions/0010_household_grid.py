"""House → grid as one SQL function (`household_grid_at`, view `household_grid`); stored flood answers.

A household belongs to the grid that `grid_at` (0008, the point → grid rule) gives for its point:
the deepest current grid holding it, the smallest code on a shared edge, so a house on the edge
between two group grids belongs to exactly one of them, whichever path asks. The function adds
the grid's ancestors (group, village, area and town code and name; a level left empty when the
house lies in a gap below it). Written as one inlinable SQL SELECT (LATERAL over `grid_at`, then
the current-code index up the parent chain), so a caller keeps the GiST and code indexes and a
paged list computes it only for the rows of its page.

Flood answers: the finder's answer for an extent (every household in rescue order with its depth,
grid path, responsible staff and shelter, unmasked, plus the shelters' loads) is computed once by
the writes that create an extent (upload, drawing, modelled stage) and stored in `flood_answer` /
`flood_answer_household` with the data version it was computed on; a list page reads only its rows
(each row keeps its house's point, so the household access predicate runs on it without a join).
`flood_data_version` counts the statements that change the finder's inputs (households, grids,
staff, shelters, roads; statement-level triggers), so a stored answer older than the data is
never served (the reader falls back to computing it without storing).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION household_grid_at(p geometry)
        RETURNS TABLE (
            grid_code varchar(15), level smallint, on_boundary boolean,
            group_code varchar(15), group_name text, village_code varchar(15), village_name text,
            area_code varchar(15), area_name text, town_code varchar(15), town_name text
        )
        LANGUAGE sql STABLE PARALLEL SAFE
        AS $$
            SELECT a.code, a.level, a.on_boundary,
                   CASE a.level WHEN 4 THEN g.code END,
                   CASE a.level WHEN 4 THEN g.name END,
                   CASE a.level WHEN 4 THEN p1.code WHEN 3 THEN g.code END,
                   CASE a.level WHEN 4 THEN p1.name WHEN 3 THEN g.name END,
                   CASE a.level WHEN 4 THEN p2.code WHEN 3 THEN p1.code WHEN 2 THEN g.code END,
                   CASE a.level WHEN 4 THEN p2.name WHEN 3 THEN p1.name WHEN 2 THEN g.name END,
                   CASE a.level WHEN 4 THEN p3.code WHEN 3 THEN p2.code WHEN 2 THEN p1.code ELSE g.code END,
                   CASE a.level WHEN 4 THEN p3.name WHEN 3 THEN p2.name WHEN 2 THEN p1.name ELSE g.name END
            FROM grid_at(p) a
            JOIN grid g ON g.valid_to IS NULL AND g.code = a.code
            LEFT JOIN grid p1 ON p1.valid_to IS NULL AND p1.code = g.parent_code
            LEFT JOIN grid p2 ON p2.valid_to IS NULL AND p2.code = p1.parent_code
            LEFT JOIN grid p3 ON p3.valid_to IS NULL AND p3.code = p2.parent_code
        $$
        """
    )
    op.execute(
        """
        CREATE VIEW household_grid AS
        SELECT h.id AS household_id, hg.*
        FROM household h LEFT JOIN LATERAL household_grid_at(h.geom) hg ON true
        """
    )

    op.execute(
        """
        CREATE TABLE flood_data_version (
            one boolean PRIMARY KEY DEFAULT true CHECK (one),
            version bigint NOT NULL
        );
        INSERT INTO flood_data_version (one, version) VALUES (true, 1);
        CREATE FUNCTION bump_flood_data_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE flood_data_version SET version = version + 1;
            RETURN NULL;
        END
        $$;
        """
    )
    for table in FLOOD_INPUTS:
        op.execute(
            f"CREATE TRIGGER {table}_flood_data_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION bump_flood_data_version()"
        )
    op.execute(
        """
        CREATE TABLE flood_answer (
            extent_id bigint NOT NULL REFERENCES flood_extent (id) ON DELETE CASCADE,
            buffer_m double precision NOT NULL,
            data_version bigint NOT NULL,
            computed_at timestamptz NOT NULL DEFAULT now(),
            shelter_method text,
            distance_kind text,
            shelters jsonb NOT NULL,
            totals jsonb NOT NULL,
            PRIMARY KEY (extent_id, buffer_m)
        );
        CREATE TABLE flood_answer_household (
            extent_id bigint NOT NULL,
            buffer_m double precision NOT NULL,
            rank integer NOT NULL,
            household_id bigint NOT NULL,
            group_code varchar(15),
            village_code varchar(15),
            area_code varchar(15),
            unplaced boolean NOT NULL,
            geom geometry(Point, 4326) NOT NULL,
            row json NOT NULL,
            PRIMARY KEY (extent_id, buffer_m, rank),
            FOREIGN KEY (extent_id, buffer_m) REFERENCES flood_answer (extent_id, buffer_m) ON DELETE CASCADE
        );
        """
    )


# The tables the flood finder's answer is computed from (gis/flood/answers.py).
FLOOD_INPUTS = ("household", "grid", "staff", "shelter", "road")


def downgrade() -> None:
    op.execute("DROP TABLE flood_answer_household")
    op.execute("DROP TABLE flood_answer")
    for table in FLOOD_INPUTS:
        op.execute(f"DROP TRIGGER {table}_flood_data_version ON {table}")
    op.execute("DROP FUNCTION bump_flood_data_version()")
    op.execute("DROP TABLE flood_data_version")
    op.execute("DROP VIEW household_grid")
    op.execute("DROP FUNCTION household_grid_at(geometry)")
