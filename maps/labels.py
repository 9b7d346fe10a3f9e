"""User-facing Chinese text of the map pages, kept in one place so wording stays consistent."""

from __future__ import annotations

from typing import Any

from gis.spreadsheet import Table

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


# --- Hot-spot analysis (/hotspots, /maps/hotspots, `wangge hotspots`) ---

HOTSPOT_PAGE_TITLE = "矛盾纠纷热点分析"
HOTSPOT_PAGE_TITLE_ALL = "网格事项热点分析"
HOTSPOT_SYNTHETIC_HINT = "本页事项均为程序生成的示例，热点结果不代表真实情况"
HOTSPOT_LAYER = "热点分析单元"
HOTSPOT_DENSITY_LAYER = "核密度（仅供参考）"
HOTSPOT_DENSITY_NOTE = "核密度仅作示意，显著性以热点分级为准"
# Confidence bins, hot to cold (Gi* with FDR correction).
HOTSPOT_BINS: dict[int, str] = {
    3: "热点（99% 置信）",
    2: "热点（95% 置信）",
    1: "热点（90% 置信）",
    0: "不显著",
    -1: "冷点（90% 置信）",
    -2: "冷点（95% 置信）",
    -3: "冷点（99% 置信）",
}
HOTSPOT_OUTLIERS: dict[str, str] = {"high_low": "高值异常（周边偏低）", "low_high": "低值异常（周边偏高）"}
HOTSPOT_OUTLIER_LEGEND = "局部异常值（粗框）"
HOTSPOT_ISLAND = "无相邻单元，未计算"
HOTSPOT_EMERGING: dict[str, str] = {
    "new_hot": "新增热点", "consecutive_hot": "连续热点", "intensifying_hot": "加剧热点",
    "persistent_hot": "持续热点", "diminishing_hot": "减弱热点", "sporadic_hot": "零星热点",
    "oscillating_hot": "振荡热点", "historical_hot": "历史热点",
    "new_cold": "新增冷点", "consecutive_cold": "连续冷点", "intensifying_cold": "加剧冷点",
    "persistent_cold": "持续冷点", "diminishing_cold": "减弱冷点", "sporadic_cold": "零星冷点",
    "oscillating_cold": "振荡冷点", "historical_cold": "历史冷点",
    "no_pattern": "无明显模式",
}
HOTSPOT_VALUE_COUNT = "事项数"
HOTSPOT_VALUE_RATE = "每千人事项数"
HOTSPOT_UNIT_HEX = "{size} 米六边形"
HOTSPOT_UNIT_LEVEL = {2: "管理片区", 3: "行政村", 4: "村民小组网格"}
# Popup rows: record key -> label.
HOTSPOT_POPUP_FIELDS: tuple[tuple[str, str], ...] = (
    ("unit", "分析单元"),
    ("incidents", "事项数"),
    ("value", "分析值"),
    ("expected", "邻域期望数"),
    ("gi_z", "Gi* z 值"),
    ("q_value", "校正后 p 值"),
    ("bin", "热点分级"),
    ("outlier", "局部异常"),
    ("emerging", "时空趋势"),
)
HOTSPOT_POPUP_INCIDENTS = "该单元的事项（{count} 件）"
HOTSPOT_POPUP_MORE = "另有 {count} 件未列出"
HOTSPOT_SUMMARY = "{units} 个单元，{incidents} 件事项；热点 {hot} 个，冷点 {cold} 个"
HOTSPOT_METHOD = "Getis-Ord Gi*，Benjamini–Hochberg 校正（α={alpha}）"
HOTSPOT_REFUSED = "无法进行热点分析"
HOTSPOT_FORM_SINCE = "起始月份"
HOTSPOT_FORM_UNTIL = "截止月份"
HOTSPOT_FORM_UNIT = "分析单元"
HOTSPOT_FORM_CATEGORY = "事项类别"
HOTSPOT_FORM_ALL_CATEGORIES = "全部类别"
HOTSPOT_FORM_SUBMIT = "重新分析"
# CSV columns: field -> header.
HOTSPOT_CSV_HEADERS: dict[str, str] = {
    "unit_id": "单元编号", "code": "网格编码", "name": "名称", "incidents": "事项数", "residents": "常住人口",
    "value": "分析值", "expected": "邻域期望数", "gi_z": "Gi*z值", "p_value": "p值", "q_value": "FDR校正p值",
    "significant": "显著", "bin": "热点分级", "bin_text": "分级说明", "p_sim": "置换检验p值",
    "moran_i": "局部Moran's I", "quadrant": "象限", "outlier": "局部异常", "island": "无相邻单元",
    "emerging": "时空趋势", "trend_z": "趋势z值", "trend_p": "趋势p值",
}
# Local Moran's I quadrants (the unit's value, then its neighbours').
HOTSPOT_QUADRANTS: dict[str, str] = {"HH": "高-高", "LL": "低-低", "HL": "高-低", "LH": "低-高"}
# The export of GET /hotspots?format=csv|xlsx and `wangge hotspots --out x.csv|x.xlsx` alike;
# rows come from `hotspot_export_rows`.
HOTSPOT_EXPORT = Table(HOTSPOT_CSV_HEADERS, labels={
    "bin_text": HOTSPOT_BINS, "outlier": HOTSPOT_OUTLIERS, "emerging": HOTSPOT_EMERGING,
    "quadrant": HOTSPOT_QUADRANTS})


def hotspot_export_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The analysis' unit records with the bin's wording beside its number."""
    return [{**r, "bin_text": r["bin"]} for r in records]

# Warnings of an analysis that went ahead (gis.hotspots.service notices), by type.
HOTSPOT_WARNINGS: dict[str, str] = {
    "sparse": "{share}% 的单元没有事项，统计结果较弱；可选用更大的单元或更长的时间段",
    "islands": "{units} 个单元没有相邻单元，未计算统计量",
    "no_residents": "{units} 个单元无常住人口，未参与千人比率分析（其中事项 {incidents} 件）",
    "few_months": "时间段仅 {months} 个月，时空趋势分析至少需要 {minimum} 个月",
}
HOTSPOT_COLOUR_BY = "着色方式"
HOTSPOT_COLOUR_BINS = "热点分级"
HOTSPOT_COLOUR_EMERGING = "时空趋势"


# --- Hot-spot popups in plain words (the statistics one click away) ---

# What a unit is, in the words a township cadre uses: its status -> the popup's headline.
HOTSPOT_STATUS: dict[str, str] = {
    "hot": "{what}热点",
    "hot_area": "位于热点区域",
    "cold": "明显偏少的区域",
    "neutral": "无明显聚集",
    "island": "无法与周边比较",
}
HOTSPOT_LEGEND_HOT_AREA = "位于热点区域（本单元无事项）"
# How sure, by confidence bin (1-3), in words.
HOTSPOT_SURE: dict[int, str] = {
    3: "很有把握（99% 置信），几乎不可能是偶然",
    2: "比较有把握（95% 置信），不太可能是偶然",
    1: "有一定把握（90% 置信），仍可能有偶然因素",
}
HOTSPOT_STORY_HOT = "{where}{period}{what}明显偏多：本单元 {count} 件，连同周边一起比全镇一般水平高。"
HOTSPOT_STORY_HOT_AREA = ("{where}{period}本身没有{what}，但周边单元明显偏多，它位于热点区域之中"
                          "（不是热点本身）。")
HOTSPOT_STORY_COLD = "{where}{period}{what}明显偏少：本单元 {count} 件，连同周边一起比全镇一般水平低。"
HOTSPOT_STORY_NEUTRAL = "{where}{period}{what} {count} 件，与全镇一般水平相比没有明显偏多或偏少。"
HOTSPOT_STORY_ISLAND = "{where}{period}{what} {count} 件；它没有相邻单元，无法判断是否聚集。"
HOTSPOT_STORY_SURE = "判断把握：{sure}。"
HOTSPOT_STORY_RATE = "（按每千名常住人口计）"
HOTSPOT_STORY_OUTLIER: dict[str, str] = {
    "high_low": "另外：本单元比相邻单元明显多，值得单独关注。",
    "low_high": "另外：本单元比相邻单元明显少，而周边偏多。",
}
HOTSPOT_STORY_TREND = "近几个月的趋势：{trend}。"
HOTSPOT_PERIOD_BOTH = "在 {since} 至 {until} 期间"
HOTSPOT_PERIOD_SINCE = "自 {since} 以来"
HOTSPOT_PERIOD_UNTIL = "在 {until} 及以前"
HOTSPOT_PERIOD_ALL = "在全部记录中"
HOTSPOT_WHAT_ALL = "网格事项"
HOTSPOT_DETAILS = "统计详情"
HOTSPOT_SHOW_INCIDENTS = "查看该单元的事项"
HOTSPOT_SUMMARY_HOT_AREA = "另有 {count} 个单元本身没有事项、位于热点区域"
HOTSPOT_LOADING = "正在分析…"
# Guard rails, by problem type: why there is no map, and what to do.
HOTSPOT_REFUSALS: dict[str, str] = {
    "too_few_units": "分析范围内只有 {units} 个单元，热点统计至少需要 {minimum} 个单元才有意义；"
                     "请选择更细的单元、更小的六边形或更大的范围。",
    "too_few_incidents": "所选范围和时间段内只有 {incidents} 件符合条件的事项，至少需要 {minimum} 件；"
                         "请放宽时间段、类别或范围。",
    "no_variation": "各单元的数值都相同，无从比较，没有热点可画。",
    "no_grids": "尚未导入网格：请先导入本镇的网格边界。",
}
# The same without the numbers (a problem that does not carry them).
HOTSPOT_REFUSALS_PLAIN: dict[str, str] = {
    "too_few_units": "分析单元太少，热点统计没有意义；请选择更细的单元、更小的六边形或更大的范围。",
    "too_few_incidents": "符合条件的事项太少；请放宽时间段、类别或范围。",
}
HOTSPOT_REFUSAL_OTHER = "无法完成分析：{reason}"
HOTSPOT_THIS_UNIT = "本单元"


# --- Map pages with data by URL (grids, incidents, households, hot spots) ---

LOADING = "加载中…"
ZOOM_IN_FOR_GRIDS = "放大地图可显示村民小组网格"
INCIDENTS_IN_VIEW = "当前范围共 {total} 件"
INCIDENTS_MANY = "很多"
INCIDENTS_IN_VIEW_CUT = "仅显示最新的 {shown} 件：请放大地图或增加筛选条件"
INCIDENT_FILTER_TITLE = "筛选事项"
INCIDENT_FILTER_OPEN = "未结事项"
INCIDENT_FILTER_OPEN_OPTION = "未结事项（默认）"
INCIDENT_FILTER_ALL_OPTION = "全部（含已结案）"
INCIDENT_FILTER_ALL_STATES = "全部环节（含已结案）"
INCIDENT_FILTER_ALL_CATEGORIES = "全部类别"
INCIDENT_FILTER_LABELS = {"state": "环节", "category": "类别", "since": "发生日期从", "until": "发生日期至",
                          "overdue": "超期"}
INCIDENT_FILTER_OVERDUE_OPTIONS = {"": "不限", "true": "仅超期", "false": "仅未超期"}
INCIDENT_OPEN_DETAIL = "查看详情与办理"
ESCALATION_LEVEL_NAMES = {4: "村民小组网格", 3: "行政村", 2: "管理片区", 1: "镇"}
HOUSEHOLDS_IN_VIEW_CUT = "结果过多：仅显示前 {shown} 户，共 {total} 户，请放大地图或选择更小的网格"
HOTSPOT_FORM_TITLE = "分析条件"
HOTSPOT_FORM_COLOUR_TITLE = "着色方式"
