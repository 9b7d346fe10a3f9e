"""The `wangge` command line: database, sample town, grids and the server."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gis.errors import InputError, NotFound

app = typer.Typer(help="Wangge 网格: grid-based governance GIS.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
sample_app = typer.Typer(help="The synthetic sample town.", no_args_is_help=True)
grids_app = typer.Typer(help="Grid boundaries: import, export, locate.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(sample_app, name="sample")
app.add_typer(grids_app, name="grids")
users_app = typer.Typer(help="Accounts and API tokens.", no_args_is_help=True)
app.add_typer(users_app, name="users")
incidents_app = typer.Typer(help="Incidents: batch import.", no_args_is_help=True)
app.add_typer(incidents_app, name="incidents")

# Piped output (make serve, CI logs) gets a wide console so tables are not cut.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _engine():
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


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or update the schema (Alembic migrations)."""
    from gis.db import upgrade

    upgrade(_engine())
    console.print("schema up to date")


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
    from gis.db import transaction
    from gis.grids.io import ReadLimits, read_grid_file
    from gis.grids.store import import_grids
    from gis.settings import get_settings

    settings = get_settings()
    limits = ReadLimits(
        max_file_bytes=settings.max_upload_bytes,
        max_features=settings.max_features_per_file,
        max_vertices_per_geometry=settings.max_vertices_per_geometry,
        max_zip_entries=settings.max_zip_entries,
        max_unzipped_bytes=settings.max_unzipped_bytes,
    )
    try:
        frame = read_grid_file(file, crs=crs, limits=limits)
        with transaction(_engine()) as session:
            savepoint = session.begin_nested() if dry_run else None
            report = import_grids(
                session,
                frame,
                source=f"cli:{file.name}",
                gap_tolerance_m2=settings.gap_tolerance_m2,
                overlap_tolerance_m2=settings.overlap_tolerance_m2,
            )
            if savepoint is not None:
                savepoint.rollback()
    except InputError as exc:
        _print_problems(exc)
        raise typer.Exit(1) from None
    summary = report.as_dict()
    verb = "would write" if dry_run else "wrote"
    console.print(
        f"{verb}: {summary['created']} new, {summary['replaced']} redrawn, {summary['unchanged']} unchanged"
    )


@grids_app.command("export")
def grids_export(
    out: Annotated[Path, typer.Argument(help=".geojson or .gpkg")],
    level: Annotated[int | None, typer.Option(min=1, max=4)] = None,
) -> None:
    """Export the current grids to GeoJSON or GeoPackage."""
    from gis.db import transaction
    from gis.grids.store import current_grids

    with transaction(_engine()) as session:
        frame = current_grids(session, level=level)
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
    from gis.crs import check_lonlat, parse_crs, to_wgs84
    from gis.db import transaction
    from gis.grids.locate import locate_points

    try:
        system = parse_crs(crs, field=("crs",))
        check_lonlat(lon, lat, field_prefix=())
    except InputError as exc:
        _print_problems(exc)
        raise typer.Exit(2) from None
    xs, ys = to_wgs84([lon], [lat], system)
    with transaction(_engine()) as session:
        loc = locate_points(session, xs, ys)[0]
    if not loc.inside:
        near = loc.nearest
        err.print(f"outside the town; nearest grid {near.name} ({near.code}), {loc.distance_m:.0f} m")
        raise typer.Exit(1)
    for level, ref in sorted(loc.path.items()):
        console.print(f"{level}  {ref.code}  {ref.name}")
    if loc.on_boundary:
        console.print("(on a shared boundary: chosen by the smallest-code rule)")


def _cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "cli"


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

    from gis import audit
    from gis.auth import accounts
    from gis.auth.roles import Role
    from gis.db import transaction

    try:
        role_value = Role(role)
    except ValueError:
        err.print(f"unknown role {role!r}; one of: {', '.join(r.value for r in Role)}")
        raise typer.Exit(2) from None
    password = sys.stdin.readline().rstrip("\n") if password_stdin else secrets.token_urlsafe(12)
    try:
        with transaction(_engine()) as session:
            user = accounts.create_user(session, username, password, role_value,
                                        scope_codes=scope or [], display_name=display_name)
            audit.record(session, None, "create", resource="user", resource_ids=[user.id],
                         actor=_cli_actor(), detail={"role": role_value.value, "scope": scope or []})
    except InputError as exc:
        _print_problems(exc)
        raise typer.Exit(1) from None
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
    from gis import audit
    from gis.auth import accounts
    from gis.db import transaction

    password = sys.stdin.readline().rstrip("\n")
    try:
        with transaction(_engine()) as session:
            user = accounts.find_user(session, username)
            if user is None:
                err.print(f"no user {username}")
                raise typer.Exit(1)
            accounts.update_user(session, user.id, password=password)
            audit.record(session, None, "update", resource="user", resource_ids=[user.id],
                         actor=_cli_actor(), detail={"changed": ["password(reset)"]})
    except InputError as exc:
        _print_problems(exc)
        raise typer.Exit(1) from None
    console.print(f"password of {username} changed; their sessions ended")


@users_app.command("token")
def users_token(
    username: str,
    name: Annotated[str, typer.Option(help="what the token is for, e.g. the platform that uses it")],
    days: Annotated[float | None, typer.Option(help="expires after this many days")] = None,
) -> None:
    """Issue an API token for USERNAME (printed once)."""
    from gis import audit
    from gis.auth import accounts
    from gis.db import transaction

    with transaction(_engine()) as session:
        user = accounts.find_user(session, username)
        if user is None:
            err.print(f"no user {username}")
            raise typer.Exit(1)
        secret, token = accounts.create_token(session, user.id, name, expires_days=days)
        audit.record(session, None, "create", resource="api_token", resource_ids=[token.id], actor=_cli_actor())
    console.print(f"token id={token.id}: {secret}")


@sample_app.command("demo-accounts")
def sample_demo_accounts() -> None:
    """For the sample town only: one demo account per role, with fresh random passwords, printed."""
    import secrets

    from sqlalchemy import text

    from gis import audit
    from gis.auth import accounts
    from gis.auth.roles import ROLE_NAMES_ZH, Role
    from gis.db import transaction
    from gis.sample_load import dataset_info

    with transaction(_engine()) as session:
        if dataset_info(session, "sample_town") is None:
            err.print("not the sample town: demo accounts are made only for the synthetic sample")
            raise typer.Exit(1)
        group = session.execute(text(
            "SELECT min(code) FROM grid WHERE level = 4 AND valid_to IS NULL AND parent_code = "
            "(SELECT code FROM grid WHERE level = 3 AND valid_to IS NULL AND name = '尹营村')"
        )).scalar_one()
        scopes = {Role.GRID_STAFF: [group], Role.SUPERVISOR: [group[:12] + "000"]}
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
            audit.record(session, None, "update", resource="user", resource_ids=[user.id], actor=_cli_actor(),
                         detail={"demo_account": True, "changed": ["password(reset)"]})
            table.add_row(role.value, ROLE_NAMES_ZH[role], username, password, " ".join(user.scope_codes))
    console.print(table)


@incidents_app.command("import")
def incidents_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    crs: Annotated[str | None, typer.Option(help="the coordinates' system: wgs84 | gcj02 | bd09 | EPSG:code")] = None,
    all_or_nothing: Annotated[bool, typer.Option(help="write nothing if any row fails")] = False,
) -> None:
    """Import incidents (CSV, Excel, GeoJSON, GeoPackage): good rows in, bad rows reported by number."""
    from rich.progress import Progress

    from gis import audit
    from gis.db import transaction
    from gis.incidents.batch import import_incidents, read_incident_file
    from gis.settings import get_settings

    settings = get_settings()
    try:
        frame = read_incident_file(file, max_rows=settings.max_incident_rows_per_file)
        with transaction(_engine()) as session, Progress(console=console, transient=True) as bar:
            task = bar.add_task("importing", total=len(frame))
            report = import_incidents(
                session, frame, source=f"cli:{file.name}", crs=crs, all_or_nothing=all_or_nothing,
                outside_tolerance_m=settings.incident_outside_tolerance_m,
                progress=lambda n: bar.advance(task, n),
            )
            bar.update(task, completed=len(frame))
            audit.record(session, None, "import", resource="incident", actor=_cli_actor(),
                         detail={"file": file.name, "created": report.created, "failed": len(report.failed)})
    except InputError as exc:
        _print_problems(exc)
        raise typer.Exit(1) from None
    if report.failed:
        table = Table("row", "column", "reason", title=f"{len(report.failed)} rows failed")
        for f in report.failed[:200]:
            table.add_row(str(f["row"]), f["column"] or "", f["reason"])
        err.print(table)
    verb = "wrote" if report.written else "wrote nothing (--all-or-nothing)"
    console.print(f"{verb}: {report.created} new, {report.already_present} already present, "
                  f"{len(report.failed)} failed of {report.rows} rows")
    if report.failed:
        raise typer.Exit(1)


@app.command("stats")
def stats() -> None:
    """Counts of what is loaded."""
    from gis.db import transaction
    from gis.stats import town_counts

    with transaction(_engine()) as session:
        console.print_json(json.dumps(town_counts(session), ensure_ascii=False))


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Serve the API and map pages."""
    import uvicorn

    from gis.settings import get_settings

    settings = get_settings()
    uvicorn.run("api.main:app", host=host or settings.host, port=port or settings.port)


def main() -> None:  # pragma: no cover
    try:
        app()
    except NotFound as exc:
        err.print(exc.detail)
        sys.exit(1)
if __name__ == '__main__':
    main()
