"""Boundary planning: plans, validation, impact, publish and balanced suggestions."""
