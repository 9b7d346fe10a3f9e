"""Property-based fuzzing of the whole OpenAPI schema against the real app (schemathesis + hypothesis).

Every operation the app publishes gets generated requests: valid ones (schemathesis's positive
mode) and ones that break the schema (negative mode). They are sent in-process through the ASGI
app on a scratch copy of the sample database, first as the admin, so that requests get past the
permission checks into the deep code paths, writes included, then anonymously.

Random values rarely land inside the town, name a real grid or make a readable grid file, so in
positive mode about half the cases are "grounded" by hypothesis-drawn edits: points inside the
town, real grid codes, polygons over the town, and grid files (GeoJSON, zipped Shapefile,
GeoPackage, KML) made from real grids and then damaged. The same seed gives the same requests
for the same API (schemathesis draws on constants from the whole schema, so a new endpoint shifts
what the others get).

Two properties are checked on every response, and nothing else:

* no 5xx: schemathesis's `not_a_server_error` check; an exception that escapes the app counts too,
* every 4xx is RFC 9457 problem+json with `title` and `status` (`problem_json_issue` below), or, for a
  page (/maps, /pages, /m), the Chinese error page (`page_refusal_issue`).

The response-schema conformance checks of schemathesis are not run: they measure something else.
Failures are collected, not raised, so one run lists every failing request (method, path, query,
body summary). `bench/fuzz_long.py` runs the same driver for longer with a seed of your choice.
"""

from __future__ import annotations

import copy
import io
import json
import tempfile
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import hypothesis
import pytest
from hypothesis import HealthCheck, Phase, Verbosity
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from maps.shell import FIELD_NAMES, is_page_path

FUZZ_SEED = 20_260_101
MIN_REQUESTS = 2_000
# Examples per operation and generation mode come from a total, so the run keeps its length as
# the API grows (scaled by WEIGHTS). Operations without inputs run once: hypothesis stops when
# there is nothing left to vary, so about 2,400 requests are actually made.
ADMIN_TARGET = 3_000
ANONYMOUS_BUDGET = 6
WEIGHTS: dict[str, float] = {
    "GET /grids": 0.6,  # whole-town GeoJSON pages
    "POST /grids/import": 2.0,  # file formats, parsing, hierarchy validation: the most to explore
    # Whole-town answers that take seconds each (a workbook of every household, the quality report, GerryChain
    # runs): the fewest examples, most of them refused by validation anyway; each has its own tests.
    "GET /register/export.xlsx": 0.01,
    "GET /register/export.gpkg": 0.01,
    "GET /register/quality": 0.01,
    "GET /plans/suggestions": 0.01,
    "GET /plans/suggestions/impact": 0.01,
    "POST /plans/suggestions": 0.01,
    "POST /plans/suggestions/publish": 0.01,
    "GET /plans/units": 0.01,
}

PROBLEM_JSON = "application/problem+json"
CRS_NAMES = ["wgs84", "cgcs2000", "gcj02", "bd09", "EPSG:4326", "EPSG:4490", "EPSG:3857", "EPSG:4547",
             "EPSG:32649", "EPSG:0", "EPSG:999999", "", " ", "gcj-02", "urn:ogc:def:crs:OGC:1.3:CRS84"]


# --- results -----------------------------------------------------------------------------------


@dataclass
class Failure:
    kind: str
    operation: str
    mode: str
    status: int
    request: str
    response: str

    def __str__(self) -> str:
        return (f"[{self.kind}] {self.operation} ({self.mode}) -> {self.status}\n"
                f"  {self.request}\n  response: {self.response}")


@dataclass
class FuzzResult:
    requests: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_operation: Counter = field(default_factory=Counter)
    by_operation_status: Counter = field(default_factory=Counter)
    seconds_by_operation: Counter = field(default_factory=Counter)
    grounded: int = 0
    failures: list[Failure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # trouble generating cases, not app failures
    seconds: float = 0.0

    def count(self, label: str, status: int) -> None:
        self.requests += 1
        self.by_status[status] += 1
        self.by_operation[label] += 1
        self.by_operation_status[label, status] += 1

    def table(self) -> str:
        rows = []
        for op in sorted(self.by_operation):
            statuses = " ".join(
                f"{status}×{n}" for (o, status), n in sorted(self.by_operation_status.items()) if o == op
            )
            seconds = self.seconds_by_operation[op]
            rows.append(f"  {op:42} {self.by_operation[op]:5} {seconds:6.1f}s  {statuses}")
        return "\n".join(rows)

    def summary(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_status.items()))
        return (
            f"{self.requests} requests ({self.grounded} grounded) in {self.seconds:.1f}s; "
            f"statuses {{{statuses}}}; {len(self.failures)} failing responses; "
            f"{len(self.errors)} generation errors"
        )

    def report(self, title: str, max_failures: int = 30) -> str:
        lines = [f"{title}: {self.summary()}", self.table()]
        seen = set()
        for f in self.failures:
            key = (f.kind, f.operation, f.status)
            if key not in seen and len(seen) < max_failures:
                seen.add(key)
                lines.append(str(f))
        lines += self.errors
        return "\n".join(lines)


def _summarise(value, limit: int = 300) -> str:
    if isinstance(value, bytes):
        text_ = f"<{len(value)} bytes> {value[:80]!r}"
    else:
        try:
            text_ = json.dumps(value, ensure_ascii=False, default=repr)
        except (TypeError, ValueError):
            text_ = repr(value)
    return text_ if len(text_) <= limit else text_[:limit] + f"… ({len(text_)} chars)"


def describe_request(case, extra: dict | None = None) -> str:
    parts = [f"{case.method.upper()} {case.formatted_path}"]
    if case.query:
        parts.append(f"query={_summarise(case.query, 200)}")
    if case.headers:
        parts.append(f"headers={_summarise(case.headers, 200)}")
    if extra and "files" in extra:
        parts.append("files=" + _summarise(
            [(n, (f[0], f[1] if isinstance(f[1], str) else f"<{len(f[1])} bytes> {f[1][:60]!r}"))
             for n, f in extra["files"]]))
    else:
        body = getattr(case, "body", None)
        if body is not None and type(body).__name__ != "NotSet":
            parts.append(f"body={_summarise(body)}")
            if case.media_type:
                parts.append(f"({case.media_type})")
    return " ".join(parts)


def page_refusal_issue(response) -> str | None:
    """Why a 4xx answer of a page is not the Chinese error page, or None when it is."""
    ctype = response.headers.get("content-type")
    ctype = ctype[0] if isinstance(ctype, list) else ctype
    if not ctype or not ctype.startswith("text/html"):
        return f"content-type is {ctype!r}, not the Chinese error page"
    text = response.content.decode("utf-8", "replace")
    if f'id="wangge-error-page" data-status="{response.status_code}"' not in text:
        return "not the shell's error page for this status"
    return None


def refusal_issue(path: str, response) -> str | None:
    """Pages (maps.shell.is_page_path) refuse with a Chinese page; everything else with problem+json."""
    return page_refusal_issue(response) if is_page_path(path) else problem_json_issue(response)


def problem_json_issue(response) -> str | None:
    """Why a 4xx response is not a proper problem+json document, or None when it is."""
    ctype = response.headers.get("content-type")
    ctype = ctype[0] if isinstance(ctype, list) else ctype
    if not ctype or ctype.split(";")[0].strip().lower() != PROBLEM_JSON:
        return f"content-type is {ctype!r}, not {PROBLEM_JSON}"
    try:
        body = json.loads(response.content)
    except ValueError:
        return "the body is not JSON"
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    if not isinstance(body.get("title"), str) or not body["title"]:
        return "no `title`"
    if body.get("status") != response.status_code:
        return f"`status` is {body.get('status')!r}, the response is {response.status_code}"
    return None


# --- what the fuzzer knows about the town ------------------------------------------------------


@dataclass
class Town:
    bbox: tuple[float, float, float, float]
    codes: list[str]
    user_ids: list[int]
    village: dict  # FeatureCollection: the group grids of one village, as exported
    files: dict[str, bytes]  # suffix -> the village as a real file in that format


def load_town(url) -> Town:
    import geopandas as gpd
    import shapely

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            bbox = tuple(conn.execute(text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                "(SELECT ST_Extent(geom) AS e FROM grid WHERE valid_to IS NULL) s")).one())
            codes = list(conn.execute(text(
                "SELECT code FROM grid WHERE valid_to IS NULL ORDER BY code")).scalars())
            user_ids = list(conn.execute(text("SELECT id FROM app_user ORDER BY id")).scalars())
            village = conn.execute(text(
                "SELECT min(parent_code) FROM grid WHERE level = 4 AND valid_to IS NULL")).scalar_one()
            rows = conn.execute(text(
                "SELECT code, name, level, parent_code, ST_AsGeoJSON(geom, 9) AS g FROM grid "
                "WHERE parent_code = :p AND valid_to IS NULL ORDER BY code"), {"p": village}).all()
    finally:
        engine.dispose()
    features = [
        {"type": "Feature", "properties": {"code": r.code, "name": r.name, "level": r.level,
                                           "parent_code": r.parent_code},
         "geometry": json.loads(r.g)}
        for r in rows
    ]
    fc = {"type": "FeatureCollection", "features": features}
    frame = gpd.GeoDataFrame(
        [f["properties"] for f in features],
        geometry=[shapely.geometry.shape(f["geometry"]) for f in features],
        crs="EPSG:4326",
    )
    files: dict[str, bytes] = {".geojson": json.dumps(fc, ensure_ascii=False).encode()}
    with tempfile.TemporaryDirectory(prefix="wangge-fuzz-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Shapefile's 10-character field names
        tmp = Path(tmp)
        frame.to_file(tmp / "grids.gpkg", driver="GPKG", engine="pyogrio")
        files[".gpkg"] = (tmp / "grids.gpkg").read_bytes()
        shp_dir = tmp / "shp"
        shp_dir.mkdir()
        frame.to_file(shp_dir / "grids.shp", engine="pyogrio", encoding="utf-8")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for part in sorted(shp_dir.iterdir()):
                zf.write(part, part.name)
        files[".zip"] = buf.getvalue()
        try:
            frame.to_file(tmp / "grids.kml", driver="KML", engine="pyogrio")
            files[".kml"] = (tmp / "grids.kml").read_bytes()
        except Exception:  # noqa: BLE001 - a GDAL without the KML writer: KML is fuzzed from text only
            pass
    return Town(bbox=bbox, codes=codes, user_ids=user_ids, village=fc, files=files)


# --- grounding: hypothesis-drawn edits that keep a case near real data -------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
small_text = st.text(max_size=30)


def _point(draw, town: Town) -> tuple[float, float]:
    x0, y0, x1, y1 = town.bbox
    mx, my = (x1 - x0) * 0.2, (y1 - y0) * 0.2
    lon = draw(st.floats(x0 - mx, x1 + mx) | st.sampled_from([x0, x1, (x0 + x1) / 2]))
    lat = draw(st.floats(y0 - my, y1 + my) | st.sampled_from([y0, y1, (y0 + y1) / 2]))
    return lon, lat


def _code(draw, town: Town) -> str:
    return draw(st.sampled_from(town.codes) | st.from_regex(r"\A\d{15}\Z") | small_text)


def _polygon(draw, town: Town):
    lon, lat = _point(draw, town)
    w = draw(st.floats(1e-9, 0.05) | st.sampled_from([0.0, -0.01, 1e6]))
    h = draw(st.floats(1e-9, 0.05) | st.sampled_from([0.0, -0.01]))
    ring = [[lon, lat], [lon + w, lat], [lon + w, lat + h], [lon, lat + h], [lon, lat]]
    shape = draw(st.sampled_from(["rect", "bowtie", "open", "latlon", "short", "3d", "multi", "feature",
                                  "hole", "point", "empty"]))
    if shape == "bowtie":
        ring = [ring[0], ring[2], ring[1], ring[3], ring[0]]
    elif shape == "open":
        ring = ring[:-1]
    elif shape == "latlon":
        ring = [[y, x] for x, y in ring]
    elif shape == "short":
        ring = ring[:2]
    elif shape == "3d":
        ring = [[x, y, draw(finite)] for x, y in ring]
    geom = {"type": "Polygon", "coordinates": [ring]}
    if shape == "multi":
        geom = {"type": "MultiPolygon", "coordinates": [[ring], [[[x + 2 * w, y] for x, y in ring]]]}
    elif shape == "feature":
        geom = {"type": "Feature", "properties": {}, "geometry": geom}
    elif shape == "hole":
        inner = [[lon + w * 0.25, lat + h * 0.25], [lon + w * 0.75, lat + h * 0.25],
                 [lon + w * 0.75, lat + h * 0.75], [lon + w * 0.25, lat + h * 0.25]]
        geom = {"type": "Polygon", "coordinates": [ring, inner]}
    elif shape == "point":
        geom = {"type": "Point", "coordinates": [lon, lat]}
    elif shape == "empty":
        geom = {"type": "Polygon", "coordinates": []}
    return geom


def _mutated_village(draw, town: Town) -> dict:
    fc = copy.deepcopy(town.village)
    feats = fc["features"]
    keep = draw(st.lists(st.sampled_from(range(len(feats))), min_size=1, max_size=len(feats), unique=True))
    fc["features"] = feats = [feats[i] for i in sorted(keep)]
    for f in feats:
        props, geom = f["properties"], f["geometry"]
        what = draw(st.sampled_from(["keep"] * 8 + ["rename", "shift", "scale", "drop_prop", "level",
                                     "parent", "code", "geometry", "swap", "nan", "null_geometry"]))
        if what == "rename":
            props["name"] = draw(small_text)
        elif what in ("shift", "scale", "swap"):
            dx, dy = draw(st.floats(-0.01, 0.01)), draw(st.floats(-0.01, 0.01))
            k = draw(st.floats(0.5, 1.5))

            def move(c, what=what, dx=dx, dy=dy, k=k):
                if isinstance(c[0], list):
                    return [move(x) for x in c]
                x, y = c[0], c[1]
                return [y, x] if what == "swap" else [x + dx, y + dy] if what == "shift" else [x * k, y * k]

            geom["coordinates"] = move(geom["coordinates"])
        elif what == "drop_prop":
            props.pop(draw(st.sampled_from(sorted(props))))
        elif what == "level":
            props["level"] = draw(st.integers(-2, 6) | small_text | st.none() | finite)
        elif what == "parent":
            props["parent_code"] = draw(st.sampled_from(town.codes) | small_text | st.none())
        elif what == "code":
            props["code"] = draw(st.sampled_from(town.codes) | small_text | st.integers())
        elif what == "geometry":
            f["geometry"] = _polygon(draw, town)
            if f["geometry"]["type"] == "Feature":
                f["geometry"] = f["geometry"]["geometry"]
        elif what == "nan":
            geom["coordinates"][0][0][0] = float("nan")
        elif what == "null_geometry":
            f["geometry"] = None
    if draw(st.booleans()):
        fc["crs"] = {"type": "name", "properties": {"name": draw(st.sampled_from(CRS_NAMES) | small_text)}}
    return fc


def _grid_file(draw, town: Town) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(
        [".geojson"] * 3 + [".json", ".zip", ".zip", ".gpkg", ".gpkg", ".kml", ".shp", ""]))
    how = draw(st.sampled_from(["real"] * 4 + ["truncated", "random", "empty"]))
    if suffix in (".geojson", ".json") and how == "real":
        data = json.dumps(_mutated_village(draw, town), ensure_ascii=False).encode()
    elif how == "random":
        data = draw(st.binary(max_size=2000))
    elif how == "empty":
        data = b""
    else:
        real = town.files.get(suffix, town.files[".geojson"])
        if suffix == ".zip" and draw(st.booleans()):
            real = _damaged_zip(draw, real)
        data = real if how == "real" else real[: draw(st.integers(0, max(len(real) - 1, 0)))]
    name = draw(st.sampled_from(["grids", "网格", "a b", "..", "x" * 200])) + suffix
    return name, data


def _damaged_zip(draw, data: bytes) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    names = src.namelist()
    drop = draw(st.sets(st.sampled_from(names), max_size=len(names)))
    extra = draw(st.lists(st.tuples(st.sampled_from(["x.shp", "y.dbf", "dir/z.shp", "__MACOSX/._g.shp",
                                                     "g.cpg", "g.prj"]), st.binary(max_size=200)),
                          max_size=3, unique_by=lambda entry: entry[0]))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for n in names:
            if n not in drop:
                out.writestr(n, src.read(n))
        for n, content in extra:
            out.writestr(n, content)
    return buf.getvalue()


def _ground_locate_get(case, draw, town):
    lon, lat = _point(draw, town)
    case.query = {"lon": lon, "lat": lat}
    if draw(st.booleans()):
        case.query["crs"] = draw(st.sampled_from(CRS_NAMES) | small_text)
    if draw(st.booleans()):
        # Every other grounded case is a point inside a real grid, in WGS84, so the lookup itself
        # is reached whatever the seed (a new endpoint anywhere shifts the draws).
        import shapely.geometry

        feature = draw(st.sampled_from(town.village["features"]))
        inside = shapely.geometry.shape(feature["geometry"]).representative_point()
        case.query = {"lon": inside.x, "lat": inside.y}


def _ground_locate_post(case, draw, town):
    points = [dict(zip(("lon", "lat"), _point(draw, town), strict=True))
              for _ in range(draw(st.integers(0, 20)))]
    case.body = {"points": points, "include_staff": draw(st.booleans())}
    if draw(st.booleans()):
        case.body["crs"] = draw(st.sampled_from(CRS_NAMES) | small_text)


def _ground_grids(case, draw, town):
    q = {}
    if draw(st.booleans()):
        q["level"] = draw(st.integers(1, 4))
    if draw(st.booleans()):
        q["parent_code"] = draw(st.sampled_from(town.codes))
    if draw(st.booleans()):
        (ax, ay), (bx, by) = _point(draw, town), _point(draw, town)
        q["bbox"] = draw(st.sampled_from([f"{min(ax, bx)},{min(ay, by)},{max(ax, bx)},{max(ay, by)}",
                                          f"{ax},{ay},{bx},{by}", f"{ax},{ay}", "nan,0,1,1"]))
    if draw(st.booleans()):
        q["limit"] = draw(st.integers(1, 20))
    if draw(st.booleans()):
        q["offset"] = draw(st.integers(0, 300))
    case.query = q


def _ground_history(case, draw, town):
    # A grid of the town: the grounded cases are the ones meant to reach the real work (the other cases
    # already send any code).
    case.path_parameters = {"code": draw(st.sampled_from(town.codes))}


def _ground_households(case, draw, town):
    q = {"limit": draw(st.integers(1, 50)), "format": draw(st.sampled_from(["json", "geojson", "csv"]))}
    if draw(st.booleans()):
        q["grid_code"] = draw(st.sampled_from(town.codes))
    if draw(st.booleans()):
        (ax, ay), (bx, by) = _point(draw, town), _point(draw, town)
        q["bbox"] = f"{min(ax, bx)},{min(ay, by)},{max(ax, bx)},{max(ay, by)}"
    if draw(st.booleans()):
        q["reason"] = draw(small_text)
    case.query = q


def _ground_emergency(case, draw, town):
    # Grounded cases are meant to get through: printable text (no NUL or other control characters,
    # which the API rightly refuses), not blank.
    printable = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40).filter(str.strip)
    case.body = {"title": draw(printable),
                 "reason": draw(printable),
                 "extent": _polygon(draw, town)}
    if draw(st.booleans()):
        case.body["crs"] = draw(st.sampled_from(CRS_NAMES))
    if draw(st.booleans()):
        # Every other grounded case is a plain valid extent, so the declaration itself is reached
        # whatever the seed (the adversarial polygons and CRS names above are mostly refused).
        lon, lat = _point(draw, town)
        case.body["extent"] = {"type": "Polygon", "coordinates": [
            [[lon, lat], [lon + 0.002, lat], [lon + 0.002, lat + 0.002], [lon, lat + 0.002], [lon, lat]]]}
        case.body.pop("crs", None)


def _ground_create_user(case, draw, town):
    case.body = {
        "username": draw(st.from_regex(r"\A[A-Za-z0-9_.@-]{2,20}\Z")),
        "password": draw(st.sampled_from(["correct-horse-battery", "short", "aaaaaaaaaaaa"])
                         | st.text(max_size=20)),
        "role": draw(st.sampled_from(["admin", "command_center", "emergency", "planner", "grid_staff",
                                      "supervisor"])),
        "scope_codes": draw(st.lists(st.sampled_from(town.codes), max_size=3)),
    }


def _ground_user_path(case, draw, town):
    case.path_parameters = {**(case.path_parameters or {}), "user_id": draw(st.sampled_from(town.user_ids))}


def _ground_import(case, draw, town):
    if draw(st.integers(0, 3)) == 0:  # the village as exported, in any format: a valid redraw
        suffix = draw(st.sampled_from(sorted(town.files)))
        name, data = "grids" + suffix, town.files[suffix]
    else:
        name, data = _grid_file(draw, town)
    files = [("file", (name, data))]
    if draw(st.integers(0, 2)) == 0:
        files.append(("crs", (None, draw(st.sampled_from(CRS_NAMES) | small_text))))
    dry_run = draw(st.sampled_from(["true", "false"] * 3 + ["1", "0", "yes", "maybe", ""]))
    files.append(("dry_run", (None, dry_run)))
    return {"files": files}


GROUNDING: dict[str, Callable] = {
    "GET /grids/locate": _ground_locate_get,
    "POST /grids/locate": _ground_locate_post,
    "GET /grids": _ground_grids,
    "GET /grids/{code}/history": _ground_history,
    "GET /households": _ground_households,
    "POST /emergencies": _ground_emergency,
    "POST /admin/users": _ground_create_user,
    "PATCH /admin/users/{user_id}": _ground_user_path,
    "GET /admin/users/{user_id}/tokens": _ground_user_path,
    "POST /admin/users/{user_id}/tokens": _ground_user_path,
    "POST /grids/import": _ground_import,
}


# --- the driver --------------------------------------------------------------------------------


def load_schema(app):
    import schemathesis

    return schemathesis.openapi.from_asgi("/openapi.json", app)


def stop_app(app) -> None:
    """End the lifespan schemathesis started for `app` (it keeps one per app until exit)."""
    from schemathesis.python import asgi

    lifespan = asgi._LIFESPANS.pop(id(app), None)  # noqa: SLF001 - there is no public per-app stop
    if lifespan is not None and lifespan.error is None:
        lifespan.stop()


# Streams that never end by themselves cannot be sent through schemathesis's in-process client (it reads an
# answer to its end): the live feed's parameters are checked in tests/test_live_feed.py over a real server.
STREAMING = frozenset({"GET /events/incidents"})


def operations(schema) -> list:
    found = (r.ok() for r in schema.get_all_operations())
    return sorted((op for op in found if f"{op.method.upper()} {op.path}" not in STREAMING),
                  key=lambda op: (op.path, op.method))


def _sender(result: FuzzResult, label, mode_name, headers, protect, town):
    """The hypothesis test body for one operation and mode: ground, send, count, check."""
    from schemathesis.checks import not_a_server_error

    ground = GROUNDING.get(label) if town is not None and mode_name == "positive" else None

    def send(case, data):
        extra = {}
        if ground is not None and data.draw(st.booleans(), label="grounded"):
            extra = ground(case, data.draw, town) or {}
            result.grounded += 1
        if protect is not None:
            protect(case)
        try:
            # A generous timeout: a slow CI machine is not a failure (schemathesis's default is 10 s).
            response = case.call(headers=dict(headers or {}), max_redirects=0, timeout=120, **extra)
        except Exception as exc:  # noqa: BLE001 - escaped the app (a server answers 500) or timed out
            result.count(label, 500)
            first = str(exc).splitlines()[0][:300] if str(exc) else ""
            result.failures.append(Failure(f"5xx ({type(exc).__name__} escaped)", label, mode_name, 500,
                                           describe_request(case, extra), first))
            return
        status = response.status_code
        result.count(label, status)
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except Exception:  # noqa: BLE001 - the check failed: recorded, the run goes on
            kind = "5xx" if status >= 500 else "not_a_server_error"
            result.failures.append(Failure(kind, label, mode_name, status, describe_request(case, extra),
                                           response.content[:300].decode("utf-8", "replace")))
        if 400 <= status < 500 and (issue := refusal_issue(case.path, response)):
            result.failures.append(Failure("refusal: " + issue, label, mode_name, status,
                                           describe_request(case, extra),
                                           response.content[:300].decode("utf-8", "replace")))

    return send


def fuzz(
    schema,
    *,
    budget: int,
    seed: int,
    headers: dict[str, str] | None = None,
    modes: Iterable[str] = ("positive", "negative"),
    protect: Callable | None = None,
    town: Town | None = None,
    weights: dict[str, float] | None = None,
    only: Iterable[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> FuzzResult:
    """About `budget` examples per operation and mode (scaled by `weights`), each sent and checked.

    `protect(case)` may rewrite a case before it is sent (so the fuzzer does not revoke its own
    token); with `town`, positive cases are grounded in real data half of the time. `only` limits
    the run to some operations ("POST /grids/import")."""
    from schemathesis.generation import GenerationMode

    weights = WEIGHTS if weights is None else weights
    result = FuzzResult()
    started = time.perf_counter()
    for op in operations(schema):
        label = f"{op.method.upper()} {op.path}"
        if only is not None and label not in only:
            continue
        n = max(5, round(budget * weights.get(label, 1.0)))
        for mode_name in modes:
            send = _sender(result, label, mode_name, headers, protect, town)
            run = hypothesis.given(
                case=op.as_strategy(generation_mode=GenerationMode(mode_name)), data=st.data()
            )(send)
            run = hypothesis.settings(
                max_examples=n,
                database=None,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
                verbosity=Verbosity.quiet,
                report_multiple_bugs=False,
            )(run)
            run = hypothesis.seed(seed)(run)
            before, op_started = result.requests, time.perf_counter()
            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing schema-breaking to generate for an operation without inputs
            except Exception as exc:  # noqa: BLE001 - generation trouble is reported, not a crash
                result.errors.append(f"{label} ({mode_name}): {type(exc).__name__}: {str(exc)[:300]}")
            result.seconds_by_operation[label] += time.perf_counter() - op_started
            if progress:
                progress(f"{label:42} {mode_name:8} {result.requests - before:5} requests")
    result.seconds = time.perf_counter() - started
    return result


def protector(url, admin_username: str) -> Callable:
    """A `protect` hook: the fuzzer must not deactivate or demote itself, nor revoke its own token."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            user_id = conn.execute(text("SELECT id FROM app_user WHERE username = :u"),
                                   {"u": admin_username}).scalar_one()
            token_ids = set(conn.execute(text("SELECT id FROM api_token WHERE user_id = :u"),
                                         {"u": user_id}).scalars())
    finally:
        engine.dispose()

    def protect(case) -> None:
        params = case.path_parameters or {}
        if params.get("user_id") == user_id and case.method.upper() == "PATCH":
            params["user_id"] = user_id + 10_000_000
        if params.get("token_id") in token_ids:
            params["token_id"] = params["token_id"] + 10_000_000

    return protect


# --- the test ----------------------------------------------------------------------------------


@pytest.fixture
def fuzz_app(scratch_db_url, accounts):
    from api.main import create_app
    from gis.settings import Settings

    # A small pool (the fixtures' settings have none): a connection per request would double the time.
    settings = Settings(DATABASE_URL=scratch_db_url.render_as_string(hide_password=False),
                        database_pool_size=2)
    app = create_app(settings)
    yield app
    stop_app(app)


def test_fuzz_whole_schema(fuzz_app, scratch_db_url, accounts):
    started = time.perf_counter()
    schema = load_schema(fuzz_app)
    labels = {f"{op.method.upper()} {op.path}" for op in operations(schema)}
    assert len(labels) >= 20, labels  # the whole API, not a stub

    town = load_town(scratch_db_url)
    admin = fuzz(
        schema,
        budget=max(20, -(-ADMIN_TARGET // (2 * len(labels)))),
        seed=FUZZ_SEED,
        headers={"Authorization": f"Bearer {accounts['admin']['token']}"},
        protect=protector(scratch_db_url, accounts["admin"]["username"]),
        town=town,
    )
    anonymous = fuzz(schema, budget=ANONYMOUS_BUDGET, seed=FUZZ_SEED + 1, modes=("positive",))

    total = admin.requests + anonymous.requests
    report = (admin.report("admin") + "\n" + anonymous.report("anonymous")
              + f"\ntotal: {total} requests in {time.perf_counter() - started:.1f}s")
    print(report)
    assert not admin.failures and not anonymous.failures, report
    assert not admin.errors and not anonymous.errors, report
    assert total >= MIN_REQUESTS, report
    # Every operation was reached as the admin; the token stayed valid throughout (the only 401s
    # are wrong passwords at /auth/login) ...
    assert set(admin.by_operation) == labels, report
    assert {op for op, status in admin.by_operation_status if status == 401} <= {"POST /auth/login"}, report
    # ... and the grounded cases got past validation into the real work.
    for label in ("GET /grids/locate", "POST /grids/locate", "GET /grids/{code}/history", "POST /emergencies",
                  "POST /admin/users", "POST /grids/import"):
        assert any(s < 300 for (op, s) in admin.by_operation_status if op == label), (label, report)
    assert anonymous.by_status.get(401, 0) > 0, report


# --- what the fuzzer found: each once a 5xx, kept as plain regression cases ---------------------

POLYGON = {"type": "Polygon", "coordinates": [[[113, 33], [113.01, 33], [113.01, 33.01], [113, 33]]]}
FOUND = [
    # PostgreSQL text cannot hold NUL: a 422 naming the field, not a DataError.
    ("POST", "/auth/login", {"json": {"username": "a\x00b", "password": "x"}}, ["body", "username"]),
    ("POST", "/admin/users", {"json": {"username": "abcd", "password": "correct-horse-battery",
                                       "role": "planner", "display_name": "a\x00b"}}, ["body", "display_name"]),
    ("PATCH", "/admin/users/2", {"json": {"display_name": "a\x00b"}}, ["body", "display_name"]),
    ("POST", "/admin/users/2/tokens", {"json": {"name": "a\x00b"}}, ["body", "name"]),
    ("POST", "/emergencies", {"json": {"title": "a\x00b", "reason": "r", "extent": POLYGON}}, ["body", "title"]),
    ("POST", "/emergencies", {"json": {"title": "t", "reason": "a\x00b", "extent": POLYGON}}, ["body", "reason"]),
    ("POST", "/emergencies/1/close", {"json": {"reason": "a\x00b"}}, ["body", "reason"]),
    ("GET", "/audit", {"params": {"actor": "a\x00b"}}, ["query", "actor"]),
    ("GET", "/audit", {"params": {"action": "a\x00b"}}, ["query", "action"]),
    ("GET", "/audit", {"params": {"resource": "a\x00b"}}, ["query", "resource"]),
    ("GET", "/audit", {"params": {"resource_id": "a\x00b"}}, ["query", "resource_id"]),
    ("GET", "/audit/export", {"params": {"actor": "a\x00b"}}, ["query", "actor"]),
    ("GET", "/households", {"params": {"reason": "a\x00b"}}, ["query", "reason"]),
    ("GET", "/households/1", {"params": {"reason": "a\x00b"}}, ["query", "reason"]),
    ("POST", "/incidents", {"json": {"category": "safety_hazard", "description": "a\x00b",
                                     "occurred_at": "2026-11-01T08:00:00+08:00"}}, ["body", "description"]),
    ("POST", "/incidents/1/transitions", {"json": {"action": "advance", "note": "a\x00b"}}, ["body", "note"]),
    # A lone surrogate echoed into the problem body could not be encoded as UTF-8.
    ("POST", "/grids/locate", {"content": b'{"crs": "a\\ud800b", "points": []}',
                               "headers": {"content-type": "application/json"}}, ["body", "crs"]),
    # An offset past bigint reached SQL.
    ("GET", "/grids", {"params": {"offset": 658076823010252816384}}, ["query", "offset"]),
]


@pytest.fixture(scope="module")
def found_client(test_db_url, accounts):
    """An admin client on one scratch copy shared by these cases (none of them may write)."""
    from tests.conftest import database_copy, make_client

    with database_copy(test_db_url) as url, make_client(url, "admin") as client:
        yield client


@pytest.mark.parametrize(("method", "path", "kwargs", "loc"), FOUND,
                         ids=[f"{m} {p} {'.'.join(map(str, loc))}" for m, p, _, loc in FOUND])
def test_found_by_fuzzing(found_client, method, path, kwargs, loc):
    resp = found_client.request(method, path, **kwargs)
    assert resp.status_code == 422, resp.text[:300]
    assert problem_json_issue(resp) is None, resp.text[:300]
    assert loc in [e["loc"] for e in resp.json()["errors"]], resp.text[:500]


def _reason_operations() -> list[tuple[str, str]]:
    """Every operation that takes the audit log's `reason` query parameter, from the OpenAPI document."""
    from api.main import create_app

    doc = create_app().openapi()
    return sorted(
        (method.upper(), path)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if any(p["in"] == "query" and p["name"] == "reason" for p in op.get("parameters", []))
    )


@pytest.mark.parametrize(("method", "path"), _reason_operations(), ids=lambda v: str(v))
def test_every_reason_parameter_refuses_nul(found_client, method, path):
    """The `reason` kept in the audit log is one declared parameter (api.deps.Reason) on every route
    that takes it: NUL, which PostgreSQL text cannot hold, is a 422 naming it, never a 5xx."""
    concrete = path.replace("{household_id}", "1").replace("{unit_id}", "411421100201000")
    resp = found_client.request(method, concrete, params={"reason": "a\x00b"})
    assert resp.status_code == 422, (path, resp.text[:300])
    if is_page_path(path):
        # A page says it in Chinese, naming the field.
        assert page_refusal_issue(resp) is None and f"{FIELD_NAMES['reason']}：" in resp.text, resp.text[:500]
    else:
        assert ["query", "reason"] in [e["loc"] for e in resp.json()["errors"]], resp.text[:500]
