"""The change log's NOTIFY may be left to the writer, sent after its commit (`gis.live.ChangeNotifier`).

PostgreSQL serialises the commits of transactions that NOTIFY: `PreCommit_Notify` takes one lock for the
whole cluster and holds it until the commit is flushed. The change log's trigger (migration 0013) notified in
every transaction that wrote an incident, so under many concurrent reports their commits, WAL flush and all,
went through that lock one at a time (bench/intake_bench.py: one backend in five waiting on `Lock:object`).

Now the trigger still writes the change rows in the writer's transaction, and notifies as before, unless the
transaction has set `wangge.notify_later` to `on` (`set_config(..., true)`: for that transaction only). A
writer that sets it must send the NOTIFY itself once it has committed: the one-statement intake of a report
does (`gis.incidents.service.intake_at_once`, with the app's `ChangeNotifier`, which sends one NOTIFY for all
the reports committed in the last few milliseconds). Every other writer (the general intake, the loop, reviews,
imports, the CLI) sets nothing and notifies from the trigger.

The function is changed where it stands (its definition read back and the NOTIFY line replaced), so its body
is written in one place, migration 0013.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-08
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

NOTIFY = "PERFORM pg_notify('wangge_incident_change', '');"
UNLESS_LATER = ("IF coalesce(current_setting('wangge.notify_later', true), '') <> 'on' THEN "
                + NOTIFY + " END IF;")


def _change(old: str, new: str) -> None:
    definition = op.get_bind().exec_driver_sql(
        "SELECT pg_get_functiondef('incident_change_logged()'::regprocedure)").scalar_one()
    if definition.count(old) != 1:
        raise RuntimeError(f"incident_change_logged() does not hold {old!r} once")
    op.get_bind().exec_driver_sql(definition.replace(old, new))


def upgrade() -> None:
    _change(NOTIFY, UNLESS_LATER)


def downgrade() -> None:
    _change(UNLESS_LATER, NOTIFY)
