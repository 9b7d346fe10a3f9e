"""Hot-spot analysis of the incidents in the database: filters, units, values, guard rails, results.

`analyse(session, principal, query)` is the one entry point (API, CLI and map page use it):

1. the analysis area: the whole town, or the subtree of `grid_code`; for grid staff and
   supervisors it is always inside their scope (their own grids when none is given, a grid
   outside it is refused) — they see hot spots among their own grids only, because the
   incidents behind them are the only ones they may see;
2. the units: the current grids of `level` inside the area, or hexagons of `hex_size_m` metres
   clipped to it (in the area's metric CRS);
3. the incidents the caller may see, filtered by category, dispute subtype and time window
   [since, until) through the incident list's own builder (gis.incidents.service.IncidentFilter);
   each is counted in the grid it was assigned to at intake, or in the hexagon containing it;
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
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

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
from gis.incidents.service import IncidentFilter

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
UNIT_NAMES = {4: "group grids", 3: "villages", 2: "management areas"}
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
    meta: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    incident_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    incident_unit: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    incident_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # lon, lat
    # The warnings as (type, values), for pages that word them in Chinese.
    notices: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


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


# --- the analysis, step by step ------------------------------------------------------------------


@dataclass
class _Area:
    roots: list[str]
    grids: gpd.GeoDataFrame  # every current grid
    parents: dict[str, str | None]


@dataclass
class _Units:
    frame: gpd.GeoDataFrame  # unit_id, code, name; EPSG:4326
    metric: np.ndarray  # the units' geometries in `crs`
    neighbours: units.Neighbours | None  # None: no unit
    crs: str  # the area's metric CRS

    def __iter__(self) -> Iterator[Any]:  # frame, metric, neighbours, crs = _units(...)
        return iter((self.frame, self.metric, self.neighbours, self.crs))


@dataclass
class _Values:
    counts: np.ndarray  # incidents per unit (every unit)
    keep: np.ndarray  # the units analysed (a rate analysis leaves out units without residents)
    values: np.ndarray  # the value of each kept unit: count, or rate per 1,000 residents
    residents: np.ndarray | None  # residents per unit (every unit); None for counts


@dataclass
class _Trends:
    """Emerging hot spots over the months of the window, per unit (None/NaN: not computed)."""

    category: np.ndarray
    trend_z: np.ndarray
    trend_p: np.ndarray
    months: dict[str, Any]


@dataclass
class _Notes:
    """What the caller should know about the result: English text, and (type, values) for pages."""

    warnings: list[str] = field(default_factory=list)
    notices: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def add(self, text: str, kind: str, values: dict[str, Any]) -> None:
        self.warnings.append(text)
        self.notices.append((kind, values))


def _area(session: Session, principal: Principal | None, q: HotspotQuery) -> _Area:
    """The grids analysed: the whole town, `grid_code`'s subtree, or (grid staff) their own grids."""
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


def _units(area: _Area, q: HotspotQuery) -> _Units:
    """The units of the area: its grids of `level`, or hexagons clipped to it; with their neighbours."""
    root_rows = area.grids[area.grids["code"].isin(area.roots)]
    centre = shapely.union_all(root_rows.geometry.values).centroid
    crs = metric_crs_for(centre.x, centre.y)
    if q.unit == "grid":
        return _grid_units(area, root_rows, q, crs)
    return _hexagon_units(area, root_rows, q, crs)


def _grid_units(area: _Area, root_rows: gpd.GeoDataFrame, q: HotspotQuery, crs: str) -> _Units:
    g = area.grids
    levels = root_rows["level"].astype(int)
    if (levels > q.level).any():
        raise InputError(
            Problem(
                ("query", "level"),
                f"level {q.level} is coarser than the chosen grid "
                f"(level {int(levels.max())}): choose a finer level or hexagons",
            )
        )
    chosen = g[(g["level"] == q.level) & g["code"].map(lambda c: in_subtree(c, area.roots, area.parents))]
    frame = gpd.GeoDataFrame(
        {
            "unit_id": chosen["code"].astype(str).to_numpy(),
            "code": chosen["code"].astype(str).to_numpy(),
            "name": chosen["name"].to_numpy(),
        },
        geometry=chosen.geometry.values,
        crs=4326,
    )
    metric = np.asarray(frame.to_crs(crs).geometry.values, dtype=object)
    nb = units.queen_neighbours(metric) if len(frame) else None
    return _Units(frame, metric, nb, crs)


def _hexagon_units(area: _Area, root_rows: gpd.GeoDataFrame, q: HotspotQuery, crs: str) -> _Units:
    g = area.grids
    area_metric = shapely.union_all(root_rows.to_crs(crs).geometry.values)
    polys, centres, lattice = units.hexagon_units(area_metric, q.hex_size_m)
    size = int(round(q.hex_size_m))
    ids = [f"h{size}_{i}_{j}" for i, j in lattice]
    # A hexagon is named after the finest grid holding a point inside it, so people can find it.
    finest = g[g["level"] == g["level"].max()]
    finest_m = finest.to_crs(crs).geometry.values
    holder = units.assign_points(finest_m, shapely.get_coordinates(shapely.point_on_surface(polys)))
    names = [finest["name"].iloc[h] if h >= 0 else None for h in holder]
    codes = [finest["code"].iloc[h] if h >= 0 else None for h in holder]
    frame = gpd.GeoDataFrame(
        {"unit_id": ids, "code": codes, "name": names},
        geometry=gpd.GeoSeries(polys, crs=crs).to_crs(4326).values,
        crs=4326,
    )
    nb = units.hexagon_neighbours(centres, q.hex_size_m) if len(frame) else None
    return _Units(frame, np.asarray(polys, dtype=object), nb, crs)


def _require_units(found: _Units, q: HotspotQuery) -> units.Neighbours:
    """Refuse an area with too few units to mean anything; the units' neighbours otherwise."""
    n = len(found.frame)
    if n < q.min_units or found.neighbours is None:
        what = f"{q.hex_size_m:g} m hexagons" if q.unit == "hexagon" else UNIT_NAMES[q.level]
        raise InputError(
            Problem(
                ("query", "level" if q.unit == "grid" else "hex_size_m"),
                f"only {n} {what} in the area; hot-spot statistics need at least {q.min_units} units "
                "to mean anything — choose a finer level, smaller hexagons or a larger area",
                "too_few_units",
                ctx={"units": n, "minimum": q.min_units},
            )
        )
    return found.neighbours


def _incident_condition(principal: Principal | None, q: HotspotQuery, area: _Area) -> tuple[str, dict[str, Any]]:
    """(SQL condition on alias i, its parameters): the incidents the caller may see (None: the
    system, which sees all) in the area's subtrees, of the query's category, subtype and time
    window — the incident list's own filter (gis.incidents.service.IncidentFilter)."""
    return IncidentFilter(
        grid_codes=tuple(area.roots), category=q.category, dispute_kind=q.dispute_kind, since=q.since, until=q.until
    ).where(principal, dt.datetime.now(dt.UTC))


def _incidents(session: Session, principal: Principal | None, q: HotspotQuery, area: _Area) -> pd.DataFrame:
    """The matching incidents: id, position, time and the grids they were assigned to at intake."""
    cond, params = _incident_condition(principal, q, area)
    rows = session.execute(
        text(
            "SELECT i.id, ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat, i.occurred_at, i.group_code, i.village_code, "
            f"i.area_code FROM incident i WHERE {cond} ORDER BY i.id"
        ),
        params,
    ).all()
    return pd.DataFrame(rows, columns=["id", "lon", "lat", "occurred_at", "group_code", "village_code", "area_code"])


def _unit_of_incidents(inc: pd.DataFrame, found: _Units, q: HotspotQuery) -> np.ndarray:
    """Index of the unit each incident counts in (−1: none): the grid it was assigned to at intake,
    or the hexagon containing it."""
    if q.unit == "grid":
        position = {c: i for i, c in enumerate(found.frame["code"])}
        unit_of: np.ndarray = inc[LEVEL_COLUMN[q.level]].map(position).fillna(-1).astype(np.int64).to_numpy()
        return unit_of
    if not len(inc):
        return np.zeros(0, dtype=np.int64)
    to_m = Transformer.from_crs(4326, found.crs, always_xy=True)
    xy = np.column_stack(to_m.transform(inc["lon"].to_numpy(float), inc["lat"].to_numpy(float)))
    return units.assign_points(found.metric, xy)


def _require_incidents(n_incidents: int, q: HotspotQuery) -> None:
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


def _residents(session: Session, frame: gpd.GeoDataFrame, metric: np.ndarray, crs: str) -> np.ndarray:
    """Residents per unit: those of the households whose house lies in it."""
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
    xy = np.column_stack(Transformer.from_crs(4326, crs, always_xy=True).transform(arr[:, 0], arr[:, 1]))
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
    smoothed: np.ndarray = b + (rate - b) * a / (a + b / pop)
    return smoothed


def _unit_values(session: Session, found: _Units, counts: np.ndarray, q: HotspotQuery, notes: _Notes) -> _Values:
    """The value compared between units: the count, or the rate per 1,000 residents (optionally
    Empirical-Bayes smoothed) of the units that have residents."""
    if q.value != "rate":
        return _Values(counts, np.arange(len(counts)), counts.copy(), None)
    residents = _residents(session, found.frame, found.metric, found.crs)
    keep = np.arange(len(counts))
    empty = residents <= 0
    if empty.any():
        lost = int(counts[empty].sum())
        notes.add(
            f"{int(empty.sum())} units have no residents and are left out of the rate "
            f"analysis ({lost} incidents in them)",
            "no_residents",
            {"units": int(empty.sum()), "incidents": lost},
        )
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
    if q.smoothing == "eb":
        values = empirical_bayes(counts[keep], residents[keep]) * per
    else:
        values = counts[keep] / residents[keep] * per
    return _Values(counts, keep, values, residents)


def _require_variation(values: np.ndarray, q: HotspotQuery) -> None:
    if np.ptp(values) != 0:
        return
    if q.smoothing == "eb":
        # Marshall's estimator found no variance beyond what chance gives: every rate shrinks
        # all the way to the town's rate. That is the answer, not an error of the caller's.
        msg = (
            f"Empirical-Bayes smoothing finds no difference between units beyond chance "
            f"(every rate shrinks to {values[0]:.2f} per 1,000): there are no hot spots "
            "to map; without smoothing the raw rates can still be tested"
        )
        raise InputError(Problem(("query", "smoothing"), msg, "no_variation"))
    raise InputError(
        Problem(("query",), "every unit has the same value; there is nothing to compare", "no_variation")
    )


def _note_weak_data(frame: gpd.GeoDataFrame, v: _Values, nb_kept: units.Neighbours, notes: _Notes) -> None:
    """Warn of islands (no statistic) and of counts too sparse to make strong statistics."""
    islands = nb_kept.islands
    if len(islands):
        notes.add(
            f"{len(islands)} units have no neighbour (islands) and get no statistic: "
            + ", ".join(str(frame["unit_id"].iloc[v.keep[i]]) for i in islands[:10]),
            "islands",
            {"units": int(len(islands))},
        )
    zero_share = float((v.counts[v.keep] == 0).mean())
    if zero_share > 0.5:
        notes.add(
            f"{zero_share:.0%} of the units have no incident; counts this sparse make weak "
            "statistics — consider larger units or a longer time window",
            "sparse",
            {"share": round(zero_share * 100)},
        )


def _null_share(found: _Units, v: _Values) -> np.ndarray:
    """Each kept unit's share under "no clustering": incidents in proportion to the land (counts)
    or to the people (rates)."""
    if v.residents is not None:
        people: np.ndarray = v.residents[v.keep]
        return people
    return np.array([g.area for g in found.metric[v.keep]], dtype=float)


def _emerging_trends(
    q: HotspotQuery,
    occurred_at: pd.Series,
    unit_of: np.ndarray,
    v: _Values,
    nb_kept: units.Neighbours,
    share: np.ndarray,
    notes: _Notes,
) -> _Trends:
    """The emerging-hot-spot category of each unit over the months of the window (incidents
    inside units only: their times and units)."""
    n = len(v.counts)
    trends = _Trends(np.full(n, None, dtype=object), np.full(n, np.nan), np.full(n, np.nan), {"months": 0})
    if not q.emerging:
        return trends
    month = _month_index(occurred_at).to_numpy()
    first = _month_of(q.since) if q.since else int(month.min())
    last = _month_of(q.until - dt.timedelta(microseconds=1)) if q.until else int(month.max())
    t = last - first + 1
    if t > MAX_MONTHS:
        raise InputError(Problem(
            ("query", "since" if q.since else "until"),
            f"the window spans {t} months; emerging hot spots look at most {MAX_MONTHS} back: narrow "
            "since/until, or ask without them (emerging=false)", "window_too_long"))
    if t < MIN_MONTHS:
        notes.add(
            f"the window spans {t} months; emerging hot spots need at least {MIN_MONTHS}",
            "few_months",
            {"months": t, "minimum": MIN_MONTHS},
        )
        return trends
    month_counts = np.zeros((n, t))
    np.add.at(month_counts, (unit_of, month - first), 1.0)
    month_counts = month_counts[v.keep]
    cube = month_counts if v.residents is None else month_counts / v.residents[v.keep, None] * 1000.0
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
    trends.category[v.keep], trends.trend_z[v.keep], trends.trend_p[v.keep] = cats, tz, tp
    trends.months = {"months": t, "first_month": _month_name(first), "last_month": _month_name(last)}
    return trends


def _spread(values: np.ndarray, keep: np.ndarray, n: int, fill: object) -> np.ndarray:
    """`values` of the kept units placed in an array of all `n` units, `fill` elsewhere."""
    out = np.full(n, fill, dtype=object if isinstance(fill, str) or fill is None else float)
    out[keep] = values
    return out


def _unit_table(
    frame: gpd.GeoDataFrame, v: _Values, local: local_indicators.LocalResult, trends: _Trends
) -> gpd.GeoDataFrame:
    """One row per unit with its counts, value, statistics, p-values, bins and trend."""
    n = len(frame)

    def spread(values: np.ndarray, fill: object) -> np.ndarray:
        return _spread(values, v.keep, n, fill)

    out = frame.copy()
    out["incidents"] = v.counts.astype(int)
    out["residents"] = v.residents.astype(int) if v.residents is not None else None
    out["included"] = np.isin(np.arange(n), v.keep)
    out["value"] = spread(v.values, np.nan)
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
    out["emerging"] = trends.category
    out["trend_z"] = trends.trend_z
    out["trend_p"] = trends.trend_p
    return out


def _meta(
    q: HotspotQuery,
    area: _Area,
    found: _Units,
    table: gpd.GeoDataFrame,
    v: _Values,
    nb_kept: units.Neighbours,
    inside: np.ndarray,
    trends: _Trends,
) -> dict[str, Any]:
    """What was analysed and how, and the headline counts of the result."""
    against = "residents" if v.residents is not None else "area"
    return {
        "query": {k: (x.isoformat() if isinstance(x, dt.datetime) else x) for k, x in asdict(q).items()},
        "area": area.roots,
        "units": len(table),
        "units_analysed": int(len(v.keep)),
        "incidents": int(inside.sum()),
        "incidents_outside_units": int((~inside).sum()),
        "neighbours": {
            "rule": nb_kept.rule,
            "threshold_m": nb_kept.threshold_m,
            "mean": float(nb_kept.cardinalities.mean()) if len(v.keep) else 0.0,
            "islands": int(len(nb_kept.islands)),
        },
        "metric_crs": found.crs,
        "hot_spots": int(((table["bin"] > 0) & table["significant"]).sum()),
        "cold_spots": int(((table["bin"] < 0) & table["significant"]).sum()),
        "outliers": int((table["outlier"] != "").sum()),
        "statistic": "Getis-Ord Gi* (binary weights, the unit included)",
        "decided_by": {
            "both": f"Gi* z and the exact binomial test of the neighbourhood count against {against}, both significant",
            "exact": f"exact binomial test of the neighbourhood count against {against}",
            "permutation": f"conditional permutations ({q.permutations})",
            "normal": "normal approximation of Gi* z",
        }[q.inference],
        **trends.months,
    }


def analyse(session: Session, principal: Principal | None, q: HotspotQuery) -> HotspotResult:
    """Hot spots of the incidents the caller may see: the steps of the module's docstring."""
    check_query(q)
    area = _area(session, principal, q)
    found = _units(area, q)
    nb = _require_units(found, q)

    inc = _incidents(session, principal, q, area)
    unit_of = _unit_of_incidents(inc, found, q)
    inside = unit_of >= 0
    _require_incidents(int(inside.sum()), q)
    counts = np.bincount(unit_of[inside], minlength=len(found.frame)).astype(float)

    notes = _Notes()
    v = _unit_values(session, found, counts, q, notes)
    _require_variation(v.values, q)
    nb_kept = nb if len(v.keep) == len(found.frame) else nb.subset(v.keep)
    _note_weak_data(found.frame, v, nb_kept, notes)

    share = _null_share(found, v)
    local = local_indicators.local_statistics(
        v.values,
        nb_kept.indptr,
        nb_kept.indices,
        permutations=q.permutations,
        seed=q.seed,
        fdr=q.fdr,
        alpha=q.alpha,
        inference=q.inference,
        counts=counts[v.keep],
        share=share,
    )
    trends = _emerging_trends(q, inc.loc[inside, "occurred_at"], unit_of[inside], v, nb_kept, share, notes)

    table = _unit_table(found.frame, v, local, trends)
    return HotspotResult(
        table.sort_values("unit_id").reset_index(drop=True),
        _meta(q, area, found, table, v, nb_kept, inside, trends),
        notes.warnings,
        inc["id"].to_numpy()[inside],
        np.asarray(found.frame["unit_id"].to_numpy()[unit_of[inside]]),
        inc.loc[inside, ["lon", "lat"]].to_numpy(float),
        notes.notices,
    )


def _month_index(times: pd.Series) -> pd.Series:
    local = pd.to_datetime(times, utc=True).dt.tz_convert("Asia/Shanghai")
    months: pd.Series = local.dt.year * 12 + local.dt.month - 1
    return months


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


def _plain(v: object) -> object:
    if v is None:
        return None
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, float):
        return round(v, 6)
    return v


def unit_records(result: HotspotResult) -> list[dict[str, Any]]:
    columns = {k: result.units[k].tolist() for k in UNIT_FIELDS}
    return [{k: _plain(columns[k][i]) for k in UNIT_FIELDS} for i in range(len(result.units))]


def unit_features(result: HotspotResult) -> list[dict[str, Any]]:
    from shapely.geometry import mapping

    records = unit_records(result)
    return [
        {"type": "Feature", "id": r["unit_id"], "properties": r, "geometry": mapping(geom)}
        for r, geom in zip(records, result.units.geometry.values, strict=True)
    ]


def incidents_in_unit(session: Session, principal: Principal | None, q: HotspotQuery, unit_id: str) -> list[int]:
    """Ids of the incidents behind one unit (visible to the caller, same filters), for a drill-down."""
    check_query(q)
    area = _area(session, principal, q)
    found = _units(area, q)
    where = np.flatnonzero(found.frame["unit_id"].to_numpy() == unit_id)
    if not len(where):
        raise NotFound(f"no unit {unit_id} in this analysis")
    inc = _incidents(session, principal, q, area)
    mine = _unit_of_incidents(inc, found, q) == where[0]
    return [int(i) for i in inc.loc[mine, "id"]]


def unit_incident_records(
    session: Session, principal: Principal | None, q: HotspotQuery, unit_id: str, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """The incidents behind one unit as the incident list shows them: only those the caller may see,
    reporters masked for roles that see them masked; (first `limit` by id, how many in all)."""
    from gis.incidents import service as incidents

    ids = incidents_in_unit(session, principal, q, unit_id)
    if not ids:
        return [], 0
    now = dt.datetime.now(dt.UTC)
    cond, params = IncidentFilter().where(principal, now)
    params["ids"] = ids[:limit]
    rows = session.execute(
        text(f"SELECT {incidents._COLUMNS} FROM incident i WHERE i.id = ANY(:ids) AND {cond} ORDER BY i.id"),
        params,
    ).mappings()
    if principal is None:
        return [dict(r) for r in rows], len(ids)
    return [incidents._shape(dict(r), principal, now) for r in rows], len(ids)
