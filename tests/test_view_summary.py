"""GET /incidents/summary: the numbers of a view, per role and filter, against a Python oracle over
the incident rows."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import database_copy, make_client, report_incident

BEIJING = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def db(test_db_url: Any, accounts: dict[str, Any]) -> Any:
    """A private copy with incidents reported today: by grid staff in their grid and in a neighbour's,
    and by the admin far from the staff's grid."""
    with database_copy(test_db_url, "summary") as url:
        eng = create_engine(url, poolclass=NullPool)
        scope = accounts["grid_staff"]["scope_codes"]
        with eng.connect() as c:
            def point(code: str) -> tuple[float, float]:
                row = c.execute(text("SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM grid "
                                     "WHERE code = :c AND valid_to IS NULL) s"), {"c": code}).one()
                return float(row[0]), float(row[1])

            mine = point(scope[0])
            neighbour = c.execute(text("SELECT min(code) FROM grid WHERE level = 4 AND valid_to IS NULL "
                                       "AND code > :c"), {"c": scope[0]}).scalar_one()
            elsewhere = c.execute(text("SELECT max(code) FROM grid WHERE level = 4 AND valid_to IS NULL")).scalar_one()
            there, far = point(neighbour), point(elsewhere)
        eng.dispose()
        now = dt.datetime.now(BEIJING).replace(microsecond=0)
        with make_client(url, "grid_staff") as staff, make_client(url, "admin") as admin:
            for i in range(3):
                assert report_incident(staff, *mine, occurred_at=now.isoformat(),
                                       description=f"今日 {i}").status_code == 201
            assert report_incident(staff, *there, occurred_at=now.isoformat(),
                                   category="safety_hazard").status_code == 201
            assert report_incident(admin, *far, occurred_at=now.isoformat(), category="dispute",
                                   dispute_kind="neighbour").status_code == 201
        yield url


@pytest.fixture(scope="module")
def rows(db: Any) -> list[dict[str, Any]]:
    eng = create_engine(db, poolclass=NullPool)
    with eng.connect() as c:
        out = [dict(r) for r in c.execute(text(
            "SELECT id, category, state, occurred_at, stage_deadline, on_boundary, outside_distance_m, group_code, "
            "village_code, area_code, town_code, created_by, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM incident"
        )).mappings()]
    eng.dispose()
    return out


def visible(row: dict[str, Any], role: str, account: dict[str, Any]) -> bool:
    if role in ("admin", "command_center", "emergency"):
        return True
    scope = set(account["scope_codes"])
    codes = {row["group_code"], row["village_code"], row["area_code"], row["town_code"]}
    return bool(scope & codes) or row["created_by"] == account["id"]


def oracle(rows: list[dict[str, Any]], role: str, account: dict[str, Any], bbox: tuple[float, ...],
           now: dt.datetime, *, state: str | None = None, category: str | None = None, open_only: bool = True,
           overdue: bool | None = None, flagged: bool | None = None,
           since: dt.datetime | None = None) -> dict[str, Any]:
    x0, y0, x1, y1 = bbox
    chosen = []
    for r in rows:
        flag = (r["on_boundary"] or r["outside_distance_m"] is not None or not r["village_code"]
                or r["group_code"] == r["village_code"])
        late = r["stage_deadline"] is not None and r["stage_deadline"] < now
        if not (visible(r, role, account) and x0 <= r["lon"] <= x1 and y0 <= r["lat"] <= y1):
            continue
        if (state and r["state"] != state) or (category and r["category"] != category):
            continue
        if open_only and state is None and r["state"] == "closed":
            continue
        if (overdue is not None and late != overdue) or (flagged is not None and flag != flagged):
            continue
        if since is not None and r["occurred_at"] < since:
            continue
        chosen.append((r, flag, late))
    today = now.astimezone(BEIJING).replace(hour=0, minute=0, second=0, microsecond=0)
    per_level = {}
    for level, column in ((2, "area_code"), (3, "village_code"), (4, "group_code")):
        counts = Counter(r[column] for r, _, _ in chosen if r[column] is not None)
        per_level[level] = (len(counts), sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10])
    return {
        "total": len(chosen), "open": sum(r["state"] != "closed" for r, _, _ in chosen),
        "overdue": sum(late for _, _, late in chosen), "flagged": sum(flag for _, flag, _ in chosen),
        "today_new": sum(r["occurred_at"] >= today for r, _, _ in chosen),
        "by_category": dict(Counter(r["category"] for r, _, _ in chosen)),
        "by_state": dict(Counter(r["state"] for r, _, _ in chosen)),
        "per_level": per_level,
    }


def summary(client: Any, bbox: tuple[float, ...], **params: Any) -> dict[str, Any]:
    r = client.get("/incidents/summary", params={"bbox": ",".join(map(str, bbox)), **params})
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def assert_matches(got: dict[str, Any], want: dict[str, Any]) -> None:
    for key in ("total", "open", "overdue", "flagged", "today_new", "by_category", "by_state"):
        assert got[key] == want[key], key
    for level in got["by_level"]:
        grids, top = want["per_level"][level["level"]]
        assert level["grids"] == grids
        assert [(g["code"], g["count"]) for g in level["top"]] == top


@pytest.fixture(scope="module")
def town_bbox(rows: list[dict[str, Any]]) -> tuple[float, ...]:
    return (min(r["lon"] for r in rows) - 0.001, min(r["lat"] for r in rows) - 0.001,
            max(r["lon"] for r in rows) + 0.001, max(r["lat"] for r in rows) + 0.001)


FILTERS: list[dict[str, Any]] = [
    {}, {"open": False}, {"state": "handle"}, {"category": "dispute"}, {"overdue": True}, {"flagged": True},
    {"category": "environment", "overdue": False},
]


@pytest.mark.parametrize("role", ["admin", "command_center", "grid_staff", "supervisor", "emergency"])
def test_numbers_follow_the_role_and_the_filters(db: Any, rows: list[dict[str, Any]], accounts: dict[str, Any],
                                                 town_bbox: tuple[float, ...], role: str) -> None:
    with make_client(db, role) as c:
        for params in FILTERS:
            got = summary(c, town_bbox, **params)
            now = dt.datetime.fromisoformat(got["as_of"])
            want = oracle(rows, role, accounts[role], town_bbox, now, state=params.get("state"),
                          category=params.get("category"), open_only=params.get("open", True),
                          overdue=params.get("overdue"), flagged=params.get("flagged"))
            assert_matches(got, want)
            if role == "grid_staff" and not params:
                # Their grid's incidents and their own reports elsewhere; no other grid's incident.
                assert got["today_new"] == 4 and got["total"] < 0.2 * len(rows)


def test_the_view_narrows_the_numbers(db: Any, rows: list[dict[str, Any]], accounts: dict[str, Any],
                                      town_bbox: tuple[float, ...]) -> None:
    x0, y0, x1, y1 = town_bbox
    west = (x0, y0, (x0 + x1) / 2, y1)
    since = dt.datetime(2025, 1, 1, tzinfo=BEIJING)
    with make_client(db, "command_center") as c:
        whole = summary(c, town_bbox)
        half = summary(c, west)
        dated = summary(c, west, since=since.isoformat())
    for got, box, extra in ((half, west, {}), (dated, west, {"since": since})):
        want = oracle(rows, "command_center", accounts["command_center"], box,
                      dt.datetime.fromisoformat(got["as_of"]), **extra)
        assert_matches(got, want)
    assert 0 < half["total"] < whole["total"]
    assert dated["total"] <= half["total"]
    names = {r["code"]: r["name"] for r in _grids(db)}
    assert all(g["name"] == names[g["code"]] for lv in half["by_level"] for g in lv["top"])
    assert [lv["level_name"] for lv in half["by_level"]][1].startswith("行政村")


def _grids(db: Any) -> list[dict[str, Any]]:
    eng = create_engine(db, poolclass=NullPool)
    with eng.connect() as c:
        out = [dict(r) for r in c.execute(text("SELECT code, name FROM grid WHERE valid_to IS NULL")).mappings()]
    eng.dispose()
    return out


def test_today_is_the_beijing_day(db: Any) -> None:
    with make_client(db, "admin") as c:
        got = summary(c, (100, 20, 120, 40))
    start = dt.datetime.fromisoformat(got["today_from"])
    assert start.utcoffset() == dt.timedelta(hours=8) and (start.hour, start.minute) == (0, 0)
    assert got["today_new"] == 5


@pytest.mark.parametrize("bbox", ["1,2,3", "a,b,c,d", "10,10,5,5", "0,0,0,200", "nan,0,1,1", ""])
def test_a_bad_bbox_is_refused_naming_it(db: Any, bbox: str) -> None:
    with make_client(db, "admin") as c:
        r = c.get("/incidents/summary", params={"bbox": bbox})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["query", "bbox"]


def test_other_bad_filters_are_refused_and_planners_get_none(db: Any) -> None:
    with make_client(db, "admin") as c:
        r = c.get("/incidents/summary", params={"bbox": "100,20,120,40", "since": "2025-01-01T00:00:00"})
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "since"]
        assert c.get("/incidents/summary").status_code == 422
        assert c.get("/incidents/summary", params={"bbox": "100,20,120,40", "state": "x"}).status_code == 422
    with make_client(db, "planner") as c:
        assert c.get("/incidents/summary", params={"bbox": "100,20,120,40"}).status_code == 403
