"""Export of the whole register: GET /register/export.gpkg (GeoPackage) and /register/export.xlsx (Excel)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api import schemas
from api.deps import Reason, SessionDep, request_context
from api.security import requires
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.register import export
from gis.spreadsheet import XLSX_MEDIA_TYPE

router = APIRouter(prefix="/register", tags=["register"])
ExportPrincipal = Annotated[Principal, requires(Permission.EXPORT_REGISTER)]


def _download(request: Request, session: SessionDep, principal: Principal, reason: str | None,
              fmt: export.ExportFormat, media_type: str) -> Response:
    body, result = export.export_bytes(session, request_context(request, principal, reason), principal, fmt)
    return Response(body, media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="register.{fmt}"',
        "X-Total-Count": str(sum(result.rows.values())),
        "Cache-Control": "no-store",
    })


@router.get("/export.gpkg", summary="The register as a GeoPackage: a layer per kind; personal fields as your role "
            "may see them (audited)", response_class=schemas.DownloadResponse,
            responses=schemas.download(export.GPKG_MEDIA_TYPE))
def export_gpkg(request: Request, session: SessionDep,
                principal: ExportPrincipal, reason: Reason = None) -> Response:
    return _download(request, session, principal, reason, "gpkg", export.GPKG_MEDIA_TYPE)


@router.get("/export.xlsx", summary="The register as an Excel workbook: a sheet per kind with Chinese headers; "
            "personal fields as your role may see them (audited)", response_class=schemas.DownloadResponse,
            responses=schemas.download(XLSX_MEDIA_TYPE))
def export_xlsx(request: Request, session: SessionDep,
                principal: ExportPrincipal, reason: Reason = None) -> Response:
    return _download(request, session, principal, reason, "xlsx", XLSX_MEDIA_TYPE)
