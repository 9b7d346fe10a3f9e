"""Wangge core: grids, storage and spatial analysis, free of any web framework."""
