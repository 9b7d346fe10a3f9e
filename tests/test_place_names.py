"""Place-name lookup (gis/incidents/gazetteer.py): bounded cost, the same answers as comparing the
query with every name, house-number addresses only for those who may see them, and a match's
precision deciding the deepest grid level an incident is assigned to."""

from __future__ import annotations

import math
import re

import numpy as np
import pyproj
import pytest
import shapely
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.errors import InputError
from gis.incidents import gazetteer as G
from tests.conftest import WHEN, make_client, report_incident

HOUSE_NUMBER = re.compile(r"\d+号")


def report(client, place: str):
    return client.post(
        "/incidents",
        json={
            "category": "livelihood",
            "description": "路灯不亮",
            "occurred_at": WHEN,
            "place": place,
        },
    )


def exhaustive(session, query: str):
    """The answer by brute force: every name scored (the pre-index rule), best first."""
    q = G.canonical(query)
    index = G.gazetteer(session)
    scored = sorted(
        ((G._score(q, c, p.kind), p) for c, p in zip(index.canon, index.places, strict=True)),
        key=lambda sp: (-sp[0], sp[1].precision_m, sp[1].label),
    )
    best_score, best = scored[0]
    if best_score < G.MIN_SCORE:
        return "no_match", None
    rivals = [
        p
        for s, p in scored[1:]
        if best_score - s <= G.TIE_MARGIN and math.dist((p.lon, p.lat), (best.lon, best.lat)) > 1e-4
    ]
    return ("ambiguous", None) if rivals else ("hit", best.label)


def indexed(session, query: str):
    try:
        return "hit", G.resolve(session, query).label
    except InputError as exc:
        return exc.problems[0].type, None


# --- cost ----------------------------------------------------------------------------------------


def test_an_over_long_place_is_refused_naming_the_field(client, session):
    r = report(client, "李邦相村" * 500)  # 2,000 characters
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "place"]
    with pytest.raises(InputError) as ei:
        G.resolve(session, "尹" * (G.MAX_PLACE_CHARS + 1), loc=("body", "place"))
    (p,) = ei.value.problems
    assert p.loc == ("body", "place") and p.type == "too_long"


def test_exact_comparisons_stay_bounded_whatever_the_query(session):
    index = G.gazetteer(session)
    assert len(index.places) > 10_000  # the households make the list long
    addresses = [p.label for p in index.places if p.kind == "household"][:50]
    # Short and maximal queries made of the commonest characters (the worst case for an index).
    queries = ["村", "村组号", "尹营村1组1"] + [
        (a * 20)[:n] for a in addresses[:10] for n in (10, 50, G.MAX_PLACE_CHARS)
    ]
    queries += [("村组号" + "".join(str(d) for d in range(10))) * 10]
    for q in queries:
        result = G.rank(index, G.canonical(q[: G.MAX_PLACE_CHARS]))
        assert result.comparisons <= G.MAX_COMPARISONS, q
    # The index itself costs at most one pass over the postings of the query's characters, which
    # the length cap bounds: a maximal query compares no more names than a short one needs to.
    long_q = G.canonical(("李邦相村东头老槐树下面的那条小路旁边的" * 10)[: G.MAX_PLACE_CHARS])
    assert (
        G.rank(index, long_q).comparisons
        <= G.rank(index, "李邦相村玉雕").comparisons + G.CANDIDATES
    )


def test_the_index_gives_the_answers_of_comparing_with_every_name(session):
    index = G.gazetteer(session)
    rng = np.random.default_rng(9)
    labels = [p.label for p in index.places]
    queries = ["尹营村三组", "李邦相村玉雕创意园", "尹营村1组1", "火星村", "岁坡村二组"]
    for i in rng.choice(len(labels), 8, replace=False):
        label = labels[i]
        cut = int(rng.integers(0, len(label)))
        queries.append(label[:cut] + label[cut + 1 :] if i % 2 else label + "附近")
    for q in queries:
        assert indexed(session, q) == exhaustive(session, q), q


# --- who sees which addresses --------------------------------------------------------------------


@pytest.fixture(scope="module")
def foreign_village(engine, accounts):
    """A village outside the grid staff's and the supervisor's scope."""
    own_village = accounts["supervisor"]["scope_codes"][0]
    with engine.connect() as c:
        return c.execute(
            text(
                "SELECT name FROM grid WHERE level = 3 AND valid_to IS NULL AND code <> :v "
                "ORDER BY code DESC LIMIT 1"
            ),
            {"v": own_village},
        ).scalar_one()


def _scope_addresses(engine, codes: list[str]) -> set[str]:
    with engine.connect() as c:
        return set(
            c.execute(
                text(
                    "SELECT h.address FROM household h WHERE EXISTS (SELECT 1 FROM grid g "
                    "WHERE g.valid_to IS NULL "
                    "AND g.code = ANY(:c) AND ST_Intersects(g.geom, h.geom))"
                ),
                {"c": codes},
            ).scalars()
        )


def test_candidates_show_house_numbers_only_where_the_household_rule_allows(
    scratch_db_url, accounts, engine, foreign_village
):
    # Ambiguous between a house-number address and a group grid of another village (nothing stored).
    queries = [f"{foreign_village}2组3", f"{foreign_village}3组2"]
    for role in ("grid_staff", "supervisor", "command_center", "emergency", "admin"):
        candidates = []
        with make_client(scratch_db_url, role) as client:
            for q in queries:
                r = report(client, q)
                assert r.status_code == 422, (role, r.text)
                assert r.json()["errors"][0]["type"] == "ambiguous"
                candidates += [
                    c
                    for c in r.json()["errors"][0]["ctx"]["candidates"]
                    if c["kind"] == "household"
                ]
        assert candidates, (
            "the queries must list household candidates for the test to mean anything"
        )
        unmasked = [c["label"] for c in candidates if HOUSE_NUMBER.search(c["label"])]
        masked = [c["label"] for c in candidates if c["label"].endswith("**号")]
        assert len(unmasked) + len(masked) == len(candidates), role
        if role == "admin":
            assert not masked
        elif role in ("grid_staff", "supervisor"):
            # Only addresses of their own grids (the queries name another village: none at all).
            assert set(unmasked) <= _scope_addresses(engine, accounts[role]["scope_codes"]), role
            assert not unmasked, role
        else:
            # The command center and emergency teams see addresses only inside an active emergency.
            assert not unmasked, role


# --- precision decides the level -----------------------------------------------------------------


@pytest.fixture(scope="module")
def places(engine):
    """One place of each kind with what the rule expects, worked out here from the geometry."""
    from gis.db import transaction
    from gis.grids.store import current_grids

    with transaction(engine) as s:
        groups = current_grids(s, level=4)
        villages = current_grids(s, level=3)
        house = s.execute(
            text("SELECT address, ST_X(geom) x, ST_Y(geom) y FROM household ORDER BY id")
        ).all()
        shelters = s.execute(
            text("SELECT name, ST_X(geom) x, ST_Y(geom) y FROM shelter ORDER BY id")
        ).all()
        nvs = s.execute(
            text("SELECT name, ST_X(geom) x, ST_Y(geom) y FROM natural_village ORDER BY id")
        ).all()
    edges = shapely.union_all(shapely.boundary(groups.geometry.to_numpy()))

    def group_of(x, y):
        pt = shapely.Point(x, y)
        hits = groups[groups.geometry.contains(pt)]
        return hits["code"].iloc[0] if len(hits) == 1 and edges.distance(pt) > 1e-5 else None

    house = next((h for h in house if group_of(h.x, h.y)), None)
    shelter = next((s for s in shelters if group_of(s.x, s.y)), None)
    # A natural village: the disc of its precision (300 m) against the group grids, in metres.
    gk = pyproj.Transformer.from_crs(4326, 4546, always_xy=True)

    def to_gk(g):
        return shapely.transform(g, lambda c: np.column_stack(gk.transform(c[:, 0], c[:, 1])))

    nv = nvs[0]
    disc = shapely.Point(*gk.transform(nv.x, nv.y)).buffer(300.0, 256)
    touched = [
        c
        for c, g in zip(groups["code"], groups.geometry, strict=True)
        if to_gk(g).intersection(disc).area > 1
    ]
    village = villages[villages.geometry.contains(shapely.Point(nv.x, nv.y))]["code"].iloc[0]
    lbx = villages[villages["name"] == "李邦相村"]["code"].iloc[0]
    return {
        "house": (house.address, group_of(house.x, house.y)),
        "shelter": (shelter.name, group_of(shelter.x, shelter.y)),
        "natural_village": (nv.name, touched[0] if len(touched) == 1 else village),
        "grid": ("尹营村三组", groups[groups["name"] == "尹营村第三网格"]["code"].iloc[0]),
        "village": ("李邦相村玉雕创意园", lbx),
    }


@pytest.mark.parametrize(
    "kind, level, flagged",
    [
        ("house", 4, False),
        ("shelter", 4, False),
        ("grid", 4, False),
        ("natural_village", None, None),
        ("village", 3, True),
    ],
)
def test_the_match_precision_decides_the_level_assigned(
    scratch_db_url, accounts, places, kind, level, flagged
):
    query, code = places[kind]
    assert code, kind
    level = level or (4 if code[-3:] != "000" else 3)
    flagged = level < 4 if flagged is None else flagged
    with make_client(scratch_db_url, "admin") as admin:
        r = report(admin, query)
        assert r.status_code == 201, r.text
        inc = r.json()
        assert inc["group_code"] == code and inc["assigned_level"] == level, (
            kind,
            inc["group_code"],
        )
        assert inc["flagged"] is flagged
        if level == 4:
            assert code.startswith(inc["village_code"][:12]) and inc["village_code"] != code
            assert {a["duty"] for a in inc["assignees"]} >= {"leader", "member"}
        else:
            # The village level: its staff (the supervisor among them), the review queue, a reason.
            assert inc["village_code"] == code and inc["review_reasons"] == ["vague_place"]
            assert inc["assignees"] and all(a["grid_code"] == code for a in inc["assignees"])
            assert "supervisor" in {a["duty"] for a in inc["assignees"]}
            queue = admin.get("/incidents/review").json()["items"]
            assert inc["id"] in [i["id"] for i in queue]
            assert (
                admin.get("/incidents", params={"flagged": "true", "limit": 1000}).json()["total"]
                >= 1
            )


def test_a_point_in_a_gap_between_group_grids_is_flagged_at_the_village(scratch_db_url, accounts):
    eng = create_engine(scratch_db_url, poolclass=NullPool)
    with eng.begin() as c:
        # Shrink one group grid by 60 m: the ring it leaves is inside the village, in no group grid.
        (code,) = c.execute(
            text(
                "SELECT code FROM grid WHERE level = 4 AND valid_to IS NULL ORDER BY code "
                "OFFSET 40 LIMIT 1"
            )
        ).one()
        c.execute(
            text(
                "UPDATE grid SET geom = ST_Multi(ST_Buffer(geom::geography, -60)::geometry) "
                "WHERE code = :c AND valid_to IS NULL"
            ),
            {"c": code},
        )
        x, y = c.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT "
                "ST_PointOnSurface(ST_Difference(v.geom, ST_Union(g.geom))) p "
                "FROM grid v JOIN grid g ON g.parent_code = v.code AND g.valid_to IS NULL "
                "WHERE v.code = :v AND v.valid_to IS NULL GROUP BY v.geom) q"
            ),
            {"v": code[:12] + "000"},
        ).one()
    eng.dispose()
    with make_client(scratch_db_url, "admin") as admin:
        r = report_incident(admin, x, y, category="livelihood", description="路灯不亮")
        assert r.status_code == 201, r.text
        inc = r.json()
        village = code[:12] + "000"
        assert (
            inc["group_code"] == village
            and inc["village_code"] == village
            and inc["assigned_level"] == 3
        )
        assert inc["flagged"] and inc["review_reasons"] == ["no_group_grid"]
        assert all(a["grid_code"] == village for a in inc["assignees"])
        assert inc["id"] in [i["id"] for i in admin.get("/incidents/review").json()["items"]]
