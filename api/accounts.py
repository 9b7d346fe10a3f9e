"""Logging in and out, the login page, and the admin API for accounts and tokens."""

from __future__ import annotations

import html
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from api import schemas
from api.deps import NoNul, SessionDep, SettingsDep, request_context
from api.security import context_of, public, requires, resolve_principal
from gis.auth import accounts, operations
from gis.auth.principal import Principal
from gis.auth.roles import ROLE_NAMES_ZH, Permission, Role
from gis.context import Context
from gis.settings import Settings

router = APIRouter(tags=["accounts"])

USERNAME = r"^[A-Za-z0-9_.@-]{2,64}$"
GRID_CODE = r"^\d{15}$"


def _safe_next(next_path: str | None) -> str:
    # Only paths on this site: never '//host' or 'http://…' (an open redirect).
    if not next_path or not next_path.startswith("/") or next_path.startswith("//") or "\\" in next_path:
        return "/maps/grids"
    return next_path


def _login_policy(settings: Settings) -> accounts.LoginPolicy:
    return accounts.LoginPolicy(
        max_failures=settings.login_max_failures,
        max_failures_per_ip=settings.login_max_failures_per_ip,
        window_minutes=settings.login_window_minutes,
        account_backoff_after=settings.login_account_backoff_after,
        account_backoff_base_s=settings.login_account_backoff_base_s,
        account_backoff_max_s=settings.login_account_backoff_max_s,
    )


def _login(request: Request, session: Session, settings: Settings, username: str,
           password: str) -> operations.LoginOutcome:
    return operations.login(session, request_context(request, None), username, password,
                            _login_policy(settings), settings.session_hours)


def _throttled(retry_after_s: int) -> Response:
    from api.problems import problem

    resp = problem(429, "Too many failed logins", kind="throttled",
                   detail=f"too many failed logins; try again in {retry_after_s} s")
    resp.headers["Retry-After"] = str(retry_after_s)
    return resp


def _set_cookie(response: Response, settings: Settings, value: str) -> None:
    response.set_cookie(
        settings.session_cookie_name, value, max_age=int(settings.session_hours * 3600),
        httponly=True, secure=settings.session_cookie_secure, samesite="strict", path="/",
    )


LOGIN_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>登录 — 网格</title>
<link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,"Noto Sans CJK SC",sans-serif;background:#f3f5f7;display:flex;
justify-content:center;align-items:center;min-height:100vh;margin:0}}
form{{background:#fff;padding:2rem 2.5rem;border-radius:8px;box-shadow:0 2px 12px #0002;min-width:18rem}}
h1{{font-size:1.3rem;margin:0 0 1rem}} label{{display:block;margin:.7rem 0 .2rem}}
input{{width:100%;padding:.45rem;box-sizing:border-box}} button{{margin-top:1.2rem;width:100%;padding:.5rem}}
.error{{color:#b00020;margin:.5rem 0}}
</style></head><body>
<form method="post" action="/login">
<h1>网格 · 登录</h1>
{error}
<input type="hidden" name="next" value="{next}">
<label for="username">用户名</label><input id="username" name="username" autocomplete="username" required>
<label for="password">密码</label><input id="password" name="password" type="password" \
autocomplete="current-password" required>
<button type="submit">登录</button>
</form></body></html>"""


@router.get("/login", response_class=HTMLResponse, include_in_schema=False, dependencies=[Depends(public)])
def login_page(next: str | None = None) -> HTMLResponse:
    return HTMLResponse(LOGIN_PAGE.format(error="", next=html.escape(_safe_next(next))))


@router.post("/login", include_in_schema=False, dependencies=[Depends(public)])
def login_form(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=64), NoNul],
    password: Annotated[str, Form(max_length=256)],
    next: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    outcome = _login(request, session, settings, username, password)
    if outcome.retry_after_s is not None:
        return _throttled(outcome.retry_after_s)
    if outcome.cookie is None:
        page = LOGIN_PAGE.format(error='<p class="error">用户名或密码错误</p>', next=html.escape(_safe_next(next)))
        return HTMLResponse(page, status_code=401)
    response = RedirectResponse(_safe_next(next), status_code=303)
    _set_cookie(response, settings, outcome.cookie)
    return response


class LoginBody(BaseModel):
    username: Annotated[str, NoNul] = Field(max_length=64)
    password: str = Field(max_length=256)


@router.post("/auth/login", summary="Log in; sets the session cookie", dependencies=[Depends(public)],
             response_model=schemas.LoginAnswer, **schemas.DATA, responses=schemas.problems(401, 422, 429, 503))
def login_json(request: Request, session: SessionDep, settings: SettingsDep, body: LoginBody) -> Response:
    outcome = _login(request, session, settings, body.username, body.password)
    if outcome.retry_after_s is not None:
        return _throttled(outcome.retry_after_s)
    if outcome.user is None or outcome.cookie is None:
        from api.problems import problem

        return problem(401, "Wrong username or password", kind="login-failed")
    response = JSONResponse({"user": outcome.user.as_dict()})
    _set_cookie(response, settings, outcome.cookie)
    return response


@router.post("/auth/logout", summary="End this browser session at once", dependencies=[Depends(public)],
             response_model=schemas.LogoutAnswer, **schemas.DATA, responses=schemas.problems(503))
def logout(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    principal = resolve_principal(request, session)
    logged_out = operations.logout(session, request_context(request, principal))
    response = JSONResponse({"logged_out": logged_out})
    response.delete_cookie(settings.session_cookie_name, path="/")
    return response


@router.get("/auth/me", summary="Who am I: user, role, scope", response_model=schemas.Me, **schemas.DATA,
            responses=schemas.problems(*schemas.SIGNED_IN))
def me(principal: Annotated[Principal, requires(Permission.VIEW_GRIDS)]) -> Any:
    return {
        "username": principal.username,
        "role": str(principal.role),
        "role_zh": ROLE_NAMES_ZH[principal.role],
        "scope_codes": list(principal.scope_codes),
        "via": principal.via,
        "permissions": sorted(p.value for p in Permission if principal.can(p)),
    }


# --- admin: accounts and tokens -------------------------------------------------------------


class UserIn(BaseModel):
    username: str = Field(pattern=USERNAME)
    password: str = Field(min_length=1, max_length=256)
    role: Role
    scope_codes: list[Annotated[str, Field(pattern=GRID_CODE)]] = Field(default_factory=list, max_length=500)
    display_name: Annotated[str | None, NoNul] = Field(default=None, max_length=100)


class UserPatch(BaseModel):
    role: Role | None = None
    scope_codes: list[Annotated[str, Field(pattern=GRID_CODE)]] | None = Field(default=None, max_length=500)
    active: bool | None = None
    password: str | None = Field(default=None, min_length=1, max_length=256)
    display_name: Annotated[str | None, NoNul] = Field(default=None, max_length=100)


class TokenIn(BaseModel):
    name: Annotated[str, NoNul] = Field(min_length=1, max_length=100)
    role: Role | None = None
    scope_codes: list[Annotated[str, Field(pattern=GRID_CODE)]] | None = Field(default=None, max_length=500)
    expires_days: float | None = Field(default=None, gt=0, le=3650)


UserId = Annotated[int, PathParam(ge=1, le=2**62)]


@router.get("/admin/users", summary="All accounts", response_model=list[schemas.User], **schemas.DATA,
            responses=schemas.problems(*schemas.SIGNED_IN))
def users(session: SessionDep, _: Annotated[Principal, requires(Permission.MANAGE_USERS)]) -> Any:
    return [u.as_dict() for u in accounts.list_users(session)]


@router.post("/admin/users", status_code=201, summary="Create an account", response_model=schemas.User,
             **schemas.DATA, responses=schemas.problems(*schemas.READ))
def create_user(session: SessionDep, ctx: Annotated[Context, context_of(Permission.MANAGE_USERS)],
                body: UserIn) -> Any:
    user = operations.create_user(session, ctx, body.username, body.password, body.role,
                                  scope_codes=body.scope_codes, display_name=body.display_name)
    return user.as_dict()


@router.patch("/admin/users/{user_id}", summary="Change role, scope, password or deactivate",
              response_model=schemas.User, **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def patch_user(session: SessionDep, ctx: Annotated[Context, context_of(Permission.MANAGE_USERS)],
               user_id: UserId, body: UserPatch) -> Any:
    user = operations.update_user(session, ctx, user_id, body.model_dump(exclude_unset=True))
    return user.as_dict()


@router.get("/admin/users/{user_id}/tokens", summary="A user's API tokens (never the secrets)",
            response_model=list[schemas.Token], **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def user_tokens(session: SessionDep, _: Annotated[Principal, requires(Permission.MANAGE_USERS)],
                user_id: UserId) -> Any:
    accounts.get_user(session, user_id)
    return [t.as_dict() for t in accounts.list_tokens(session, user_id)]


@router.post("/admin/users/{user_id}/tokens", status_code=201, summary="Issue an API token (shown once)",
             response_model=schemas.NewToken, **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def issue_token(session: SessionDep, ctx: Annotated[Context, context_of(Permission.MANAGE_USERS)],
                user_id: UserId, body: TokenIn) -> Any:
    secret, token = operations.issue_token(session, ctx, user_id, body.name, role=body.role,
                                           scope_codes=body.scope_codes, expires_days=body.expires_days)
    return {"token": secret, **token.as_dict()}


@router.delete("/admin/tokens/{token_id}", summary="Revoke an API token at once", response_model=schemas.Token,
               **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def revoke(session: SessionDep, ctx: Annotated[Context, context_of(Permission.MANAGE_USERS)],
           token_id: Annotated[int, PathParam(ge=1, le=2**62)]) -> Any:
    return operations.revoke_token(session, ctx, token_id).as_dict()


