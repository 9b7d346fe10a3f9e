"""Chinese text of the finder's outputs (CSV headers, the 明白卡 checklist, risk classes), in one place."""

from __future__ import annotations

from gis.spreadsheet import PERSONAL, Table

# CSV columns of GET /flood/households?format=csv, in order (UTF-8 with BOM for Excel).
CSV_HEADERS = {
    "priority_rank": "优先序号", "priority_score": "优先分值", "household_no": "户号", "head_name": "户主",
    "phone": "电话", "address": "地址", "residents": "人数", "elderly": "65岁以上", "children": "儿童",
    "disabled": "残疾", "pregnant": "孕妇", "bedridden": "卧床", "living_alone_elderly": "独居老人",
    "floors": "楼层数", "upper_floor_dry": "楼上未淹", "depth_m": "房屋处水深(米)", "area_name": "片区",
    "village_name": "行政村", "grid_name": "网格", "grid_code": "网格编码", "natural_village": "自然村",
    "member_name": "责任网格员", "member_phone": "网格员电话", "leader_name": "网格长", "leader_phone": "网格长电话",
    "shelter_name": "安置点", "shelter_distance_m": "距离(米)", "distance_kind": "距离计算",
    "shelter_remaining": "安置点剩余容量(人)", "lon": "经度", "lat": "纬度", "personal_fields": "个人信息",
}

DISTANCE_KIND = {"road": "道路", "straight": "直线"}
# The export of the API and of `wangge flood households --csv` alike.
EXPORT = Table(CSV_HEADERS, labels={"distance_kind": DISTANCE_KIND, "personal_fields": PERSONAL})

MEMBER_FLAGS = {"elderly": "老人", "child": "儿童", "disabled": "残疾", "pregnant": "孕妇", "bedridden": "卧床"}

CHECKLIST_TITLE = "防汛避险转移明白卡"
CHECKLIST_SUBTITLE = "网格员入户核查清单（三个最先：最危险的地方、独居老人和五保户、老弱病残孕）"
CHECKLIST_EXTENT = "淹没范围"
CHECKLIST_BUFFER = "外扩缓冲"
CHECKLIST_GENERATED = "生成时间"
CHECKLIST_MEMBER = "责任网格员"
CHECKLIST_LEADER = "网格长"
CHECKLIST_GRID = "网格"
CHECKLIST_COUNT = "共 {households} 户 {residents} 人"
CHECKLIST_COLUMNS = ("序号", "户主 / 户号 / 地址", "家庭成员（年龄、情况）", "水深·楼层", "转移路线 / 安置点", "核查")
CHECKLIST_DEPTH = "水深 {depth} 米"
CHECKLIST_DEPTH_UNKNOWN = "水深未知"
CHECKLIST_FLOORS = "{floors} 层"
CHECKLIST_UPPER_DRY = "楼上未淹"
CHECKLIST_ALONE = "独居老人"
CHECKLIST_ROUTE = "{kind}约 {distance} 米 → {shelter}"
CHECKLIST_NO_SHELTER = "暂无可安置容量，请上报指挥中心"
CHECKLIST_CHECKBOXES = "□已通知 □已转移 □拒绝转移"
CHECKLIST_UNASSIGNED = "（该网格暂无网格员）"
CHECKLIST_NONE = "该范围内没有住户"
CHECKLIST_MASKED = "个人信息已按权限脱敏"
CHECKLIST_SIGN = "网格员签字：__________　　日期：__________"
CHECKLIST_PAGE = "第 {page} 页"
AGE = "{age}岁"

RISK_CLASSES = {0.5: "高", 1.0: "较高", 2.0: "中", 3.0: "低", None: "无"}

# Modelled stages (gis/flood/extents.py): what a reader is told when a stage is not available.
MODE_NAMES = {"fluvial": "河道水位", "pluvial": "洼地积水"}
STAGE_RANGE = ("水位须为 {step:g} 米的整数倍，介于 {step:g} 与 {max:g} 米之间"
               "（设置 WANGGE_FLOOD_STAGE_STEP_M、WANGGE_FLOOD_MAX_STAGE_M），收到 {value!r}；"
               "未计算的水位由管理员或指挥中心 POST /flood/scenarios 计算")
STAGE_NOT_COMPUTED = ("{field}：{mode_name} {stage:g} 米（mode={mode}）的淹没范围尚未计算，"
                      "查询（GET）不会计算新水位。请由管理员或指挥中心 POST /flood/scenarios "
                      "{{\"stage_m\": {stage:g}, \"mode\": \"{mode}\"}} 计算，"
                      "或运行 wangge flood scenario --stage {stage:g}；"
                      "已计算的水位（米）：{computed}")
