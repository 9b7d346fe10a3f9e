"""Boundary planning: drafts of grid changes, their validation, impact and dated publication."""
