"""Two years of synthetic incidents for the sample town, shaped by the story in the brief.

- ~600 disputes: most around 李邦相村's new residential compound (the natural village with the
  most households) and 尹营村's road project (its fourth grid, where a dozen households objected
  for months); the rest scattered over the town;
- the 2023-09-23 flood night: one report from each floodplain household of the four low-lying
  villages (height above the river under 1.5 m);
- the remaining everyday matters (hazards, sanitation, requests, public order) spread over all
  households.
Written as an import file (CSV) and loaded through gis.incidents.batch, the same path as real data.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from gis.sample_town import FLOODPLAIN_MAX_HAND, LOW_LYING_VILLAGES, METRIC_CRS, SampleTown

SEED = 20240101
TOTAL = 5000
TZ = dt.timezone(dt.timedelta(hours=8))
START = dt.datetime(2023, 1, 1, tzinfo=TZ)
END = dt.datetime(2024, 12, 31, 23, 59, tzinfo=TZ)

TEMPLATES = {
    ("dispute", "demolition"): "新建小区征迁补偿意见不一，{n}户反映",
    ("dispute", "land"): "宅基地/承包地边界争议",
    ("dispute", "neighbour"): "邻里因排水、通道发生纠纷",
    ("dispute", "family"): "家庭赡养/婚姻矛盾需调解",
    ("dispute", "wages"): "务工人员反映工资拖欠",
    ("safety_hazard", None): "危房/电线/沟渠安全隐患",
    ("environment", None): "垃圾堆放、污水外溢",
    ("livelihood", None): "低保、医保、道路照明等诉求",
    ("public_order", None): "夜间噪音、可疑人员",
    ("disaster", None): "强降雨房屋进水，请求转移",
}


def _hand(town: SampleTown, xy: np.ndarray) -> np.ndarray:
    """Height above the nearest river point, from the DEM (metres)."""
    river = shapely.union_all(town.rivers.to_crs(METRIC_CRS).geometry.values)
    inv = ~town.dem_transform

    def z(pts: np.ndarray) -> np.ndarray:
        cols, rows = inv * (pts[:, 0], pts[:, 1])
        r = np.clip(np.floor(rows).astype(int), 0, town.dem.shape[0] - 1)
        c = np.clip(np.floor(cols).astype(int), 0, town.dem.shape[1] - 1)
        heights: np.ndarray = town.dem[r, c].astype(float)
        return heights

    near = shapely.get_coordinates(
        shapely.line_interpolate_point(river, shapely.line_locate_point(river, shapely.points(xy)))
    )
    height: np.ndarray = z(xy) - z(near)
    return height


def _times(rng: np.random.Generator, n: int, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    span = (end - start).total_seconds()
    return [start + dt.timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, span, n))]


def generate_sample_incidents(town: SampleTown, seed: int = SEED) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    hh = town.households.reset_index(drop=True)
    grids = town.grids
    vname = dict(zip(grids["code"], grids["name"], strict=True))
    village_of = hh["grid_code"].str[:12] + "000"
    hh_village = village_of.map(vname)
    to_m = Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)
    xy = np.column_stack(to_m.transform(hh.geometry.x.to_numpy(), hh.geometry.y.to_numpy()))
    lon, lat = hh.geometry.x.to_numpy(), hh.geometry.y.to_numpy()
    rows: list[dict[str, Any]] = []

    def add(
        idx: Any, category: str, kind: str | None, when: dt.datetime, state: str, jitter_m: float = 15.0, n: int = 1
    ) -> None:
        dx, dy = rng.normal(0, jitter_m / 111_000, 2)
        rows.append({
            "category": category, "dispute_kind": kind,
            "description": TEMPLATES[(category, kind)].format(n=n), "occurred_at": when.isoformat(),
            "lon": round(float(lon[idx] + dx), 7), "lat": round(float(lat[idx] + dy), 7), "state": state,
        })

    def state_for(when: dt.datetime) -> str:
        age = (END - when).days
        if age > 60:
            return "closed"
        return str(rng.choice(["visit", "report", "study", "handle", "follow_up", "closed"]))

    # 李邦相村: the compound sits at the natural village with the most households.
    lbx = np.flatnonzero(hh_village.to_numpy() == "李邦相村")
    centre_nv = hh.loc[lbx, "natural_village"].value_counts().index[0]
    compound = np.flatnonzero((hh_village.to_numpy() == "李邦相村") & (hh["natural_village"].to_numpy() == centre_nv))
    for when in _times(rng, 300, dt.datetime(2023, 3, 1, tzinfo=TZ), dt.datetime(2024, 6, 30, tzinfo=TZ)):
        add(rng.choice(compound), "dispute", rng.choice(["demolition", "demolition", "land"]), when, state_for(when),
            n=int(rng.integers(2, 9)))
    # 尹营村 grid 4: a dozen households objecting to the road, month after month.
    road_grid = next(c for c, n in vname.items() if n == "尹营村第四网格")
    in_grid = np.flatnonzero(hh["grid_code"].to_numpy() == road_grid)
    objectors = rng.choice(in_grid, size=min(12, len(in_grid)), replace=False)
    for when in _times(rng, 200, dt.datetime(2023, 4, 1, tzinfo=TZ), dt.datetime(2023, 12, 31, tzinfo=TZ)):
        who = rng.choice(objectors) if rng.random() < 0.8 else rng.choice(in_grid)
        add(who, "dispute", rng.choice(["land", "demolition"]), when, state_for(when), n=12)
    # Background disputes anywhere.
    for when in _times(rng, 100, START, END):
        add(int(rng.integers(len(hh))), "dispute", rng.choice(["neighbour", "family", "wages", "land"]),
            when, state_for(when))
    # The flood night: every floodplain household of the low-lying villages reports.
    low = np.flatnonzero(hh_village.isin(LOW_LYING_VILLAGES).to_numpy())
    flooded = low[_hand(town, xy[low]) < FLOODPLAIN_MAX_HAND]
    night = dt.datetime(2023, 9, 23, 20, 0, tzinfo=TZ)
    for idx in flooded:
        when = night + dt.timedelta(minutes=float(rng.uniform(0, 8 * 60)))
        add(idx, "disaster", None, when, "closed", jitter_m=3.0)
    # Everyday matters, in proportion to households.
    rest = TOTAL - len(rows)
    cats = rng.choice(["safety_hazard", "environment", "livelihood", "public_order", "disaster"], size=rest,
                      p=[0.22, 0.30, 0.33, 0.12, 0.03])
    for cat, when in zip(cats, _times(rng, rest, START, END), strict=True):
        add(int(rng.integers(len(hh))), str(cat), None, when, state_for(when))
    frame = pd.DataFrame(rows).sort_values("occurred_at", kind="stable").reset_index(drop=True)
    frame.insert(0, "external_id", [f"sample-{i:05d}" for i in range(1, len(frame) + 1)])
    return frame
