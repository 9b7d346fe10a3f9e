"""Incidents (网格事项): intake, assignment to grids, routing, and the closed loop."""
