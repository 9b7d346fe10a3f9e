"""The staff roster (网格员花名册), who served which grid when, and who is responsible for which households."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["register"])
