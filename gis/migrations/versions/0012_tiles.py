"""Vector tiles: each layer's data version, bumped by statement-level triggers on every write it shows.

A tile's ETag includes the version of its layer (gis/tiles.py), so a write that can change a tile makes
every cached copy stale, and an unchanged layer is revalidated (304) without building the tile. The
versions live in `tile_data_version`, one counter per layer in each of 16 slots; a writing transaction
bumps the slot of its backend (`pg_backend_pid() % 16`), so concurrent writers (intakes on every
connection of the pool) seldom wait for each other's row lock until commit, and a layer's version is the
sum over the slots (it grows with every committed write, and a reader sees it only with the data).

Which writes bump which layer:
- grid: grids, households (a house's group grid and grid staff's scope follow the grid polygons);
- incident: incidents;
- household, resident: households;
- emergency: households (the emergency team and the command center see households by active extents).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SLOTS = 16
# table -> the tile layers its writes change
TILE_INPUTS = {
    "grid": ("grids", "households"),
    "incident": ("incidents",),
    "household": ("households",),
    "resident": ("households",),
    "emergency": ("households",),
}


def upgrade() -> None:
    op.execute(
        f"""
        CREATE TABLE tile_data_version (
            slot smallint PRIMARY KEY,
            grids bigint NOT NULL DEFAULT 0,
            incidents bigint NOT NULL DEFAULT 0,
            households bigint NOT NULL DEFAULT 0,
            CONSTRAINT tile_data_version_slot CHECK (slot >= 0 AND slot < {SLOTS})
        );
        INSERT INTO tile_data_version (slot) SELECT generate_series(0, {SLOTS - 1});
        CREATE FUNCTION bump_tile_data_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE tile_data_version
            SET grids = grids + ('grids' = ANY (TG_ARGV))::int,
                incidents = incidents + ('incidents' = ANY (TG_ARGV))::int,
                households = households + ('households' = ANY (TG_ARGV))::int
            WHERE slot = pg_backend_pid() % {SLOTS};
            RETURN NULL;
        END
        $$;
        """
    )
    for table, layers in TILE_INPUTS.items():
        args = ", ".join(f"'{layer}'" for layer in layers)
        op.execute(
            f"CREATE TRIGGER {table}_tile_data_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION bump_tile_data_version({args})"
        )


def downgrade() -> None:
    for table in TILE_INPUTS:
        op.execute(f"DROP TRIGGER {table}_tile_data_version ON {table}")
    op.execute("DROP FUNCTION bump_tile_data_version()")
    op.execute("DROP TABLE tile_data_version")
