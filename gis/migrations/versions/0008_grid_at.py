"""The point → grid rule as one SQL function, `grid_at(point)`, for every SQL path that needs it.

The rule (gis/grids/locate.py documents it): among the current grids whose closed polygon holds
the point, the deepest level wins, then the smallest code; `on_boundary` says the point lies on
that grid's boundary, `candidates` how many current grids hold it. A set-returning LANGUAGE sql
STABLE function with one SELECT is inlined by the planner where it is called in FROM (LATERAL),
so a caller keeps the grid table's GiST index. Intake, locate and house → grid call it; the
in-memory batch matcher is tested against it on the same points.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION grid_at(p geometry)
        RETURNS TABLE (code varchar(15), level smallint, on_boundary boolean, candidates bigint)
        LANGUAGE sql STABLE PARALLEL SAFE
        AS $$
            SELECT g.code, g.level, ST_Intersects(ST_Boundary(g.geom), p), count(*) OVER ()
            FROM grid g
            WHERE g.valid_to IS NULL AND ST_Intersects(g.geom, p)
            ORDER BY g.level DESC, g.code
            LIMIT 1
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION grid_at(geometry)")
