"""Accounts, API tokens, browser sessions, login throttling, emergencies and the append-only audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ROLES = ("admin", "command_center", "emergency", "planner", "grid_staff", "supervisor")
ROLE_CHECK = "role IN (" + ", ".join(f"'{r}'" for r in ROLES) + ")"

APPEND_ONLY_SQL = """
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the audit log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
"""


def upgrade() -> None:
    op.create_table(
        "app_user",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("scope_codes", postgresql.ARRAY(sa.String(15)), nullable=False, server_default="{}"),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("is_demo", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(ROLE_CHECK, name="known_role"),
        sa.CheckConstraint("username ~ '^[A-Za-z0-9_.@-]{2,64}$'", name="username_chars"),
        sa.CheckConstraint(
            "role NOT IN ('grid_staff', 'supervisor') OR cardinality(scope_codes) > 0",
            name="scoped_roles_have_scope",
        ),
    )
    op.create_index("app_user_username", "app_user", [sa.text("lower(username)")], unique=True)

    op.create_table(
        "api_token",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("app_user.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("token_prefix", sa.String(12), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=True),
        sa.Column("scope_codes", postgresql.ARRAY(sa.String(15)), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IS NULL OR " + ROLE_CHECK, name="known_role"),
    )

    op.create_table(
        "web_session",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("app_user.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("client_ip", sa.Text(), nullable=True),
    )
    op.create_index("web_session_user", "web_session", ["user_id"])

    op.create_table(
        "login_attempt",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("client_ip", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("success", sa.Boolean(), nullable=False),
    )
    op.create_index("login_attempt_recent", "login_attempt", [sa.text("lower(username)"), "at"])
    op.create_index("login_attempt_ip", "login_attempt", ["client_ip", "at"])

    op.create_table(
        "emergency",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("extent", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False), nullable=False),
        sa.Column("declared_by", sa.BigInteger(), sa.ForeignKey("app_user.id"), nullable=False),
        sa.Column("declared_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("closed_by", sa.BigInteger(), sa.ForeignKey("app_user.id"), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("ST_IsValid(extent) AND NOT ST_IsEmpty(extent)", name="extent_valid"),
        sa.CheckConstraint("(closed_at IS NULL) = (closed_by IS NULL)", name="closed_by_whom"),
    )
    op.create_index("idx_emergency_extent", "emergency", ["extent"], postgresql_using="gist")

    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("clock_timestamp()")),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("role", sa.String(20), nullable=True),
        sa.Column("via", sa.String(10), nullable=True),
        sa.Column("client_ip", sa.Text(), nullable=True),
        sa.Column("method", sa.String(10), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("resource", sa.String(40), nullable=True),
        sa.Column("resource_ids", postgresql.ARRAY(sa.Text()), nullable=False, server_default="{}"),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False, server_default="ok"),
        sa.Column("detail", postgresql.JSONB(), nullable=True),
    )
    op.create_index("audit_log_at", "audit_log", ["at"])
    op.create_index("audit_log_actor", "audit_log", ["actor", "at"])
    op.create_index("audit_log_resource", "audit_log", ["resource", "at"])
    op.execute(APPEND_ONLY_SQL)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS audit_log CASCADE")
    op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    for table in ("emergency", "login_attempt", "web_session", "api_token", "app_user"):
        op.drop_table(table)
