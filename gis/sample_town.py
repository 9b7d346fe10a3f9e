"""Deterministic synthetic sample town (合成示例数据) matching the brief's reference numbers."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import affine
import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from pyproj import Transformer
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import Delaunay

from gis.codes import area_code, group_code, reading_order, town_code, village_code

__all__ = [
    "SEED",
    "TOWN_CODE",
    "TOWN_NAME",
    "METRIC_CRS",
    "LOW_LYING_VILLAGES",
    "SYNTHETIC_NOTICE",
    "REFERENCE_DATE",
    "FLOODPLAIN_HOUSEHOLDS",
    "SampleTown",
    "generate_sample_town",
    "write_boundaries",
    "write_dem",
]

SEED = 20230923
TOWN_CODE = town_code("411324", "105")  # "411324105000000"; township 105 is synthetic
# The name says "sample" so that no map of this data can pass for the real Yangying town.
TOWN_NAME = "杨营镇（示例）"
METRIC_CRS = "EPSG:4546"  # CGCS2000 / 3-degree Gauss-Kruger CM 111E
LOW_LYING_VILLAGES = ("岁坡村", "小岗村", "周湾村", "陈洼村")
SYNTHETIC_NOTICE = "合成示例数据（非真实数据）/ synthetic sample data"

# Ages and the elderly/children counts are taken on the flood night of the story.
REFERENCE_DATE = date(2023, 9, 23)
ELDERLY_AGE = 65  # the issue: elderly = 65 and over
CHILD_AGE = 14
# Households of the four low-lying villages that sit on the floodplain: their height above the
# river bed is below 1.5 m, every other household of those villages is 2.5 m or more above it and
# every household elsewhere 4.5 m or more, so any stage between 1.5 and 2.5 m floods exactly these.
FLOODPLAIN_HOUSEHOLDS = 47
FLOODPLAIN_MAX_HAND = 1.5
LOW_VILLAGE_MIN_HAND = 2.5
OTHER_VILLAGE_MIN_HAND = 4.5

CENTRE_LONLAT = (112.17, 32.97)
DEM_CELL = 10.0
DEM_NODATA = -9999.0
DEM_MARGIN = 1000.0

N_AREAS = 4
VILLAGES_PER_AREA = 5
N_GRIDS = 282
N_NATURAL_VILLAGES = 92
N_RESIDENTS = 62_600
N_GRID_MEMBERS = 3_087
N_PARTY_HOUSEHOLDS = 487

RIVER_NAME = "清水河"
COUNTY_ROAD_NAME = "X027杨营线"
# Half-width (m) of the flat floodplain strip along the river inside the low-lying villages.
_FLOODPLAIN_WIDTH = 220.0

_SEAT_VILLAGE = "杨营村"
_HILL_VILLAGES = ("尹营村", "魏岭村")  # the forest farm of the story is in the north-western hills
_OTHER_VILLAGES = (
    "李邦相村", "张楼村", "刘寨村", "赵庄村", "孙庄村", "黄营村", "马沟村",
    "郭店村", "高庄村", "崔营村", "朱楼村", "侯集村", "彭庄村",
)  # fmt: skip
_AREA_THEMES = ("集镇服务", "滨河生态", "浅山林果", "平原粮食")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_SURNAMES = (
    "王李张刘陈杨赵黄周吴徐孙马朱胡郭何高林罗郑梁谢宋唐韩冯于董曹彭曾田袁蒋蔡杜程魏吕丁沈任"
    "姚卢姜崔钟谭陆汪范金石廖贾夏付方邢侯郝孔薛尹岁"
)
_NV_SUFFIXES = _words("庄 营 楼 寨 岗 店 园 岭 沟 坡 集 屯")
_NV_RIVER_SUFFIXES = _words("湾 洼 滩 河沿")
_DIRECTIONS = _words("前 后 东 西 南 北 大 小 上 下")

# Given names by gender and generation (born before 1965, 1965-1994, 1995 on).
_GIVEN = {
    ("男", 0): _words(
        "建国 国强 建军 德明 保国 新民 振华 国庆 红军 满仓 金山 铁柱 富贵 长海 明德 志成 "
        "广义 文华 春生 学军 卫东 占奎 天顺 玉山 有才 守业 运来 根生 福来 正义"
    ),
    ("女", 0): _words(
        "秀英 桂兰 玉兰 秀兰 桂英 凤英 春花 秀珍 玉梅 翠花 素芳 淑珍 金凤 荣华 月娥 巧云 "
        "爱玲 兰芝 改云 桂芝 玉珍 秀云 凤兰 粉英 书贞 小菊 爱荣 喜梅"
    ),
    ("男", 1): _words(
        "伟 磊 勇 军 涛 鹏 超 强 刚 浩 亮 明 杰 辉 斌 建伟 晓东 海涛 志刚 红伟 永强 振宇 "
        "俊峰 国栋 长江 卫华 新峰 向阳 利军 宏伟"
    ),
    ("女", 1): _words(
        "丽 娟 敏 静 燕 芳 霞 艳 婷 晓燕 丽娟 红霞 艳丽 春燕 海燕 玉洁 雪梅 晓丽 丽萍 "
        "彩霞 慧敏 秀丽 亚楠 冬梅 红梅 小红 建华 玉霞"
    ),
    ("男", 2): _words(
        "子轩 浩然 宇航 梓豪 俊杰 博文 一鸣 嘉豪 思远 睿 昊天 宇轩 泽宇 天佑 铭 沐阳 "
        "子墨 浩宇 明轩 皓轩 家乐 奕辰 锦程 俊熙 宇泽 振宇 文博 梓睿"
    ),
    ("女", 2): _words(
        "梓涵 欣怡 雨桐 诗涵 佳怡 可馨 紫涵 一诺 思琪 语嫣 若汐 欣妍 子涵 雨萱 梦瑶 佳琪 "
        "思雨 晨曦 雅琪 心怡 诗雨 可欣 梦琪 语桐 浩雪 安然 芷若 依诺"
    ),
}
_GIVEN_PARTS = {
    "男": ("志建国永海振德明文学俊晓宏新天家长红金玉", "强军华明伟平刚林峰杰涛辉东亮斌波阳生贵成"),
    "女": ("秀玉桂春丽晓红小雪美海凤金彩爱翠素", "英兰芳珍梅霞燕娟红萍华琴丽敏花云荣"),
}
_PHONE_PREFIXES = _words(
    "130 131 132 133 135 136 137 138 139 150 151 152 153 155 156 157 158 159 "
    "166 173 175 176 177 178 180 181 182 183 185 186 187 188 189 191 198 199"
)
_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
_ID_CHECK = "10X98765432"
_CN_DIGITS = "零一二三四五六七八九"


@dataclass(eq=False)  # DataFrames have no single truth value; compare fields explicitly
class SampleTown:
    """Every layer of the sample town; vector layers in EPSG:4326, the DEM in METRIC_CRS."""

    grids: gpd.GeoDataFrame
    natural_villages: gpd.GeoDataFrame
    households: gpd.GeoDataFrame
    residents: pd.DataFrame
    staff: pd.DataFrame
    shelters: gpd.GeoDataFrame
    roads: gpd.GeoDataFrame
    rivers: gpd.GeoDataFrame
    dem: np.ndarray
    dem_transform: affine.Affine
    dem_crs: str = METRIC_CRS


# ----------------------------------------------------------------------------- small helpers


def _cn_number(n: int) -> str:
    """Chinese numeral for 1..99, as used in 三组 / 第十二网格."""
    if n < 10:
        return _CN_DIGITS[n]
    tens, units = divmod(n, 10)
    return ("" if tens == 1 else _CN_DIGITS[tens]) + "十" + (_CN_DIGITS[units] if units else "")


def _largest_remainder(weights: npt.ArrayLike, total: int, minimum: int = 0) -> np.ndarray:
    """Integers proportional to `weights`, each >= minimum, summing exactly to `total`."""
    w = np.asarray(weights, dtype=float)
    base = np.full(len(w), minimum, dtype=int)
    rest = total - int(base.sum())
    if rest < 0:
        raise ValueError(f"cannot give {len(w)} items at least {minimum} out of {total}")
    share = w / w.sum() * rest
    out = np.floor(share).astype(int)
    order = np.argsort(-(share - out), kind="stable")
    out[order[: rest - int(out.sum())]] += 1
    result: np.ndarray = base + out
    return result


def _smoothstep(t: Any) -> Any:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _sample_in(rng: np.random.Generator, geom: Any, n: int) -> np.ndarray:
    """`n` uniform random points inside `geom` (rejection from its bounding box)."""
    shapely.prepare(geom)
    minx, miny, maxx, maxy = geom.bounds
    out = np.empty((0, 2))
    while len(out) < n:
        xy = rng.uniform((minx, miny), (maxx, maxy), size=(2 * n + 16, 2))
        out = np.vstack([out, xy[shapely.contains_xy(geom, xy[:, 0], xy[:, 1])]])
    return out[:n]


def _kmeans(
    xy: np.ndarray, k: int, rng: np.random.Generator, iters: int = 100, init: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd k-means from a k-means++ start; once converged every point is nearest its centre."""
    if init is None:
        seeds = [xy[rng.integers(len(xy))]]
        d2 = ((xy - seeds[0]) ** 2).sum(1)
        for _ in range(1, k):
            i = rng.choice(len(xy), p=d2 / d2.sum())
            seeds.append(xy[i])
            d2 = np.minimum(d2, ((xy - xy[i]) ** 2).sum(1))
        centres = np.array(seeds, dtype=float)
    else:
        centres = np.array(init, dtype=float)
    labels: np.ndarray | None = None
    for _ in range(iters):
        d = ((xy[:, None, :] - centres[None, :, :]) ** 2).sum(2)
        new = d.argmin(1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = labels == j
            if members.any():
                centres[j] = xy[members].mean(0)
            else:
                # An empty cluster would leave a grid without households: restart it on the
                # point worst served by its current centre.
                far = int(d[np.arange(len(xy)), labels].argmax())
                centres[j] = xy[far]
    if labels is None:
        raise ValueError("k-means needs at least one iteration")
    return centres, labels


def _tile(parent: Any, seeds: np.ndarray, members: tuple[np.ndarray, np.ndarray] | None = None) -> list[Any]:
    """Split `parent` into one connected polygon per seed (Voronoi cells clipped to it).

    A Voronoi cell clipped to a non-convex parent can fall apart; the part that keeps the seed's
    members (or the seed itself, or else the largest part) stays, and every other piece joins the
    neighbour it shares the longest border with, so the pieces still cover the parent exactly.
    The clip uses floating-point overlay on purpose: snap-rounding a vertex inserted on a long
    parent edge moves it off that edge and leaves slivers of several m² against the parent."""
    minx, miny, maxx, maxy = parent.bounds
    frame = shapely.box(minx - 1000, miny - 1000, maxx + 1000, maxy + 1000)
    cells = shapely.get_parts(
        shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=frame, ordered=True)
    )
    if len(cells) != len(seeds):
        raise RuntimeError("Voronoi diagram lost a seed (duplicate seeds?)")
    kept, orphans = [], []
    for i, cell in enumerate(cells):
        parts = [
            p
            for p in shapely.get_parts(shapely.intersection(cell, parent))
            if p.geom_type == "Polygon" and p.area > 0
        ]
        if not parts:
            raise RuntimeError("a seed's cell misses its parent")

        def score(p: Any, i: int = i) -> Any:
            n_members = 0
            if members is not None:
                xy, labels = members
                own = xy[labels == i]
                n_members = (
                    int(shapely.contains_xy(p, own[:, 0], own[:, 1]).sum()) if len(own) else 0
                )
            return (n_members, bool(shapely.contains_xy(p, *seeds[i])), p.area)

        parts.sort(key=score, reverse=True)
        kept.append(parts[0])
        orphans.extend(parts[1:])
    while orphans:
        orphans.sort(key=lambda p: p.area, reverse=True)
        waiting = []
        for piece in orphans:
            shared = [
                shapely.length(shapely.intersection(piece.boundary, k.boundary)) for k in kept
            ]
            j = int(np.argmax(shared))
            if shared[j] <= 0:
                waiting.append(piece)
                continue
            merged = shapely.union(kept[j], piece)
            if merged.geom_type != "Polygon":
                merged = max(shapely.get_parts(merged), key=lambda p: p.area)
            kept[j] = merged
        if len(waiting) == len(orphans):
            raise RuntimeError("could not attach pieces of a split Voronoi cell")
        orphans = waiting
    return kept


def _rep_points(geoms: Any) -> np.ndarray:
    """Representative points of `geoms` as an (n, 2) array."""
    points: np.ndarray = shapely.get_coordinates(shapely.point_on_surface(np.asarray(geoms, dtype=object)))
    return points


def _order(geoms: Any, parent: Any) -> np.ndarray:
    """Sibling numbering: reading order of centroids (gis.codes.reading_order), in rows a third
    of the parent's north-south extent high. Centroids, unlike points on surface, do not jump
    when a vertex is inserted on an edge, so the numbering survives noding and reprojection."""
    pts = shapely.get_coordinates(shapely.centroid(np.asarray(geoms, dtype=object)))
    height = (parent.bounds[3] - parent.bounds[1]) / 3.0
    order: np.ndarray = reading_order(pts[:, 0], pts[:, 1], height)
    return order


# ----------------------------------------------------------------------------- town shape


def _town_outline(rng: np.random.Generator, cx: float, cy: float) -> Any:
    """A star-shaped irregular outline of 92-104 km² around (cx, cy)."""
    n = 480
    theta = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, 30):
        r += 0.3 / k**1.2 * rng.uniform(0.5, 1.0) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    r = np.maximum(r, 0.45)
    # Township borders follow field edges and ditches: a little vertex-level jaggedness.
    r *= 1.0 + rng.normal(0.0, 0.0025, n)
    unit = shapely.Polygon(np.column_stack([r * np.cos(theta), r * np.sin(theta)]))
    scale = math.sqrt(rng.uniform(92e6, 104e6) / unit.area)
    xy = np.round(
        np.column_stack([cx + scale * r * np.cos(theta), cy + scale * r * np.sin(theta)]), 2
    )
    town = shapely.Polygon(xy)
    if not town.is_valid:
        raise RuntimeError("town outline is not valid")
    return town


def _river(rng: np.random.Generator, cx: float, cy: float, frame: Any) -> Any:
    """A meandering river flowing east-south-east, south of the town centre, across `frame`.

    The course is a graph over its straight base line (lateral offset as a function of the
    distance along it), so it can never cross itself."""
    angle = -math.radians(rng.uniform(12.0, 22.0))
    along = np.array([math.cos(angle), math.sin(angle)])
    across = np.array([-along[1], along[0]])
    origin = np.array([cx, cy]) - across * rng.uniform(1200.0, 1800.0)
    t = np.arange(-20000.0, 20000.0, 20.0)
    offset = np.zeros_like(t)
    for amplitude, wavelength in ((480.0, 4800.0), (200.0, 2000.0), (65.0, 760.0)):
        offset += (
            amplitude
            * rng.uniform(0.7, 1.0)
            * np.sin(2 * np.pi * t / wavelength + rng.uniform(0, 2 * np.pi))
        )
    xy = origin + t[:, None] * along + offset[:, None] * across
    line = shapely.intersection(shapely.LineString(np.round(xy, 2)), frame)
    if line.geom_type != "LineString":
        line = max(shapely.get_parts(line), key=lambda g: g.length)
    return line


# ----------------------------------------------------------------------------- terrain


@dataclass
class _Terrain:
    dem: np.ndarray
    transform: affine.Affine
    hand: np.ndarray  # height above the river bed at the nearest channel cell (m)
    dist: np.ndarray  # distance to the river channel (m)
    lowland: np.ndarray  # 0..1 weight of the low-lying villages' floodplain landscape
    river: shapely.LineString

    def cells(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        col = np.floor((xy[:, 0] - self.transform.c) / DEM_CELL).astype(int)
        row = np.floor((self.transform.f - xy[:, 1]) / DEM_CELL).astype(int)
        return np.clip(row, 0, self.dem.shape[0] - 1), np.clip(col, 0, self.dem.shape[1] - 1)

    def at(self, name: str, xy: np.ndarray) -> np.ndarray:
        row, col = self.cells(xy)
        values: np.ndarray = getattr(self, name)[row, col]
        return values

    def height_above_river(self, xy: np.ndarray) -> np.ndarray:
        """DEM at the points minus DEM at the nearest point of the river line (the channel bed):
        the measure a flood analysis of the DEM and the river layer would use."""
        foot = shapely.line_interpolate_point(
            self.river, shapely.line_locate_point(self.river, shapely.points(xy))
        )
        height: np.ndarray = self.at("dem", xy) - self.at("dem", shapely.get_coordinates(foot))
        return height


def _upsample(coarse: np.ndarray, factor: int, shape: tuple[int, int], order: int) -> np.ndarray:
    fine: np.ndarray = ndimage.zoom(coarse, factor, order=order, mode="nearest", grid_mode=True)
    return fine[: shape[0], : shape[1]]


def _terrain(
    rng: np.random.Generator, town: Any, river: Any, lowland_polys: Any, low_start: float, centre: Any
) -> _Terrain:
    """A 10 m DEM: a valley along the river, Funiu foothills rising to the north-west, a flat
    floodplain in the low-lying villages, smooth seeded noise and a burned-in channel."""
    from rasterio.features import rasterize

    minx, miny, maxx, maxy = town.bounds
    x0 = math.floor((minx - DEM_MARGIN) / DEM_CELL) * DEM_CELL
    y1 = math.ceil((maxy + DEM_MARGIN) / DEM_CELL) * DEM_CELL
    ncols = int(math.ceil((maxx + DEM_MARGIN - x0) / DEM_CELL))
    nrows = int(math.ceil((y1 - (miny - DEM_MARGIN)) / DEM_CELL))
    shape = (nrows, ncols)
    transform = affine.Affine(DEM_CELL, 0.0, x0, 0.0, -DEM_CELL, y1)

    length = river.length
    chain = np.append(np.arange(0.0, length, 1.0), length)
    pts = shapely.get_coordinates(shapely.line_interpolate_point(river, chain))
    col = np.floor((pts[:, 0] - x0) / DEM_CELL).astype(int)
    row = np.floor((y1 - pts[:, 1]) / DEM_CELL).astype(int)
    inside = (row >= 0) & (row < nrows) & (col >= 0) & (col < ncols)
    channel = np.zeros(shape, dtype=bool)
    chainage = np.zeros(shape)
    channel[row[inside], col[inside]] = True
    chainage[row[inside], col[inside]] = chain[inside]
    dist, (near_r, near_c) = ndimage.distance_transform_edt(
        ~channel, sampling=DEM_CELL, return_indices=True
    )
    s = chainage[near_r, near_c]
    del near_r, near_c

    # Long profile: steep where the river leaves the hills, then 0.5 m/km from where it reaches
    # the low-lying villages, so those are the lowest ground and a flood stage is about level there.
    z_up, z_down = rng.uniform(138.0, 146.0), rng.uniform(96.0, 99.0)
    gentle = 0.0005
    drop = z_up - z_down - gentle * length
    bed = (
        z_down
        + gentle * (length - s)
        + drop * np.clip((low_start - s) / low_start, 0.0, 1.0) ** 1.6
    )

    xs = x0 + (np.arange(ncols) + 0.5) * DEM_CELL
    ys = y1 - (np.arange(nrows) + 0.5) * DEM_CELL
    northwest = (-(xs[None, :] - centre[0]) * 0.6 + (ys[:, None] - centre[1]) * 0.8) / 14000.0 + 0.5
    relief = 28.0 + 95.0 * 0.5 * (1.0 + np.tanh(3.0 * (northwest - 0.5)))

    def noise(factor: int, sigma: float) -> np.ndarray:
        coarse = rng.standard_normal((nrows // factor + 6, ncols // factor + 6))
        coarse = ndimage.gaussian_filter(coarse, sigma, mode="wrap")
        coarse /= coarse.std()
        return _upsample(coarse, factor, shape, order=3)

    hills = 0.6 * noise(10, 3.0) + 0.4 * noise(10, 8.0)
    ripples = noise(5, 2.0)

    coarse_t = affine.Affine(DEM_CELL * 5, 0.0, x0, 0.0, -DEM_CELL * 5, y1)
    # The lowland reaches a little past the low-lying villages so that it is fully flat at their
    # borders; neighbours only get dry houses there (their households stay 4.5 m above the river).
    low_mask = rasterize(
        [(shapely.union_all(lowland_polys).buffer(250.0), 1)],
        out_shape=(nrows // 5 + 1, ncols // 5 + 1),
        transform=coarse_t,
        dtype="uint8",
    ).astype(float)
    lowland = np.clip(
        _upsample(ndimage.gaussian_filter(low_mask, 3.0), 5, shape, order=1), 0.0, 1.0
    )

    d = dist
    valley = (
        2.0
        + 3.0 * _smoothstep((d - 10.0) / 150.0)
        + relief * (1.0 - np.exp(-d / 1800.0))
        + (0.08 * relief + 1.0) * hills * _smoothstep((d - 150.0) / 500.0)
    )
    w = _FLOODPLAIN_WIDTH
    beyond = np.maximum(d - w, 0.0)
    plain = (
        1.0
        + 0.4 * np.clip(d / w, 0.0, 1.0)
        + 0.08 * ripples
        + 3.2 * _smoothstep(beyond / 100.0)
        + 6.0 * (1.0 - np.exp(-beyond / 2000.0))
        + 1.0 * hills * _smoothstep((beyond - 100.0) / 400.0)
    )
    height = (1.0 - lowland) * valley + lowland * plain
    del valley, plain, hills, ripples
    # Away from the channel the valley floor is a smoothed copy of the bed: the nearest channel
    # cell jumps across the neck of a meander, and the raw bed would leave a step there.
    pad_r, pad_c = (-nrows) % 5, (-ncols) % 5
    blocks = np.pad(bed, ((0, pad_r), (0, pad_c)), mode="edge").reshape(
        (nrows + pad_r) // 5, 5, (ncols + pad_c) // 5, 5
    )
    smooth = _upsample(
        ndimage.gaussian_filter(blocks.mean(axis=(1, 3)), 8.0, mode="nearest"), 5, shape, order=1
    )
    t = _smoothstep((d - 30.0) / 300.0)
    floor = (1.0 - t) * bed + t * smooth
    del blocks, smooth, t
    # The channel is burned in: every cell the river crosses (and its 4-neighbours) is bed.
    channel = d <= DEM_CELL + 0.01
    height[channel] = 0.0
    floor[channel] = bed[channel]
    dem = (floor + height).astype(np.float32)
    hand = (dem - bed).astype(np.float32)
    return _Terrain(
        dem=dem,
        transform=transform,
        hand=hand,
        dist=dist.astype(np.float32),
        lowland=lowland.astype(np.float32),
        river=river,
    )


# ----------------------------------------------------------------------------- people


def _name_parts(rnd: random.Random, gender: str, birth_year: int) -> str:
    era = 0 if birth_year < 1965 else (1 if birth_year < 1995 else 2)
    if rnd.random() < 0.6:
        return rnd.choice(_GIVEN[(gender, era)])
    first, second = _GIVEN_PARTS[gender]
    return rnd.choice(first) + rnd.choice(second)


_SURNAME_WEIGHTS = [1.0 / (i + 6) for i in range(len(_SURNAMES))]


def _random_surname(rnd: random.Random) -> str:
    return rnd.choices(_SURNAMES, weights=_SURNAME_WEIGHTS)[0]


def _phones(rng: np.random.Generator, n: int, exclude: frozenset[str] = frozenset()) -> list[str]:
    """`n` distinct synthetic 11-digit mobile numbers, none of them in `exclude`."""
    out: dict[str, None] = {}
    span = len(_PHONE_PREFIXES) * 100_000_000
    while len(out) < n:
        for v in rng.integers(0, span, size=n - len(out) + 16).tolist():
            prefix, rest = divmod(v, 100_000_000)
            phone = f"{_PHONE_PREFIXES[prefix]}{rest:08d}"
            if phone not in exclude:
                out.setdefault(phone, None)
    return list(out)[:n]


def _id_numbers(birth: list[date], male: np.ndarray) -> list[str]:
    """18-digit resident ID numbers, region 411324, sequence odd for men, valid check digit."""
    frame = pd.DataFrame({"b": [b.toordinal() for b in birth], "m": male})
    k = frame.groupby(["b", "m"], sort=False).cumcount().to_numpy()
    offset = (frame["b"].to_numpy() * 37 + male * 11) % 499
    seq = 2 * ((offset + k) % 499) + np.where(male, 1, 2)
    body = [f"411324{b:%Y%m%d}{s:03d}" for b, s in zip(birth, seq.tolist(), strict=True)]
    digits = np.frombuffer("".join(body).encode("ascii"), dtype=np.uint8).reshape(-1, 17) - ord("0")
    checks = (digits * _ID_WEIGHTS).sum(1) % 11
    return [b + _ID_CHECK[c] for b, c in zip(body, checks.tolist(), strict=True)]


def _household_members(
    rnd: random.Random, size: int, surname: str
) -> list[tuple[str, str, str, int]]:
    """(name, gender, relation, age) of the members of one rural household, head first."""
    members: list[tuple[str, str, str, int]] = []
    head_age = rnd.randint(45, 88) if size == 1 else min(88, max(26, int(rnd.triangular(26, 82, 50))))
    head_gender = "男" if rnd.random() < 0.84 else "女"
    year = REFERENCE_DATE.year
    head_surname = surname if (head_gender == "男" or rnd.random() < 0.4) else _random_surname(rnd)
    members.append(
        (
            head_surname + _name_parts(rnd, head_gender, year - head_age),
            head_gender,
            "户主",
            head_age,
        )
    )
    family = (
        head_surname if head_gender == "男" else (surname if rnd.random() < 0.5 else head_surname)
    )

    def add(relation: str, gender: str, age: int, own_surname: str | None = None) -> None:
        age = int(min(98, max(0, age)))
        members.append(
            ((own_surname or family) + _name_parts(rnd, gender, year - age), gender, relation, age)
        )

    spouse_p = 0.9 if head_age < 72 else 0.6
    if size >= 2 and rnd.random() < spouse_p:
        add(
            "配偶",
            "女" if head_gender == "男" else "男",
            head_age + rnd.randint(-5, 4),
            _random_surname(rnd),
        )
    if head_age < 52:
        for parent_gender in ("男", "女"):
            if len(members) < size - 1 and rnd.random() < 0.3:
                age = head_age + rnd.randint(24, 32)
                add(
                    "父母",
                    parent_gender,
                    age,
                    family if parent_gender == "男" else _random_surname(rnd),
                )
    child_ages: list[int] = []
    while len(members) < size:
        if head_age < 55 or not child_ages:
            age = head_age - rnd.randint(22, 36)
            if age < 0:
                age = rnd.randint(0, max(0, head_age - 20))
            gender = "男" if rnd.random() < 0.52 else "女"
            add("子女", gender, age)
            child_ages.append(age)
        elif rnd.random() < 0.35:
            add("儿媳", "女", child_ages[0] + rnd.randint(-3, 3), _random_surname(rnd))
        else:
            age = max(child_ages) - rnd.randint(20, 32)
            if age < 0:
                age = rnd.randint(0, 12)
            add("孙辈", "男" if rnd.random() < 0.52 else "女", age)
    return members


# ----------------------------------------------------------------------------- main generator


def generate_sample_town(seed: int = SEED) -> SampleTown:
    """Build the whole synthetic town from `seed`; the same seed gives the same town."""
    streams = np.random.SeedSequence(seed).spawn(9)
    (r_shape, r_river, r_split, r_terrain, r_settle, r_house, r_grid, r_people, r_staff) = (
        np.random.default_rng(s) for s in streams
    )

    to_metric = Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)
    cx, cy = to_metric.transform(*CENTRE_LONLAT)

    town = _town_outline(r_shape, cx, cy)
    minx, miny, maxx, maxy = town.bounds
    frame = shapely.box(
        math.floor((minx - DEM_MARGIN) / DEM_CELL) * DEM_CELL + 1.0,
        math.floor((miny - DEM_MARGIN) / DEM_CELL) * DEM_CELL + 1.0,
        math.ceil((maxx + DEM_MARGIN) / DEM_CELL) * DEM_CELL - 1.0,
        math.ceil((maxy + DEM_MARGIN) / DEM_CELL) * DEM_CELL - 1.0,
    )
    river = _river(r_river, cx, cy, frame)

    # --- areas and villages: centroidal Voronoi cells (k-means on uniform samples) give compact
    # units; the villages get only a few Lloyd steps so that their sizes differ.
    area_seeds, _ = _kmeans(_sample_in(r_split, town, 6000), N_AREAS, r_split)
    area_polys = _tile(town, area_seeds)
    area_polys = [area_polys[i] for i in _order(area_polys, town)]

    villages: list[dict[str, Any]] = []
    for a, apoly in enumerate(area_polys):
        seeds, _ = _kmeans(_sample_in(r_split, apoly, 3000), VILLAGES_PER_AREA, r_split, iters=3)
        vpolys = _tile(apoly, seeds)
        for i in _order(vpolys, apoly):
            villages.append({"area": a, "geom": vpolys[i]})
    for n, v in enumerate(villages, start=1):
        v["number"] = n
        v["code"] = village_code(TOWN_CODE, n)

    low_start = _name_villages(r_split, villages, river, (cx, cy))
    area_names = _name_areas(area_polys, villages)

    # --- terrain
    low_polys = [v["geom"] for v in villages if v["low"]]
    terrain = _terrain(r_terrain, town, river, low_polys, low_start, (cx, cy))

    # --- settlements and households
    nv_counts = _largest_remainder(
        [v["geom"].area ** 0.8 for v in villages], N_NATURAL_VILLAGES, minimum=2
    )
    n_households = int(r_house.integers(17_850, 18_150))
    weights = np.array([v["geom"].area ** 0.7 * r_house.uniform(0.75, 1.25) for v in villages])
    hh_counts = _largest_remainder(weights, n_households)
    used_nv_names: list[str] = [v["name"][:-1] for v in villages]
    for v, n_nv in zip(villages, nv_counts, strict=True):
        v["nvs"] = _place_natural_villages(r_settle, v, int(n_nv), terrain, used_nv_names)
    floodable = [v for v in villages if any(nv["kind"] == "riverside" for nv in v["nvs"])]
    if not floodable:
        raise RuntimeError("no low-lying village has a floodplain")
    flood_split = _largest_remainder(
        r_house.uniform(0.8, 1.2, size=len(floodable)), FLOODPLAIN_HOUSEHOLDS, minimum=5
    )
    for v, n in zip(floodable, flood_split, strict=True):
        v["flood"] = int(n)
    for v, n_hh in zip(villages, hh_counts, strict=True):
        _place_households(r_house, v, int(n_hh), v.get("flood", 0), terrain)

    # --- group grids
    # every natural village needs one grid of its own, the rest follow the households
    grid_counts = np.array([len(v["nvs"]) for v in villages]) + _largest_remainder(
        hh_counts, N_GRIDS - int(sum(len(v["nvs"]) for v in villages))
    )
    for v, k in zip(villages, grid_counts, strict=True):
        _make_grids(r_grid, v, int(k))

    # --- people, shelters, roads, staff
    hh_frame, residents = _make_people(r_people, villages)
    shelters = _make_shelters(r_settle, villages, terrain)
    roads = _make_roads(r_settle, town, river, villages, shelters, (cx, cy))
    staff = _make_staff(r_staff, villages, hh_frame)

    # --- output, EPSG:4326
    to_geo = Transformer.from_crs(METRIC_CRS, "EPSG:4326", always_xy=True)

    def geo(geoms: Any) -> np.ndarray:
        arr = np.asarray(list(geoms), dtype=object)
        moved: np.ndarray = shapely.transform(arr, lambda c: np.column_stack(to_geo.transform(c[:, 0], c[:, 1])))
        return moved

    def multi(p: Any) -> Any:
        return p if p.geom_type == "MultiPolygon" else shapely.MultiPolygon([p])

    grid_rows: list[tuple[str, str, int, str | None, Any]] = [(TOWN_CODE, TOWN_NAME, 1, None, town)]
    for a, apoly in enumerate(area_polys):
        grid_rows.append((area_code(TOWN_CODE, a + 1), area_names[a], 2, TOWN_CODE, apoly))
    for v in villages:
        grid_rows.append((v["code"], v["name"], 3, area_code(TOWN_CODE, v["area"] + 1), v["geom"]))
    for v in villages:
        for g in v["grids"]:
            grid_rows.append((g["code"], g["name"], 4, v["code"], g["geom"]))
    # Only the group grids are projected; every parent is then the union of its children in
    # EPSG:4326. Projecting parents separately would bend their long straight edges differently
    # from the children's split edges and leave slivers of tens of m² between the levels.
    group_rows = [r for r in grid_rows if r[2] == 4]
    noded = _node_polygons([r[4] for r in group_rows])
    geoms = dict(zip((r[0] for r in group_rows), geo(multi(p) for p in noded), strict=True))
    for level in (3, 2, 1):
        for code, _, lvl, _, _ in grid_rows:
            if lvl == level:
                kids = [geoms[r[0]] for r in grid_rows if r[3] == code]
                geoms[code] = multi(shapely.union_all(kids))
    grids = gpd.GeoDataFrame(
        {
            "code": [r[0] for r in grid_rows],
            "name": [r[1] for r in grid_rows],
            "level": np.array([r[2] for r in grid_rows], dtype=int),
            "parent_code": pd.Series([r[3] for r in grid_rows], dtype=object),
        },
        geometry=gpd.GeoSeries([geoms[r[0]] for r in grid_rows], crs="EPSG:4326"),
        crs="EPSG:4326",
    )

    nv_rows = [
        (nv["name"], v["code"], shapely.Point(nv["xy"])) for v in villages for nv in v["nvs"]
    ]
    natural_villages = gpd.GeoDataFrame(
        {"name": [r[0] for r in nv_rows], "village_code": [r[1] for r in nv_rows]},
        geometry=geo(r[2] for r in nv_rows),
        crs="EPSG:4326",
    )

    hh_xy = _off_cell_edges(np.vstack(hh_frame.pop("_xy").to_list()), terrain.transform)
    group_geom = {g["code"]: g["geom"] for v in villages for g in v["grids"]}
    hh_points = shapely.points(hh_xy)
    codes = hh_frame["grid_code"]
    if not all(group_geom[c].contains(p) for c, p in zip(codes, hh_points, strict=True)):
        raise RuntimeError("a household moved off a DEM cell edge left its group grid")
    households = gpd.GeoDataFrame(hh_frame, geometry=geo(hh_points), crs="EPSG:4326")

    shelter_frame = gpd.GeoDataFrame(
        {
            "name": [s["name"] for s in shelters],
            "kind": [s["kind"] for s in shelters],
            "capacity": np.array([s["capacity"] for s in shelters], dtype=int),
            "grid_code": [s["grid_code"] for s in shelters],
        },
        geometry=geo(shapely.Point(s["xy"]) for s in shelters),
        crs="EPSG:4326",
    )
    road_frame = gpd.GeoDataFrame(
        {"name": [r["name"] for r in roads], "road_class": [r["road_class"] for r in roads]},
        geometry=geo(r["geom"] for r in roads),
        crs="EPSG:4326",
    )
    river_frame = gpd.GeoDataFrame({"name": [RIVER_NAME]}, geometry=geo([river]), crs="EPSG:4326")

    return SampleTown(
        grids=grids,
        natural_villages=natural_villages,
        households=households,
        residents=residents,
        staff=staff,
        shelters=shelter_frame,
        roads=road_frame,
        rivers=river_frame,
        dem=terrain.dem,
        dem_transform=terrain.transform,
        dem_crs=METRIC_CRS,
    )


# ----------------------------------------------------------------------------- naming


def _node_polygons(polygons: list[Any]) -> list[Any]:
    """The same polygons with every vertex a neighbour has on a shared edge inserted (no T-junctions).

    A vertex in the middle of a straight edge stays on that edge in metres but not after projecting
    to lon/lat; unless both neighbours carry it, their shared edge differs by a sliver. Rebuilding
    the faces from the noded line work gives both sides the very same vertices."""
    lines = shapely.union_all(shapely.boundary(np.asarray(polygons, dtype=object)))
    faces = np.asarray(shapely.get_parts(shapely.polygonize(shapely.get_parts(lines))), dtype=object)
    owners = shapely.STRtree(np.asarray(polygons, dtype=object)).query(
        shapely.point_on_surface(faces), predicate="within"
    )
    parts: list[list[Any]] = [[] for _ in polygons]
    for face_i, poly_i in zip(*owners, strict=True):
        parts[poly_i].append(faces[face_i])
    out = []
    for original, own in zip(polygons, parts, strict=True):
        if not own:
            raise ValueError("noding lost a polygon")
        merged = own[0] if len(own) == 1 else shapely.union_all(own)
        # Polygonize fills holes with faces of their own; a polygon's own holes come back here.
        out.append(merged)
        if abs(merged.area - original.area) > 1e-3:
            raise ValueError(f"noding changed an area by {merged.area - original.area:.4f} m²")
    return out


def _name_villages(rng: np.random.Generator, villages: list[dict[str, Any]], river: Any, centre: Any) -> float:
    """Pick the low-lying villages (the last ones along the river) and give every village a name;
    returns the chainage (m) where the river's gentle lower course begins."""
    length = river.length
    # A low-lying village needs a real share of the floodplain strip, not a corner by the river.
    strip = river.buffer(_FLOODPLAIN_WIDTH)
    for min_area in (0.3e6, 0.15e6, 0.05e6, 0.0):
        candidates = []
        for i, v in enumerate(villages):
            if shapely.intersection(strip, v["geom"]).area <= min_area:
                continue
            near = shapely.intersection(river, v["geom"].buffer(150.0))
            pts = shapely.line_interpolate_point(near, np.linspace(0, 1, 21), normalized=True)
            chain = shapely.line_locate_point(river, pts)
            candidates.append((float(np.mean(chain)) / length, i, float(chain.min())))
        if len(candidates) >= len(LOW_LYING_VILLAGES):
            break
    else:
        raise RuntimeError("the river touches too few villages to place the low-lying ones")
    candidates.sort(reverse=True)
    low = [i for _, i, _ in candidates[: len(LOW_LYING_VILLAGES)]]
    # The gentle lower course starts a little above the first low-lying village.
    low_start = max(
        0.25 * length, min(c for _, _, c in candidates[: len(LOW_LYING_VILLAGES)]) - 500.0
    )
    low_names = list(LOW_LYING_VILLAGES)
    rng.shuffle(low_names)
    for v in villages:
        v["low"] = False
    for i, name in zip(low, low_names, strict=True):
        villages[i]["low"] = True
        villages[i]["name"] = name

    rest = [i for i in range(len(villages)) if not villages[i]["low"]]
    centre_pt = shapely.Point(centre)
    seat = min(rest, key=lambda i: villages[i]["geom"].distance(centre_pt))
    villages[seat]["name"] = _SEAT_VILLAGE
    villages[seat]["seat"] = True
    rest.remove(seat)
    reps = {i: _rep_points([villages[i]["geom"]])[0] for i in rest}
    rest.sort(key=lambda i: -(-reps[i][0] * 0.6 + reps[i][1] * 0.8))
    for name in _HILL_VILLAGES:
        villages[rest.pop(0)]["name"] = name
    others = list(_OTHER_VILLAGES)
    rng.shuffle(others)
    for i, name in zip(rest, others, strict=True):
        villages[i]["name"] = name
    for v in villages:
        v.setdefault("seat", False)
    return float(low_start)


def _name_areas(area_polys: list[Any], villages: list[dict[str, Any]]) -> list[str]:
    """第N片区（theme片区）; the themes follow what lies in each area."""
    remaining = list(range(len(area_polys)))
    theme_of: dict[int, str] = {}

    def take(theme: str, key: Callable[[int], float]) -> None:
        best = max(remaining, key=key)
        remaining.remove(best)
        theme_of[best] = theme

    take(_AREA_THEMES[0], lambda a: sum(v["seat"] for v in villages if v["area"] == a))
    take(_AREA_THEMES[1], lambda a: sum(v["low"] for v in villages if v["area"] == a))
    take(
        _AREA_THEMES[2],
        lambda a: sum(v["name"] in _HILL_VILLAGES for v in villages if v["area"] == a),
    )
    take(_AREA_THEMES[3], lambda a: 0)
    return [f"第{_cn_number(a + 1)}片区（{theme_of[a]}片区）" for a in range(len(area_polys))]


# ----------------------------------------------------------------------------- settlements


def _place_natural_villages(
    rng: np.random.Generator, v: dict[str, Any], n: int, terrain: _Terrain, used: list[str]
) -> list[dict[str, Any]]:
    """Natural-village centres inside village `v`: the seat (village committee) most central, in a
    low-lying village one hamlet at the floodplain edge, the rest spread out on dry ground."""
    poly = v["geom"]
    # Coordinates are kept to the centimetre; round before testing where a point lies.
    cand = np.round(_sample_in(rng, poly, 4000), 2)
    margin = shapely.distance(poly.exterior, shapely.points(cand))
    hand = terrain.at("hand", cand)
    dist = terrain.at("dist", cand)
    if v["low"]:
        dry = (hand >= 3.5) & (dist >= _FLOODPLAIN_WIDTH + 200.0)
        terrace = (
            (hand >= LOW_VILLAGE_MIN_HAND + 0.5)
            & (dist >= _FLOODPLAIN_WIDTH)
            & (dist <= _FLOODPLAIN_WIDTH + 150.0)
        )
        plain = _on_floodplain(terrain, poly, cand)
    else:
        dry = (hand >= 7.0) & (dist >= 300.0)
    for need_margin in (250.0, 180.0, 120.0, 80.0, 40.0, 0.0):
        ok = dry & (margin >= need_margin)
        if ok.sum() >= 10 * n:
            break
    if not ok.any():
        raise RuntimeError(f"no dry ground for settlements in {v['name']}")

    chosen: list[np.ndarray] = []
    kinds: list[str] = []
    chosen.append(cand[ok][np.argmax(margin[ok])])
    kinds.append("seat")
    if v["low"]:
        # The riverside hamlet stands on the terrace edge with the most floodplain below it.
        spots = np.flatnonzero(terrace & (margin >= 60.0))
        if not len(spots):
            spots = np.flatnonzero(terrace)
        if len(spots) and plain.sum() >= 20:
            below = [int((((cand[plain] - cand[i]) ** 2).sum(1) < 250.0**2).sum()) for i in spots]
            chosen.append(cand[spots[int(np.argmax(below))]])
            kinds.append("riverside")
    pool = cand[ok]
    while len(chosen) < n:
        trial = pool[rng.choice(len(pool), size=min(30, len(pool)), replace=False)]
        gap = np.min(((trial[:, None, :] - np.array(chosen)[None, :, :]) ** 2).sum(2), axis=1)
        chosen.append(trial[np.argmax(gap)])
        kinds.append("hamlet")

    seat_surname = v["name"][0] if v["name"][0] in _SURNAMES else _random_surname_np(rng)
    out = []
    for xy, kind in zip(chosen, kinds, strict=True):
        if kind == "seat":
            # The seat hamlet carries the village's name (尹营村 -> 尹营), reserved up front.
            name, surname = v["name"][:-1], seat_surname
        else:
            while True:
                surname = _random_surname_np(rng)
                if kind == "riverside":
                    name = surname + _NV_RIVER_SUFFIXES[rng.integers(len(_NV_RIVER_SUFFIXES))]
                elif rng.random() < 0.3:
                    name = _DIRECTIONS[rng.integers(len(_DIRECTIONS))] + surname
                elif rng.random() < 0.15:
                    name = surname + "家" + _NV_SUFFIXES[rng.integers(len(_NV_SUFFIXES))]
                else:
                    name = surname + _NV_SUFFIXES[rng.integers(len(_NV_SUFFIXES))]
                if (
                    name not in used
                    and name + "村" not in _OTHER_VILLAGES + LOW_LYING_VILLAGES + _HILL_VILLAGES
                ):
                    break
        if kind != "seat":
            used.append(name)
        out.append({"name": name, "xy": xy, "kind": kind, "surname": surname})
    return out


def _hand_between(terrain: _Terrain, xy: np.ndarray, low: float, high: float) -> np.ndarray:
    """Height above the river within [low, high], measured as a flood analysis would (see
    `_Terrain.height_above_river`); the raster estimate (within ~0.5 m) settles clear cases."""
    rough = terrain.at("hand", xy)
    ok = (rough >= low - 1.0) & (rough <= high + 1.0)
    unsure = ok & ((rough < low + 1.0) | (rough > high - 1.0))
    if unsure.any():
        exact = terrain.height_above_river(xy[unsure])
        ok[unsure] = (exact >= low) & (exact <= high)
    return ok


def _on_floodplain(terrain: _Terrain, poly: Any, xy: np.ndarray) -> np.ndarray:
    ok: np.ndarray = shapely.contains_xy(poly, xy[:, 0], xy[:, 1]) & (terrain.at("dist", xy) >= 40.0)
    ok[ok] = _hand_between(terrain, xy[ok], 0.7, FLOODPLAIN_MAX_HAND - 0.1)
    return ok


def _random_surname_np(rng: np.random.Generator) -> str:
    p = np.array(_SURNAME_WEIGHTS)
    return _SURNAMES[rng.choice(len(_SURNAMES), p=p / p.sum())]


def _cluster(
    rng: np.random.Generator, centre: Any, sigma: float, n: int, accept: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """`n` points around `centre`, Gaussian, keeping those `accept` allows; widens if starved."""
    got = np.empty((0, 2))
    tries = 0
    while len(got) < n:
        batch = max(64, 4 * (n - len(got)))
        xy = np.round(centre + rng.normal(0.0, sigma, size=(batch, 2)), 2)
        got = np.vstack([got, xy[accept(xy)]])
        tries += 1
        if tries % 4 == 0:
            sigma *= 1.25
        if tries > 200:
            raise RuntimeError("could not place households around a settlement")
    return got[:n]


def _place_households(rng: np.random.Generator, v: dict[str, Any], n: int, flood: int, terrain: _Terrain) -> None:
    """`n` households of village `v` around its natural villages, `flood` of them on the
    floodplain below the riverside hamlet; all others on ground that stays dry."""
    poly = v["geom"]
    shapely.prepare(poly)
    nvs = v["nvs"]
    weights = [1.6 if nv["kind"] == "seat" else rng.uniform(0.6, 1.4) for nv in nvs]
    quotas = _largest_remainder(weights, n, minimum=max(15, flood + 10 if v["low"] else 15))
    min_hand = LOW_VILLAGE_MIN_HAND if v["low"] else OTHER_VILLAGE_MIN_HAND
    min_dist = 40.0 if v["low"] else 100.0

    def dry(xy: np.ndarray) -> np.ndarray:
        ok: np.ndarray = shapely.contains_xy(poly, xy[:, 0], xy[:, 1]) & (terrain.at("dist", xy) >= min_dist)
        ok[ok] = _hand_between(terrain, xy[ok], min_hand, np.inf)
        return ok

    xy_all, nv_index = [], []
    for j, (nv, q) in enumerate(zip(nvs, quotas, strict=True)):
        q = int(q)
        sigma = max(40.0, 8.5 * math.sqrt(q))
        centre = np.asarray(nv["xy"], dtype=float)
        if nv["kind"] == "riverside" and flood:
            # The lower houses of the riverside hamlet stand on the floodplain below it.
            for radius in (250.0, 400.0, 700.0, 1200.0):
                disc = np.round(centre + rng.uniform(-radius, radius, size=(3000, 2)), 2)
                disc = disc[_on_floodplain(terrain, poly, disc)]
                if len(disc) >= 4 * flood:
                    break
            if len(disc) < flood:
                raise RuntimeError(f"not enough floodplain in {v['name']}")
            pick = disc[np.argsort(((disc - centre) ** 2).sum(1), kind="stable")[: 3 * flood]]
            pts = pick[rng.choice(len(pick), size=flood, replace=False)]
            xy_all.append(pts)
            nv_index += [j] * flood
            q -= flood
        pts = _cluster(rng, centre, sigma, q, dry)
        xy_all.append(pts)
        nv_index += [j] * q
    v["hh_xy"] = np.vstack(xy_all)
    v["hh_nv"] = np.array(nv_index)


# ----------------------------------------------------------------------------- grids


def _make_grids(rng: np.random.Generator, v: dict[str, Any], k: int) -> None:
    """Group grids of a village: k-means clusters of its households (each natural village gets
    at least one), refined over the whole village, then Voronoi cells clipped to the village."""
    xy, nv_of = v["hh_xy"], v["hh_nv"]
    n_nv = len(v["nvs"])
    per_nv = np.ones(n_nv, dtype=int) + _largest_remainder(
        np.bincount(nv_of, minlength=n_nv), k - n_nv
    )
    init = []
    for j in range(n_nv):
        pts = xy[nv_of == j]
        kj = int(min(per_nv[j], len(pts)))
        # k-means++ likes to start on an outlying house and keep a one-house cluster: take the
        # most even of a few starts.
        best: tuple[int, np.ndarray] | None = None
        for _ in range(8):
            c, lab = _kmeans(pts, kj, rng)
            smallest = int(np.bincount(lab, minlength=kj).min())
            if best is None or smallest > best[0]:
                best = (smallest, c)
            if smallest >= 0.4 * len(pts) / kj:
                break
        if best is None:
            raise RuntimeError("no k-means start")
        init.append(best[1])
    centres, labels = _kmeans(xy, k, rng, iters=300, init=np.vstack(init))
    polys = _tile(v["geom"], centres, members=(xy, labels))

    order = _order(polys, v["geom"])
    grids = []
    for number, i in enumerate(order, start=1):
        grids.append(
            {
                "code": group_code(v["code"], number),
                "number": number,
                "name": f"{v['name']}第{_cn_number(number)}网格",
                "geom": polys[i],
            }
        )
    tree = shapely.STRtree([g["geom"] for g in grids])
    pts = shapely.points(xy)
    hits_pt, hits_grid = tree.query(pts, predicate="within")
    owner = np.full(len(xy), -1)
    counts = np.bincount(hits_pt, minlength=len(xy))
    owner[hits_pt] = hits_grid
    rank = np.empty(k, dtype=int)
    rank[order] = np.arange(k)
    for i in np.flatnonzero(counts != 1):
        # A household exactly on a boundary is moved half a metre into its own cluster's grid.
        owner[i] = rank[labels[i]]
        inner = np.array(shapely.point_on_surface(grids[owner[i]]["geom"]).coords[0])
        step = inner - xy[i]
        xy[i] = np.round(xy[i] + 0.5 * step / max(1.0, float(np.hypot(*step))), 2)
        if not shapely.contains_xy(grids[owner[i]]["geom"], *xy[i]):
            raise RuntimeError("household on a grid boundary could not be placed")
    if np.bincount(owner, minlength=k).min() == 0:
        raise RuntimeError(f"a group grid of {v['name']} has no household")
    v["grids"] = grids
    v["hh_grid"] = owner


def _off_cell_edges(xy: np.ndarray, transform: affine.Affine, gap_m: float = 0.005) -> np.ndarray:
    """Houses moved `gap_m` off any DEM cell edge they sit on, into the cell they are sampled in.

    Houses lie on a 1 cm lattice, so about one in 500 sits exactly on an edge of the 10 m DEM
    cells; which cell holds it, and whether a flood polygon holds it, then rests on the last bits
    of coordinate transforms, which differ between maths libraries (machines). Off the edges, the
    town floods the same everywhere; the sampled cell (and so every HAND check) is unchanged."""
    out = np.array(xy, dtype=float)
    for axis, pos, sign in ((0, (out[:, 0] - transform.c) / DEM_CELL, 1.0),
                            (1, (transform.f - out[:, 1]) / DEM_CELL, -1.0)):
        on_edge = np.abs(pos - np.round(pos)) * DEM_CELL < gap_m / 2
        towards = np.where(np.floor(pos) + 0.5 > pos, 1.0, -1.0)  # the sampled cell's centre
        out[on_edge, axis] += sign * towards[on_edge] * gap_m
    return out


# ----------------------------------------------------------------------------- people


def _make_people(
    rng: np.random.Generator, villages: list[dict[str, Any]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    n_households = sum(len(v["hh_xy"]) for v in villages)
    p = np.array([0.12, 0.22, 0.17, 0.22, 0.15, 0.08, 0.03, 0.01])
    sizes = rng.choice(np.arange(1, 9), size=n_households, p=p / p.sum())
    diff = N_RESIDENTS - int(sizes.sum())
    if diff:
        eligible = np.flatnonzero(sizes < 8) if diff > 0 else np.flatnonzero(sizes > 1)
        sizes[rng.choice(eligible, size=abs(diff), replace=False)] += 1 if diff > 0 else -1
    floors = rng.choice([1, 2, 3], size=n_households, p=[0.45, 0.45, 0.10])
    phones = _phones(rng, n_households)
    rnd = random.Random(int(rng.integers(2**62)))

    hh_rows: list[dict[str, Any]] = []
    people: list[tuple[Any, ...]] = []
    h = 0
    for v in villages:
        xy = v["hh_xy"]
        # Households are numbered by group, then along rows of houses (reading order, 60 m rows).
        seq = 0
        for gi, g in enumerate(v["grids"]):
            idx = np.flatnonzero(v["hh_grid"] == gi)
            sub = idx[reading_order(xy[idx, 0], xy[idx, 1], 60.0)]
            for house, i in enumerate(sub, start=1):
                seq += 1
                nv = v["nvs"][v["hh_nv"][i]]
                surname = nv["surname"] if rnd.random() < 0.55 else _random_surname(rnd)
                members = _household_members(rnd, int(sizes[h]), surname)
                no = f"{v['code']}{seq:04d}"
                hh_rows.append(
                    {
                        "household_no": no,
                        "address": f"{v['name']}{_cn_number(g['number'])}组{house}号",
                        "head_name": members[0][0],
                        "phone": phones[h],
                        "residents": len(members),
                        "floors": int(floors[h]),
                        "natural_village": nv["name"],
                        "grid_code": g["code"],
                        "_xy": xy[i],
                    }
                )
                for name, gender, relation, age in members:
                    people.append((no, name, gender, relation, age))
                h += 1

    res = pd.DataFrame(
        people, columns=["household_no", "name", "gender", "relation_to_head", "age"]
    )
    age = res["age"].to_numpy()
    male = (res["gender"] == "男").to_numpy()
    day = rng.integers(0, 365, size=len(res))
    birth = [
        date(REFERENCE_DATE.year - int(a) - 1, REFERENCE_DATE.month, REFERENCE_DATE.day)
        + timedelta(days=int(d) + 1)
        for a, d in zip(age.tolist(), day.tolist(), strict=True)
    ]
    # Disability and bedridden people are mostly old; pregnancy only among women of 20-40.
    u = rng.random((3, len(res)))
    disabled = u[0] < np.where(age >= 65, 0.06, 0.018)
    bedridden = u[1] < np.where(age >= 75, 0.08, np.where(age >= 60, 0.015, 0.001))
    pregnant = (
        (~male)
        & (age >= 20)
        & (age <= 40)
        & (u[2] < 0.035)
        & (res["relation_to_head"] != "父母").to_numpy()
    )
    residents = pd.DataFrame(
        {
            "household_no": res["household_no"],
            "name": res["name"],
            "gender": res["gender"],
            "birth_date": pd.Series(birth, dtype=object),
            "id_number": _id_numbers(birth, male),
            "relation_to_head": res["relation_to_head"],
            "is_disabled": disabled,
            "is_pregnant": pregnant,
            "is_bedridden": bedridden,
        }
    )
    flags = (
        pd.DataFrame(
            {
                "household_no": res["household_no"],
                "elderly": age >= ELDERLY_AGE,
                "children": age < CHILD_AGE,
                "disabled": disabled,
                "pregnant": pregnant,
                "bedridden": bedridden,
            }
        )
        .groupby("household_no", sort=False)
        .sum()
    )
    hh = pd.DataFrame(hh_rows)
    flags = flags.reindex(hh["household_no"]).astype(int).reset_index(drop=True)
    hh = pd.concat([hh, flags], axis=1)
    hh = hh[
        [
            "household_no",
            "address",
            "head_name",
            "phone",
            "residents",
            "elderly",
            "children",
            "disabled",
            "pregnant",
            "bedridden",
            "floors",
            "natural_village",
            "grid_code",
            "_xy",
        ]
    ]
    return hh, residents


# ----------------------------------------------------------------------------- shelters


def _grid_at(v: dict[str, Any], xy: np.ndarray) -> str:
    for g in v["grids"]:
        if shapely.contains_xy(g["geom"], *xy):
            return str(g["code"])
    raise RuntimeError("shelter outside its village's grids")


def _high_spot(
    rng: np.random.Generator, v: dict[str, Any], centre: Any, radius: float, terrain: _Terrain, avoid: list[Any]
) -> np.ndarray:
    """The highest dry spot near `centre` inside the village, away from the other shelters."""
    poly = v["geom"]
    for r in (radius, radius * 1.5, radius * 2.5, 1e9):
        pts = np.round(centre + rng.uniform(-r, r, size=(400, 2)), 2)
        inside = shapely.contains_xy(poly, pts[:, 0], pts[:, 1])
        inside &= shapely.distance(poly.exterior, shapely.points(pts)) >= 30.0
        inside &= terrain.at("hand", pts) >= (4.0 if v["low"] else 6.0)
        for other in avoid:
            inside &= ((pts - other) ** 2).sum(1) >= 120.0**2
        if inside.any():
            pts = pts[inside]
            highest: np.ndarray = pts[np.argmax(terrain.at("dem", pts))]
            return highest
    raise RuntimeError(f"no high ground for a shelter in {v['name']}")


def _make_shelters(rng: np.random.Generator, villages: list[dict[str, Any]], terrain: _Terrain) -> list[dict[str, Any]]:
    shelters: list[dict[str, Any]] = []
    taken: list[np.ndarray] = []

    def add(v: dict[str, Any], name: str, kind: str, capacity: int, xy: np.ndarray) -> None:
        taken.append(xy)
        shelters.append(
            {
                "name": name,
                "kind": kind,
                "capacity": int(capacity),
                "xy": xy,
                "grid_code": _grid_at(v, xy),
            }
        )

    for v in villages:
        short = v["name"][:-1]
        seat = np.asarray(v["nvs"][0]["xy"], dtype=float)
        if v["seat"]:
            add(
                v,
                f"{TOWN_NAME[:3]}人民政府",
                "镇政府",
                800,
                _high_spot(rng, v, seat, 250.0, terrain, taken),
            )
            add(
                v,
                f"{TOWN_NAME[:3]}第一初级中学",
                "学校",
                1500,
                _high_spot(rng, v, seat, 600.0, terrain, taken),
            )
            add(
                v,
                f"{TOWN_NAME[:3]}中心小学",
                "学校",
                1200,
                _high_spot(rng, v, seat, 600.0, terrain, taken),
            )
        add(
            v,
            f"{v['name']}村委会",
            "村委会",
            int(rng.integers(15, 41)) * 10,
            _high_spot(rng, v, seat, 300.0, terrain, taken),
        )
        n_hh = len(v["hh_xy"])
        if v["low"] or n_hh > 850 or rng.random() < 0.4:
            add(
                v,
                f"{short}小学",
                "学校",
                int(rng.integers(40, 91)) * 10,
                _high_spot(rng, v, seat, 700.0, terrain, taken),
            )
        if v["low"] or rng.random() < 0.5:
            biggest = max(range(len(v["nvs"])), key=lambda j: int((v["hh_nv"] == j).sum()))
            centre = np.asarray(v["nvs"][biggest]["xy"], dtype=float)
            add(
                v,
                f"{v['name']}文化广场",
                "文化广场",
                int(rng.integers(30, 81)) * 10,
                _high_spot(rng, v, centre, 400.0, terrain, taken),
            )
    return shelters


# ----------------------------------------------------------------------------- roads


def _make_roads(
    rng: np.random.Generator,
    town: Any,
    river: Any,
    villages: list[dict[str, Any]],
    shelters: list[dict[str, Any]],
    centre: Any,
) -> list[dict[str, Any]]:
    """County road through the town seat, township roads to every village seat, village roads to
    every natural village: shortest paths over one Delaunay graph, so roads only meet at nodes."""
    nodes: list[np.ndarray] = []
    node_village: list[dict[str, Any] | None] = []
    seat_nodes: list[int] = []
    town_seat = -1
    for v in villages:
        for nv in v["nvs"]:
            if nv["kind"] == "seat":
                seat_nodes.append(len(nodes))
                if v["seat"]:
                    town_seat = len(nodes)
            nodes.append(np.asarray(nv["xy"], dtype=float))
            node_village.append(v)
    # The county road runs north-east towards the county seat and south-west out of the town.
    ends = []
    for bearing in (40.0, 220.0):
        far = np.array(centre) + 30000.0 * np.array(
            [math.sin(math.radians(bearing)), math.cos(math.radians(bearing))]
        )
        hit = shapely.intersection(shapely.LineString([centre, far]), town.exterior)
        pts = shapely.get_coordinates(hit)
        ends.append(len(nodes))
        nodes.append(np.round(pts[np.argmin(((pts - centre) ** 2).sum(1))], 2))
        node_village.append(None)
    xy = np.array(nodes)
    n = len(xy)

    tri = Delaunay(xy)
    pairs = np.vstack(
        [tri.simplices[:, [0, 1]], tri.simplices[:, [1, 2]], tri.simplices[:, [0, 2]]]
    )
    pairs = np.unique(np.sort(pairs, axis=1), axis=0)
    area = town.buffer(30.0)
    shapely.prepare(area)
    lines = shapely.linestrings(np.stack([xy[pairs[:, 0]], xy[pairs[:, 1]]], axis=1))
    length = shapely.length(lines)
    ok = shapely.contains(area, lines) & (length < 4000.0)
    crosses = shapely.intersects(lines, river)
    # Bridges are expensive: roads cross the river only where they have to.
    cost = length * np.where(crosses, 3.0, 1.0)

    def graph(mask: np.ndarray) -> Any:
        m = coo_matrix((cost[mask], (pairs[mask, 0], pairs[mask, 1])), shape=(n, n)).tocsr()
        return m + m.T

    if connected_components(graph(ok), directed=False)[0] != 1:
        ok = length < 4000.0
    g = graph(ok)

    edges: dict[tuple[int, int], tuple[str, str]] = {}
    network: list[int] = []

    def path(a: int, targets: list[int]) -> list[int]:
        dist, pred = dijkstra(g, directed=False, indices=a, return_predecessors=True)
        t = min(targets, key=lambda t: dist[t])
        if not np.isfinite(dist[t]):
            raise RuntimeError("road graph is not connected")
        out = [t]
        while out[-1] != a:
            out.append(int(pred[out[-1]]))
        return out[::-1]

    def add_path(p: list[int], cls: str, name: str) -> None:
        for a, b in zip(p[:-1], p[1:], strict=True):
            key = (min(a, b), max(a, b))
            edges.setdefault(key, (cls, name))
        for node in p:
            if node not in network:
                network.append(node)

    add_path(path(ends[0], [town_seat]), "县道", COUNTY_ROAD_NAME)
    add_path(path(town_seat, [ends[1]]), "县道", COUNTY_ROAD_NAME)

    def by_distance(items: Iterable[int]) -> list[int]:
        return sorted(items, key=lambda i: float(np.hypot(*(xy[i] - xy[town_seat]))))

    def village_of(node: int) -> dict[str, Any]:
        v = node_village[node]
        if v is None:
            raise RuntimeError(f"road node {node} is no settlement")
        return v

    road_no = 101
    for s in by_distance(seat_nodes):
        if s in network:
            continue
        add_path(path(s, list(network)), "乡道", f"Y{road_no}{village_of(s)['name'][:-1]}线")
        road_no += 1
    village_road_no: dict[str, int] = {}

    def village_road_name(v: dict[str, Any]) -> str:
        village_road_no[v["name"]] = village_road_no.get(v["name"], 0) + 1
        return f"{v['name']}村道{village_road_no[v['name']]}"

    for s in by_distance(range(n)):
        if s in network:
            continue
        add_path(path(s, list(network)), "村道", village_road_name(village_of(s)))
    # A few short links between neighbouring settlements give the network its loops.
    spare = [
        int(i)
        for i in np.argsort(length)
        if ok[i] and not crosses[i] and (int(pairs[i, 0]), int(pairs[i, 1])) not in edges
    ]
    spare = [
        i
        for i in spare
        if node_village[pairs[i, 0]] is not None and node_village[pairs[i, 1]] is not None
    ]
    for i in spare[:12]:
        a, b = int(pairs[i, 0]), int(pairs[i, 1])
        edges[(a, b)] = ("村道", village_road_name(village_of(a)))

    roads = []
    for (a, b), (cls, name) in edges.items():
        roads.append({"name": name, "road_class": cls, "geom": _bent(rng, xy[a], xy[b])})
    # Each shelter hangs off the nearest settlement of the network.
    net_xy = xy[network]
    for shelter in shelters:
        j = int(np.argmin(((net_xy - shelter["xy"]) ** 2).sum(1)))
        if np.hypot(*(net_xy[j] - shelter["xy"])) < 1.0:
            continue
        roads.append(
            {
                "name": f"{shelter['name']}连接路",
                "road_class": "村道",
                "geom": _bent(rng, net_xy[j], shelter["xy"]),
            }
        )
    return roads


def _bent(rng: np.random.Generator, a: npt.ArrayLike, b: npt.ArrayLike) -> Any:
    """A road between two nodes with a slight bend, endpoints exactly the nodes."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = b - a
    normal = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-9)
    mid = (a + b) / 2.0 + normal * min(40.0, 0.04 * np.hypot(*d)) * rng.uniform(-1.0, 1.0)
    return shapely.LineString([a, np.round(mid, 2), b])


# ----------------------------------------------------------------------------- staff


def _make_staff(
    rng: np.random.Generator, villages: list[dict[str, Any]], households: pd.DataFrame
) -> pd.DataFrame:
    rnd = random.Random(int(rng.integers(2**62)))

    def person() -> str:
        gender = "男" if rnd.random() < 0.7 else "女"
        return _random_surname(rnd) + _name_parts(rnd, gender, rnd.randint(1962, 1998))

    rows: list[tuple[Any, ...]] = []
    rows.append(("grid_leader", TOWN_CODE, None))
    for a in range(N_AREAS):
        rows.append(("grid_leader", area_code(TOWN_CODE, a + 1), None))
    for v in villages:
        rows.append(("grid_leader", v["code"], None))
    level4 = [g for v in villages for g in v["grids"]]
    for g in level4:
        rows.append(("grid_leader", g["code"], None))

    hh_per_grid = (
        households.groupby("grid_code", sort=False)
        .size()
        .reindex([g["code"] for g in level4])
        .to_numpy()
    )
    members = _largest_remainder(hh_per_grid, N_GRID_MEMBERS, minimum=1)
    for g, m in zip(level4, members, strict=True):
        rows.extend(("grid_member", g["code"], None) for _ in range(int(m)))

    party = _largest_remainder(hh_per_grid, N_PARTY_HOUSEHOLDS, minimum=1)
    by_grid = households.groupby("grid_code", sort=False).indices
    party_rows = []
    for g, m in zip(level4, party, strict=True):
        idx = by_grid[g["code"]]
        for i in np.sort(rng.choice(idx, size=int(m), replace=False)):
            party_rows.append(
                ("party_household", g["code"], households.at[int(i), "household_no"], int(i))
            )

    for v in villages:
        rows.append(("supervisor", v["code"], None))

    phones = _phones(rng, len(rows), exclude=frozenset(households["phone"]))
    out = [
        {"name": person(), "phone": ph, "role": role, "grid_code": code, "household_no": hno}
        for (role, code, hno), ph in zip(rows, phones, strict=True)
    ]
    # Party-member central households are households of the grid: their head is the contact.
    party_out = [
        {
            "name": households.at[i, "head_name"],
            "phone": households.at[i, "phone"],
            "role": role,
            "grid_code": code,
            "household_no": hno,
        }
        for role, code, hno, i in party_rows
    ]
    order = {"grid_leader": 0, "grid_member": 1, "party_household": 2, "supervisor": 3}
    frame = pd.DataFrame(out + party_out)
    frame["_o"] = frame["role"].map(order)
    frame = frame.sort_values(["_o"], kind="stable").drop(columns="_o").reset_index(drop=True)
    frame["household_no"] = (
        frame["household_no"].astype(object).where(frame["household_no"].notna(), None)
    )
    return frame


# ----------------------------------------------------------------------------- writers


def _round_coords(coords: Any) -> list[Any]:
    out: list[Any] = []
    for x, y in coords:
        c = [round(float(x), 7), round(float(y), 7)]
        if not out or out[-1] != c:
            out.append(c)
    return out


def _geojson_geometry(geom: Any) -> dict[str, Any]:
    kind = geom.geom_type
    if kind == "Point":
        return {"type": "Point", "coordinates": _round_coords(geom.coords)[0]}
    if kind == "LineString":
        return {"type": "LineString", "coordinates": _round_coords(geom.coords)}
    if kind in ("Polygon", "MultiPolygon"):
        polys = []
        # RFC 7946: exterior rings counter-clockwise, holes clockwise.
        for p in shapely.get_parts(shapely.orient_polygons(geom, exterior_cw=False)):
            rings = [_round_coords(p.exterior.coords)] + [
                _round_coords(r.coords) for r in p.interiors
            ]
            polys.append([r for r in rings if len(r) >= 4])
        return {"type": "MultiPolygon", "coordinates": polys}
    raise ValueError(f"unsupported geometry {kind}")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _write_geojson(frame: gpd.GeoDataFrame, columns: list[str], layer: str, path: Path) -> Path:
    features = []
    for row, geom in zip(frame[columns].itertuples(index=False), frame.geometry, strict=True):
        features.append(
            {
                "type": "Feature",
                "properties": {c: _plain(v) for c, v in zip(columns, row, strict=True)},
                "geometry": _geojson_geometry(geom),
            }
        )
    doc = {
        "type": "FeatureCollection",
        "name": layer,
        "description": SYNTHETIC_NOTICE,
        "features": features,
    }
    path.write_bytes(
        (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
    )
    return path


def write_boundaries(town: SampleTown, directory: Path) -> list[Path]:
    """Write one RFC 7946 GeoJSON per grid level plus rivers, roads and shelters; byte-for-byte
    the same for the same town."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    grids = town.grids.to_crs("EPSG:4326")
    cols = ["code", "name", "level", "parent_code"]
    paths = []
    for level, layer in ((1, "town"), (2, "areas"), (3, "villages"), (4, "grids")):
        part = grids[grids["level"] == level].sort_values("code", kind="stable")
        paths.append(_write_geojson(part, cols, layer, directory / f"{layer}.geojson"))
    paths.append(
        _write_geojson(
            town.rivers.to_crs("EPSG:4326"), ["name"], "rivers", directory / "rivers.geojson"
        )
    )
    paths.append(
        _write_geojson(
            town.roads.to_crs("EPSG:4326"),
            ["name", "road_class"],
            "roads",
            directory / "roads.geojson",
        )
    )
    paths.append(
        _write_geojson(
            town.shelters.to_crs("EPSG:4326"),
            ["name", "kind", "capacity", "grid_code"],
            "shelters",
            directory / "shelters.geojson",
        )
    )
    return paths


def write_dem(town: SampleTown, path: Path) -> Path:
    """Write the DEM as a deflate-compressed GeoTIFF in METRIC_CRS, tagged as synthetic."""
    import rasterio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dem = np.where(np.isfinite(town.dem), town.dem, DEM_NODATA).astype(np.float32)
    profile = {
        "driver": "GTiff",
        "dtype": "float32",
        "width": dem.shape[1],
        "height": dem.shape[0],
        "count": 1,
        "crs": town.dem_crs,
        "transform": town.dem_transform,
        "nodata": DEM_NODATA,
        "compress": "deflate",
        "predictor": 3,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dem, 1)
        dst.update_tags(
            SYNTHETIC="true", NOTICE=SYNTHETIC_NOTICE, TOWN_CODE=TOWN_CODE, UNITS="metre"
        )
        dst.set_band_description(1, "elevation (m), synthetic")
    return path
