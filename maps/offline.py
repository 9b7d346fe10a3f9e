"""Serve folium's browser assets from the local npm install (maps/assets) instead of public CDNs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from branca.element import Element

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
ASSET_ROOT = ASSETS_DIR / "node_modules"
DEFAULT_PREFIX = "/static/vendor"
INSTALL_COMMAND = "npm ci --prefix maps/assets"

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

# Path under node_modules for every asset name folium 0.20 and its elements declare.
# None marks an asset that is deliberately not served:
#  - glyphicons_css is a Bootstrap 3 file not published on npm; its icons only matter for
#    folium.Icon(prefix="glyphicon"), so map pages use prefix="fa" (Font Awesome) instead.
#  - awesome_rotate_css lives only in folium's GitHub repository; it only serves
#    folium.Icon(angle=...) at angles other than 90/180/270, which Font Awesome covers itself.
ASSET_PATHS: dict[str, str | None] = {
    "leaflet": "leaflet/dist/leaflet.js",
    "jquery": "jquery/dist/jquery.min.js",
    "bootstrap": "bootstrap/dist/js/bootstrap.bundle.min.js",
    "awesome_markers": "leaflet.awesome-markers/dist/leaflet.awesome-markers.js",
    "leaflet_css": "leaflet/dist/leaflet.css",
    "bootstrap_css": "bootstrap/dist/css/bootstrap.min.css",
    "glyphicons_css": None,
    "awesome_markers_font_css": "@fortawesome/fontawesome-free/css/all.min.css",
    "awesome_markers_css": "leaflet.awesome-markers/dist/leaflet.awesome-markers.css",
    "awesome_rotate_css": None,
    # folium.plugins used by the working screens (issue 13).
    "vectorGrid": "leaflet.vectorgrid/dist/Leaflet.VectorGrid.bundled.min.js",
    "markerclusterjs": "leaflet.markercluster/dist/leaflet.markercluster.js",
    "markerclustercss": "leaflet.markercluster/dist/MarkerCluster.css",
    "markerclusterdefaultcss": "leaflet.markercluster/dist/MarkerCluster.Default.css",
    "leaflet_draw_js": "leaflet-draw/dist/leaflet.draw.js",
    "leaflet_draw_css": "leaflet-draw/dist/leaflet.draw.css",
    "Control_locate_min_js": "leaflet.locatecontrol/dist/L.Control.Locate.min.js",
    "Control_locate_min_css": "leaflet.locatecontrol/dist/L.Control.Locate.min.css",
    "leaflet_geoman_js": "@geoman-io/leaflet-geoman-free/dist/leaflet-geoman.js",
    "leaflet_geoman_css": "@geoman-io/leaflet-geoman-free/dist/leaflet-geoman.css",
    "maplibre_gl_js": "maplibre-gl/dist/maplibre-gl.js",
    "maplibre_gl_css": "maplibre-gl/dist/maplibre-gl.css",
    "maplibre_gl_leaflet_js": "@maplibre/maplibre-gl-leaflet/leaflet-maplibre-gl.js",
}


class RemoteAssetError(ValueError):
    """An element needs a remote asset that has no local copy configured."""


def _join(prefix: str, rel: str) -> str:
    return prefix.rstrip("/") + "/" + rel.lstrip("/")


def asset_urls(prefix: str = DEFAULT_PREFIX) -> dict[str, str | None]:
    """Each folium asset name mapped to its local URL under `prefix` (None: not served)."""
    return {name: None if rel is None else _join(prefix, rel) for name, rel in ASSET_PATHS.items()}


def is_local_url(url: str) -> bool:
    """True for relative URLs, data:/blob: URLs and URLs whose host is this machine."""
    parts = urlsplit(url.strip())
    if parts.scheme in ("data", "blob", "about", "javascript"):
        return True
    if not parts.netloc:
        return True
    return (parts.hostname or "") in LOCAL_HOSTS


def _walk(element: Element) -> Iterator[Element]:
    yield element
    for child in list(element._children.values()):
        yield from _walk(child)


def _localized(owner: Element, links: list[tuple[str, str]], prefix: str) -> list[tuple[str, str]]:
    urls = asset_urls(prefix)
    out: list[tuple[str, str]] = []
    for name, url in links:
        if is_local_url(url):
            out.append((name, url))
        elif name not in urls:
            raise RemoteAssetError(
                f"{type(owner).__name__} loads {name!r} from {url}; add the npm package to "
                f"maps/assets/package.json and the file to maps.offline.ASSET_PATHS"
            )
        elif (local := urls[name]) is not None:
            out.append((name, local))
    return out


def localize(m: Element, prefix: str = DEFAULT_PREFIX) -> Element:
    """Point the JS/CSS links of `m` and all its descendants at local copies under `prefix`.

    Call it after the last element is added. Only instance attributes are set, so folium's
    class-level defaults (and other maps in the same process) stay untouched.
    """
    for element in _walk(m):
        for attr in ("default_js", "default_css"):
            links = getattr(element, attr, None)
            if links:
                setattr(element, attr, _localized(element, list(links), prefix))
    return m


_CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)""")
_DATA_URL = re.compile(r"""url\(\s*(['"])data:.*?\1\s*\)""", re.DOTALL)


def _css_references(css_path: Path) -> list[Path]:
    """Files a stylesheet loads by relative url(...), e.g. fonts and marker sprites."""
    refs = []
    text = css_path.read_text(encoding="utf-8", errors="replace")
    # Inline images (url('data:image/svg+xml,...')) hold url(%23id) references of their own.
    text = _DATA_URL.sub("", text)
    for _, ref in _CSS_URL.findall(text):
        if ref.startswith(("#", "data:")) or not is_local_url(ref) or ref.startswith("/"):
            continue
        clean = ref.split("#", 1)[0].split("?", 1)[0]
        if clean:
            refs.append((css_path.parent / clean).resolve())
    return sorted(set(refs))


def _needed_files() -> list[Path]:
    files: list[Path] = []
    for rel in ASSET_PATHS.values():
        if rel is None:
            continue
        path = ASSET_ROOT / rel
        files.append(path)
        if path.suffix == ".css" and path.is_file():
            files.extend(_css_references(path))
    return files


def missing_assets() -> list[str]:
    """Local asset files (including fonts and images the stylesheets load) that do not exist."""
    return [str(p) for p in _needed_files() if not p.is_file()]


def vendor_files(prefix: str = DEFAULT_PREFIX) -> dict[str, Path]:
    """URL path -> file for every asset the map pages load, for serving or checking them."""
    root = ASSET_ROOT.resolve()
    out: dict[str, Path] = {}
    for path in _needed_files():
        resolved = path.resolve()
        # A stylesheet pointing outside node_modules could not be served by a mount of ASSET_ROOT.
        if not resolved.is_relative_to(root):
            continue
        out[_join(prefix, resolved.relative_to(root).as_posix())] = path
    return out


_TAG_URL = re.compile(
    r"""<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)\s*=\s*(["'])(.*?)\1""",
    re.IGNORECASE | re.DOTALL,
)


def remote_urls(html: str) -> list[str]:
    """Script, stylesheet, image and inline-CSS URLs in `html` that point at another host."""
    found = [m.group(2) for m in _TAG_URL.finditer(html)]
    found += [m.group(2) for m in _CSS_URL.finditer(html)]
    return sorted({u for u in found if not is_local_url(u)})
