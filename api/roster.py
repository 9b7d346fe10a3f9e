"""The staff roster (网格员花名册), who served which grid when, and who is responsible for which households."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from api import schemas
from api.deps import NoNul, SessionDep, SettingsDep, request_context
from api.exports import parse_mapping, saved_upload
from api.places import FileProblem
from api.security import requires
from gis import clock
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.errors import InputError, NotFound, Problem
from gis.register import roster

router = APIRouter(tags=["register"])

StaffId = Annotated[int, PathParam(ge=1, le=2**62)]
TABLE_SUFFIXES = (".xlsx", ".xlsm", ".csv", ".txt", ".tsv")
Role = Literal["grid_leader", "grid_member", "party_household", "supervisor"]


class StaffChange(BaseModel):
    what: Literal["joined", "left", "moved", "role_changed", "phone_changed", "renamed"]
    name: str
    role: Role
    grid_code: schemas.GridCode
    before: str | None = Field(description="the grid, role, phone or name it changed from")


class RosterImportReport(BaseModel):
    file: str
    dry_run: bool
    mode: Literal["all_or_nothing", "good_rows"]
    effective: str = Field(description="the date the changes take effect (YYYY-MM-DD)")
    whole_roster: bool
    rows: int
    joined: int
    left: int
    changed: int
    unchanged: int
    skipped: int
    problems: list[FileProblem]
    changes: list[StaffChange]


class ResponsibleImportReport(BaseModel):
    file: str
    dry_run: bool
    mode: Literal["all_or_nothing", "good_rows"]
    effective: str
    whole_list: bool
    rows: int
    added: int
    ended: int
    unchanged: int
    skipped: int
    problems: list[FileProblem]


class StaffMember(BaseModel):
    id: int
    name: str
    phone: str | None
    role: Role
    grid_code: schemas.GridCode
    household_id: int | None


class StaffCreate(BaseModel):
    name: Annotated[str, NoNul] = Field(min_length=1, max_length=100)
    phone: Annotated[str | None, NoNul] = Field(default=None, max_length=40)
    role: str = Field(max_length=20, description="网格长 | 网格员 | 党员中心户 | 网格督导员, or the role code")
    grid_code: str = Field(max_length=15)
    household_no: Annotated[str | None, NoNul] = Field(default=None, max_length=32)
    effective: dt.date | None = Field(default=None, description="the day they join (default today)")


class StaffPatch(BaseModel):
    name: Annotated[str | None, NoNul] = Field(default=None, min_length=1, max_length=100)
    phone: Annotated[str | None, NoNul] = Field(default=None, max_length=40)
    role: str | None = Field(default=None, max_length=20)
    grid_code: str | None = Field(default=None, max_length=15)
    household_no: Annotated[str | None, NoNul] = Field(default=None, max_length=32)
    effective: dt.date | None = Field(default=None, description="the day the change takes effect (default today)")


class Tenure(BaseModel):
    staff_id: int
    name: str
    phone: str | None
    role: Role
    role_zh: str
    grid_code: schemas.GridCode
    valid_from: str = Field(description="YYYY-MM-DD, the first day")
    valid_to: str | None = Field(description="YYYY-MM-DD, the day after the last; null: still serving")


class GridStaffOn(BaseModel):
    grid_code: schemas.GridCode
    on: str
    staff: list[Tenure]


def _table_file(file: UploadFile) -> tuple[str, str]:
    filename = Path(file.filename or "upload").name
    suffix = Path(filename).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise InputError(Problem(("body", "file"), f"file type must be one of {', '.join(TABLE_SUFFIXES)}",
                                 "unsupported_format"))
    return filename, suffix


FileField = Annotated[UploadFile, File(description="xlsx or CSV (UTF-8, UTF-8 with BOM, GBK, GB18030)")]
SheetField = Annotated[str | None, Form(max_length=200, description="the sheet (xlsx); default the first")]
MappingField = Annotated[str | None, Form(max_length=4000, description='JSON {"name": "网格员姓名", ...}')]
EffectiveField = Annotated[dt.date | None, Form(description="the day the changes take effect (default today)")]
DryRunField = Annotated[bool, Form(description="check and report; write nothing")]
ModeField = Annotated[Literal["all_or_nothing", "good_rows"], Form()]


@router.post("/staff/import", summary="Import the staff roster (网格员花名册): joins, moves and leaves, dated",
             response_model=RosterImportReport, **schemas.DATA, responses=schemas.problems(*schemas.READ, 413))
def import_roster(
    request: Request, session: SessionDep, settings: SettingsDep,
    principal: Annotated[Principal, requires(Permission.IMPORT_REGISTER)],
    file: FileField, sheet: SheetField = None, mapping: MappingField = None, effective: EffectiveField = None,
    dry_run: DryRunField = False, mode: ModeField = "all_or_nothing",
    whole_roster: Annotated[bool, Form(description="the file is the whole roster: staff it does not name "
                                                   "leave")] = True,
) -> Any:
    filename, suffix = _table_file(file)
    columns = parse_mapping(mapping)
    with saved_upload(file, suffix, settings.max_upload_bytes) as path:
        report = roster.import_roster(session, request_context(request, principal), path, file_name=filename,
                                      sheet=sheet, mapping=columns, effective=effective, dry_run=dry_run, mode=mode,
                                      whole_roster=whole_roster)
    return report.as_dict()


@router.post("/staff/responsibilities/import", summary="Import who is responsible for which households (联系户)",
             response_model=ResponsibleImportReport, **schemas.DATA, responses=schemas.problems(*schemas.READ, 413))
def import_responsibilities(
    request: Request, session: SessionDep, settings: SettingsDep,
    principal: Annotated[Principal, requires(Permission.IMPORT_REGISTER)],
    file: FileField, sheet: SheetField = None, mapping: MappingField = None, effective: EffectiveField = None,
    dry_run: DryRunField = False, mode: ModeField = "all_or_nothing",
    whole_list: Annotated[bool, Form(description="the file is the whole list: responsibilities it does not "
                                                 "hold end")] = True,
) -> Any:
    filename, suffix = _table_file(file)
    columns = parse_mapping(mapping)
    with saved_upload(file, suffix, settings.max_upload_bytes) as path:
        report = roster.import_responsibilities(
            session, request_context(request, principal), path, file_name=filename, sheet=sheet, mapping=columns,
            effective=effective, dry_run=dry_run, mode=mode, whole_list=whole_list)
    return report.as_dict()


@router.post("/staff", status_code=201, summary="Add one staff member to a grid",
             response_model=StaffMember, **schemas.DATA, responses=schemas.problems(*schemas.READ))
def create_staff(request: Request, session: SessionDep,
                 principal: Annotated[Principal, requires(Permission.IMPORT_REGISTER)], body: StaffCreate) -> Any:
    fields = body.model_dump(exclude={"effective"}, exclude_none=True)
    return roster.create_staff(session, request_context(request, principal), fields, body.effective)


@router.patch("/staff/{staff_id}", summary="Change one staff member (grid, role, phone, name), dated",
              response_model=StaffMember, **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def update_staff(request: Request, session: SessionDep,
                 principal: Annotated[Principal, requires(Permission.IMPORT_REGISTER)], staff_id: StaffId,
                 body: StaffPatch) -> Any:
    fields = body.model_dump(exclude={"effective"}, exclude_unset=True)
    for key in ("name", "role", "grid_code"):
        if key in fields and fields[key] is None:
            raise InputError(Problem(("body", key), "may not be null", "missing"))
    return roster.update_staff(session, request_context(request, principal), staff_id, fields, body.effective)


@router.delete("/staff/{staff_id}", status_code=204, summary="One staff member leaves (dated)",
               responses=schemas.problems(*schemas.ONE))
def delete_staff(request: Request, session: SessionDep,
                 principal: Annotated[Principal, requires(Permission.IMPORT_REGISTER)], staff_id: StaffId,
                 effective: Annotated[dt.date | None, Query(description="the day they leave (default today)")] = None,
                 ) -> Response:
    roster.delete_staff(session, request_context(request, principal), staff_id, effective)
    return Response(status_code=204)


@router.get("/grids/{code}/staff", summary="Who served a grid on a day (the roster's history)",
            response_model=GridStaffOn, **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def grid_staff_on(
    session: SessionDep, _: Annotated[Principal, requires(Permission.VIEW_GRIDS)],
    code: Annotated[str, PathParam(pattern=r"^\d{15}$")],
    on: Annotated[dt.date | None, Query(description="the day (YYYY-MM-DD); default today")] = None,
) -> Any:
    if not roster.grid_known(session, code):
        raise NotFound(f"no grid has the code {code}")
    day = on or clock.today()
    return {"grid_code": code, "on": day.isoformat(), "staff": roster.staff_on(session, code, day)}
