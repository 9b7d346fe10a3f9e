"""User text is never a template: template syntax planted in every writable text column, and sent
through the API, comes back literally on every page and document (issue 11, item 1)."""

from __future__ import annotations

import io

import pytest
import shapely
from shapely.geometry import MultiPolygon
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.conftest import database_copy, live_site, make_client

# Evaluated, the first part prints 1343433; the rest makes Jinja raise (undefined attribute,
# unclosed block and comment), so any compiled page would answer 500.
EVALUATED = "1343433"
PAYLOAD = "{{ 7*191919 }}{{ x.y }}{% if 1 %}{# c"
LITERAL = "{{ 7*191919 }}"

# Columns left alone: what logs the acts themselves (append-only by trigger), secrets the test
# logs in with, and system paths, digests and media types that are never shown as text.
SKIP_TABLES = {"audit_log", "incident_event", "alembic_version", "spatial_ref_sys"}
SKIP_COLUMNS = {"token_hash", "id_hash", "password_hash", "token_prefix", "digest", "source_path",
                "store_path", "content_type", "crs", "input_crs", "dataset_info.key"}


def plant_everywhere(conn) -> list[str]:
    """Prefix PAYLOAD to every text column that accepts it; the columns planted."""
    columns = conn.execute(text(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND data_type IN ('text', 'character varying') "
        "ORDER BY table_name, column_name"
    )).all()
    planted = []
    for table, column in columns:
        if table in SKIP_TABLES or {column, f"{table}.{column}"} & SKIP_COLUMNS:
            continue
        savepoint = conn.begin_nested()
        try:
            result = conn.execute(text(
                f'UPDATE "{table}" SET "{column}" = :p || "{column}" WHERE "{column}" IS NOT NULL'
            ), {"p": PAYLOAD})
            savepoint.commit()
            if result.rowcount:
                planted.append(f"{table}.{column}")
        except Exception:  # a CHECK (codes, enums) or a length limit: no free text there
            savepoint.rollback()
    return planted


@pytest.fixture(scope="module")
def planted_db(test_db_url, accounts):
    from gis.db import transaction
    from gis.flood.extents import save_extent

    with database_copy(test_db_url, "ssti") as url:
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as conn:
            village = conn.execute(text(
                "SELECT village_code FROM incident GROUP BY village_code ORDER BY count(*) DESC LIMIT 1"
            )).scalar_one()
            # The sample's incidents came from a file without reporters.
            conn.execute(text("UPDATE incident SET reporter_name = '王' WHERE reporter_name IS NULL"))
            planted = plant_everywhere(conn)
        with transaction(engine) as s:
            grid = shapely.from_wkb(bytes(s.execute(
                text("SELECT ST_AsBinary(geom) FROM grid WHERE valid_to IS NULL AND code = :c"),
                {"c": village},
            ).scalar_one()))
            extent = save_extent(s, MultiPolygon([grid.buffer(-0.0005)]), "drawn", PAYLOAD + "范围")
        engine.dispose()
        yield {"url": url, "village": village, "planted": planted, "extent_id": extent.id}


@pytest.fixture(scope="module")
def admin(planted_db):
    with make_client(planted_db["url"], "admin") as c:
        yield c


def test_every_shown_kind_of_user_text_was_planted(planted_db):
    must = {"grid.name", "incident.description", "incident.reporter_name", "household.head_name",
            "resident.name", "shelter.name", "natural_village.name", "staff.name"}
    assert must <= set(planted_db["planted"]), sorted(must - set(planted_db["planted"]))


def test_text_sent_through_the_api_is_stored_as_sent(admin, planted_db):
    point = admin.get("/grids/locate", params={"lon": 112.2, "lat": 33.0})
    body = {"category": "dispute", "dispute_kind": "neighbour", "description": PAYLOAD,
            "reporter_name": PAYLOAD, "occurred_at": "2026-12-01T09:00:00+08:00",
            "place": None}
    village = planted_db["village"]
    grid = admin.get("/grids", params={"parent_code": village, "limit": 1}).json()["features"][0]
    lon, lat = shapely.geometry.shape(grid["geometry"]).representative_point().coords[0]
    r = admin.post("/incidents", json={**body, "lon": lon, "lat": lat})
    assert r.status_code == 201, (point.status_code, r.text)
    incident = r.json()
    assert incident["description"] == PAYLOAD and incident["reporter_name"] == PAYLOAD
    r = admin.post(f"/incidents/{incident['id']}/transitions",
                   json={"action": "advance", "note": PAYLOAD})
    assert r.status_code == 200, r.text
    assert admin.get(f"/incidents/{incident['id']}").json()["history"][-1]["note"] == PAYLOAD


def page_paths(planted_db) -> dict[str, list[str]]:
    """Each page, then the data its script loads by URL (map pages embed no user text)."""
    village, extent = planted_db["village"], planted_db["extent_id"]
    return {
        "grid map": ["/maps/grids", f"/grids?parent_code={village}", f"/grids/{village}/card"],
        "household map": [f"/maps/households?grid_code={village}",
                          f"/households?grid_code={village}&format=geojson&limit=100"],
        "incident map": [f"/maps/incidents?grid_code={village}",
                         f"/incidents?grid_code={village}&format=geojson&limit=100"],
        "hot-spot map": ["/maps/hotspots?category=all", "/hotspots/map?category=all"],
        "明白卡 HTML": [f"/flood/checklist?extent={extent}&grid_code={village}"],
    }


@pytest.mark.parametrize("page", ["grid map", "household map", "incident map", "hot-spot map",
                                  "明白卡 HTML"])
def test_every_page_shows_the_template_syntax_literally(admin, planted_db, page):
    paths = page_paths(planted_db)[page]
    r = admin.get(paths[0])
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"].startswith("text/html")
    answers = [r] + [admin.get(path) for path in paths[1:]]
    for answer in answers:
        assert answer.status_code == 200, answer.text[:500]
        assert EVALUATED not in answer.text
    assert LITERAL in answers[-1].text


def test_the_printed_checklist_shows_the_template_syntax_literally(admin, planted_db):
    from pypdf import PdfReader

    r = admin.get("/flood/checklist", params={"extent": planted_db["extent_id"],
                                              "grid_code": planted_db["village"], "format": "pdf"})
    assert r.status_code == 200, r.text[:500]
    content = "".join(p.extract_text() for p in PdfReader(io.BytesIO(r.content)).pages)
    assert EVALUATED not in content
    assert "7*191919" in content


@pytest.mark.parametrize("path", [
    "/incidents?format=csv", "/incidents?format=geojson", "/households?format=csv",
    "/flood/households?format=csv", "/hotspots?format=csv&category=all",
])
def test_exports_carry_the_text_unevaluated(admin, planted_db, path):
    extra = {"extent": planted_db["extent_id"]} if path.startswith("/flood") else {}
    if path.startswith(("/households", "/incidents")):
        extra["grid_code"] = planted_db["village"]
    r = admin.get(path, params=extra)
    assert r.status_code == 200, r.text[:500]
    assert EVALUATED not in r.text
    assert "7*191919" in r.text


def test_branca_never_compiles_rendered_output():
    """The root of the class: whatever element wraps rendered text, it stays text."""
    from branca.element import Element, Figure, MacroElement
    from folium.template import Template

    import maps  # noqa: F401  (installs the literal rendering)

    class Echo(MacroElement):
        _template = Template("{% macro script(this, kwargs) %}{{ this.text }}{% endmacro %}"
                             "{% macro html(this, kwargs) %}<p>{{ this.text|e }}</p>{% endmacro %}")

        def __init__(self, value):
            super().__init__()
            self.text = value

    figure = Figure()
    figure.add_child(Echo(PAYLOAD))
    figure.html.add_child(Element(PAYLOAD))
    page = figure.render()
    assert EVALUATED not in page
    assert page.count(LITERAL) == 3


@pytest.mark.browser
def test_the_incident_popup_shows_the_text_as_written(planted_db, accounts):
    """In the browser too: the popup's text is the planted text, character for character."""
    from tests.browser import OfflinePageChecker

    village = planted_db["village"]
    with live_site(planted_db["url"]) as (base, browser):
        context = browser.new_context(viewport={"width": 1200, "height": 800}, locale="zh-CN")
        page = context.new_page()
        checker = OfflinePageChecker().attach(page)
        page.goto(base + "/login", wait_until="networkidle")
        page.fill("#username", accounts["admin"]["username"])
        page.fill("#password", accounts["admin"]["password"])
        with page.expect_navigation():
            page.click("button[type=submit]")
        page.goto(f"{base}/maps/incidents?grid_code={village}&state=all", wait_until="networkidle")
        page.wait_for_function("document.documentElement.dataset.wanggeLoaded === '1'")
        # The incidents come as vector tiles: go to the planted one and open its popup as a click does.
        eng = create_engine(planted_db["url"], poolclass=NullPool)
        with eng.connect() as c:
            planted_id, lon, lat = c.execute(text(
                "SELECT id, ST_X(geom), ST_Y(geom) FROM incident WHERE description = :p ORDER BY id DESC LIMIT 1"),
                {"p": PAYLOAD}).one()
        eng.dispose()
        page.evaluate("document.documentElement.removeAttribute('data-wangge-loaded')")
        page.evaluate("([lat, lon]) => window.wanggeMap.setView([lat, lon], 17, {animate: false})", [lat, lon])
        page.wait_for_function("document.documentElement.dataset.wanggeLoaded === '1'")
        texts = page.evaluate("""async (id) => {
            const p = window.wanggeIncidents.points().find(q => q.properties.id === id);
            await window.wanggeOpenIncident(p.properties, p.latlng);
            return Array.from(document.querySelectorAll('.leaflet-popup-content td')).map(td => td.textContent);
        }""", planted_id)
        context.close()
    assert any(t.startswith(PAYLOAD) for t in texts), texts
    assert not any(EVALUATED in t for t in texts)
    checker.assert_clean()
