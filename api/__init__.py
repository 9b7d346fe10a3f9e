"""Wangge HTTP API: thin FastAPI adapters around the gis core."""
