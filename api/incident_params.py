"""The incident filters as query parameters, declared once: a FastAPI dependency that builds `IncidentFilter`.

The list (`GET /incidents`), the live feed (`GET /events/incidents`), the incident tiles and the view's
numbers (`GET /incidents/summary`) take the same filters with the same names, types and checks; they differ
only in whether `open` is offered (and its default) and whether `escalation_level` is. A route declares
`filters: ListFilters` (or `StreamFilters`, `OpenFilters`); times without a zone are refused here (422
naming the parameter), before the route runs.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from typing import Annotated, Any

from fastapi import Depends, Query
from pydantic import BaseModel, create_model

from api.exports import require_time_zone
from gis.incidents.categories import Category
from gis.incidents.loop import State
from gis.incidents.service import IncidentFilter

__all__ = ["EscalationLevel", "GridCodeQuery", "ListFilters", "OpenFilters", "StreamFilters", "filter_of",
           "incident_filter", "query_model"]

GridCodeQuery = Annotated[str | None, Query(pattern=r"^\d{15}$", description="any level: its whole subtree")]
EscalationLevel = Annotated[int | None, Query(ge=1, le=4, description="the grid level now responsible: "
                                              "4 group (on time) … 1 town")]
OPEN_DESCRIPTION = "only incidents not closed (ignored with `state`)"


def _param(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


# Every filter, in the order the routes list them; `escalation_level` and `open` are optional per route.
_FILTERS = (
    _param("grid_code", GridCodeQuery),
    _param("state", State | None),
    _param("category", Category | None),
    _param("since", dt.datetime | None),
    _param("until", dt.datetime | None),
    _param("overdue", bool | None),
    _param("escalation_level", EscalationLevel),
    _param("flagged", bool | None),
)


def _build(*, open_only: bool = False, **values: Any) -> IncidentFilter:
    since, until = values.get("since"), values.get("until")
    require_time_zone(since=since, until=until)
    state, category = values.get("state"), values.get("category")
    return IncidentFilter(
        grid_code=values.get("grid_code"), state=state.value if state else None,
        category=category.value if category else None, since=since, until=until,
        overdue=values.get("overdue"), escalation_level=values.get("escalation_level"),
        flagged=values.get("flagged"), open_only=open_only)


def query_model(name: str, *, open_default: bool | None, escalation: bool = True,
                before: dict[str, Any] | None = None) -> type[BaseModel]:
    """The same filters as `incident_filter(...)` gives, as ONE model for a route's whole query
    (`query: Annotated[Model, Query()]`, FastAPI's query parameter model; `filter_of(query)` builds the
    `IncidentFilter`): one validation instead of one per parameter and no dependency to solve, on the hot
    routes (GET /incidents, incident tiles). The route's own parameters (`before`: name -> (annotation,
    default)) come first, as they are listed today; the documented parameters stay the same."""
    fields: dict[str, Any] = dict(before or {})
    fields.update({p.name: (p.annotation, p.default) for p in _FILTERS if escalation or p.name != "escalation_level"})
    if open_default is not None:
        fields["open_only"] = (Annotated[bool, Query(alias="open", description=OPEN_DESCRIPTION)], open_default)
    model: type[BaseModel] = create_model(name, **fields)
    return model


def filter_of(query: Any) -> IncidentFilter:
    """The `IncidentFilter` of a `query_model` instance (a time without a zone: 422 naming it)."""
    values = {p.name: getattr(query, p.name) for p in _FILTERS if p.name in type(query).model_fields}
    return _build(open_only=getattr(query, "open_only", False), **values)


@functools.cache
def incident_filter(*, open_default: bool | None, escalation: bool = True) -> Any:
    """`Depends(...)` giving the request's `IncidentFilter`.

    `open_default`: the default of the `open` query parameter (only those not closed), None where the
    route does not offer it (then nothing is left out for being closed); `escalation`: whether the route
    takes `escalation_level`. Made once per variant, so the same variant is one dependency everywhere.
    """
    params = [p for p in _FILTERS if escalation or p.name != "escalation_level"]
    if open_default is not None:
        # The Python name is `open_only`; the query parameter is `open`.
        params.append(_param("open_only", Annotated[bool, Query(alias="open", description=OPEN_DESCRIPTION)],
                             open_default))

    async def dependency(**values: Any) -> IncidentFilter:   # async: no I/O, so no thread hop
        return _build(**values)

    dependency.__signature__ = inspect.Signature(params, return_annotation=IncidentFilter)  # type: ignore[attr-defined]
    return Depends(dependency)


# GET /incidents: every filter; `open` off by default (a list shows closed incidents too).
ListFilters = Annotated[IncidentFilter, incident_filter(open_default=False)]
# GET /events/incidents: every filter but `open` (a closing is an event too).
StreamFilters = Annotated[IncidentFilter, incident_filter(open_default=None)]
# Incident tiles and the view's numbers: open ones by default, no escalation level.
OpenFilters = Annotated[IncidentFilter, incident_filter(open_default=True, escalation=False)]
