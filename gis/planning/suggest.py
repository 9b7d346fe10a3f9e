"""Balanced suggestions: regroup a village's units into contiguous, compact grids of equal workload.

GerryChain does the partitioning (BSD-3): `recursive_tree_part` draws a seed plan whose every grid
is within the tolerance of the target, then a short ReCom chain (merge two neighbouring grids, split
them again along a random spanning tree) explores nearby balanced plans and keeps the most compact
one — fewest cut edges, then highest mean Polsby–Popper. ReCom only ever produces connected parts, so
every suggested grid is contiguous; being unions of cells inside the village, the grids nest in it
and together cover it exactly.

The target and tolerance are the planner's: with `target` the number of grids is the nearest whole
number, and the tolerance left around the resulting mean is narrowed so that every grid still lands
within target ± tolerance.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, mapping

from gis.codes import GridLevel, group_code, reading_order
from gis.context import Context
from gis.errors import Conflict, InputError, Problem
from gis.planning.changes import GridChange
from gis.planning.publish import PublishResult, impact, publish
from gis.planning.units import UnitGraph, UnitKind, Weight, build_unit_graph, to_metric, union_cells

if TYPE_CHECKING:
    from gis.models import Plan
    from gis.planning.impact import Impact

MAX_SUGGESTIONS = 5
MAX_CHAIN_STEPS = 500
MAX_GRIDS = 999  # the grid field of a group code has three digits
# Spanning trees drawn per bipartition before a seed plan is given up as impossible.
MAX_TREE_ATTEMPTS = 2000
_CN_DIGITS = "零一二三四五六七八九"


@dataclass(frozen=True)
class SuggestedGrid:
    code: str
    name: str
    unit_ids: tuple[str, ...]
    load: int
    households: int
    residents: int
    incidents: int
    deviation: float  # (load - target) / target
    polsby_popper: float
    geom: MultiPolygon  # EPSG:4326


@dataclass(frozen=True)
class Suggestion:
    village_code: str
    village_name: str
    unit_kind: UnitKind
    weight: Weight
    target: float
    tolerance: float
    grids: tuple[SuggestedGrid, ...]
    cut_edges: int
    seed: int
    seconds: float
    replaced_codes: tuple[str, ...] = field(default=())  # the village's current group grids
    base: Mapping[str, int] = field(default_factory=dict)  # {code: grid id} of what it was drafted on

    @property
    def balance(self) -> float:
        """The largest relative deviation of a grid's load from the target."""
        return max(abs(g.deviation) for g in self.grids)

    @property
    def mean_polsby_popper(self) -> float:
        return float(np.mean([g.polsby_popper for g in self.grids]))

    @property
    def within_tolerance(self) -> bool:
        return self.balance <= self.tolerance + 1e-9

    @property
    def fingerprint(self) -> str:
        """Names this exact regrouping (which unit in which grid): what a planner saw is what is published."""
        pairs = "\n".join(f"{u}\t{c}" for u, c in sorted(self.assignment().items()))
        return hashlib.sha256(pairs.encode()).hexdigest()[:20]

    def to_changes(self) -> list[GridChange]:
        """The suggestion as grid changes: each suggested grid under its code (a new version of the
        current grid with that code, or a new grid), and the village's other current group grids
        retired (the publish engine hands their people to the new grid covering most of them)."""
        changes = [GridChange(code=g.code, level=int(GridLevel.GROUP), name=g.name, parent_code=self.village_code,
                              geom=g.geom) for g in self.grids]
        kept = {g.code for g in self.grids}
        changes += [GridChange(code=code, level=int(GridLevel.GROUP), name=code, parent_code=self.village_code,
                               geom=None) for code in self.replaced_codes if code not in kept]
        return changes

    def assignment(self) -> dict[str, str]:
        """unit id -> new grid code (the plan's equivalency file)."""
        return {u: g.code for g in self.grids for u in g.unit_ids}

    def as_dict(self, *, geometry: bool = True) -> dict[str, Any]:
        return {
            "village_code": self.village_code,
            "village_name": self.village_name,
            "unit_kind": self.unit_kind.value,
            "weight": self.weight.value,
            "target": round(self.target, 3),
            "tolerance": self.tolerance,
            "balance": round(self.balance, 4),
            "within_tolerance": self.within_tolerance,
            "mean_polsby_popper": round(self.mean_polsby_popper, 4),
            "cut_edges": self.cut_edges,
            "seed": self.seed,
            "fingerprint": self.fingerprint,
            "seconds": round(self.seconds, 3),
            "replaced_codes": list(self.replaced_codes),
            "base": dict(self.base),
            "grids": [
                {
                    "code": g.code, "name": g.name, "load": g.load, "households": g.households,
                    "residents": g.residents, "incidents": g.incidents, "deviation": round(g.deviation, 4),
                    "polsby_popper": round(g.polsby_popper, 4), "units": len(g.unit_ids),
                    "unit_ids": list(g.unit_ids),
                    **({"geometry": mapping(g.geom)} if geometry else {}),
                }
                for g in self.grids
            ],
        }


def cn_number(n: int) -> str:
    """Chinese numeral for 1..999 as in 第十二网格."""
    if n < 10:
        return _CN_DIGITS[n]
    if n < 100:
        tens, units = divmod(n, 10)
        return ("" if tens == 1 else _CN_DIGITS[tens]) + "十" + (_CN_DIGITS[units] if units else "")
    hundreds, rest = divmod(n, 100)
    if rest == 0:
        return _CN_DIGITS[hundreds] + "百"
    tail = ("零" + _CN_DIGITS[rest]) if rest < 10 else (_CN_DIGITS[rest // 10] + "十" + (
        _CN_DIGITS[rest % 10] if rest % 10 else ""))
    return _CN_DIGITS[hundreds] + "百" + tail


def suggest(
    session: Any,
    village_code: str,
    *,
    n_grids: int | None = None,
    target: float | None = None,
    tolerance: float = 0.1,
    weight: Weight | str = Weight.HOUSEHOLDS,
    unit_kind: UnitKind | str = UnitKind.HOUSEHOLD,
    count: int = 3,
    seed: int = 0,
    chain_steps: int = 100,
    recent_days: int = 365,
    now: dt.datetime | None = None,
) -> list[Suggestion]:
    """Up to `count` distinct balanced regroupings of `village_code`'s units, most compact first.

    Give `n_grids` (how many grids) or `target` (load per grid); `tolerance` is the allowed relative
    deviation of each grid's load from the target (0.1 = ±10 %)."""
    weight, unit_kind = _check_inputs(n_grids, target, tolerance, weight, unit_kind, count, chain_steps)
    if not 1 <= recent_days <= 3650:
        raise InputError(Problem(("query", "days"), "days is 1..3650", "out_of_range"))
    ug = build_unit_graph(session, village_code, kind=unit_kind, weight=weight, recent_days=recent_days, now=now)
    n, ideal, eps, goal = _sizing(ug, n_grids, target, tolerance)
    suggestions: list[Suggestion] = []
    seen: set[frozenset[frozenset[int]]] = set()
    for i in range(count):
        started = time.perf_counter()
        parts = _balanced_parts(ug, n, ideal, eps, seed + i, chain_steps)
        if parts is None:
            continue
        key = frozenset(frozenset(p) for p in parts)
        if key in seen:
            continue
        seen.add(key)
        suggestions.append(_suggestion(ug, parts, goal, tolerance, seed + i, time.perf_counter() - started))
    if not suggestions:
        raise InputError(Problem(
            ("query", "tolerance"),
            f"no plan of {n} contiguous grids within ±{tolerance:.0%} of {goal:.1f} {weight.value} was found "
            f"for village {village_code}; widen the tolerance or change the number of grids",
            "no_balanced_plan",
        ))
    suggestions.sort(key=lambda s: (s.cut_edges, -s.mean_polsby_popper))
    return suggestions


def redraw(session: Any, village_code: str, *, fingerprint: str, seed: int, **params: Any) -> Suggestion:
    """The suggestion a planner was shown, drawn again from its parameters and seed; Conflict when it
    is no longer the same regrouping (households or units changed since)."""
    found = suggest(session, village_code, count=1, seed=seed, **params)[0]
    if found.fingerprint != fingerprint:
        raise Conflict(f"the suggestion for village {village_code} differs from the one shown (the households or "
                       "units changed since); ask for suggestions again", {"conflicts": [village_code]})
    return found


def suggestion_impact(session: Any, village_code: str, *, fingerprint: str, seed: int, **params: Any) -> Impact:
    """Who and what would move if the suggestion shown were published now (gis.planning.impact)."""
    found = redraw(session, village_code, fingerprint=fingerprint, seed=seed, **params)
    return impact(session, found.to_changes())


def draft_from_suggestion(session: Any, ctx: Context, village_code: str, *, fingerprint: str, seed: int,
                          name: str | None = None, **params: Any) -> Plan:
    """The suggestion shown becomes a draft plan (gis.planning.plans.create_plan), to edit and publish."""
    from gis.planning.plans import create_plan

    found = redraw(session, village_code, fingerprint=fingerprint, seed=seed, **params)
    title = (name or "").strip() or f"{found.village_name}均衡划分（方案 {fingerprint[:8]}）"
    note = (f"GerryChain suggestion: {len(found.grids)} grids, {found.weight.value} ±{found.tolerance:.0%}, "
            f"balance {found.balance:.3f}, mean Polsby-Popper {found.mean_polsby_popper:.3f}, "
            f"cut edges {found.cut_edges}, seed {found.seed}")
    return create_plan(session, ctx, title, found.to_changes(), note=note)


def publish_suggestion(
    session: Any,
    ctx: Context,
    village_code: str,
    *,
    fingerprint: str,
    base: Mapping[str, int],
    effective_at: dt.datetime | None,
    seed: int,
    **params: Any,
) -> PublishResult:
    """Publish the suggestion a planner was shown: drawn again with its seed and parameters, it must
    still be the same regrouping (`fingerprint`) and the village's grids still the versions it was
    drafted on (`base`), else Conflict; then the publish engine applies it (or schedules it for
    `effective_at`), atomically, with its audit row and its inverse for undo."""
    found = redraw(session, village_code, fingerprint=fingerprint, seed=seed, **params)
    return publish(session, ctx, found.to_changes(), effective_at=effective_at, base=dict(base),
                   name=f"{found.village_name}均衡划分（方案 {fingerprint[:8]}）")


def _check_inputs(
    n_grids: int | None, target: float | None, tolerance: float, weight: Weight | str,
    unit_kind: UnitKind | str, count: int, chain_steps: int,
) -> tuple[Weight, UnitKind]:
    problems: list[Problem] = []
    if (n_grids is None) == (target is None):
        problems.append(Problem(("query", "n"), "give either the number of grids (n) or a target load", "missing"))
    if n_grids is not None and not 1 <= n_grids <= MAX_GRIDS:
        problems.append(Problem(("query", "n"), f"the number of grids must be 1..{MAX_GRIDS}", "out_of_range"))
    if target is not None and not (math.isfinite(target) and target > 0):
        problems.append(Problem(("query", "target"), "the target load must be a positive number", "out_of_range"))
    if not (math.isfinite(tolerance) and 0 < tolerance < 1):
        problems.append(Problem(("query", "tolerance"), "tolerance is a fraction between 0 and 1 (0.1 = ±10%)",
                                "out_of_range"))
    if not 1 <= count <= MAX_SUGGESTIONS:
        problems.append(Problem(("query", "count"), f"count must be 1..{MAX_SUGGESTIONS}", "out_of_range"))
    if not 0 <= chain_steps <= MAX_CHAIN_STEPS:
        problems.append(Problem(("query", "steps"), f"steps must be 0..{MAX_CHAIN_STEPS}", "out_of_range"))
    try:
        weight = Weight(weight)
    except ValueError:
        problems.append(Problem(("query", "weight"), f"weight is one of {', '.join(Weight)}", "enum"))
    try:
        unit_kind = UnitKind(unit_kind)
    except ValueError:
        problems.append(Problem(("query", "units"), f"units is one of {', '.join(UnitKind)}", "enum"))
    if problems:
        raise InputError(problems)
    return Weight(weight), UnitKind(unit_kind)


def _sizing(
    ug: UnitGraph, n_grids: int | None, target: float | None, tolerance: float
) -> tuple[int, float, float, float]:
    """(number of grids, mean load, tolerance around the mean, the planner's target)."""
    total = ug.total_load
    if total <= 0:
        raise InputError(Problem(("query", "weight"),
                                 f"village {ug.village.code} has no {ug.weight.value} to balance", "no_load"))
    if target is None:
        assert n_grids is not None
        n = n_grids
        goal = total / n
    else:
        n = max(1, round(total / target))
        goal = target
    ideal = total / n
    eps = (tolerance * goal - abs(ideal - goal)) / ideal
    if eps <= 0:
        raise InputError(Problem(
            ("query", "target"),
            f"{total} {ug.weight.value} in whole grids of {goal:g} ± {tolerance:.0%}: {n} grids average "
            f"{ideal:.1f}, outside that range", "unreachable_target",
        ))
    if n > len(ug.units):
        raise InputError(Problem(("query", "n"), f"village {ug.village.code} has only {len(ug.units)} "
                                                 f"{ug.kind.value} units for {n} grids", "too_many_grids"))
    components = list(_components(ug))
    if len(components) > 1:
        raise InputError(Problem(("query", "village"), f"the units of village {ug.village.code} form "
                                                       f"{len(components)} separate pieces", "not_connected"))
    return n, ideal, eps, goal


def _components(ug: UnitGraph) -> list[set[int]]:
    import networkx as nx

    return [set(c) for c in nx.connected_components(ug.graph)]


def _balanced_parts(ug: UnitGraph, n: int, ideal: float, eps: float, seed: int, steps: int) -> list[set[int]] | None:
    """A balanced partition of the unit graph into `n` connected parts, or None when none was found."""
    if n == 1:
        return [set(ug.graph.nodes)]
    from gerrychain import GeographicPartition, Graph, MarkovChain
    from gerrychain.accept import always_accept
    from gerrychain.partition import recursive_tree_part
    from gerrychain.proposals import recom
    from gerrychain.tree import bipartition_tree
    from gerrychain.updaters import Tally

    rng = random.Random(seed)
    graph = Graph.from_networkx(ug.graph)
    tree_fn = partial(bipartition_tree, max_attempts=MAX_TREE_ATTEMPTS)
    try:
        assignment = recursive_tree_part(graph, range(n), ideal, "load", eps, bipartition_tree_fn=tree_fn, rng=rng)
    except Exception:  # GerryChain signals an impossible split with several exception types
        return None
    updaters = {"load": Tally("load", alias="load")}
    seed_plan = GeographicPartition(graph, assignment, updaters)
    best = _parts_of(seed_plan.assignment)
    best_score = _score(seed_plan)
    if steps > 0:
        proposal = partial(recom, pop_col="load", pop_target=ideal, epsilon=eps,
                           bipartition_tree_fn=tree_fn)
        chain = MarkovChain(proposal, [], always_accept, seed_plan, total_steps=steps, rng=rng)
        try:
            for state in chain:
                score = _score(state)
                if score < best_score and _balanced(state, ideal, eps):
                    best, best_score = _parts_of(state.assignment), score
        except Exception:  # a stuck ReCom step ends the walk; the best plan so far stands
            pass
    return best


def _parts_of(assignment: Mapping[Hashable, Hashable]) -> list[set[int]]:
    parts: dict[Hashable, set[int]] = {}
    for node, part in assignment.items():
        parts.setdefault(part, set()).add(cast(int, node))
    return list(parts.values())


def _balanced(state: Any, ideal: float, eps: float) -> bool:
    return all(abs(v - ideal) <= eps * ideal + 1e-9 for v in state["load"].values())


def _score(state: Any) -> tuple[int, float]:
    """Fewer cut edges first, then higher mean Polsby–Popper (4πA/P²) from the graph's measures."""
    pp = [4 * math.pi * state["area"][p] / state["perimeter"][p] ** 2 for p in state.parts if state["perimeter"][p]]
    return len(state["cut_edges"]), -float(np.mean(pp)) if pp else 0.0


def _suggestion(ug: UnitGraph, parts: list[set[int]], target: float, tolerance: float, seed: int,
                seconds: float) -> Suggestion:
    geoms = [union_cells([ug.units[i].cell for i in part]) for part in parts]
    metric = to_metric(np.asarray(geoms, dtype=object), ug.metric_crs)
    centroids = shapely.get_coordinates(shapely.centroid(metric))
    vb = to_metric(ug.village.geom, ug.metric_crs).bounds
    order = reading_order(centroids[:, 0], centroids[:, 1], (vb[3] - vb[1]) / 3.0)
    grids = []
    for number, k in enumerate(order, start=1):
        part = sorted(parts[int(k)])
        units = [ug.units[i] for i in part]
        load = sum(u.load(ug.weight) for u in units)
        area, perimeter = float(shapely.area(metric[k])), float(shapely.length(metric[k]))
        grids.append(SuggestedGrid(
            code=group_code(ug.village.code, number),
            name=f"{ug.village.name}第{cn_number(number)}网格",
            unit_ids=tuple(u.id for u in units),
            load=load,
            households=sum(u.households for u in units),
            residents=sum(u.residents for u in units),
            incidents=sum(u.incidents for u in units),
            deviation=(load - target) / target,
            polsby_popper=4 * math.pi * area / perimeter**2 if perimeter else 0.0,
            geom=geoms[int(k)],
        ))
    part_of = {i: p for p, part in enumerate(parts) for i in part}
    cut = sum(1 for a, b in ug.graph.edges if part_of[a] != part_of[b])
    return Suggestion(
        village_code=ug.village.code, village_name=ug.village.name, unit_kind=ug.kind, weight=ug.weight,
        target=target, tolerance=tolerance, grids=tuple(grids), cut_edges=cut, seed=seed, seconds=seconds,
        replaced_codes=ug.village.group_codes,
        base=dict(zip(ug.village.group_codes, ug.village.group_ids, strict=True)),
    )


