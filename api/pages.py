"""Pages of the shell itself: the account page, the role's start page, and the shell's static files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session

from api.deps import SessionDep
from api.security import public, require_page, resolve_principal
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from maps.shell import STATIC_PREFIX, Shell, nav_for, page_shell, plain_page

router = APIRouter(tags=["pages"])

STATIC_DIR = Path(__file__).resolve().parent.parent / "maps" / "static"


def mount_static(app: FastAPI) -> None:
    """The shell's and pages' own scripts and styles (maps/static) at /static/wangge."""
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="wangge-static")


def shell_of(request: Request, session: Session, principal: Principal | None) -> Shell:
    """The shell of the page being answered: `principal`'s navigation, this path marked current."""
    return page_shell(session, principal, current=request.url.path)


def page_response(page: str) -> HTMLResponse:
    # Pages carry who is logged in (and often personal data): never kept by a browser or proxy cache.
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


ACCOUNT_BODY = """
<section class="wangge-panel" id="account">
  <h2>我的账户</h2>
  <dl class="wangge-account-facts">
    <dt>用户名</dt><dd id="account-username"></dd>
    <dt>角色</dt><dd id="account-role"></dd>
    <dt>负责网格</dt><dd id="account-scope"></dd>
  </dl>
  <h3>我可以使用的页面</h3>
  <ul id="account-pages"></ul>
</section>
"""


@router.get("/pages/account", response_class=HTMLResponse, include_in_schema=False)
def account_page(
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(require_page(Permission.VIEW_GRIDS))],
) -> HTMLResponse:
    shell = shell_of(request, session, principal)
    config = {
        "account": {"username": principal.username, "scope_codes": list(principal.scope_codes)},
        "pages": [{"label": item.label, "href": item.href} for item in shell.nav],
    }
    return page_response(plain_page("我的账户", shell, body=ACCOUNT_BODY, config=config,
                                    scripts=[f"{STATIC_PREFIX}/account.js"]))


@router.get("/", include_in_schema=False, dependencies=[Depends(public)])
def start_page(request: Request, session: SessionDep) -> RedirectResponse:
    """The first page of the caller's menu (the command center for it, the phone page for grid staff…)."""
    principal = resolve_principal(request, session)
    items = nav_for(principal)
    if principal is None or not items:
        return RedirectResponse("/login?next=/", status_code=303)
    return RedirectResponse(items[0].href, status_code=303)
