"""Flood risk: flood extents (modelled from terrain, uploaded, drawn) and the households in them."""
