"""Hot-spot statistics against the reference implementations: esda, libpysal, statsmodels, scipy.

No database: lattices, random data and hand-built cubes. The sample-town checks are in
tests/test_hotspots_sample.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import shapely
from scipy.stats import gaussian_kde

from gis.hotspots import density, emerging, units
from gis.hotspots import local_indicators as stats

warnings.filterwarnings("ignore", category=UserWarning)


def lattice(nx: int, ny: int, size: float = 100.0):
    cells = [
        shapely.box(i * size, j * size, (i + 1) * size, (j + 1) * size)
        for j in range(ny)
        for i in range(nx)
    ]
    return np.array(cells, dtype=object)


def pysal_w(nb: units.Neighbours):
    from libpysal.weights import W

    return W(nb.as_dict(), silence_warnings=True)


# --- weights --------------------------------------------------------------------------------------


def test_queen_neighbours_equal_libpysal_queen_on_a_jittered_lattice():
    import geopandas as gpd
    from libpysal.weights import Queen

    rng = np.random.default_rng(3)
    nx, ny = 12, 9
    vx = np.arange(nx + 1)[:, None] * 100 + rng.uniform(-20, 20, (nx + 1, ny + 1))
    vy = np.arange(ny + 1)[None, :] * 100 + rng.uniform(-20, 20, (nx + 1, ny + 1))
    cells = [
        shapely.Polygon(
            [
                (vx[i, j], vy[i, j]),
                (vx[i + 1, j], vy[i + 1, j]),
                (vx[i + 1, j + 1], vy[i + 1, j + 1]),
                (vx[i, j + 1], vy[i, j + 1]),
            ]
        )
        for i in range(nx)
        for j in range(ny)
    ]
    mine = units.queen_neighbours(cells).as_dict()
    ref = Queen.from_dataframe(
        gpd.GeoDataFrame(geometry=cells), use_index=False, silence_warnings=True
    )
    assert all(set(ref.neighbors[i]) == set(mine[i]) for i in range(len(cells)))
    assert max(len(v) for v in mine.values()) == 8


def test_hexagon_band_gives_six_neighbours_inside_and_none_without_one():
    area = shapely.box(0, 0, 5000, 5000)
    polys, centres, lattice_ij = units.hexagon_units(area, 500)
    nb = units.hexagon_neighbours(centres, 500)
    assert nb.cardinalities.max() == 6
    assert nb.cardinalities.min() >= 1
    assert len(nb.islands) == 0
    assert len({tuple(ij) for ij in lattice_ij}) == len(polys)
    # A far-away hexagon: the band grows until it has a neighbour; nobody is an island.
    far = np.vstack([centres, centres[-1] + [3000.0, 0.0]])
    nb_far = units.hexagon_neighbours(far, 500)
    assert nb_far.cardinalities[-1] >= 1
    assert nb_far.threshold_m >= 3000.0
    # Clipped hexagons cover the area exactly.
    assert abs(shapely.union_all(polys).area - area.area) < 1e-3


def test_islands_get_no_statistic_and_are_never_significant():
    cells = list(lattice(7, 6)) + [shapely.box(10_000, 10_000, 10_100, 10_100)]
    nb = units.queen_neighbours(cells)
    assert nb.islands.tolist() == [len(cells) - 1]
    y = np.r_[np.random.default_rng(1).poisson(2, len(cells) - 1), 500].astype(float)
    result = stats.local_statistics(
        y, nb.indptr, nb.indices, permutations=99, counts=y, share=np.ones(len(y))
    )
    assert result.island[-1] and not result.island[:-1].any()
    assert np.isnan(result.gi_z[-1]) and np.isnan(result.p_value[-1])
    assert not result.significant[-1] and result.gi_bin[-1] == 0


# --- Gi*, local Moran's I ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gi_star_equals_esda_binary_star(seed):
    from esda import G_Local

    nb = units.queen_neighbours(lattice(15, 11))
    rng = np.random.default_rng(seed)
    for y in (rng.poisson(3, nb.n).astype(float), rng.lognormal(0, 1, nb.n)):
        ref = G_Local(y, pysal_w(nb), transform="B", star=True, permutations=0)
        z = stats.gi_star(y, nb.indptr, nb.indices)
        assert np.abs(z - ref.Zs).max() < 1e-6


def test_gi_star_equals_esda_on_hexagons():
    from esda import G_Local

    _, centres, _ = units.hexagon_units(shapely.Point(0, 0).buffer(4000), 400)
    nb = units.hexagon_neighbours(centres, 400)
    y = np.random.default_rng(7).gamma(2, 2, nb.n)
    ref = G_Local(y, pysal_w(nb), transform="B", star=True, permutations=0)
    assert np.abs(stats.gi_star(y, nb.indptr, nb.indices) - ref.Zs).max() < 1e-6


def test_esda_defaults_are_not_this_statistic():
    """Row-standardised Gi without the unit (esda's defaults) differs: the reason to say so."""
    from esda import G_Local

    nb = units.queen_neighbours(lattice(10, 10))
    y = np.random.default_rng(5).poisson(3, nb.n).astype(float)
    default = G_Local(y, pysal_w(nb), permutations=0)
    assert np.abs(stats.gi_star(y, nb.indptr, nb.indices) - default.Zs).max() > 0.1


def test_local_moran_equals_esda():
    from esda import Moran_Local

    nb = units.queen_neighbours(lattice(12, 10))
    y = np.random.default_rng(11).lognormal(1, 0.7, nb.n)
    ref = Moran_Local(y, pysal_w(nb), permutations=0)
    moran, quadrant = stats.local_moran(y, nb.indptr, nb.indices)
    assert np.abs(moran - ref.Is).max() < 1e-9
    # esda's quadrants: 1 HH, 2 LH, 3 LL, 4 HL.
    names = {1: "HH", 2: "LH", 3: "LL", 4: "HL"}
    assert [names[q] for q in ref.q] == list(quadrant)


# --- permutations ------------------------------------------------------------------------------------


def brute_force_p(y, nb, draws):
    """The conditional-permutation p written the slow, obvious way, with the same draws."""
    out = []
    for i in range(nb.n):
        neigh = nb.indices[nb.indptr[i] : nb.indptr[i + 1]]
        observed = y[neigh].sum()
        others = np.delete(y, i)
        sums = others[draws[:, : len(neigh)]].sum(axis=1)
        ge, le = (sums >= observed - 1e-9).sum(), (sums <= observed + 1e-9).sum()
        out.append((min(ge, le) + 1) / (len(draws) + 1))
    return np.array(out)


def test_permutation_p_is_seeded_and_equals_the_brute_force_count():
    nb = units.queen_neighbours(lattice(9, 8))
    y = np.random.default_rng(2).poisson(2, nb.n).astype(float)  # ties on purpose
    p = stats.permutation_p(y, nb.indptr, nb.indices, 199, seed=42)
    draws = stats.random_draws(nb.n, int(nb.cardinalities.max()), 199, 42)
    assert np.array_equal(p, brute_force_p(y, nb, draws))
    assert np.array_equal(p, stats.permutation_p(y, nb.indptr, nb.indices, 199, seed=42))
    assert not np.array_equal(p, stats.permutation_p(y, nb.indptr, nb.indices, 199, seed=43))


def test_permutation_p_agrees_with_esda_in_distribution():
    """Different random streams, same test: on continuous data the two p_sim agree closely."""
    from esda import G_Local

    nb = units.queen_neighbours(lattice(20, 15))
    y = np.random.default_rng(9).lognormal(0, 1, nb.n)
    y[:40] += 4  # a cluster in the first rows
    ref = G_Local(y, pysal_w(nb), transform="B", star=True, permutations=999, seed=1, n_jobs=1)
    p = stats.permutation_p(y, nb.indptr, nb.indices, 999, seed=1)
    assert np.corrcoef(p, ref.p_sim)[0, 1] > 0.98
    assert np.abs(p - ref.p_sim).max() < 0.06


def test_ties_do_not_make_empty_neighbourhoods_significant():
    """A unit whose neighbours all have zero incidents is ordinary when most units have zero."""
    nb = units.queen_neighbours(lattice(10, 10))
    y = np.zeros(nb.n)
    y[[5, 37, 61, 88]] = [3, 1, 2, 4]
    p = stats.permutation_p(y, nb.indptr, nb.indices, 999, seed=1)
    zero_neighbourhoods = np.array(
        [y[nb.indices[nb.indptr[i] : nb.indptr[i + 1]]].sum() == 0 for i in range(nb.n)]
    )
    assert zero_neighbourhoods.sum() > 30
    assert p[zero_neighbourhoods].min() > 0.05


# --- FDR, bins, exact test ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_fdr_decisions_equal_statsmodels(seed):
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(seed)
    p = np.r_[rng.uniform(0, 1, 200), rng.uniform(0, 0.003, 15), [0.05, 0.05, 1.0]]
    for alpha in (0.01, 0.05, 0.10):
        reject, adjusted, _, _ = multipletests(p, alpha=alpha, method="fdr_bh")
        mine = stats.fdr_bh(p)
        assert np.allclose(mine, adjusted, atol=1e-12)
        assert np.array_equal(mine <= alpha, reject)
    # Islands (NaN) are not tests: the others are adjusted as if they were not there.
    with_nan = np.r_[p, np.nan, np.nan]
    assert np.allclose(stats.fdr_bh(with_nan)[:-2], multipletests(p, method="fdr_bh")[1])
    assert np.isnan(stats.fdr_bh(with_nan)[-2:]).all()


def test_confidence_bins():
    z = np.array([3.0, 2.2, 1.8, 0.5, -1.7, -2.0, -3.3, np.nan])
    p = np.array([0.001, 0.03, 0.08, 0.6, 0.09, 0.04, 0.0001, np.nan])
    assert stats.confidence_bins(z, p).tolist() == [3, 2, 1, 0, -1, -2, -3, 0]
    assert stats.confidence_bins(
        z, np.array([0.01, 0.05, 0.10, 0.1001, 0.2, 0.011, 0.01, 0.0])
    ).tolist() == [3, 2, 1, 0, 0, -2, -3, 0]


def test_exact_p_is_the_binomial_test_of_the_neighbourhood():
    from scipy.stats import binomtest

    nb = units.queen_neighbours(lattice(8, 6))
    rng = np.random.default_rng(4)
    counts = rng.poisson(1.5, nb.n).astype(float)
    share = rng.uniform(0.5, 2, nb.n)
    p, expected, observed = stats.exact_p(counts, share, nb.indptr, nb.indices)
    total = int(counts.sum())
    for i in (0, 10, 27, nb.n - 1):
        members = np.r_[i, nb.indices[nb.indptr[i] : nb.indptr[i + 1]]]
        mass = share[members].sum() / share.sum()
        k = int(counts[members].sum())
        assert observed[i] == k and abs(expected[i] - total * mass) < 1e-9
        one_sided = min(
            binomtest(k, total, mass, "greater").pvalue, binomtest(k, total, mass, "less").pvalue
        )
        assert abs(p[i] - min(1.0, 2 * one_sided)) < 1e-9


def test_uniform_counts_give_no_fdr_significant_hot_spots_in_95_percent_of_seeds():
    nb = units.queen_neighbours(lattice(20, 15))
    clean = 0
    for seed in range(40):
        counts = np.random.default_rng(seed).multinomial(600, np.full(nb.n, 1 / nb.n)).astype(float)
        result = stats.local_statistics(
            counts, nb.indptr, nb.indices, permutations=0, counts=counts, share=np.ones(nb.n)
        )
        clean += not (result.significant & (result.gi_bin > 0)).any()
    assert clean >= 38


def test_a_planted_cluster_is_a_significant_hot_spot():
    nb = units.queen_neighbours(lattice(20, 15))
    counts = np.random.default_rng(0).multinomial(400, np.full(nb.n, 1 / nb.n)).astype(float)
    block = [j * 20 + i for j in range(5, 8) for i in range(10, 13)]
    counts[block] += 12
    result = stats.local_statistics(
        counts, nb.indptr, nb.indices, permutations=99, counts=counts, share=np.ones(nb.n)
    )
    hot = set(np.flatnonzero(result.significant & (result.gi_bin > 0)))
    assert set(block) <= hot
    assert (result.gi_bin[block] == 3).all()


# --- emerging hot spots ------------------------------------------------------------------------------

T = 12
H, C, N = "H", "C", "."


def masks(*rows: str):
    hot = np.array([[c == H for c in r] for r in rows])
    cold = np.array([[c == C for c in r] for r in rows])
    return hot, cold


RISING = np.linspace(2, 6, T)
FALLING = RISING[::-1]
FLAT = np.array([3.0, 3.2] * (T // 2))

# Each category built on purpose: the monthly pattern and the z series for the trend.
CASES = [
    ("new_hot", "...........H", FLAT),
    ("consecutive_hot", "........HHHH", FLAT),
    ("intensifying_hot", "HHHHHHHHHHHH", RISING),
    ("persistent_hot", "HHHHHHHHHHHH", FLAT),
    ("diminishing_hot", "HHHHHHHHHHHH", FALLING),
    ("sporadic_hot", "..H..H.H...H", FLAT),
    ("oscillating_hot", "C..H..C....H", FLAT),
    ("historical_hot", "HHHHHHHHHHH.", FLAT),
    ("new_cold", "...........C", -FLAT),
    ("consecutive_cold", ".........CCC", -FLAT),
    ("intensifying_cold", "CCCCCCCCCCCC", -RISING),
    ("persistent_cold", "CCCCCCCCCCCC", -FLAT),
    ("diminishing_cold", "CCCCCCCCCCCC", -FALLING),
    ("sporadic_cold", ".C..C...C..C", -FLAT),
    ("oscillating_cold", "H...C..H...C", -FLAT),
    ("historical_cold", "CCCCCCCCCCC.", -FLAT),
    ("no_pattern", "............", FLAT),
    ("no_pattern", "..HH..HH....", FLAT),  # hot on and off, but not in the last month
]


def test_every_category_is_recognised_on_a_hand_built_cube():
    hot, cold = masks(*[c[1] for c in CASES])
    series = np.vstack([c[2] for c in CASES])
    categories, trend_z, trend_p = emerging.classify(hot, cold, series)
    assert list(categories) == [c[0] for c in CASES]
    assert {c[0] for c in CASES} == set(emerging.CATEGORIES)


def test_ninety_percent_rule_and_consecutive_versus_persistent():
    # 11 of 12 hot incl. the last, one gap early: >= 90 % -> persistent, not consecutive.
    hot, cold = masks("H.HHHHHHHHHH", ".HHHHHHHHHHH", "..HHHHHHHHHH")
    categories, _, _ = emerging.classify(hot, cold, np.vstack([FLAT] * 3))
    assert list(categories) == ["persistent_hot", "persistent_hot", "consecutive_hot"]


def test_mann_kendall_equals_pymannkendall():
    import pymannkendall

    rng = np.random.default_rng(8)
    series = np.vstack(
        [rng.normal(0, 1, 24) + np.linspace(0, s, 24) for s in (0, 1, 3)]
        + [np.round(rng.normal(0, 1, 24))]
    )  # the last one with ties
    s, z, p = emerging.mann_kendall(series)
    for i, row in enumerate(series):
        ref = pymannkendall.original_test(row)
        assert s[i] == ref.s
        assert abs(z[i] - ref.z) < 1e-9 and abs(p[i] - ref.p) < 1e-9


def test_emerging_on_a_count_cube_finds_a_new_cluster():
    nb = units.queen_neighbours(lattice(12, 10))
    rng = np.random.default_rng(1)
    counts = rng.poisson(0.5, (nb.n, 18)).astype(float)
    block = [j * 12 + i for j in range(4, 7) for i in range(4, 7)]
    counts[np.ix_(block, range(12, 18))] += 6  # appears in month 13 and stays
    categories, z, _, _ = emerging.emerging_hot_spots(
        counts, nb.indptr, nb.indices, counts=counts, share=np.ones(nb.n)
    )
    centre = 5 * 12 + 5
    assert categories[centre] == "consecutive_hot"
    assert not any(
        c.endswith("_hot")
        for i, c in enumerate(categories)
        if i not in block and not set(nb.indices[nb.indptr[i] : nb.indptr[i + 1]]) & set(block)
    )


# --- density ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bandwidth", [None, 40.0, 400.0])
def test_density_within_one_percent_of_the_exact_gaussian_sum(bandwidth):
    rng = np.random.default_rng(6)
    xy = np.r_[
        rng.normal(0, 900, (1200, 2)),
        rng.normal([2500, 1800], 150, (600, 2)),
        rng.uniform(-4000, 6000, (200, 2)),
    ]
    surface = density.kernel_density(
        xy, (-4000, -4000, 6000, 6000), (120, 150), bandwidth=bandwidth
    )
    exact = density.exact_density(xy, surface)
    assert np.abs(surface.values - exact).max() <= 0.01 * exact.max()
    assert surface.values.shape == (120, 150)


def test_default_bandwidth_is_scipy_scott_rule():
    rng = np.random.default_rng(2)
    xy = rng.multivariate_normal([0, 0], [[4e5, 1e5], [1e5, 2e5]], 2000)
    surface = density.kernel_density(xy, (-3000, -3000, 3000, 3000), (120, 100))
    kde = gaussian_kde(xy.T)
    assert np.allclose(surface.covariance, kde.covariance)
    cx, cy = surface.centres()
    gx, gy = np.meshgrid(cx, cy)
    ref = kde(np.vstack([gx.ravel(), gy.ravel()])).reshape(surface.values.shape)
    assert np.abs(surface.values - ref).max() <= 0.01 * ref.max()
