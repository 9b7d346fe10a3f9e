"""The hot-spot page's data (/hotspots/map): popups in plain words, the statistics behind a
click, and a unit with no incident of its own inside a hot cluster called "in a hot area"."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.hotspots.service import HotspotQuery, analyse, unit_records
from maps import labels
from maps.hotspot_map import BIN_COLOURS, unit_status, unit_story
from tests.conftest import database_copy, make_client

DATA = "/hotspots/map"
# Words a township cadre should not have to read in the popup's first lines.
JARGON = re.compile(r"Gi\*|z 值|p 值|FDR|Getis|置换|显著性")


@pytest.fixture(scope="module")
def town(engine):
    from gis.db import make_sessionmaker

    with make_sessionmaker(engine)() as s:
        return {r["unit_id"]: r for r in unit_records(analyse(s, None, HotspotQuery()))}


@pytest.fixture(scope="module")
def answer(clients):
    r = clients["command_center"].get(DATA)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["cache-control"] == "no-store"
    return r.json()


def test_every_unit_says_what_it_is_in_plain_words(answer, town):
    features = {f["id"]: f["properties"] for f in answer["features"]}
    assert set(features) == set(town) and len(features) == 282
    for uid, p in features.items():
        r = town[uid]
        assert p["incidents"] == r["incidents"] and p["bin"] == r["bin"]
        assert p["status"] == unit_status(r)
        assert p["headline"] == labels.HOTSPOT_STATUS[p["status"]].format(what="矛盾纠纷")
        words = " ".join([p["headline"], *p["story"]])
        assert not JARGON.search(words), words
        assert r["name"] in p["story"][0]
        assert f"{r['incidents']} 件" in p["story"][0] or p["status"] == "hot_area"
        # The statistics are all there, behind the click.
        stats = dict(p["stats"])
        assert set(stats) == {label for _, label in labels.HOTSPOT_POPUP_FIELDS}
        assert stats["事项数"] == r["incidents"]
        if r["gi_z"] is not None:
            assert float(stats["Gi* z 值"]) == pytest.approx(r["gi_z"], abs=0.006)
    hot = [p for p in features.values() if p["status"] == "hot"]
    assert hot, "the sample town's disputes cluster: there should be hot spots"
    for p in hot:
        assert p["headline"] == "矛盾纠纷热点"
        assert "明显偏多" in p["story"][0]
        assert any(line.startswith("判断把握") for line in p["story"])
        assert p["style"]["fillColor"] == BIN_COLOURS[p["bin"]]


def test_a_unit_without_disputes_in_a_hot_cluster_is_in_a_hot_area_not_a_hot_spot(answer, town):
    """Gi* counts a unit with its neighbours, so an empty unit among hot ones tests "hot"."""
    empty_hot = {uid for uid, r in town.items() if r["bin"] > 0 and r["incidents"] == 0}
    features = {f["id"]: f["properties"] for f in answer["features"]}
    shown = {uid for uid, p in features.items() if p["status"] == "hot_area"}
    assert shown == empty_hot
    assert answer["hot_areas"] == len(empty_hot)
    for uid in shown:
        p = features[uid]
        assert p["headline"] == labels.HOTSPOT_STATUS["hot_area"] == "位于热点区域"
        assert "热点" not in p["headline"].replace("热点区域", "")
        assert "本身没有矛盾纠纷" in p["story"][0]
        # Drawn apart from the hot spots: pale, dashed, framed in its bin's colour.
        assert p["style"]["fillColor"] != BIN_COLOURS[p["bin"]]
        assert p["style"]["color"] == BIN_COLOURS[p["bin"]] and p["style"]["dashArray"]
    if empty_hot:
        assert labels.HOTSPOT_SUMMARY_HOT_AREA.format(count=len(empty_hot)) in answer["summary"]


def test_the_empty_unit_case_on_a_town_made_to_have_one(test_db_url, accounts):
    """Move the disputes out of one unit in the middle of the hottest cluster: it stays hot through
    its neighbours, and the page calls it "in a hot area"."""
    with database_copy(test_db_url, "hotarea") as url:
        eng = create_engine(url, poolclass=NullPool)
        with eng.connect() as c:
            # The hot group grid with the most hot neighbours (queen contiguity), and fewest disputes.
            target = c.execute(text(
                "WITH d AS (SELECT group_code, count(*) n FROM incident WHERE category = 'dispute' "
                "GROUP BY group_code ORDER BY n DESC LIMIT 12) "
                "SELECT g.code FROM grid g JOIN d ON d.group_code = g.code WHERE g.valid_to IS NULL "
                "ORDER BY (SELECT count(*) FROM grid o JOIN d d2 ON d2.group_code = o.code "
                "WHERE o.valid_to IS NULL AND ST_Touches(o.geom, g.geom)) DESC, d.n, g.code LIMIT 1"
            )).scalar_one()
        with eng.begin() as c:
            # Its disputes move to the town's edge (a far group grid): none of its own remain.
            far = c.execute(text(
                "SELECT code FROM grid WHERE level = 4 AND valid_to IS NULL ORDER BY "
                "ST_Distance(ST_Centroid(geom), (SELECT ST_Centroid(geom) FROM grid WHERE code = :t "
                "AND valid_to IS NULL)) DESC LIMIT 1"), {"t": target}).scalar_one()
            c.execute(text(
                "UPDATE incident SET geom = (SELECT ST_PointOnSurface(geom) FROM grid WHERE code = :far "
                "AND valid_to IS NULL), group_code = :far WHERE category = 'dispute' AND group_code = :t"),
                {"far": far, "t": target})
        eng.dispose()
        with make_client(url, "command_center") as client:
            body = client.get(DATA).json()
    unit = next(f["properties"] for f in body["features"] if f["id"] == target)
    assert unit["incidents"] == 0
    assert unit["bin"] > 0, "a unit amid the hottest cluster should still test hot"
    assert unit["status"] == "hot_area"
    assert unit["headline"] == "位于热点区域"
    assert "本身没有矛盾纠纷" in unit["story"][0]


def test_story_words_pure():
    base = {"unit_id": "411324105001001", "incidents": 7, "bin": 3, "significant": True, "outlier": "",
            "island": False, "emerging": "intensifying_hot"}
    story = unit_story(base, where="尹营村一组", what="矛盾纠纷", period="在 2024-01 至 2024-06 期间", rate=False)
    assert story[0].startswith("尹营村一组在 2024-01 至 2024-06 期间矛盾纠纷明显偏多：本单元 7 件")
    assert story[1] == labels.HOTSPOT_STORY_SURE.format(sure=labels.HOTSPOT_SURE[3])
    assert labels.HOTSPOT_EMERGING["intensifying_hot"] in story[-1]
    assert unit_status({**base, "incidents": 0}) == "hot_area"
    assert unit_status({**base, "bin": -2}) == "cold"
    assert unit_status({**base, "bin": 0}) == "neutral"
    assert unit_status({**base, "island": True}) == "island"


def test_a_refused_analysis_is_said_in_chinese(clients):
    r = clients["command_center"].get(DATA, params={"units": "grid3"})
    assert r.status_code == 200
    body = r.json()
    assert body["features"] == [] and body["refusal"]
    line = body["refusal"][0]
    assert "20" in line and "30" in line and "单元" in line
    assert not re.search(r"[A-Za-z]{4,}", line), line


@pytest.mark.parametrize(("params", "field"), [({"since_month": "2024-13"}, "since_month"),
                                               ({"units": "grid9"}, "units"),
                                               ({"grid_code": "4113"}, "grid_code")])
def test_a_malformed_request_is_a_422_naming_the_field(clients, params, field):
    r = clients["command_center"].get(DATA, params=params)
    assert r.status_code == 422
    assert ["query", field] in [e["loc"] for e in r.json()["errors"]]


def test_the_drill_down_parameters_give_the_units_incidents(clients, answer, town):
    uid = max(town, key=lambda u: town[u]["incidents"])
    r = clients["command_center"].get(f"/hotspots/units/{uid}/incidents", params=answer["drill_down"])
    assert r.status_code == 200
    assert r.json()["total"] == town[uid]["incidents"]


def test_planner_is_refused(clients):
    assert clients["planner"].get(DATA).status_code == 403
