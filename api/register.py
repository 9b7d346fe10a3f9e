"""The town's register over HTTP: import households and residents from the township's files, read who lived
in a household on a date and its change log, edit one household or record a resident's departure."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from api import schemas
from api.deps import NoNul, SessionDep, SettingsDep
from api.exports import parse_mapping, saved_upload
from api.security import context_of
from gis import clock
from gis.auth.roles import Permission, Role
from gis.context import Context
from gis.errors import InputError, Problem
from gis.register import history
from gis.register.households import MODES, ImportOptions, import_households

router = APIRouter(prefix="/register", tags=["register"])

HouseholdNo = Annotated[str, PathParam(min_length=1, max_length=32), NoNul]
TABLE_SUFFIXES = {".xlsx", ".xlsm", ".csv", ".txt", ".tsv", ".xls"}


# --- answers ---------------------------------------------------------------------------------------------


class ImportedFile(BaseModel):
    kind: Literal["households", "residents"]
    filename: str
    sheet: str = Field(description="the sheet read (a CSV: its file name)")
    header_row: int = Field(description="the header's row as the user sees it (title rows above it skipped)")
    columns: dict[str, str] = Field(description="field -> the file's column header")
    encoding: str | None = Field(description="a CSV's detected encoding (utf-8, utf-8-sig, gbk, gb18030)")


class FileProblem(BaseModel):
    loc: list[str | int] = Field(description='("file", sheet, row, column header) for a cell')
    msg: str
    type: str


class HouseholdTotals(BaseModel):
    total: int
    placed: int
    by_coordinates: int
    by_address: int = Field(description="at a known house address")
    by_settlement: int = Field(description="at the point of the 组 / natural village the address names (approximate)")
    unplaced: int
    with_problems: int
    outside_every_grid: int
    written: int


class ResidentTotals(BaseModel):
    written: int


class GroupCount(BaseModel):
    group_code: str | None
    group_name: str | None
    village_code: str | None
    village_name: str | None
    households: int


class PlacedHousehold(BaseModel):
    row: int
    household_no: str
    located_by: Literal["coordinates", "address", "settlement"]
    precision_m: int | None
    place: str | None
    lon: float
    lat: float
    group_code: str | None
    group_name: str | None
    village_code: str | None
    village_name: str | None
    area_code: str | None
    area_name: str | None
    town_code: str | None
    town_name: str | None


class UnplacedHousehold(BaseModel):
    row: int
    household_no: str
    address: str | None
    reason: str


class RowCounts(BaseModel):
    households: int
    residents: int


class RegisterImportReport(BaseModel):
    dry_run: bool
    mode: Literal["all_or_nothing", "good_rows"]
    as_of: dt.date
    written: bool = Field(description="false for a dry run, or when all_or_nothing found problems")
    files: list[ImportedFile]
    rows: RowCounts
    problem_count: int
    problems: list[FileProblem] = Field(description="the first 2000 problems, each naming its row and column")
    households: HouseholdTotals
    residents: ResidentTotals
    by_group: list[GroupCount]
    placed: list[PlacedHousehold] = Field(description="each placed household's grid at every level (first 2000)")
    unplaced: list[UnplacedHousehold]
    changes: dict[str, int] = Field(description="change kind -> how many this import recorded")
    import_id: int | None


class ResidentOnDate(BaseModel):
    name: str | None
    id_number: str | None
    valid_from: dt.date | None = Field(description="null: since before the register began")
    valid_to: dt.date | None


class ResidentsOn(BaseModel):
    household_no: str
    on: dt.date
    personal_fields: Literal["shown", "masked"]
    residents: list[ResidentOnDate]


class RegisterChange(BaseModel):
    kind: str
    id_number: str | None
    old: str | None
    new: str | None
    effective_date: dt.date
    import_id: int | None
    recorded_at: dt.datetime


class HouseholdEdit(BaseModel):
    phone: Annotated[str, NoNul] | None = Field(default=None, max_length=40)
    head_name: Annotated[str, NoNul] | None = Field(default=None, max_length=100)
    address: Annotated[str, NoNul] | None = Field(default=None, max_length=200)
    floors: int | None = Field(default=None, ge=1, le=10)
    effective_date: dt.date | None = Field(default=None, description="when the change happened (default today)")


class HouseholdEdited(BaseModel):
    household_no: str
    changed: list[str]


class ResidentDeparture(BaseModel):
    status: Literal["died", "moved_out"]
    effective_date: dt.date


class DepartureRecorded(BaseModel):
    household_no: str
    residents: int


# --- routes ---------------------------------------------------------------------------------------------


def _suffix(file: UploadFile, field: str) -> str:
    suffix = Path(file.filename or "").suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise InputError(Problem(("body", field), "file type must be .xlsx or .csv"))
    return suffix


@router.post("/households/import", summary="Import households and residents (xlsx / CSV); dry run, "
             "all_or_nothing or good_rows; every problem by row and column",
             response_model=RegisterImportReport, **schemas.DATA, responses=schemas.problems(*schemas.READ, 413))
def import_register_households(
    session: SessionDep,
    settings: SettingsDep,
    ctx: Annotated[Context, context_of(Permission.IMPORT_REGISTER)],
    file: Annotated[UploadFile, File(description="households (and residents) workbook or CSV")],
    residents_file: Annotated[UploadFile | None, File(description="residents, when in a file of their own")] = None,
    dry_run: Annotated[bool, Form(description="check and report, write nothing")] = False,
    mode: Annotated[Literal["all_or_nothing", "good_rows"], Form()] = "all_or_nothing",
    household_sheet: Annotated[str | None, Form(max_length=100), NoNul] = None,
    resident_sheet: Annotated[str | None, Form(max_length=100), NoNul] = None,
    mapping: Annotated[str | None, Form(max_length=4000, description='JSON {"field": "column header"}'),
                       NoNul] = None,
    crs: Annotated[str | None, Form(max_length=40, description="wgs84 | cgcs2000 | gcj02 | bd09 | EPSG:code")] = None,
    as_of: Annotated[dt.date | None, Form(description="the date the register is as of (ages, changes)")] = None,
    place_by_settlement: Annotated[bool, Form(description="place an address naming only its 组 / natural "
                                                          "village at that settlement (flagged)")] = True,
) -> dict[str, Any]:
    assert mode in MODES
    options = ImportOptions(mode=mode, dry_run=dry_run, as_of=as_of, crs=crs, household_sheet=household_sheet,
                            resident_sheet=resident_sheet, mapping=parse_mapping(mapping) or {},
                            place_by_settlement=place_by_settlement,
                            reveal=ctx.principal is not None and ctx.principal.role is Role.ADMIN)
    suffix = _suffix(file, "file")
    with saved_upload(file, suffix, settings.max_upload_bytes) as path:
        if residents_file is not None and residents_file.filename:
            r_suffix = _suffix(residents_file, "residents_file")
            with saved_upload(residents_file, r_suffix, settings.max_upload_bytes) as r_path:
                report = import_households(session, ctx, path, file.filename or path.name,
                                           residents=(r_path, residents_file.filename or r_path.name),
                                           options=options)
        else:
            report = import_households(session, ctx, path, file.filename or path.name, options=options)
    return report.as_dict()


@router.get("/households/{household_no}/residents", summary="Who lived in the household on a date",
            response_model=ResidentsOn, **schemas.DATA, responses=schemas.problems(*schemas.READ, 404))
def residents_on_date(
    session: SessionDep,
    ctx: Annotated[Context, context_of(Permission.VIEW_HOUSEHOLDS)],
    household_no: HouseholdNo,
    on: Annotated[dt.date | None, Query(description="the date (default today)")] = None,
) -> dict[str, Any]:
    return history.who_lived_here(session, ctx, household_no, on or clock.today())


@router.get("/households/{household_no}/changes", summary="The household's change log (moved in/out, born, "
            "died, phone changed, moved group ...)", response_model=list[RegisterChange], **schemas.DATA,
            responses=schemas.problems(*schemas.READ, 404))
def household_changes(
    session: SessionDep,
    ctx: Annotated[Context, context_of(Permission.VIEW_HOUSEHOLDS)],
    household_no: HouseholdNo,
) -> list[dict[str, Any]]:
    return history.change_log(session, ctx, household_no)


@router.patch("/households/{household_no}", summary="Edit one household (phone, head, address, floors)",
              response_model=HouseholdEdited, **schemas.DATA, responses=schemas.problems(*schemas.READ, 404))
def edit_household(
    session: SessionDep,
    ctx: Annotated[Context, context_of(Permission.IMPORT_REGISTER)],
    household_no: HouseholdNo,
    body: HouseholdEdit,
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True, exclude={"effective_date"})
    return history.edit_household(session, ctx, household_no, changes, effective_date=body.effective_date)


@router.patch("/households/{household_no}/residents/{id_number}", summary="Record a resident's death or move "
              "out", response_model=DepartureRecorded, **schemas.DATA,
              responses=schemas.problems(*schemas.READ, 404))
def resident_departure(
    session: SessionDep,
    ctx: Annotated[Context, context_of(Permission.IMPORT_REGISTER)],
    household_no: HouseholdNo,
    id_number: Annotated[str, PathParam(min_length=18, max_length=18, pattern=r"^\d{17}[\dXx]$")],
    body: ResidentDeparture,
) -> dict[str, Any]:
    return history.record_departure(session, ctx, household_no, id_number.upper(), body.status,
                                    body.effective_date)
