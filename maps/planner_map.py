"""The planner's map page (/maps/planner): current grids and a balanced suggestion overlaid.

The page carries no town data: the villages and the current grid outlines come from GET /grids, the
suggestions from GET /plans/suggestions (maps/static/planner.js draws both). The config holds where
the data is, how it is drawn, what the viewer may do and the page's Chinese.
"""

from __future__ import annotations

from typing import Any

from maps.points import GROUP_OUTLINE_ZOOM, outline_styles

TITLE = "网格规划"
SYNTHETIC_HINT = "本页网格、住户与事件均为程序生成的示例，不代表真实情况"
# Fill colours of the suggested grids, cycled (ColorBrewer Set3, readable over the outlines).
PALETTE = ("#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69", "#fccde5",
           "#d9d9d9", "#bc80bd", "#ccebc5", "#ffed6f")
WEIGHTS = (("households", "户数"), ("residents", "人口"), ("incidents", "近一年事件数"))
UNIT_KINDS = (("household", "住户（泰森多边形）"), ("natural_village", "自然村"), ("group", "现有小组网格"))

TEXT = {
    "panel_title": "均衡划分建议",
    "village": "行政村",
    "village_pick": "请选择行政村",
    "n": "网格数",
    "tolerance": "允许偏差（%）",
    "weight": "均衡指标",
    "units": "划分单元",
    "run": "生成建议",
    "running": "正在计算，请稍候…",
    "option": "方案{n}",
    "summary": "最大偏差 {balance}%，平均紧凑度 {pp}，切割边 {cut} 条，用时 {seconds} 秒",
    "within": "全部网格在允许偏差内",
    "outside": "有网格超出允许偏差",
    "replaces": "将替换现有 {n} 个小组网格",
    "columns": ["网格", "负荷", "户数", "人口", "事件", "偏差", "紧凑度"],
    "legend_title": "图例",
    "current": "现有网格边界",
    "suggested": "建议网格",
    "none": "请先选择行政村并生成建议",
    "no_village": "请选择行政村",
    "unit_tooltip": "单元：{households} 户，{residents} 人",
    "publish": "发布此方案",
    "impact": "预览影响",
    "impact_columns": ["原网格", "新网格", "户数", "人数", "未办结事件"],
    "impact_totals": ("将迁移 {households} 户、{residents} 人、{incidents} 件未办结事件；"
                      "{staff} 名人员随网格调整，{decisions} 个网格被拆分需决定人员去向。"),
    "none_grid": "（无）",
    "effective": "生效时间（北京时间，留空为立即）",
    "publishing": "正在发布…",
    "published": "已发布。",
    "scheduled": "已安排于 {at} 生效。",
    "publish_counts": ("新建 {created} 个、更新 {replaced} 个、撤销 {retired} 个网格；"
                       "{staff} 名网格人员随网格调整，{incidents} 件未办结事件重新归属。"),
}


# The draft-plan editor (maps/static/planner_edit.js).
EDIT_TEXT = {
    "panel_title": "编辑方案",
    "plan": "草稿方案",
    "plan_pick": "请选择方案",
    "open": "打开",
    "create": "新建草稿",
    "from_suggestion": "以所示建议生成草稿",
    "new_name": "网格调整方案",
    "info": "{name}（{status}，第 {version} 版）",
    "target": "涂入网格",
    "target_pick": "请选择网格",
    "paint": "将所选单元涂入该网格",
    "clear": "清除选择",
    "selected": "已选 {n} 个单元（点击地图上的单元选择）",
    "undo": "撤销",
    "redo": "重做",
    "split": "拆分网格",
    "split_pick": "请选择要拆分的网格",
    "draw": "在地图上画拆分线",
    "draw_finish": "完成画线",
    "validation": "校验结果",
    "impact": "影响预览",
    "impact_columns": ["原网格", "新网格", "户数", "人数", "未办结事件"],
    "none_grid": "（无）",
    "effective": "生效时间（北京时间，留空为立即）",
    "publish": "发布方案",
    "undo_published": "撤销已发布方案",
    "published": "方案已发布。",
    "scheduled": "方案已安排在生效时间发布。",
    "undone": "已发布反向方案，原网格已恢复。",
    "conflict": "方案已被他人修改（版本冲突），本次修改未保存。",
    "reload": "重新载入方案",
    "no_village": "请先选择行政村",
    "no_suggestion": "请先生成并选择一个建议",
    "no_target": "请选择要涂入的网格",
    "no_selection": "请先在地图上点击选择单元",
    "no_split_grid": "请先打开方案并选择要拆分的网格",
    "split_refused": "拆分线须从所选网格的一侧边界画到另一侧、把网格分成至少两块；本次未作修改，请重新画线。",
    "group_units": "“现有小组网格”单元不能涂入小组网格，请改选住户或自然村单元",
}


def page_config(*, can_plan: bool, can_publish: bool) -> dict[str, Any]:
    """What maps/static/planner.js reads; `can_publish` shows the publish controls."""
    return {
        "grids_url": "/grids",
        "suggestions_url": "/plans/suggestions",
        "units_url": "/plans/units",
        "publish_url": "/plans/suggestions/publish",
        "impact_url": "/plans/suggestions/impact",
        "limit": 2000,
        "outline_styles": outline_styles(),
        "group_outline_zoom": GROUP_OUTLINE_ZOOM,
        "palette": list(PALETTE),
        "weights": [list(w) for w in WEIGHTS],
        "unit_kinds": [list(u) for u in UNIT_KINDS],
        "defaults": {"tolerance_percent": 10, "count": 3, "steps": 100},
        "can_plan": can_plan,
        "can_publish": can_publish,
        "text": TEXT,
        "plans_url": "/plans",
        "edit_text": EDIT_TEXT,
    }
