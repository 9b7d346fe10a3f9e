"""The CLI of the register's quality report and export: `wangge quality report`, `wangge export town FILE`."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table as RichTable

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from gis.auth.principal import Principal

quality_app = typer.Typer(help="The register's data-quality report.", no_args_is_help=True)
export_app = typer.Typer(help="Export the register: GeoPackage or Excel.", no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

AsUser = Annotated[
    str | None,
    typer.Option("--as", help="what this account may see (its role and grids); default: everything, unmasked"),
]


def _principal(session: Session, username: str | None) -> Principal | None:
    from gis.auth.accounts import principal_of_account

    if username is None:
        return None
    principal = principal_of_account(session, username)
    if principal is None:
        err.print(f"no active account {username!r}")
        raise typer.Exit(1)
    return principal


def _session_scope() -> AbstractContextManager[Session]:
    from gis.db import make_engine, transaction, wait_for_database

    engine = make_engine()
    wait_for_database(engine)
    return transaction(engine)


@quality_app.command("report")
def quality_report(
    as_user: AsUser = None,
    member_limit: Annotated[int, typer.Option(min=1, help="most households one grid member should answer for")] = 30,
    out: Annotated[Path | None, typer.Option(help="write every finding to this file: CSV, or Excel (.xlsx)")] = None,
    reason: Annotated[str | None, typer.Option(help="why (kept in the audit log)")] = None,
) -> None:
    """The data-quality report: a count per kind of finding; with --out every finding."""
    from gis.auth.principal import Principal
    from gis.auth.roles import Role
    from gis.context import Context
    from gis.register import quality

    with _session_scope() as session:
        principal = _principal(session, as_user) or Principal(0, "cli", Role.ADMIN, (), "cli")
        ctx = Context.cli("quality report" + (f" --as {as_user}" if as_user else ""), reason=reason,
                          principal=principal if as_user else None)
        report = quality.quality_report(session, principal, member_limit=member_limit,
                                        per_kind=quality.MAX_PER_KIND, ctx=ctx, fmt="cli")
    table = RichTable(title=f"台账数据质量（联系户上限 {member_limit}）")
    table.add_column("问题")
    table.add_column("数量", justify="right")
    table.add_column("无权查看", justify="right")
    for s in report.summary.values():
        table.add_row(quality.KINDS[s.kind], str(s.total), str(s.hidden or ""))
    console.print(table)
    if out is not None:
        n = quality.EXPORT.write_file(out, report.rows())
        console.print(f"{n} findings -> {out}")


@export_app.command("town")
def export_town(
    file: Annotated[Path, typer.Argument(dir_okay=False, help="a .gpkg (GeoPackage) or .xlsx (Excel) file")],
    as_user: AsUser = None,
    reason: Annotated[str | None, typer.Option(help="why (kept in the audit log)")] = None,
) -> None:
    """Export the whole register (grids, households, residents, staff, shelters, roads, rivers, natural villages)."""
    from gis.context import Context
    from gis.register import export

    suffix = file.suffix.lower().lstrip(".")
    if suffix not in ("gpkg", "xlsx"):
        err.print(f"{file.name}: give a .gpkg or .xlsx file name")
        raise typer.Exit(2)
    with _session_scope() as session:
        principal = _principal(session, as_user)
        ctx = Context.cli(f"export town {file.name}" + (f" --as {as_user}" if as_user else ""), reason=reason,
                          principal=principal)
        result = export.export_register(session, ctx, principal, file, "gpkg" if suffix == "gpkg" else "xlsx")
    console.print(f"{file}: {export.counts_text(result.rows)}")
