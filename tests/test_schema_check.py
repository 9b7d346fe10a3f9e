"""The schema gate: the models and the migrations agree, and a model that differs is caught."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Index, MetaData, String, create_engine, inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from gis.db import upgrade
from gis.models import Base
from gis.schema_check import check_schema, schema_differences, throwaway_database
from tests.conftest import _base_url

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def migrated_url() -> Iterator[URL]:
    with throwaway_database(_base_url(), suffix="schema_test") as url:
        engine = create_engine(url, poolclass=NullPool)
        upgrade(engine)
        engine.dispose()
        yield url


def _models_with(change: Callable[[MetaData], None]) -> MetaData:
    """A copy of the models' metadata with one deliberate change."""
    copy = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(copy)
    change(copy)
    return copy


def _index(metadata: MetaData, table: str, name: str) -> Index:
    return next(ix for ix in metadata.tables[table].indexes if ix.name == name)


def test_every_migrated_table_is_mapped(migrated_url):
    engine = create_engine(migrated_url, poolclass=NullPool)
    tables = set(inspect(engine).get_table_names()) - {"spatial_ref_sys", "alembic_version"}
    engine.dispose()
    assert len(tables) >= 23  # the 23 tables the issue counted, and any added since
    assert tables == set(Base.metadata.tables)


def test_models_and_migrations_agree(migrated_url):
    assert schema_differences(migrated_url) == []


def test_check_schema_upgrades_a_throwaway_database_and_drops_it():
    url = _base_url()
    assert check_schema(url) == []
    admin = create_engine(url, poolclass=NullPool)
    with admin.connect() as conn:
        leftovers = conn.execute(
            text("SELECT datname FROM pg_database WHERE datname LIKE :pattern"),
            {"pattern": f"%_check_{os.getpid()}"},
        ).scalars().all()
    admin.dispose()
    assert leftovers == []


def _drop_index(metadata: MetaData) -> None:
    table = metadata.tables["audit_log"]
    table.indexes.discard(_index(metadata, "audit_log", "audit_log_at"))


def _drop_expression_index(metadata: MetaData) -> None:
    metadata.tables["app_user"].indexes.discard(_index(metadata, "app_user", "app_user_username"))


def _other_partial_index_condition(metadata: MetaData) -> None:
    _index(metadata, "incident", "incident_created_by").dialect_options["postgresql"]["where"] = text("created_by > 0")


def _fewer_included_columns(metadata: MetaData) -> None:
    _index(metadata, "incident", "incident_newest").dialect_options["postgresql"]["include"] = ["category"]


def _default_collation(metadata: MetaData) -> None:
    metadata.tables["incident"].c["group_code"].type = String(15)


def _other_generated_expression(metadata: MetaData) -> None:
    computed = metadata.tables["incident"].c["stage_deadline"].computed
    assert computed is not None
    computed.sqltext = text("state_entered_at")


def _drop_check_constraint(metadata: MetaData) -> None:
    table = metadata.tables["grid"]
    table.constraints.discard(next(c for c in table.constraints if c.name == "level_range"))


def _other_index_method(metadata: MetaData) -> None:
    _index(metadata, "audit_log", "audit_log_resource_ids").dialect_options["postgresql"]["using"] = "btree"


def _nullable_column(metadata: MetaData) -> None:
    metadata.tables["household"].c["address"].nullable = True


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_drop_index, "audit_log_at"),
        (_drop_expression_index, "app_user_username"),
        (_other_partial_index_condition, "incident_created_by"),
        (_fewer_included_columns, "incident_newest"),
        (_default_collation, "group_code"),
        (_other_generated_expression, "stage_deadline"),
        (_drop_check_constraint, "level_range"),
        (_other_index_method, "audit_log_resource_ids"),
        (_nullable_column, "address"),
    ],
)
def test_a_model_that_differs_is_caught(migrated_url, change, expected):
    differences = schema_differences(migrated_url, _models_with(change))
    assert differences, f"{change.__name__}: no difference found"
    assert expected in repr(differences)


def _run_cli(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": _base_url()}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_db_check_command_passes_on_this_tree():
    run = _run_cli("from gis.cli import app; app(['db', 'check'])")
    assert run.returncode == 0, run.stderr
    assert "models and migrations agree" in run.stdout


def test_db_check_command_fails_and_names_the_difference():
    # The same command, with the models missing one index: exit 1 and the index named.
    run = _run_cli(
        "from gis.models import Base\n"
        "table = Base.metadata.tables['audit_log']\n"
        "table.indexes.discard(next(ix for ix in table.indexes if ix.name == 'audit_log_resource'))\n"
        "from gis.cli import app; app(['db', 'check'])"
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "remove_index" in run.stderr and "audit_log_resource" in run.stderr
