"""`wangge grids apply-due`: apply the dated publishes whose instant has come (the app does it every ~30 s)."""

from __future__ import annotations

import typer


def apply_due_command() -> None:
    """Apply every scheduled grid publish whose effective instant has passed; print what happened."""
    from gis.context import Context
    from gis.db import make_engine, transaction, wait_for_database
    from gis.planning.publish import apply_due

    engine = make_engine()
    wait_for_database(engine)
    with transaction(engine) as session:
        results = apply_due(session, ctx=Context.cli("grids apply-due"))
    for r in results:
        typer.echo(f"publish {r.publish_id}: {r.status} (effective {r.effective_at.isoformat()})")
    typer.echo(f"{sum(r.status == 'applied' for r in results)} applied, "
               f"{sum(r.status == 'failed' for r in results)} failed")
