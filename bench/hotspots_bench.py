"""Hot-spot speed, in one run, against the reference libraries on the same input:

1. Gi* with 999 conditional permutations on the 60,000 group grids of bench/city.py's lattice
   (built in-process, no database), Wangge (gis.hotspots.local_indicators, numba) vs esda's
   G_Local(y, w, transform="B", star=True, permutations=999) on the same weights, both on one
   thread (esda n_jobs=1; Wangge's loop is single-threaded). The analytic z-scores are compared too.
2. Kernel density of 100,000 points to a 200 x 200 raster: gis.hotspots.density (binned + FFT)
   vs scipy.stats.gaussian_kde on the same points with the same (Scott) bandwidth; the error is
   measured against gaussian_kde's exact sums, as a share of the peak.
3. The full emerging-hot-spot run: 60,000 units x 24 months (Gi* per month, exact test + FDR per
   month, Mann-Kendall, categories).

    .venv/bin/python bench/hotspots_bench.py              # ~3-5 min on 2 shared cores
    .venv/bin/python bench/hotspots_bench.py --kde-cells 4000   # gaussian_kde on a sample of cells

Results are printed and written to var/bench/hotspots_results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

warnings.filterwarnings("ignore")


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def city_units():
    """The 60,000 group cells of bench/city.py's lattice (same seed), in a metric CRS."""
    import geopandas as gpd
    import shapely
    from city import SEED, Lattice

    lat = Lattice(np.random.default_rng(SEED))
    cells = shapely.polygons(lat.cell_rings())
    metric = gpd.GeoSeries(cells, crs=4326).to_crs("EPSG:32649").values
    return np.asarray(metric, dtype=object)


def city_counts(metric, rng) -> np.ndarray:
    """Incident counts: a Poisson background plus a few clusters, like a city's disputes."""
    import shapely

    xy = shapely.get_coordinates(shapely.centroid(metric))
    rate = np.full(len(xy), 0.8)
    for cx, cy in xy[rng.choice(len(xy), 12, replace=False)]:
        d2 = ((xy[:, 0] - cx) ** 2 + (xy[:, 1] - cy) ** 2) / (1500.0**2)
        rate += 6 * np.exp(-d2)
    return rng.poisson(rate).astype(float)


def bench_gi(results: dict, permutations: int) -> None:
    from esda import G_Local
    from libpysal.weights import W

    from gis.hotspots import local_indicators as stats
    from gis.hotspots import units

    metric, t_units = timed(city_units)
    nb, t_w = timed(units.queen_neighbours, metric)
    y = city_counts(metric, np.random.default_rng(1))
    print(
        f"units: {nb.n}, mean neighbours {nb.cardinalities.mean():.2f}; built in {t_units:.1f} s, "
        f"queen weights (STRtree) in {t_w:.2f} s"
    )
    # Warm up both numba paths on a small input so compile time is not counted.
    small = units.queen_neighbours(metric[:500])
    stats.permutation_p(y[:500], small.indptr, small.indices, 9, seed=0)
    G_Local(
        y[:500],
        W(small.as_dict(), silence_warnings=True),
        transform="B",
        star=True,
        permutations=9,
        n_jobs=1,
        keep_simulations=False,
        seed=0,
    )

    w, t_pysal_w = timed(lambda: W(nb.as_dict(), silence_warnings=True))

    def wangge():
        z = stats.gi_star(y, nb.indptr, nb.indices)
        p = stats.permutation_p(y, nb.indptr, nb.indices, permutations, seed=1)
        return z, p

    def esda():
        return G_Local(
            y,
            w,
            transform="B",
            star=True,
            permutations=permutations,
            n_jobs=1,
            keep_simulations=False,
            seed=1,
        )

    (z, p), t_ours = timed(wangge)
    ref, t_esda = timed(esda)
    diff = float(np.abs(z - ref.Zs).max())
    agree = float(np.corrcoef(p, ref.p_sim)[0, 1])
    print(
        f"Gi* + {permutations} permutations on {nb.n} units: Wangge {t_ours:.2f} s, esda {t_esda:.2f} s "
        f"-> esda / Wangge = {t_esda / t_ours:.1f}x; max |z - esda z| = {diff:.2e}; "
        f"p_sim correlation {agree:.3f}"
    )
    results["gi_star"] = {
        "units": nb.n,
        "permutations": permutations,
        "wangge_s": t_ours,
        "esda_s": t_esda,
        "speedup": t_esda / t_ours,
        "max_abs_z_diff": diff,
        "p_sim_correlation": agree,
        "weights_s": t_w,
        "libpysal_W_from_neighbours_s": t_pysal_w,
    }


def bench_kde(results: dict, n_points: int, kde_cells: int | None) -> None:
    from scipy.stats import gaussian_kde

    from gis.hotspots.density import kernel_density

    rng = np.random.default_rng(7)
    centres = rng.uniform(0, 40_000, (15, 2))
    clustered = centres[rng.integers(0, 15, n_points // 2)] + rng.normal(0, 900, (n_points // 2, 2))
    xy = np.vstack([clustered, rng.uniform(0, 40_000, (n_points - len(clustered), 2))])
    bounds = (0.0, 0.0, 40_000.0, 40_000.0)
    kernel_density(xy[:1000], bounds, (50, 50))  # warm-up (FFT plans, imports)
    surface, t_ours = timed(kernel_density, xy, bounds, (200, 200))
    kde = gaussian_kde(xy.T)
    assert np.allclose(kde.covariance, surface.covariance)
    cx, cy = surface.centres()
    gx, gy = np.meshgrid(cx, cy)
    nodes = np.vstack([gx.ravel(), gy.ravel()])
    if kde_cells:
        pick = np.random.default_rng(0).choice(nodes.shape[1], kde_cells, replace=False)
        ref, t_part = timed(kde, nodes[:, pick])
        t_ref = t_part * nodes.shape[1] / kde_cells
        ours = surface.values.ravel()[pick]
        note = f"gaussian_kde timed on {kde_cells} of {nodes.shape[1]} cells, scaled linearly"
    else:
        ref, t_ref = timed(kde, nodes)
        ours = surface.values.ravel()
        note = "gaussian_kde on every cell"
    error = float(np.abs(ours - ref).max() / ref.max())
    print(
        f"KDE {n_points} points -> 200 x 200: Wangge {t_ours * 1000:.1f} ms, gaussian_kde {t_ref:.1f} s "
        f"-> {t_ref / t_ours:.0f}x; max error {error:.2%} of the peak ({note})"
    )
    results["kde"] = {
        "points": n_points,
        "cells": 40_000,
        "wangge_s": t_ours,
        "gaussian_kde_s": t_ref,
        "speedup": t_ref / t_ours,
        "max_error_of_peak": error,
        "note": note,
    }


def bench_emerging(results: dict) -> None:
    from gis.hotspots import emerging, units

    metric = city_units()
    nb = units.queen_neighbours(metric)
    rng = np.random.default_rng(3)
    base = city_counts(metric, rng)
    months = 24
    trend = np.linspace(0.5, 1.5, months)
    cube = rng.poisson(np.outer(base / 4 + 0.05, trend)).astype(float)
    share = np.ones(nb.n)
    (categories, _, _, _), t = timed(
        emerging.emerging_hot_spots, cube, nb.indptr, nb.indices, counts=cube, share=share
    )
    found = {
        c: int((categories == c).sum()) for c in emerging.CATEGORIES if (categories == c).any()
    }
    print(f"emerging hot spots, {nb.n} units x {months} months: {t:.2f} s; categories {found}")
    results["emerging"] = {"units": nb.n, "months": months, "seconds": t, "categories": found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--permutations", type=int, default=999)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument(
        "--kde-cells",
        type=int,
        default=None,
        help="time gaussian_kde on this many cells only and scale (default: all 40,000)",
    )
    parser.add_argument("--only", choices=["gi", "kde", "emerging"], default=None)
    args = parser.parse_args()
    results: dict = {}
    if args.only in (None, "gi"):
        bench_gi(results, args.permutations)
    if args.only in (None, "kde"):
        bench_kde(results, args.points, args.kde_cells)
    if args.only in (None, "emerging"):
        bench_emerging(results)
    out = ROOT / "var" / "bench" / "hotspots_results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
