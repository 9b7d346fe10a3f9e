"""Migration 0017 (roster): the tenure trigger on a bare database, and a downgrade that leaves nothing behind."""

from __future__ import annotations

import importlib.util

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from gis.db import MIGRATIONS_DIR, alembic_config, upgrade
from gis.schema_check import throwaway_database
from tests.conftest import _base_url

ROSTER_TABLES = {"staff_tenure", "household_responsible", "dem_job"}


def _down_revision() -> str:
    spec = importlib.util.spec_from_file_location("m0017", MIGRATIONS_DIR / "versions" / "0017_roster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.down_revision)


def test_staff_changes_are_dated_by_their_transaction(session):
    g1, g2 = session.execute(text(
        "SELECT code FROM grid WHERE level = 4 AND valid_to IS NULL ORDER BY code LIMIT 2")).scalars().all()
    staff_id = session.execute(text("INSERT INTO staff (name, phone, role, grid_code) "
                                    "VALUES ('甲', '13800000000', 'grid_member', :g) RETURNING id"), {"g": g1}).scalar()
    session.execute(text("SELECT set_config('wangge.effective_date', '2030-03-01', true)"))
    session.execute(text("UPDATE staff SET grid_code = :g WHERE id = :i"), {"g": g2, "i": staff_id})
    session.execute(text("SELECT set_config('wangge.effective_date', '2030-06-01', true)"))
    session.execute(text("UPDATE staff SET phone = phone WHERE id = :i"), {"i": staff_id})  # no change: no tenure
    session.execute(text("DELETE FROM staff WHERE id = :i"), {"i": staff_id})
    spans = session.execute(text("SELECT grid_code, valid_from, valid_to FROM staff_tenure WHERE staff_id = :i "
                                 "ORDER BY id"), {"i": staff_id}).all()
    assert [(g, str(t)) for g, _, t in spans] == [(g1, "2030-03-01"), (g2, "2030-06-01")]
    assert str(spans[1][1]) == "2030-03-01"  # the move, dated by the transaction's effective date


def test_the_downgrade_removes_everything_it_made():
    from alembic import command

    with throwaway_database(_base_url(), suffix="roster_mig") as url:
        engine = create_engine(url, poolclass=NullPool)
        upgrade(engine)
        with engine.begin() as c:
            cfg = alembic_config(url.render_as_string(hide_password=False))
            cfg.attributes["connection"] = c
            command.downgrade(cfg, _down_revision())
        tables = set(inspect(engine).get_table_names())
        assert not (ROSTER_TABLES & tables) and "staff" in tables
        with engine.connect() as c:
            functions = c.execute(text("SELECT count(*) FROM pg_proc WHERE proname LIKE '%staff_tenure%' "
                                       "OR proname = 'roster_effective_date'")).scalar_one()
        assert functions == 0
        upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= ROSTER_TABLES
        engine.dispose()
