"""The register over time: writing an import's households and residents in place while recording what
changed (moved in/out, born, died, phone changed, moved group ...), who lived in a household on a date,
and single edits of a household or a resident.

`resident` stays today's residents (every reader of it is unchanged); `resident_period` keeps each
resident's tenure in a household and `register_change` the change log (migration 0016).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis import clock
from gis.auth.principal import Principal
from gis.auth.roles import Role
from gis.bulk_indexes import BULK_MIN_ROWS, drop_indexes, rebuild_indexes, worth_rebuilding
from gis.context import Context
from gis.errors import InputError, NotFound, Problem
from gis.flood.priority import CHILD_AGE, ELDERLY_AGE
from gis.households import access_for
from gis.privacy import mask_address, mask_id_number, mask_name, mask_phone
from gis.register import checks

log = logging.getLogger("wangge.register.history")

_KEY = "coalesce(r.id_number, h.household_no || '/' || r.name)"


def _derived(as_of_param: str = ":as_of", where: str = "true") -> str:
    """Each staged household's living residents and the counts derived from them as of the date (for the
    households `where` picks: a condition on r, the staged residents)."""
    return f"""
        SELECT r.household_no, count(*) AS residents,
               count(*) FILTER (WHERE r.birth_date <= (CAST({as_of_param} AS date) - interval '{ELDERLY_AGE} years'))
                   AS elderly,
               count(*) FILTER (WHERE r.birth_date > (CAST({as_of_param} AS date) - interval '{CHILD_AGE} years'))
                   AS children,
               count(*) FILTER (WHERE r.is_disabled) AS disabled,
               count(*) FILTER (WHERE r.is_pregnant) AS pregnant,
               count(*) FILTER (WHERE r.is_bedridden) AS bedridden
        FROM reg_good_res r WHERE r.status = 'present' AND {where} GROUP BY r.household_no
    """


# The rows to write: the staged ones less the households with problems or no place (copied) ...
_GOOD_SOME = """
CREATE TEMP TABLE reg_good ON COMMIT DROP AS
    SELECT * FROM reg_hh WHERE located_by IS NOT NULL AND NOT household_no = ANY(:bad);
CREATE UNIQUE INDEX ON reg_good (household_no);
CREATE TEMP TABLE reg_good_res ON COMMIT DROP AS
    SELECT r.* FROM reg_res r JOIN reg_good g USING (household_no);
CREATE INDEX ON reg_good_res (household_no);
ANALYZE reg_good; ANALYZE reg_good_res;
"""
# ... or all of them, when every household is placed and none has a problem (then every staged resident's
# household is staged too: a resident naming another is a problem of that household number).
_GOOD_ALL = """
CREATE TEMP VIEW reg_good AS SELECT * FROM reg_hh;
CREATE TEMP VIEW reg_good_res AS SELECT * FROM reg_res;
"""

_PREPARE = """
CREATE TEMP TABLE reg_before ON COMMIT DROP AS
    SELECT h.id, h.household_no, h.phone, h.address, h.head_name, hg.group_code
    FROM household h JOIN reg_good g USING (household_no)
    LEFT JOIN LATERAL household_grid_at(h.geom) hg ON true;
CREATE TEMP TABLE reg_cur ON COMMIT DROP AS
    SELECT r.id, h.household_no, coalesce(r.id_number, h.household_no || '/' || r.name) AS key, r.id_number, r.name
    FROM resident r JOIN household h ON h.id = r.household_id
    WHERE h.household_no IN (SELECT household_no FROM reg_good)
       OR r.id_number IN (SELECT id_number FROM reg_good_res WHERE id_number IS NOT NULL);
CREATE INDEX ON reg_cur (key);
ANALYZE reg_cur;
"""

# Residents present before the register kept periods (the sample town, earlier loads): their tenure
# starts "before the register" (valid_from NULL).
_ENSURE_PERIODS = """
INSERT INTO resident_period (household_no, resident_key, id_number, name, valid_from, valid_to)
SELECT c.household_no, c.key, c.id_number, c.name, NULL, NULL FROM reg_cur c
WHERE NOT EXISTS (SELECT 1 FROM resident_period p
                  WHERE p.household_no = c.household_no AND p.resident_key = c.key AND p.valid_to IS NULL)
"""

# Households new to the register: inserted (the import holds the register lock: no one else adds them) ...
_INSERT_HOUSEHOLDS = """
WITH d AS ({derived}),
added AS (
    INSERT INTO household (household_no, address, head_name, phone, residents, elderly, children, disabled,
                           pregnant, bedridden, floors, natural_village_id, geom)
    SELECT g.household_no, g.address, g.head_name, g.phone,
           {residents}, coalesce(g.elderly, d.elderly, 0), coalesce(g.children, d.children, 0),
           coalesce(g.disabled, d.disabled, 0), coalesce(g.pregnant, d.pregnant, 0),
           coalesce(g.bedridden, d.bedridden, 0), coalesce(g.floors, 1), nv.id,
           ST_SetSRID(ST_MakePoint(g.lon, g.lat), 4326)
    FROM {good} g LEFT JOIN d USING (household_no)
    {natural_village}
    WHERE NOT EXISTS (SELECT 1 FROM reg_before b WHERE b.household_no = g.household_no)
    RETURNING id, household_no
)
INSERT INTO reg_ids SELECT id, household_no, true FROM added
"""

# ... and the ones it has: updated in place (an empty address or a missing head, phone or natural village
# keeps the stored one).
_UPDATE_HOUSEHOLDS = """
WITH changed AS (
    UPDATE household h SET
        address = CASE WHEN g.address <> '' THEN g.address ELSE h.address END,
        head_name = coalesce(g.head_name, h.head_name),
        phone = coalesce(g.phone, h.phone),
        residents = {residents}, elderly = coalesce(g.elderly, d.elderly, 0),
        children = coalesce(g.children, d.children, 0), disabled = coalesce(g.disabled, d.disabled, 0),
        pregnant = coalesce(g.pregnant, d.pregnant, 0), bedridden = coalesce(g.bedridden, d.bedridden, 0),
        floors = coalesce(g.floors, 1), natural_village_id = coalesce(nv.id, h.natural_village_id),
        geom = ST_SetSRID(ST_MakePoint(g.lon, g.lat), 4326)
    FROM reg_before b JOIN {good} g USING (household_no)
    LEFT JOIN LATERAL ({derived}) d ON true
    {natural_village}
    WHERE h.id = b.id
    RETURNING h.id, h.household_no
)
INSERT INTO reg_ids SELECT id, household_no, false FROM changed
"""

# The household's natural village: the one of its name nearest to it (looked up only for rows naming one).
_NATURAL_VILLAGE = """
    LEFT JOIN LATERAL (
        SELECT nv.id FROM natural_village nv
        WHERE g.nv_name IS NOT NULL AND nv.name = g.nv_name
        ORDER BY nv.geom <-> ST_SetSRID(ST_MakePoint(g.lon, g.lat), 4326) LIMIT 1
    ) nv ON true"""
_GOOD_NAMED = ("(SELECT *, coalesce(natural_village, CASE WHEN located_by = 'settlement' THEN place END) AS nv_name "
               "FROM reg_good)")

# How each household was placed: new rows for the households just added, else replaced.
_LOCATIONS = """
INSERT INTO household_location (household_id, located_by, precision_m, place)
SELECT i.id, g.located_by, g.precision_m, g.place FROM reg_ids i JOIN reg_good g USING (household_no)
WHERE i.added;
UPDATE household_location l SET located_by = g.located_by, precision_m = g.precision_m, place = g.place
FROM reg_ids i JOIN reg_good g USING (household_no) WHERE NOT i.added AND l.household_id = i.id;
INSERT INTO household_location (household_id, located_by, precision_m, place)
SELECT i.id, g.located_by, g.precision_m, g.place FROM reg_ids i JOIN reg_good g USING (household_no)
WHERE NOT i.added AND NOT EXISTS (SELECT 1 FROM household_location l WHERE l.household_id = i.id);
"""
# (Only this import writes household_location, under REGISTER_LOCK: no conflict clause, which would need
# the key that a bulk load drops.)

_HOUSEHOLD_CHANGES = """
INSERT INTO register_change (household_no, id_number, kind, old, new, effective_date, import_id)
SELECT g.household_no, NULL, 'household_added', NULL, g.address, :as_of, :import_id
FROM reg_good g WHERE NOT EXISTS (SELECT 1 FROM reg_before b WHERE b.household_no = g.household_no)
UNION ALL
SELECT b.household_no, NULL, 'phone_changed', b.phone, g.phone, :as_of, :import_id
FROM reg_before b JOIN reg_good g USING (household_no) WHERE g.phone IS NOT NULL AND g.phone IS DISTINCT FROM b.phone
UNION ALL
SELECT b.household_no, NULL, 'address_changed', b.address, g.address, :as_of, :import_id
FROM reg_before b JOIN reg_good g USING (household_no) WHERE g.address <> '' AND g.address <> b.address
UNION ALL
SELECT b.household_no, NULL, 'head_changed', b.head_name, g.head_name, :as_of, :import_id
FROM reg_before b JOIN reg_good g USING (household_no) WHERE g.head_name IS NOT NULL AND g.head_name <> b.head_name
UNION ALL
SELECT b.household_no, NULL, 'moved_group', b.group_code, hg.group_code, :as_of, :import_id
FROM reg_before b JOIN household h ON h.id = b.id
CROSS JOIN LATERAL household_grid_at(h.geom) hg
WHERE hg.group_code IS DISTINCT FROM b.group_code
"""

# Residents: who stays (same key, same household), who moved here from another household, who left
# (died or moved out: said so by a status, or no longer listed), who arrived (born since the last
# import, else moved in). Changes are recorded only for households that existed before this import.
_RESIDENT_CLASSES = """
CREATE TEMP TABLE reg_moves ON COMMIT DROP AS
    SELECT s.household_no, s.key, s.id_number, s.name, s.birth_date, s.status, s.status_date,
           s.gender, left(s.relation, 8) AS relation, s.is_disabled, s.is_pregnant, s.is_bedridden,
           c.id AS cur_id, c.household_no AS cur_household,
           CASE
             WHEN s.status <> 'present' AND c.household_no = s.household_no THEN s.status
             WHEN s.status <> 'present' THEN 'gone'
             WHEN c.id IS NULL THEN 'arrived'
             WHEN c.household_no = s.household_no THEN 'stays'
             ELSE 'moved_here'
           END AS class
    FROM reg_good_res s
    LEFT JOIN LATERAL (SELECT * FROM reg_cur c WHERE c.key = s.key
                       ORDER BY c.household_no = s.household_no DESC LIMIT 1) c ON true;
INSERT INTO reg_moves (household_no, key, id_number, name, status, status_date, cur_id, cur_household, class)
    SELECT c.household_no, c.key, c.id_number, c.name, 'moved_out', NULL, c.id, c.household_no, 'unlisted'
    FROM reg_cur c JOIN reg_good g USING (household_no)
    WHERE NOT EXISTS (SELECT 1 FROM reg_good_res s WHERE s.key = c.key);
ANALYZE reg_moves;
"""

_RESIDENT_CHANGES = """
INSERT INTO register_change (household_no, id_number, kind, old, new, effective_date, import_id)
SELECT m.household_no, m.id_number, m.class, m.name, NULL, coalesce(m.status_date, :as_of), :import_id
FROM reg_moves m WHERE m.class IN ('died', 'moved_out')
UNION ALL
SELECT m.household_no, m.id_number, 'moved_out', m.name, NULL, :as_of, :import_id
FROM reg_moves m WHERE m.class = 'unlisted'
UNION ALL
SELECT m.cur_household, m.id_number, 'moved_out', m.name, m.household_no, :as_of, :import_id
FROM reg_moves m WHERE m.class = 'moved_here'
UNION ALL
SELECT m.household_no, m.id_number, 'moved_in', m.cur_household, m.name, :as_of, :import_id
FROM reg_moves m WHERE m.class = 'moved_here'
UNION ALL
SELECT m.household_no, m.id_number,
       CASE WHEN m.birth_date > coalesce(:previous, '-infinity'::date) THEN 'born' ELSE 'moved_in' END,
       NULL, m.name,
       CASE WHEN m.birth_date > coalesce(:previous, '-infinity'::date) THEN m.birth_date ELSE :as_of END, :import_id
FROM reg_moves m WHERE m.class = 'arrived' AND m.household_no IN (SELECT household_no FROM reg_before)
"""

_CLOSE_PERIODS = """
UPDATE resident_period p SET valid_to = greatest(e.until, coalesce(p.valid_from, e.until))
FROM (SELECT cur_household AS household_no, key, coalesce(status_date, :as_of) AS until
      FROM reg_moves WHERE class IN ('died', 'moved_out', 'unlisted', 'moved_here')) e
WHERE p.household_no = e.household_no AND p.resident_key = e.key AND p.valid_to IS NULL
"""

_OPEN_PERIODS = """
INSERT INTO resident_period (household_no, resident_key, id_number, name, valid_from, import_id)
SELECT m.household_no, m.key, m.id_number, m.name,
       CASE WHEN m.class = 'arrived' AND m.household_no IN (SELECT household_no FROM reg_before)
                 AND m.birth_date > coalesce(:previous, '-infinity'::date) THEN m.birth_date ELSE :as_of END,
       :import_id
FROM reg_moves m WHERE m.class IN ('arrived', 'moved_here')
"""

_DELETE_LEAVERS = """
DELETE FROM resident r USING reg_moves m
WHERE r.id = m.cur_id AND m.class IN ('died', 'moved_out', 'unlisted', 'moved_here')
"""

_UPDATE_STAYING = """
UPDATE resident r SET name = m.name, gender = coalesce(m.gender, r.gender), birth_date = coalesce(m.birth_date,
    r.birth_date), id_number = coalesce(m.id_number, r.id_number), relation_to_head = coalesce(m.relation,
    r.relation_to_head), is_disabled = m.is_disabled, is_pregnant = m.is_pregnant, is_bedridden = m.is_bedridden
FROM reg_moves m
WHERE m.class = 'stays' AND r.id = m.cur_id
"""

_INSERT_ARRIVALS = """
INSERT INTO resident (household_id, name, gender, birth_date, id_number, relation_to_head, is_disabled, is_pregnant,
                      is_bedridden)
SELECT i.id, m.name, m.gender, m.birth_date, m.id_number, m.relation, m.is_disabled, m.is_pregnant, m.is_bedridden
FROM reg_moves m JOIN reg_ids i ON i.household_no = m.household_no
WHERE m.class IN ('arrived', 'moved_here')
"""

# Households that lost a resident to a household of this import keep counts that fit what is left.
_RECOUNT_LEFT_BEHIND = """
UPDATE household h SET residents = c.n, elderly = least(h.elderly, c.n), children = least(h.children, c.n),
    disabled = least(h.disabled, c.n), pregnant = least(h.pregnant, c.n), bedridden = least(h.bedridden, c.n)
FROM (SELECT r.household_id AS id, count(*) AS n
      FROM (SELECT DISTINCT m.cur_household FROM reg_moves m
            WHERE m.class = 'moved_here'
              AND NOT EXISTS (SELECT 1 FROM reg_good g WHERE g.household_no = m.cur_household)) left_behind
      JOIN household h2 ON h2.household_no = left_behind.cur_household
      JOIN resident r ON r.household_id = h2.id
      GROUP BY r.household_id) c
WHERE h.id = c.id
"""


# One register import writes at a time (a second waits): what it found in the register stays true until it
# commits, so the households it did not find are inserted without a conflict clause.
REGISTER_LOCK = "SELECT pg_advisory_xact_lock(hashtext('wangge.register_import'))"


def apply_import(session: Session, ctx: Context, bad: Sequence[str], *, filename: str, mode: str,
                 as_of: dt.date, rows: int, has_residents: bool, all_placed: bool) -> dict[str, Any]:
    """Write the staged households (reg_hh / reg_res, less the `bad` ones and those without a place) in
    place and log the changes."""
    session.execute(text(REGISTER_LOCK))
    previous = session.execute(text(
        "SELECT max(as_of) FROM register_import WHERE kind = 'households'")).scalar()
    every_row = all_placed and not bad
    # (The caller set this transaction's statistics target for the temp tables: a 3,000-row sample.)
    _script(session, _GOOD_ALL if every_row else _GOOD_SOME, {"bad": list(bad)})
    _script(session, _PREPARE, {})
    if every_row and session.execute(text("SELECT EXISTS (SELECT 1 FROM reg_before)")).scalar_one():
        # Households already in the register are updated one by one from their staged residents.
        session.execute(text("CREATE INDEX ON reg_res (household_no)"))
    counts = session.execute(text("SELECT (SELECT count(*) FROM reg_good), (SELECT count(*) FROM reg_good_res "
                                  "WHERE status = 'present')")).one()
    import_id = session.execute(text(
        "INSERT INTO register_import (kind, filename, mode, as_of, rows, households, residents, created_by, summary) "
        "VALUES ('households', :f, :m, :a, :rows, :h, :r, :by, '{}'::jsonb) RETURNING id"),
        {"f": filename, "m": mode, "a": as_of, "rows": rows, "h": counts[0], "r": counts[1] if has_residents else 0,
         "by": _who(ctx)}).scalar_one()
    params = {"as_of": as_of, "import_id": import_id, "previous": previous}
    session.execute(text(_ENSURE_PERIODS))
    before = session.execute(text("SELECT (SELECT count(*) FROM reg_before), (SELECT count(*) FROM reg_cur)")).one()
    bulk = _bulk_tables(session, counts[0] - before[0], counts[1] - before[1] if has_residents else 0)
    cur = session.connection().connection.driver_connection.cursor() if bulk else None  # type: ignore[union-attr]
    rebuild = drop_indexes(cur, bulk) if bulk else None
    session.execute(text("CREATE TEMP TABLE reg_ids (id bigint, household_no text, added boolean) ON COMMIT DROP"))
    residents_expr = "coalesce(d.residents, g.residents)" if has_residents else "g.residents"
    parts = {"good": _GOOD_NAMED, "natural_village": _NATURAL_VILLAGE, "residents": residents_expr}
    session.execute(text(_INSERT_HOUSEHOLDS.format(derived=_derived(), **parts)), params)
    session.execute(text(_UPDATE_HOUSEHOLDS.format(derived=_derived(where="r.household_no = g.household_no"),
                                                    **parts)), params)
    _script(session, _LOCATIONS, {})
    session.execute(text(_HOUSEHOLD_CHANGES), params)
    if has_residents:
        _script(session, _RESIDENT_CLASSES, {})
        session.execute(text(_RESIDENT_CHANGES), params)
        session.execute(text(_CLOSE_PERIODS), params)
        session.execute(text(_OPEN_PERIODS), params)
        session.execute(text(_DELETE_LEAVERS))
        session.execute(text(_UPDATE_STAYING))
        session.execute(text(_INSERT_ARRIVALS))
        session.execute(text(_RECOUNT_LEFT_BEHIND))
    if rebuild is not None:
        # The real tables' statistics from a full sample, not the temp tables' 3,000 rows.
        session.execute(text("SET LOCAL default_statistics_target TO DEFAULT"))
        timings: dict[str, float] = {}
        rebuild_indexes(cur, rebuild, bulk, timings)
        log.debug("rebuild: %s", "; ".join(f"{v:.2f}s {k}" for k, v in timings.items()))
    changes = {k: n for k, n in session.execute(text(
        "SELECT kind, count(*) FROM register_change WHERE import_id = :i GROUP BY kind ORDER BY kind"),
        {"i": import_id})}
    session.execute(text("UPDATE register_import SET summary = CAST(:s AS jsonb) WHERE id = :i"),
                    {"s": _json({"changes": changes}), "i": import_id})
    session.execute(text(f"DROP {'VIEW' if every_row else 'TABLE'} reg_good_res, reg_good"))
    for table in ("reg_before", "reg_cur", "reg_ids", "reg_moves"):
        session.execute(text(f"DROP TABLE IF EXISTS {table}"))
    return {"households": counts[0], "residents": counts[1] if has_residents else 0, "changes": changes,
            "import_id": import_id}


def _bulk_tables(session: Session, households: int, residents: int) -> list[str]:
    """The tables this import loads in bulk (`gis.bulk_indexes`), given about how many households and
    residents it adds: those it at least doubles with at least BULK_MIN_ROWS rows — a town's first register,
    typically. They stay locked until the commit."""
    adding = {"household": households, "household_location": households, "resident": residents,
              "resident_period": residents, "register_change": households + residents}
    return [table for table, n in adding.items()
            if n >= BULK_MIN_ROWS  # (table names are this module's constants)
            and worth_rebuilding(n, session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one(), BULK_MIN_ROWS)]


def _script(session: Session, sql: str, params: Mapping[str, Any]) -> None:
    """Several statements, one at a time (a prepared statement holds one)."""
    for statement in sql.split(";\n"):
        if statement.strip():
            session.execute(text(statement), params)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def _who(ctx: Context) -> str | None:
    if ctx.principal is not None:
        return ctx.principal.username
    return ctx.actor


# --- reading the history -----------------------------------------------------------------------------


def residents_on(session: Session, household_no: str, on: dt.date) -> list[dict[str, Any]]:
    """Who lived in household `household_no` on date `on`: from the tenure periods, plus today's residents
    that no period describes (loaded before the register kept history: since before the register)."""
    exists = session.execute(text(
        "SELECT EXISTS (SELECT 1 FROM household WHERE household_no = :h) "
        "OR EXISTS (SELECT 1 FROM resident_period WHERE household_no = :h)"), {"h": household_no}).scalar_one()
    if not exists:
        raise NotFound(f"no household {household_no}")
    rows = session.execute(text(f"""
        SELECT p.name, p.id_number, p.valid_from, p.valid_to FROM resident_period p
        WHERE p.household_no = :h AND (p.valid_from IS NULL OR p.valid_from <= :on)
          AND (p.valid_to IS NULL OR p.valid_to > :on)
        UNION ALL
        SELECT r.name, r.id_number, NULL, NULL FROM resident r JOIN household h ON h.id = r.household_id
        WHERE h.household_no = :h AND NOT EXISTS (
            SELECT 1 FROM resident_period p WHERE p.household_no = :h AND p.resident_key = {_KEY})
        ORDER BY 3 NULLS FIRST, 1
    """), {"h": household_no, "on": on})
    return [{"name": r.name, "id_number": r.id_number, "valid_from": r.valid_from, "valid_to": r.valid_to}
            for r in rows]


def changes_of(session: Session, household_no: str) -> list[dict[str, Any]]:
    """The change log of one household, oldest first."""
    rows = session.execute(text(
        "SELECT kind, id_number, old, new, effective_date, import_id, recorded_at FROM register_change "
        "WHERE household_no = :h ORDER BY effective_date, id"), {"h": household_no})
    return [dict(r._mapping) for r in rows]


# --- single edits ---------------------------------------------------------------------------------------

HOUSEHOLD_EDITABLE = ("phone", "head_name", "address", "floors")


def edit_household(session: Session, ctx: Context, household_no: str, changes: Mapping[str, Any],
                   *, effective_date: dt.date | None = None) -> dict[str, Any]:
    """Change one household's phone / head / address / floors; each change logged and audited."""
    unknown = [k for k in changes if k not in HOUSEHOLD_EDITABLE]
    if unknown:
        raise InputError([Problem(("body", k), f"not editable; editable: {', '.join(HOUSEHOLD_EDITABLE)}")
                          for k in unknown])
    row = session.execute(text(
        "SELECT id, phone, head_name, address, floors FROM household WHERE household_no = :h FOR UPDATE"),
        {"h": household_no}).one_or_none()
    if row is None:
        raise NotFound(f"no household {household_no}")
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, value in changes.items():
        if key == "phone" and value is not None:
            try:
                value = checks.normalize_phone(str(value))
            except ValueError as exc:
                problems.append(Problem(("body", "phone"), str(exc), "invalid_phone"))
        elif key == "floors":
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10:
                problems.append(Problem(("body", "floors"), "floors is a whole number from 1 to 10"))
        elif key in ("head_name", "address") and (not isinstance(value, str) or not value.strip()):
            problems.append(Problem(("body", key), "must be a non-empty text"))
        values[key] = value.strip() if isinstance(value, str) else value
    if problems:
        raise InputError(problems)
    when = effective_date or clock.today()
    kinds = {"phone": "phone_changed", "head_name": "head_changed", "address": "address_changed",
             "floors": "details_changed"}
    changed = {k: v for k, v in values.items() if getattr(row, k) != v}
    if changed:
        sets = ", ".join(f"{k} = :{k}" for k in changed)
        session.execute(text(f"UPDATE household SET {sets} WHERE id = :id"), {**changed, "id": row.id})
        for key, value in changed.items():
            session.execute(text(
                "INSERT INTO register_change (household_no, kind, old, new, effective_date) "
                "VALUES (:h, :k, :o, :n, :d)"),
                {"h": household_no, "k": kinds[key], "o": _str(getattr(row, key)), "n": _str(value), "d": when})
    ctx.audit(session, "register.household.edit", resource="household", resource_ids=[row.id],
              detail={"household_no": household_no, "fields": sorted(changed)})
    return {"household_no": household_no, "changed": sorted(changed)}


DEPARTURES = ("died", "moved_out")


def record_departure(session: Session, ctx: Context, household_no: str, id_number: str, kind: str,
                     on: dt.date) -> dict[str, Any]:
    """A resident died or moved out on `on`: removed from today's residents, tenure closed, the household's
    counts recomputed, the change logged and audited."""
    if kind not in DEPARTURES:
        raise InputError(Problem(("body", "status"), f"status must be one of {', '.join(DEPARTURES)}"))
    row = session.execute(text(
        "SELECT r.id, r.name, h.id AS household_id FROM resident r JOIN household h ON h.id = r.household_id "
        "WHERE h.household_no = :h AND r.id_number = :n FOR UPDATE OF r, h"),
        {"h": household_no, "n": id_number}).one_or_none()
    if row is None:
        raise NotFound(f"no resident with that ID number in household {household_no}")
    left = session.execute(text("SELECT count(*) FROM resident WHERE household_id = :h"),
                           {"h": row.household_id}).scalar_one()
    if left <= 1:
        raise InputError(Problem(("body", "id_number"), "the household's last resident: the household would be "
                                 "empty", "last_resident"))
    updated = session.execute(text(
        "UPDATE resident_period SET valid_to = greatest(:on, coalesce(valid_from, :on)) "
        "WHERE household_no = :h AND resident_key = :n AND valid_to IS NULL"),
        {"on": on, "h": household_no, "n": id_number})
    if not getattr(updated, "rowcount", 0):
        session.execute(text(
            "INSERT INTO resident_period (household_no, resident_key, id_number, name, valid_from, valid_to) "
            "VALUES (:h, :k, :n, :name, NULL, :on)"),
            {"h": household_no, "k": id_number, "n": id_number, "name": row.name, "on": on})
    session.execute(text("DELETE FROM resident WHERE id = :id"), {"id": row.id})
    session.execute(text(f"""
        UPDATE household h SET residents = c.n, elderly = c.elderly, children = c.children,
            disabled = c.disabled, pregnant = c.pregnant, bedridden = c.bedridden
        FROM (SELECT count(*) AS n,
                     count(*) FILTER (WHERE birth_date <= (CAST(:today AS date) - interval '{ELDERLY_AGE} years'))
                         AS elderly,
                     count(*) FILTER (WHERE birth_date > (CAST(:today AS date) - interval '{CHILD_AGE} years'))
                         AS children,
                     count(*) FILTER (WHERE is_disabled) AS disabled, count(*) FILTER (WHERE is_pregnant) AS pregnant,
                     count(*) FILTER (WHERE is_bedridden) AS bedridden
              FROM resident WHERE household_id = :hid) c
        WHERE h.id = :hid"""), {"hid": row.household_id, "today": clock.today()})
    session.execute(text(
        "INSERT INTO register_change (household_no, id_number, kind, old, effective_date) "
        "VALUES (:h, :n, :k, :name, :on)"),
        {"h": household_no, "n": id_number, "k": kind, "name": row.name, "on": on})
    ctx.audit(session, f"register.resident.{kind}", resource="household", resource_ids=[row.household_id],
              detail={"household_no": household_no, "date": on.isoformat()})
    return {"household_no": household_no, "residents": left - 1}


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


# --- reads with the household access rule -------------------------------------------------------------


def _household_access(session: Session, principal: Principal | None, household_no: str) -> tuple[int | None, bool]:
    """(household id or None when it no longer exists, personal fields shown) — NotFound when the caller may
    not see the household (gis.households.access_for, the one rule)."""
    if principal is None:
        row = session.execute(text("SELECT id FROM household WHERE household_no = :h"), {"h": household_no}).first()
        return (row.id if row else None), True
    acc = access_for(principal)
    row = session.execute(text(
        f"SELECT h.id, ({acc.rows}) AS visible, ({acc.personal}) AS personal FROM household h "
        "WHERE h.household_no = :h"), {**acc.params, "h": household_no}).first()
    if row is None:
        if principal.role in (Role.ADMIN, Role.COMMAND_CENTER):  # a household that is gone: its history stays
            return None, principal.role is Role.ADMIN
        raise NotFound(f"no household {household_no}")
    if not row.visible:
        raise NotFound(f"no household {household_no}")
    return row.id, bool(row.personal)


def who_lived_here(session: Session, ctx: Context, household_no: str, on: dt.date) -> dict[str, Any]:
    """`residents_on` as the caller may see it: names and ID numbers masked unless the household access
    rule shows them; a read that shows them is audited."""
    household_id, personal = _household_access(session, ctx.principal, household_no)
    people = residents_on(session, household_no, on)
    if personal:
        if household_id is not None and people:
            ctx.audit(session, "read_personal", resource="household", resource_ids=[household_id],
                      detail={"format": "register_residents_on", "on": on.isoformat()})
    else:
        for p in people:
            p["name"], p["id_number"] = mask_name(p["name"]), mask_id_number(p["id_number"])
    return {"household_no": household_no, "on": on, "personal_fields": "shown" if personal else "masked",
            "residents": people}


_CHANGE_MASKS: dict[str, tuple[Any, Any]] = {
    "household_added": (None, mask_address),
    "phone_changed": (mask_phone, mask_phone),
    "address_changed": (mask_address, mask_address),
    "head_changed": (mask_name, mask_name),
    "died": (mask_name, None),
    "moved_out": (mask_name, None),
    "moved_in": (None, mask_name),
    "born": (None, mask_name),
}


def change_log(session: Session, ctx: Context, household_no: str) -> list[dict[str, Any]]:
    """`changes_of` as the caller may see it: personal values masked unless the household rule shows them."""
    household_id, personal = _household_access(session, ctx.principal, household_no)
    rows = changes_of(session, household_no)
    if not rows and household_id is None:
        raise NotFound(f"no household {household_no}")
    if personal:
        if household_id is not None and rows:
            ctx.audit(session, "read_personal", resource="household", resource_ids=[household_id],
                      detail={"format": "register_changes"})
        return rows
    for r in rows:
        old_mask, new_mask = _CHANGE_MASKS.get(r["kind"], (None, None))
        r["id_number"] = mask_id_number(r["id_number"])
        if old_mask is not None:
            r["old"] = old_mask(r["old"])
        if new_mask is not None:
            r["new"] = new_mask(r["new"])
    return rows
