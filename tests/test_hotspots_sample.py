"""Hot spots on the sample town (real PostGIS): where the disputes were generated, none for uniform
incidents, guard rails, scope, and the API (JSON, GeoJSON, CSV, drill-down) and CLI around them."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import shapely
from sqlalchemy import text

from gis.auth.principal import Principal
from gis.auth.roles import Role
from gis.errors import Forbidden, InputError
from gis.hotspots import emerging, service, units
from gis.hotspots import local_indicators as stats
from gis.hotspots.service import HotspotQuery, analyse
from maps import labels

CLUSTER_VILLAGES = ("李邦相村", "尹营村")


def hot(result) -> set[str]:
    u = result.units
    return set(u.loc[u["significant"] & (u["bin"] > 0), "unit_id"])


def cold(result) -> set[str]:
    u = result.units
    return set(u.loc[u["significant"] & (u["bin"] < 0), "unit_id"])


@pytest.fixture(scope="module")
def grid_result(engine):
    from gis.db import make_sessionmaker

    with make_sessionmaker(engine)() as s:
        return analyse(s, None, HotspotQuery())


@pytest.fixture(scope="module")
def dispute_grids(engine) -> dict[str, int]:
    """Disputes per group grid, from the database."""
    with engine.connect() as c:
        return dict(
            c.execute(
                text(
                    "SELECT group_code, count(*) FROM incident WHERE category = 'dispute' "
                    "GROUP BY group_code"
                )
            ).all()
        )


@pytest.fixture(scope="module")
def cluster_codes(engine) -> set[str]:
    """Group grids of the two villages where the sample's disputes were generated."""
    with engine.connect() as c:
        return set(
            c.execute(
                text(
                    "SELECT g.code FROM grid g JOIN grid v ON v.code = g.parent_code AND v.valid_to IS NULL "
                    "WHERE g.valid_to IS NULL AND g.level = 4 AND v.name = ANY(:names)"
                ),
                {"names": list(CLUSTER_VILLAGES)},
            ).scalars()
        )


def test_sample_disputes_are_significant_hot_spots_where_they_were_generated(
    grid_result, dispute_grids, cluster_codes
):
    found = hot(grid_result)
    # The grids that hold the two clusters (李邦相村's compound, 尹营村第四网格's objectors).
    busiest = sorted(dispute_grids, key=dispute_grids.get, reverse=True)[:5]
    assert set(busiest) <= found
    names = dict(zip(grid_result.units["unit_id"], grid_result.units["name"], strict=True))
    assert any(names[c] == "尹营村第四网格" for c in found)
    assert any(names[c].startswith("李邦相村") for c in found)
    # Every hot spot is in those villages or touches one of their grids.
    neighbours = units.queen_neighbours(
        grid_result.units.to_crs(grid_result.meta["metric_crs"]).geometry.values
    )
    index = {c: i for i, c in enumerate(grid_result.units["unit_id"])}
    near = set(cluster_codes)
    for code in cluster_codes & found:
        i = index[code]
        near |= {
            grid_result.units["unit_id"].iloc[j]
            for j in neighbours.indices[neighbours.indptr[i] : neighbours.indptr[i + 1]]
        }
    assert found <= near, found - near
    assert all(grid_result.units.set_index("unit_id").loc[list(busiest), "bin"] == 3)
    assert grid_result.meta["units"] == 282 and grid_result.meta["incidents"] == sum(
        dispute_grids.values()
    )
    assert grid_result.meta["neighbours"] == {
        "rule": "queen",
        "threshold_m": None,
        "islands": 0,
        "mean": pytest.approx(grid_result.meta["neighbours"]["mean"]),
    }


def test_gi_star_on_the_sample_grids_equals_esda_with_libpysal_queen(grid_result):
    """Independent weights too: libpysal's Queen built from the grids themselves."""
    import warnings

    from esda import G_Local
    from libpysal.weights import Queen

    frame = grid_result.units.to_crs(grid_result.meta["metric_crs"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = Queen.from_dataframe(frame, use_index=False, silence_warnings=True)
        for y in (
            frame["incidents"].to_numpy(float),
            np.random.default_rng(0).gamma(1.5, 2, len(frame)),
        ):
            ref = G_Local(y, w, transform="B", star=True, permutations=0)
            nb = units.queen_neighbours(frame.geometry.values)
            assert np.abs(stats.gi_star(y, nb.indptr, nb.indices) - ref.Zs).max() < 1e-6
    assert (
        np.abs(
            frame["gi_z"].to_numpy(float)
            - G_Local(
                frame["incidents"].to_numpy(float), w, transform="B", star=True, permutations=0
            ).Zs
        ).max()
        < 1e-6
    )


def test_hexagons_find_the_same_two_places(session, cluster_codes):
    result = analyse(session, None, HotspotQuery(unit="hexagon", hex_size_m=500))
    u = result.units.set_index("unit_id")
    found = hot(result)
    assert found
    assert set(u.loc[sorted(found), "code"]) <= cluster_codes | _touching(session, cluster_codes)
    # The two busiest hexagons are hot spots at 99 %.
    busiest = u["incidents"].sort_values(ascending=False).index[:2]
    assert (u.loc[busiest, "bin"] == 3).all()
    assert result.meta["neighbours"]["rule"] == "distance_band"
    assert result.meta["neighbours"]["threshold_m"] == pytest.approx(505.0)
    assert result.meta["neighbours"]["islands"] == 0


def _touching(session, codes) -> set[str]:
    return set(
        session.execute(
            text(
                "SELECT DISTINCT b.code FROM grid a JOIN grid b ON ST_Touches(a.geom, b.geom) "
                "WHERE a.code = ANY(:c) AND a.valid_to IS NULL AND b.valid_to IS NULL AND b.level = 4"
            ),
            {"c": list(codes)},
        ).scalars()
    )


@pytest.mark.parametrize("unit", ["grid", "hexagon"])
def test_uniform_incidents_of_the_same_size_give_no_fdr_hot_spots_in_95_percent_of_seeds(
    session, unit
):
    query = HotspotQuery(unit=unit, hex_size_m=500)
    area = service._area(session, None, query)
    frame, metric, nb, _ = service._units(area, query)
    n_disputes = session.execute(
        text("SELECT count(*) FROM incident WHERE category = 'dispute'")
    ).scalar_one()
    town = shapely.union_all(metric)
    x0, y0, x1, y1 = town.bounds
    share = shapely.area(metric)
    seeds, clean = 40, 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        points = np.zeros((0, 2))
        while len(points) < n_disputes:
            xy = rng.uniform([x0, y0], [x1, y1], (4 * n_disputes, 2))
            points = np.vstack([points, xy[shapely.contains_xy(town, xy[:, 0], xy[:, 1])]])
        unit_of = units.assign_points(metric, points[:n_disputes])
        counts = np.bincount(unit_of[unit_of >= 0], minlength=len(frame)).astype(float)
        result = stats.local_statistics(
            counts,
            nb.indptr,
            nb.indices,
            permutations=0,
            counts=counts,
            share=share,
            inference=query.inference,
        )
        clean += not (result.significant & (result.gi_bin > 0)).any()
    assert clean >= 0.95 * seeds


def test_rates_per_thousand_residents_with_empirical_bayes(session, grid_result):
    result = analyse(session, None, HotspotQuery(value="rate", smoothing="eb"))
    u = result.units.set_index("unit_id")
    assert (u["residents"] > 0).all()
    assert "residents" in result.meta["decided_by"]
    raw = u["incidents"] / u["residents"] * 1000
    # Smoothing pulls rates towards the town's rate, more where fewer people live.
    town_rate = u["incidents"].sum() / u["residents"].sum() * 1000
    assert ((u["value"] - town_rate).abs() <= (raw - town_rate).abs() + 1e-9).all()
    assert hot(result) & hot(grid_result)
    total = session.execute(text("SELECT sum(residents) FROM household")).scalar_one()
    assert u["residents"].sum() == total


@pytest.mark.parametrize("category", ["environment", "livelihood"])
def test_everyday_matters_that_follow_the_households_are_no_hot_spots_as_rates(session, category):
    """The sample spreads everyday matters over households at random: per resident, no cluster."""
    result = analyse(session, None, HotspotQuery(category=category, value="rate", permutations=0))
    assert result.meta["incidents"] > 300
    assert result.meta["hot_spots"] == 0 and result.meta["cold_spots"] == 0
    # Empirical Bayes agrees so completely that every rate shrinks to the town's: said, not drawn.
    with pytest.raises(InputError) as exc:
        analyse(
            session,
            None,
            HotspotQuery(category=category, value="rate", smoothing="eb", permutations=0),
        )
    assert exc.value.problems[0].loc == ("query", "smoothing")
    assert exc.value.problems[0].type == "no_variation"


def test_empirical_bayes_estimator():
    counts = np.array([0, 1, 2, 30, 5, 0, 3], dtype=float)
    pop = np.array([10, 200, 400, 500, 1000, 50, 800], dtype=float)
    smoothed = service.empirical_bayes(counts, pop)
    b = counts.sum() / pop.sum()
    rate = counts / pop
    s2 = (pop * (rate - b) ** 2).sum() / pop.sum()
    a = s2 - b / pop.mean()
    assert np.allclose(smoothed, b + (rate - b) * a / (a + b / pop))
    # The smallest population moves most of the way to the mean rate.
    assert abs(smoothed[0] - b) < 0.5 * abs(rate[0] - b) + 1e-12


def test_emerging_categories_on_the_sample(session):
    import datetime as dt

    tz = dt.timezone(dt.timedelta(hours=8))
    result = analyse(session, None, HotspotQuery(until=dt.datetime(2024, 7, 1, tzinfo=tz)))
    u = result.units.set_index("name")
    assert result.meta["months"] == 18 and result.meta["first_month"] == "2023-01"
    # 李邦相村's compound disputes ran from 2023-03 to the end of the window: a hot category.
    compound = u[u.index.str.startswith("李邦相村") & (u["incidents"] > 30)]
    assert len(compound) >= 2
    # Hot every month from 2023-03 on: one run at the end, 16 of 18 months (< 90 %).
    assert (compound["emerging"] == "consecutive_hot").all()
    # 尹营村's road dispute ended in 2023-12: not hot in the last month, so neither new nor persistent.
    assert u.loc["尹营村第四网格", "emerging"] in ("no_pattern", "historical_hot")
    assert set(result.units["emerging"]) <= set(emerging.CATEGORIES)


def test_filters_change_what_is_counted(session, dispute_grids):
    land = analyse(session, None, HotspotQuery(dispute_kind="land"))
    n_land = session.execute(
        text("SELECT count(*) FROM incident WHERE dispute_kind = 'land'")
    ).scalar_one()
    assert land.meta["incidents"] == n_land
    village = session.execute(
        text("SELECT code FROM grid WHERE name = '李邦相村' AND valid_to IS NULL")
    ).scalar_one()
    sub = analyse(
        session, None, HotspotQuery(unit="hexagon", hex_size_m=250, grid_code=village, min_units=30)
    )
    n_village = session.execute(
        text("SELECT count(*) FROM incident WHERE category = 'dispute' AND village_code = :v"),
        {"v": village},
    ).scalar_one()
    assert sub.meta["area"] == [village]
    assert sub.meta["incidents"] + sub.meta["incidents_outside_units"] == n_village
    every = analyse(session, None, HotspotQuery(category=None, permutations=0, emerging=False))
    assert (
        every.meta["incidents"]
        == session.execute(text("SELECT count(*) FROM incident")).scalar_one()
    )


def test_guard_rails_refuse_with_the_reason(session):
    import datetime as dt

    tz = dt.timezone(dt.timedelta(hours=8))
    with pytest.raises(InputError) as exc:
        analyse(session, None, HotspotQuery(level=3))
    assert exc.value.problems[0].type == "too_few_units" and exc.value.problems[0].loc == (
        "query",
        "level",
    )
    with pytest.raises(InputError) as exc:
        analyse(session, None, HotspotQuery(since=dt.datetime(2024, 12, 20, tzinfo=tz)))
    assert exc.value.problems[0].type == "too_few_incidents"
    with pytest.raises(InputError) as exc:
        analyse(
            session, None, HotspotQuery(since=dt.datetime(2030, 1, 1, tzinfo=tz), min_incidents=0)
        )
    assert exc.value.problems[0].type == "no_variation"
    with pytest.raises(InputError) as exc:
        analyse(session, None, HotspotQuery(smoothing="eb", category="bogus", alpha=0.7))
    assert {p.loc[-1] for p in exc.value.problems} == {"smoothing", "category", "alpha"}
    short = analyse(
        session,
        None,
        HotspotQuery(
            since=dt.datetime(2024, 1, 1, tzinfo=tz),
            until=dt.datetime(2024, 4, 1, tzinfo=tz),
            permutations=0,
        ),
    )
    assert any("months" in w for w in short.warnings)
    assert short.units["emerging"].isna().all()


def test_grid_staff_see_only_their_scope(session, accounts):
    staff = accounts["grid_staff"]
    principal = Principal(
        user_id=staff["id"],
        username=staff["username"],
        role=Role.GRID_STAFF,
        scope_codes=tuple(staff["scope_codes"]),
    )
    other = session.execute(
        text("SELECT max(code) FROM grid WHERE level = 3 AND valid_to IS NULL")
    ).scalar_one()
    with pytest.raises(Forbidden):
        analyse(session, principal, HotspotQuery(grid_code=other))
    with pytest.raises(InputError) as exc:
        analyse(session, principal, HotspotQuery())
    assert exc.value.problems[0].type == "too_few_units"


def test_a_scoped_role_with_enough_grids_gets_hot_spots_of_its_own_incidents(session, accounts):
    """Hot spots choose their incidents through the incident list's filter (its access rule):
    a supervisor over two management areas sees a map of exactly those areas' incidents."""
    staff = accounts["supervisor"]
    areas = tuple(
        session.execute(
            text("SELECT code FROM grid WHERE level = 2 AND valid_to IS NULL ORDER BY code LIMIT 2")
        ).scalars()
    )
    principal = Principal(
        user_id=staff["id"], username=staff["username"], role=Role.SUPERVISOR, scope_codes=areas
    )
    query = HotspotQuery(category=None, permutations=0, emerging=False)
    mine = analyse(session, principal, query)
    everyone = analyse(session, None, query)
    in_areas = session.execute(
        text("SELECT id FROM incident WHERE area_code = ANY(:areas) ORDER BY id"), {"areas": list(areas)}
    ).scalars().all()
    assert mine.meta["area"] == list(areas)
    assert sorted(mine.incident_ids.tolist()) == in_areas
    assert 0 < len(in_areas) < everyone.meta["incidents"]
    assert set(mine.units["code"].str[:12]) <= {
        c[:12] for c in session.execute(
            text("SELECT code FROM grid WHERE parent_code = ANY(:areas)"), {"areas": list(areas)}
        ).scalars()
    }
    # The drill-down behind a unit lists the same incidents the map counted there.
    busiest = mine.units.sort_values(["incidents", "unit_id"]).iloc[-1]
    rows, total = service.unit_incident_records(session, principal, query, busiest["unit_id"], 1000)
    assert total == busiest["incidents"] == len(rows)
    assert {r["id"] for r in rows} <= set(in_areas)


# --- API ---------------------------------------------------------------------------------------------


def test_api_json_geojson_and_csv_agree(clients, grid_result):
    admin = clients["admin"]
    r = admin.get("/hotspots")
    assert r.status_code == 200
    body = r.json()
    assert body["meta"]["hot_spots"] == len(hot(grid_result)) > 0
    by_id = {u["unit_id"]: u for u in body["units"]}
    assert len(by_id) == 282
    assert {k for k, u in by_id.items() if u["significant"] and u["bin"] > 0} == hot(grid_result)
    geo = admin.get("/hotspots", params={"format": "geojson"})
    assert geo.headers["content-type"].startswith("application/geo+json")
    fc = geo.json()
    assert len(fc["features"]) == 282 and fc["features"][0]["geometry"]["type"] in (
        "Polygon",
        "MultiPolygon",
    )
    assert {f["id"]: f["properties"]["bin"] for f in fc["features"]} == {
        k: u["bin"] for k, u in by_id.items()
    }
    r = admin.get("/hotspots", params={"format": "csv"})
    assert r.text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    headers = labels.HOTSPOT_CSV_HEADERS
    assert list(rows[0]) == list(headers.values())
    for row in rows:
        unit = by_id[row[headers["unit_id"]].removeprefix("'")]  # grid codes are marked as text
        assert int(row[headers["bin"]]) == unit["bin"]
        assert row[headers["bin_text"]] == labels.HOTSPOT_BINS[unit["bin"]]


def test_api_refusals_name_the_field(clients):
    admin = clients["admin"]
    r = admin.get("/hotspots", params={"level": 3})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["loc"] == ["query", "level"]
    r = admin.get("/hotspots", params={"since": "2024-01-01T00:00:00"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "since"]
    r = admin.get("/hotspots", params={"category": "gossip"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "category"]
    r = admin.get("/hotspots", params={"unit": "hexagon", "hex_size_m": 20})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "hex_size_m"]


def test_api_scoped_roles(clients, accounts, engine):
    r = clients["grid_staff"].get("/hotspots")
    assert r.status_code == 422 and r.json()["errors"][0]["type"] == "too_few_units"
    with engine.connect() as c:
        other = c.execute(
            text("SELECT max(code) FROM grid WHERE level = 3 AND valid_to IS NULL")
        ).scalar_one()
    assert other != accounts["supervisor"]["scope_codes"][0]
    r = clients["supervisor"].get("/hotspots", params={"grid_code": other})
    assert r.status_code == 403
    assert clients["emergency"].get("/hotspots", params={"permutations": 0}).status_code == 200
    assert clients["planner"].get("/hotspots").status_code == 403


def test_api_drilldown_lists_the_incidents_behind_a_unit(clients, grid_result, engine):
    top = grid_result.units.sort_values("incidents", ascending=False).iloc[0]
    r = clients["command_center"].get(f"/hotspots/units/{top['unit_id']}/incidents")
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == top["incidents"] == len(body["items"])
    with engine.connect() as c:
        expected = set(
            c.execute(
                text("SELECT id FROM incident WHERE category = 'dispute' AND group_code = :g"),
                {"g": top["unit_id"]},
            ).scalars()
        )
    assert {i["id"] for i in body["items"]} == expected
    # Grid staff cannot drill into a unit outside their grid.
    r = clients["grid_staff"].get(f"/hotspots/units/{top['unit_id']}/incidents")
    assert r.status_code == 404


def test_api_drilldown_of_a_hexagon_matches_its_count(clients):
    params = {
        "unit": "hexagon",
        "hex_size_m": 500,
        "since": "2023-06-01T00:00:00+08:00",
        "permutations": 0,
        "emerging": "false",
    }
    units_ = clients["admin"].get("/hotspots", params=params).json()["units"]
    busy = sorted(units_, key=lambda u: -u["incidents"])[:3]
    for unit in busy:
        r = clients["admin"].get(f"/hotspots/units/{unit['unit_id']}/incidents", params=params)
        assert r.status_code == 200
        items = r.json()["items"]
        assert len(items) == unit["incidents"] > 0
        assert all(i["category"] == "dispute" and i["occurred_at"] >= "2023-05-31" for i in items)
    assert (
        clients["admin"].get("/hotspots/units/h500_1_1/incidents", params=params).status_code == 404
    )


def test_cli_writes_every_unit(test_db_url, tmp_path, monkeypatch, grid_result):
    from typer.testing import CliRunner

    from gis import settings
    from gis.cli import app

    monkeypatch.setenv("DATABASE_URL", test_db_url.render_as_string(hide_password=False))
    settings.get_settings.cache_clear()
    try:
        out = tmp_path / "hot.geojson"
        result = CliRunner().invoke(app, ["hotspots", "--permutations", "0", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert f"{len(hot(grid_result))} hot spots" in result.output
        fc = json.loads(out.read_text(encoding="utf-8"))
        assert len(fc["features"]) == 282
        refused = CliRunner().invoke(app, ["hotspots", "--level", "3"])
        assert refused.exit_code == 1
        assert "too_few_units" in refused.output
    finally:
        settings.get_settings.cache_clear()
