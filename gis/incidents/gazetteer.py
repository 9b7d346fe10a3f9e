"""Offline place-name lookup against Wangge's own data: villages, natural villages, grids,
household addresses and shelters, matched exactly or fuzzily in Chinese.

Names are compared in a canonical form: no spaces or punctuation, Chinese numerals as digits, and
"第三网格" / "三组" / "3组" all as "3组". A query scores 1.0 on an exact match; otherwise the best
of a sequence-similarity ratio and a prefix rule (a query that starts with a village or natural
village name, e.g. "李邦相村玉雕创意园", falls back to that settlement, with its precision). A
query that matches nothing well enough, or two different places equally well, is refused with the
candidates.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.errors import InputError, Problem

MIN_SCORE = 0.72
TIE_MARGIN = 0.02

_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}


def _cn_to_int(s: str) -> int | None:
    if s.isdigit():
        return int(s)
    if not s or any(ch not in _DIGITS and ch != "十" for ch in s):
        return None
    if "十" in s:
        tens, _, ones = s.partition("十")
        return (_DIGITS[tens] if tens else 1) * 10 + (_DIGITS[ones] if ones else 0)
    return _DIGITS[s] if len(s) == 1 else None


def canonical(name: str) -> str:
    s = re.sub(r"[\s，。、·,.;:()（）\-—]", "", name or "")
    s = re.sub(r"第([零一二两三四五六七八九十\d]+)(网格|组|村民小组)", lambda m: f"{_cn_to_int(m.group(1))}组", s)
    s = re.sub(r"([零一二两三四五六七八九十]+)(组|号)", lambda m: f"{_cn_to_int(m.group(1))}{m.group(2)}", s)
    return s.replace("村民小组", "组")


@dataclass(frozen=True)
class Place:
    label: str
    kind: str
    lon: float
    lat: float
    precision_m: float


@dataclass(frozen=True)
class Hit(Place):
    score: float = 1.0


_PLACES_SQL = """
SELECT name AS label, CASE level WHEN 3 THEN 'village' WHEN 4 THEN 'grid' WHEN 2 THEN 'area' ELSE 'town' END AS kind,
       ST_X(ST_PointOnSurface(geom)) AS lon, ST_Y(ST_PointOnSurface(geom)) AS lat,
       sqrt(ST_Area(geom::geography) / pi()) AS precision_m
FROM grid WHERE valid_to IS NULL
UNION ALL
SELECT nv.name, 'natural_village', ST_X(nv.geom), ST_Y(nv.geom), 300 FROM natural_village nv
UNION ALL
SELECT name, 'shelter', ST_X(geom), ST_Y(geom), 30 FROM shelter
UNION ALL
SELECT address, 'household', ST_X(geom), ST_Y(geom), 10 FROM household
"""


def _places(session: Session) -> list[Place]:
    return [Place(r.label, r.kind, r.lon, r.lat, float(r.precision_m)) for r in session.execute(text(_PLACES_SQL))]


def _score(q: str, cand: str, kind: str) -> float:
    if q == cand:
        return 1.0
    ratio = difflib.SequenceMatcher(None, q, cand).ratio()
    if kind in ("village", "natural_village") and len(cand) >= 2 and q.startswith(cand):
        # The longest settlement name the query starts with is the most specific fallback.
        ratio = max(ratio, min(0.95, 0.65 + 0.03 * len(cand)))
    return ratio


def resolve(session: Session, query: str, loc: tuple = ("place",)) -> Hit:
    q = canonical(query)
    if not q:
        raise InputError(Problem(loc, "the place name is empty", "no_match"))
    scored = sorted(
        ((_score(q, canonical(p.label), p.kind), p) for p in _places(session)),
        key=lambda sp: (-sp[0], sp[1].precision_m, sp[1].label),
    )
    best_score, best = scored[0]
    candidates = [
        {"label": p.label, "kind": p.kind, "score": round(s, 3)} for s, p in scored[:5]
    ]
    if best_score < MIN_SCORE:
        raise InputError(Problem(loc, f"no place matches {query!r}", "no_match", ctx={"candidates": candidates}))
    rivals = [p for s, p in scored[1:6] if best_score - s <= TIE_MARGIN
              and math.dist((p.lon, p.lat), (best.lon, best.lat)) > 1e-4]
    if rivals:
        raise InputError(Problem(loc, f"{query!r} matches several places equally; be more precise",
                                 "ambiguous", ctx={"candidates": candidates}))
    return Hit(best.label, best.kind, best.lon, best.lat, best.precision_m, round(best_score, 3))
