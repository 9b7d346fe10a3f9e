"""The `wangge` command line: database, sample town, grids and the server."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from gis.errors import InputError, NotFound
from gis.planning.cli import apply_due_command
from gis.register.cli import register_app
from gis.register.export_cli import export_app, quality_app
from gis.register.roster_cli import places_app, roster_app

if TYPE_CHECKING:
    from sqlalchemy import Engine

app = typer.Typer(help="Wangge 网格: grid-based governance GIS.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
sample_app = typer.Typer(help="The synthetic sample town.", no_args_is_help=True)
grids_app = typer.Typer(help="Grid boundaries: import, export, locate.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(sample_app, name="sample")
app.add_typer(grids_app, name="grids")
grids_app.command("apply-due")(apply_due_command)
users_app = typer.Typer(help="Accounts and API tokens.", no_args_is_help=True)
app.add_typer(users_app, name="users")
incidents_app = typer.Typer(help="Incidents: batch import.", no_args_is_help=True)
app.add_typer(incidents_app, name="incidents")
app.add_typer(register_app, name="register")
flood_app = typer.Typer(help="Flood: DEMs, flood extents and scenarios, flooded households.", no_args_is_help=True)
app.add_typer(flood_app, name="flood")
flood_dem_app = typer.Typer(help="Terrain models for the flood scenarios.", no_args_is_help=True)
flood_app.add_typer(flood_dem_app, name="dem")
flood_extent_app = typer.Typer(help="Uploaded flood extents.", no_args_is_help=True)
flood_app.add_typer(flood_extent_app, name="extent")
app.add_typer(roster_app, name="roster")
app.add_typer(places_app, name="places")
app.add_typer(quality_app, name="quality")  # issue 14: the register's data-quality report
app.add_typer(export_app, name="export")  # issue 14: the register as GeoPackage / Excel

# Piped output (make serve, CI logs) gets a wide console so tables are not cut.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from gis.flood.answers import FloodPage


def _engine() -> Engine:
    from gis.db import make_engine, wait_for_database

    engine = make_engine()
    wait_for_database(engine)
    return engine


def _print_problems(exc: InputError) -> None:
    table = Table(title=exc.title, show_lines=False)
    table.add_column("where")
    table.add_column("problem")
    table.add_column("type")
    for p in exc.problems:
        table.add_row(".".join(map(str, p.loc)), p.msg, p.type)
    err.print(table)


@contextmanager
def _exit_on_input_problems(code: int = 1) -> Iterator[None]:
    """Bad input ends the command: its problems printed as a table, exit status `code`."""
    try:
        yield
    except InputError as exc:
        _print_problems(exc)
        raise typer.Exit(code) from None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or update the schema (Alembic migrations)."""
    from gis.db import upgrade

    upgrade(_engine())
    console.print("schema up to date")


@db_app.command("check")
def db_check() -> None:
    """Do the models and the migrations describe the same schema? Upgrades a throwaway database (next
    to DATABASE_URL's, dropped after) to head and runs Alembic's check; exit 1 on any difference."""
    from gis.schema_check import check_schema
    from gis.settings import get_settings

    differences = check_schema(get_settings().require_database_url())
    if differences:
        err.print(f"the models (gis/models.py) and the migrations differ in {len(differences)} place(s):")
        for difference in differences:
            err.print(f"  {difference!r}", markup=False, highlight=False)
        raise typer.Exit(1)
    console.print("models and migrations agree")


@sample_app.command("load")
def sample_load(
    if_empty: Annotated[bool, typer.Option(help="do nothing when grids are already stored")] = False,
) -> None:
    """Generate the synthetic sample town and load it (one transaction)."""
    from gis.db import transaction
    from gis.sample_load import database_is_empty, load_sample_incidents, load_sample_town
    from gis.sample_town import generate_sample_town, write_dem
    from gis.settings import get_settings

    settings = get_settings()
    engine = _engine()
    with transaction(engine) as session:
        if not database_is_empty(session):
            if if_empty:
                console.print("the database already holds grids; sample town not loaded")
                return
            err.print("the database already holds grids; load the sample only into an empty database")
            raise typer.Exit(1)
    with console.status("generating the sample town (synthetic) ..."):
        town = generate_sample_town()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    dem_path = write_dem(town, settings.data_dir / "sample_dem.tif")
    with transaction(engine) as session, console.status("loading ..."):
        counts = load_sample_town(session, town, dem_path=dem_path)
        incidents = load_sample_incidents(session, town, settings.data_dir / "sample_incidents.csv")
    console.print("loaded the synthetic sample town: " + ", ".join(f"{k} {v}" for k, v in counts.items())
                  + f", incidents {incidents['created']}")


@sample_app.command("write-boundaries")
def sample_write_boundaries(
    directory: Annotated[Path, typer.Argument()] = Path("data/boundaries"),
) -> None:
    """Write the sample town's boundary files (GeoJSON) into DIRECTORY."""
    from gis.sample_town import generate_sample_town, write_boundaries

    for path in write_boundaries(generate_sample_town(), directory):
        console.print(str(path))


@grids_app.command("import")
def grids_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    crs: Annotated[str | None, typer.Option(help="gcj02 | bd09 | EPSG:code, when the file does not say")] = None,
    dry_run: Annotated[bool, typer.Option(help="validate and report; write nothing")] = False,
) -> None:
    """Validate a grid file and store it as new grid versions — all or nothing."""
    from gis.context import Context
    from gis.db import transaction
    from gis.grids.store import import_grid_file
    from gis.settings import get_settings

    ctx = Context.cli(f"grids import {file.name}" + (" --dry-run" if dry_run else ""))
    with _exit_on_input_problems(), transaction(_engine()) as session:
        report = import_grid_file(
            session, ctx, file, file_name=file.name, source=f"cli:{file.name}", settings=get_settings(),
            crs=crs, dry_run=dry_run,
        )
    summary = report.as_dict()
    verb = "would write" if dry_run else "wrote"
    console.print(
        f"{verb}: {summary['created']} new, {summary['replaced']} redrawn, {summary['unchanged']} unchanged"
    )


@grids_app.command("export")
def grids_export(
    out: Annotated[Path, typer.Argument(help=".geojson or .gpkg")],
    level: Annotated[int | None, typer.Option(min=1, max=4)] = None,
    as_of: Annotated[str | None, typer.Option(help="the grids as they were at this instant (ISO 8601 with "
                                                   "offset, e.g. 2026-12-06T08:00:00+08:00); default now")] = None,
) -> None:
    """Export the current grids (or those of the instant --as-of) to GeoJSON or GeoPackage."""
    from gis.db import transaction
    from gis.grids.store import current_grids

    instant = None
    if as_of is not None:
        try:
            instant = dt.datetime.fromisoformat(as_of)
        except ValueError:
            instant = None
        if instant is None or instant.tzinfo is None:
            err.print("--as-of: an ISO 8601 instant with its time zone, e.g. 2026-12-06T08:00:00+08:00")
            raise typer.Exit(2)
    with transaction(_engine()) as session:
        frame = current_grids(session, level=level, as_of=instant)
    frame["valid_from"] = frame["valid_from"].astype(str)
    suffix = out.suffix.lower()
    if suffix in {".geojson", ".json"}:
        frame.to_file(out, driver="GeoJSON", engine="pyogrio")
    elif suffix == ".gpkg":
        frame.to_file(out, driver="GPKG", layer="grids", engine="pyogrio")
    else:
        err.print("the output file must end in .geojson or .gpkg")
        raise typer.Exit(2)
    console.print(f"{len(frame)} grids -> {out}")


@grids_app.command("locate")
def grids_locate(
    lon: float,
    lat: float,
    crs: Annotated[str, typer.Option(help="wgs84 | cgcs2000 | gcj02 | bd09 | EPSG:code")] = "wgs84",
) -> None:
    """Print the grid at every level for a point."""
    from gis.crs import parse_crs, points_to_wgs84
    from gis.db import transaction
    from gis.grids.locate import locate_points

    with _exit_on_input_problems(2):
        system = parse_crs(crs, field=("crs",))
        xs, ys = points_to_wgs84(lon, lat, system, field_prefix=())
    with transaction(_engine()) as session:
        loc = locate_points(session, xs, ys)[0]
    if not loc.inside:
        near = loc.nearest
        where = f"; nearest grid {near.name} ({near.code}), {loc.distance_m:.0f} m" if near is not None else ""
        err.print(f"outside the town{where}")
        raise typer.Exit(1)
    for level, ref in sorted(loc.path.items()):
        console.print(f"{level}  {ref.code}  {ref.name}")
    if loc.on_boundary:
        console.print("(on a shared boundary: chosen by the smallest-code rule)")


audit_app = typer.Typer(help="The audit log (read-only): export.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


def _aware_time(value: str | None, option: str) -> dt.datetime | None:
    """An ISO time with its zone (a bare time is ambiguous between UTC and +08:00)."""
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO time: {value!r}", param_hint=option) from None
    if when.tzinfo is None:
        raise typer.BadParameter("give a time zone, e.g. 2026-11-27T08:00:00+08:00", param_hint=option)
    return when


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Argument(help=".csv or .xlsx")],
    actor: Annotated[str | None, typer.Option()] = None,
    action: Annotated[str | None, typer.Option()] = None,
    resource: Annotated[str | None, typer.Option()] = None,
    resource_id: Annotated[str | None, typer.Option()] = None,
    since: Annotated[str | None, typer.Option(help="ISO time with zone, inclusive")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time with zone, exclusive")] = None,
) -> None:
    """The filtered audit log, oldest first, as the API's /audit/export writes it (the export is audited too)."""
    from gis import audit
    from gis.context import Context
    from gis.db import transaction
    from gis.settings import get_settings

    filters = audit.AuditFilters(actor=actor, action=action, resource=resource, resource_id=resource_id,
                                 since=_aware_time(since, "--since"), until=_aware_time(until, "--until"))
    fmt = "xlsx" if out.suffix.lower() == ".xlsx" else "csv"
    cap = get_settings().max_audit_export_rows
    with transaction(_engine()) as session:
        page = audit.export_audit(session, Context.cli(f"audit export {out.name}"), filters, max_rows=cap, fmt=fmt)
    written = audit.EXPORT.write_file(out, page.items)
    more = "" if page.total_exact else f" (the first {cap}; more match: narrow the filters)"
    console.print(f"{written} audit rows -> {out}{more}")


@users_app.command("create")
def users_create(
    username: str,
    role: Annotated[str, typer.Option(help="admin | command_center | emergency | planner | grid_staff | supervisor")],
    scope: Annotated[list[str] | None, typer.Option(help="grid code(s), for grid_staff / supervisor")] = None,
    display_name: Annotated[str | None, typer.Option()] = None,
    password_stdin: Annotated[bool, typer.Option(help="read the password from standard input")] = False,
) -> None:
    """Create an account. Without --password-stdin a random password is generated and printed once."""
    import secrets

    from gis.auth import operations
    from gis.auth.roles import Role
    from gis.context import Context
    from gis.db import transaction

    try:
        role_value = Role(role)
    except ValueError:
        err.print(f"unknown role {role!r}; one of: {', '.join(r.value for r in Role)}")
        raise typer.Exit(2) from None
    password = sys.stdin.readline().rstrip("\n") if password_stdin else secrets.token_urlsafe(12)
    with _exit_on_input_problems(), transaction(_engine()) as session:
        user = operations.create_user(session, Context.cli(f"users create {username}"), username, password,
                                      role_value, scope_codes=scope or [], display_name=display_name)
    console.print(f"created {user.username} ({user.role}) id={user.id}")
    if not password_stdin:
        console.print(f"password: {password}  (shown once; change it with `wangge users set-password`)")


@users_app.command("list")
def users_list() -> None:
    """All accounts."""
    from gis.auth import accounts
    from gis.db import transaction

    with transaction(_engine()) as session:
        users = accounts.list_users(session)
    table = Table("id", "username", "role", "scope", "active")
    for u in users:
        table.add_row(str(u.id), u.username, str(u.role), " ".join(u.scope_codes), "yes" if u.active else "no")
    console.print(table)


@users_app.command("set-password")
def users_set_password(username: str) -> None:
    """Set a new password (read from standard input); ends the user's sessions."""
    from gis.auth import operations
    from gis.context import Context
    from gis.db import transaction

    password = sys.stdin.readline().rstrip("\n")
    with _exit_on_input_problems(), transaction(_engine()) as session:
        ctx = Context.cli(f"users set-password {username}")
        if operations.set_password(session, ctx, username, password) is None:
            err.print(f"no user {username}")
            raise typer.Exit(1)
    console.print(f"password of {username} changed; their sessions ended")


@users_app.command("token")
def users_token(
    username: str,
    name: Annotated[str, typer.Option(help="what the token is for, e.g. the platform that uses it")],
    days: Annotated[float | None, typer.Option(help="expires after this many days")] = None,
) -> None:
    """Issue an API token for USERNAME (printed once)."""
    from gis.auth import accounts, operations
    from gis.context import Context
    from gis.db import transaction

    with transaction(_engine()) as session:
        user = accounts.find_user(session, username)
        if user is None:
            err.print(f"no user {username}")
            raise typer.Exit(1)
        secret, token = operations.issue_token(session, Context.cli(f"users token {username}"), user.id, name,
                                               expires_days=days)
    console.print(f"token id={token.id}: {secret}")


@sample_app.command("demo-accounts")
def sample_demo_accounts() -> None:
    """For the sample town only: one demo account per role, with fresh random passwords, printed."""
    import secrets

    from sqlalchemy import text

    from gis.auth import accounts
    from gis.auth.roles import ROLE_NAMES_ZH, Role
    from gis.context import Context
    from gis.dataset_info import dataset_info
    from gis.db import transaction

    with transaction(_engine()) as session:
        if dataset_info(session, "sample_town") is None:
            err.print("not the sample town: demo accounts are made only for the synthetic sample")
            raise typer.Exit(1)
        # The story's village (尹营村) when it still carries that name; a grid import may have
        # renamed or redrawn it, and then the first village with group grids serves as well.
        group = session.execute(text(
            "SELECT g.code FROM grid g JOIN grid v ON v.code = g.parent_code "
            "AND v.level = 3 AND v.valid_to IS NULL "
            "WHERE g.level = 4 AND g.valid_to IS NULL "
            "ORDER BY v.name = '尹营村' DESC, g.code LIMIT 1"
        )).scalar_one_or_none()
        if group is None:
            err.print("no village with group grids is stored: demo accounts need one to serve")
            raise typer.Exit(1)
        scopes = {Role.GRID_STAFF: [group], Role.SUPERVISOR: [group[:12] + "000"]}
        ctx = Context.cli("sample demo-accounts")
        table = Table("role", "角色", "username", "password", "scope", title="demo accounts (sample town only)")
        for role in Role:
            username = f"demo_{role.value}"
            password = secrets.token_urlsafe(9)
            user = accounts.find_user(session, username)
            if user is None:
                user = accounts.create_user(session, username, password, role,
                                            scope_codes=scopes.get(role, []), is_demo=True)
            else:
                user = accounts.update_user(session, user.id, password=password, role=role,
                                            scope_codes=scopes.get(role, []), active=True)
            ctx.audit(session, "update", resource="user", resource_ids=[user.id],
                      detail={"demo_account": True, "changed": ["password(reset)"]})
            table.add_row(role.value, ROLE_NAMES_ZH[role], username, password, " ".join(user.scope_codes))
    console.print(table)


# Failed rows printed to the terminal; the rest are counted, and all go to --failures-csv.
SHOWN_FAILURES = 200


def _import_parts(estimated_rows: int) -> int:
    """Rows per part for the CLI: at least 10 parts so the bar moves (150,000 rows: 15,000 a part),
    but no fewer than 10,000 rows a part, and files of a million rows keep the import's 100,000."""
    from gis.incidents.batch import CHUNK

    return min(CHUNK, max(10_000, estimated_rows // 10))


@incidents_app.command("import")
def incidents_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    crs: Annotated[str | None, typer.Option(help="the coordinates' system: wgs84 | gcj02 | bd09 | EPSG:code")] = None,
    all_or_nothing: Annotated[bool, typer.Option(help="write nothing if any row fails")] = False,
    failures_csv: Annotated[Path | None, typer.Option(
        "--failures-csv", dir_okay=False,
        help="write every failed row (line, column, reason) to this file: CSV, or Excel (.xlsx)",
    )] = None,
) -> None:
    """Import incidents (CSV, Excel, GeoJSON, GeoPackage): good rows in, bad rows shown by line."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from gis.context import Context
    from gis.db import transaction
    from gis.incidents.batch import FAILURES_EXPORT, import_incidents, open_incident_file
    from gis.settings import get_settings

    settings = get_settings()
    with _exit_on_input_problems():
        source = open_incident_file(file, max_rows=settings.max_incident_rows_per_file)
        source.chunk_rows = _import_parts(source.estimated_rows)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        # On stderr, so that stdout keeps only the result; rich draws it only on a terminal.
        bar = Progress(*columns, console=err, transient=True)
        with transaction(_engine()) as session, bar:
            total = source.estimated_rows or None
            checking = bar.add_task("检查与定位", total=total)
            writing = bar.add_task("写入", total=total)
            report = import_incidents(
                session, source, source=f"cli:{file.name}", crs=crs, all_or_nothing=all_or_nothing,
                outside_tolerance_m=settings.incident_outside_tolerance_m,
                checked=lambda n: bar.advance(checking, n),
                progress=lambda n: bar.advance(writing, n),
                ctx=Context.cli("incidents import"), file_name=file.name,
            )
            for task in (checking, writing):
                bar.update(task, total=report.rows, completed=report.rows)
    if report.failed:
        table = Table("row", "column", "reason", title=f"{len(report.failed)} rows failed")
        for f in report.failed[:SHOWN_FAILURES]:
            table.add_row(str(f["row"]), f["column"] or "", f["reason"])
        err.print(table)
        if len(report.failed) > SHOWN_FAILURES:
            more = len(report.failed) - SHOWN_FAILURES
            hint = (f" (all of them are in {failures_csv})" if failures_csv
                    else " (all of them: --failures-csv FILE)")
            err.print(f"… and {more} more{hint}")
    if failures_csv is not None:
        FAILURES_EXPORT.write_file(failures_csv, report.failed)
        err.print(f"failed rows -> {failures_csv}")
    verb = "wrote" if report.written else "wrote nothing (--all-or-nothing)"
    console.print(f"{verb}: {report.created} new, {report.already_present} already present, "
                  f"{len(report.failed)} failed of {report.rows} rows")
    if report.failed:
        raise typer.Exit(1)


@incidents_app.command("export")
def incidents_export(
    out: Annotated[Path, typer.Argument(help=".csv (UTF-8 with BOM) or .xlsx")],
    as_user: Annotated[str, typer.Option("--as", help="export what this account may see (its role and grids)")],
    grid_code: Annotated[str | None, typer.Option(help="any level: its whole subtree")] = None,
    state: Annotated[str | None, typer.Option()] = None,
    category: Annotated[str | None, typer.Option()] = None,
    overdue: Annotated[bool | None, typer.Option()] = None,
    flagged: Annotated[bool | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """The incident export of GET /incidents?format=csv, for the same account and filters."""
    from api.incidents import EXPORT
    from gis.auth.accounts import principal_of_account
    from gis.context import Context
    from gis.db import transaction
    from gis.incidents import service
    from gis.settings import get_settings

    with transaction(_engine()) as session:
        principal = principal_of_account(session, as_user)
        if principal is None:
            err.print(f"no active account {as_user!r}")
            raise typer.Exit(1)
        page = service.list_incidents(
            session, principal, grid_code=grid_code, state=state, category=category, overdue=overdue,
            flagged=flagged, limit=limit, offset=offset, count_up_to=get_settings().max_exact_incident_count,
        )
        shown = [r["id"] for r in page.items if r.get("reporter_name") or r.get("reporter_phone")]
        if shown and service.reporter_shown(principal):
            Context.cli(f"incidents export --as {as_user}", principal=principal).audit(
                session, "read_personal", resource="incident", resource_ids=shown)
    n = EXPORT.write_file(out, page.items)
    console.print(f"{n} of {page.total} incidents -> {out}")


@flood_dem_app.command("import")
def flood_dem_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="GeoTIFF DEM")],
    rivers: Annotated[
        Path | None, typer.Option(help="river lines (GeoJSON, GPKG, zipped SHP, KML); default: the river layer")
    ] = None,
    name: Annotated[str | None, typer.Option(help="default: the file name")] = None,
    crs: Annotated[str | None, typer.Option(help="the DEM's CRS when the file does not say (EPSG:code)")] = None,
    rivers_crs: Annotated[str | None, typer.Option(help="gcj02 | bd09 | EPSG:code for the river file")] = None,
    threshold_km2: Annotated[float | None, typer.Option(help="also drain cells with this upstream area (km²)")] = None,
) -> None:
    """Load a DEM: burn the rivers in, fill depressions, D8 routing and HAND (one transaction)."""
    from gis.db import transaction
    from gis.flood.dem import import_dem, read_river_file

    with _exit_on_input_problems():
        lines = read_river_file(rivers, rivers_crs) if rivers is not None else None
        with transaction(_engine()) as session, console.status("conditioning the DEM ..."):
            out = import_dem(session, file, name=name, rivers=lines, crs=crs,
                             accumulation_threshold_km2=threshold_km2)
    console.print(
        f"DEM {out['name']!r} (id {out['id']}): {out['shape'][0]} x {out['shape'][1]} cells of "
        f"{out['cell_m']:g} m, {out['drainage_cells']} drainage cells, HAND on {out['cells_with_hand']} cells"
    )


@flood_app.command("scenario")
def flood_scenario(
    stage: Annotated[float | None, typer.Option(help="water stage above the channel (m)")] = None,
    name: Annotated[str | None, typer.Option(help="a named scenario instead, e.g. 2023-09-23")] = None,
    pluvial: Annotated[bool, typer.Option(help="water ponding in depressions (up to STAGE m deep)")] = False,
    dem: Annotated[str | None, typer.Option(help="DEM name; default: the latest imported")] = None,
    out: Annotated[Path | None, typer.Option(help="also write the extent with depth classes as GeoJSON")] = None,
) -> None:
    """Compute (or reuse) a modelled flood extent and print its size and the households in it."""
    from sqlalchemy import text

    from gis.db import transaction
    from gis.flood.answers import ensure_answer
    from gis.flood.extents import extent_feature_collection
    from gis.flood.stages import named_scenario, scenario_extent

    if (stage is None) == (name is None):
        err.print("give --stage METRES or --name SCENARIO")
        raise typer.Exit(2)
    with _exit_on_input_problems(), transaction(_engine()) as session, console.status("flooding ..."):
        extent = (
            named_scenario(session, name) if name is not None
            else scenario_extent(session, float(stage or 0), mode="pluvial" if pluvial else "fluvial",
                                 dem_name=dem)
        )
        ensure_answer(session, extent)
        households = session.execute(
            text("SELECT count(*) FROM household h, flood_extent e WHERE e.id = :id "
                 "AND ST_Intersects(e.geom, h.geom)"), {"id": extent.id}
        ).scalar_one()
        if out is not None:
            out.write_text(json.dumps(extent_feature_collection(session, extent), ensure_ascii=False))
    console.print(
        f"extent {extent.id} {extent.name!r}: {extent.mode} stage {extent.stage_m:g} m, "
        f"{extent.area_m2 / 1e6:.3f} km², {households} households inside"
    )


@flood_extent_app.command("import")
def flood_extent_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    crs: Annotated[str | None, typer.Option(help="gcj02 | bd09 | EPSG:code, when the file does not say")] = None,
    name: Annotated[str | None, typer.Option(help="default: the file name")] = None,
) -> None:
    """Store a flood extent surveyed or received as a polygon file (GeoJSON, KML, SHP zip, GPKG)."""
    from gis.db import transaction
    from gis.flood.extents import read_extent_file, save_extent

    with _exit_on_input_problems():
        geom = read_extent_file(file, crs=crs)
        with transaction(_engine()) as session:
            extent = save_extent(session, geom, "upload", name or file.stem, input_crs=crs)
    console.print(f"extent {extent.id} {extent.name!r}: {len(extent.geom.geoms)} parts, {extent.area_m2 / 1e6:.3f} km²")


def _flood_find(session: Session, extent_id: int | None, scenario: str | None, buffer_m: float,
                grid_code: str | None, endpoint: str, fmt: str, command: str,
                limit: int | None = None, offset: int = 0) -> FloodPage:
    """The flood households list through the one core operation (gis.flood.answers), as a trusted
    caller: every household, personal fields shown, audited as this command; a stage not stored yet
    is computed (the CLI may write)."""
    from gis.context import Context
    from gis.flood.answers import list_flood_households

    return list_flood_households(session, Context.cli(command), extent_id=extent_id, scenario=scenario,
                                 buffer_m=buffer_m, grid_code=grid_code, limit=limit, offset=offset, fmt=fmt,
                                 endpoint=endpoint, compute=True)


@flood_app.command("households")
def flood_households(
    extent: Annotated[int | None, typer.Option(help="a stored flood extent's id")] = None,
    scenario: Annotated[str | None, typer.Option(help="a named scenario (2023-09-23) or a stage in m")] = None,
    buffer_m: Annotated[float, typer.Option(help="also houses within this many metres")] = 0.0,
    grid_code: Annotated[str | None, typer.Option(help="only this grid (group, village or area code)")] = None,
    csv: Annotated[Path | None, typer.Option(
        help="also write the list to this file: CSV (UTF-8 with BOM), or Excel if it ends in .xlsx",
    )] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="also write the answer of GET /flood/households (format=json) to this file")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="one page of this many (default: all)")] = None,
    offset: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """The flooded households in rescue order: depth, people, grid, responsible staff, shelter."""
    from gis.db import transaction
    from gis.flood import labels as L

    with _exit_on_input_problems(), transaction(_engine()) as session, console.status("finding households ..."):
        result = _flood_find(session, extent, scenario, buffer_m, grid_code, "flood_households",
                             "table" if csv is None else csv.suffix.lstrip(".").lower() or "csv",
                             "flood households", limit=limit, offset=offset)
    t = result.totals
    table = Table("序号", "户号", "户主", "人数", "老/幼/残/孕/卧床", "水深m", "楼层", "网格", "网格员", "安置点",
                  title=f"{result.extent['name']}: {t['households']} 户 {t['residents']} 人")
    for h in result.items:
        vuln = "/".join(str(h[k]) for k in ("elderly", "children", "disabled", "pregnant", "bedridden"))
        depth = f"{h['depth_m']:.2f}" if h["depth_m"] is not None else "—"
        shelter = f"{h['shelter_name']} {h['shelter_distance_m']:.0f}m" if h["shelter_name"] else "无法安置"
        table.add_row(str(h["priority_rank"]), h["household_no"], h["head_name"], str(h["residents"]), vuln, depth,
                      str(h["floors"]), h["grid_name"] or "", f"{h['member_name'] or ''} {h['member_phone'] or ''}",
                      shelter)
    console.print(table)
    villages = sorted({h["village_name"] for h in result.items if h["village_name"]})
    console.print(f"villages: {'、'.join(villages)}; shelters by {result.distance_kind} ({result.shelter_method}); "
                  f"{t['unplaced_households']} households could not be placed")
    if csv is not None:
        L.EXPORT.write_file(csv, result.items)
        console.print(f"-> {csv}")
    if json_out is not None:
        from gis.flood.answers import as_json

        json_out.write_text(json.dumps(as_json(result), ensure_ascii=False, default=str), encoding="utf-8")
        console.print(f"-> {json_out}")


@flood_app.command("checklist")
def flood_checklist(
    out: Annotated[Path, typer.Argument(help=".html or .pdf")],
    extent: Annotated[int | None, typer.Option(help="a stored flood extent's id")] = None,
    scenario: Annotated[str | None, typer.Option(help="a named scenario (2023-09-23) or a stage in m")] = None,
    buffer_m: Annotated[float, typer.Option()] = 0.0,
    grid_code: Annotated[str | None, typer.Option(help="only this grid (group, village or area code)")] = None,
) -> None:
    """The printable 明白卡 checklist, one card per responsible grid member (HTML or PDF)."""
    from gis.dataset_info import dataset_info
    from gis.db import transaction
    from gis.flood.checklist import checklist_html, checklist_pdf

    with _exit_on_input_problems(), transaction(_engine()) as session, console.status("finding households ..."):
        result = _flood_find(session, extent, scenario, buffer_m, grid_code, "flood_checklist",
                             out.suffix.lstrip(".").lower() or "html", "flood checklist")
        sample = dataset_info(session, "sample_town")
    html = checklist_html(result.items, result.extent, synthetic_notice=sample.get("notice") if sample else None)
    if out.suffix.lower() == ".pdf":
        out.write_bytes(checklist_pdf(html))
    else:
        out.write_text(html, encoding="utf-8")
    console.print(f"{len(result.items)} households -> {out}")


@flood_app.command("risk")
def flood_risk_cmd(
    level: Annotated[int, typer.Option(min=1, max=4, help="grid level to count per")] = 3,
    stages: Annotated[str | None, typer.Option(help="comma-separated stages in m; default 0.5,1,2,3")] = None,
) -> None:
    """Households and people at risk per grid and stage (counts only)."""
    from gis.db import transaction
    from gis.flood.risk import flood_risk, parse_stages
    from gis.flood.stages import scenario_extent

    with _exit_on_input_problems(), transaction(_engine()) as session, console.status("flooding each stage ..."):
        # The CLI is a trusted caller: a stage of the allowed set not stored yet is computed.
        out = flood_risk(session, level=level, stages=parse_stages(stages),
                         extent_for_stage=scenario_extent)
    keys = [f"{s:g}" for s in out["stages"]]
    table = Table("code", "name", "risk", *[f"{k} m 户/人" for k in keys])
    for g in out["grids"]:
        if g["first_stage_m"] is None:
            continue
        table.add_row(g["code"], g["name"], g["risk_class"],
                      *[f"{g['stages'][k]['households']}/{g['stages'][k]['residents']}" for k in keys])
    console.print(table)
    for t in out["totals"]:
        console.print(f"stage {t['stage_m']:g} m: {t['households']} households, {t['residents']} residents")


@app.command("hotspots")
def hotspots(
    unit: Annotated[str, typer.Option(help="grid | hexagon")] = "grid",
    level: Annotated[int, typer.Option(help="grid level of the units (2-4)")] = 4,
    hex_size: Annotated[float, typer.Option(help="hexagon width in metres")] = 500.0,
    grid_code: Annotated[str | None, typer.Option(help="analyse this grid's subtree only")] = None,
    category: Annotated[str, typer.Option(help="incident category, or 'all'")] = "dispute",
    dispute_kind: Annotated[str | None, typer.Option(help="land | neighbour | family | wages | demolition")] = None,
    since: Annotated[str | None, typer.Option(help="from this time, e.g. 2024-01-01T00:00+08:00")] = None,
    until: Annotated[str | None, typer.Option(help="before this time")] = None,
    value: Annotated[str, typer.Option(help="count | rate (per 1,000 residents)")] = "count",
    smoothing: Annotated[str, typer.Option(help="none | eb (Empirical Bayes, with --value rate)")] = "none",
    inference: Annotated[str, typer.Option(help="both | exact | permutation | normal")] = "both",
    permutations: Annotated[int, typer.Option()] = 999,
    seed: Annotated[int, typer.Option()] = 12345,
    alpha: Annotated[float, typer.Option()] = 0.05,
    fdr: Annotated[bool, typer.Option(help="Benjamini-Hochberg correction")] = True,
    out: Annotated[Path | None, typer.Option(
        help="write every unit: .csv, .xlsx, .geojson or .json")] = None,
) -> None:
    """Dispute (or other incident) hot spots: Gi*, FDR, confidence bins, outliers, emerging trends."""
    import datetime as dt

    from gis.db import make_sessionmaker
    from gis.errors import Problem
    from gis.hotspots import service

    def when(text_value: str | None, name: str) -> dt.datetime | None:
        if text_value is None:
            return None
        try:
            return dt.datetime.fromisoformat(text_value)
        except ValueError:
            _print_problems(InputError(Problem(("option", name), "an ISO time with a zone")))
            raise typer.Exit(1) from None

    query = service.HotspotQuery(
        unit=unit, level=level, hex_size_m=hex_size, grid_code=grid_code,
        category=None if category == "all" else category, dispute_kind=dispute_kind,
        since=when(since, "since"), until=when(until, "until"), value=value, smoothing=smoothing,
        inference=inference, permutations=permutations, seed=seed, alpha=alpha, fdr=fdr)
    try:
        with make_sessionmaker(_engine())() as session:
            result = service.analyse(session, None, query)
    except (InputError, NotFound) as exc:
        if isinstance(exc, InputError):
            _print_problems(exc)
        else:
            err.print(exc.detail)
        raise typer.Exit(1) from None
    meta = result.meta
    console.print(f"{meta['units']} units, {meta['incidents']} incidents; {meta['hot_spots']} hot spots, "
                  f"{meta['cold_spots']} cold spots, {meta['outliers']} outliers (decided by "
                  f"{meta['decided_by']}, FDR {'on' if fdr else 'off'}, alpha {alpha})")
    for warning in result.warnings:
        err.print(f"warning: {warning}")
    records = service.unit_records(result)
    hot = sorted((r for r in records if r["significant"] and r["bin"] > 0),
                 key=lambda r: (-r["bin"], -(r["gi_z"] or 0)))
    table = Table("unit", "name", "incidents", "value", "Gi* z", "q", "bin", "emerging", title="hot spots")
    for r in hot[:50]:
        table.add_row(r["unit_id"], r["name"] or "", str(r["incidents"]), f"{r['value']:.2f}",
                      f"{r['gi_z']:.2f}", f"{r['q_value']:.2g}", str(r["bin"]), r["emerging"] or "")
    console.print(table)
    if out is not None:
        suffix = out.suffix.lower()
        if suffix in (".csv", ".xlsx"):
            from maps import labels

            labels.HOTSPOT_EXPORT.write_file(out, labels.hotspot_export_rows(records))
        elif suffix in (".geojson", ".json"):
            payload = ({"type": "FeatureCollection", "meta": meta, "warnings": result.warnings,
                        "features": service.unit_features(result)} if suffix == ".geojson"
                       else {"meta": meta, "warnings": result.warnings, "units": records})
            out.write_text(json.dumps(payload, ensure_ascii=False, default=str), encoding="utf-8")
        else:
            err.print("--out must end in .csv, .xlsx, .geojson or .json")
            raise typer.Exit(1)
        console.print(f"wrote {out}")


@app.command("stats")
def stats() -> None:
    """Counts of what is loaded."""
    from gis.db import transaction
    from gis.town_summary import town_counts

    with transaction(_engine()) as session:
        console.print_json(json.dumps(town_counts(session), ensure_ascii=False))


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Serve the API and map pages. Started as root, the server runs as WANGGE_SERVICE_USER."""
    import os

    import uvicorn

    from gis.settings import get_settings

    settings = get_settings()
    host, port = host or settings.host, port or settings.port
    if os.geteuid() != 0:
        uvicorn.run("api.main:app", host=host, port=port)
        return
    from gis.service_user import ServiceUserError, bind_socket, drop_root

    # The settings (and var/database_url, readable by root only) are read before the switch;
    # the socket is bound before it too, so ports below 1024 still work.
    sock = bind_socket(host, port)
    try:
        user = drop_root(settings, settings.service_user)
    except ServiceUserError as exc:
        err.print(f"not starting: {exc}")
        raise typer.Exit(1) from None
    err.print(f"serving as the unprivileged user '{user.name}' (uid {user.uid}), not root")
    config = uvicorn.Config("api.main:app", host=host, port=port)
    uvicorn.Server(config).run(sockets=[sock])


def main() -> None:  # pragma: no cover
    try:
        app()
    except NotFound as exc:
        err.print(exc.detail)
        sys.exit(1)
if __name__ == '__main__':
    main()
