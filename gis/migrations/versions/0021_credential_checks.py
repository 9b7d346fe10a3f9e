"""The credential checks as PL/pgSQL functions whose plans are kept: `api_token_check(credential_hash)` (an API
token) and `web_session_check(credential_hash)` (a browser session).

Every request runs one of them first (gis.auth.accounts.token_check / session_check). It is sent as text in one
message with the transaction's BEGIN or with the route's own statements (gis.db.first_rows, script_rows), so as
a bare statement it was planned again on every request: for the token check 0.18 ms of PostgreSQL's CPU per
request under the intake load (pg_stat_statements: 0.215 ms a call, 0.177 ms of it planning), about a tenth of
what the database spends on a report; a map page's tiles, asked with the browser's session, paid the session
check's planning on each. A PL/pgSQL function keeps the plan of its query for the connection; the message now
holds `SELECT ... FROM api_token_check(...)`, whose own planning is trivial.

The rules are the ones they were. A token: found by its hash, its user active, neither revoked nor expired; its
use stamped to the minute without waiting for a concurrent request of the same token (SKIP LOCKED). A session:
found by its hash, neither revoked nor expired, its user active.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION api_token_check(credential_hash text)
        RETURNS TABLE (id bigint, user_id bigint, username text, user_role varchar, user_scope varchar[],
                       token_role varchar, token_scope varchar[])
        LANGUAGE plpgsql VOLATILE
        AS $$
        #variable_conflict use_column
        BEGIN
            RETURN QUERY
            WITH t AS (
                SELECT t.id, t.last_used_at, u.id AS user_id, u.username, u.role AS user_role,
                       u.scope_codes AS user_scope, t.role AS token_role, t.scope_codes AS token_scope
                FROM api_token t JOIN app_user u ON u.id = t.user_id
                WHERE t.token_hash = credential_hash AND u.active AND t.revoked_at IS NULL
                  AND (t.expires_at IS NULL OR t.expires_at > now())
            ), touched AS (
                -- last_used_at to the minute: a busy device does not rewrite (and lock) its token row on
                -- every request; and never waits for it: while a concurrent request of the same token
                -- holds the row, that one records the use.
                UPDATE api_token SET last_used_at = now()
                WHERE api_token.id = (SELECT a.id FROM api_token a JOIN t ON t.id = a.id
                                      WHERE t.last_used_at IS NULL
                                         OR t.last_used_at < now() - interval '1 minute'
                                      FOR UPDATE OF a SKIP LOCKED)
            )
            SELECT t.id, t.user_id, t.username, t.user_role, t.user_scope, t.token_role, t.token_scope FROM t;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION web_session_check(credential_hash text)
        RETURNS TABLE (id bigint, username text, role varchar, scope_codes varchar[], id_hash varchar)
        LANGUAGE plpgsql STABLE
        AS $$
        #variable_conflict use_column
        BEGIN
            RETURN QUERY
            SELECT u.id, u.username, u.role, u.scope_codes, s.id_hash FROM web_session s
            JOIN app_user u ON u.id = s.user_id
            WHERE s.id_hash = credential_hash AND s.revoked_at IS NULL AND s.expires_at > now() AND u.active;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION web_session_check(text)")
    op.execute("DROP FUNCTION api_token_check(text)")
