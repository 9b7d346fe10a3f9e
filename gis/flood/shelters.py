"""Where each flooded household goes: shelters outside the water, by road, without overfilling any.

Distances are road distances over the road network when roads are loaded (segments that touch the
flood extent are impassable; a house or shelter joins the network at one of its nearest dry road
nodes by a straight access leg), straight lines otherwise. The assignment keeps households together
and respects capacity (in people). It is solved as a min-cost flow over people (networkx); when that
optimum happens to split a household between shelters, the household-level problem is solved
exactly as a small integer programme (scipy/HiGHS). Placing as many people as possible comes first,
then the total person-metres. The greedy nearest-with-overflow answer (each household in priority
order to the nearest shelter that still has room) is computed too, and the better of the two is
returned, so the answer is never worse than that baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

ACCESS_CANDIDATES = 4     # a house joins the road network at the best of its nearest dry nodes
NODE_DECIMALS = 2         # road vertices closer than 1 cm are the same junction
COST_SCALE = 10           # min-cost flow needs integer costs: decimetres


@dataclass
class Assignment:
    """choice[i] = index of the shelter of household i, or -1 when it cannot be placed."""

    choice: np.ndarray
    distance_m: np.ndarray        # of the chosen shelter (nan when unplaced)
    load: np.ndarray              # people per shelter
    method: str                   # "min_cost_flow", "integer_programme" or "greedy"
    distance_kind: str            # "road" or "straight"
    unplaced: list[int] = field(default_factory=list)

    def cost(self, residents: np.ndarray) -> tuple[int, float]:
        return cost_of(self.choice, residents, self.distance_m)


def cost_of(choice: np.ndarray, residents: np.ndarray, dist: np.ndarray) -> tuple[int, float]:
    """(people left unplaced, person-metres travelled): smaller is better, in that order."""
    placed = choice >= 0
    return int(residents[~placed].sum()), float((residents[placed] * dist[placed]).sum())


# --- distances ------------------------------------------------------------------------------------

def straight_distances(houses: np.ndarray, shelters: np.ndarray) -> np.ndarray:
    """(n, m) metres between metric points."""
    out: np.ndarray = np.hypot(houses[:, None, 0] - shelters[None, :, 0], houses[:, None, 1] - shelters[None, :, 1])
    return out


def road_distances(houses: np.ndarray, shelters: np.ndarray, roads: list[Any], blocked: Any = None) -> np.ndarray:
    """(n, m) metres by road (metric CRS); inf where no dry road joins the two.

    `roads` are metric LineStrings; they are noded (split where they cross) so crossing roads are
    connected. Segments intersecting `blocked` (the flood extent, metric) are removed."""
    import networkx as nx
    from scipy.spatial import cKDTree

    n, m = len(houses), len(shelters)
    if n == 0 or m == 0:
        return np.full((n, m), np.inf)
    noded = shapely.union_all(roads)
    coords_list = [np.asarray(g.coords) for g in getattr(noded, "geoms", [noded]) if not g.is_empty]
    a = np.concatenate([c[:-1] for c in coords_list])
    b = np.concatenate([c[1:] for c in coords_list])
    if blocked is not None and not blocked.is_empty:
        segs = shapely.linestrings(np.stack([a, b], axis=1))
        shapely.prepare(blocked)
        dry = ~shapely.intersects(blocked, segs)
        a, b = a[dry], b[dry]
    if len(a) == 0:
        return np.full((n, m), np.inf)
    keys = np.round(np.concatenate([a, b]), NODE_DECIMALS)
    nodes, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    ia, ib = inverse[: len(a)], inverse[len(a):]
    length = np.hypot(*(a - b).T)
    graph = nx.Graph()
    graph.add_nodes_from(range(len(nodes)))
    for u, v, w in zip(ia.tolist(), ib.tolist(), length.tolist(), strict=True):
        if u != v and (not graph.has_edge(u, v) or graph[u][v]["weight"] > w):
            graph.add_edge(u, v, weight=w)
    tree = cKDTree(nodes)
    k = min(ACCESS_CANDIDATES, len(nodes))
    h_leg, h_node = tree.query(houses, k=k)
    s_leg, s_node = tree.query(shelters, k=k)
    h_leg, h_node = h_leg.reshape(n, k), h_node.reshape(n, k)
    s_leg, s_node = s_leg.reshape(m, k), s_node.reshape(m, k)
    out = np.full((n, m), np.inf)
    source = len(nodes)  # a virtual node joined to the shelter's access nodes by its access legs
    for j in range(m):
        graph.add_node(source)
        for leg, node in zip(s_leg[j], s_node[j], strict=True):
            graph.add_edge(source, int(node), weight=float(leg))
        lengths = nx.single_source_dijkstra_path_length(graph, source, weight="weight")
        graph.remove_node(source)
        to_node = np.full(len(nodes), np.inf)
        reached = [v for v in lengths if v != source]
        to_node[reached] = [lengths[v] for v in reached]
        out[:, j] = (h_leg + to_node[h_node]).min(axis=1)
    return out


# --- assignment -----------------------------------------------------------------------------------

def greedy_assignment(residents: np.ndarray, capacity: np.ndarray, dist: np.ndarray,
                      order: np.ndarray | None = None) -> np.ndarray:
    """The baseline: in `order`, each household to the nearest shelter with room for all of it."""
    n, _ = dist.shape
    left = capacity.astype(np.int64).copy()
    choice = np.full(n, -1, dtype=np.int64)
    for i in order if order is not None else range(n):
        for j in np.argsort(dist[i], kind="stable"):
            if not np.isfinite(dist[i, j]):
                break
            if left[j] >= residents[i]:
                choice[i] = j
                left[j] -= residents[i]
                break
    return choice


def _flow_assignment(residents: np.ndarray, capacity: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Min-cost flow over people; returns (choice, split) where split lists households whose people
    the optimum sends to more than one place."""
    import networkx as nx

    n, m = dist.shape
    finite = np.isfinite(dist)
    max_cost = int(np.ceil(dist[finite].max() * COST_SCALE)) + 1 if finite.any() else 1
    # Leaving one person unplaced must cost more than any rerouting that places them.
    unplaced_cost = max_cost * (int(residents.sum()) + 1)
    g = nx.DiGraph()
    total = int(residents.sum())
    g.add_node("sink", demand=total)
    for i in range(n):
        g.add_node(("h", i), demand=-int(residents[i]))
        g.add_edge(("h", i), "unplaced", weight=unplaced_cost, capacity=int(residents[i]))
        for j in np.flatnonzero(finite[i]):
            g.add_edge(("h", i), ("s", int(j)), weight=int(round(dist[i, j] * COST_SCALE)),
                       capacity=int(residents[i]))
    for s_j in range(m):
        g.add_edge(("s", s_j), "sink", weight=0, capacity=int(capacity[s_j]))
    g.add_edge("unplaced", "sink", weight=0, capacity=total)
    flow = nx.network_simplex(g)[1]
    choice = np.full(n, -1, dtype=np.int64)
    split: list[int] = []
    for i in range(n):
        used = [(dest, f) for dest, f in flow[("h", i)].items() if f > 0]
        if len(used) == 1:
            dest = used[0][0]
            choice[i] = dest[1] if dest != "unplaced" else -1
        else:
            split.append(i)
    return choice, split


def _integer_assignment(residents: np.ndarray, capacity: np.ndarray, dist: np.ndarray,
                        time_limit_s: float = 20.0) -> np.ndarray | None:
    """The household-level optimum (each household whole to one shelter or unplaced), by HiGHS."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    n, m = dist.shape
    ii, jj = np.nonzero(np.isfinite(dist))
    finite_max = dist[ii, jj].max() if len(ii) else 1.0
    big = (finite_max + 1.0) * (residents.sum() + 1)
    # Variables: one per reachable (household, shelter) pair, then one "unplaced" per household.
    nv = len(ii) + n
    c = np.concatenate([residents[ii] * dist[ii, jj], residents * big])
    rows_one = np.concatenate([ii, np.arange(n)])
    one = coo_matrix((np.ones(nv), (rows_one, np.arange(nv))), shape=(n, nv))
    cap = coo_matrix((residents[ii].astype(float), (jj, np.arange(len(ii)))), shape=(m, nv))
    res = milp(
        c,
        constraints=[LinearConstraint(one, 1, 1), LinearConstraint(cap, -np.inf, capacity.astype(float))],
        integrality=np.ones(nv), bounds=Bounds(0, 1),
        options={"time_limit": time_limit_s, "disp": False},
    )
    if res.x is None:
        return None
    x = np.round(res.x).astype(bool)
    choice = np.full(n, -1, dtype=np.int64)
    choice[ii[x[: len(ii)]]] = jj[x[: len(ii)]]
    return choice


def assign(residents: Any, capacity: Any, dist: Any, order: Any = None, distance_kind: str = "straight") -> Assignment:
    """Households (people each) to shelters (capacity each) given the (n, m) distance matrix."""
    residents = np.asarray(residents, dtype=np.int64)
    capacity = np.asarray(capacity, dtype=np.int64)
    dist = np.asarray(dist, dtype=float)
    n, m = dist.shape
    candidates = []
    if n and m:
        choice, split = _flow_assignment(residents, capacity, dist)
        if not split:
            candidates.append(("min_cost_flow", choice))
        else:
            exact = _integer_assignment(residents, capacity, dist)
            if exact is not None:
                candidates.append(("integer_programme", exact))
    greedy = greedy_assignment(residents, capacity, dist, order) if m else np.full(n, -1)
    candidates.append(("greedy", greedy))

    def picked_dist(choice: np.ndarray) -> np.ndarray:
        d = np.full(n, np.nan)
        ok = choice >= 0
        d[ok] = dist[np.flatnonzero(ok), choice[ok]]
        return d

    method, choice = min(candidates, key=lambda c: cost_of(c[1], residents, picked_dist(c[1])))
    load = np.bincount(choice[choice >= 0], weights=residents[choice >= 0], minlength=m).astype(np.int64)
    if (load > capacity).any():  # a solver bug must never reach the emergency team
        raise RuntimeError("shelter assignment over capacity")
    return Assignment(choice, picked_dist(choice), load, method, distance_kind,
                      unplaced=np.flatnonzero(choice < 0).tolist())
