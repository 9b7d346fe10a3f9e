"""Impact preview (gis/planning/impact.py): what it predicts is what publishing then does, counted by
independent queries before and after; it writes nothing; workload against a target; the CSV."""

from __future__ import annotations

import csv
import io
from collections import Counter

import pytest
from sqlalchemy import text

from gis import clock
from gis.planning.impact import IMPACT_TABLE
from gis.planning.publish import impact, publish
from tests.test_planning_publish import CTX, digest, make_plan


@pytest.fixture
def plan(session):
    return make_plan(session)


def _places(session, village: str) -> tuple[dict[int, tuple[str, int]], dict[int, str]]:
    """Households (id -> (group grid, residents)) and open incidents (id -> group grid) of the village,
    by ST_Contains on the current group grids (the sample's houses lie off the edges)."""
    hh = {r.id: (r.code, r.residents) for r in session.execute(text(
        "SELECT h.id, g.code, h.residents FROM household h JOIN grid g ON g.valid_to IS NULL AND g.level = 4 "
        "AND g.parent_code = :v AND ST_Contains(g.geom, h.geom)"), {"v": village})}
    inc = {r.id: r.code for r in session.execute(text(
        "SELECT i.id, g.code FROM incident i JOIN grid g ON g.valid_to IS NULL AND g.level = 4 "
        "AND g.parent_code = :v AND ST_Contains(g.geom, i.geom) WHERE i.state <> 'closed'"), {"v": village})}
    return hh, inc


def test_the_preview_is_what_publishing_does(session, plan):
    village = plan["village"]
    before_digest = digest(session)
    preview = impact(session, plan["changes"], target=20, tolerance=0.5)
    assert digest(session) == before_digest   # a preview writes nothing
    hh0, inc0 = _places(session, village)
    publish(session, CTX, plan["changes"], effective_at=clock.now(), base=plan["base"])
    hh1, inc1 = _places(session, village)

    moved_h = Counter((hh0[i][0], hh1[i][0]) for i in hh0 if hh0[i][0] != hh1[i][0])
    moved_r = Counter()
    for i in hh0:
        if hh0[i][0] != hh1[i][0]:
            moved_r[(hh0[i][0], hh1[i][0])] += hh0[i][1]
    moved_i = Counter((inc0[i], inc1[i]) for i in inc0 if inc0[i] != inc1[i])
    predicted = {(m["from"], m["to"]): m for m in preview.moves}
    assert {k for k, v in moved_h.items() if v} | {k for k, v in moved_i.items() if v} == set(predicted)
    for key, m in predicted.items():
        assert (m["households"], m["residents"], m["open_incidents"]) == (moved_h[key], moved_r[key], moved_i[key])
    assert moved_h[(plan["b"], plan["a"])] > 0 and moved_h[(plan["d"], plan["new_d"])] > 0

    # Staff: B's follow to A, D's to D2 — the same people publish moved.
    assert {(s["from"], s["to"]) for s in preview.staff} == {(plan["b"], plan["a"]), (plan["d"], plan["new_d"])}
    assert all(session.execute(text("SELECT grid_code FROM staff WHERE id = :i"), {"i": s["staff_id"]}).scalar_one()
               == s["to"] for s in preview.staff)
    assert [d["grid"] for d in preview.decisions] == [plan["c"]]
    # Workload: A after = A before + B's households; members add up; counts conserved over the village.
    work = {w["code"]: w for w in preview.workload}
    a, b = work[plan["a"]], work[plan["b"]]
    assert a["after"]["households"] == a["before"]["households"] + b["before"]["households"]
    assert a["after"]["members"] == a["before"]["members"] + b["before"]["members"]
    assert b["gone"] and b["after"]["households"] == 0 and b["within"] is None
    assert a["after"]["households"] == sum(1 for g, _ in hh1.values() if g == plan["a"])
    assert sum(w["before"]["households"] for w in work.values()) == sum(w["after"]["households"] for w in work.values())
    if a["after"]["members"]:
        per = a["after"]["households"] / a["after"]["members"]
        assert a["within"] == (abs(per - 20) <= 10)


def test_impact_csv_has_chinese_headers_and_every_move(session, plan):
    preview = impact(session, plan["changes"])
    out = io.StringIO(newline="")
    n = IMPACT_TABLE.write_csv(out, preview.rows())
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0][:3] == ["类别", "原网格编码", "新网格编码"]
    assert n == len(rows) - 1 == len(preview.rows())
    assert sum(1 for r in rows[1:] if r[0] == "迁移") == len(preview.moves)
    assert preview.as_dict()["totals"]["households"] == sum(m["households"] for m in preview.moves) > 0
