"""Roles and permissions: the one table that says who may do what."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    COMMAND_CENTER = "command_center"
    EMERGENCY = "emergency"
    PLANNER = "planner"
    GRID_STAFF = "grid_staff"
    SUPERVISOR = "supervisor"


class Permission(StrEnum):
    VIEW_GRIDS = "view_grids"            # boundaries, locate, grid map, staff contact cards
    EDIT_GRIDS = "edit_grids"            # import / redraw boundaries
    VIEW_HOUSEHOLD_COUNTS = "view_household_counts"
    VIEW_HOUSEHOLDS = "view_households"  # household rows; which rows and fields depends on role
    VIEW_SHELTERS = "view_shelters"
    MANAGE_EMERGENCIES = "manage_emergencies"
    VIEW_EMERGENCIES = "view_emergencies"
    MANAGE_USERS = "manage_users"
    VIEW_AUDIT = "view_audit"
    REPORT_INCIDENTS = "report_incidents"  # intake
    VIEW_INCIDENTS = "view_incidents"      # which ones depends on scope
    WORK_INCIDENTS = "work_incidents"      # move an incident through the closed loop
    REVIEW_INCIDENTS = "review_incidents"  # the command center's queue of flagged assignments
    IMPORT_INCIDENTS = "import_incidents"  # batch import of historical incidents
    EDIT_FLOOD_EXTENTS = "edit_flood_extents"  # upload or draw an observed flood extent
    COMPUTE_FLOOD_SCENARIOS = "compute_flood_scenarios"  # model a stage of the allowed set (costly)
    IMPORT_REGISTER = "import_register"  # households, residents, roster, 联系户, places, DEM
    EXPORT_REGISTER = "export_register"  # the register back out (GeoPackage, Excel)


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.COMMAND_CENTER: frozenset(
        {P.VIEW_GRIDS, P.VIEW_HOUSEHOLD_COUNTS, P.VIEW_HOUSEHOLDS, P.VIEW_SHELTERS,
         P.MANAGE_EMERGENCIES, P.VIEW_EMERGENCIES, P.REPORT_INCIDENTS, P.VIEW_INCIDENTS, P.WORK_INCIDENTS,
         P.REVIEW_INCIDENTS, P.IMPORT_INCIDENTS, P.EDIT_FLOOD_EXTENTS, P.COMPUTE_FLOOD_SCENARIOS,
         P.IMPORT_REGISTER, P.EXPORT_REGISTER}
    ),
    Role.EMERGENCY: frozenset(
        {P.VIEW_GRIDS, P.VIEW_HOUSEHOLD_COUNTS, P.VIEW_HOUSEHOLDS, P.VIEW_SHELTERS, P.VIEW_EMERGENCIES,
         P.REPORT_INCIDENTS, P.VIEW_INCIDENTS, P.EDIT_FLOOD_EXTENTS, P.EXPORT_REGISTER}
    ),
    Role.PLANNER: frozenset({P.VIEW_GRIDS, P.EDIT_GRIDS, P.VIEW_HOUSEHOLD_COUNTS, P.VIEW_SHELTERS}),
    Role.GRID_STAFF: frozenset(
        {P.VIEW_GRIDS, P.VIEW_HOUSEHOLD_COUNTS, P.VIEW_HOUSEHOLDS, P.REPORT_INCIDENTS, P.VIEW_INCIDENTS,
         P.WORK_INCIDENTS}
    ),
    Role.SUPERVISOR: frozenset(
        {P.VIEW_GRIDS, P.VIEW_HOUSEHOLD_COUNTS, P.VIEW_HOUSEHOLDS, P.REPORT_INCIDENTS, P.VIEW_INCIDENTS,
         P.WORK_INCIDENTS}
    ),
}

# Roles whose data access is limited to the grids in their scope.
SCOPED_ROLES = frozenset({Role.GRID_STAFF, Role.SUPERVISOR})

ROLE_NAMES_ZH = {
    Role.ADMIN: "系统管理员",
    Role.COMMAND_CENTER: "指挥中心",
    Role.EMERGENCY: "应急/防汛突击队",
    Role.PLANNER: "规划/网格办",
    Role.GRID_STAFF: "网格员",
    Role.SUPERVISOR: "网格督导员",
}


def allows(role: Role | str, permission: Permission) -> bool:
    return Permission(permission) in ROLE_PERMISSIONS[Role(role)]
