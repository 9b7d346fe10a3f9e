"""Reporting outside one's own grids (issue 11 item 14): stored where the point lies, routed there,
the reporter told where it went and able to follow it; external ids never reveal another's record.

Every role that may report, each inside and outside its scope (the scoped ones: grid staff serve
one group grid, the supervisor one village).
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from gis.incidents.labels import ROUTED_ELSEWHERE, ROUTED_OWN_GRID
from tests.conftest import WHEN, make_client


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (2, 2), (30, 120, 200)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()
REPORTING_ROLES = ("grid_staff", "supervisor", "command_center", "emergency", "admin")


@pytest.fixture(scope="module")
def places(engine, accounts):
    """A point inside each scoped role's own grids, and one in a group grid of another village."""
    own_group = accounts["grid_staff"]["scope_codes"][0]
    village = accounts["supervisor"]["scope_codes"][0]
    with engine.connect() as c:

        def point(code):
            return c.execute(
                text(
                    "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM grid "
                    "WHERE code = :c AND valid_to IS NULL) q"
                ),
                {"c": code},
            ).one()

        other_group = c.execute(
            text(
                "SELECT min(code) FROM grid WHERE level = 4 AND valid_to IS NULL "
                "AND parent_code <> :v"
            ),
            {"v": village},
        ).scalar_one()
        return {
            "inside": {
                "grid_staff": (own_group, point(own_group)),
                "supervisor": (own_group, point(own_group)),
            },
            "outside": (other_group, point(other_group)),
        }


@pytest.fixture
def db(scratch_db_url, accounts):
    """Clients per reporting role, plus a second grid member of the same grid as test_grid_staff."""
    from gis.auth import accounts as accts
    from gis.auth.roles import Role
    from gis.db import transaction

    eng = create_engine(scratch_db_url, poolclass=NullPool)
    with transaction(eng) as s:
        colleague = accts.create_user(
            s,
            "colleague",
            "correct-horse-battery-staple",
            Role.GRID_STAFF,
            scope_codes=accounts["grid_staff"]["scope_codes"],
        )
        secret, _ = accts.create_token(s, colleague.id, "colleague")
    clients = {role: make_client(scratch_db_url, role) for role in REPORTING_ROLES}
    clients["colleague"] = make_client(scratch_db_url, None)
    clients["colleague"].headers["Authorization"] = f"Bearer {secret}"
    for c in clients.values():
        c.__enter__()
    yield clients, eng
    for c in clients.values():
        c.__exit__(None, None, None)
    eng.dispose()


def post(client, xy, **fields):
    body = {
        "category": "environment",
        "description": "路边垃圾堆放",
        "occurred_at": WHEN,
        "lon": xy[0],
        "lat": xy[1],
        **fields,
    }
    return client.post("/incidents", json=body)


@pytest.mark.parametrize("role", REPORTING_ROLES)
def test_a_report_outside_the_reporters_grids_is_stored_routed_and_followed(db, places, role):
    clients, eng = db
    me = clients[role]
    code, xy = places["outside"]
    r = post(me, xy)
    assert r.status_code == 201, r.text
    inc = r.json()
    assert inc["group_code"] == code
    assert [p["code"] for p in inc["grid_path"]] == [
        inc["town_code"],
        inc["area_code"],
        inc["village_code"],
        code,
    ]
    assert all(p["name"] for p in inc["grid_path"])
    with eng.connect() as c:
        stored = c.execute(
            text("SELECT group_code, created_by FROM incident WHERE id = :i"), {"i": inc["id"]}
        ).one()
        routed = set(
            c.execute(
                text(
                    "SELECT s.grid_code FROM incident_assignee a JOIN staff s ON s.id = a.staff_id "
                    "WHERE a.incident_id = :i"
                ),
                {"i": inc["id"]},
            ).scalars()
        )
    assert stored.group_code == code
    assert routed and routed <= {
        code,
        code[:12] + "000",
    }  # that grid's people, its village's supervisor
    scoped = role in ("grid_staff", "supervisor")
    assert inc["outside_your_grids"] is scoped
    template = ROUTED_ELSEWHERE if scoped else ROUTED_OWN_GRID
    assert (
        inc["routing_notice"].startswith(template.split("{place}")[0])
        and code in inc["routing_notice"]
    )
    # The reporter follows it: the detail, the list (also filtered to that grid), the photos.
    assert me.get(f"/incidents/{inc['id']}").status_code == 200
    assert inc["id"] in {
        i["id"] for i in me.get("/incidents", params={"limit": 5000}).json()["items"]
    }
    assert inc["id"] in {
        i["id"] for i in me.get("/incidents", params={"grid_code": code}).json()["items"]
    }
    photo = me.post(
        f"/incidents/{inc['id']}/attachments", files={"file": ("a.png", PNG, "image/png")}
    )
    assert photo.status_code == 201, photo.text
    assert [a["id"] for a in me.get(f"/incidents/{inc['id']}/attachments").json()] == [
        photo.json()["id"]
    ]
    if scoped:
        # ... but works it no more than any other incident outside their grids.
        moved = me.post(f"/incidents/{inc['id']}/transitions", json={"action": "advance"})
        assert moved.status_code == 403


@pytest.mark.parametrize("role", ["grid_staff", "supervisor"])
def test_a_report_inside_the_scope_stays_there(db, places, role):
    clients, _ = db
    code, xy = places["inside"][role]
    r = post(clients[role], xy)
    assert r.status_code == 201, r.text
    inc = r.json()
    assert inc["group_code"] == code and inc["outside_your_grids"] is False
    assert inc["routing_notice"].startswith(ROUTED_OWN_GRID.split("{place}")[0])
    assert (
        clients[role]
        .post(f"/incidents/{inc['id']}/transitions", json={"action": "advance"})
        .status_code
        == 200
    )


def test_another_members_report_elsewhere_stays_out_of_sight(db, places):
    """Only the reporter follows a report outside their grids, not their grid's other staff."""
    clients, _ = db
    _, xy = places["outside"]
    inc = post(clients["grid_staff"], xy).json()
    other = clients["colleague"]
    assert other.get(f"/incidents/{inc['id']}").status_code == 404
    assert other.get(f"/incidents/{inc['id']}/attachments").status_code == 404
    assert inc["id"] not in {
        i["id"] for i in other.get("/incidents", params={"limit": 5000}).json()["items"]
    }


@pytest.mark.parametrize("where", ["inside", "outside"])
def test_external_ids_reveal_nothing_of_another_accounts_record(db, places, where):
    """A known external_id of another account is answered exactly as a fresh one (201, a new
    incident the caller sees); the reporter re-sending theirs gets their own back (200)."""
    clients, eng = db
    xy = places["outside"][1] if where == "outside" else places["inside"]["grid_staff"][1]
    first = post(clients["grid_staff"], xy, external_id=f"app-{where}-1")
    assert first.status_code == 201
    again = post(clients["grid_staff"], xy, external_id=f"app-{where}-1")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    for role in ("colleague", "supervisor", "command_center"):
        known = post(clients[role], xy, external_id=f"app-{where}-1")
        fresh = post(clients[role], xy, external_id=f"app-{where}-fresh-{role}")
        assert known.status_code == fresh.status_code == 201, (known.text, fresh.text)
        assert known.json()["id"] != first.json()["id"]
        assert set(known.json()) == set(fresh.json())
        assert clients[role].get(f"/incidents/{known.json()['id']}").status_code == 200
    with eng.connect() as c:
        n = c.execute(
            text("SELECT count(*) FROM incident WHERE external_id = :x"), {"x": f"app-{where}-1"}
        ).scalar_one()
    assert n == 4  # one per reporting account
