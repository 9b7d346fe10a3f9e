"""Register history: each import, who lived in which household when, and what changed.

`register_import` is one run of a register import (file, mode, as-of date, counts, who).
`resident_period` is a resident's tenure in a household ([valid_from, valid_to), valid_from NULL =
since before the register began): the `resident` table stays today's residents, so every reader of it
(flood finder, household lists) keeps working unchanged, and "who lived in household H on date D" reads
the periods. `register_change` is the change log a re-import writes (moved in/out, born, died, phone
changed, moved group ...) with its effective date. `household_location` says how each imported
household was placed (coordinates, a known house address, or a settlement's point: approximate).
`import_id` names the register_import row a change or period came from; it is not a foreign key: a
county's import writes a million rows, and a per-row check would cost more than the rest of the write.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

CHANGE_KINDS = ("household_added", "moved_in", "moved_out", "born", "died", "phone_changed", "moved_group",
                "address_changed", "head_changed", "details_changed")
LOCATED_BY = ("coordinates", "address", "settlement")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE register_import (
            id bigserial PRIMARY KEY,
            kind text NOT NULL,
            filename text NOT NULL,
            mode text NOT NULL,
            as_of date NOT NULL,
            rows integer NOT NULL,
            households integer NOT NULL,
            residents integer NOT NULL,
            created_by text,
            created_at timestamptz NOT NULL DEFAULT now(),
            summary jsonb NOT NULL
        )
        """
    )
    op.execute(
        f"""
        CREATE TABLE register_change (
            id bigserial PRIMARY KEY,
            household_no varchar(32) NOT NULL,
            id_number varchar(18),
            kind varchar(24) NOT NULL CONSTRAINT register_change_kind CHECK ({_one_of("kind", CHANGE_KINDS)}),
            old text,
            new text,
            effective_date date NOT NULL,
            import_id bigint,
            recorded_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX register_change_household ON register_change (household_no, effective_date)")
    op.execute("CREATE INDEX register_change_id_number ON register_change (id_number)")
    op.execute(
        """
        CREATE TABLE resident_period (
            id bigserial PRIMARY KEY,
            household_no varchar(32) NOT NULL,
            resident_key text NOT NULL,
            id_number varchar(18),
            name text NOT NULL,
            valid_from date,
            valid_to date,
            import_id bigint,
            CONSTRAINT resident_period_order CHECK (valid_to IS NULL OR valid_from IS NULL OR valid_from <= valid_to)
        )
        """
    )
    op.execute("CREATE INDEX resident_period_household ON resident_period (household_no)")
    op.execute("CREATE INDEX resident_period_key ON resident_period (resident_key)")
    op.execute(
        f"""
        CREATE TABLE household_location (
            household_id bigint PRIMARY KEY REFERENCES household (id) ON DELETE CASCADE,
            located_by varchar(16) NOT NULL
                CONSTRAINT household_location_by CHECK ({_one_of("located_by", LOCATED_BY)}),
            precision_m double precision,
            place text
        )
        """
    )


def downgrade() -> None:
    for table in ("household_location", "resident_period", "register_change", "register_import"):
        op.execute(f"DROP TABLE {table}")
