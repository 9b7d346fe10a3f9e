"""Boundary planning: publishing grid changes at a date, their impact, and the grids as they were."""
