"""Search for the command center's search box: grids, natural villages, households and incidents by
code, number or Chinese name, each hit with a place for the map to fly to.

Every lookup is index-backed (migration 0015): a grid code by its prefix (a range on the current-code
index), a name by prefix (text_pattern_ops) and from three characters anywhere in it (pg_trgm), a
household by number or address (trigrams, from three characters), an incident by id or external id;
each kind stops at `limit` rows, so the cost follows the answer, not the tables.

Households come only to roles that may see them, by the household access rule (`access_for`), shown
or masked by `present`; an address is matched only where the caller may see it unmasked (a match on
a masked field would reveal it), and a hit that shows personal fields is audited like a household
read. Incidents come by the one incident predicate (`IncidentFilter.where`).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.auth.roles import Permission
from gis.context import Context
from gis.errors import InputError, Problem
from gis.households import access_for, audit_read, present
from gis.incidents.categories import CATEGORY_NAMES_ZH, Category
from gis.incidents.loop import STATE_NAMES_ZH, State
from gis.incidents.service import IncidentFilter

MAX_QUERY_CHARS = 50
MAX_HITS = 50
# Below this many characters a name matches by its start only: a trigram index cannot narrow a
# one- or two-character "anywhere" match.
CONTAINS_MIN_CHARS = 3

# The level as the search box says it after a name: 刘寨村（行政村）.
LEVEL_WORDS = {1: "镇域", 2: "管理片区", 3: "行政村", 4: "村民小组网格"}

_INCIDENT_NUMBER = re.compile(r"^(?:#|事项)?\s*(\d{1,18})$")


@dataclass(frozen=True)
class SearchQuery:
    text: str      # stripped
    prefix: str    # LIKE pattern: starts with
    contains: str  # LIKE pattern: anywhere


def _like_escaped(q: str) -> str:
    return q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def parse_query(q: str) -> SearchQuery:
    """The query as typed, trimmed; 422 naming `q` when it is empty or too long."""
    stripped = q.strip()
    if not stripped:
        raise InputError(Problem(("query", "q"), "type something to search for"))
    if len(stripped) > MAX_QUERY_CHARS:
        raise InputError(Problem(("query", "q"), f"at most {MAX_QUERY_CHARS} characters"))
    if "\x00" in stripped:
        raise InputError(Problem(("query", "q"), "text may not contain NUL characters (\\u0000)"))
    esc = _like_escaped(stripped)
    return SearchQuery(stripped, esc + "%", "%" + esc + "%")


_GRIDS = """
    SELECT g.code, g.name, g.level, ST_XMin(g.geom) AS x0, ST_YMin(g.geom) AS y0,
           ST_XMax(g.geom) AS x1, ST_YMax(g.geom) AS y1
    FROM grid g
    WHERE g.valid_to IS NULL AND ({match})
    ORDER BY {order}
    LIMIT :limit
"""
# By name: the exact name first, then names starting with the query, shallow levels first.
_BY_NAME = "(g.name = :q) DESC, (g.name LIKE :prefix) DESC, g.level, g.code"
# By code: in code order, read from the current-code index, stopping at the limit.
_BY_CODE = "g.code"

_NATURAL_VILLAGES = """
    SELECT nv.id, nv.name, v.name AS village_name, ST_X(nv.geom) AS lon, ST_Y(nv.geom) AS lat
    FROM (SELECT * FROM natural_village n WHERE {match}
          ORDER BY (n.name = :q) DESC, (n.name LIKE :prefix) DESC, n.id LIMIT :limit) nv
    LEFT JOIN grid v ON v.code = nv.village_code AND v.valid_to IS NULL
    ORDER BY (nv.name = :q) DESC, (nv.name LIKE :prefix) DESC, nv.id
"""

_HOUSEHOLDS = """
    SELECT h.id, h.household_no, h.address, h.head_name, h.phone, ST_X(h.geom) AS lon, ST_Y(h.geom) AS lat,
           ({personal}) AS personal_shown
    FROM household h
    WHERE ({rows}) AND (h.household_no LIKE :contains OR (({personal}) AND h.address LIKE :contains))
    ORDER BY (h.household_no = :q) DESC, h.id
    LIMIT :limit
"""

_INCIDENTS = """
    SELECT i.id, i.external_id, i.category, i.state, ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat
    FROM incident i
    WHERE ({cond}) AND ({match})
    ORDER BY i.id DESC
    LIMIT :limit
"""


def _grid_hits(session: Session, sq: SearchQuery, limit: int) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"q": sq.text, "prefix": sq.prefix, "contains": sq.contains, "limit": limit}
    if sq.text.isdigit() and len(sq.text) <= 15:
        # A code prefix: the range of 15-digit codes that start with it (the current-code index).
        match, order = "g.code BETWEEN :code_lo AND :code_hi", _BY_CODE
        params.update(code_lo=sq.text.ljust(15, "0"), code_hi=sq.text.ljust(15, "9"))
    elif len(sq.text) >= CONTAINS_MIN_CHARS:
        match, order = "g.name LIKE :contains", _BY_NAME
    else:
        match, order = "g.name LIKE :prefix", _BY_NAME
    rows = session.execute(text(_GRIDS.format(match=match, order=order)), params).mappings()
    return [{
        "kind": "grid", "code": r["code"], "level": r["level"],
        "label": f"{r['name']}（{LEVEL_WORDS[r['level']]}）",
        "bbox": [r["x0"], r["y0"], r["x1"], r["y1"]],
    } for r in rows]


def _natural_village_hits(session: Session, sq: SearchQuery, limit: int) -> list[dict[str, Any]]:
    match = "n.name LIKE :contains" if len(sq.text) >= CONTAINS_MIN_CHARS else "n.name LIKE :prefix"
    rows = session.execute(text(_NATURAL_VILLAGES.format(match=match)),
                           {"q": sq.text, "prefix": sq.prefix, "contains": sq.contains, "limit": limit}).mappings()
    return [{
        "kind": "natural_village", "id": r["id"],
        "label": f"{r['name']}（自然村" + (f"，{r['village_name']}" if r["village_name"] else "") + "）",
        "point": [r["lon"], r["lat"]],
    } for r in rows]


def _household_hits(session: Session, ctx: Context, sq: SearchQuery, limit: int) -> list[dict[str, Any]]:
    principal = ctx.principal
    if principal is None or not principal.can(Permission.VIEW_HOUSEHOLDS) or len(sq.text) < CONTAINS_MIN_CHARS:
        return []
    acc = access_for(principal)
    if acc.rows == "FALSE":
        return []
    rows = session.execute(
        text(_HOUSEHOLDS.format(rows=acc.rows, personal=acc.personal)),
        {**acc.params, "q": sq.text, "contains": sq.contains, "limit": limit},
    ).mappings()
    records = [present(r) for r in rows]
    audit_read(session, ctx, records, "search")
    return [{
        "kind": "household", "id": r["id"], "code": r["household_no"],
        "label": f"户 {r['household_no']} · {r['address']}（户主 {r['head_name']}）",
        "point": [r["lon"], r["lat"]], "personal_fields": r["personal_fields"],
    } for r in records]


def _incident_hits(session: Session, ctx: Context, sq: SearchQuery, limit: int,
                   now: dt.datetime) -> list[dict[str, Any]]:
    principal = ctx.principal
    if principal is None or not principal.can(Permission.VIEW_INCIDENTS):
        return []
    cond, params = IncidentFilter().where(principal, now)
    number = _INCIDENT_NUMBER.match(sq.text)
    matches = ["i.external_id = :external_id"]
    params.update(external_id=sq.text, limit=limit)
    if number is not None and int(number.group(1)) <= 2**62:
        matches.append("i.id = :incident_id")
        params["incident_id"] = int(number.group(1))
    rows = session.execute(text(_INCIDENTS.format(cond=cond, match=" OR ".join(matches))), params).mappings()
    return [{
        "kind": "incident", "id": r["id"], "code": r["external_id"],
        "label": (f"事项 #{r['id']} · {CATEGORY_NAMES_ZH[Category(r['category'])]}"
                  f" · {STATE_NAMES_ZH[State(r['state'])]}"),
        "point": [r["lon"], r["lat"]],
    } for r in rows]


def search(session: Session, ctx: Context, q: str, *, limit: int = 10,
           now: dt.datetime | None = None) -> dict[str, Any]:
    """Hits for `q` as the caller may see them: grids first, then natural villages, incidents and
    households; at most `limit` in all (each kind reads at most `limit` rows)."""
    sq = parse_query(q)
    if not 1 <= limit <= MAX_HITS:
        raise InputError(Problem(("query", "limit"), f"between 1 and {MAX_HITS}"))
    now = now or dt.datetime.now(dt.UTC)
    hits = _grid_hits(session, sq, limit)
    if len(hits) < limit:
        hits += _natural_village_hits(session, sq, limit - len(hits))
    if len(hits) < limit:
        hits += _incident_hits(session, ctx, sq, limit - len(hits), now)
    if len(hits) < limit:
        hits += _household_hits(session, ctx, sq, limit - len(hits))
    return {"q": sq.text, "hits": hits}
