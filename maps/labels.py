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


# --- Household map (/maps/households) ---

HOUSEHOLD_PAGE_TITLE = "住户地图"
HOUSEHOLD_SCOPE_EMERGENCY = "应急范围内"
HOUSEHOLD_SYNTHETIC_HINT = "本页住户、姓名、电话与地址均为程序生成的示例，不代表真实人员"
HOUSEHOLD_LAYER = "住户"
GRID_OUTLINE_LAYER = "网格边界"

# Popup rows, in order: record key -> label. Values are shown exactly as the caller gives them.
HOUSEHOLD_POPUP_FIELDS: tuple[tuple[str, str], ...] = (
    ("household_no", "户号"),
    ("head_name", "户主"),
    ("phone", "电话"),
    ("address", "地址"),
    ("residents", "人数"),
    ("elderly", "65岁以上"),
    ("children", "儿童"),
    ("disabled", "残疾"),
    ("pregnant", "孕妇"),
    ("bedridden", "卧床"),
    ("floors", "楼层"),
    ("grid", "网格"),
)

# Marker classes, most urgent first: who needs carrying, who needs help, everyone else.
HOUSEHOLD_CLASSES: dict[str, str] = {
    "carry": "有卧床或残疾人员",
    "assist": "有65岁以上老人或孕妇",
    "other": "其他住户",
}

PERSONAL_MASKED_NOTE = "个人信息已脱敏"
PERSONAL_MASKED_HINT = "姓名、电话和门牌号按您的权限隐藏"
HOUSEHOLD_COUNT = "显示 {shown} 户"
HOUSEHOLDS_TRUNCATED = "结果过多：仅显示前 {shown} 户，共 {total} 户，请选择更小的网格"
HOUSEHOLDS_NONE = "没有可显示的住户"


# --- Incident map (/maps/incidents) ---

INCIDENT_PAGE_TITLE = "网格事项地图"
INCIDENT_SYNTHETIC_HINT = "本页事项、描述与报告人均为程序生成的示例，不代表真实情况"
INCIDENT_LAYER = "网格事项"

# Popup rows, in order: record key -> label. The id travels as the feature id.
INCIDENT_POPUP_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "编号"),
    ("category", "类别"),
    ("state", "环节"),
    ("occurred_at", "发生时间"),
    ("deadline", "本环节期限"),
    ("urgency", "超期"),
    ("grid", "网格"),
    ("description", "描述"),
    ("reporter_name", "报告人"),
    ("reporter_phone", "报告人电话"),
)
INCIDENT_CATEGORY_JOIN = " · "  # 矛盾纠纷 · 邻里纠纷
INCIDENT_OVERDUE = "已超期，已升级至{place}"
INCIDENT_ON_TIME = "未超期"
INCIDENT_OVERDUE_LEGEND = "已超期（红圈）"
INCIDENT_OTHER_CATEGORY = "其他"

INCIDENT_COUNT = "共 {total} 件"
INCIDENTS_NONE = "没有符合条件的事项"
INCIDENTS_TRUNCATED = "结果过多：地图仅显示前 {shown} 件，请选择更小的网格或增加筛选条件"
INCIDENT_REPORTER_MASKED_HINT = "报告人姓名和电话按您的权限隐藏"

# The filters a page was asked with, one phrase each, joined by INCIDENT_FILTER_JOIN.
INCIDENT_FILTER_PREFIX = "筛选："
INCIDENT_FILTER_JOIN = "；"
INCIDENT_FILTER_CATEGORY = "类别 {value}"
INCIDENT_FILTER_STATE = "环节 {value}"
INCIDENT_FILTER_SINCE = "发生于 {value} 起"
INCIDENT_FILTER_UNTIL = "发生于 {value} 前"
INCIDENT_FILTER_OVERDUE = {True: "仅超期", False: "仅未超期"}
