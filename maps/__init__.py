"""Map pages of Wangge: folium/Leaflet HTML that works without internet access."""

from maps.render import install_literal_rendering

# Before any page is built: no text a page carries is ever compiled as a template.
install_literal_rendering()
