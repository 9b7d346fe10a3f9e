"""User-facing Chinese text of the map pages, kept in one place so wording stays consistent."""

from __future__ import annotations

LEVEL_LAYER_NAMES: dict[int, str] = {
    1: "一级网格·镇域",
    2: "二级网格·管理片区",
    3: "三级网格·行政村",
    4: "四级网格·村民小组",
}

PAGE_TITLE = "网格地图"
# The sample town is always presented under this neutral name so nobody mistakes it for real data.
SYNTHETIC_PAGE_TITLE = "网格地图 — 样例镇（合成数据）"
SYNTHETIC_BADGE = "合成示例数据"
SYNTHETIC_BADGE_HINT = "本页边界、人员与户数均为程序生成的示例，不代表真实情况"

LEGEND_TITLE = "图例"
LEGEND_HILLSHADE = "地形晕渲（高程模型）"

HILLSHADE_LAYER = "地形晕渲"
TILE_LAYER = "在线底图"

POPUP_CODE = "网格编码"
POPUP_NAME = "名称"
POPUP_LEVEL = "层级"
POPUP_PARENT = "上级网格"
POPUP_STAFF = "网格人员"
POPUP_HOUSEHOLDS = "户数"
HOUSEHOLD_UNIT = "户"
NONE_RECORDED = "暂无"
UNKNOWN = "—"

# Roles arrive as API identifiers; any other value is shown as given (it may already be Chinese).
STAFF_ROLES: dict[str, str] = {
    "leader": "网格长",
    "grid_leader": "网格长",
    "member": "网格员",
    "grid_member": "网格员",
    "supervisor": "网格督导员",
    "grid_supervisor": "网格督导员",
    "party_household": "党员中心户",
    "party_member_household": "党员中心户",
    "volunteer": "志愿者",
    "secretary": "村党支部书记",
    "village_secretary": "村党支部书记",
}


def staff_role(role: str | None) -> str:
    """The Chinese name of a staff role identifier."""
    if not role:
        return UNKNOWN
    return STAFF_ROLES.get(str(role).strip().lower(), str(role))
