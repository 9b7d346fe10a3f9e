"""The schema gate: do the models (gis/models.py) and the migrations describe the same database?"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import MetaData, Table, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool


@contextmanager
def throwaway_database(url: str | URL, suffix: str = "check") -> Iterator[URL]:
    """A new, empty database `<name>_<suffix>_<pid>` on the server `url` points at; dropped after."""
    base = make_url(url)
    scratch = base.set(database=f"{base.database}_{suffix}_{os.getpid()}")
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch.database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{scratch.database}"'))
        try:
            yield scratch
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch.database}" WITH (FORCE)'))
    finally:
        admin.dispose()


def schema_differences(url: str | URL, metadata: MetaData | None = None) -> list[Any]:
    """Alembic's autogenerate comparison of `metadata` (default: the models) with the database at
    `url`, through the same hooks as gis/migrations/env.py. Empty when they agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from gis.models import Base

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts=comparison_options(metadata or Base.metadata))
            return list(compare_metadata(context, context.opts["target_metadata"]))
    finally:
        engine.dispose()


def check_schema(url: str | URL, metadata: MetaData | None = None) -> list[Any]:
    """Upgrade a throwaway database next to `url` to the migrations' head and compare the models
    with it (Alembic's `check`); the differences, empty when models and migrations agree."""
    from gis.db import upgrade

    with throwaway_database(url) as scratch:
        engine = create_engine(scratch, poolclass=NullPool)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        return schema_differences(scratch, metadata)


# Alembic's autogenerate compares tables, columns, types, nullability, server defaults, indexes
# (expression ones included), unique constraints and FKs, and with its opt-in plugin check
# constraints by name and text. It does not compare a column's collation, a generated column's
# expression, or an index's WHERE, INCLUDE and method (btree, GiST, GIN): `_compare_beyond_alembic`
# does, for the columns and indexes present on both sides, and reports a difference as the
# change Alembic would need (so `check` fails and names it).
PLUGIN_NAME = "wangge.schema_check"


def _normalised_sql(sql: object) -> str:
    """SQL text as PostgreSQL's catalog and our models write it, reduced to compare equal."""
    return re.sub(r"[\s()]|::[a-z ]+", "", str(sql)).lower()


def _compare_beyond_alembic(
    autogen_context: Any,
    modify_table_ops: Any,
    schema: str | None,
    tname: str,
    conn_table: Table | None,
    metadata_table: Table | None,
) -> Any:
    from alembic.operations import ops
    from alembic.util import PriorityDispatchResult

    if conn_table is None or metadata_table is None:
        return PriorityDispatchResult.CONTINUE
    inspector = autogen_context.inspector
    reflected_columns = {c["name"]: c for c in inspector.get_columns(tname, schema=schema)}
    for column in metadata_table.columns:
        found = reflected_columns.get(column.name)
        if found is None:
            continue
        want_collation = getattr(column.type, "collation", None)
        have_collation = getattr(found["type"], "collation", None)
        want_computed = _normalised_sql(column.computed.sqltext) if column.computed is not None else None
        have_computed = _normalised_sql(found["computed"]["sqltext"]) if found.get("computed") else None
        if want_collation != have_collation or want_computed != have_computed:
            modify_table_ops.ops.append(
                ops.AlterColumnOp(
                    tname, column.name, schema=schema, existing_type=found["type"],
                    modify_type=column.type, existing_nullable=found["nullable"],
                )
            )
    reflected_indexes = {ix["name"]: ix for ix in inspector.get_indexes(tname, schema=schema)}
    for index in metadata_table.indexes:
        found_ix = reflected_indexes.get(index.name or "")
        if found_ix is None:
            continue
        options = index.dialect_options["postgresql"]
        want = (
            _normalised_sql(options["where"]) if options["where"] is not None else None,
            [str(c) for c in options["include"] or []],
            options["using"] or "btree",
        )
        have_options = found_ix.get("dialect_options", {})
        have = (
            _normalised_sql(have_options["postgresql_where"]) if "postgresql_where" in have_options else None,
            list(have_options.get("postgresql_include") or []),
            have_options.get("postgresql_using") or "btree",
        )
        if want != have:
            modify_table_ops.ops.append(ops.DropIndexOp(found_ix["name"], tname, schema=schema))
            modify_table_ops.ops.append(ops.CreateIndexOp.from_index(index))
    return PriorityDispatchResult.CONTINUE


_registered: list[bool] = []


def _register_plugin() -> None:
    """Register the comparator once per process as an Alembic plugin named PLUGIN_NAME."""
    from alembic.runtime.plugins import Plugin

    if not _registered:
        Plugin(PLUGIN_NAME).add_autogenerate_comparator(_compare_beyond_alembic, "table", "beyond_alembic")
        _registered.append(True)


def comparison_options(metadata: MetaData) -> dict[str, Any]:
    """The options Alembic compares with: here and in gis/migrations/env.py alike."""
    from geoalchemy2 import alembic_helpers

    _register_plugin()
    return {
        "target_metadata": metadata,
        "include_object": alembic_helpers.include_object,
        "render_item": alembic_helpers.render_item,
        "compare_type": True,
        "compare_server_default": True,
        "autogenerate_plugins": ["alembic.autogenerate.*", "alembic.ext.checkconstraint_byname", PLUGIN_NAME],
    }
