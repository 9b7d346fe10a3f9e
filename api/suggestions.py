"""Balanced regroupings of a village's units (gis.planning.suggest), for planners."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime, BaseModel, Field

from api import schemas
from api.deps import NoNul, SessionDep
from api.plans import PlanOut
from api.security import context_of, requires
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.context import Context
from gis.planning import suggest as suggesting
from gis.planning import units as planning_units

router = APIRouter(prefix="/plans", tags=["planning"])

VillageCode = Annotated[str, Query(pattern=r"^\d{15}$", description="the village (level 3) grid code")]
WeightName = Literal["households", "residents", "incidents"]
UnitName = Literal["household", "natural_village", "group"]


class UnitProperties(BaseModel):
    unit_id: str = Field(
        description="household ids joined by ',' (one house site), a natural village id or a grid code")
    households: int
    residents: int
    incidents: int = Field(description="incidents of the last year located in the unit's cell")
    grid_code: str | None = Field(description="the current group grid holding most of the cell")


class UnitFeature(BaseModel):
    type: Literal["Feature"]
    id: str
    properties: UnitProperties
    geometry: schemas.Area


class UnitLayerProperties(BaseModel):
    village_code: str
    village_name: str
    unit_kind: UnitName


class UnitCollection(BaseModel):
    type: Literal["FeatureCollection"]
    properties: UnitLayerProperties
    features: list[UnitFeature]


class SuggestedGrid(BaseModel):
    code: str = Field(description="the new group grid's code (reading order inside the village)")
    name: str
    load: int = Field(description="the balanced quantity (`weight`) in this grid")
    households: int
    residents: int
    incidents: int = Field(description="incidents of the last year located in this grid")
    deviation: float = Field(description="(load - target) / target")
    polsby_popper: float = Field(description="compactness 4πA/P², 1 for a circle")
    units: int = Field(description="how many units the grid is made of")
    unit_ids: list[str] = Field(description="the units it is made of (as GET /plans/units names them)")
    geometry: dict[str, Any] = Field(description="GeoJSON MultiPolygon, EPSG:4326")


class Suggestion(BaseModel):
    seed: int = Field(description="repeat the same suggestion with this seed")
    fingerprint: str = Field(description="names this regrouping; publishing it needs the same")
    balance: float = Field(description="the largest |deviation| of a grid")
    within_tolerance: bool
    mean_polsby_popper: float
    cut_edges: int = Field(description="neighbouring units put in different grids (fewer = more compact)")
    seconds: float
    grids: list[SuggestedGrid]


class Suggestions(BaseModel):
    village_code: str
    village_name: str
    unit_kind: UnitName
    weight: WeightName
    target: float = Field(description="the load each grid aims at")
    tolerance: float
    n_grids: int
    replaced_codes: list[str] = Field(description="the village's current group grids the suggestion replaces")
    base: dict[str, int] = Field(description="{code: grid version id} of those grids, as drafted on")
    suggestions: list[Suggestion] = Field(description="most compact first")


@router.get("/suggestions", summary="Suggest balanced, contiguous group grids for a village",
            response_model=Suggestions, **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def suggestions(
    session: SessionDep,
    _: Annotated[Principal, requires(Permission.PLAN_GRIDS)],
    village: VillageCode,
    n: Annotated[int | None, Query(ge=1, le=suggesting.MAX_GRIDS, description="how many grids")] = None,
    target: Annotated[float | None, Query(gt=0, le=1e7, description="load per grid (instead of n)")] = None,
    tolerance: Annotated[float, Query(gt=0, lt=1, description="allowed deviation, 0.1 = ±10%")] = 0.1,
    weight: WeightName = "households",
    units: UnitName = "household",
    count: Annotated[int, Query(ge=1, le=suggesting.MAX_SUGGESTIONS)] = 3,
    seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    steps: Annotated[int, Query(ge=0, le=suggesting.MAX_CHAIN_STEPS, description="ReCom steps per seed")] = 100,
    days: Annotated[int, Query(ge=1, le=3650, description="weight=incidents: those of the last `days` days")] = 365,
) -> Any:
    found = suggesting.suggest(
        session, village, n_grids=n, target=target, tolerance=tolerance, weight=weight, unit_kind=units,
        count=count, seed=seed, chain_steps=steps, recent_days=days,
    )
    first = found[0]
    return {
        "village_code": first.village_code, "village_name": first.village_name, "unit_kind": first.unit_kind.value,
        "weight": first.weight.value, "target": first.target, "tolerance": first.tolerance,
        "n_grids": len(first.grids), "replaced_codes": list(first.replaced_codes), "base": dict(first.base),
        "suggestions": [
            {k: v for k, v in s.as_dict().items()
             if k in {"seed", "fingerprint", "balance", "within_tolerance", "mean_polsby_popper", "cut_edges",
                      "seconds", "grids"}}
            for s in found
        ],
    }


@router.get("/units", summary="A village's planning units: cells, loads and the current grid of each",
            response_model=UnitCollection, **schemas.DATA, responses=schemas.problems(*schemas.ONE))
def units_of_village(
    session: SessionDep,
    _: Annotated[Principal, requires(Permission.PLAN_GRIDS)],
    village: VillageCode,
    units: UnitName = "household",
) -> Any:
    graph = planning_units.build_unit_graph(session, village, kind=planning_units.UnitKind(units))
    return planning_units.unit_features(session, graph)


class Move(BaseModel):
    from_: str | None = Field(alias="from", description="the grid they are in now")
    to: str | None = Field(description="the grid they would be in")
    households: int
    residents: int
    open_incidents: int


class SuggestionImpact(BaseModel):
    moves: list[Move]
    totals: dict[str, int] = Field(description="households, residents, open_incidents that move")
    staff: list[dict[str, Any]] = Field(description="staff that follow their grid to another code")
    scopes: list[dict[str, Any]] = Field(description="accounts whose scope follows")
    decisions: list[dict[str, Any]] = Field(description="split grids whose staff and accounts need a decision")
    workload: list[dict[str, Any]] = Field(description="per grid: households, residents, open incidents per member")


@router.get("/suggestions/impact", summary="Who and what would move if a suggestion shown were published",
            response_model=SuggestionImpact, response_model_by_alias=True, **schemas.DATA,
            responses=schemas.problems(*schemas.ONE, 409))
def suggestion_impact(
    session: SessionDep,
    _: Annotated[Principal, requires(Permission.PLAN_GRIDS)],
    village: VillageCode,
    seed: Annotated[int, Query(ge=0, le=2**31 + suggesting.MAX_SUGGESTIONS)],
    fingerprint: Annotated[str, Query(pattern=r"^[0-9a-f]{20}$")],
    n: Annotated[int | None, Query(ge=1, le=suggesting.MAX_GRIDS)] = None,
    target: Annotated[float | None, Query(gt=0, le=1e7)] = None,
    tolerance: Annotated[float, Query(gt=0, lt=1)] = 0.1,
    weight: WeightName = "households",
    units: UnitName = "household",
    steps: Annotated[int, Query(ge=0, le=suggesting.MAX_CHAIN_STEPS)] = 100,
    days: Annotated[int, Query(ge=1, le=3650)] = 365,
) -> Any:
    found = suggesting.suggestion_impact(
        session, village, fingerprint=fingerprint, seed=seed, n_grids=n, target=target, tolerance=tolerance,
        weight=weight, unit_kind=units, chain_steps=steps, recent_days=days,
    )
    answer = found.as_dict()
    return {k: answer[k] for k in ("moves", "totals", "staff", "scopes", "decisions", "workload")}


class ShownSuggestion(BaseModel):
    """The suggestion as it was shown (GET /plans/suggestions): its parameters, seed and fingerprint."""

    village: str = Field(pattern=r"^\d{15}$")
    n: int | None = Field(default=None, ge=1, le=suggesting.MAX_GRIDS)
    target: float | None = Field(default=None, gt=0, le=1e7)
    tolerance: float = Field(default=0.1, gt=0, lt=1)
    weight: WeightName = "households"
    units: UnitName = "household"
    steps: int = Field(default=100, ge=0, le=suggesting.MAX_CHAIN_STEPS)
    days: int = Field(default=365, ge=1, le=3650)
    seed: int = Field(ge=0, le=2**31 + suggesting.MAX_SUGGESTIONS)
    fingerprint: str = Field(pattern=r"^[0-9a-f]{20}$")

    def chain_params(self) -> dict[str, Any]:
        """Its parameters under the names gis.planning.suggest takes (the chain is drawn again with them)."""
        return {"n_grids": self.n, "target": self.target, "tolerance": self.tolerance, "weight": self.weight,
                "unit_kind": self.units, "chain_steps": self.steps, "recent_days": self.days}


class DraftSuggestion(ShownSuggestion):
    """A shown suggestion to turn into a draft plan, and the plan's name."""

    name: Annotated[str, NoNul] | None = Field(default=None, max_length=200, description="default: village + 方案")


@router.post("/suggestions", status_code=201, response_model=PlanOut,
             summary="Turn a suggestion shown into a draft plan (then edited and published through /plans)",
             responses=schemas.problems(*schemas.ONE, 409))
def draft_from_suggestion(
    body: DraftSuggestion,
    session: SessionDep,
    ctx: Annotated[Context, context_of(Permission.PLAN_GRIDS)],
) -> Response:
    from api.plans import _json, _out
    from gis.planning.plans import Draft

    plan = suggesting.draft_from_suggestion(
        session, ctx, body.village, fingerprint=body.fingerprint, seed=body.seed, name=body.name,
        **body.chain_params())
    return _json(_out(session, plan, Draft(session, plan)), plan, 201)


class PublishSuggestion(ShownSuggestion):
    """A shown suggestion to publish, and the grid versions it was drafted on."""

    base: dict[str, int] = Field(max_length=1000)
    effective_at: AwareDatetime | None = Field(default=None, description="when it takes effect; empty: now")


class Published(BaseModel):
    publish_id: int
    status: Literal["applied", "pending"]
    effective_at: str
    created: list[str]
    replaced: list[str]
    retired: list[str]
    successors: dict[str, str] = Field(description="a grid that went -> the grid its people went to")
    incidents_moved: int
    staff_moved: list[dict[str, Any]]
    decisions: list[dict[str, Any]] = Field(description="split grids whose staff and accounts need a decision")


@router.post("/suggestions/publish", summary="Publish a suggestion as shown (now or at a later instant)",
             response_model=Published, **schemas.DATA, responses=schemas.problems(*schemas.ONE, 409))
def publish_suggestion(
    body: PublishSuggestion,
    session: SessionDep,
    ctx: Annotated[Context, context_of(Permission.EDIT_GRIDS)],
) -> Any:
    result = suggesting.publish_suggestion(
        session, ctx, body.village, fingerprint=body.fingerprint, base=body.base, effective_at=body.effective_at,
        seed=body.seed, **body.chain_params())
    return {k: v for k, v in result.as_dict().items() if k in Published.model_fields}
