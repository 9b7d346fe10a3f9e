"""`wangge register ...`: import the town's households and residents from its files, read their history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from gis.errors import InputError

register_app = typer.Typer(help="The town's register: households and residents from its own files.",
                           no_args_is_help=True)
console = Console()
err = Console(stderr=True)

_STAGES_ZH = {"households": "读取户", "residents": "读取人口", "checked": "核对", "written": "写入"}


def _engine() -> Any:
    from gis.db import make_engine, wait_for_database

    engine = make_engine()
    wait_for_database(engine)
    return engine


def _print_problems(title: str, problems: list[dict[str, Any]], total: int) -> None:
    table = Table(title=f"{title} ({total})")
    for col in ("where", "problem", "type"):
        table.add_column(col)
    for p in problems[:200]:
        table.add_row(" / ".join(map(str, p["loc"])), p["msg"], p["type"])
    err.print(table)
    if total > 200:
        err.print(f"... and {total - 200} more (--report FILE writes them all, up to 2000)")


@register_app.command("households")
def households(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="households (and residents) .xlsx/.csv")],
    residents: Annotated[Path | None, typer.Option(exists=True, dir_okay=False,
                                                   help="residents, when in a file of their own")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check and report, write nothing")] = False,
    mode: Annotated[str, typer.Option(help="all_or_nothing | good_rows")] = "all_or_nothing",
    household_sheet: Annotated[str | None, typer.Option(help="the households sheet's name")] = None,
    resident_sheet: Annotated[str | None, typer.Option(help="the residents sheet's name")] = None,
    mapping: Annotated[str | None, typer.Option(help='JSON {"field": "column header"}')] = None,
    crs: Annotated[str | None, typer.Option(help="of the coordinates: wgs84 | cgcs2000 | gcj02 | bd09 | EPSG:code")]
    = None,
    as_of: Annotated[str | None, typer.Option(help="the date the register is as of, YYYY-MM-DD (default today)")]
    = None,
    no_settlements: Annotated[bool, typer.Option("--no-settlements", help="do not place an address that names only "
                                                 "its 组 / natural village at that settlement")] = False,
    report: Annotated[Path | None, typer.Option(help="write the whole report as JSON to this file")] = None,
) -> None:
    """Import households and residents: every problem by row and column, each household's grid."""
    from gis.context import Context
    from gis.db import transaction
    from gis.register.checks import parse_date
    from gis.register.households import ImportOptions, import_households

    try:
        when = parse_date(as_of) if as_of else None
    except ValueError as exc:
        err.print(f"--as-of: {exc}")
        raise typer.Exit(2) from None
    try:
        columns = json.loads(mapping) if mapping else {}
    except json.JSONDecodeError as exc:
        err.print(f"--mapping: not JSON ({exc.msg})")
        raise typer.Exit(2) from None
    options = ImportOptions(mode=mode, dry_run=dry_run, as_of=when, crs=crs, household_sheet=household_sheet,
                            resident_sheet=resident_sheet, mapping=columns, place_by_settlement=not no_settlements)
    ctx = Context.cli(f"register households {file.name}")
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.fields[n]} 行"), TimeElapsedColumn(), console=err)
    try:
        with progress, transaction(_engine()) as session:
            task = progress.add_task("读取", total=None, n=0)

            def note(stage: str, n: int) -> None:
                progress.update(task, description=_STAGES_ZH.get(stage, stage), n=n)

            answer = import_households(session, ctx, file, file.name,
                                       residents=(residents, residents.name) if residents else None,
                                       options=options, progress=note).as_dict()
    except InputError as exc:
        _print_problems(exc.title, [p.as_dict() for p in exc.problems], len(exc.problems))
        raise typer.Exit(1) from None
    if report is not None:
        report.write_text(json.dumps(answer, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    hh = answer["households"]
    summary = Table(title="户籍导入" + ("（试运行，未写入）" if dry_run else ""))
    for col in ("户", "已定位", "按坐标", "按门牌", "按组/自然村(近似)", "未定位", "有问题", "已写入", "人口已写入"):
        summary.add_column(col, justify="right")
    summary.add_row(*(str(v) for v in (hh["total"], hh["placed"], hh["by_coordinates"], hh["by_address"],
                                       hh["by_settlement"], hh["unplaced"], hh["with_problems"], hh["written"],
                                       answer["residents"]["written"])))
    console.print(summary)
    if answer["changes"]:
        console.print("变更: " + ", ".join(f"{k} {v}" for k, v in answer["changes"].items()))
    if answer["problem_count"]:
        _print_problems("问题", answer["problems"], answer["problem_count"])
    if not answer["written"] and not dry_run:
        err.print("nothing written (all_or_nothing found problems; --mode good_rows writes the good households)")
        raise typer.Exit(1)


@register_app.command("residents-on")
def residents_on_date(
    household_no: Annotated[str, typer.Argument(help="the household number")],
    on: Annotated[str | None, typer.Option(help="the date, YYYY-MM-DD (default: today, Beijing)")] = None,
) -> None:
    """Who lived in a household on a date."""
    from gis import clock
    from gis.context import Context
    from gis.db import transaction
    from gis.errors import NotFound
    from gis.register.checks import parse_date
    from gis.register.history import who_lived_here

    try:
        day = parse_date(on) if on else clock.today()
    except ValueError as exc:
        err.print(f"--on: {exc}")
        raise typer.Exit(2) from None
    try:
        with transaction(_engine()) as session:
            people = who_lived_here(session, Context.cli(f"register residents-on {household_no}"), household_no,
                                    day)["residents"]
    except NotFound as exc:
        err.print(exc.detail)
        raise typer.Exit(1) from None
    table = Table(title=f"{household_no} 于 {day.isoformat()} 的住户")
    for col in ("姓名", "身份证号", "起", "止"):
        table.add_column(col)
    for p in people:
        table.add_row(p["name"], p["id_number"] or "", str(p["valid_from"] or "登记前"), str(p["valid_to"] or ""))
    console.print(table)
