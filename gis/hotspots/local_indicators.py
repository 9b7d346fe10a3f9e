"""Local statistics on a set of units: Getis-Ord Gi*, local Moran's I, permutations, FDR, bins.

All statistics take a `Neighbours` structure (gis.hotspots.units): binary contiguity in CSR form
(`indptr`, `indices`) without the unit itself. Gi* adds the unit itself with weight 1 — the
statistic of the standard hot-spot tools, equal to esda's
`G_Local(y, w, transform="B", star=True)` (not esda's defaults, which are row-standardised and
leave the unit out).

Gi* for unit i with binary weights w_ij (w_ii = 1), n units, mean x̄ and standard deviation
s = sqrt(Σx²/n − x̄²):

    z_i = (Σ_j w_ij x_j − x̄ W_i) / (s · sqrt((n W_i − W_i²) / (n − 1))),   W_i = Σ_j w_ij

Conditional permutations: unit i keeps its own value, its k_i neighbours' values are drawn at
random without replacement from the other n − 1 units. Both Gi* (sum over the neighbourhood, the
denominator Σx being fixed) and local Moran's I (z_i times the mean of the neighbours' z) are
monotone functions of the neighbours' sum once x_i is fixed, so one set of
draws gives both pseudo p-values. As in esda, one matrix of random draws (permutations × k_max)
is shared by all units, with the unit's own index skipped. The pseudo p-value is one-sided
towards the side the observation lies on, (min(#≥, #≤) + 1) / (permutations + 1), ties counted
on both sides (see permutation_p); the two-sided p is min(1, 2 × that).

Which p-value decides (`inference`):

* "both" (the default for incident counts): the analytic Gi* z and the exact count test below
  must both be significant, in the same direction; the p that decides is the larger of the two
  (an intersection–union test, valid and conservative). The exact test alone calls a unit with
  no incident a hot spot because it touches one busy unit, and every quiet neighbourhood a cold
  spot once most incidents sit in a few clusters; the normal approximation alone is too generous
  in the upper tail of sparse counts (uniform random incidents then give false hot spots). Both
  together give the standard Gi* map, with its significance checked exactly.
* "exact": conditional on the total N, under "no clustering" each incident falls in unit j with
  probability share_j (its share of the area, or of the
  residents for rates), so the count S_i in unit i's neighbourhood (the unit included, as in Gi*)
  is Binomial(N, Σ share). The two-sided p is 2 × the smaller tail, at most 1. This is exact for
  counts, however small, and is the test behind "a uniform random set gives no hot spots": the
  normal approximation of Gi* is too generous in the upper tail of sparse counts, and
  permutations of the observed values cannot call a cluster significant when the cluster itself
  supplies the few large values being permuted.
* "permutation": the conditional-permutation pseudo p (two-sided), as in esda / the standard
  tools' permutation option.
* "normal": the two-sided p of the analytic Gi* z.
Every p-value is reported for every unit, whichever decides.

Confidence bins follow the standard hot-spot tools: ±3 at 99 %, ±2 at 95 %, ±1 at 90 %
(p ≤ 0.01, 0.05, 0.10, on the FDR-adjusted p when FDR is on), the sign from z (for the exact
test, from the observed count minus the expected one; under "both" the two agree).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
from scipy import stats as sps

try:  # numba compiles the permutation loop; without it the same loop runs as (slow) Python.
    import numba

    _NUMBA_JIT: Any = numba.njit(cache=True, nogil=True)
except ImportError:  # pragma: no cover - numba is a runtime dependency
    _NUMBA_JIT = None

_F = TypeVar("_F", bound=Callable[..., Any])


def _njit(f: _F) -> _F:
    """`f` compiled by numba (same signature), or `f` itself without numba."""
    return cast(_F, _NUMBA_JIT(f)) if _NUMBA_JIT is not None else f


DEFAULT_PERMUTATIONS = 999
DEFAULT_SEED = 12345
BIN_LEVELS = ((3, 0.01), (2, 0.05), (1, 0.10))


@dataclass
class LocalResult:
    """Per unit: Gi* z and p, local Moran's I and its quadrant, pseudo p, FDR and bins."""

    gi_z: np.ndarray
    gi_p_norm: np.ndarray  # two-sided p from the normal approximation of z
    p_sim: np.ndarray  # one-sided pseudo p from the conditional permutations
    p_exact: np.ndarray  # two-sided exact binomial p of the neighbourhood count (or NaN)
    expected: np.ndarray  # the neighbourhood's expected count under no clustering (or NaN)
    p_value: np.ndarray  # the p the decisions use (two-sided)
    q_value: np.ndarray  # Benjamini-Hochberg adjusted p_value (equals p_value without FDR)
    significant: np.ndarray  # q_value <= alpha
    gi_bin: np.ndarray  # -3..3
    moran_i: np.ndarray
    quadrant: np.ndarray  # "HH", "LL", "HL", "LH", "" (island / no variance)
    moran_q: np.ndarray  # FDR-adjusted (or plain) two-sided permutation p of local Moran's I
    outlier: np.ndarray  # "high_low", "low_high" or "" (significant outliers only)
    island: np.ndarray  # units without neighbours: no statistic, never significant


def gi_star(y: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Analytic Gi* z-scores (binary weights, the unit included); NaN for islands or no variance."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    k = np.diff(indptr)
    lag = neighbour_sums(y, indptr, indices) + y
    w = (k + 1).astype(float)
    mean = y.mean()
    s = np.sqrt(max((y * y).mean() - mean * mean, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        z: np.ndarray = (lag - mean * w) / (s * np.sqrt((n * w - w * w) / (n - 1)))
    z[(k == 0) | (s == 0) | ~np.isfinite(z)] = np.nan
    return z


def neighbour_sums(y: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Σ_j y_j over each unit's neighbours (the unit itself not included)."""
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    return np.bincount(rows, weights=np.asarray(y, dtype=float)[indices], minlength=len(indptr) - 1)


def local_moran(
    y: np.ndarray, indptr: np.ndarray, indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Local Moran's I with row-standardised weights (the unit left out), and its quadrant.

    I_i = (n − 1)/n · z_i · mean_j(z_j) over the neighbours, z = (y − ȳ)/s (s with divisor n) —
    the scaling of esda's Moran_Local, so the numbers can be compared. Quadrant: HH (high among high),
    LL, HL (a high unit among low neighbours), LH (low among high)."""
    y = np.asarray(y, dtype=float)
    k = np.diff(indptr)
    s = y.std()
    z = (y - y.mean()) / s if s > 0 else np.zeros_like(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        lag = neighbour_sums(z, indptr, indices) / k
    moran = (len(y) - 1) / len(y) * z * lag
    quadrant = np.full(len(y), "", dtype=object)
    ok = (k > 0) & (s > 0)
    hi, hi_lag = z > 0, lag > 0
    quadrant[ok & hi & hi_lag] = "HH"
    quadrant[ok & ~hi & ~hi_lag] = "LL"
    quadrant[ok & hi & ~hi_lag] = "HL"
    quadrant[ok & ~hi & hi_lag] = "LH"
    moran[~ok] = np.nan
    return moran, quadrant


def random_draws(n: int, k_max: int, permutations: int, seed: int | None) -> np.ndarray:
    """(permutations, k_max) indices into the n − 1 other units, without replacement per row."""
    rng = np.random.default_rng(seed)
    if k_max == 0 or n < 2:
        return np.zeros((permutations, 0), dtype=np.int64)
    k_max = min(k_max, n - 1)
    return np.stack(
        [rng.choice(n - 1, size=k_max, replace=False) for _ in range(permutations)]
    ).astype(np.int64)


@_njit
def _count_extremes(
    y: np.ndarray, indptr: np.ndarray, indices: np.ndarray, draws: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Per unit: how many permuted neighbour sums are >= and <= the observed one."""
    n = y.shape[0]
    perms = draws.shape[0]
    larger = np.zeros(n, dtype=np.int64)
    smaller = np.zeros(n, dtype=np.int64)
    for i in range(n):
        start, stop = indptr[i], indptr[i + 1]
        k = stop - start
        if k == 0:
            continue
        observed = 0.0
        for j in range(start, stop):
            observed += y[indices[j]]
        # Sums equal up to rounding (the same values added in another order) are ties.
        tol = 1e-9 * (abs(observed) + 1.0)
        up = 0
        down = 0
        for p in range(perms):
            total = 0.0
            for c in range(k):
                d = draws[p, c]
                total += y[d + 1] if d >= i else y[d]
            if total >= observed - tol:
                up += 1
            if total <= observed + tol:
                down += 1
        larger[i] = up
        smaller[i] = down
    return larger, smaller


def permutation_p(
    y: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int | None = DEFAULT_SEED,
) -> np.ndarray:
    """One-sided pseudo p-values of the neighbours' sum under conditional permutation, towards
    the side the observation lies on: min(#≥ + 1, #≤ + 1) / (permutations + 1). NaN: islands.

    Ties count on both sides. (esda folds #≥ alone, min(#≥, P − #≥): with many tied values — a
    unit whose neighbours all have zero incidents — that makes an ordinary unit look like a
    significant cold spot; counting #≤ directly does not.)"""
    y = np.ascontiguousarray(y, dtype=float)
    k = np.diff(indptr)
    draws = random_draws(len(y), int(k.max(initial=0)), permutations, seed)
    larger, smaller = _count_extremes(
        y,
        np.ascontiguousarray(indptr, dtype=np.int64),
        np.ascontiguousarray(indices, dtype=np.int64),
        draws,
    )
    p = (np.minimum(larger, smaller) + 1) / (permutations + 1)
    return np.where(k > 0, np.minimum(p, 1.0), np.nan)


def exact_p(
    counts: np.ndarray, share: np.ndarray, indptr: np.ndarray, indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(two-sided p, expected count, observed count) of each unit's neighbourhood, unit included.

    Conditional on the total N, the count in a set of units with probability mass π is
    Binomial(N, π) when incidents fall independently in proportion to `share`."""
    counts = np.asarray(counts, dtype=float)
    share = np.asarray(share, dtype=float)
    share = share / share.sum()
    total = counts.sum()
    observed = neighbour_sums(counts, indptr, indices) + counts
    mass = np.clip(neighbour_sums(share, indptr, indices) + share, 0.0, 1.0)
    upper = sps.binom.sf(observed - 1, total, mass)  # P(X >= observed)
    lower = sps.binom.cdf(observed, total, mass)  # P(X <= observed)
    p = np.minimum(1.0, 2 * np.minimum(upper, lower))
    p[np.diff(indptr) == 0] = np.nan
    return p, total * mass, observed


def fdr_bh(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (NaN stays NaN and does not count as a test)."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    ranked = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out[order] = np.minimum(adjusted, 1.0)
    return out


def confidence_bins(z: np.ndarray, p: np.ndarray) -> np.ndarray:
    """±3/±2/±1 at p ≤ 0.01/0.05/0.10, signed by `z` (a z-score or any signed excess); 0 otherwise."""
    out = np.zeros(len(z), dtype=np.int8)
    sign = np.sign(np.nan_to_num(z)).astype(np.int8)
    p = np.nan_to_num(np.asarray(p, dtype=float), nan=1.0)
    for level, alpha in reversed(BIN_LEVELS):
        out[p <= alpha] = level
    signed: np.ndarray = out * sign
    return signed


def local_statistics(
    y: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int | None = DEFAULT_SEED,
    fdr: bool = True,
    alpha: float = 0.05,
    inference: str = "both",
    counts: np.ndarray | None = None,
    share: np.ndarray | None = None,
) -> LocalResult:
    """Everything the hot-spot map shows, per unit, for values `y`.

    `inference` picks the p that decides (see the module's docs); "both" and "exact" need the incident
    `counts` and each unit's `share` of the expectation (area or residents)."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    k = np.diff(indptr)
    island = k == 0
    z = gi_star(y, indptr, indices)
    p_norm = 2 * sps.norm.sf(np.abs(z))
    p_sim = (
        permutation_p(y, indptr, indices, permutations, seed)
        if permutations
        else np.full(n, np.nan)
    )
    if counts is not None and share is not None:
        p_ex, expected, observed = exact_p(counts, share, indptr, indices)
    else:
        p_ex, expected, observed = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    if inference in ("exact", "both"):
        if counts is None or share is None:
            raise ValueError(f"{inference} inference needs counts and shares")
        p_value, sign = p_ex.copy(), np.sign(observed - expected)
        if inference == "both":
            agree = sign == np.sign(np.nan_to_num(z))
            p_value = np.where(agree, np.fmax(p_value, p_norm), 1.0)
            p_value[np.isnan(z)] = np.nan
    elif inference == "permutation":
        if not permutations:
            raise ValueError("permutation inference needs permutations > 0")
        p_value, sign = np.minimum(1.0, 2 * p_sim), np.sign(np.nan_to_num(z))
        p_value[np.isnan(z)] = np.nan
    elif inference == "normal":
        p_value, sign = p_norm.copy(), np.sign(np.nan_to_num(z))
    else:
        raise ValueError(f"unknown inference {inference!r}")
    p_value[island] = np.nan
    q = fdr_bh(p_value) if fdr else p_value.copy()
    significant = np.nan_to_num(q, nan=1.0) <= alpha
    bins = confidence_bins(sign, q)
    moran, quadrant = local_moran(y, indptr, indices)
    # Outliers are local Moran's I decisions: its conditional-permutation p (the same draws as
    # Gi*'s, see above), two-sided, FDR-adjusted like the hot spots. No permutations, no outliers.
    moran_p = np.minimum(1.0, 2 * p_sim)
    moran_q = fdr_bh(moran_p) if fdr else moran_p
    moran_sig = np.nan_to_num(moran_q, nan=1.0) <= alpha
    outlier = np.full(n, "", dtype=object)
    outlier[moran_sig & (quadrant == "HL")] = "high_low"
    outlier[moran_sig & (quadrant == "LH")] = "low_high"
    return LocalResult(
        z,
        p_norm,
        p_sim,
        p_ex,
        expected,
        p_value,
        q,
        significant,
        bins,
        moran,
        quadrant,
        moran_q,
        outlier,
        island,
    )
