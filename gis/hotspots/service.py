"""Hot-spot analysis of the incidents in the database: filters, units, values, guard rails, results.

`analyse(session, principal, query)` is the one entry point (API, CLI and map page use it):

1. the analysis area: the whole town, or the subtree of `grid_code`; for grid staff and
   supervisors it is always inside their scope (their own grids when none is given, a grid
   outside it is refused) — they see hot spots among their own grids only, because the
   incidents behind them are the only ones they may see;
2. the units: the current grids of `level` inside the area, or hexagons of `hex_size_m` metres
   clipped to it (in the area's metric CRS);
3. the incidents the caller may see (gis.incidents.service.visible_condition), filtered by
   category, dispute subtype and time window [since, until); each is counted in the grid it was
   assigned to at intake, or in the hexagon containing it;
4. the value per unit: the count, or the rate per 1,000 residents (residents of the households
   inside the unit), optionally Empirical-Bayes smoothed towards the area's rate (Marshall's
   global moment estimator), which tames the rates of units with few residents;
5. guard rails — refused: fewer than `min_units` units, fewer than `min_incidents` incidents,
   all values equal (nothing to compare); warned: islands (no statistic), units without
   residents in a rate analysis (left out), sparse counts, too few months for trends;
6. Gi* z, the p-values (by default Gi* z and the exact binomial test against the expectation —
   by area for counts, by residents for rates — must agree; or conditional permutations, or the
   normal approximation alone), FDR, bins, local Moran's I outliers
   (gis.hotspots.local_indicators), and, over the months of the window, the emerging-hot-spot category
   (gis.hotspots.emerging).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer
from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.auth.principal import Principal
from gis.codes import in_subtree
from gis.crs import metric_crs_for
from gis.errors import Forbidden, InputError, NotFound, Problem
from gis.grids import store
from gis.hotspots import emerging, local_indicators, units
from gis.incidents.categories import Category, DisputeKind
from gis.incidents.service import visible_condition

# Problem types of a refusal by a guard rail (the request was fine, the data do not support a map).
GUARD_RAILS = frozenset({"too_few_units", "too_few_incidents", "no_variation", "no_grids"})
MIN_UNITS = 30
MIN_INCIDENTS = 30
MIN_MONTHS = 10
MAX_MONTHS = 120  # the space-time cube's length: Mann-Kendall costs months² per unit
MAX_PERMUTATIONS = 9999
HEX_SIZE_RANGE_M = (100.0, 5000.0)
# Times are bucketed into months as the town reads its clock (UTC+8, no summer time).
LOCAL_TIME = dt.timezone(dt.timedelta(hours=8))
LEVEL_COLUMN = {4: "group_code", 3: "village_code", 2: "area_code"}


@dataclass
class HotspotQuery:
    unit: str = "grid"  # grid | hexagon
    level: int = 4  # grid level of the units (2-4)
    hex_size_m: float = 500.0  # hexagon width, flat side to flat side
    grid_code: str | None = None  # analyse this grid's subtree only
    category: str | None = "dispute"  # None: every category
    dispute_kind: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    value: str = "count"  # count | rate (per 1,000 residents)
    smoothing: str = "none"  # none | eb (Empirical Bayes, rates only)
    inference: str = "both"  # both | exact | permutation | normal: which p decides
    permutations: int = local_indicators.DEFAULT_PERMUTATIONS
    seed: int = local_indicators.DEFAULT_SEED
    alpha: float = 0.05
    fdr: bool = True
    emerging: bool = True
    min_units: int = MIN_UNITS
    min_incidents: int = MIN_INCIDENTS


@dataclass
class HotspotResult:
    units: gpd.GeoDataFrame  # EPSG:4326, one row per unit, ordered by unit_id
    meta: dict
    warnings: list[str] = field(default_factory=list)
    incident_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    incident_unit: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    incident_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # lon, lat
    # The warnings as (type, values), for pages that word them in Chinese.
    notices: list[tuple[str, dict]] = field(default_factory=list)


# --- checks -------------------------------------------------------------------------------------


def check_query(q: HotspotQuery) -> None:
    problems = []
    if q.unit not in ("grid", "hexagon"):
        problems.append(Problem(("query", "unit"), "grid or hexagon"))
    if q.unit == "grid" and q.level not in LEVEL_COLUMN:
        problems.append(
            Problem(
                ("query", "level"),
                "2 (management areas), 3 (villages) or 4 (group grids); the town alone is one unit",
            )
        )
    lo, hi = HEX_SIZE_RANGE_M
    if q.unit == "hexagon" and not lo <= q.hex_size_m <= hi:
        problems.append(Problem(("query", "hex_size_m"), f"between {lo:g} and {hi:g} metres"))
    if q.category is not None and q.category not in {c.value for c in Category}:
        problems.append(
            Problem(("query", "category"), "one of " + ", ".join(c.value for c in Category))
        )
    if q.dispute_kind is not None:
        if q.category != Category.DISPUTE:
            problems.append(Problem(("query", "dispute_kind"), "only with category=dispute"))
        elif q.dispute_kind not in {k.value for k in DisputeKind}:
            problems.append(
                Problem(
                    ("query", "dispute_kind"), "one of " + ", ".join(k.value for k in DisputeKind)
                )
            )
    for name in ("since", "until"):
        when = getattr(q, name)
        if when is not None and when.tzinfo is None:
            problems.append(
                Problem(("query", name), "give a time zone, e.g. 2024-01-01T00:00:00+08:00")
            )
        elif when is not None and not 1900 <= when.year <= 2200:
            # Months are counted in the town's time; year 1 or 9999 would overflow on the way.
            problems.append(Problem(("query", name), "a year between 1900 and 2200"))
    if q.since and q.until and q.since.tzinfo and q.until.tzinfo and q.since >= q.until:
        problems.append(Problem(("query", "until"), "must be after since"))
    if q.value not in ("count", "rate"):
        problems.append(Problem(("query", "value"), "count or rate"))
    if q.smoothing not in ("none", "eb"):
        problems.append(Problem(("query", "smoothing"), "none or eb"))
    elif q.smoothing == "eb" and q.value != "rate":
        problems.append(
            Problem(
                ("query", "smoothing"), "Empirical-Bayes smoothing applies to rates: add value=rate"
            )
        )
    if q.inference not in ("both", "exact", "permutation", "normal"):
        problems.append(Problem(("query", "inference"), "both, exact, permutation or normal"))
    elif q.inference == "permutation" and q.permutations == 0:
        problems.append(
            Problem(("query", "permutations"), "permutation inference needs permutations > 0")
        )
    if not 0 <= q.permutations <= MAX_PERMUTATIONS:
        problems.append(
            Problem(("query", "permutations"), f"0 (normal approximation) to {MAX_PERMUTATIONS}")
        )
    if not 0 < q.alpha < 0.5:
        problems.append(Problem(("query", "alpha"), "between 0 and 0.5, e.g. 0.05"))
    if problems:
        raise InputError(problems)


# --- the analysis -------------------------------------------------------------------------------


@dataclass
class _Area:
    roots: list[str]
    grids: gpd.GeoDataFrame  # every current grid
    parents: dict[str, str | None]


def _area(session: Session, principal: Principal | None, q: HotspotQuery) -> _Area:
    grids = store.current_grids(session)
    if grids.empty:
        raise InputError(
            Problem(("query",), "no grids are loaded: import the town's grids first", "no_grids")
        )
    parents = {
        str(c): (p if isinstance(p, str) and p else None)
        for c, p in zip(grids["code"], grids["parent_code"], strict=True)
    }
    if q.grid_code is not None and q.grid_code not in parents:
        raise NotFound(f"no current grid {q.grid_code}")
    if principal is not None and principal.scoped:
        if q.grid_code is None:
            roots = list(principal.scope_codes)
        elif in_subtree(q.grid_code, principal.scope_codes, parents):
            roots = [q.grid_code]
        else:
            raise Forbidden(
                f"grid {q.grid_code} is outside your grids; hot spots are computed "
                "only from incidents you may see"
            )
    elif q.grid_code is not None:
        roots = [q.grid_code]
    else:
        roots = [str(c) for c in grids.loc[grids["level"] == grids["level"].min(), "code"]]
    return _Area(roots, grids, parents)


def _units(area: _Area, q: HotspotQuery):
    """(unit frame with unit_id/code/name in EPSG:4326, metric geometries, neighbours, metric CRS)."""
    g = area.grids
    root_rows = g[g["code"].isin(area.roots)]
    centre = shapely.union_all(root_rows.geometry.values).centroid
    crs = metric_crs_for(centre.x, centre.y)
    if q.unit == "grid":
        levels = root_rows["level"].astype(int)
        if (levels > q.level).any():
            raise InputError(
                Problem(
                    ("query", "level"),
                    f"level {q.level} is coarser than the chosen grid "
                    f"(level {int(levels.max())}): choose a finer level or hexagons",
                )
            )
        chosen = g[
            (g["level"] == q.level) & g["code"].map(lambda c: in_subtree(c, area.roots, area.parents))
        ]
        frame = gpd.GeoDataFrame(
            {
                "unit_id": chosen["code"].astype(str).to_numpy(),
                "code": chosen["code"].astype(str).to_numpy(),
                "name": chosen["name"].to_numpy(),
            },
            geometry=chosen.geometry.values,
            crs=4326,
        )
        metric = frame.to_crs(crs).geometry.values
        nb = units.queen_neighbours(metric) if len(frame) else None
    else:
        outline = root_rows.to_crs(crs).geometry.values
        area_metric = shapely.union_all(outline)
        polys, centres, lattice = units.hexagon_units(area_metric, q.hex_size_m)
        size = int(round(q.hex_size_m))
        ids = [f"h{size}_{i}_{j}" for i, j in lattice]
        metric = polys
        # A hexagon is named after the finest grid holding a point inside it, so people can find it.
        finest = g[g["level"] == g["level"].max()]
        finest_m = finest.to_crs(crs).geometry.values
        holder = units.assign_points(
            finest_m, shapely.get_coordinates(shapely.point_on_surface(polys))
        )
        names = [finest["name"].iloc[h] if h >= 0 else None for h in holder]
        codes = [finest["code"].iloc[h] if h >= 0 else None for h in holder]
        frame = gpd.GeoDataFrame(
            {"unit_id": ids, "code": codes, "name": names},
            geometry=gpd.GeoSeries(polys, crs=crs).to_crs(4326).values,
            crs=4326,
        )
        nb = units.hexagon_neighbours(centres, q.hex_size_m) if len(frame) else None
    return frame, np.asarray(metric, dtype=object), nb, crs


def _incidents(
    session: Session, principal: Principal | None, q: HotspotQuery, area: _Area
) -> pd.DataFrame:
    where = [
        "(i.group_code = ANY(:roots) OR i.village_code = ANY(:roots) OR i.area_code = ANY(:roots) "
        "OR i.town_code = ANY(:roots))"
    ]
    params: dict = {"roots": area.roots}
    if principal is not None:
        where.append(visible_condition(principal))
        params["scope"] = list(principal.scope_codes)
    for name in ("category", "dispute_kind"):
        if getattr(q, name) is not None:
            where.append(f"i.{name} = :{name}")
            params[name] = getattr(q, name)
    if q.since is not None:
        where.append("i.occurred_at >= :since")
        params["since"] = q.since
    if q.until is not None:
        where.append("i.occurred_at < :until")
        params["until"] = q.until
    rows = session.execute(
        text(
            "SELECT i.id, ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat, i.occurred_at, i.group_code, i.village_code, "
            f"i.area_code FROM incident i WHERE {' AND '.join(where)} ORDER BY i.id"
        ),
        params,
    ).all()
    return pd.DataFrame(
        rows, columns=["id", "lon", "lat", "occurred_at", "group_code", "village_code", "area_code"]
    )


def _residents(session: Session, frame: gpd.GeoDataFrame, metric, crs: str) -> np.ndarray:
    x0, y0, x1, y1 = frame.total_bounds
    rows = session.execute(
        text(
            "SELECT ST_X(geom), ST_Y(geom), residents FROM household "
            "WHERE geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)"
        ),
        {"x0": x0, "y0": y0, "x1": x1, "y1": y1},
    ).all()
    out = np.zeros(len(frame))
    if not rows:
        return out
    arr = np.asarray(rows, dtype=float)
    xy = np.column_stack(
        Transformer.from_crs(4326, crs, always_xy=True).transform(arr[:, 0], arr[:, 1])
    )
    unit = units.assign_points(metric, xy)
    ok = unit >= 0
    np.add.at(out, unit[ok], arr[ok, 2])
    return out


def empirical_bayes(counts: np.ndarray, population: np.ndarray) -> np.ndarray:
    """Rates shrunk towards the overall rate, more where the population is small.

    Marshall's global moment estimator: b = Σcounts / Σpopulation, s² = Σ P_i (r_i − b)² / ΣP,
    a = max(0, s² − b / mean(P)); smoothed r_i = b + (r_i − b) · a / (a + b / P_i)."""
    counts = np.asarray(counts, dtype=float)
    pop = np.asarray(population, dtype=float)
    rate = counts / pop
    b = counts.sum() / pop.sum()
    s2 = (pop * (rate - b) ** 2).sum() / pop.sum()
    a = max(0.0, s2 - b / pop.mean())
    if a == 0.0:
        return np.full(len(rate), b)
    return b + (rate - b) * a / (a + b / pop)


def _month_index(times: pd.Series) -> pd.Series:
    local = pd.to_datetime(times, utc=True).dt.tz_convert("Asia/Shanghai")
    return local.dt.year * 12 + local.dt.month - 1


def analyse(session: Session, principal: Principal | None, q: HotspotQuery) -> HotspotResult:
    check_query(q)
    area = _area(session, principal, q)
    frame, metric, nb, crs = _units(area, q)
    what = (
        "group grids"
        if q.unit == "grid" and q.level == 4
        else (
            "villages"
            if q.unit == "grid" and q.level == 3
            else "management areas"
            if q.unit == "grid"
            else f"{q.hex_size_m:g} m hexagons"
        )
    )
    if len(frame) < q.min_units:
        raise InputError(
            Problem(
                ("query", "level" if q.unit == "grid" else "hex_size_m"),
                f"only {len(frame)} {what} in the area; hot-spot statistics need at least {q.min_units} units "
                "to mean anything — choose a finer level, smaller hexagons or a larger area",
                "too_few_units",
                ctx={"units": len(frame), "minimum": q.min_units},
            )
        )

    inc = _incidents(session, principal, q, area)
    if q.unit == "grid":
        position = {c: i for i, c in enumerate(frame["code"])}
        unit_of = inc[LEVEL_COLUMN[q.level]].map(position).fillna(-1).astype(np.int64).to_numpy()
    else:
        to_m = Transformer.from_crs(4326, crs, always_xy=True)
        xy = np.column_stack(to_m.transform(inc["lon"].to_numpy(float), inc["lat"].to_numpy(float)))
        unit_of = units.assign_points(metric, xy) if len(inc) else np.zeros(0, dtype=np.int64)
    inside = unit_of >= 0
    n_incidents = int(inside.sum())
    if n_incidents < q.min_incidents:
        raise InputError(
            Problem(
                ("query",),
                f"only {n_incidents} matching incidents in the area and time window; at least "
                f"{q.min_incidents} are needed for a hot-spot map that is not chance — widen the time window, "
                "the category or the area",
                "too_few_incidents",
                ctx={"incidents": n_incidents, "minimum": q.min_incidents},
            )
        )
    counts = np.bincount(unit_of[inside], minlength=len(frame)).astype(float)

    warnings: list[str] = []
    notices: list[tuple[str, dict]] = []
    residents = None
    keep = np.arange(len(frame))
    if q.value == "rate":
        residents = _residents(session, frame, metric, crs)
        empty = residents <= 0
        if empty.any():
            lost = int(counts[empty].sum())
            warnings.append(
                f"{int(empty.sum())} units have no residents and are left out of the rate "
                f"analysis ({lost} incidents in them)"
            )
            notices.append(("no_residents", {"units": int(empty.sum()), "incidents": lost}))
            keep = np.flatnonzero(~empty)
        if len(keep) < q.min_units:
            raise InputError(
                Problem(
                    ("query", "value"),
                    f"only {len(keep)} units have residents; at least {q.min_units} are needed",
                    "too_few_units",
                )
            )
        per = 1000.0
        values_kept = counts[keep] / residents[keep] * per
        if q.smoothing == "eb":
            values_kept = empirical_bayes(counts[keep], residents[keep]) * per
    else:
        values_kept = counts.copy()
    if np.ptp(values_kept) == 0:
        if q.smoothing == "eb":
            # Marshall's estimator found no variance beyond what chance gives: every rate shrinks
            # all the way to the town's rate. That is the answer, not an error of the caller's.
            msg = (
                f"Empirical-Bayes smoothing finds no difference between units beyond chance "
                f"(every rate shrinks to {values_kept[0]:.2f} per 1,000): there are no hot spots "
                "to map; without smoothing the raw rates can still be tested"
            )
            raise InputError(Problem(("query", "smoothing"), msg, "no_variation"))
        raise InputError(
            Problem(
                ("query",),
                "every unit has the same value; there is nothing to compare",
                "no_variation",
            )
        )
    nb_kept = nb if len(keep) == len(frame) else nb.subset(keep)
    islands = nb_kept.islands
    if len(islands):
        warnings.append(
            f"{len(islands)} units have no neighbour (islands) and get no statistic: "
            + ", ".join(str(frame["unit_id"].iloc[keep[i]]) for i in islands[:10])
        )
        notices.append(("islands", {"units": int(len(islands))}))
    zero_share = float((counts[keep] == 0).mean())
    if zero_share > 0.5:
        warnings.append(
            f"{zero_share:.0%} of the units have no incident; counts this sparse make weak "
            "statistics — consider larger units or a longer time window"
        )
        notices.append(("sparse", {"share": round(zero_share * 100)}))

    # "No clustering" means incidents in proportion to the land (counts) or to the people (rates).
    share = (
        residents[keep]
        if residents is not None
        else np.array([g.area for g in metric[keep]], dtype=float)
    )
    local = local_indicators.local_statistics(
        values_kept,
        nb_kept.indptr,
        nb_kept.indices,
        permutations=q.permutations,
        seed=q.seed,
        fdr=q.fdr,
        alpha=q.alpha,
        inference=q.inference,
        counts=counts[keep],
        share=share,
    )

    n = len(frame)

    def spread(values, fill):
        out = np.full(n, fill, dtype=object if isinstance(fill, str) or fill is None else float)
        out[keep] = values
        return out

    # Emerging hot spots over the months of the window.
    months_info: dict = {"months": 0}
    category = np.full(n, None, dtype=object)
    trend_z = np.full(n, np.nan)
    trend_p = np.full(n, np.nan)
    if q.emerging:
        month = _month_index(inc.loc[inside, "occurred_at"]).to_numpy()
        first = _month_of(q.since) if q.since else int(month.min())
        last = _month_of(q.until - dt.timedelta(microseconds=1)) if q.until else int(month.max())
        t = last - first + 1
        if t > MAX_MONTHS:
            raise InputError(Problem(
                ("query", "since" if q.since else "until"),
                f"the window spans {t} months; emerging hot spots look at most {MAX_MONTHS} back: narrow "
                "since/until, or ask without them (emerging=false)", "window_too_long"))
        if t < MIN_MONTHS:
            warnings.append(
                f"the window spans {t} months; emerging hot spots need at least {MIN_MONTHS}"
            )
            notices.append(("few_months", {"months": t, "minimum": MIN_MONTHS}))
        else:
            month_counts = np.zeros((n, t))
            np.add.at(month_counts, (unit_of[inside], month - first), 1.0)
            month_counts = month_counts[keep]
            cube = (
                month_counts if residents is None else month_counts / residents[keep, None] * 1000.0
            )
            exact = q.inference in ("exact", "both")
            cats, _, tz, tp = emerging.emerging_hot_spots(
                cube,
                nb_kept.indptr,
                nb_kept.indices,
                alpha=q.alpha,
                fdr=q.fdr,
                counts=month_counts if exact else None,
                share=share if exact else None,
            )
            category[keep], trend_z[keep], trend_p[keep] = cats, tz, tp
            months_info = {
                "months": t,
                "first_month": _month_name(first),
                "last_month": _month_name(last),
            }

    out = frame.copy()
    out["incidents"] = counts.astype(int)
    out["residents"] = residents.astype(int) if residents is not None else None
    out["included"] = np.isin(np.arange(n), keep)
    out["value"] = spread(values_kept, np.nan)
    out["gi_z"] = spread(local.gi_z, np.nan)
    out["expected"] = spread(local.expected, np.nan)
    out["p_value"] = spread(local.p_value, np.nan)
    out["p_exact"] = spread(local.p_exact, np.nan)
    out["p_norm"] = spread(local.gi_p_norm, np.nan)
    out["p_sim"] = spread(local.p_sim, np.nan)
    out["q_value"] = spread(local.q_value, np.nan)
    out["significant"] = spread(local.significant, False).astype(bool)
    out["bin"] = spread(local.gi_bin, 0).astype(int)
    out["moran_i"] = spread(local.moran_i, np.nan)
    out["quadrant"] = spread(local.quadrant, "")
    out["moran_q"] = spread(local.moran_q, np.nan)
    out["outlier"] = spread(local.outlier, "")
    out["island"] = spread(local.island, False).astype(bool)
    out["emerging"] = category
    out["trend_z"] = trend_z
    out["trend_p"] = trend_p

    meta = {
        "query": {
            k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in asdict(q).items()
        },
        "area": area.roots,
        "units": n,
        "units_analysed": int(len(keep)),
        "incidents": n_incidents,
        "incidents_outside_units": int((~inside).sum()),
        "neighbours": {
            "rule": nb_kept.rule,
            "threshold_m": nb_kept.threshold_m,
            "mean": float(nb_kept.cardinalities.mean()) if len(keep) else 0.0,
            "islands": int(len(islands)),
        },
        "metric_crs": crs,
        "hot_spots": int(((out["bin"] > 0) & out["significant"]).sum()),
        "cold_spots": int(((out["bin"] < 0) & out["significant"]).sum()),
        "outliers": int((out["outlier"] != "").sum()),
        "statistic": "Getis-Ord Gi* (binary weights, the unit included)",
        "decided_by": {
            "both": "Gi* z and the exact binomial test of the neighbourhood count against "
            + ("residents" if residents is not None else "area")
            + ", both significant",
            "exact": "exact binomial test of the neighbourhood count against "
            + ("residents" if residents is not None else "area"),
            "permutation": f"conditional permutations ({q.permutations})",
            "normal": "normal approximation of Gi* z",
        }[q.inference],
        **months_info,
    }
    return HotspotResult(
        out.sort_values("unit_id").reset_index(drop=True),
        meta,
        warnings,
        inc["id"].to_numpy()[inside],
        np.asarray(frame["unit_id"].to_numpy()[unit_of[inside]]),
        inc.loc[inside, ["lon", "lat"]].to_numpy(float),
        notices,
    )


def _month_of(when: dt.datetime) -> int:
    local = when.astimezone(LOCAL_TIME)
    return local.year * 12 + local.month - 1


def _month_name(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


# --- what the outputs share ----------------------------------------------------------------------

UNIT_FIELDS = (
    "unit_id",
    "code",
    "name",
    "incidents",
    "residents",
    "included",
    "value",
    "expected",
    "gi_z",
    "p_value",
    "q_value",
    "significant",
    "bin",
    "p_exact",
    "p_norm",
    "p_sim",
    "moran_i",
    "quadrant",
    "moran_q",
    "outlier",
    "island",
    "emerging",
    "trend_z",
    "trend_p",
)


def _plain(v):
    if v is None:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, float):
        return round(v, 6)
    return v


def unit_records(result: HotspotResult) -> list[dict]:
    columns = {k: result.units[k].tolist() for k in UNIT_FIELDS}
    return [{k: _plain(columns[k][i]) for k in UNIT_FIELDS} for i in range(len(result.units))]


def unit_features(result: HotspotResult) -> list[dict]:
    from shapely.geometry import mapping

    records = unit_records(result)
    return [
        {"type": "Feature", "id": r["unit_id"], "properties": r, "geometry": mapping(geom)}
        for r, geom in zip(records, result.units.geometry.values, strict=True)
    ]


def incidents_in_unit(
    session: Session, principal: Principal | None, q: HotspotQuery, unit_id: str
) -> list[int]:
    """Ids of the incidents behind one unit (visible to the caller, same filters), for a drill-down."""
    check_query(q)
    area = _area(session, principal, q)
    frame, metric, _, crs = _units(area, q)
    where = np.flatnonzero(frame["unit_id"].to_numpy() == unit_id)
    if not len(where):
        raise NotFound(f"no unit {unit_id} in this analysis")
    inc = _incidents(session, principal, q, area)
    if q.unit == "grid":
        mine = inc[LEVEL_COLUMN[q.level]].to_numpy() == unit_id
    else:
        to_m = Transformer.from_crs(4326, crs, always_xy=True)
        xy = np.column_stack(to_m.transform(inc["lon"].to_numpy(float), inc["lat"].to_numpy(float)))
        mine = units.assign_points(metric, xy) == where[0]
    return inc.loc[mine, "id"].astype(int).tolist()


def unit_incident_records(
    session: Session, principal: Principal | None, q: HotspotQuery, unit_id: str, limit: int
) -> tuple[list[dict], int]:
    """The incidents behind one unit as the incident list shows them: only those the caller may see,
    reporters masked for roles that see them masked; (first `limit` by id, how many in all)."""
    from gis.incidents import service as incidents

    ids = incidents_in_unit(session, principal, q, unit_id)
    if not ids:
        return [], 0
    now = dt.datetime.now(dt.UTC)
    cond, params = "TRUE", {"ids": ids[:limit]}
    if principal is not None:
        cond = visible_condition(principal)
        params["scope"] = list(principal.scope_codes)
    rows = session.execute(
        text(
            f"SELECT {incidents._COLUMNS} FROM incident i WHERE i.id = ANY(:ids) AND {cond} "
            "ORDER BY i.id"
        ),
        params,
    ).mappings()
    if principal is None:
        return [dict(r) for r in rows], len(ids)
    return [incidents._shape(r, principal, now) for r in rows], len(ids)
