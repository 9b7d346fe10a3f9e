"""Incidents: codes, ids, states and categories compare bytewise (COLLATE "C").

These columns hold ASCII identifiers (grid codes, external ids, category and state names): their
order is the same under every collation, but PostgreSQL sorts and indexes "C" columns with plain
byte comparisons (and abbreviated keys), which builds their B-tree indexes about a third faster
than the locale-aware default — what a large batch import spends its last seconds on.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = {"external_id": "text", "category": "varchar(20)", "state": "varchar(12)",
           "group_code": "varchar(15)", "village_code": "varchar(15)", "area_code": "varchar(15)",
           "town_code": "varchar(15)"}


def _alter(collation: str) -> None:
    op.execute("ALTER TABLE incident " + ", ".join(
        f'ALTER COLUMN {name} TYPE {kind} COLLATE {collation}' for name, kind in COLUMNS.items()))


def upgrade() -> None:
    _alter('"C"')


def downgrade() -> None:
    _alter('"default"')
