"""The flood households list: the finder's answer stored once per (extent, buffer, data version), read a page at a time.

The finder (gis/flood/finder.py) works out every household of an extent together — rescue order and
shelters depend on all of them — which takes seconds for a large stage. So the writes that create
an extent (an upload, a drawing, a modelled stage: POSTs, the DEM import and the CLI) store its
answer (`store_answer`, unmasked, in rescue order) with the data version it was computed on
(migration 0010: a counter bumped by every statement that changes households, grids, staff,
shelters or roads). A reader (`list_flood_households`) filters by access
(gis.households.access_for), by grid and pages in SQL over the stored rows, masks personal fields
per row as the household list does, and reads the members of its page only. Where no answer is
stored for the current data (another buffer, changed data) the reader computes it in memory without
storing it (GETs never write), with the same filter, order and shape.

One operation for the API and the CLI: the same query gives the same rows, the same CSV bytes
(gis.flood.labels.EXPORT) and the same audit row, written here with the caller's Context.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.auth.principal import Principal
from gis.context import Context
from gis.errors import InputError, NotFound, Problem
from gis.flood import finder
from gis.households import access_for, present


@dataclass
class FloodPage:
    extent: dict[str, Any]
    total: int  # households matching the grid filter (all pages)
    offset: int
    totals: dict[str, int]  # over every household of the extent the reader may see
    items: list[dict[str, Any]]
    shelter_method: str | None = None
    distance_kind: str | None = None
    unplaced: list[dict[str, Any]] = field(default_factory=list)  # those of this page no shelter could take
    shelters: list[dict[str, Any]] = field(default_factory=list)


def grid_filter(grid_code: str | None) -> str | None:
    """The grid filter as the lists apply it: a town code (…000000) keeps every household."""
    if grid_code is None or grid_code.endswith("000000"):
        return None
    return grid_code


def data_version(session: Session) -> int:
    return int(session.execute(text("SELECT version FROM flood_data_version")).scalar_one())


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def store_answer(session: Session, ext: Any, buffer_m: float = 0.0) -> None:
    """Compute the finder's whole answer for the stored extent `ext` and keep it (a write)."""
    if getattr(ext, "id", None) is None:
        return
    version = data_version(session)
    result = finder.flooded_households(session, None, ext, buffer_m, with_members=False)
    params = {"e": ext.id, "b": float(buffer_m)}
    session.execute(text("DELETE FROM flood_answer WHERE extent_id = :e AND buffer_m = :b"), params)
    session.execute(
        text("INSERT INTO flood_answer (extent_id, buffer_m, data_version, shelter_method, distance_kind, "
             "shelters, totals) VALUES (:e, :b, :v, :m, :k, CAST(:s AS jsonb), CAST(:t AS jsonb))"),
        {**params, "v": version, "m": result.shelter_method, "k": result.distance_kind,
         "s": _json(result.shelters), "t": _json(result.totals)},
    )
    unplaced = {u["id"] for u in result.unplaced}
    rows = []
    for rank, h in enumerate(result.households):
        row = {k: v for k, v in h.items() if k not in ("personal_fields", "members")}
        rows.append({**params, "r": rank, "h": h["id"], "g": h["grid_code"], "vc": h["village_code"],
                     "ac": h["area_code"], "u": h["id"] in unplaced, "x": h["lon"], "y": h["lat"], "row": _json(row)})
    if rows:
        session.execute(
            text("INSERT INTO flood_answer_household (extent_id, buffer_m, rank, household_id, group_code, "
                 "village_code, area_code, unplaced, geom, row) VALUES (:e, :b, :r, :h, :g, :vc, :ac, :u, "
                 "ST_SetSRID(ST_MakePoint(:x, :y), 4326), CAST(:row AS json))"),
            rows,
        )


# The answer stored for the extent :e and buffer :b, when it was computed on the current data.
_FRESH = ("SELECT a.shelter_method, a.distance_kind, a.shelters, a.totals FROM flood_answer a "
          "WHERE a.extent_id = :e AND a.buffer_m = :b AND a.data_version = (SELECT version FROM flood_data_version)")


def _fresh(session: Session, extent_id: int | None, buffer_m: float) -> Any:
    if extent_id is None:
        return None
    return session.execute(text(_FRESH), {"e": extent_id, "b": float(buffer_m)}).mappings().first()


TOTALS = ("households", "residents", "elderly", "children", "disabled", "pregnant", "bedridden",
          "living_alone_elderly", "unplaced_households", "unplaced_residents")
_TOTALS = """
    SELECT count(*) AS households, coalesce(sum((h.row->>'residents')::int), 0) AS residents,
           coalesce(sum((h.row->>'elderly')::int), 0) AS elderly,
           coalesce(sum((h.row->>'children')::int), 0) AS children,
           coalesce(sum((h.row->>'disabled')::int), 0) AS disabled,
           coalesce(sum((h.row->>'pregnant')::int), 0) AS pregnant,
           coalesce(sum((h.row->>'bedridden')::int), 0) AS bedridden,
           count(*) FILTER (WHERE (h.row->>'living_alone_elderly')::boolean) AS living_alone_elderly,
           count(*) FILTER (WHERE h.unplaced) AS unplaced_households,
           coalesce(sum((h.row->>'residents')::int) FILTER (WHERE h.unplaced), 0) AS unplaced_residents,
           count(*) FILTER (WHERE {grid}) AS total
    FROM flood_answer_household h
    WHERE {where}
"""
_PAGE = """
    SELECT h.row, h.unplaced, ({personal}) AS personal_shown, h.household_id
    FROM flood_answer_household h
    WHERE {where} AND {grid}
    ORDER BY {order} LIMIT :limit OFFSET :offset
"""
# The list's orders (the flood page's sortable columns); ties always go by rescue order.
SORTS: dict[str, str] = {
    "rank": "h.rank",
    "depth": "(h.row->>'depth_m')::float DESC NULLS LAST, h.rank",
    "vulnerable": "(h.row->>'vulnerable')::int DESC, h.rank",
    "residents": "(h.row->>'residents')::int DESC, h.rank",
    "distance": "(h.row->>'shelter_distance_m')::float ASC NULLS LAST, h.rank",
    "household_no": "h.row->>'household_no' COLLATE \"C\", h.rank",
}


def _sort_key(sort: str) -> Any:
    """The Python twin of SORTS for an answer computed in memory (households in rescue order)."""
    def number(h: dict[str, Any], key: str) -> float:
        return float(h.get(key) or 0)

    keys = {
        "depth": lambda ih: (ih[1].get("depth_m") is None, -number(ih[1], "depth_m"), ih[0]),
        "vulnerable": lambda ih: (-number(ih[1], "vulnerable"), ih[0]),
        "residents": lambda ih: (-number(ih[1], "residents"), ih[0]),
        "distance": lambda ih: (ih[1].get("shelter_distance_m") is None, number(ih[1], "shelter_distance_m"), ih[0]),
        "household_no": lambda ih: (str(ih[1].get("household_no")).encode(), ih[0]),
    }
    return keys.get(sort, lambda ih: ih[0])


# A reader who sees every row, unfiltered: ranks run 0, 1, 2 … so the page starts at rank = offset,
# found in the primary key (a deep page costs what the first one does).
_PAGE_BY_RANK = """
    SELECT h.row, h.unplaced, ({personal}) AS personal_shown, h.household_id
    FROM flood_answer_household h
    WHERE {where} AND h.rank >= :offset
    ORDER BY h.rank LIMIT :limit
"""


def page_sql(where: str, grid: str, personal: str, every_row: bool, sort: str = "rank") -> str:
    """The statement of one page of stored rows (alias h), in the order `sort` (SORTS)."""
    if every_row and sort == "rank":
        return _PAGE_BY_RANK.format(where=where, personal=personal)
    return _PAGE.format(where=where, grid=grid, personal=personal, order=SORTS[sort])


def households_page(
    session: Session, principal: Any, ext: Any, buffer_m: float = 0.0, grid_code: str | None = None,
    *, limit: int | None = None, offset: int = 0, with_members: bool = True, today: dt.date | None = None,
    sort: str = "rank",
) -> FloodPage:
    """One page (`limit` None: all) of the households of `ext` the reader may see, in rescue order
    (or `sort`, one of SORTS), filtered by a grid of any level. `principal` None is a trusted caller (the CLI)."""
    grid_code = _checked(grid_code, sort, buffer_m)
    if getattr(ext, "id", None) is not None:
        page = _stored_page(session, principal, ext.id, buffer_m, grid_code, limit, offset, with_members, today,
                            sort, meta=finder.extent_meta(ext, buffer_m))
        if page is not None:
            return page
    return _computed_page(session, principal, ext, buffer_m, grid_code, limit, offset, with_members, today, sort)


def _checked(grid_code: str | None, sort: str, buffer_m: float) -> str | None:
    if sort not in SORTS:
        raise InputError(Problem(("query", "sort"), f"one of {', '.join(SORTS)}", "unknown_sort"))
    finder.check_buffer(buffer_m)
    return grid_filter(grid_code)


# The extent's row as a page names it (finder.extent_meta's fields).
_EXTENT_ROW = "SELECT id, name, source, stage_m FROM flood_extent WHERE id = :e"


def stored_page_statements(principal: Any, extent_id: int, buffer_m: float, grid_code: str | None,
                           limit: int | None, offset: int, sort: str = "rank",
                           with_members: bool = True) -> tuple[list[str], dict[str, Any], bool]:
    """The statements of one page read from a stored answer, sent in ONE message (gis.db.script_rows): the
    extent's row, the stored answer's check, the totals (only for a reader who does not see every row:
    `every_row` False), the page and the page's members (the page again as a subquery: cheaper than a second
    round trip). Returns the statements, their parameters and `every_row`."""
    acc = access_for(principal) if principal is not None else None
    params: dict[str, Any] = {**(acc.params if acc is not None else {}), "e": int(extent_id), "b": float(buffer_m),
                              "g": grid_code, "limit": limit, "offset": offset}
    # The stored row stands in for the household (alias h, with its point): the access predicate
    # runs on it, no join.
    where = f"h.extent_id = :e AND h.buffer_m = :b AND ({acc.rows if acc is not None else 'TRUE'})"
    grid = "CAST(:g AS text) IN (h.group_code, h.village_code, h.area_code)" if grid_code is not None else "TRUE"
    every_row = (acc is None or acc.rows == "TRUE") and grid_code is None
    page = page_sql(where, grid, acc.personal if acc is not None else "TRUE", every_row, sort)
    statements = [_EXTENT_ROW, _FRESH]
    if not every_row:
        statements.append(_TOTALS.format(where=where, grid=grid))
    statements.append(page)
    if with_members:
        statements.append(finder.MEMBERS_SQL.format(ids=f"ARRAY(SELECT p.household_id FROM ({page}) p)"))
    return statements, params, every_row


def _stored_page(session: Session, principal: Any, extent_id: int, buffer_m: float, grid_code: str | None,
                 limit: int | None, offset: int, with_members: bool, today: dt.date | None,
                 sort: str, meta: dict[str, Any] | None = None) -> FloodPage | None:
    """The page from the answer stored for the current data, in one round trip (`stored_page_statements`), or
    None when no answer is stored for the current data (the caller computes it). `meta`: the page's `extent` as
    the caller's extent object names it (a named scenario's name); else the stored extent's row."""
    from gis.db import script_rows

    statements, params, every_row = stored_page_statements(principal, extent_id, buffer_m, grid_code, limit, offset,
                                                           sort, with_members)
    results = script_rows(session, statements, params)
    if not results[0]:
        raise NotFound(f"no flood extent has the id {extent_id}")
    if not results[1]:
        return None
    ext, stored = results[0][0], results[1][0]
    if every_row:
        # A reader who sees every row gets the stored totals: no pass over the extent's rows.
        totals = {k: int(stored["totals"][k]) for k in TOTALS}
        total = totals["households"]
    else:
        agg = dict(results[2][0])
        total = int(agg.pop("total"))
        totals = {k: int(v) for k, v in agg.items()}
    rows = results[3 - every_row]
    ids = [int(r["household_id"]) for r in rows]
    members = finder.shape_members(results[-1], ids, today) if with_members else {}
    items = []
    for r in rows:
        h = {**r["row"], "personal_shown": r["personal_shown"]}
        if with_members:
            h["members"] = members[h["id"]]
        items.append(present(h))
    out = FloodPage(meta or finder.extent_meta(SimpleNamespace(**ext), buffer_m), total, offset, totals, items)
    if totals["households"]:
        out.shelter_method, out.distance_kind = stored["shelter_method"], stored["distance_kind"]
        out.shelters = list(stored["shelters"])
        out.unplaced = [{"id": r["row"]["id"], "household_no": r["row"]["household_no"],
                         "residents": r["row"]["residents"]} for r in rows if r["unplaced"]]
    return out


def _computed_page(session: Session, principal: Any, ext: Any, buffer_m: float, grid_code: str | None,
                   limit: int | None, offset: int, with_members: bool, today: dt.date | None,
                   sort: str = "rank") -> FloodPage:
    result = finder.flooded_households(session, principal, ext, buffer_m, with_members=with_members, today=today)
    households = result.households
    if grid_code is not None:
        households = [h for h in households if grid_code in (h["grid_code"], h["village_code"], h["area_code"])]
    if sort != "rank":
        households = [h for _, h in sorted(enumerate(households), key=_sort_key(sort))]
    end = None if limit is None else offset + limit
    items = households[offset:end]
    on_page = {h["id"] for h in items}
    return FloodPage(result.extent, len(households), offset, result.totals, items, result.shelter_method,
                     result.distance_kind, [u for u in result.unplaced if u["id"] in on_page], result.shelters)


def flood_page(
    session: Session, principal: Principal | None, *, extent_id: int | None = None, scenario: str | None = None,
    buffer_m: float = 0.0, grid_code: str | None = None, limit: int | None = None, offset: int = 0,
    compute: bool = False, sort: str = "rank",
) -> FloodPage:
    """One page of the flood households list for `principal` (None: trusted, everything shown), not audited
    (`list_flood_households` is, and `audit_read` audits a page read here). An extent named by its id whose
    answer is stored is read in one round trip, extent row included."""
    if extent_id is None or scenario is not None:
        ext = finder.resolve_extent(session, extent_id, scenario, compute=compute)
        return households_page(session, principal, ext, buffer_m, grid_code, limit=limit, offset=offset, sort=sort)
    grid_code = _checked(grid_code, sort, buffer_m)
    page = _stored_page(session, principal, extent_id, buffer_m, grid_code, limit, offset, True, None, sort)
    if page is not None:
        return page
    ext = finder.resolve_extent(session, extent_id, None, compute=compute)   # no answer stored for the current data
    return _computed_page(session, principal, ext, buffer_m, grid_code, limit, offset, True, None, sort)


def audit_read(session: Session, ctx: Context, page: FloodPage, *, scenario: str | None = None,
               grid_code: str | None = None, fmt: str = "json", endpoint: str = "flood_households",
               sort: str = "rank", commit: bool = False) -> None:
    """The audit row of a read of `page`: `read_personal` with the ids of the households whose personal
    fields it shows. `commit`: the row and the COMMIT go in one message (the read is done)."""
    shown = [h["id"] for h in page.items if h.get("personal_fields") == "shown"]
    detail = {"endpoint": endpoint, "format": fmt, "households": len(page.items), "shown": len(shown),
              "extent": page.extent, "scenario": scenario, "offset": page.offset, "grid_code": grid_code}
    ctx.audit(session, "read_personal" if shown else "read", resource="household", resource_ids=shown,
              detail=detail if sort == "rank" else {**detail, "sort": sort}, commit=commit)


def list_flood_households(
    session: Session, ctx: Context, *, extent_id: int | None = None, scenario: str | None = None,
    buffer_m: float = 0.0, grid_code: str | None = None, limit: int | None = None, offset: int = 0,
    fmt: str = "json", endpoint: str = "flood_households", compute: bool = False, sort: str = "rank",
) -> FloodPage:
    """The flood households list for the caller of `ctx` (None principal: trusted, everything shown),
    audited: `read_personal` with the ids of the households whose personal fields it shows."""
    page = flood_page(session, ctx.principal, extent_id=extent_id, scenario=scenario, buffer_m=buffer_m,
                      grid_code=grid_code, limit=limit, offset=offset, compute=compute, sort=sort)
    audit_read(session, ctx, page, scenario=scenario, grid_code=grid_code, fmt=fmt, endpoint=endpoint, sort=sort)
    return page


def ensure_answer(session: Session, ext: Any, buffer_m: float = 0.0) -> None:
    """Store the answer for `ext` unless one for the current data is stored already (a write)."""
    if _fresh(session, getattr(ext, "id", None), buffer_m) is None:
        store_answer(session, ext, buffer_m)


def as_json(page: FloodPage) -> dict[str, Any]:
    """The JSON answer of the list (GET /flood/households, `wangge flood households --json`)."""
    return {
        "extent": page.extent, "total": page.total, "offset": page.offset, "totals": page.totals,
        "shelter_method": page.shelter_method, "distance_kind": page.distance_kind,
        "unplaced": page.unplaced, "shelters": page.shelters, "items": page.items,
    }
