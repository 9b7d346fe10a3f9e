"""Emerging hot spots: a space-time cube (units × months), Gi* per month, Mann–Kendall trends.

Each unit gets one category from its series of monthly Gi* results. A month is a *hot* (*cold*)
bin when the unit's neighbourhood is significantly above (below) expectation that month, at
`alpha` (0.05), by the exact binomial test of the month's counts (gis.hotspots.local_indicators.exact_p),
with the Benjamini–Hochberg correction within each month when FDR is on; with inference
"normal" or "permutation", by the normal p of the month's Gi* z. A month holds few incidents,
where the normal approximation of z is poor: requiring it too (as the whole-window map does)
breaks a steady monthly cluster into "sporadic" months, so the months use the exact test alone.
With T months, "90 %" means at least ceil(0.9 T) of the months. The trend is the Mann–Kendall
test (two-sided, p ≤ `alpha`, with the tie correction of the variance) on the unit's monthly Gi*
z-scores: it says whether the clustering there has been getting stronger or weaker.

The categories, as the standard space-time tools define them (written here in our own words);
checked in this order, cold ones mirror hot ones with "hot" and "cold" swapped:

* oscillating hot — hot in the last month, and cold in at least one earlier month; fewer than
  90 % of the months hot. (Checked first: a place that swings between cold and hot is reported as
  swinging, even if its hot months form one run at the end.)
* new hot — hot in the last month and never hot before.
* consecutive hot — one unbroken run of at least two hot months ending in the last month, never
  hot before that run, and fewer than 90 % of the months hot.
* intensifying hot — hot in at least 90 % of the months including the last, with a significant
  upward trend of z.
* diminishing hot — as intensifying, with a significant downward trend.
* persistent hot — hot in at least 90 % of the months including the last, without a significant
  trend.
* sporadic hot — hot in the last month, hot on and off before (not one run), fewer than 90 % of
  the months hot, never cold.
* historical hot — not hot in the last month, but hot in at least 90 % of the months.
* no pattern — none of these (also: islands, and units never significant).

A unit that fits both a hot and a cold description (impossible for the last-month categories;
possible only for none) is no pattern.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from gis.hotspots.local_indicators import exact_p, fdr_bh, gi_star

HOT_CATEGORIES = (
    "new",
    "consecutive",
    "intensifying",
    "persistent",
    "diminishing",
    "sporadic",
    "oscillating",
    "historical",
)
CATEGORIES = (
    tuple(f"{c}_hot" for c in HOT_CATEGORIES)
    + tuple(f"{c}_cold" for c in HOT_CATEGORIES)
    + ("no_pattern",)
)


def mann_kendall(series: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mann–Kendall per row of `series` (units × time): (S, z, two-sided p). NaNs count as ties at 0."""
    x = np.nan_to_num(np.asarray(series, dtype=float))
    n_units, t = x.shape
    s = np.zeros(n_units)
    for i in range(t - 1):
        s += np.sign(x[:, i + 1 :] - x[:, i : i + 1]).sum(axis=1)
    # Variance with the tie correction: Σ over groups of tied values of g(g−1)(2g+5).
    ties = np.zeros(n_units)
    xs = np.sort(x, axis=1)
    run = np.ones(n_units)
    for i in range(1, t):
        same = xs[:, i] == xs[:, i - 1]
        ended = ~same
        ties += np.where(ended, run * (run - 1) * (2 * run + 5), 0.0)
        run = np.where(same, run + 1, 1.0)
    ties += run * (run - 1) * (2 * run + 5)
    var = (t * (t - 1) * (2 * t + 5) - ties) / 18.0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(s > 0, (s - 1) / np.sqrt(var), np.where(s < 0, (s + 1) / np.sqrt(var), 0.0))
    z = np.nan_to_num(z)
    p = 2 * sps.norm.sf(np.abs(z))
    return s, z, p


def cube_gi_star(cube: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Gi* z per unit and time step of `cube` (units × time); NaN where a month has no variance."""
    return np.column_stack([gi_star(cube[:, t], indptr, indices) for t in range(cube.shape[1])])


def cube_significance(
    cube: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    *,
    alpha: float = 0.05,
    fdr: bool = True,
    counts: np.ndarray | None = None,
    share: np.ndarray | None = None,
    require_z: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hot, cold, z) per unit × month.

    With `counts` (units × months) and `share` the exact binomial test of the month's counts
    decides (with `require_z` the month's Gi* z must be significant the same way too, as in the
    whole-window map's "both"); without counts the normal p of z alone decides."""
    if counts is not None and share is None:
        raise ValueError("the exact test of counts needs each unit's share")
    z = cube_gi_star(np.asarray(cube, dtype=float), indptr, indices)
    hot = np.zeros(z.shape, dtype=bool)
    cold = np.zeros(z.shape, dtype=bool)
    for t in range(z.shape[1]):
        zt = z[:, t]
        p_norm = 2 * sps.norm.sf(np.abs(zt))
        sign = np.sign(np.nan_to_num(zt))
        if counts is not None and share is not None:
            if counts[:, t].sum() == 0:
                continue  # no incident that month: nothing is significant
            p, expected, observed = exact_p(counts[:, t], share, indptr, indices)
            exact_sign = np.sign(observed - expected)
            if require_z:
                p = np.where(exact_sign == sign, np.fmax(p, p_norm), 1.0)
            sign = exact_sign
        else:
            p = p_norm
        q = fdr_bh(p) if fdr else p
        sig = np.nan_to_num(q, nan=1.0) <= alpha
        hot[:, t], cold[:, t] = sig & (sign > 0), sig & (sign < 0)
    return hot, cold, z


def classify(
    hot: np.ndarray, cold: np.ndarray, series: np.ndarray, alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Categories from the hot/cold months (units × months) and the series whose Mann–Kendall
    trend tells intensifying from diminishing (the Gi* z): (category, trend z, trend p)."""
    n_units, t = hot.shape
    _, trend_z, trend_p = mann_kendall(series)
    trend_up = (trend_p <= alpha) & (trend_z > 0)
    trend_down = (trend_p <= alpha) & (trend_z < 0)
    need = math.ceil(0.9 * t)
    out = np.full(n_units, "no_pattern", dtype=object)
    hot_cat = _categories(hot, cold, trend_up, trend_down, need)
    cold_cat = _categories(cold, hot, trend_down, trend_up, need)
    has_hot, has_cold = hot_cat != "", cold_cat != ""
    out[has_hot & ~has_cold] = [c + "_hot" for c in hot_cat[has_hot & ~has_cold]]
    out[has_cold & ~has_hot] = [c + "_cold" for c in cold_cat[has_cold & ~has_hot]]
    return out, trend_z, trend_p


def _categories(
    hit: np.ndarray, opposite: np.ndarray, stronger: np.ndarray, weaker: np.ndarray, need: int
) -> np.ndarray:
    """The hot-side category of every unit ('' for none), where `hit` marks the hot months."""
    n_units, t = hit.shape
    count = hit.sum(axis=1)
    last = hit[:, -1]
    before = hit[:, :-1].any(axis=1)
    # Length of the run of hits that ends in the last month.
    run = np.zeros(n_units, dtype=int)
    still = np.ones(n_units, dtype=bool)
    for i in range(t - 1, -1, -1):
        still &= hit[:, i]
        run += still
    earlier = count > run  # hits before the final run
    opposite_before = opposite[:, :-1].any(axis=1)
    mostly = count >= need
    out = np.full(n_units, "", dtype=object)
    rules = [
        ("oscillating", last & opposite_before & ~mostly),
        ("new", last & ~before),
        ("consecutive", last & (run >= 2) & ~earlier & ~mostly),
        ("intensifying", last & mostly & stronger),
        ("diminishing", last & mostly & weaker),
        ("persistent", last & mostly),
        ("sporadic", last & ~mostly & ~opposite[:, :-1].any(axis=1) & earlier),
        ("historical", ~last & mostly),
    ]
    for name, mask in rules:
        out[(out == "") & mask] = name
    return out


def emerging_hot_spots(
    cube: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    *,
    alpha: float = 0.05,
    fdr: bool = True,
    counts: np.ndarray | None = None,
    share: np.ndarray | None = None,
    require_z: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(category per unit, Gi* z per unit × month, trend z, trend p) for a cube of values."""
    hot, cold, z = cube_significance(
        cube, indptr, indices, alpha=alpha, fdr=fdr, counts=counts, share=share, require_z=require_z
    )
    categories, trend_z, trend_p = classify(hot, cold, z, alpha)
    return categories, z, trend_z, trend_p
