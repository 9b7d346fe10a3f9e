"""Offline place-name lookup against Wangge's own data: villages, natural villages, grids,
household addresses and shelters, matched exactly or fuzzily in Chinese.

Names are compared in a canonical form: no spaces or punctuation, Chinese numerals as digits, and
"第三网格" / "三组" / "3组" all as "3组". A query scores 1.0 on an exact match; otherwise the best
of a sequence-similarity ratio and a prefix rule (a query that starts with a village or natural
village name, e.g. "李邦相村玉雕创意园", falls back to that settlement, with its precision). A
query that matches nothing well enough, or two different places equally well, is refused with the
candidates.

Cost is bounded: the query is at most MAX_PLACE_CHARS long, and the names are kept in memory (per
database and data version) with an index from each character to the names holding it. The shared
characters give every name an upper bound of its similarity ratio (the multiset bound that
difflib's quick_ratio uses), so only names whose bound could reach a match or a tie with the best
one are compared exactly, best bound first, at most MAX_COMPARISONS of them.

House-number addresses obey the household access rule (gis.households.access_for): a caller who
may not see a household's personal fields gets its address masked (gis.privacy.mask_address) in
candidates and in the match itself.

`suggest` offers names as a reporter types (the phone's report form): from the same index, names
starting with what was typed (a half-typed "尹营村三" or "尹营村第" is on its way to "尹营村3组"),
then the best fuzzy matches of `rank`; only names that `resolve` takes back as one place. House
addresses are offered only where the caller may see that household's personal fields, and those
shown are audited as a household read.
"""

from __future__ import annotations

import difflib
import math
import re
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.auth.principal import Principal
from gis.context import Context
from gis.db import PerDataVersion
from gis.errors import InputError, Problem
from gis.privacy import mask_address

MIN_SCORE = 0.72
TIE_MARGIN = 0.02
# Longer than any real place name or address; the API refuses longer input with a 422 (place).
MAX_PLACE_CHARS = 100
# Exact comparisons per query at most (a query that many names resemble equally is refused as
# ambiguous), and how many of the best are listed as candidates.
MAX_COMPARISONS = 400
CANDIDATES = 5

_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def _cn_to_int(s: str) -> int | None:
    if s.isdigit():
        return int(s)
    if not s or any(ch not in _DIGITS and ch != "十" for ch in s):
        return None
    if "十" in s:
        tens, _, ones = s.partition("十")
        if tens not in _DIGITS and tens or ones not in _DIGITS and ones:
            return None   # not a number: "十十", "三十三十"
        return (_DIGITS[tens] if tens else 1) * 10 + (_DIGITS[ones] if ones else 0)
    return _DIGITS[s] if len(s) == 1 else None


def _as_digits(numeral: str) -> str:
    """A Chinese numeral as digits; text that is no number (三三, 十十) stays as written."""
    value = _cn_to_int(numeral)
    return numeral if value is None else str(value)


def canonical(name: str) -> str:
    s = re.sub(r"[\s，。、·,.;:()（）\-—]", "", name or "")
    s = re.sub(r"第([零一二两三四五六七八九十\d]+)(网格|组|村民小组)", lambda m: f"{_as_digits(m.group(1))}组", s)
    s = re.sub(r"([零一二两三四五六七八九十]+)(组|号)", lambda m: f"{_as_digits(m.group(1))}{m.group(2)}", s)
    return s.replace("村民小组", "组")


@dataclass(frozen=True)
class Place:
    label: str
    kind: str
    lon: float
    lat: float
    precision_m: float
    code: str | None = None  # the grid's code, for the grid kinds (town, area, village, grid)
    household_id: int | None = None  # for household addresses


@dataclass(frozen=True)
class Hit(Place):
    score: float = 1.0


GRID_KINDS = {1: "town", 2: "area", 3: "village", 4: "grid"}
SETTLEMENT_KINDS = ("village", "natural_village")

_PLACES_SQL = """
SELECT name AS label, CASE level WHEN 3 THEN 'village' WHEN 4 THEN 'grid' WHEN 2 THEN 'area' ELSE 'town' END AS kind,
       ST_X(ST_PointOnSurface(geom)) AS lon, ST_Y(ST_PointOnSurface(geom)) AS lat,
       sqrt(ST_Area(geom::geography) / pi()) AS precision_m, code, NULL::bigint AS household_id
FROM grid WHERE valid_to IS NULL
UNION ALL
SELECT nv.name, 'natural_village', ST_X(nv.geom), ST_Y(nv.geom), 300, NULL, NULL
FROM natural_village nv
UNION ALL
SELECT name, 'shelter', ST_X(geom), ST_Y(geom), 30, NULL, NULL FROM shelter
UNION ALL
SELECT address, 'household', ST_X(geom), ST_Y(geom), 10, NULL, id FROM household
"""

# One state of the named places as this session sees it (any added, removed or edited row changes
# a count, an id sum or a row version).
_VERSION_SQL = """
SELECT current_database(),
  (SELECT row(count(*), coalesce(sum(id), 0), coalesce(sum(xmin::text::bigint), 0))::text
   FROM grid WHERE valid_to IS NULL),
  (SELECT row(count(*), coalesce(sum(id), 0), coalesce(sum(xmin::text::bigint), 0))::text
   FROM natural_village),
  (SELECT row(count(*), coalesce(sum(id), 0), coalesce(sum(xmin::text::bigint), 0))::text
   FROM shelter),
  (SELECT row(count(*), coalesce(sum(id), 0), coalesce(sum(xmin::text::bigint), 0))::text
   FROM household)
"""


class Gazetteer:
    """The named places in memory: canonical names, and for each character the names holding it."""

    def __init__(self, places: list[Place]):
        self.places = places
        self.canon = [canonical(p.label) for p in places]
        self.lengths = np.array([len(c) for c in self.canon], dtype=np.float64)
        self.exact: dict[str, list[int]] = {}
        self.settlements: dict[str, list[int]] = {}
        postings: dict[str, tuple[list[int], list[int]]] = {}
        for i, (c, p) in enumerate(zip(self.canon, places, strict=True)):
            self.exact.setdefault(c, []).append(i)
            if p.kind in SETTLEMENT_KINDS and len(c) >= 2:
                self.settlements.setdefault(c, []).append(i)
            for ch, k in Counter(c).items():
                ids, counts = postings.setdefault(ch, ([], []))
                ids.append(i)
                counts.append(k)
        self.postings = {
            ch: (np.array(ids, dtype=np.int64), np.array(k, dtype=np.float64))
            for ch, (ids, k) in postings.items()
        }
        self.longest_settlement = max((len(c) for c in self.settlements), default=0)
        self.position = {id(p): i for i, p in enumerate(places)}
        # Canonical names in sorted order, places and house addresses apart, for prefix lookups.
        self.sorted: dict[bool, tuple[list[str], list[int]]] = {}
        for is_house in (False, True):
            ids = sorted((i for i, p in enumerate(places) if (p.household_id is not None) == is_house),
                         key=self.canon.__getitem__)
            self.sorted[is_house] = ([self.canon[i] for i in ids], ids)

    def starting_with(self, prefix: str, houses: bool, at_most: int) -> list[int]:
        """Up to `at_most` places (or house addresses) whose canonical name starts with `prefix`,
        in name order."""
        keys, ids = self.sorted[houses]
        out: list[int] = []
        for k in range(bisect_left(keys, prefix), len(keys)):
            if len(out) >= at_most or not keys[k].startswith(prefix):
                break
            out.append(ids[k])
        return out

    def one_place(self, i: int) -> bool:
        """Whether the name of place i names one place only (`resolve` would not call it ambiguous)."""
        here = self.places[i]
        return all(math.dist((p.lon, p.lat), (here.lon, here.lat)) <= 1e-4
                   for p in (self.places[j] for j in self.exact.get(self.canon[i], ())))

    def bounds(self, q: str) -> np.ndarray:
        """For every place, an upper bound of `_score(q, it)`: 2 * shared characters / total length
        (never below the sequence ratio), or its prefix score where the prefix rule applies."""
        shared = np.zeros(len(self.places))
        for ch, k in Counter(q).items():
            hit = self.postings.get(ch)
            if hit is not None:
                shared += np.bincount(
                    hit[0], weights=np.minimum(hit[1], k), minlength=len(self.places)
                )
        bound = 2.0 * shared / (len(q) + self.lengths)
        for n in range(2, min(len(q), self.longest_settlement) + 1):
            for i in self.settlements.get(q[:n], ()):
                bound[i] = max(bound[i], _prefix_score(self.canon[i]))
        return bound


def _prefix_score(cand: str) -> float:
    return min(0.95, 0.65 + 0.03 * len(cand))


def _score(q: str, cand: str, kind: str) -> float:
    if q == cand:
        return 1.0
    ratio = difflib.SequenceMatcher(None, q, cand).ratio()
    if kind in SETTLEMENT_KINDS and len(cand) >= 2 and q.startswith(cand):
        # The longest settlement name the query starts with is the most specific fallback.
        ratio = max(ratio, _prefix_score(cand))
    return ratio


_GAZETTEERS: PerDataVersion[Gazetteer] = PerDataVersion(_VERSION_SQL)


def gazetteer(session: Session) -> Gazetteer:
    """The named places as this session sees them, read once per database and data version."""

    def read(_key: tuple[Any, ...]) -> Gazetteer:
        rows = session.execute(text(_PLACES_SQL))
        return Gazetteer([
            Place(r.label, r.kind, r.lon, r.lat, float(r.precision_m), r.code, r.household_id)
            for r in rows
        ])

    return _GAZETTEERS.get(session, read)


@dataclass
class Scored:
    """What `rank` compared: (score, place) best first, and how many exact comparisons it took."""

    ranked: list[tuple[float, Place]]
    comparisons: int
    truncated: bool


def rank(index: Gazetteer, q: str) -> Scored:
    """The places that can decide the answer for canonical query q, scored exactly, best first.

    Names are compared in decreasing order of their bound; the loop stops once no remaining name
    can reach a match (MIN_SCORE) or a tie with the best so far, after at least CANDIDATES names
    (for the candidate list), or after MAX_COMPARISONS."""
    bound = index.bounds(q)
    for i in index.exact.get(q, ()):
        bound[i] = 1.0
    order = np.argsort(-bound, kind="stable")
    scored: list[tuple[float, int]] = []
    best = 0.0
    truncated = False
    for i in order.tolist():
        b = bound[i]
        if b <= 0.0 or (b < max(MIN_SCORE, best) - TIE_MARGIN and len(scored) >= CANDIDATES):
            break
        if len(scored) >= MAX_COMPARISONS:
            truncated = True
            break
        sc = _score(q, index.canon[i], index.places[i].kind)
        scored.append((sc, i))
        best = max(best, sc)
    ranked = sorted(
        ((sc, index.places[i]) for sc, i in scored),
        key=lambda sp: (-sp[0], sp[1].precision_m, sp[1].label),
    )
    return Scored(ranked, len(scored), truncated)


def _shown_households(session: Session, principal: Principal | None, ids: list[int]) -> set[int]:
    """The households among `ids` whose personal fields (the address) `principal` may see."""
    if principal is None or not ids:
        return set(ids)
    from gis.households import access_for

    acc = access_for(principal)
    rows = session.execute(
        text(
            f"SELECT h.id FROM household h WHERE h.id = ANY(:ids) AND ({acc.rows}) "
            f"AND ({acc.personal})"
        ),
        {"ids": ids, "scope": list(principal.scope_codes)},
    )
    return {r.id for r in rows}


def resolve(session: Session, query: str, loc: tuple[str | int, ...] = ("place",),
            principal: Principal | None = None) -> Hit:
    """The one place `query` names; InputError (at `loc`) for none, several, or an over-long query.

    `principal` decides which house-number addresses are shown (None: a local operator, all)."""
    if len(query or "") > MAX_PLACE_CHARS:
        raise InputError(
            Problem(
                loc,
                f"a place name has at most {MAX_PLACE_CHARS} characters, got {len(query)}",
                "too_long",
                ctx={"max_length": MAX_PLACE_CHARS},
            )
        )
    q = canonical(query)
    if not q:
        raise InputError(Problem(loc, "the place name is empty", "no_match"))
    result = rank(gazetteer(session), q)
    scored = result.ranked
    if not scored:
        raise InputError(
            Problem(loc, f"no place matches {query!r}", "no_match", ctx={"candidates": []})
        )
    best_score, best = scored[0]
    listed = scored[:CANDIDATES]
    shown = _shown_households(
        session,
        principal,
        [p.household_id for _s, p in listed + [scored[0]] if p.household_id is not None],
    )

    def label(p: Place) -> str:
        if p.household_id is not None and p.household_id not in shown:
            return mask_address(p.label) or ""
        return p.label

    candidates = [{"label": label(p), "kind": p.kind, "score": round(sc, 3)} for sc, p in listed]
    if best_score < MIN_SCORE:
        raise InputError(
            Problem(loc, f"no place matches {query!r}", "no_match", ctx={"candidates": candidates})
        )
    rivals = [
        p
        for sc, p in scored[1:]
        if best_score - sc <= TIE_MARGIN and math.dist((p.lon, p.lat), (best.lon, best.lat)) > 1e-4
    ]
    if rivals or result.truncated:
        raise InputError(
            Problem(
                loc,
                f"{query!r} matches several places equally; be more precise",
                "ambiguous",
                ctx={"candidates": candidates},
            )
        )
    return Hit(
        label(best),
        best.kind,
        best.lon,
        best.lat,
        best.precision_m,
        best.code,
        best.household_id,
        round(best_score, 3),
    )


# --- suggestions as you type --------------------------------------------------------------------

MAX_SUGGESTIONS = 10
# Names read from a prefix's range per query at most (a one-character prefix of a city's names is
# long): the suggestions come from the first of them in name order.
_PREFIX_PROBE = 400
# The order a phone lists kinds in: what a grid member names most often first.
_KIND_ORDER = {"village": 0, "grid": 1, "natural_village": 2, "shelter": 3, "area": 4, "town": 5, "household": 6}
# A fuzzy match offered at all (resolve itself needs MIN_SCORE: picking the name makes it exact).
SUGGEST_MIN_SCORE = 0.5
_PARTIAL_NUMBER = re.compile(r"(.*?)第?([零一二两三四五六七八九十]*|\d*)")


@dataclass(frozen=True)
class Suggestion:
    label: str            # the name as stored: sent back as the report's `place`, it resolves to this place
    kind: str             # town | area | village | grid | natural_village | shelter | household
    lon: float
    lat: float
    code: str | None      # the grid's code, for the grid kinds
    household_id: int | None


@dataclass(frozen=True)
class Suggestions:
    items: list[Suggestion]
    more: bool            # more names matched than were offered


def partial_forms(query: str) -> list[str]:
    """The canonical prefixes a half-typed name may stand for: as typed, and with a trailing
    "第三" / "三" / "第" read the way a finished "第三组" is (so "尹营村三" finds "尹营村3组")."""
    q = canonical(query)
    if not q:
        return []
    forms = [q]
    m = _PARTIAL_NUMBER.fullmatch(q)
    if m and m.group(1) != q:   # it ends with 第 and/or a number
        head, number = m.groups()
        alt = head + _as_digits(number)
        if alt and alt not in forms:
            forms.append(alt)
    return forms


def suggest(session: Session, ctx: Context, query: str, limit: int = 8) -> Suggestions:
    """Up to `limit` (at most MAX_SUGGESTIONS) names for what a reporter has typed so far.

    Names starting with the text first (villages, grids, natural villages, shelters, then house
    addresses), then fuzzy matches by `rank`'s score; each one a name `resolve` takes back as one
    place. House addresses only where `ctx.principal` may see the household's personal fields (the
    household access rule), and those offered are audited ("read_personal", household)."""
    if len(query or "") > MAX_PLACE_CHARS:
        raise InputError(Problem(("query", "q"), f"a place name has at most {MAX_PLACE_CHARS} characters, "
                                 f"got {len(query)}", "too_long", ctx={"max_length": MAX_PLACE_CHARS}))
    limit = max(1, min(limit, MAX_SUGGESTIONS))
    forms = partial_forms(query)
    if not forms:
        return Suggestions([], False)
    index = gazetteer(session)
    chosen: list[int] = []
    seen: set[int] = set()

    def offer(ids: list[int]) -> None:
        for i in ids:
            if i not in seen and index.one_place(i):
                seen.add(i)
                chosen.append(i)

    places = {i for form in forms for i in index.starting_with(form, False, _PREFIX_PROBE)}
    offer(sorted(places, key=lambda i: (_KIND_ORDER.get(index.places[i].kind, 9), len(index.canon[i]),
                                        index.canon[i])))
    houses = {i for form in forms for i in index.starting_with(form, True, _PREFIX_PROBE)}
    offer(sorted(houses, key=lambda i: (len(index.canon[i]), index.canon[i])))
    offer([index.position[id(p)] for score, p in rank(index, forms[-1]).ranked if score >= SUGGEST_MIN_SCORE])
    # House addresses the caller may not see are not offered (not even masked: a list of addresses
    # by prefix would map a village's houses).
    house_ids = [p.household_id for p in (index.places[i] for i in chosen) if p.household_id is not None]
    shown = _shown_households(session, ctx.principal, house_ids) if house_ids else set()
    kept = [index.places[i] for i in chosen
            if index.places[i].household_id is None or index.places[i].household_id in shown]
    items = [Suggestion(p.label, p.kind, p.lon, p.lat, p.code, p.household_id) for p in kept[:limit]]
    offered = [s.household_id for s in items if s.household_id is not None]
    if offered:
        ctx.audit(session, "read_personal", resource="household", resource_ids=offered,
                  detail={"format": "place_suggestions"})
    return Suggestions(items, len(kept) > limit)
