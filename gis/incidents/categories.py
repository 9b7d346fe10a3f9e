"""Incident categories, dispute subtypes, and the default deadline of each loop stage per category."""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    DISPUTE = "dispute"                  # 矛盾纠纷
    SAFETY_HAZARD = "safety_hazard"      # 安全隐患
    ENVIRONMENT = "environment"          # 环境卫生
    LIVELIHOOD = "livelihood"            # 民生诉求
    PUBLIC_ORDER = "public_order"        # 治安
    DISASTER = "disaster"                # 灾害/汛情


class DisputeKind(StrEnum):
    LAND = "land"                        # 土地/边界
    NEIGHBOUR = "neighbour"              # 邻里
    FAMILY = "family"                    # 婚姻家庭
    WAGES = "wages"                      # 劳资/欠薪
    DEMOLITION = "demolition"            # 征迁


CATEGORY_NAMES_ZH = {
    Category.DISPUTE: "矛盾纠纷",
    Category.SAFETY_HAZARD: "安全隐患",
    Category.ENVIRONMENT: "环境卫生",
    Category.LIVELIHOOD: "民生诉求",
    Category.PUBLIC_ORDER: "治安",
    Category.DISASTER: "灾害/汛情",
}

DISPUTE_NAMES_ZH = {
    DisputeKind.LAND: "土地/边界纠纷",
    DisputeKind.NEIGHBOUR: "邻里纠纷",
    DisputeKind.FAMILY: "婚姻家庭纠纷",
    DisputeKind.WAGES: "劳资纠纷",
    DisputeKind.DEMOLITION: "征迁纠纷",
}

# Hours allowed in each stage before the incident is overdue (visit, report, study, handle,
# follow_up). Disasters move in hours; disputes get a week to study (the weekly 民情分析会).
STAGE_HOURS: dict[Category, dict[str, float]] = {
    Category.DISPUTE: {"visit": 24, "report": 24, "study": 7 * 24, "handle": 15 * 24, "follow_up": 7 * 24},
    Category.SAFETY_HAZARD: {"visit": 12, "report": 12, "study": 48, "handle": 7 * 24, "follow_up": 7 * 24},
    Category.ENVIRONMENT: {"visit": 24, "report": 24, "study": 72, "handle": 7 * 24, "follow_up": 7 * 24},
    Category.LIVELIHOOD: {"visit": 48, "report": 24, "study": 7 * 24, "handle": 15 * 24, "follow_up": 7 * 24},
    Category.PUBLIC_ORDER: {"visit": 6, "report": 6, "study": 48, "handle": 7 * 24, "follow_up": 7 * 24},
    Category.DISASTER: {"visit": 1, "report": 1, "study": 2, "handle": 24, "follow_up": 72},
}
