"""Response models of the JSON API: what every route answers, as /openapi.json documents it.

Each model describes the shape a route returns today; tests/test_openapi_schemas.py checks real answers
against them key for key. Routes that build their own `Response` (the incident routes, GeoJSON, exports)
are not re-validated by FastAPI: their model documents them. Routes that return plain data are validated
and filtered by their model, so every route with a model built from data is declared with `**DATA`
(`response_model_exclude_unset`): a key the data does not carry (a list without `next`, a flood row
without a shelter) stays absent instead of appearing as null, as before the models.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from gis import errors
from gis.auth.roles import Permission, Role
from gis.incidents.categories import Category
from gis.incidents.loop import State
from gis.spreadsheet import CSV_MEDIA_TYPE, XLSX_MEDIA_TYPE

GEOJSON_MEDIA_TYPE = "application/geo+json"
PROBLEM_MEDIA_TYPE = "application/problem+json"


def _iso(value: object) -> object:
    # The same text FastAPI's encoder wrote for a datetime before the models (isoformat, "+00:00").
    return value.isoformat() if isinstance(value, (dt.datetime, dt.date)) else value


# Times are ISO 8601 text with their offset; ints stay ints and floats floats (`Real`), as the data has them.
IsoTime = Annotated[str, BeforeValidator(_iso), WithJsonSchema({"type": "string", "format": "date-time"})]
IsoDate = Annotated[str, WithJsonSchema({"type": "string", "description": "YYYY-MM-DD; masked: YYYY-**-**"})]
# The grids at an instant: GET /grids and the grid tiles take it alike.
AsOf = Annotated[dt.datetime | None, Query(description="the grids as they were at this instant (ISO 8601 with "
                                                        "offset); default now")]


def checked_as_of(as_of: dt.datetime | None) -> dt.datetime | None:
    """An instant needs its time zone (422 naming query.as_of)."""
    if as_of is not None and as_of.tzinfo is None:
        raise errors.InputError(errors.Problem(("query", "as_of"),
                                               "as_of needs its time zone, e.g. 2026-12-06T08:00:00+08:00"))
    return as_of


Real = Annotated[int | float, WithJsonSchema({"type": "number"})]
GridCode = Annotated[str, WithJsonSchema({"type": "string", "pattern": r"^\d{15}$", "description": "a grid code"})]
Level = Annotated[int, Field(ge=1, le=4, description="1 town, 2 area, 3 village, 4 group grid")]
PersonalFields = Literal["shown", "masked"]
ExtentSource = Literal["model", "upload", "drawn"]
FloodMode = Literal["fluvial", "pluvial"]
# Query and page parameters echoed in an answer.
Offset = Annotated[int, Field(ge=0, description="rows skipped before this page")]
NextLink = Annotated[str | None, Field(description="the URL of the next page; absent or null on the last")]


class GeoJSONResponse(JSONResponse):
    """Only documents the media type: the GeoJSON routes build their own Response."""

    media_type = GEOJSON_MEDIA_TYPE


class DownloadResponse(Response):
    """Only documents a route that answers a file (CSV, xlsx, PDF, a photo): its `responses=` name the types."""


# --- GeoJSON ------------------------------------------------------------------------------------

Position = list[float]


class Point(BaseModel):
    type: Literal["Point"]
    coordinates: Position


class Polygon(BaseModel):
    type: Literal["Polygon"]
    coordinates: list[list[Position]]


class MultiPolygon(BaseModel):
    type: Literal["MultiPolygon"]
    coordinates: list[list[list[Position]]]


Area = Annotated[Polygon | MultiPolygon, Field(discriminator="type")]


# --- errors -------------------------------------------------------------------------------------


class ProblemItem(BaseModel):
    model_config = ConfigDict(title="ProblemItem")

    loc: list[str | int] = Field(description='where: ("query", "bbox"), ("body", "points", 3, "lon"), a row …')
    msg: str
    type: str
    ctx: dict[str, Any] | None = None


class Problem(BaseModel):
    """RFC 9457 problem details (api/problems.py): every 4xx and 5xx answer."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="a URI naming the kind of problem")
    title: str
    status: int
    detail: str | None = None
    errors: list[ProblemItem] | None = Field(default=None, description="every invalid field (422)")


_PROBLEM_WHEN = {
    401: "not logged in, or the token is unknown, expired or revoked",
    403: "the role lacks the permission, or the resource is outside the caller's grids",
    404: "not found, or not visible to the caller",
    409: "conflicts with the current state",
    413: "the body or file is larger than allowed",
    422: "invalid input: `errors` names every field and the reason",
    429: "too many failed logins: wait Retry-After seconds",
    503: "the database is busy: retry after Retry-After seconds",
}


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its $defs written in place (an OpenAPI response keeps no $defs)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    inlined: dict[str, Any] = walk(schema)
    return inlined


PROBLEM_SCHEMA = _inline(Problem.model_json_schema(mode="serialization"))


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries: each status answered as problem+json."""
    return {
        status: {"description": _PROBLEM_WHEN[status],
                 "content": {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}}}
        for status in statuses
    }


# The errors any route behind a login may answer; READ adds 422 for query parameters, ONE 404.
SIGNED_IN = (401, 403, 503)
READ = (*SIGNED_IN, 422)
ONE = (*READ, 404)


def formats(status: int = 200, *, geojson: type[BaseModel] | None = None, tables: bool = True,
            also: tuple[int, ...] = READ) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route whose `format` parameter picks GeoJSON or a CSV/xlsx download besides JSON."""
    content: dict[str, Any] = {}
    if geojson is not None:
        content[GEOJSON_MEDIA_TYPE] = {"schema": _inline(geojson.model_json_schema(mode="serialization"))}
    if tables:
        content[CSV_MEDIA_TYPE] = {"schema": {"type": "string", "description": "UTF-8 CSV with a BOM"}}
        content[XLSX_MEDIA_TYPE] = {"schema": {"type": "string", "format": "binary"}}
    return {status: {"content": content}, **problems(*also)}


def download(*media_types: str, also: tuple[int, ...] = READ) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route that answers only a file (CSV, xlsx, PDF, an image)."""
    return {200: {"content": {m: {"schema": {"type": "string", "format": "binary"}} for m in media_types}},
            **problems(*also)}


def reported_again(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """`responses=` of the intake: 200 with the stored incident when the external_id was reported before."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {200: {"description": "already reported (same external_id): the stored incident",
                  "content": {"application/json": {"schema": ref}}}, **problems(*READ, 413)}


# Keyword arguments of every route that returns plain data (validated and filtered by its model).
DATA: dict[str, Any] = {"response_model_exclude_unset": True}


# --- service ------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]
    postgis: str = Field(description="PostGIS library version")


class TownCounts(BaseModel):
    grids_by_level: dict[str, int] = Field(description='level ("1"…"4") -> current grids')
    natural_villages: int
    households: int
    residents: int
    residents_by_household_counts: int = Field(description="the sum of the households' resident counts")
    staff_by_role: dict[str, int]
    shelters: int
    roads: int
    rivers: int
    synthetic_notice: str | None = Field(description="set when the loaded data is the synthetic sample")


# --- accounts -----------------------------------------------------------------------------------


class User(BaseModel):
    id: int
    username: str
    display_name: str | None
    role: Role
    scope_codes: list[GridCode]
    active: bool


class LoginAnswer(BaseModel):
    user: User


class LogoutAnswer(BaseModel):
    logged_out: bool = Field(description="false when no session was open")


class Me(BaseModel):
    username: str
    role: Role
    role_zh: str
    scope_codes: list[GridCode]
    via: Literal["session", "token", "cli"]
    permissions: list[Permission]


class Token(BaseModel):
    id: int
    user_id: int
    name: str
    prefix: str = Field(description="the first characters of the secret, to recognise it")
    role: Role | None = Field(description="narrower than the user's role, or null for the user's")
    scope_codes: list[GridCode] | None
    created_at: IsoTime
    expires_at: IsoTime | None
    revoked_at: IsoTime | None
    last_used_at: IsoTime | None


class NewToken(Token):
    token: str = Field(description="the secret: shown this once, never stored")


# --- grids --------------------------------------------------------------------------------------


class GridProperties(BaseModel):
    code: GridCode
    name: str
    level: Level
    parent_code: GridCode | None
    valid_from: IsoTime | None


class GridFeature(BaseModel):
    type: Literal["Feature"]
    id: GridCode
    properties: GridProperties
    geometry: Area


class GridCollection(BaseModel):
    type: Literal["FeatureCollection"]
    features: list[GridFeature]
    numberMatched: int
    numberReturned: int
    offset: Offset
    next: NextLink = None


class GridVersionProperties(GridProperties):
    valid_to: IsoTime | None = Field(description="null for the current version")
    source: str | None


class GridVersionFeature(BaseModel):
    type: Literal["Feature"]
    properties: GridVersionProperties
    geometry: Area


class GridHistory(BaseModel):
    type: Literal["FeatureCollection"]
    features: list[GridVersionFeature]


class GridCodeLists(BaseModel):
    created: list[GridCode]
    replaced: list[GridCode]
    unchanged: list[GridCode]


class GridImportReport(BaseModel):
    dry_run: bool
    created: int
    replaced: int
    unchanged: int
    codes: GridCodeLists


# --- households ---------------------------------------------------------------------------------


class HouseholdProperties(BaseModel):
    """A household row; head_name, phone and address are masked (张*, 138****1234) unless shown."""

    id: int
    household_no: str
    address: str | None
    head_name: str | None
    phone: str | None
    residents: int
    elderly: int
    children: int
    disabled: int
    pregnant: int
    bedridden: int
    floors: int | None
    natural_village: str | None
    grid_code: GridCode | None = Field(description="the group grid holding the house")
    grid_name: str | None
    personal_fields: PersonalFields


class Household(HouseholdProperties):
    lon: float
    lat: float


class Resident(BaseModel):
    name: str | None
    gender: str | None
    birth_date: IsoDate | None
    id_number: str | None
    relation_to_head: str | None
    is_disabled: bool | None
    is_pregnant: bool | None
    is_bedridden: bool | None


class HouseholdDetail(Household):
    members: list[Resident]


class HouseholdPage(BaseModel):
    total: int
    offset: Offset
    items: list[Household]
    next: NextLink = None


class HouseholdFeature(BaseModel):
    type: Literal["Feature"]
    id: int
    geometry: Point
    properties: HouseholdProperties


class HouseholdCollection(BaseModel):
    type: Literal["FeatureCollection"]
    numberMatched: int
    numberReturned: int
    features: list[HouseholdFeature]
    next: NextLink = None


class GridHouseholdCounts(BaseModel):
    code: GridCode
    name: str
    level: Level
    households: int
    residents: int
    elderly: int
    children: int
    disabled: int
    pregnant: int
    bedridden: int


# --- incidents ----------------------------------------------------------------------------------


class IncidentProperties(BaseModel):
    """An incident as lists show it; reporter_name/phone masked for roles that may not see them."""

    id: int
    external_id: str | None
    category: Category
    dispute_kind: str | None
    description: str
    occurred_at: IsoTime
    reported_at: IsoTime
    reporter_name: str | None
    reporter_phone: str | None
    location_source: str | None = Field(description="coordinates | gazetteer | …: how the point was found")
    input_crs: str | None
    place_query: str | None
    place_match: str | None
    precision_m: Real | None
    group_code: GridCode | None
    village_code: GridCode | None
    area_code: GridCode | None
    town_code: GridCode | None
    grid_version_id: int | None
    on_boundary: bool | None
    outside_distance_m: Real | None
    reviewed_at: IsoTime | None
    state: State
    state_entered_at: IsoTime
    satisfied: bool | None
    deadline: IsoTime | None
    overdue: bool
    escalation_level: int | None
    escalated_to: GridCode | None
    assigned_level: int | None
    review_reasons: list[str]
    flagged: bool


class Incident(IncidentProperties):
    lon: float | None
    lat: float | None


class IncidentEvent(BaseModel):
    id: int | None = Field(default=None, description="the step a photo's event_id names")
    at: IsoTime
    actor: str | None
    action: str
    from_state: State | None
    to_state: State | None
    note: str | None


class Assignee(BaseModel):
    staff_id: int
    name: str
    phone: str | None
    role: str
    grid_code: GridCode
    duty: str


class Attachment(BaseModel):
    id: int
    event_id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: IsoTime


class PossibleDuplicate(BaseModel):
    incident_id: int
    distance_m: Real


class GridStep(BaseModel):
    level: Level
    code: GridCode
    name: str


IncidentAction = Literal["advance", "satisfied", "not_satisfied", "reopen", "review", "reassign"]


class IncidentDetail(Incident):
    history: list[IncidentEvent]
    assignees: list[Assignee]
    attachments: list[Attachment]
    possible_duplicates: list[PossibleDuplicate]
    actions: list[IncidentAction] = Field(
        default=[], description="what the caller may do now: loop transitions (POST …/transitions), "
        "then review or reassign while it waits for review (POST …/review)")
    grid_path: list[GridStep] = Field(default=[], description="the grids it is assigned to, town first")


class GridCandidate(BaseModel):
    """A group grid a flagged incident may be moved to."""

    code: GridCode
    name: str
    village_code: GridCode | None
    village_name: str | None
    distance_m: Real = Field(description="from the incident's point to the grid (0: inside or on its edge)")
    current: bool = Field(description="the grid it is assigned to now")


class ReportedIncident(IncidentDetail):
    """201 for a new incident; 200 with the existing one for a repeated external_id."""

    grid_path: list[GridStep] = Field(description="the grids it was assigned to, town first")
    outside_your_grids: bool
    routing_notice: str = Field(description="where it went, in words for the reporter")


class IncidentPage(BaseModel):
    total: int = Field(description="exact, or the planner's estimate when total_exact is false")
    total_exact: bool
    offset: Offset
    items: list[Incident]
    next: NextLink = None


class IncidentFeature(BaseModel):
    type: Literal["Feature"]
    id: int
    geometry: Point
    properties: IncidentProperties


class IncidentCollection(BaseModel):
    type: Literal["FeatureCollection"]
    numberMatched: int | None = Field(default=None, description="absent when the total is an estimate")
    numberReturned: int
    features: list[IncidentFeature]
    next: NextLink = None


class ReviewQueue(BaseModel):
    total: int = Field(description="exact, or the planner's estimate when total_exact is false")
    total_exact: bool
    items: list[Incident]
    offset: Offset | None = None
    next: NextLink = None


class ImportFailure(BaseModel):
    row: int = Field(description="the line of the file (the header is line 1)")
    column: str | None
    reason: str


class IncidentImportReport(BaseModel):
    rows: int
    created: int
    already_present: int
    failed: list[ImportFailure]
    written: bool = Field(description="false when all_or_nothing refused the file")


class StageStats(BaseModel):
    median_hours: float
    on_time_rate: float
    finished: int


class GridIncidentStats(BaseModel):
    code: GridCode
    total: int
    by_state: dict[str, int]
    by_category: dict[str, int]
    stages: dict[str, StageStats] = Field(description="loop stage -> timeliness of the finished ones")
    on_time_rate: float | None
    satisfaction_rate: float | None
    follow_ups: int


# --- emergencies --------------------------------------------------------------------------------


class Emergency(BaseModel):
    id: int
    title: str
    reason: str
    declared_at: IsoTime
    closed_at: IsoTime | None
    close_reason: str | None
    declared_by: str
    closed_by: str | None
    extent: Area
    active: bool


# --- audit --------------------------------------------------------------------------------------


class AuditRow(BaseModel):
    id: int
    at: IsoTime
    actor_id: int | None
    actor: str | None
    role: str | None
    via: str | None
    client_ip: str | None
    method: str | None
    path: str | None
    action: str
    resource: str | None
    resource_ids: list[str]
    reason: str | None
    outcome: str | None
    detail: dict[str, Any] | None


class AuditPage(BaseModel):
    total: int = Field(description="exact up to 10,000; beyond, total_exact is false and total is that bound")
    total_exact: bool
    offset: Offset
    items: list[AuditRow]
    next: NextLink = None


# --- flood --------------------------------------------------------------------------------------


class FloodExtentSummary(BaseModel):
    id: int
    name: str
    source: ExtentSource
    stage_m: float | None
    mode: FloodMode | None
    dem_id: int | None
    area_m2: float
    parts: int = Field(description="polygons in the extent")
    modelled: bool = Field(description="depths are known (a modelled scenario)")
    bbox: list[float] | None = Field(description="min_lon, min_lat, max_lon, max_lat")


class StoredFloodExtent(BaseModel):
    id: int
    name: str
    source: ExtentSource
    stage_m: float | None
    mode: FloodMode | None
    dem_id: int | None
    dem_name: str | None
    area_m2: float
    created_at: IsoTime | None
    created_by_user: int | None
    vertices: int
    bbox: list[float] | None


class FloodExtentProperties(BaseModel):
    id: int
    name: str
    source: ExtentSource
    stage_m: float | None
    mode: FloodMode | None
    dem_id: int | None
    area_m2: float
    created_at: IsoTime | None


class ExtentFeatureProperties(FloodExtentProperties):
    kind: Literal["extent"]


class DepthClassProperties(BaseModel):
    kind: Literal["depth_class"]
    extent_id: int
    depth_class: str
    area_m2: float


class FloodExtentFeature(BaseModel):
    type: Literal["Feature"]
    properties: ExtentFeatureProperties | DepthClassProperties
    geometry: Area


class FloodExtentCollection(BaseModel):
    """The extent as the first feature, then one feature per depth class when modelled."""

    type: Literal["FeatureCollection"]
    properties: FloodExtentProperties
    features: list[FloodExtentFeature]


class NamedScenario(BaseModel):
    name: str
    stage_m: float
    mode: FloodMode
    title: str
    note: str


class Dem(BaseModel):
    id: int
    name: str
    height: int
    width: int
    burn_depth_m: float | None
    accumulation_threshold_km2: float | None
    stats: dict[str, Any] | None
    has_rivers: bool
    created_at: IsoTime | None
    cell_m: float


class Scenarios(BaseModel):
    named: list[NamedScenario]
    standard_stages_m: list[float]
    stage_step_m: float
    max_stage_m: float
    modes: list[FloodMode]
    dems: list[Dem]
    computed: list[StoredFloodExtent]


class ExtentInAnswer(BaseModel):
    id: int | None
    name: str | None
    source: ExtentSource | None
    stage_m: float | None
    buffer_m: float


class FloodTotals(BaseModel):
    households: int
    residents: int
    elderly: int
    children: int
    disabled: int
    pregnant: int
    bedridden: int
    living_alone_elderly: int
    unplaced_households: int
    unplaced_residents: int


class Shelter(BaseModel):
    id: int
    name: str
    kind: str | None
    capacity: int
    lon: float
    lat: float
    dry: bool
    assigned: int = Field(description="residents placed here")
    remaining: int


class UnplacedHousehold(BaseModel):
    id: int
    household_no: str
    residents: int


class FloodMember(BaseModel):
    name: str | None
    gender: str | None
    birth_date: IsoDate | None
    age: int | str | None = Field(description="years, or a decade band (70-79) when masked")
    relation_to_head: str | None
    flags: list[str] = Field(description="elderly, child, disabled, pregnant, bedridden")


class PriorityParts(BaseModel):
    danger: Real
    people: Real
    refuge: Real


class FloodHouseholdProperties(HouseholdProperties):
    village_code: GridCode | None
    village_name: str | None
    area_code: GridCode | None
    area_name: str | None
    living_alone_elderly: bool
    vulnerable: int = Field(description="members who are elderly, children, disabled, pregnant or bedridden")
    depth_m: Real | None = Field(description="water depth at the house when modelled")
    member_name: str | None = Field(description="the grid member responsible")
    member_phone: str | None
    leader_name: str | None = Field(description="the grid leader")
    leader_phone: str | None
    priority_score: Real
    priority_parts: PriorityParts
    priority_rank: int = Field(description="1 = rescue first")
    upper_floor_dry: bool
    shelter_id: int | None = None
    shelter_name: str | None = None
    shelter_distance_m: Real | None = None
    shelter_remaining: int | None = None
    shelter_lon: float | None = None
    shelter_lat: float | None = None
    distance_kind: Literal["road", "straight"] | None = None
    members: list[FloodMember] | None = None


class FloodHousehold(FloodHouseholdProperties):
    lon: float
    lat: float


class FloodHouseholdPage(BaseModel):
    extent: ExtentInAnswer
    total: int
    offset: Offset
    totals: FloodTotals
    shelter_method: str | None
    distance_kind: Literal["road", "straight"] | None
    unplaced: list[UnplacedHousehold]
    shelters: list[Shelter]
    items: list[FloodHousehold]
    next: NextLink = None


class FloodHouseholdFeature(BaseModel):
    type: Literal["Feature"]
    id: int
    geometry: Point
    properties: FloodHouseholdProperties


class FloodHouseholdCollection(BaseModel):
    type: Literal["FeatureCollection"]
    numberMatched: int
    numberReturned: int
    extent: ExtentInAnswer
    totals: FloodTotals
    features: list[FloodHouseholdFeature]
    next: NextLink = None


class AtRisk(BaseModel):
    households: int
    residents: int
    elderly: int
    children: int
    disabled: int
    pregnant: int
    bedridden: int


class StageTotals(AtRisk):
    stage_m: float
    extent_id: int | None


class GridFloodRisk(BaseModel):
    code: GridCode
    name: str
    level: Level
    stages: dict[str, AtRisk] = Field(description='stage in metres ("0.5", "1") -> at risk')
    first_stage_m: float | None = Field(description="the lowest stage that reaches a household")
    risk_class: Literal["高", "较高", "中", "低", "无"]


class FloodRisk(BaseModel):
    level: Level
    stages: list[float]
    totals: list[StageTotals]
    grids: list[GridFloodRisk]


# --- hot spots ----------------------------------------------------------------------------------


class HotspotUnit(BaseModel):
    unit_id: str = Field(description="a grid code, or h<size>_<col>_<row> for a hexagon")
    code: GridCode | None
    name: str | None
    incidents: int
    residents: int | None
    included: bool
    value: float | None
    expected: float | None
    gi_z: float | None
    p_value: float | None
    q_value: float | None
    significant: bool
    bin: int = Field(description="-3 … 3: cold to hot at 99/95/90 %")
    p_exact: float | None
    p_norm: float | None
    p_sim: float | None
    moran_i: float | None
    quadrant: str | None
    moran_q: float | None
    outlier: str | None
    island: bool
    emerging: str | None
    trend_z: float | None
    trend_p: float | None


class HotspotMeta(BaseModel):
    """What was analysed and how; the keys grow with the options (kept open)."""

    model_config = ConfigDict(extra="allow")

    query: dict[str, Any]
    area: list[GridCode]
    units: int
    units_analysed: int
    incidents: int
    hot_spots: int
    cold_spots: int


class Hotspots(BaseModel):
    meta: HotspotMeta
    warnings: list[str]
    units: list[HotspotUnit]


class HotspotFeature(BaseModel):
    type: Literal["Feature"]
    id: str
    properties: HotspotUnit
    geometry: Area


class HotspotCollection(BaseModel):
    type: Literal["FeatureCollection"]
    meta: HotspotMeta
    warnings: list[str]
    features: list[HotspotFeature]


class UnitIncidents(BaseModel):
    unit_id: str
    total: int
    items: list[Incident]
    next: NextLink = None
