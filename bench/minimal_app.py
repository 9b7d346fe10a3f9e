"""The intake benchmark's reference: a minimal FastAPI app whose one endpoint is the PostGIS lookup.

    DATABASE_URL=... .venv/bin/python -m uvicorn --app-dir bench minimal_app:app --host 127.0.0.1 --port 8802

POST /locate {"lon": .., "lat": ..} -> {"code": <the group grid holding the point, smallest code
on shared edges> | null}. Nothing else: no authentication, validation beyond the body model,
assignment, storage, history, routing, duplicate search or audit. It uses the same engine
settings (gis.db.make_engine: pool of 5 + 10 overflow) and the same sync-endpoint threadpool
model as Wangge, so that the two are served the same way.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gis.db import make_engine  # noqa: E402

LOOKUP = text(
    "SELECT code FROM grid WHERE level = 4 AND valid_to IS NULL "
    "AND ST_Intersects(geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326)) ORDER BY code LIMIT 1"
)


class Point(BaseModel):
    lon: float
    lat: float


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.engine = make_engine()
    yield
    app.state.engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.post("/locate", response_model=None)   # as before the annotation: no response model
def locate(p: Point) -> dict[str, Any]:
    with app.state.engine.connect() as conn:
        code = conn.execute(LOOKUP, {"x": p.lon, "y": p.lat}).scalar_one_or_none()
    return {"code": code}
