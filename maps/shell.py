"""The page shell around every page: top bar (title, synthetic-data badge, navigation by role, who is
logged in, logout), the error banner, the page's data as JSON, and the Chinese error page.

Pages never pass data through a template: the skeleton here is constant HTML with escaped
attributes, and everything a page shows about the town arrives as JSON (`config`, or fetched by URL)
and is put into the page by its script with text nodes."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gis.auth.principal import Principal
from gis.auth.roles import ROLE_NAMES_ZH, Permission
from gis.incidents.categories import CATEGORY_NAMES_ZH, DISPUTE_NAMES_ZH
from gis.incidents.loop import STATE_NAMES_ZH
from maps.labels import SYNTHETIC_BADGE, SYNTHETIC_BADGE_HINT

STATIC_PREFIX = "/static/wangge"
SHELL_SCRIPT = f"{STATIC_PREFIX}/shell.js"
SHELL_STYLE = f"{STATIC_PREFIX}/shell.css"
APP_NAME = "网格"
LOGIN_PATH = "/login"
LOGOUT_PATH = "/auth/logout"
# Paths whose refusals are answered as a Chinese page, not problem+json (api/problems.py).
PAGE_PREFIXES = ("/maps/", "/pages/", "/m/")
PAGE_PATHS = frozenset({"/m"})


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str
    permission: Permission


# The pages, in menu order, each shown to the roles holding its permission.
NAV: tuple[NavItem, ...] = (
    NavItem("指挥中心", "/maps/command", Permission.REVIEW_INCIDENTS),
    NavItem("事件地图", "/maps/incidents", Permission.VIEW_INCIDENTS),
    NavItem("审核队列", "/pages/review", Permission.REVIEW_INCIDENTS),
    NavItem("防汛应急", "/maps/flood", Permission.VIEW_EMERGENCIES),
    NavItem("网格地图", "/maps/grids", Permission.VIEW_GRIDS),
    NavItem("住户地图", "/maps/households", Permission.VIEW_HOUSEHOLDS),
    NavItem("网格规划", "/maps/planner", Permission.PLAN_GRIDS),
    NavItem("矛盾热点", "/maps/hotspots", Permission.VIEW_INCIDENTS),
    NavItem("我的网格（手机）", "/m/", Permission.REPORT_INCIDENTS),
    NavItem("上报事件（手机）", "/m/report", Permission.REPORT_INCIDENTS),
    NavItem("数据质量", "/pages/quality", Permission.VIEW_HOUSEHOLD_COUNTS),
    NavItem("我的账户", "/pages/account", Permission.VIEW_GRIDS),
    NavItem("接口文档", "/docs", Permission.VIEW_GRIDS),
)


@dataclass(frozen=True)
class Viewer:
    """Who is looking at a page, as the top bar shows them."""

    username: str
    role: str
    role_zh: str
    permissions: frozenset[str]

    @classmethod
    def of(cls, principal: Principal) -> Viewer:
        return cls(
            username=principal.username,
            role=str(principal.role),
            role_zh=ROLE_NAMES_ZH[principal.role],
            permissions=frozenset(p.value for p in Permission if principal.can(p)),
        )


@dataclass(frozen=True)
class Shell:
    """Everything the top bar of one page needs."""

    viewer: Viewer | None
    synthetic: bool
    current: str
    nav: tuple[NavItem, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        viewer = self.viewer
        return {
            "viewer": None if viewer is None else {
                "username": viewer.username, "role": viewer.role, "role_zh": viewer.role_zh,
                "permissions": sorted(viewer.permissions),
            },
            "synthetic": self.synthetic,
            "current": self.current,
        }


def nav_for(principal: Principal | None) -> tuple[NavItem, ...]:
    if principal is None:
        return ()
    return tuple(item for item in NAV if principal.can(item.permission))


def make_shell(principal: Principal | None, *, synthetic: bool, current: str) -> Shell:
    return Shell(
        viewer=None if principal is None else Viewer.of(principal),
        synthetic=synthetic,
        current=current,
        nav=nav_for(principal),
    )


def page_shell(session: Any, principal: Principal | None, *, current: str) -> Shell:
    """The shell of a page at path `current` for `principal` (None: not logged in)."""
    from gis.dataset_info import dataset_info

    return make_shell(principal, synthetic=dataset_info(session, "sample_town") is not None, current=current)


# --- Chinese messages: one source for the error pages (Python) and the pages' scripts (config) -----

STATUS_MESSAGES: dict[int, str] = {
    400: "请求有误，请检查后重试。",
    401: "登录已失效，请重新登录。",
    403: "您的角色无权进行此操作或查看此内容。",
    404: "未找到所请求的内容，可能已被删除或编号有误。",
    405: "不支持此操作。",
    409: "数据已被他人修改，请刷新后重试。",
    413: "文件或内容过大。",
    415: "文件格式不受支持。",
    422: "输入有误，请检查以下内容。",
    429: "操作过于频繁，请稍后再试。",
    500: "服务器出错，已记录，请稍后重试。",
    503: "服务器繁忙，请稍后重试。",
}
GENERIC_MESSAGE = "请求未能完成，请稍后重试。"
NETWORK_MESSAGE = "无法连接服务器，请检查网络后重试。"

# Field names as the forms and query strings spell them.
FIELD_NAMES: dict[str, str] = {
    "category": "类别", "dispute_kind": "纠纷类型", "description": "事件描述", "place": "地点名称",
    "lon": "经度", "lat": "纬度", "crs": "坐标系", "occurred_at": "发生时间", "grid_code": "网格",
    "group_code": "网格", "bbox": "地图范围", "zoom": "缩放级别", "q": "搜索词", "note": "备注",
    "reason": "查看事由", "state": "状态", "to_state": "目标状态", "since": "起始时间", "until": "截止时间",
    "overdue": "是否超期", "flagged": "是否待核", "limit": "每页条数", "offset": "翻页位置",
    "after": "续读位置", "title": "标题", "extent_id": "淹没范围", "scenario": "情景", "stage": "水位",
    "stage_m": "水位", "geometry": "范围图形", "file": "文件", "satisfied": "是否满意",
    "reporter_name": "上报人", "reporter_phone": "上报人电话", "external_id": "外部编号", "format": "格式",
    "sort": "排序", "z": "缩放级别", "x": "瓦片列号", "y": "瓦片行号", "username": "用户名",
    "password": "密码", "action": "操作", "code": "编码", "name": "名称", "kind": "类型",
}
# pydantic error types and Wangge's own problem kinds, in words.
REASON_TEXTS: dict[str, str] = {
    "missing": "必须填写", "string_too_long": "太长", "string_too_short": "太短",
    "string_pattern_mismatch": "格式不正确", "enum": "不是可选的值", "literal_error": "不是可选的值",
    "int_parsing": "应为整数", "int_type": "应为整数", "float_parsing": "应为数字", "float_type": "应为数字",
    "bool_parsing": "应为“是”或“否”", "datetime_parsing": "时间格式不正确",
    "datetime_from_date_parsing": "时间格式不正确", "timezone_aware": "时间须带时区",
    "greater_than": "太小", "greater_than_equal": "太小", "less_than": "太大", "less_than_equal": "太大",
    "too_long": "项数太多", "too_short": "项数太少", "json_invalid": "不是有效的 JSON",
    "value_error": "取值无效", "unknown": "不认识的值", "invalid": "取值无效", "outside": "在辖区之外",
    "forbidden": "无权使用", "conflict": "与现有数据冲突", "not_found": "不存在", "nul": "含有非法字符",
}
REASON_FALLBACK = "取值无效"


def _has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def field_name(loc: Sequence[Any]) -> str | None:
    """The Chinese name of the field a problem location points at (the last named part)."""
    for part in reversed(list(loc)):
        if isinstance(part, str) and part not in ("body", "query", "path", "header", "form"):
            return FIELD_NAMES.get(part, part)
    return None


def reason_text(kind: str | None, message: str | None) -> str:
    if message and _has_chinese(message):
        return message
    return REASON_TEXTS.get(kind or "", REASON_FALLBACK)


def problem_lines(problem: Mapping[str, Any]) -> list[str]:
    """Chinese lines for a problem+json body: one per field error, or its detail when Chinese."""
    lines = []
    for err in problem.get("errors") or []:
        if not isinstance(err, Mapping):
            continue
        name = field_name(err.get("loc") or ())
        reason = reason_text(err.get("type") or err.get("kind"), err.get("msg") or err.get("message"))
        lines.append(f"{name}：{reason}" if name else reason)
    detail = problem.get("detail")
    if not lines and isinstance(detail, str) and _has_chinese(detail):
        lines.append(detail)
    return lines


def messages_config() -> dict[str, Any]:
    """What shell.js needs to say errors in Chinese (the same tables as the error pages)."""
    return {
        "status": {str(k): v for k, v in STATUS_MESSAGES.items()},
        "generic": GENERIC_MESSAGE,
        "network": NETWORK_MESSAGE,
        "fields": FIELD_NAMES,
        "reasons": REASON_TEXTS,
        "reason_fallback": REASON_FALLBACK,
    }


def names_config() -> dict[str, dict[str, str]]:
    """Chinese names of the codes pages show (one source: the Python dicts)."""
    return {
        "category": {str(k.value): v for k, v in CATEGORY_NAMES_ZH.items()},
        "dispute_kind": {str(k.value): v for k, v in DISPUTE_NAMES_ZH.items()},
        "state": {str(k): v for k, v in STATE_NAMES_ZH.items()},
        "role": {str(k.value): v for k, v in ROLE_NAMES_ZH.items()},
    }


# --- HTML ------------------------------------------------------------------------------------------

def json_for_script(value: Any) -> str:
    """JSON safe inside <script type="application/json">: no `<`, `>`, `&` or line separators can end
    the element or open a comment, whatever strings the data holds."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def page_config(shell: Shell, config: Mapping[str, Any] | None) -> dict[str, Any]:
    return {**(config or {}), "shell": shell.as_json(), "names": names_config(), "messages": messages_config()}


def config_script(shell: Shell, config: Mapping[str, Any] | None) -> str:
    return ('<script type="application/json" id="wangge-config">'
            + json_for_script(page_config(shell, config)) + "</script>")


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def top_bar(title: str, shell: Shell) -> str:
    """The bar at the top of every page; `title` and names are escaped text."""
    links = []
    for item in shell.nav:
        current = ' aria-current="page"' if item.href == shell.current else ""
        links.append(f'<a class="wangge-nav-link" href="{_e(item.href)}"{current}>{_e(item.label)}</a>')
    badge = (f'<span class="wangge-badge" id="wangge-synthetic-badge" title="{_e(SYNTHETIC_BADGE_HINT)}">'
             f"{_e(SYNTHETIC_BADGE)}</span>") if shell.synthetic else ""
    if shell.viewer is not None:
        who = (f'<span class="wangge-who" id="wangge-who">{_e(shell.viewer.username)}'
               f'<small>（{_e(shell.viewer.role_zh)}）</small></span>'
               '<button type="button" class="wangge-logout" id="wangge-logout">退出登录</button>')
    else:
        who = f'<a class="wangge-nav-link" href="{LOGIN_PATH}">登录</a>'
    menu = ""
    if links:
        menu = ('<button type="button" class="wangge-menu-button" id="wangge-menu-button" aria-expanded="false"'
                ' aria-controls="wangge-nav" aria-label="菜单">☰</button>'
                '<nav class="wangge-nav" id="wangge-nav" aria-label="页面">' + "".join(links) + "</nav>")
    return (
        '<header class="wangge-bar" id="wangge-bar">'
        f'<span class="wangge-app">{APP_NAME}</span>'
        f'<h1 class="wangge-title" id="wangge-title">{_e(title)}</h1>{badge}'
        f'<span class="wangge-spacer"></span>{menu}<span class="wangge-account">{who}</span>'
        "</header>"
        '<div class="wangge-banner" id="wangge-banner" role="alert" hidden></div>'
    )


def head_links(styles: Sequence[str] = (), scripts: Sequence[str] = ()) -> str:
    parts = [f'<link rel="stylesheet" href="{_e(SHELL_STYLE)}">']
    parts += [f'<link rel="stylesheet" href="{_e(s)}">' for s in styles]
    parts.append(f'<script src="{_e(SHELL_SCRIPT)}" defer></script>')
    parts += [f'<script src="{_e(s)}" defer></script>' for s in scripts]
    return "".join(parts)


def plain_page(
    title: str,
    shell: Shell,
    *,
    body: str,
    config: Mapping[str, Any] | None = None,
    scripts: Sequence[str] = (),
    styles: Sequence[str] = (),
) -> str:
    """A complete page without a map. `body` is the page's own constant HTML skeleton (never data)."""
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{_e(title)} — {APP_NAME}</title>{head_links(styles, scripts)}</head>"
        f'<body class="wangge-page">{top_bar(title, shell)}'
        f'<main id="wangge-main" class="wangge-main">{body}</main>'
        f"{config_script(shell, config)}</body></html>"
    )


def error_page(status: int, shell: Shell, *, lines: Sequence[str] = (), login_next: str | None = None) -> str:
    """A refusal as a Chinese page in the shell."""
    message = STATUS_MESSAGES.get(status, GENERIC_MESSAGE)
    items = "".join(f"<li>{_e(line)}</li>" for line in lines)
    listing = f'<ul class="wangge-error-lines">{items}</ul>' if items else ""
    login = ""
    if status == 401 or shell.viewer is None:
        target = LOGIN_PATH + ("?next=" + html.escape(login_next, quote=True) if login_next else "")
        login = f'<p><a href="{target}">重新登录</a></p>'
    body = (f'<section class="wangge-error-page" id="wangge-error-page" data-status="{status}">'
            f"<h2>{_e(message)}</h2>{listing}{login}"
            '<p><a href="javascript:history.back()">返回上一页</a></p>'
            + ('<p><a href="/" id="wangge-home-link">回到首页</a></p>' if shell.viewer is not None else "")
            + "</section>")
    return plain_page(f"无法打开（{status}）", shell, body=body)


def is_page_path(path: str) -> bool:
    return path in PAGE_PATHS or path.startswith(PAGE_PREFIXES)
