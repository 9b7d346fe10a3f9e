"""`wangge roster ...` (the staff roster, 联系户, who served when) and `wangge places ...` (shelters, roads,
rivers, natural villages): the same operations as the API, with a progress bar on the terminal."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from gis.errors import Problem

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

roster_app = typer.Typer(help="The staff roster (网格员花名册), 联系户, who served which grid when.",
                         no_args_is_help=True)
places_app = typer.Typer(help="Shelters, roads, rivers and natural villages from files.", no_args_is_help=True)

SHOWN_PROBLEMS = 30


def _console() -> tuple[Console, Console]:
    from gis.cli import console, err

    return console, err


@contextmanager
def _session() -> Iterator[Session]:
    from gis.cli import _engine
    from gis.db import transaction

    with transaction(_engine()) as session:
        yield session


@contextmanager
def _input_problems() -> Iterator[None]:
    from gis.cli import _exit_on_input_problems

    with _exit_on_input_problems():
        yield


@contextmanager
def _bar(label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar of rows read (on stderr; rich draws it only on a terminal)."""
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    _, err = _console()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda n: bar.advance(task, n)


def _print_problems(problems: list[Problem]) -> None:
    if not problems:
        return
    _, err = _console()
    table = Table("where", "problem", "type", title=f"{len(problems)} problems")
    for p in problems[:SHOWN_PROBLEMS]:
        table.add_row(".".join(map(str, p.loc)), p.msg, p.type)
    err.print(table)


def _mapping(values: list[str] | None) -> dict[str, str] | None:
    if not values:
        return None
    out = {}
    for v in values:
        key, sep, column = v.partition("=")
        if not sep or not key.strip() or not column.strip():
            raise typer.BadParameter(f"give key=column, not {v!r}", param_hint="--map")
        out[key.strip()] = column.strip()
    return out


Mode = Literal["all_or_nothing", "good_rows"]
DryRun = Annotated[bool, typer.Option(help="check and report; write nothing")]
GoodRows = Annotated[bool, typer.Option(help="write the good rows, report the others (default: all or nothing)")]
Effective = Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="the day the changes take effect "
                                                                                   "(default today)")]
Sheet = Annotated[str | None, typer.Option(help="the sheet of a workbook (default the first)")]
MapOption = Annotated[list[str] | None, typer.Option("--map", help="key=column header, e.g. name=网格员姓名")]


@roster_app.command("import")
def roster_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="xlsx or CSV")],
    effective: Effective = None, dry_run: DryRun = False, good_rows: GoodRows = False, sheet: Sheet = None,
    mapping: MapOption = None,
    partial: Annotated[bool, typer.Option(help="the file is part of the roster: nobody leaves")] = False,
) -> None:
    """Import the staff roster: who joined, moved and left, dated; staff becomes today's roster."""
    from gis.context import Context
    from gis.register.roster import import_roster

    console, _ = _console()
    mode: Mode = "good_rows" if good_rows else "all_or_nothing"
    ctx = Context.cli(f"roster import {file.name}" + (" --dry-run" if dry_run else ""))
    with _input_problems(), _session() as session, _bar("读取花名册") as progress:
        report = import_roster(session, ctx, file, file_name=file.name, sheet=sheet, mapping=_mapping(mapping),
                               effective=effective.date() if effective else None, dry_run=dry_run, mode=mode,
                               whole_roster=not partial, progress=progress)
    _print_problems(report.problems)
    verb = "would change" if dry_run else "changed"
    console.print(f"{verb} as of {report.effective}: {report.joined} joined, {report.changed} changed, "
                  f"{report.left} left, {report.unchanged} unchanged, {report.skipped} rows skipped "
                  f"of {report.rows}")


@roster_app.command("responsibilities")
def roster_responsibilities(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="xlsx or CSV")],
    effective: Effective = None, dry_run: DryRun = False, good_rows: GoodRows = False, sheet: Sheet = None,
    mapping: MapOption = None,
    partial: Annotated[bool, typer.Option(help="the file is part of the list: no responsibility ends")] = False,
) -> None:
    """Import who is responsible for which households (联系户: 户号 + the member's phone or name)."""
    from gis.context import Context
    from gis.register.roster import import_responsibilities

    console, _ = _console()
    mode: Mode = "good_rows" if good_rows else "all_or_nothing"
    ctx = Context.cli(f"roster responsibilities {file.name}" + (" --dry-run" if dry_run else ""))
    with _input_problems(), _session() as session, _bar("读取联系户") as progress:
        report = import_responsibilities(
            session, ctx, file, file_name=file.name, sheet=sheet, mapping=_mapping(mapping),
            effective=effective.date() if effective else None, dry_run=dry_run, mode=mode, whole_list=not partial,
            progress=progress)
    _print_problems(report.problems)
    verb = "would record" if dry_run else "recorded"
    console.print(f"{verb} as of {report.effective}: {report.added} added, {report.ended} ended, "
                  f"{report.unchanged} unchanged, {report.skipped} rows skipped of {report.rows}")


@roster_app.command("served")
def roster_served(
    grid_code: Annotated[str, typer.Argument(help="a grid code (15 digits)")],
    on: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="the day (default today)")] = None,
) -> None:
    """Who served a grid on a day."""
    from gis import clock
    from gis.register.roster import staff_on

    console, _ = _console()
    day = on.date() if on else clock.today()
    with _session() as session:
        rows = staff_on(session, grid_code, day)
    table = Table("职务", "姓名", "联系电话", "自", "至", title=f"{grid_code} {day}")
    for r in rows:
        table.add_row(r["role_zh"], r["name"], r["phone"] or "", r["valid_from"], r["valid_to"] or "")
    console.print(table)


@places_app.command("import")
def places_import(
    kind: Annotated[str, typer.Argument(help="shelters | roads | rivers | natural-villages")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="GeoPackage, GeoJSON, zipped Shapefile, KML; CSV/xlsx with 经度/纬度 "
                                              "for shelters and natural villages")],
    crs: Annotated[str | None, typer.Option(help="wgs84 | gcj02 | bd09 | EPSG:code, when the file does not say")]
    = None,
    layer: Annotated[str | None, typer.Option(help="the layer (GeoPackage) or sheet (xlsx)")] = None,
    dry_run: DryRun = False, good_rows: GoodRows = False, mapping: MapOption = None,
    replace: Annotated[bool, typer.Option(help="also delete the stored places the file does not hold")] = False,
    rebuild_terrain: Annotated[bool, typer.Option(help="rivers: condition the DEMs again with them")] = False,
) -> None:
    """Import shelters, roads, rivers or natural villages: checked, idempotent, one transaction."""
    from gis.context import Context
    from gis.register.places import PLACE_KINDS, import_place_file

    console, _ = _console()
    key = next((k for k in PLACE_KINDS if k == kind.replace("-", "_")), None)
    if key is None:
        raise typer.BadParameter(f"one of {', '.join(k.replace('_', '-') for k in PLACE_KINDS)}", param_hint="KIND")
    mode: Mode = "good_rows" if good_rows else "all_or_nothing"
    ctx = Context.cli(f"places import {kind} {file.name}" + (" --dry-run" if dry_run else ""))
    with _input_problems(), _session() as session, _bar("读取") as progress:
        report = import_place_file(session, ctx, key, file, file_name=file.name, crs=crs,
                                   layer_name=layer, mapping=_mapping(mapping), dry_run=dry_run, mode=mode,
                                   replace=replace, rebuild=rebuild_terrain, progress=progress)
    _print_problems(report.problems)
    verb = "would write" if dry_run else "wrote"
    console.print(f"{verb}: {report.inserted} new, {report.updated} updated, {report.unchanged} unchanged, "
                  f"{report.deleted} deleted, {report.skipped} rows skipped of {report.rows}")
    if report.terrain_stale:
        console.print("DEMs conditioned with other rivers: " + ", ".join(report.terrain_stale)
                      + " (run again with --rebuild-terrain)")
