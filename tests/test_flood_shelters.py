"""Shelter assignment: never over capacity, never worse than greedy nearest-with-overflow, roads cut
by the water are not used; and the priority score's rules on hand-made households."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import shapely
from shapely.geometry import LineString, box

from gis.flood import priority
from gis.flood import shelters as sh


def check(assignment, residents, capacity, dist):
    load = np.zeros(len(capacity), dtype=np.int64)
    for i, j in enumerate(assignment.choice):
        if j >= 0:
            assert np.isfinite(dist[i, j])
            load[j] += residents[i]
    assert (load <= capacity).all()
    assert (load == assignment.load).all()
    greedy = sh.greedy_assignment(residents, capacity, dist, np.arange(len(residents)))
    gd = np.where(greedy >= 0, dist[np.arange(len(residents)), np.maximum(greedy, 0)], np.nan)
    ours = assignment.cost(residents)
    base = sh.cost_of(greedy, residents, gd)
    assert ours[0] <= base[0]
    if ours[0] == base[0]:
        assert ours[1] <= base[1] + 1e-6
    return ours, base


@pytest.mark.parametrize("seed", range(12))
def test_random_instances_capacity_and_no_worse_than_greedy(seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(20, 120)), int(rng.integers(2, 9))
    houses = rng.uniform(0, 5000, (n, 2))
    spots = rng.uniform(0, 5000, (m, 2))
    residents = rng.integers(1, 7, n)
    # From ample room down to too little: some instances must leave people unplaced.
    capacity = rng.integers(5, 1 + int(residents.sum() * rng.uniform(0.4, 1.6) / m) + 5, m)
    dist = sh.straight_distances(houses, spots)
    a = sh.assign(residents, capacity, dist, order=np.arange(n))
    check(a, residents, capacity, dist)
    if capacity.sum() < residents.sum():
        assert a.unplaced


def test_beats_greedy_when_greedy_takes_the_wrong_seat():
    # Shelter 0 is nearest for both; greedy gives it to house 0, house 1 then travels far.
    residents = np.array([2, 2])
    capacity = np.array([2, 2])
    dist = np.array([[100.0, 200.0], [100.0, 5000.0]])
    a = sh.assign(residents, capacity, dist, order=np.arange(2))
    assert a.choice.tolist() == [1, 0]
    assert a.method != "greedy"
    ours, base = check(a, residents, capacity, dist)
    assert ours[1] < base[1]


def test_households_are_never_split():
    # The people-level optimum would split house 1 between the two shelters.
    residents = np.array([3, 4, 3])
    capacity = np.array([5, 5])
    dist = np.array([[10.0, 50.0], [10.0, 30.0], [40.0, 10.0]])
    a = sh.assign(residents, capacity, dist)
    check(a, residents, capacity, dist)
    assert (a.choice >= 0).sum() == 2  # 10 people, room for 10 but not in whole households
    assert a.load.max() <= 5


def lattice_roads(n=6, step=1000.0):
    lines = []
    for k in range(n):
        lines.append(LineString([(0, k * step), ((n - 1) * step, k * step)]))
        lines.append(LineString([(k * step, 0), (k * step, (n - 1) * step)]))
    return lines


def reference_road_distance(lines, blocked, a, b):
    """Shortest path on the lattice's unit segments, by networkx, skipping segments in the water,
    with access legs to the nearest dry junction (the lattice's junctions are its nodes)."""
    g = nx.Graph()
    for line in lines:
        pts = np.asarray(line.coords)
        length = np.hypot(*(pts[1] - pts[0]))
        k = int(round(length / 1000.0))
        ts = np.linspace(0, 1, k + 1)
        seg_pts = [tuple(np.round(pts[0] + t * (pts[1] - pts[0]), 6)) for t in ts]
        for u, v in zip(seg_pts, seg_pts[1:], strict=False):
            if not LineString([u, v]).intersects(blocked):
                g.add_edge(u, v, weight=1000.0)
    nodes = np.array(list(g.nodes))

    def legs(p):
        d = np.hypot(*(nodes - p).T)
        order = np.argsort(d)[:4]
        return [(tuple(nodes[i]), d[i]) for i in order]

    best = np.inf
    for na, la in legs(a):
        lengths = nx.single_source_dijkstra_path_length(g, na)
        for nb, lb in legs(b):
            if nb in lengths:
                best = min(best, la + lengths[nb] + lb)
    return best


def test_road_distances_avoid_the_water_and_match_a_reference():
    lines = lattice_roads()
    # The water covers the middle of the lattice: the roads through it are cut.
    blocked = box(1400, 1400, 3600, 3600)
    houses = np.array([[2430.0, 2570.0], [2100.0, 1300.0], [300.0, 4800.0]])
    spots = np.array([[5000.0, 5000.0], [0.0, 0.0], [5000.0, 200.0]])
    dist = sh.road_distances(houses, spots, lines, blocked)
    straight = sh.straight_distances(houses, spots)
    assert (dist >= straight - 1e-6).all()
    for i in range(len(houses)):
        for j in range(len(spots)):
            assert dist[i, j] == pytest.approx(reference_road_distance(lines, blocked, houses[i], spots[j]))
    # Without water the roads through the middle are open again: the reference agrees, and the
    # house in the middle gets a shorter way out.
    open_dist = sh.road_distances(houses, spots, lines, None)
    nothing = shapely.Point(-1e6, -1e6).buffer(1)
    for j in range(len(spots)):
        assert open_dist[0, j] == pytest.approx(reference_road_distance(lines, nothing, houses[0], spots[j]))
    assert (open_dist[0] < dist[0] - 1).any()


def test_water_can_cut_a_shelter_off():
    lines = lattice_roads()
    wall = box(2400, -100, 2600, 5100)  # a flooded strip across every east-west road
    houses = np.array([[500.0, 500.0]])
    spots = np.array([[4500.0, 500.0], [1000.0, 4000.0]])
    dist = sh.road_distances(houses, spots, lines, wall)
    assert np.isinf(dist[0, 0]) and np.isfinite(dist[0, 1])
    a = sh.assign(np.array([3]), np.array([10, 10]), dist)
    assert a.choice.tolist() == [1]


@pytest.mark.parametrize("seed", range(4))
def test_assignment_with_cut_roads_is_no_worse_than_greedy(seed):
    rng = np.random.default_rng(100 + seed)
    lines = lattice_roads(8, 700.0)
    blocked = shapely.Point(2450, 2450).buffer(900 + 200 * seed)
    houses = rng.uniform(1500, 3400, (60, 2))
    spots = np.array([[0.0, 0.0], [4900.0, 0.0], [0.0, 4900.0], [4900.0, 4900.0], [2450.0, 4900.0]])
    residents = rng.integers(1, 6, 60)
    capacity = rng.integers(30, 70, 5)
    dist = sh.road_distances(houses, spots, lines, blocked)
    assert np.isfinite(dist).all()
    a = sh.assign(residents, capacity, dist, order=np.arange(60), distance_kind="road")
    check(a, residents, capacity, dist)


# --- priority -------------------------------------------------------------------------------------

def hh(i, **kw):
    base = {"id": i, "household_no": f"H{i:03d}", "residents": 3, "elderly": 0, "children": 0, "disabled": 0,
            "pregnant": 0, "bedridden": 0, "floors": 1, "depth_m": 1.0}
    base.update(kw)
    return base


def test_three_firsts():
    ordered = priority.rank([
        hh(1),
        hh(2, residents=1, elderly=1),                  # an old person living alone
        hh(3, depth_m=2.5),                             # the most dangerous place
        hh(4, bedridden=1, floors=2),                   # bedridden: no relief from a dry upper floor
        hh(5, floors=2),                                # same as 1 but with a dry upper floor
    ])
    order = [h["id"] for h in ordered]
    assert order.index(2) < order.index(1)
    assert order.index(3) < order.index(1)
    assert order.index(4) < order.index(1)
    assert order.index(1) < order.index(5)
    assert ordered[order.index(5)]["priority_parts"]["refuge"] < 0
    assert ordered[order.index(4)]["priority_parts"]["refuge"] == 0


def test_upper_floor_under_water_gives_no_relief():
    assert priority.dry_upper_floor(2, 2.0) and not priority.dry_upper_floor(2, 3.2)
    assert priority.score(hh(1, floors=2, depth_m=3.5)).refuge == 0


def test_ties_are_broken_by_depth_then_number_then_id_whatever_the_input_order():
    items = [hh(7), hh(3), hh(5, household_no="H001"), hh(9, depth_m=None, residents=3)]
    first = [h["id"] for h in priority.rank([dict(x) for x in items])]
    second = [h["id"] for h in priority.rank([dict(x) for x in reversed(items)])]
    assert first == second
    same = [h for h in priority.rank([dict(x) for x in items]) if h["depth_m"] == 1.0]
    assert [h["household_no"] for h in same] == ["H001", "H003", "H007"]
