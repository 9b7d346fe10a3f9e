"""The four-level grid: reading, validating, storing and locating grids."""
