"""Roster: who served which grid when (staff tenure), who is responsible for which households (联系户),
and DEM uploads run as jobs.

`staff` stays TODAY's roster (routing and the 明白卡 read it unchanged). Every change to it is
recorded in `staff_tenure` by a trigger, whatever writes it (a roster import, a single edit, the
sample loader, a grid recode): an insert opens a tenure, a change of name, phone, role or grid
closes the open one and opens the next, a delete closes it. The date a change takes effect is the
transaction's `wangge.effective_date` setting (`set_config(..., true)`) when set, else today in
Beijing. A tenure closed on or before the day it began was a correction and is removed.

`household_responsible` keeps no foreign key to staff, so a member's past responsibilities outlive
their staff row; a staff row deleted closes its open responsibilities (same trigger).

Revision ID: 0017
Revises: 0018 (chained after what main holds; the lead re-chains at merge)
Create Date: 2026-12-06
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

STAFF_ROLES = ("grid_leader", "grid_member", "party_household", "supervisor")


def upgrade() -> None:
    roles = ", ".join(f"'{r}'" for r in STAFF_ROLES)
    op.execute(
        f"""
        CREATE TABLE staff_tenure (
            id bigserial PRIMARY KEY,
            staff_id bigint NOT NULL,
            name text NOT NULL,
            phone varchar(20),
            role varchar(20) NOT NULL,
            grid_code varchar(15) NOT NULL,
            valid_from date NOT NULL,
            valid_to date,
            CONSTRAINT staff_tenure_known_role CHECK (role IN ({roles})),
            CONSTRAINT staff_tenure_period CHECK (valid_to IS NULL OR valid_to > valid_from)
        );
        CREATE INDEX staff_tenure_grid ON staff_tenure (grid_code, valid_from);
        CREATE INDEX staff_tenure_staff ON staff_tenure (staff_id);
        CREATE UNIQUE INDEX staff_tenure_one_open ON staff_tenure (staff_id) WHERE valid_to IS NULL;

        CREATE TABLE household_responsible (
            id bigserial PRIMARY KEY,
            household_id bigint NOT NULL REFERENCES household (id) ON DELETE CASCADE,
            staff_id bigint NOT NULL,
            valid_from date NOT NULL,
            valid_to date,
            CONSTRAINT household_responsible_period CHECK (valid_to IS NULL OR valid_to > valid_from)
        );
        CREATE INDEX household_responsible_household ON household_responsible (household_id);
        CREATE INDEX household_responsible_staff ON household_responsible (staff_id);
        CREATE UNIQUE INDEX household_responsible_one_open ON household_responsible (household_id, staff_id)
            WHERE valid_to IS NULL;

        CREATE TABLE dem_job (
            id bigserial PRIMARY KEY,
            state varchar(10) NOT NULL DEFAULT 'queued',
            progress double precision NOT NULL DEFAULT 0,
            step text,
            name text NOT NULL,
            file_name text NOT NULL,
            created_by bigint REFERENCES app_user (id),
            created_at timestamptz NOT NULL DEFAULT now(),
            started_at timestamptz,
            heartbeat_at timestamptz,
            finished_at timestamptz,
            result jsonb,
            problems jsonb,
            CONSTRAINT dem_job_known_state CHECK (state IN ('queued', 'running', 'done', 'failed')),
            CONSTRAINT dem_job_progress_range CHECK (progress >= 0 AND progress <= 1)
        );

        CREATE FUNCTION roster_effective_date() RETURNS date LANGUAGE sql STABLE AS $$
            SELECT coalesce(nullif(current_setting('wangge.effective_date', true), '')::date,
                            (now() AT TIME ZONE 'Asia/Shanghai')::date)
        $$;

        CREATE FUNCTION staff_tenure_close(p_staff bigint, p_on date) RETURNS void LANGUAGE sql AS $$
            DELETE FROM staff_tenure WHERE staff_id = p_staff AND valid_to IS NULL AND valid_from >= p_on;
            UPDATE staff_tenure SET valid_to = p_on WHERE staff_id = p_staff AND valid_to IS NULL;
        $$;

        CREATE FUNCTION staff_tenure_track() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            on_day date := roster_effective_date();
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE') THEN
                IF TG_OP = 'UPDATE' AND (NEW.name, NEW.phone, NEW.role, NEW.grid_code)
                        IS NOT DISTINCT FROM (OLD.name, OLD.phone, OLD.role, OLD.grid_code) THEN
                    RETURN NULL;
                END IF;
                PERFORM staff_tenure_close(OLD.id, on_day);
            END IF;
            IF TG_OP = 'DELETE' THEN
                DELETE FROM household_responsible
                    WHERE staff_id = OLD.id AND valid_to IS NULL AND valid_from >= on_day;
                UPDATE household_responsible SET valid_to = on_day WHERE staff_id = OLD.id AND valid_to IS NULL;
            ELSE
                INSERT INTO staff_tenure (staff_id, name, phone, role, grid_code, valid_from)
                    VALUES (NEW.id, NEW.name, NEW.phone, NEW.role, NEW.grid_code, on_day);
            END IF;
            RETURN NULL;
        END
        $$;

        CREATE TRIGGER staff_tenure_track AFTER INSERT OR UPDATE OR DELETE ON staff
            FOR EACH ROW EXECUTE FUNCTION staff_tenure_track();

        INSERT INTO staff_tenure (staff_id, name, phone, role, grid_code, valid_from)
            SELECT id, name, phone, role, grid_code, roster_effective_date() FROM staff;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER staff_tenure_track ON staff;
        DROP FUNCTION staff_tenure_track();
        DROP FUNCTION staff_tenure_close(bigint, date);
        DROP FUNCTION roster_effective_date();
        DROP TABLE dem_job;
        DROP TABLE household_responsible;
        DROP TABLE staff_tenure;
        """
    )
