"""The FastAPI application: `api.main:app`."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from api import grid_history, problems, schemas
from api.compression import GZip
from api.deps import SessionDep
from api.limits import BodySizeLimit, upload_limits
from api.origin import OriginCheck
from api.security import public, requires
from gis.auth.principal import Principal
from gis.auth.roles import Permission
from gis.db import make_async_engine, make_engine, make_sessionmaker
from gis.settings import Settings, get_settings

log = logging.getLogger("wangge.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings, serving=True)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        async_engine = make_async_engine(settings) if settings.lean_async else None
        app.state.async_sessionmaker = (
            async_sessionmaker(async_engine, expire_on_commit=False) if async_engine is not None else None)
        due = asyncio.create_task(grid_history.apply_due_forever(settings))  # dated grid publishes
        # The app's own objects (routes, schemas, models: ~300,000) stay for its life: kept out of the
        # collector's passes (once per process), a full pass no longer stalls every request for ~200 ms
        # and each request costs less (bench/intake_bench.py).
        if not gc.get_freeze_count():
            gc.collect()
            gc.freeze()
        yield
        due.cancel()
        engine.dispose()
        if async_engine is not None:
            await async_engine.dispose()

    app = FastAPI(
        title="Wangge 网格",
        summary="GIS spatial analysis and mapping for grid-based governance (网格化管理)",
        version="0.1.0",
        lifespan=lifespan,
        # /docs and /redoc are added by api.docs with local assets (FastAPI's load from CDNs).
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    problems.install(app)
    # Map pages and GeoJSON are large and compress ~8x; browsers on village links feel it. By ISA-L
    # (api.compression): a 43 KB list page ~0.05 ms instead of zlib level 6's 0.2-0.6 ms.
    app.add_middleware(GZip, minimum_size=2048)
    app.add_middleware(
        BodySizeLimit,
        default_limit=settings.max_json_body_bytes,
        route_limits=upload_limits(settings),
    )
    # Outermost: a cross-site write is refused before anything reads its body.
    app.add_middleware(OriginCheck, trusted_origins=settings.trusted_origins)

    from api import (
        accounts,
        audit,
        command,
        docs,
        emergencies,
        events,
        flood,
        flood_extents,
        flood_pages,
        grids,
        hotspots,
        households,
        incident_pages,
        incidents,
        maps,
        mobile_pages,
        pages,
        places,
        planning_pages,
        plans,
        register,
        roster,
        suggestions,
        tiles,
    )

    # Page and feature routers before `maps` (its routes are the fallback pages under /maps).
    for module in (
        command,  # first: its /incidents/summary would otherwise reach /incidents/{incident_id}
        incidents,  # next: routes are matched in order, and the intake is the busiest (bench/intake_bench.py)
        tiles,  # next: a map asks for dozens of tiles at once, and each router passed costs ~30 µs to match
        # Then the other lists a working screen asks for all day (bench/route_match.py: the flood list was 13th,
        # 120 µs to find): the flood households list (exact paths only), the grid outlines of every pan.
        flood,
        grids,
        suggestions,  # before any /plans/{plan_id}
        accounts,
        plans,
        grid_history,
        households,
        emergencies,
        audit,
        flood_extents,
        places,
        roster,
        hotspots,
        register,
        pages,
        events,
        mobile_pages,
        flood_pages,
        incident_pages,
        planning_pages,
        maps,
    ):
        app.include_router(module.router)
    app.include_router(maps.data_router)
    from api import register_quality  # issue 14: the register's data-quality report and page
    app.include_router(register_quality.router)
    from api import register_export  # issue 14: the register back as GeoPackage / Excel
    app.include_router(register_export.router)
    maps.mount_assets(app)
    pages.mount_static(app)
    docs.install(app, maps.ASSET_PREFIX)

    @app.get("/healthz", tags=["service"], summary="Liveness and database check", dependencies=[Depends(public)],
             response_model=schemas.Health, **schemas.DATA, responses=schemas.problems(503))
    def healthz(session: SessionDep) -> Any:
        postgis = session.execute(text("SELECT postgis_lib_version()")).scalar_one()
        return {"status": "ok", "postgis": postgis}

    @app.get("/stats", tags=["service"], summary="What is loaded: counts per layer and level",
             response_model=schemas.TownCounts, **schemas.DATA, responses=schemas.problems(*schemas.SIGNED_IN))
    def stats(session: SessionDep, _: Annotated[Principal, requires(Permission.VIEW_GRIDS)]) -> Any:
        from gis.town_summary import town_counts

        return town_counts(session)

    return app


app = create_app()
