"""Households as each role may see them: which rows, and whether personal fields are shown or masked.

Row access (besides the role needing the view_households permission):
- admin, command_center: every household;
- emergency: households inside the extent of an active emergency, nothing else;
- grid_staff, supervisor: households inside the grids of their scope;
- planner: no household rows at all (counts per grid only).
Personal fields (head's name, phone, address, members' names, ID numbers, birth dates):
- shown to admin; to emergency teams (inside an active emergency, the only rows they get); to grid
  staff and supervisors for their own grids; to the command center only for households inside an
  active emergency's extent;
- masked (张*, 138****1234, 411324********1234) everywhere else.
Every answer that shows personal fields is written to the audit log here (`ctx.audit`, in the
caller's transaction), with the ids of exactly the households whose fields were shown.

`access_for` is the one predicate for every household-bearing answer (the household list, detail
and map, the flood households list and the 明白卡); `present` the one way a row is shown or masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.auth.principal import Principal
from gis.auth.roles import Role
from gis.context import Context
from gis.errors import NotFound
from gis.privacy import mask_record

IN_SCOPE = (
    "EXISTS (SELECT 1 FROM grid sg WHERE sg.valid_to IS NULL AND sg.code = ANY(:scope) "
    "AND ST_Intersects(sg.geom, h.geom))"
)
# Households of a grid (any level): the grid's polygon finds the candidates through the household GiST
# index (driven from the one current grid row, so the work grows with the houses in that polygon,
# never with the table), and the house's own grid (household_grid_at, migration 0010: the one
# house -> grid rule) decides a house on a shared edge. GRID_IDS is the id list; IN_GRID the same as a
# condition on alias h of table household.
GRID_IDS = (
    "SELECT gh.id FROM grid fg JOIN household gh ON ST_Intersects(fg.geom, gh.geom) "
    "CROSS JOIN LATERAL household_grid_at(gh.geom) hga "
    "WHERE fg.valid_to IS NULL AND fg.code = :grid_code "
    "AND :grid_code IN (hga.group_code, hga.village_code, hga.area_code, hga.town_code)"
)
IN_GRID = f"h.id IN ({GRID_IDS})"
IN_GRID_BEFORE = (
    "EXISTS (SELECT 1 FROM grid fg WHERE fg.valid_to IS NULL AND fg.code = :grid_code "
    "AND ST_Intersects(fg.geom, h.geom)) AND EXISTS (SELECT 1 FROM household_grid_at(h.geom) hga "
    "WHERE :grid_code IN (hga.group_code, hga.village_code, hga.area_code, hga.town_code))"
)
IN_EMERGENCY = (
    "EXISTS (SELECT 1 FROM emergency e WHERE e.closed_at IS NULL AND ST_Intersects(e.extent, h.geom))"
)
# The ids of the rows IN_SCOPE / IN_EMERGENCY admit, found from the polygons through the household
# GiST index. A polygon test in EXISTS is a semi-join the planner can only run from the household side
# (a whole-table scan); a list over table household starts from these ids instead (Access.ids) and
# still applies the rule itself.
SCOPE_IDS = (
    "SELECT DISTINCT sh.id FROM grid sg JOIN household sh ON ST_Intersects(sg.geom, sh.geom) "
    "WHERE sg.valid_to IS NULL AND sg.code = ANY(:scope)"
)
EMERGENCY_IDS = (
    "SELECT DISTINCT eh.id FROM emergency e JOIN household eh ON ST_Intersects(e.extent, eh.geom) "
    "WHERE e.closed_at IS NULL"
)


@dataclass(frozen=True)
class Access:
    rows: str       # SQL condition on alias h: which rows the principal may see
    personal: str   # SQL condition on alias h: whether personal fields are shown unmasked
    params: dict[str, Any]    # the bind parameters both conditions use
    # A SELECT of the ids of the households `rows` admits (None: every household), which a list over
    # table household can start from; it never replaces `rows`.
    ids: str | None = None


def access_for(principal: Principal) -> Access:
    """Which household rows `principal` may see and where their personal fields are shown."""
    role = principal.role
    params = {"scope": list(principal.scope_codes)}
    if role is Role.ADMIN:
        return Access("TRUE", "TRUE", params)
    if role is Role.COMMAND_CENTER:
        return Access("TRUE", IN_EMERGENCY, params)
    if role is Role.EMERGENCY:
        return Access(IN_EMERGENCY, "TRUE", params, EMERGENCY_IDS)
    if role in (Role.GRID_STAFF, Role.SUPERVISOR):
        return Access(IN_SCOPE, "TRUE", params, SCOPE_IDS)
    return Access("FALSE", "FALSE", params)


# The rows are chosen (filtered, ordered, paged) first, in the subquery `{page}` over alias h; only
# they get their grid and natural village, so a deep page does not work out the skipped rows'.
_SELECT = """
    SELECT h.id, h.household_no, h.address, h.head_name, h.phone, h.residents, h.elderly,
           h.children, h.disabled, h.pregnant, h.bedridden, h.floors,
           nv.name AS natural_village, ST_X(h.geom) AS lon, ST_Y(h.geom) AS lat,
           hg.group_code AS grid_code, hg.group_name AS grid_name, h.personal_shown
    FROM (SELECT h.*, ({personal}) AS personal_shown FROM household h {page}) h
    LEFT JOIN natural_village nv ON nv.id = h.natural_village_id
    LEFT JOIN LATERAL household_grid_at(h.geom) hg ON true
    ORDER BY h.id
"""


def present(row: Mapping[Any, Any], members: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A household row (with `personal_shown` from Access.personal) as the reader may see it:
    personal fields of the household and of its members (`members`, or the row's own "members")
    shown or masked, and `personal_fields` saying which."""
    d = dict(row)
    shown = bool(d.pop("personal_shown"))
    if members is None:
        members = d.pop("members", None)
    if not shown:
        d = mask_record(d, "household")
    d["personal_fields"] = "shown" if shown else "masked"
    if members is not None:
        d["members"] = [dict(m) if shown else mask_record(m, "resident") for m in members]
    return d


def list_households(
    session: Session,
    principal: Principal,
    *,
    grid_code: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    limit: int = 100,
    offset: int = 0,
    ctx: Context | None = None,
    fmt: str = "json",
) -> tuple[list[dict[str, Any]], int]:
    """Households visible to `principal`, filtered by a grid (any level) and/or a bbox; ordered by id,
    paged in SQL. With `ctx`, a page that shows personal fields is audited."""
    count_sql, page_sql, params = list_statements(principal, grid_code=grid_code, bbox=bbox, limit=limit, offset=offset)
    total = session.execute(text(count_sql), params).scalar_one()
    rows = session.execute(text(page_sql), params).mappings()
    records = [present(r) for r in rows]
    if ctx is not None:
        audit_read(session, ctx, records, fmt)
    return records, total


def list_statements(
    principal: Principal,
    *,
    grid_code: str | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    limit: int = 100,
    offset: int = 0,
    before: bool = False,
) -> tuple[str, str, dict[str, Any]]:
    """The two statements of a household list page (the count, then the page) and their parameters.
    `before`: the statements as they were before issue 13 (IN_GRID_BEFORE, no start list), only for
    tests and the benchmark to compare with."""
    acc = access_for(principal)
    where = [f"({acc.rows})"]
    params: dict[str, Any] = {**acc.params, "limit": limit, "offset": offset}
    # The rows start from an id list where one is small and index-backed: the grid's houses, else the
    # caller's scope (a bbox alone is served by the household GiST index directly).
    start = None
    if grid_code is not None:
        params["grid_code"] = grid_code
        if before:
            where.append(IN_GRID_BEFORE)
        else:
            start = GRID_IDS + (" AND gh.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)" if bbox else "")
    elif bbox is None and not before:
        start = acc.ids
    if bbox is not None:
        where.append("h.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)")
        params.update(x0=bbox[0], y0=bbox[1], x1=bbox[2], y1=bbox[3])
    cond = " AND ".join(where)
    with_ = f"WITH start AS MATERIALIZED ({start}) " if start else ""
    join = "JOIN start ON start.id = h.id " if start else ""
    count_sql = f"{with_}SELECT count(*) FROM household h {join}WHERE {cond}"
    page_sql = with_ + _SELECT.format(
        personal=acc.personal, page=f"{join}WHERE {cond} ORDER BY h.id LIMIT :limit OFFSET :offset"
    )
    return count_sql, page_sql, params


def get_household(
    session: Session, principal: Principal, household_id: int, ctx: Context | None = None
) -> dict[str, Any]:
    """One household with its members; a household outside the principal's access is 'not found'.
    With `ctx`, a read that shows personal fields is audited."""
    acc = access_for(principal)
    row = session.execute(
        text(_SELECT.format(personal=acc.personal, page=f"WHERE h.id = :id AND ({acc.rows})")),
        {**acc.params, "id": household_id},
    ).mappings().first()
    if row is None:
        # The same answer whether it does not exist or is outside the caller's access: no probing.
        raise NotFound(f"no household {household_id} that you may see")
    members = [
        dict(m)
        for m in session.execute(
            text(
                "SELECT name, gender, birth_date, id_number, relation_to_head, is_disabled, is_pregnant, "
                "is_bedridden FROM resident WHERE household_id = :id ORDER BY id"
            ),
            {"id": household_id},
        ).mappings()
    ]
    for m in members:
        m["birth_date"] = m["birth_date"].isoformat() if m["birth_date"] else None
    record = present(row, members)
    if ctx is not None:
        audit_read(session, ctx, [record], "json")
    return record


def counts_by_grid(session: Session, level: int | None = None) -> list[dict[str, Any]]:
    """Households, residents and vulnerable members per current grid: aggregates, no personal field."""
    # Each household counts once per level, in its own grid and that grid's ancestors (house → grid,
    # migration 0010): a house on a shared edge is not counted in both neighbours.
    rows = session.execute(
        text(
            """
            WITH per AS (
                SELECT c.code, count(*) AS households, sum(h.residents) AS residents,
                       sum(h.elderly) AS elderly, sum(h.children) AS children, sum(h.disabled) AS disabled,
                       sum(h.pregnant) AS pregnant, sum(h.bedridden) AS bedridden
                FROM household h
                CROSS JOIN LATERAL household_grid_at(h.geom) hg
                CROSS JOIN LATERAL (VALUES (hg.group_code), (hg.village_code), (hg.area_code), (hg.town_code)) c(code)
                WHERE c.code IS NOT NULL
                GROUP BY c.code
            )
            SELECT g.code, g.name, g.level, coalesce(per.households, 0) AS households,
                   coalesce(per.residents, 0) AS residents, coalesce(per.elderly, 0) AS elderly,
                   coalesce(per.children, 0) AS children, coalesce(per.disabled, 0) AS disabled,
                   coalesce(per.pregnant, 0) AS pregnant, coalesce(per.bedridden, 0) AS bedridden
            FROM grid g LEFT JOIN per ON per.code = g.code
            WHERE g.valid_to IS NULL AND (CAST(:level AS int) IS NULL OR g.level = :level)
            ORDER BY g.code
            """
        ),
        {"level": level},
    ).mappings()
    return [{k: (int(v) if k not in ("code", "name") else v) for k, v in r.items()} for r in rows]


def shown_ids(records: list[dict[str, Any]]) -> list[int]:
    """Ids of the households whose personal fields an answer shows (for the audit log)."""
    return [r["id"] for r in records if r.get("personal_fields") == "shown"]


def audit_read(session: Session, ctx: Context, records: list[dict[str, Any]], fmt: str) -> None:
    """The audit row of a household answer: `read_personal` with the ids whose fields it shows."""
    ids = shown_ids(records)
    if ids:
        ctx.audit(session, "read_personal", resource="household", resource_ids=ids, detail={"format": fmt})
