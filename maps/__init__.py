"""Map pages of Wangge: folium/Leaflet HTML that works without internet access."""
