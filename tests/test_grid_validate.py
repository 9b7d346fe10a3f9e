"""Tests for gis.grids.validate: each hierarchy rule on a small synthetic town, and speed."""

from __future__ import annotations

import time

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, box

from gis.codes import area_code, group_code, village_code
from gis.crs import metric_transformer
from gis.grids.io import read_grid_file
from gis.grids.validate import validate_grids

TOWN = "411324105000000"
X = (112.15, 112.16, 112.17, 112.18, 112.19)
Y = (32.95, 32.97, 32.99)


def frame(rows) -> gpd.GeoDataFrame:
    """The shape read_grid_file returns, from (code, name, level, parent, geometry) tuples."""
    return gpd.GeoDataFrame(
        {
            "code": pd.Series([r[0] for r in rows], dtype=object),
            "name": pd.Series([r[1] for r in rows], dtype=object),
            "level": pd.Series([r[2] for r in rows], dtype="int64"),
            "parent_code": pd.Series([r[3] for r in rows], dtype=object),
            "row": pd.Series(range(1, len(rows) + 1), dtype="int64"),
        },
        geometry=[
            g if isinstance(g, MultiPolygon) else MultiPolygon([g]) for g in (r[4] for r in rows)
        ],
        crs="EPSG:4326",
    )


def hierarchy_rows() -> list[list]:
    """Town around 112.17E 32.97N: 2 areas (west/east), 4 villages, 8 grids; rows 1..15."""
    x0, x1, x2, x3, x4 = X
    y0, y1, y2 = Y
    rows = [[TOWN, "杨营镇", 1, None, box(x0, y0, x4, y2)]]
    rows += [
        ["411324105901000", "西片区", 2, TOWN, box(x0, y0, x2, y2)],
        ["411324105902000", "东片区", 2, TOWN, box(x2, y0, x4, y2)],
    ]
    villages = [
        ("411324105001000", "411324105901000", (x0, y1, x2, y2)),
        ("411324105002000", "411324105902000", (x2, y1, x4, y2)),
        ("411324105003000", "411324105901000", (x0, y0, x2, y1)),
        ("411324105004000", "411324105902000", (x2, y0, x4, y1)),
    ]
    for code, parent, (a, b, c, d) in villages:
        mid = (a + c) / 2
        rows.append([code, f"村{code[9:12]}", 3, parent, box(a, b, c, d)])
        rows.append([code[:12] + "001", "一组", 4, code, box(a, b, mid, d)])
        rows.append([code[:12] + "002", "二组", 4, code, box(mid, b, c, d)])
    return rows


def row_of(rows, code) -> int:
    return next(i for i, r in enumerate(rows) if r[0] == code) + 1


def metric_area(geom) -> float:
    tr = metric_transformer("EPSG:4546")
    return shapely.transform(geom, lambda x, y: tr.transform(x, y), interleaved=False).area


def only(problems, type_):
    found = [p for p in problems if p.type == type_]
    assert found, f"no {type_} problem in {problems}"
    return found


# --- the clean case ------------------------------------------------------------------------


def test_clean_hierarchy_has_no_problems():
    assert validate_grids(frame(hierarchy_rows())) == []


def test_empty_input():
    assert validate_grids(frame([])) == []


def test_touching_siblings_within_float_noise_are_fine():
    rows = hierarchy_rows()
    # A shared edge digitised twice with ~0.1 mm disagreement is not an overlap or a gap.
    a, b, c, d = rows[3][4].bounds
    rows[4][4] = box(a, b, 112.16 + 1e-9, d)
    assert validate_grids(frame(rows)) == []


# --- single broken rules -----------------------------------------------------------------------


def test_overlap_between_siblings():
    rows = hierarchy_rows()
    r = row_of(rows, "411324105001002")
    a, b, c, d = rows[r - 1][4].bounds
    rows[r - 1][4] = box(a - 0.002, b, c, d)  # pushes 200 m west into grid 001
    problems = validate_grids(frame(rows))
    assert {p.type for p in problems} == {"overlap"}
    (p,) = problems
    assert p.loc == ("features", r, "geometry")
    assert p.ctx["other_code"] == "411324105001001"
    assert "411324105001001" in p.msg and "411324105001002" in p.msg
    expected = metric_area(box(a - 0.002, b, a, d))
    assert p.ctx["area_m2"] == pytest.approx(expected, rel=1e-3)
    assert a - 0.002 < p.ctx["lon"] < a and b < p.ctx["lat"] < d


def test_gap_inside_parent():
    rows = hierarchy_rows()
    r = row_of(rows, "411324105004002")
    a, b, c, d = rows[r - 1][4].bounds
    rows[r - 1][4] = box(a, b + 0.003, c, d)  # leaves the southern 300 m strip uncovered
    problems = validate_grids(frame(rows))
    assert {p.type for p in problems} == {"gap"}
    (p,) = problems
    village_row = row_of(rows, "411324105004000")
    assert p.loc == ("features", village_row, "geometry")
    assert p.ctx["parent_code"] == "411324105004000"
    assert p.ctx["area_m2"] == pytest.approx(metric_area(box(a, b, c, b + 0.003)), rel=1e-3)
    assert a < p.ctx["lon"] < c and b < p.ctx["lat"] < b + 0.003


def test_gap_below_tolerance_is_ignored():
    rows = hierarchy_rows()
    a, b, c, d = rows[-1][4].bounds
    rows[-1][4] = box(a, b + 1e-6, c, d)  # ~0.1 m strip, about 100 m²
    assert [p.type for p in validate_grids(frame(rows))] == ["gap"]
    assert validate_grids(frame(rows), gap_tolerance_m2=500) == []


def test_child_outside_parent():
    rows = hierarchy_rows()
    r = row_of(rows, "411324105001001")
    a, b, c, d = rows[r - 1][4].bounds
    rows[r - 1][4] = box(a, b, c, d + 0.001)  # 110 m north of its village and of the town
    problems = validate_grids(frame(rows))
    assert {p.type for p in problems} == {"outside_parent"}
    (p,) = problems
    assert p.loc == ("features", r, "geometry")
    assert p.ctx["other_code"] == "411324105001000"
    assert p.ctx["area_m2"] == pytest.approx(metric_area(box(a, d, c, d + 0.001)), rel=1e-3)
    assert "m²" in p.msg


def test_bow_tie_ring_is_invalid_with_location():
    rows = hierarchy_rows()
    r = row_of(rows, "411324105003001")
    a, b, c, d = rows[r - 1][4].bounds
    rows[r - 1][4] = Polygon([(a, b), (c, d), (c, b), (a, d), (a, b)])
    problems = validate_grids(frame(rows))
    (p,) = only(problems, "invalid_geometry")
    assert p.loc == ("features", r, "geometry")
    assert "Self-intersection" in p.msg
    assert p.ctx["lon"] == pytest.approx((a + c) / 2) and p.ctx["lat"] == pytest.approx((b + d) / 2)
    # Checking goes on with a repaired shape: the two triangles leave their village half-covered.
    assert only(problems, "gap")[0].ctx["parent_code"] == "411324105003000"


def test_empty_geometry():
    rows = hierarchy_rows()
    r = row_of(rows, "411324105002002")
    rows[r - 1][4] = MultiPolygon()
    problems = validate_grids(frame(rows))
    assert only(problems, "empty_geometry")[0].loc == ("features", r, "geometry")
    assert only(problems, "gap")[0].ctx["parent_code"] == "411324105002000"


def test_duplicate_code_names_both_rows():
    rows = hierarchy_rows()
    r = row_of(rows, "411324105001002")
    rows[r - 1][0] = "411324105001001"
    problems = validate_grids(frame(rows))
    assert [p.type for p in problems] == ["duplicate_code"]
    (p,) = problems
    first = row_of(rows, "411324105001001")
    assert p.loc == ("features", r, "code")
    assert p.ctx["other_row"] == first
    assert f"rows {first} and {r}" in p.msg


def test_bad_code_for_level():
    rows = hierarchy_rows()
    r = row_of(rows, "411324105002001")
    rows[r - 1][2] = 3  # a group code claimed to be a village
    problems = validate_grids(frame(rows))
    (p,) = only(problems, "bad_code")
    assert p.loc == ("features", r, "code")
    assert "village" in p.msg


def test_malformed_code():
    rows = hierarchy_rows()
    rows[5][0] = "41132410500100"  # 14 digits
    (p,) = only(validate_grids(frame(rows)), "bad_code")
    assert p.loc == ("features", 6, "code") and "15 digits" in p.msg


def test_unknown_parent():
    rows = hierarchy_rows()
    r = row_of(rows, "411324105004000")
    rows[r - 1][3] = "411324105903000"  # no such area
    problems = validate_grids(frame(rows))
    (p,) = only(problems, "bad_parent")
    assert p.loc == ("features", r, "parent_code")
    assert "411324105903000" in p.msg and "not in the file" in p.msg


def test_parent_from_another_township():
    rows = hierarchy_rows()
    rows[1][3] = "411324106000000"
    (p,) = only(validate_grids(frame(rows)), "bad_parent")
    assert p.loc == ("features", 2, "parent_code") and "another township" in p.msg


def test_parent_with_wrong_level():
    rows = hierarchy_rows()
    v = row_of(rows, "411324105001000")
    rows[v - 1][2] = 2  # the village row claims level 2
    problems = validate_grids(frame(rows))
    assert only(problems, "bad_code")[0].loc == ("features", v, "code")
    child_problems = [p for p in only(problems, "bad_parent") if "level-2 grid" in p.msg]
    assert {p.loc[1] for p in child_problems} == {v + 1, v + 2}


def test_town_with_a_parent_is_refused():
    rows = hierarchy_rows()
    rows[0][3] = "411324000000000"
    (p,) = only(validate_grids(frame(rows)), "bad_parent")
    assert p.loc == ("features", 1, "parent_code")


# --- several problems, and the file path ------------------------------------------------------


def test_file_with_several_problems_reports_all(tmp_path):
    rows = hierarchy_rows()
    x0, x1, x2, x3, x4 = X
    y0, y1, y2 = Y
    rows[row_of(rows, "411324105001002") - 1][4] = box(x1 - 0.002, y1, x2, y2)  # overlap
    rows[row_of(rows, "411324105004002") - 1][4] = box(x3, y0 + 0.003, x4, y1)  # gap
    rows[row_of(rows, "411324105002001") - 1][4] = box(x2, y1, x3, y2 + 0.001)  # outside parent
    a, b, c, d = x0, y0, x1, y1
    rows[row_of(rows, "411324105003001") - 1][4] = Polygon(
        [(a, b), (c, d), (c, b), (a, d), (a, b)]
    )  # bow-tie
    rows[row_of(rows, "411324105003002") - 1][0] = "411324105003001"  # duplicate
    rows[row_of(rows, "411324105002002") - 1][3] = "411324105009000"  # unknown parent
    g = gpd.GeoDataFrame(
        {
            k: pd.Series([r[i] for r in rows], dtype=object)
            for i, k in enumerate(["code", "name", "level", "parent_code"])
        },
        geometry=[r[4] for r in rows],
        crs=4326,
    )
    p = tmp_path / "broken.geojson"
    g.to_file(p, driver="GeoJSON", engine="pyogrio")
    problems = validate_grids(read_grid_file(p))
    got = {(q.type, q.loc[1]) for q in problems}
    expected = {
        ("overlap", 6),
        ("gap", 13),  # village 004 is not covered by its children
        ("outside_parent", 8),
        ("invalid_geometry", 11),
        ("duplicate_code", 12),
        ("bad_parent", 9),
    }
    assert expected <= got
    rows_seen = [q.loc[1] for q in problems]
    assert rows_seen == sorted(rows_seen)
    # Everything is serialisable for the API.
    assert all(isinstance(q.as_dict()["loc"], list) for q in problems)


# --- stored grids ----------------------------------------------------------------------------


def split_new_current(rows, new_codes):
    new = [r for r in rows if r[0] in new_codes]
    cur = frame([r for r in rows if r[0] not in new_codes]).drop(columns=["row"])
    return frame(new), cur


def test_replacing_two_grids_checked_against_stored_ones():
    rows = hierarchy_rows()
    new, current = split_new_current(rows, {"411324105001001", "411324105001002"})
    assert validate_grids(new, current) == []


def test_stored_parent_gap_reported_on_new_child():
    rows = hierarchy_rows()
    x0, x1, x2 = X[:3]
    y1, y2 = Y[1:]
    rows[row_of(rows, "411324105001002") - 1][4] = box(x1, y1, x2 - 0.002, y2)
    new, current = split_new_current(rows, {"411324105001001", "411324105001002"})
    problems = validate_grids(new, current)
    assert [p.type for p in problems] == ["gap"]
    (p,) = problems
    assert p.ctx["parent_code"] == "411324105001000"
    assert p.loc[:2] == ("features", 2)


def test_new_grid_overlapping_stored_sibling():
    rows = hierarchy_rows()
    x1, x2, x3 = X[1:4]
    y1, y2 = Y[1:]
    rows[row_of(rows, "411324105001002") - 1][4] = box(x1 - 0.001, y1, x2, y2)
    new, current = split_new_current(rows, {"411324105001002"})
    (p,) = validate_grids(new, current)
    assert p.type == "overlap" and p.loc == ("features", 1, "geometry")
    assert p.ctx["other_code"] == "411324105001001"


def test_new_code_in_current_counts_as_replacement():
    rows = hierarchy_rows()
    new = frame([r for r in rows if r[0] == "411324105001001"])
    current = frame(rows).drop(columns=["row"])  # includes the old 001001
    assert validate_grids(new, current) == []


def test_parent_only_among_stored_grids():
    rows = hierarchy_rows()
    new, current = split_new_current(rows, {"411324105003001", "411324105003002"})
    current = current[current["code"] != "411324105003000"]
    problems = validate_grids(new, current)
    assert [p.type for p in problems] == ["bad_parent", "bad_parent"]


# --- speed ---------------------------------------------------------------------------------


def reference_town() -> gpd.GeoDataFrame:
    """1 town, 4 areas, 20 villages and 282 grids, like the reference town (307 features)."""
    x0, y0, w, h = 112.10, 32.90, 0.12, 0.10
    rows = [[TOWN, "镇", 1, None, box(x0, y0, x0 + w, y0 + h)]]
    aw = w / 4
    vh = h / 5
    n_grids = [14] * 20
    n_grids[0] = n_grids[1] = 15
    vnum = 0
    for ai in range(4):
        acode = area_code(TOWN, ai + 1)
        ax = x0 + ai * aw
        rows.append([acode, f"片区{ai + 1}", 2, TOWN, box(ax, y0, ax + aw, y0 + h)])
        for vi in range(5):
            vcode = village_code(TOWN, vnum + 1)
            vy1 = y0 + h - vi * vh
            rows.append([vcode, f"村{vnum + 1}", 3, acode, box(ax, vy1 - vh, ax + aw, vy1)])
            k = n_grids[vnum]
            # Jittered vertical strips that share exact edges, so nothing overlaps or leaves gaps.
            edges = np.linspace(ax, ax + aw, k + 1)
            wobble = np.sin(np.arange(k + 1)) * aw / k / 4
            wobble[0] = wobble[-1] = 0
            for gi in range(k):
                left = [
                    (edges[gi], vy1 - vh),
                    (edges[gi] + wobble[gi], vy1 - vh / 2),
                    (edges[gi], vy1),
                ]
                right = [
                    (edges[gi + 1], vy1),
                    (edges[gi + 1] + wobble[gi + 1], vy1 - vh / 2),
                    (edges[gi + 1], vy1 - vh),
                ]
                rows.append(
                    [group_code(vcode, gi + 1), f"{gi + 1}组", 4, vcode, Polygon(left + right)]
                )
            vnum += 1
    return frame(rows)


def test_reference_size_town_validates_fast():
    town = reference_town()
    assert len(town) == 307 and (town["level"] == 4).sum() == 282
    validate_grids(town)  # warm caches (transformers) outside the timing
    start = time.perf_counter()
    problems = validate_grids(town)
    elapsed = time.perf_counter() - start
    assert problems == []
    assert elapsed < 5.0

    # And it still finds a single fault among them.
    broken = town.copy()
    i = int(np.flatnonzero(broken["code"] == group_code(village_code(TOWN, 7), 3))[0])
    broken.loc[i, "geometry"] = MultiPolygon(
        [shapely.affinity.translate(broken.geometry.iloc[i].geoms[0], 0.0005, 0)]
    )
    types = {p.type for p in validate_grids(broken)}
    assert {"overlap", "gap"} <= types
