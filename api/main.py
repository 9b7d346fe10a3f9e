"""The FastAPI application: `api.main:app`."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import text

from api import problems
from api.deps import SessionDep
from gis.db import make_engine, make_sessionmaker
from gis.settings import Settings, get_settings

log = logging.getLogger("wangge.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = make_engine(settings)
        app.state.engine = engine
        app.state.sessionmaker = make_sessionmaker(engine)
        yield
        engine.dispose()

    app = FastAPI(
        title="Wangge 网格",
        summary="GIS spatial analysis and mapping for grid-based governance (网格化管理)",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    problems.install(app)
    _limit_body_size(app, settings)

    from api import grids, maps

    app.include_router(grids.router)
    app.include_router(maps.router)
    maps.mount_assets(app)

    @app.get("/healthz", tags=["service"], summary="Liveness and database check")
    def healthz(session: SessionDep):
        postgis = session.execute(text("SELECT postgis_lib_version()")).scalar_one()
        return {"status": "ok", "postgis": postgis}

    @app.get("/stats", tags=["service"], summary="What is loaded: counts per layer and level")
    def stats(session: SessionDep):
        from gis.stats import town_counts

        return town_counts(session)

    @app.get("/", include_in_schema=False)
    def root():
        return RedirectResponse("/maps/grids")

    return app


def _limit_body_size(app: FastAPI, settings: Settings) -> None:
    from api.problems import problem

    @app.middleware("http")
    async def body_size(request: Request, call_next):
        # Refuse early on the declared size; the import endpoint also counts the bytes it reads.
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                return problem(400, "Bad Content-Length header", kind="bad-header")
            if int(declared) > settings.max_upload_bytes:
                return problem(
                    413,
                    "Request too large",
                    kind="http-413",
                    detail=f"at most {settings.max_upload_bytes} bytes per request",
                )
        return await call_next(request)


app = create_app()
