"""Incident intake (locate, assign at every level, route, link possible duplicates), the loop, lists.

Assignment follows gis.grids.locate exactly (deepest containing grid, smallest code on shared
edges, flagged `on_boundary`). A point outside every grid but within `outside_tolerance_m` of
one is assigned to the nearest group grid and flagged with the distance; farther is refused.
Flagged incidents (on a boundary, or outside) wait in the command center's review queue until
someone marks them reviewed.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis import audit
from gis.auth.principal import Principal
from gis.auth.roles import Permission, Role
from gis.context import Context
from gis.crs import parse_crs, points_to_wgs84
from gis.db import committed_rows, driver_rows
from gis.errors import Forbidden, InputError, NotFound, Problem
from gis.grids.locate import GridRef, hierarchy_for, locate_points, path_to_town
from gis.incidents import fields
from gis.incidents.categories import Category
from gis.incidents.loop import (
    RESTRICTED_ACTIONS,
    Action,
    State,
    TransitionRefused,
    next_state,
    urgency,
)
from gis.incidents.routing import assignees_select
from gis.privacy import mask_name, mask_phone


@dataclass
class IntakeRequest:
    category: str
    description: str
    occurred_at: dt.datetime | str     # read by gis.incidents.fields.parse_time
    lon: float | None = None
    lat: float | None = None
    crs: str | None = None
    place: str | None = None
    dispute_kind: str | None = None
    reporter_name: str | None = None
    reporter_phone: str | None = None
    external_id: str | None = None


@dataclass
class Placement:
    lon: float
    lat: float
    source: str          # coordinates | gazetteer
    precision_m: float | None
    place_match: str | None = None
    input_crs: str | None = None
    # Set when the location is known only as an area (a named grid, or a place whose precision
    # spans several grids): the grid to assign, at its own level, instead of the point rule.
    grid_code: str | None = None


# A place-name match at most this vague (a house, a shelter) is located like coordinates; a vaguer
# one (a natural village, a grid, a village named alone) is assigned no deeper than its precision
# allows: the deepest grid holding the whole disc of that radius, or the grid it names.
POINT_MATCH_M = 50.0

# The incidents waiting for the command center's review: on a shared edge, outside the town, or
# assigned above the group level (a vague place name, a point in a gap between group grids). The
# assigned level is the number of distinct codes on the path (group_code holds the deepest one).
FLAGGED_SQL = ("(i.on_boundary OR i.outside_distance_m IS NOT NULL OR i.village_code IS NULL "
               "OR i.group_code = i.village_code)")


def _check_fields(req: IntakeRequest, now: dt.datetime) -> None:
    """Category, kind and time by the rule of the file import (gis.incidents.fields); `req` is
    left with the codes and an aware time."""
    problems = []
    category = fields.category_code(req.category)
    if category is None:
        problems.append(Problem(("body", "category"), f"unknown category {req.category!r}; one of "
                                + fields.category_choices(), "unknown_category"))
    else:
        req.category = category
    if req.dispute_kind is not None and str(req.dispute_kind).strip() == "":
        req.dispute_kind = None                  # as an empty cell of the file import
    if req.dispute_kind is not None:
        kind = fields.dispute_kind_code(req.dispute_kind)
        if category is not None and category != Category.DISPUTE:
            problems.append(Problem(("body", "dispute_kind"), "only disputes have a dispute_kind"))
        elif kind is None:
            problems.append(Problem(("body", "dispute_kind"),
                                    "one of " + fields.dispute_kind_choices()))
        else:
            req.dispute_kind = kind
    try:
        req.occurred_at = fields.parse_time(req.occurred_at)
    except (ValueError, TypeError):
        problems.append(Problem(("body", "occurred_at"),
                                f"not a time: {req.occurred_at!r}; {fields.TIME_RULE}"))
    else:
        if req.occurred_at > now + dt.timedelta(minutes=10):
            problems.append(Problem(("body", "occurred_at"), "lies in the future"))
    has_xy = req.lon is not None or req.lat is not None
    if has_xy == bool(req.place):
        problems.append(Problem(("body",), "give either lon/lat (with crs) or place, not both and not neither",
                                "location"))
    elif has_xy and (req.lon is None or req.lat is None):
        problems.append(Problem(("body", "lat" if req.lat is None else "lon"), "lon and lat go together"))
    if problems:
        raise InputError(problems)


@dataclass
class IntakeResult:
    id: int
    created: bool
    record: dict[str, Any] | None = None   # the stored incident as get_incident shows it, when already read
    grid_names: dict[str, str] | None = None   # code -> name of its grid path, when already read


def place_incident(session: Session, req: IntakeRequest,
                   principal: Principal | None = None) -> Placement:
    if req.place:
        from gis.grids.locate import deepest_covering
        from gis.incidents.gazetteer import resolve

        hit = resolve(session, req.place, loc=("body", "place"), principal=principal)
        placed = Placement(hit.lon, hit.lat, "gazetteer", hit.precision_m, hit.label)
        if hit.code is not None:
            placed.grid_code = hit.code
        elif hit.precision_m > POINT_MATCH_M:
            placed.grid_code = deepest_covering(session, hit.lon, hit.lat, hit.precision_m)
        return placed
    system = parse_crs(req.crs, field=("body", "crs"))
    xs, ys = points_to_wgs84(req.lon, req.lat, system, field_prefix=("body",))
    # GCJ-02/BD-09 are inverted to centimetres; EPSG inputs are exact.
    return Placement(float(xs[0]), float(ys[0]), "coordinates", None, None, str(system))


def assign(session: Session, lon: float, lat: float,
           outside_tolerance_m: float) -> tuple[dict[int, GridRef], bool, float | None]:
    """(path level->GridRef, on_boundary, outside_distance_m) by the locate rule; refuses far points."""
    loc = locate_points(session, [lon], [lat])[0]
    if loc.inside:
        return loc.path, loc.on_boundary, None
    if loc.nearest is None or loc.distance_m is None:
        raise InputError(Problem(("body",), "no grids are loaded: import the town's grids first", "no_grids"))
    if loc.distance_m > outside_tolerance_m:
        raise InputError(Problem(
            ("body",),
            f"the location is outside the town: {loc.distance_m:.0f} m from the nearest grid "
            f"{loc.nearest.name} ({loc.nearest.code}), more than the {outside_tolerance_m:.0f} m allowed",
            "outside_town",
            ctx={"nearest_code": loc.nearest.code, "distance_m": round(loc.distance_m, 1)},
        ))
    return path_to_town(loc.nearest.code, hierarchy_for(session, [loc.nearest.code])), False, loc.distance_m


def as_context(actor: Context | Principal | None) -> Context:
    """The context of an operation called with a bare principal (or none: the system itself)."""
    return actor if isinstance(actor, Context) else Context(principal=actor)


def intake(
    session: Session,
    actor: Context | Principal | None,
    req: IntakeRequest,
    *,
    outside_tolerance_m: float,
    duplicate_radius_m: float,
    duplicate_window_hours: float,
    now: dt.datetime | None = None,
    one_statement: bool = True,
) -> IntakeResult:
    """Store one incident. The same external_id again returns the first one (created False).

    A new incident is written to the audit log ("create") in the same transaction (for the common
    case, in the same statement). With `one_statement` False every location takes the general path
    (tests/test_intake_paths_property.py holds the two to the same answers).
    """
    ctx = as_context(actor)
    principal = ctx.principal
    now = now or dt.datetime.now(dt.UTC)
    _check_fields(req, now)
    placed = place_incident(session, req, principal)
    fast = None if placed.grid_code or not one_statement else _intake_inside(
        session, ctx, req, placed, now, duplicate_radius_m, duplicate_window_hours)
    if fast is not None:
        return fast
    # The general path: outside the town (nearest grid within the tolerance, or refused), a point in
    # a grid without group grids below it, or an external_id this reporter already used. It never
    # waits for another request: the unique index decides between concurrent posts of one id
    # (ON CONFLICT below), and a refused location stores nothing: each duplicate is refused alike.
    if req.external_id is not None:
        existing = _reported_before(session, principal, req.external_id)
        if existing is not None:
            return IntakeResult(existing, False)
    if placed.grid_code:
        path = path_to_town(placed.grid_code, hierarchy_for(session, [placed.grid_code]))
        on_boundary, outside_m = False, None
    else:
        path, on_boundary, outside_m = assign(session, placed.lon, placed.lat, outside_tolerance_m)
    group = path[max(path)]
    codes = {level: ref.code for level, ref in path.items()}
    version_id = session.execute(
        text("SELECT id FROM grid WHERE code = :c AND valid_to IS NULL"), {"c": group.code}
    ).scalar_one()
    incident_id = session.execute(
        text(
            """
            INSERT INTO incident (external_id, category, dispute_kind, description, occurred_at,
                reporter_name, reporter_phone, geom, location_source, input_crs, place_query, place_match,
                precision_m, group_code, village_code, area_code, town_code, grid_version_id, on_boundary,
                outside_distance_m, state, state_entered_at, created_by)
            VALUES (:ext, :cat, :kind, :desc, :occ, :rname, :rphone, ST_SetSRID(ST_MakePoint(:x, :y), 4326),
                :src, :crs, :place, :match, :prec, :g4, :g3, :g2, :g1, :ver, :edge, :out, 'visit', :now, :by)
            ON CONFLICT ((coalesce(created_by, 0)), external_id) DO NOTHING
            RETURNING id
            """
        ),
        {
            "ext": req.external_id, "cat": req.category, "kind": req.dispute_kind, "desc": req.description,
            "occ": req.occurred_at, "rname": req.reporter_name, "rphone": req.reporter_phone,
            "x": placed.lon, "y": placed.lat, "src": placed.source, "crs": placed.input_crs,
            "place": req.place, "match": placed.place_match, "prec": placed.precision_m,
            "g4": group.code, "g3": codes.get(3), "g2": codes.get(2), "g1": codes.get(1),
            "ver": version_id, "edge": on_boundary, "out": outside_m, "now": now,
            "by": principal.user_id if principal else None,
        },
    ).scalar_one_or_none()
    if incident_id is None:   # a concurrent post of the same id stored it first
        assert req.external_id is not None   # (only the unique external id makes the INSERT do nothing)
        first = _reported_before(session, principal, req.external_id)
        assert first is not None
        return IntakeResult(first, False)
    _event(session, incident_id, principal, "intake", None, State.VISIT, None, now)
    _route(session, incident_id, group.code, codes.get(3))
    _link_duplicates(session, incident_id, duplicate_radius_m, duplicate_window_hours)
    ctx.audit(session, "create", resource="incident", resource_ids=[incident_id])
    return IntakeResult(incident_id, True)


# An incident's history (alias e), people (a: assignments, s: staff) and duplicate links (d: other_id,
# distance_m) as JSON arrays: read from the tables by get_incident, from RETURNING by the intake.
# Times go out as UTC epoch seconds (exact to the microsecond) and become ISO strings in Python.
_HISTORY_JSON = """coalesce(json_agg(json_build_object(
        'id', e.id, 'at', extract(epoch FROM e.at), 'actor', e.actor, 'action', e.action,
        'from_state', e.from_state, 'to_state', e.to_state, 'note', e.note) ORDER BY e.id), '[]')"""
_ASSIGNEES_JSON = """coalesce(json_agg(json_build_object(
        'staff_id', s.id, 'name', s.name, 'phone', s.phone, 'role', s.role, 'grid_code', s.grid_code,
        'duty', a.duty) ORDER BY a.duty, s.id), '[]')"""
_DUPLICATES_JSON = """coalesce(json_agg(json_build_object(
        'incident_id', d.other_id, 'distance_m', round(d.distance_m::numeric, 1)::float) ORDER BY d.other_id), '[]')"""


# One statement for the common case: a point inside a group grid. The point → grid rule is the SQL
# function grid_at (migration 0008; the planner inlines it, so the grid table's GiST index serves
# it) and the routing that of gis.incidents.routing; the incident, its first history event, its
# assignees and its possible duplicates are all written by one round trip. An external_id already stored makes the
# INSERT do nothing (the unique index also serialises two concurrent posts of one id), and so does a
# point outside every group grid: the caller then takes the general path.
@functools.cache
def _intake_inside_sql(workable: str = "TRUE", only_while: str = "TRUE") -> str:
    """The statement; `workable`: the caller's scope_condition (the incidents they work); `only_while`: a
    condition without which it writes nothing (`intake_at_once`)."""
    return f"""
    WITH p AS (SELECT ST_SetSRID(ST_MakePoint(:x, :y), 4326) AS g WHERE {only_while}),
    hit AS (
        SELECT g.id, g.code, g.name, g.level, g.parent_code, at.on_boundary AS on_edge
        FROM p CROSS JOIN LATERAL grid_at(p.g) at
        JOIN grid g ON g.code = at.code AND g.valid_to IS NULL
    ),
    path AS (
        SELECT h.id, h.code AS g4, v.code AS g3, a.code AS g2, t.code AS g1, h.on_edge,
               json_build_object(h.code, h.name, v.code, v.name, a.code, a.name, t.code, t.name)
                 AS names
        FROM hit h
        JOIN grid v ON v.code = h.parent_code AND v.valid_to IS NULL
        JOIN grid a ON a.code = v.parent_code AND a.valid_to IS NULL
        JOIN grid t ON t.code = a.parent_code AND t.valid_to IS NULL
        WHERE h.level = 4
    ),
    ins AS (
        INSERT INTO incident (external_id, category, dispute_kind, description, occurred_at,
            reporter_name, reporter_phone, geom, location_source, input_crs, place_query, place_match,
            precision_m, group_code, village_code, area_code, town_code, grid_version_id, on_boundary,
            outside_distance_m, state, state_entered_at, created_by)
        SELECT :ext, :cat, :kind, :desc, :occ, :rname, :rphone, p.g, :src, :crs, :place, :match, :prec,
               path.g4, path.g3, path.g2, path.g1, path.id, path.on_edge, NULL, 'visit', :now, :by
        FROM path, p
        ON CONFLICT ((coalesce(created_by, 0)), external_id) DO NOTHING
        RETURNING *
    ),
    event AS (
        INSERT INTO incident_event (incident_id, at, actor_id, actor, action, from_state, to_state, note)
        SELECT ins.id, :now, :by, :actor, 'intake', NULL, 'visit', NULL FROM ins
        RETURNING *
    ),
    routed AS (
        INSERT INTO incident_assignee (incident_id, staff_id, duty)
        {assignees_select("ins.id", {4: "ins.group_code", 3: "ins.village_code"}, "ins")}
        RETURNING *
    ),
    duplicates AS (
        -- the rule of possible duplicates: one SQL function (migration 0020), planned with its index
        INSERT INTO incident_duplicate (incident_id, other_id, distance_m)
        SELECT n.id, d.other_id, d.distance_m
        FROM ins n CROSS JOIN LATERAL incident_near(n.geom, n.category, n.occurred_at, :r, :w) d
        RETURNING *
    ),
    audited AS (
        INSERT INTO audit_log ({audit.INSERT_COLUMNS})
        SELECT :actor_id, :actor, :role, :via, :ip, :method, :path, :action, :resource, ARRAY[ins.id::text],
               :reason, :outcome, CAST(:detail AS jsonb)
        FROM ins
    )
    -- The stored incident as get_incident reads it (what this statement wrote is seen through
    -- RETURNING: the statement's own snapshot does not show it in the tables).
    SELECT {_COLUMNS}, ({{visible}}) AS visible, ({workable}) AS workable,
        (SELECT {_HISTORY_JSON} FROM event e) AS history,
        (SELECT {_ASSIGNEES_JSON} FROM routed a JOIN staff s ON s.id = a.staff_id) AS assignees,
        '[]'::json AS attachments,
        (SELECT {_DUPLICATES_JSON} FROM duplicates d) AS possible_duplicates,
        (SELECT names FROM path) AS grid_names
    FROM ins i
"""


def intake_at_once(session: Session, ctx: Context, req: IntakeRequest, *,
                   only_while: tuple[str, dict[str, Any]], duplicate_radius_m: float,
                   duplicate_window_hours: float, now: dt.datetime | None = None) -> IntakeResult | None:
    """`intake`'s common case, a report by coordinates inside a group grid, as ONE statement that is a
    transaction of its own (`gis.db.committed_rows`): written, audited and committed in one round trip.

    It writes only while `only_while` (an SQL condition and its parameters) holds: the API passes the
    condition that the caller's credential still finds the caller `ctx` names (`api.security.Check.guess`), so
    a report is checked and stored by the same statement. None when it wrote nothing: a field the checks
    refuse, a report by place name, a point outside every group grid, an external id this reporter used
    before, the condition false, or a transaction already open on `session`. The caller then calls `intake`
    (its usual way), which gives each of those its answer. `req` may be changed (as by `intake`)."""
    now = now or dt.datetime.now(dt.UTC)
    if req.place:
        return None
    try:
        _check_fields(req, now)
        placed = place_incident(session, req, ctx.principal)
    except Exception:  # noqa: BLE001 - nothing is sent yet: `intake` raises it again, in its own order
        return None
    condition, params = only_while
    sql, values = _intake_inside_statement(ctx, req, placed, now, duplicate_radius_m, duplicate_window_hours,
                                           condition)
    rows = committed_rows(session, sql, {**values, **params})
    return _inside_result(rows[0], ctx.principal, now) if rows else None


def _intake_inside(session: Session, ctx: Context, req: IntakeRequest, placed: Placement, now: dt.datetime,
                   radius_m: float, window_h: float) -> IntakeResult | None:
    """The result when the one-statement path applies, else None (see _intake_inside_sql)."""
    sql, params = _intake_inside_statement(ctx, req, placed, now, radius_m, window_h)
    rows = driver_rows(session, sql, params)
    if rows:
        return _inside_result(rows[0], ctx.principal, now)
    if req.external_id is not None:
        existing = _reported_before(session, ctx.principal, req.external_id)
        if existing is not None:
            return IntakeResult(existing, False)
    return None


def _inside_result(row: dict[str, Any], principal: Principal | None, now: dt.datetime) -> IntakeResult:
    """The one statement's row as the intake's result."""
    names = row.pop("grid_names")
    visible, workable = row.pop("visible"), row.pop("workable")
    record = _with_details(row, principal, now, workable) if visible and principal else None
    return IntakeResult(row["id"], True, record, names)


def _intake_inside_statement(ctx: Context, req: IntakeRequest, placed: Placement, now: dt.datetime,
                             radius_m: float, window_h: float,
                             only_while: str = "TRUE") -> tuple[str, dict[str, Any]]:
    """The one statement (`_intake_inside_sql`) for this report and caller, and its parameters."""
    principal = ctx.principal
    sql = _intake_inside_sql(scope_condition(principal) if principal else "TRUE", only_while).replace(
        "{visible}", visible_condition(principal) if principal else "TRUE")
    # The audit row Context.audit would write, written by the statement itself.
    return sql, {
        **audit.params(principal, "create", resource="incident", method=ctx.method, path=ctx.path,
                       client_ip=ctx.client_ip, actor=ctx.actor, reason=ctx.reason),
        "x": placed.lon, "y": placed.lat, "ext": req.external_id, "cat": req.category, "kind": req.dispute_kind,
        "desc": req.description, "occ": req.occurred_at, "rname": req.reporter_name,
        "rphone": req.reporter_phone, "src": placed.source, "crs": placed.input_crs, "place": req.place,
        "match": placed.place_match, "prec": placed.precision_m, "now": now,
        "by": principal.user_id if principal else None, "actor": principal.username if principal else None,
        "r": radius_m, "w": window_h, **(access_params(principal) if principal else {}),
    }


def _reported_before(session: Session, principal: Principal | None, external_id: str) -> int | None:
    """The incident this reporter (None: imports and the CLI) stored under `external_id`.

    External ids are unique per reporting account (migration 0007): another account's use of the
    same id is neither found here nor blocks a new incident, so the answer reveals nothing of it.
    """
    return session.execute(
        text("SELECT id FROM incident WHERE coalesce(created_by, 0) = :by AND external_id = :x"),
        {"by": principal.user_id if principal else 0, "x": external_id},
    ).scalar_one_or_none()


def _event(session: Session, incident_id: int, principal: Principal | None, action: str, from_state: State | None,
           to_state: State, note: str | None, at: dt.datetime) -> None:
    session.execute(
        text(
            "INSERT INTO incident_event (incident_id, at, actor_id, actor, action, from_state, to_state, note) "
            "VALUES (:i, :at, :aid, :actor, :a, :f, :t, :n)"
        ),
        {"i": incident_id, "at": at, "aid": principal.user_id if principal else None,
         "actor": principal.username if principal else None, "a": action,
         "f": from_state.value if from_state else None, "t": to_state.value, "n": note},
    )


def _route(session: Session, incident_id: int, group_code: str, village_code: str | None) -> None:
    """Attach the group grid's leader and members, and the village's supervisor."""
    session.execute(text(_ROUTE_SQL), {"i": incident_id, "g": group_code, "v": village_code})


_ROUTE_SQL = ("INSERT INTO incident_assignee (incident_id, staff_id, duty) "
              + assignees_select(":i", {4: ":g", 3: ":v"}))


def _link_duplicates(session: Session, incident_id: int, radius_m: float, window_h: float) -> None:
    """Open incidents of the same category nearby in space and time: offered, never merged."""
    session.execute(
        text(
            """
            INSERT INTO incident_duplicate (incident_id, other_id, distance_m)
            SELECT n.id, d.other_id, d.distance_m
            FROM incident n
            CROSS JOIN LATERAL incident_near(n.geom, n.category, n.occurred_at, :r, :w) d   -- migration 0020
            WHERE n.id = :i AND d.other_id <> n.id
            """
        ),
        {"i": incident_id, "r": radius_m, "w": window_h},
    )


def routing(session: Session, principal: Principal, record: dict[str, Any],
            names: dict[str, str] | None = None) -> dict[str, Any]:
    """Where a reported incident went, for the reporter: its grid path (town → group, with names),
    whether that lies outside the reporter's own grids, and a sentence saying so in Chinese.
    `names` (code -> name) when the intake already read them (the one-statement path)."""
    from gis.incidents.labels import ROUTED_ELSEWHERE, ROUTED_OWN_GRID

    # group_code holds the deepest assigned code (a village's own, when assigned at its level).
    levels = ("town_code", "area_code", "village_code", "group_code")
    codes = list(dict.fromkeys(c for c in (record.get(k) for k in levels) if c))
    if names is None:
        names = dict(session.execute(
            text("SELECT code, name FROM grid WHERE code = ANY(:c) AND valid_to IS NULL"),
            {"c": codes}).all())
    path = [{"level": _level_of(code), "code": code, "name": names.get(code)} for code in codes]
    own = not principal.scoped or bool(set(principal.scope_codes) & set(codes))
    named = "".join(p["name"] or p["code"] for p in path[2:] or path)
    place = f"{named}（{codes[-1]}）"
    return {"grid_path": path, "outside_your_grids": not own,
            "routing_notice": (ROUTED_OWN_GRID if own else ROUTED_ELSEWHERE).format(place=place)}


@functools.lru_cache(maxsize=4096)
def _level_of(code: str) -> int:
    """gis.codes.level_of_code as a number (0: not a well-formed code); remembered, as every report asks."""
    from gis.codes import level_of_code

    return int(level_of_code(code) or 0)


# --- access -------------------------------------------------------------------------------------

def scope_condition(principal: Principal) -> str:
    """SQL on alias i: the incidents of the principal's grids (grid staff: their own grids only);
    those they may work through the loop."""
    if principal.role in (Role.GRID_STAFF, Role.SUPERVISOR):
        # Only the columns of the levels the scope's codes are at: each arm is served by its
        # column's index (a condition on all four would make every arm of a BitmapOr need one).
        from gis.codes import level_of_code

        columns = {4: "group_code", 3: "village_code", 2: "area_code", 1: "town_code"}
        found = [level_of_code(code) for code in principal.scope_codes]
        levels = {int(level) for level in found if level is not None}
        if None in found or not levels:
            levels = set(columns)
        arms = [f"i.{columns[level]} = ANY(:scope)" for level in sorted(levels, reverse=True)]
        return "(" + " OR ".join(arms) + ")"
    if principal.role in (Role.ADMIN, Role.COMMAND_CENTER, Role.EMERGENCY):
        return "TRUE"
    return "FALSE"


def visible_condition(principal: Principal) -> str:
    """SQL on alias i: the incidents a principal may see: their grids' and those they reported
    (a grid member reporting what they saw in a neighbouring grid follows it there). Takes the
    parameters of `access_params`."""
    scope = scope_condition(principal)
    return scope if scope == "TRUE" else f"({scope} OR i.created_by = :uid)"


def access_params(principal: Principal) -> dict[str, Any]:
    """The parameters `visible_condition` and `scope_condition` refer to."""
    return {"scope": list(principal.scope_codes), "uid": principal.user_id}


def reporter_shown(principal: Principal) -> bool:
    return principal.role in (Role.ADMIN, Role.GRID_STAFF, Role.SUPERVISOR)


_COLUMNS = """
    i.id, i.external_id, i.category, i.dispute_kind, i.description, i.occurred_at, i.reported_at,
    i.reporter_name, i.reporter_phone, ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat, i.location_source,
    i.input_crs, i.place_query, i.place_match, i.precision_m, i.group_code, i.village_code, i.area_code,
    i.town_code, i.grid_version_id, i.on_boundary, i.outside_distance_m, i.reviewed_at, i.state,
    i.state_entered_at, i.satisfied
"""


def _shape(row: dict[str, Any], principal: Principal, now: dt.datetime) -> dict[str, Any]:
    d = dict(row)
    if not reporter_shown(principal):
        d["reporter_name"], d["reporter_phone"] = mask_name(d["reporter_name"]), mask_phone(d["reporter_phone"])
    u = urgency(d["category"], d["state"], d["state_entered_at"], now)
    d["deadline"] = u.deadline.isoformat() if u.deadline else None
    d["overdue"] = u.overdue
    d["escalation_level"] = u.escalation_level
    d["escalated_to"] = {4: d["group_code"], 3: d["village_code"], 2: d["area_code"], 1: d["town_code"]}[
        u.escalation_level]
    codes = (d["town_code"], d["area_code"], d["village_code"], d["group_code"])
    d["assigned_level"] = len({c for c in codes if c})
    d["review_reasons"] = review_reasons(d)
    d["flagged"] = bool(d["review_reasons"])
    for k in ("occurred_at", "reported_at", "state_entered_at", "reviewed_at"):
        d[k] = d[k].isoformat() if d[k] else None
    return d


def review_reasons(d: dict[str, Any]) -> list[str]:
    """Why an incident waits for review (FLAGGED_SQL says the same in SQL): on_boundary,
    outside_town, vague_place (a place name matched only an area above the group grids) or
    no_group_grid (a point in no group grid, e.g. a gap between them)."""
    reasons = []
    if d["on_boundary"]:
        reasons.append("on_boundary")
    if d["outside_distance_m"] is not None:
        reasons.append("outside_town")
    if not d["village_code"] or d["group_code"] == d["village_code"]:
        reasons.append("vague_place" if d["location_source"] == "gazetteer" else "no_group_grid")
    return reasons


def get_incident(session: Session, actor: Context | Principal, incident_id: int,
                 now: dt.datetime | None = None) -> dict[str, Any]:
    """One incident with its history, people, photos, duplicate links, grid path (names) and the
    `actions` the principal may take now. Given a Context (a reader's request), reading its
    reporter's name and phone unmasked is audited."""
    principal = _acting(as_context(actor))
    now = now or dt.datetime.now(dt.UTC)
    rows = driver_rows(
        session, f"SELECT {_COLUMNS}, {_DETAIL}, {scope_condition(principal)} AS workable FROM incident i "
        f"WHERE i.id = :id AND {visible_condition(principal)}",
        {"id": incident_id, **access_params(principal)},
    )
    if not rows:
        raise NotFound(f"no incident {incident_id} that you may see")
    row = rows[0]
    out = _with_details(row, principal, now, row.pop("workable"))
    out["grid_path"] = routing(session, principal, out)["grid_path"]
    if isinstance(actor, Context):
        record_reporter_reads(session, actor, [out])
    return out


def _with_details(row: dict[str, Any], principal: Principal, now: dt.datetime, workable: bool) -> dict[str, Any]:
    """The detail answer; `workable`: the incident lies in the principal's grids (scope_condition)."""
    details = {k: row.pop(k) for k in ("history", "assignees", "attachments", "possible_duplicates")}
    out = _shape(row, principal, now)
    out["actions"] = incident_actions(principal, out, bool(workable))
    out["history"] = [{**e, "at": _iso(e["at"])} for e in details["history"]]
    out["assignees"] = details["assignees"]
    out["attachments"] = [{**a, "uploaded_at": _iso(a["uploaded_at"])} for a in details["attachments"]]
    out["possible_duplicates"] = details["possible_duplicates"]
    return out


# An incident's history, people, attachments and duplicate links, read with the incident itself.
_DETAIL = f"""
    (SELECT {_HISTORY_JSON} FROM incident_event e WHERE e.incident_id = i.id) AS history,
    (SELECT {_ASSIGNEES_JSON}
     FROM incident_assignee a JOIN staff s ON s.id = a.staff_id WHERE a.incident_id = i.id) AS assignees,
    (SELECT coalesce(json_agg(json_build_object(
                'id', f.id, 'event_id', f.event_id, 'filename', f.filename, 'content_type', f.content_type,
                'size', f.size, 'uploaded_at', extract(epoch FROM f.uploaded_at)) ORDER BY f.id), '[]')
     FROM incident_attachment f WHERE f.incident_id = i.id) AS attachments,
    (SELECT {_DUPLICATES_JSON}
     FROM (SELECT other_id, round(distance_m::numeric, 1)::float AS distance_m FROM incident_duplicate
           WHERE incident_id = i.id
           UNION SELECT incident_id, round(distance_m::numeric, 1)::float FROM incident_duplicate
           WHERE other_id = i.id) d
    ) AS possible_duplicates
"""


def _iso(epoch: float | str) -> str:
    """An epoch from PostgreSQL (a JSON number, microseconds exact) as the ISO time the API returns."""
    seconds = decimal.Decimal(str(epoch))
    whole = int(seconds // 1)
    micros = int((seconds - whole) * 1_000_000)
    return (dt.datetime.fromtimestamp(whole, dt.UTC) + dt.timedelta(microseconds=micros)).isoformat()


def transition(
    session: Session,
    actor: Context | Principal,
    incident_id: int,
    action: str,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Move an incident one step through the loop (audited as "update"); refused steps are 422s
    naming what is allowed."""
    ctx = as_context(actor)
    principal = _acting(ctx)
    now = now or dt.datetime.now(dt.UTC)
    row = session.execute(
        text(f"SELECT i.id, i.state, {scope_condition(principal)} AS workable FROM incident i "
             f"WHERE i.id = :id AND {visible_condition(principal)} FOR UPDATE"),
        {"id": incident_id, **access_params(principal)},
    ).first()
    if row is None:
        raise NotFound(f"no incident {incident_id} that you may see")
    try:
        act = Action(action)
    except ValueError:
        raise InputError(Problem(("body", "action"), "one of " + ", ".join(a.value for a in Action))) from None
    state = State(row.state)
    refusal = loop_refusal(principal, incident_id, state, bool(row.workable), act)
    if refusal is not None:
        raise refusal
    new = next_state(state, act)
    satisfied = {Action.SATISFIED: True, Action.NOT_SATISFIED: False}.get(act)
    session.execute(
        text("UPDATE incident SET state = :s, state_entered_at = :now, "
             "satisfied = coalesce(CAST(:sat AS boolean), satisfied) WHERE id = :id"),
        {"s": new.value, "now": now, "sat": satisfied, "id": incident_id},
    )
    _event(session, incident_id, principal, act.value, state, new, note, now)
    out = get_incident(session, principal, incident_id, now)
    ctx.audit(session, "update", resource="incident", resource_ids=[incident_id],
              detail={"action": act.value, "state": out["state"]})
    return out


def loop_refusal(principal: Principal, incident_id: int, state: State, workable: bool,
                 action: Action) -> Forbidden | InputError | None:
    """Why `principal` may not take `action` on an incident in `state` now (None: they may).

    The one rule of the loop's POST (`transition` raises what it returns) and of the detail's
    `actions` (the buttons a page shows): the permission to work incidents, the incident in the
    worker's own grids (`workable`: scope_condition), a role-restricted action, a step of the loop."""
    if not principal.can(Permission.WORK_INCIDENTS):
        return Forbidden("your role does not work incidents through the loop")
    if not workable:   # a report of theirs in another grid: that grid's staff work it
        return Forbidden(f"incident {incident_id} lies outside your grids: its own grid's staff work it")
    allowed_roles = RESTRICTED_ACTIONS.get(action)
    if allowed_roles is not None and principal.role.value not in allowed_roles:
        return Forbidden(f"only {' or '.join(sorted(allowed_roles))} may {action.value}")
    try:
        next_state(state, action)
    except TransitionRefused as exc:
        return InputError(Problem(("body", "action"), str(exc), "transition_refused",
                                  ctx={"state": state.value, "allowed": exc.allowed}))
    return None


def review_refusal(principal: Principal) -> Forbidden | None:
    """Why `principal` may not review flagged assignments (accept or reassign); None: they may.
    The rule of the review POST and of the detail's `actions`."""
    if not principal.can(Permission.REVIEW_INCIDENTS):
        return Forbidden("only the command center and admins review flagged assignments")
    return None


# The review actions a detail offers (besides the loop's): accept the assignment, or move it to
# another group grid near the point.
REVIEW_ACTIONS = ("review", "reassign")


def incident_actions(principal: Principal, record: dict[str, Any], workable: bool) -> list[str]:
    """What `principal` may do with the incident `record` now: the loop actions `loop_refusal`
    lets through, then the review actions while it waits in the review queue."""
    out = list(_loop_actions(principal.role, State(record["state"]), workable))
    if record["flagged"] and record["reviewed_at"] is None and review_refusal(principal) is None:
        out += REVIEW_ACTIONS
    return out


@functools.cache
def _loop_actions(role: Role, state: State, workable: bool) -> tuple[str, ...]:
    """The loop actions `loop_refusal` lets a principal of `role` take in `state`: it looks at nothing else
    of the principal or the incident (the incident's id only names it in a refusal's message)."""
    principal = Principal(0, "", role)
    return tuple(a.value for a in Action if loop_refusal(principal, 0, state, workable, a) is None)


def mark_reviewed(session: Session, actor: Context | Principal, incident_id: int) -> dict[str, Any]:
    """The command center has checked a flagged assignment: it leaves the review queue (audited as
    "review"); the incident as the reviewer sees it."""
    ctx = as_context(actor)
    refusal = review_refusal(_acting(ctx))
    if refusal is not None:
        raise refusal
    done = session.execute(text("UPDATE incident SET reviewed_at = now() WHERE id = :i RETURNING id"),
                           {"i": incident_id}).first()
    if done is None:
        raise NotFound(f"no incident {incident_id}")
    ctx.audit(session, "review", resource="incident", resource_ids=[incident_id])
    return get_incident(session, _acting(ctx), incident_id)


# At most this many group grids are offered for a reassignment, nearest first.
MAX_GRID_CANDIDATES = 30


def grid_candidates(session: Session, actor: Context | Principal, incident_id: int, *,
                    tolerance_m: float) -> list[dict[str, Any]]:
    """The current group grids a reviewer may move an incident to, nearest first: those within
    `tolerance_m` (the intake's outside tolerance) plus the place match's precision of its point —
    the grids on a shared edge, the nearest ones for a point outside the town, the group grids of
    a vague place's area. The rule `reassign` enforces."""
    principal = _acting(as_context(actor))
    refusal = review_refusal(principal)
    if refusal is not None:
        raise refusal
    rows = session.execute(text(f"""
        SELECT g.code, g.name, v.code AS village_code, v.name AS village_name,
               round(ST_Distance(g.geom::geography, i.geom::geography)::numeric, 1)::float AS distance_m,
               g.code = i.group_code AS current
        FROM incident i
        JOIN grid g ON g.level = 4 AND g.valid_to IS NULL
         AND g.geom && ST_Expand(i.geom, (:r + coalesce(i.precision_m, 0)) / 80000.0)
         AND ST_DWithin(g.geom::geography, i.geom::geography, :r + coalesce(i.precision_m, 0))
        LEFT JOIN grid v ON v.code = g.parent_code AND v.valid_to IS NULL
        WHERE i.id = :id AND {visible_condition(principal)}
        ORDER BY distance_m, g.code LIMIT :n"""),
        {"id": incident_id, "r": tolerance_m, "n": MAX_GRID_CANDIDATES, **access_params(principal)},
    ).mappings().all()
    if not rows:
        get_incident(session, principal, incident_id)   # 404 when it is not there (or not visible)
    return [dict(r) for r in rows]


def reassign(session: Session, actor: Context | Principal, incident_id: int, grid_code: str, *,
             tolerance_m: float) -> dict[str, Any]:
    """The reviewer moves a flagged incident to another group grid (one of `grid_candidates`): its
    grid path, grid version and assignees follow that grid, and it leaves the review queue
    (audited as "review" with both grids); the incident as the reviewer sees it."""
    ctx = as_context(actor)
    principal = _acting(ctx)
    candidates = {c["code"] for c in grid_candidates(session, principal, incident_id, tolerance_m=tolerance_m)}
    if grid_code not in candidates:
        raise InputError(Problem(
            ("body", "grid_code"), f"{grid_code} is not a current group grid near incident {incident_id}; "
            f"one of: {', '.join(sorted(candidates)) or 'none'}", "not_a_candidate",
            ctx={"candidates": sorted(candidates)}))
    from gis.grids.locate import hierarchy_for

    before = session.execute(text("SELECT group_code FROM incident WHERE id = :i FOR UPDATE"),
                             {"i": incident_id}).scalar_one()
    codes = {level: ref.code for level, ref in path_to_town(grid_code, hierarchy_for(session, [grid_code])).items()}
    session.execute(text(
        "UPDATE incident SET group_code = :g4, village_code = :g3, area_code = :g2, town_code = :g1, "
        "grid_version_id = (SELECT id FROM grid WHERE code = :code AND valid_to IS NULL), reviewed_at = now() "
        "WHERE id = :i"), {"i": incident_id, "g4": grid_code, "g3": codes.get(3), "g2": codes.get(2),
                           "g1": codes.get(1), "code": grid_code})
    session.execute(text("DELETE FROM incident_assignee WHERE incident_id = :i"), {"i": incident_id})
    _route(session, incident_id, grid_code, codes.get(3))
    ctx.audit(session, "review", resource="incident", resource_ids=[incident_id],
              detail={"reassigned_from": before, "reassigned_to": grid_code})
    return get_incident(session, principal, incident_id)


def _acting(ctx: Context) -> Principal:
    """The principal an operation that needs an account acts as."""
    if ctx.principal is None:
        raise Forbidden("this operation needs a signed-in account")
    return ctx.principal


def record_reporter_reads(session: Session, ctx: Context, records: list[dict[str, Any]]) -> None:
    """Audit ("read_personal") the reporter names and phones these records showed unmasked."""
    principal = ctx.principal
    ids = [r["id"] for r in records if r.get("reporter_name") or r.get("reporter_phone")]
    if ids and principal is not None and reporter_shown(principal):
        ctx.audit(session, "read_personal", resource="incident", resource_ids=ids)


# A grid level's column: a subtree filter reads the index (column, occurred_at, id) of its level.
_LEVEL_COLUMN = {1: "town_code", 2: "area_code", 3: "village_code", 4: "group_code"}


def _subtree_condition(grid_code: str) -> str:
    """SQL on alias i (parameter :g): the incidents in the subtree of `grid_code`, any level.

    The code's pattern names its level (gis.codes, the same rule the grid table CHECKs), so the
    filter is one column and its (column, occurred_at, id) index serves the page."""
    from gis.codes import level_of_code

    level = level_of_code(grid_code)
    if level is not None and int(level) in _LEVEL_COLUMN:
        return f"i.{_LEVEL_COLUMN[int(level)]} = :g"
    return "(i.group_code = :g OR i.village_code = :g OR i.area_code = :g OR i.town_code = :g)"


def _subtrees_condition(codes: Sequence[str], params: dict[str, Any]) -> str:
    """SQL on alias i: the incidents in the subtree of any of `codes` (parameters :roots_<level>),
    one arm per level present, each served by its column."""
    from gis.codes import level_of_code

    by_column: dict[str, list[str]] = {}
    for code in codes:
        level = level_of_code(code)
        columns = [_LEVEL_COLUMN[int(level)]] if level is not None else list(_LEVEL_COLUMN.values())
        for column in columns:
            by_column.setdefault(column, []).append(code)
    if not by_column:
        return "FALSE"
    arms = []
    for column, values in sorted(by_column.items()):
        params[f"roots_{column}"] = values
        arms.append(f"i.{column} = ANY(:roots_{column})")
    return "(" + " OR ".join(arms) + ")"


# The grid level now responsible for an incident (gis.incidents.loop.urgency, in SQL on alias i,
# parameter :now): 4 until its stage deadline, then one level up at the deadline and one more per
# stage period (the stored deadline minus the stage's start), never above the town (1).
ESCALATION_LEVEL_SQL = (
    "(CASE WHEN i.stage_deadline IS NULL OR :now <= i.stage_deadline THEN 4 ELSE greatest(1, 3 - floor("
    "extract(epoch FROM :now - i.stage_deadline) / extract(epoch FROM i.stage_deadline - i.state_entered_at)"
    ")::int) END)")


@dataclass(frozen=True)
class IncidentFilter:
    """Which incidents a list, an export or an analysis asks for; every criterion is optional.

    The one place the incident filters are written: `where` turns them (and the caller's access)
    into one SQL condition on alias i, used by `list_incidents`, the review queue and hot spots."""

    grid_code: str | None = None              # any level: its whole subtree
    grid_codes: tuple[str, ...] | None = None  # several subtrees (an analysis' area)
    state: str | None = None
    category: str | None = None
    dispute_kind: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    overdue: bool | None = None
    escalation_level: int | None = None       # the grid level now responsible (4 group … 1 town)
    flagged: bool | None = None
    open_only: bool = False
    pending_review: bool = False
    bbox: tuple[float, float, float, float] | None = None   # min_lon, min_lat, max_lon, max_lat (a map's view)

    def where(self, principal: Principal | None, now: dt.datetime) -> tuple[str, dict[str, Any]]:
        """(SQL condition on alias i, its parameters); `principal` None: no access restriction
        (the CLI, analyses run by the system)."""
        where = [visible_condition(principal)] if principal is not None else []
        params: dict[str, Any] = {**(access_params(principal) if principal is not None else {}), "now": now}
        if self.grid_code:
            where.append(_subtree_condition(self.grid_code))
            params["g"] = self.grid_code
        if self.grid_codes is not None:
            where.append(_subtrees_condition(self.grid_codes, params))
        for name in ("state", "category", "dispute_kind"):
            value = getattr(self, name)
            if value is not None:
                where.append(f"i.{name} = :{name}")
                params[name] = value
        if self.open_only and self.state is None:
            where.append("i.state <> 'closed'")
        if self.since is not None:
            where.append("i.occurred_at >= :since")
            params["since"] = self.since
        if self.until is not None:
            where.append("i.occurred_at < :until")
            params["until"] = self.until
        if self.flagged is not None:
            where.append(("" if self.flagged else "NOT ") + FLAGGED_SQL)
        if self.pending_review:
            where.append("i.reviewed_at IS NULL")
        if self.bbox is not None:
            where.append("i.geom && ST_MakeEnvelope(:bbox_x0, :bbox_y0, :bbox_x1, :bbox_y1, 4326)")
            params.update(zip(("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"), self.bbox, strict=True))
        if self.overdue is not None:
            # The rule of gis.incidents.loop.urgency: overdue once `now` is past the stage deadline.
            where.append("i.stage_deadline < :now" if self.overdue
                         else "(i.stage_deadline IS NULL OR i.stage_deadline >= :now)")
        if self.escalation_level is not None:
            if self.escalation_level < 4:   # escalated means overdue: the deadline's index narrows it
                where.append("i.stage_deadline < :now")
            where.append(f"{ESCALATION_LEVEL_SQL} = :escalation_level")
            params["escalation_level"] = int(self.escalation_level)
        return " AND ".join(where) or "TRUE", params


def incident_filter(session: Session | None, principal: Principal | None, *, now: dt.datetime,
                    **criteria: Any) -> tuple[str, dict[str, Any]]:
    """(SQL condition on alias i, its parameters): the incidents the principal may see (None: all),
    filtered by `criteria` (the fields of `IncidentFilter`).

    Needs no query (`session` may be None): the subtree level comes from the code itself."""
    return IncidentFilter(**criteria).where(principal, now)


# One page in the list's order: the page's ids first (an index scan in that order, often
# index-only), then its rows.
PAGE_SQL = """
    WITH page AS (
        SELECT i.id, i.occurred_at FROM incident i WHERE {cond}
        ORDER BY i.occurred_at DESC, i.id DESC LIMIT :limit OFFSET :offset)
    SELECT """ + _COLUMNS + """ FROM page JOIN incident i ON i.id = page.id
    ORDER BY page.occurred_at DESC, page.id DESC"""

# The same page in the order of a to-do list: overdue first, then by deadline. Overdue means past
# the stored stage deadline (IncidentFilter.overdue), so the deadline's own order puts every
# overdue incident first, the longest overdue on top; closed ones (no deadline) last.
PAGE_BY_DEADLINE_SQL = """
    WITH page AS (
        SELECT i.id, i.stage_deadline FROM incident i WHERE {cond}
        ORDER BY i.stage_deadline ASC NULLS LAST, i.id ASC LIMIT :limit OFFSET :offset)
    SELECT """ + _COLUMNS + """ FROM page JOIN incident i ON i.id = page.id
    ORDER BY page.stage_deadline ASC NULLS LAST, page.id ASC"""
PAGE_ORDERS = {"newest": PAGE_SQL, "deadline": PAGE_BY_DEADLINE_SQL}


@dataclass
class IncidentPage:
    items: list[dict[str, Any]]
    total: int
    total_exact: bool = True

    def __iter__(self) -> Iterator[Any]:   # rows, total = list_incidents(...)
        return iter((self.items, self.total))


def list_incidents(
    session: Session,
    actor: Context | Principal,
    filters: IncidentFilter | None = None,
    *,
    limit: int = 100,
    offset: int = 0,
    count_up_to: int | None = None,
    now: dt.datetime | None = None,
    order: str = "newest",
    **criteria: Any,
) -> IncidentPage:
    """One page of the incidents the principal may see, newest first (occurred_at, then id) or,
    with `order="deadline"`, overdue first and then by deadline (PAGE_BY_DEADLINE_SQL), by
    `filters` and/or `criteria` (the fields of `IncidentFilter`).

    Filtering, order and paging all happen in SQL: a page reads about `offset + limit` index
    entries and `limit` rows, whatever the table holds. A grid code of any level selects its whole
    subtree; `overdue` compares the stored stage deadline (migration 0007) with `now`. The total is
    counted exactly, or, with `count_up_to`, exactly up to that many and beyond it estimated by the
    planner (`total_exact` False): counting a million rows costs more than the page. Given a
    Context (a reader's request), the reporter names and phones shown unmasked are audited.
    """
    principal = _acting(as_context(actor))
    now = now or dt.datetime.now(dt.UTC)
    chosen = replace(filters or IncidentFilter(), **criteria)
    cond, params = chosen.where(principal, now)
    params.update(limit=limit, offset=offset)
    rows = driver_rows(session, PAGE_ORDERS[order].format(cond=cond), params)
    items = [_shape(r, principal, now) for r in rows]
    if isinstance(actor, Context):
        record_reporter_reads(session, actor, items)
    if offset == 0 and len(items) < limit:   # the whole match is on this page: no count needed
        return IncidentPage(items, len(items))
    total, exact = count_matches(lambda sql, p: driver_rows(session, sql, p), cond, params,
                                 count_up_to)
    if not exact and items:   # an estimate is at least what this page shows to have matched
        total = max(total, offset + len(items))
    return IncidentPage(items, total, total_exact=exact)


# --- one page shaped by PostgreSQL (GET /incidents as JSON) ----------------------------------------------------
# The same answer as `list_incidents` + `_shape`, built as JSON text by PostgreSQL: the page's 50 rows are not
# turned into Python objects and back (at ~35 µs a row that cost more than the page's SQL). `_shape` stays the
# definition: tests/test_incident_list_json.py compares the two on every incident of the sample town, for a
# role that sees reporters and one that sees them masked.

def _iso_sql(column: str) -> str:
    """SQL: a timestamptz as Python's `isoformat()` writes it in UTC (microseconds only when not zero)."""
    return (f"replace(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US+00:00'), "
            "'.000000+', '+')")


# gis.privacy.mask_name and mask_phone in SQL (parameter :compound, COMPOUND_SURNAMES). A phone keeps only its
# ASCII digits here (Python's isdigit also counts other scripts' digits): the SQL form never shows more.
_MASKED_NAME_SQL = ("CASE WHEN coalesce(i.reporter_name, '') = '' THEN i.reporter_name "
                    "WHEN length(i.reporter_name) > 2 AND left(i.reporter_name, 2) = ANY(:compound) "
                    "THEN left(i.reporter_name, 2) || '*' ELSE left(i.reporter_name, 1) || '*' END")
_DIGITS_SQL = "translate(i.reporter_phone, translate(i.reporter_phone, '0123456789', ''), '')"
_MASKED_PHONE_SQL = ("CASE WHEN coalesce(i.reporter_phone, '') = '' THEN i.reporter_phone "
                     "WHEN length(d.digits) < 7 THEN repeat('*', length(d.digits)) "
                     "ELSE left(d.digits, 3) || repeat('*', length(d.digits) - 7) || right(d.digits, 4) END")

# review_reasons() in SQL.
_REASONS_SQL = (
    "array_remove(ARRAY[CASE WHEN i.on_boundary THEN 'on_boundary' END, "
    "CASE WHEN i.outside_distance_m IS NOT NULL THEN 'outside_town' END, "
    "CASE WHEN coalesce(i.village_code, '') = '' OR i.group_code = i.village_code THEN "
    "CASE WHEN i.location_source = 'gazetteer' THEN 'vague_place' ELSE 'no_group_grid' END END], NULL)")

# _shape's assigned_level (how many different codes the incident has) in SQL: each code counts unless empty or
# equal to one before it.
_ASSIGNED_LEVEL_SQL = (
    "((coalesce(i.town_code, '') <> '')::int"
    " + (coalesce(i.area_code, '') NOT IN ('', coalesce(i.town_code, '')))::int"
    " + (coalesce(i.village_code, '') NOT IN ('', coalesce(i.town_code, ''), coalesce(i.area_code, '')))::int"
    " + (coalesce(i.group_code, '') NOT IN ('', coalesce(i.town_code, ''), coalesce(i.area_code, ''),"
    " coalesce(i.village_code, '')))::int)")


def _row_sql(principal: Principal) -> str:
    """SQL select list on aliases i, d (digits), e (escalation level), r (reasons): one row as `_shape` makes
    it, one column per key."""
    shown = reporter_shown(principal)
    cols = [f"i.{c}" for c in ("id", "external_id", "category", "dispute_kind", "description")]
    cols += [f"{_iso_sql('i.' + c)} AS {c}" for c in ("occurred_at", "reported_at")]
    cols += ["i.reporter_name" if shown else f"{_MASKED_NAME_SQL} AS reporter_name",
             "i.reporter_phone" if shown else f"{_MASKED_PHONE_SQL} AS reporter_phone",
             "ST_X(i.geom) AS lon", "ST_Y(i.geom) AS lat"]
    cols += [f"i.{c}" for c in (
        "location_source", "input_crs", "place_query", "place_match", "precision_m", "group_code", "village_code",
        "area_code", "town_code", "grid_version_id", "on_boundary", "outside_distance_m")]
    cols += [f"{_iso_sql('i.reviewed_at')} AS reviewed_at", "i.state",
             f"{_iso_sql('i.state_entered_at')} AS state_entered_at", "i.satisfied",
             f"{_iso_sql('i.stage_deadline')} AS deadline",
             "coalesce(i.stage_deadline < :now, false) AS overdue",
             "e.level AS escalation_level",
             "CASE e.level WHEN 4 THEN i.group_code WHEN 3 THEN i.village_code "
             "WHEN 2 THEN i.area_code ELSE i.town_code END AS escalated_to",
             f"{_ASSIGNED_LEVEL_SQL} AS assigned_level",
             "r.reasons AS review_reasons", "cardinality(r.reasons) > 0 AS flagged"]
    return ", ".join(cols)


def page_json_sql(principal: Principal, cond: str, order: str = "newest") -> str:
    """SQL: one page (PAGE_ORDERS' rows, parameters :limit, :offset, :now, :compound and the condition's) as
    one row: `items` (the JSON array of the shaped rows, as text), `shown` (how many) and `reporter_ids` (the
    ids whose reporter name or phone the page shows: to audit when the role sees them unmasked)."""
    key, direction = (("occurred_at", "DESC"), ("stage_deadline", "ASC NULLS LAST"))[order == "deadline"]
    ident = "DESC" if order == "newest" else "ASC"
    page_order = f"page.{key} {direction}, page.id {ident}"
    digits = "" if reporter_shown(principal) else f"CROSS JOIN LATERAL (SELECT {_DIGITS_SQL} AS digits) d"
    return f"""
    WITH page AS (
        SELECT i.id, i.{key} FROM incident i WHERE {cond}
        ORDER BY i.{key} {direction}, i.id {ident} LIMIT :limit OFFSET :offset)
    SELECT coalesce(json_agg(x ORDER BY {page_order}), '[]')::text AS items,
           count(*) AS shown,
           array_agg(i.id ORDER BY {page_order}) FILTER (
               WHERE coalesce(i.reporter_name, '') <> '' OR coalesce(i.reporter_phone, '') <> '') AS reporter_ids
    FROM page JOIN incident i ON i.id = page.id
    {digits}
    CROSS JOIN LATERAL (SELECT {ESCALATION_LEVEL_SQL} AS level) e
    CROSS JOIN LATERAL (SELECT {_REASONS_SQL} AS reasons) r
    CROSS JOIN LATERAL (SELECT {_row_sql(principal)}) x"""


@dataclass
class JsonPage:
    items_json: str   # the JSON array of the page's rows, as `list_incidents` shapes them
    shown: int
    total: int
    total_exact: bool = True


@dataclass(frozen=True)
class PageStatements:
    """The statements of one JSON page, sent to PostgreSQL in ONE message (`gis.db.script_rows`): the page,
    then (with a cap) the planner's estimate of the matches; `commit`: the message also ends the transaction
    (when nothing is left to write: the role sees no reporter unmasked, so no audit row follows)."""

    statements: list[str]
    params: dict[str, Any]
    cond: str
    count_up_to: int | None


def page_statements(principal: Principal, filters: IncidentFilter, *, order: str, limit: int, offset: int,
                    count_up_to: int | None, now: dt.datetime, commit: bool) -> PageStatements:
    from gis.privacy import COMPOUND_SURNAMES

    cond, params = filters.where(principal, now)
    params.update(limit=limit, offset=offset, compound=sorted(COMPOUND_SURNAMES))
    statements = [page_json_sql(principal, cond, order)]
    if count_up_to is not None:
        statements.append(estimate_sql(cond))
    if commit:
        statements.append("COMMIT")
    return PageStatements(statements, params, cond, count_up_to)


def list_incidents_json(session: Session, ctx: Context, filters: IncidentFilter, *, order: str = "newest",
                        limit: int = 100, offset: int = 0, count_up_to: int | None = None,
                        now: dt.datetime | None = None, end_transaction: bool = False) -> JsonPage:
    """`list_incidents` for the JSON list: the same rows, order, total and audit, shaped by PostgreSQL, and the
    page and the planner's estimate in one round trip. With `end_transaction` (a request that does nothing
    else) that message also commits when the role sees no reporter unmasked (nothing to audit)."""
    from gis.db import script_rows

    principal = _acting(ctx)
    now = now or dt.datetime.now(dt.UTC)
    audited = reporter_shown(principal)
    stmts = page_statements(principal, filters, order=order, limit=limit, offset=offset, count_up_to=count_up_to,
                            now=now, commit=end_transaction and not audited)
    results = script_rows(session, stmts.statements, stmts.params)
    page = results[0][0]
    if audited and page["reporter_ids"]:
        ctx.audit(session, "read_personal", resource="incident", resource_ids=page["reporter_ids"])
    shown = int(page["shown"])
    if offset == 0 and shown < limit:   # the whole match is on this page: no count needed
        return JsonPage(page["items"], shown, shown)
    total, exact = count_matches(lambda sql, p: driver_rows(session, sql, p), stmts.cond, stmts.params, count_up_to,
                                 plan=results[1] if count_up_to is not None else None)
    if not exact and shown:   # an estimate is at least what this page shows to have matched
        total = max(total, offset + shown)
    return JsonPage(page["items"], shown, total, total_exact=exact)


# The command center's review queue: flagged assignments nobody has checked yet. Migration 0009's
# partial index holds exactly these rows in the list's order.
REVIEW_QUEUE = IncidentFilter(flagged=True, pending_review=True)


def review_queue(session: Session, actor: Context | Principal, *, limit: int = 100, offset: int = 0,
                 count_up_to: int | None = None, now: dt.datetime | None = None,
                 **criteria: Any) -> IncidentPage:
    """One page of the review queue (newest first), filtered further by `criteria`."""
    return list_incidents(session, actor, REVIEW_QUEUE, limit=limit, offset=offset,
                          count_up_to=count_up_to, now=now, **criteria)


def estimate_sql(cond: str) -> str:
    """The planner's estimate of the incidents matching `cond` (count_matches reads its "Plan Rows")."""
    return f"EXPLAIN (FORMAT JSON) SELECT 1 FROM incident i WHERE {cond}"


def count_matches(run: Callable[[str, dict[str, Any]], list[dict[str, Any]]], cond: str, params: dict[str, Any],
                  cap: int | None, *, plan: list[dict[str, Any]] | None = None) -> tuple[int, bool]:
    """(how many incidents match `cond`, whether that is exact); `run(sql, params)` -> dict rows.

    Without a cap: count(*). With one, the rule that keeps the cost of a total bounded: when the
    planner expects more than `cap` matches, its estimate is the answer (not exact); otherwise the
    matches are counted, stopping at cap + 1 (a planner that guessed low costs at most that), and
    past the cap the answer is again an estimate, at least cap + 1.
    """
    if cap is None:
        return run(f"SELECT count(*) AS n FROM incident i WHERE {cond}", params)[0]["n"], True
    if plan is None:   # `plan`: estimate_sql's rows, when the caller sent it with the page
        plan = run(estimate_sql(cond), params)
    estimate = int(plan[0]["QUERY PLAN"][0]["Plan"]["Plan Rows"])
    if estimate > cap:
        return estimate, False
    counted = run(f"SELECT count(*) AS n FROM (SELECT 1 FROM incident i WHERE {cond} LIMIT :cap) c",
                  {**params, "cap": cap + 1})[0]["n"]
    return (counted, True) if counted <= cap else (max(estimate, cap + 1), False)
