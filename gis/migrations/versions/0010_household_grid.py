"""House → grid as one SQL function, `household_grid_at(point)`, and the view `household_grid`.

A household belongs to the grid that `grid_at` (0008, the point → grid rule) gives for its point:
the deepest current grid holding it, the smallest code on a shared edge, so a house on the edge
between two group grids belongs to exactly one of them, whichever path asks. The function adds
the grid's ancestors (group, village, area and town code and name; a level left empty when the
house lies in a gap below it). Written as one inlinable SQL SELECT (LATERAL over `grid_at`, then
the current-code index up the parent chain), so a caller keeps the GiST and code indexes and a
paged list computes it only for the rows of its page.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-06
"""

from alembic import op

revision = "0010"
down_revision = "0008"
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


def downgrade() -> None:
    op.execute("DROP VIEW household_grid")
    op.execute("DROP FUNCTION household_grid_at(geometry)")
