"""Hot-spot analysis of incidents: units and weights, Gi*/local Moran, emerging hot spots, density."""
