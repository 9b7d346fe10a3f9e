"""Turn a folium map into the final HTML page, never compiling any text as a template.

branca renders each element's macros and then wraps the *output* in a new `Element(output)`,
whose constructor compiles that string as a Jinja template (MacroElement, Div, folium's Popup,
class includes, Vega …). Text that a user wrote — an incident's description, a grid name from a
boundary file — sits in that output, so `{{ 7*191 }}` became `1337` on the page, `{{ x.y }}` a
500, and a crafted expression ran code on the server. The defect lives in that one constructor,
so it is closed there: branca's module-level `Template` (what `Element.__init__` compiles with)
is replaced by a factory that returns a literal for every string except branca's own child-loop
template, the one string branca passes to `Element` meaning it as a template. Rendered output
can never equal that constant, so no data is compiled, whatever element or library path it
takes. Installed on import of the `maps` package; `render_page` refuses to run without it.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import branca.element as _branca
from branca.element import Element
from jinja2 import Template

from maps.offline import DEFAULT_PREFIX, localize, remote_urls

# The templates branca itself hands to `Element(...)` as templates (Div's html container).
BRANCA_OWN_TEMPLATES = frozenset(
    {
        "{% for name, element in this._children.items() %}"
        "{{element.render(**kwargs)}}"
        "{% endfor %}",
    }
)


class LiteralTemplate:
    """Stands where branca expects a compiled template: renders its source unchanged."""

    def __init__(self, source: str):
        self.source = source
        # MacroElement.render looks up macros on `.module`; a literal has none.
        self.module = SimpleNamespace()

    def render(self, *args: Any, **kwargs: Any) -> str:
        return self.source


def _template_or_literal(source: str) -> Template | LiteralTemplate:
    if source in BRANCA_OWN_TEMPLATES:
        compiled: Template = Template(source)
        return compiled
    return LiteralTemplate(source)


def install_literal_rendering() -> None:
    """Make every `branca.element.Element(text)` a literal (idempotent)."""
    setattr(_branca, "Template", _template_or_literal)  # noqa: B010 - branca does not export the name


def literal_rendering_installed() -> bool:
    return getattr(_branca, "Template", None) is _template_or_literal


def render_page(m: Element, what: str, asset_prefix: str = DEFAULT_PREFIX) -> str:
    """The complete HTML document of map `m`: assets local, `lang` set, nothing remote.

    `what` names the page in the error raised when an element still loads a remote asset.
    """
    if not literal_rendering_installed():
        raise RuntimeError("maps.render.install_literal_rendering() must run before rendering")
    localize(m, asset_prefix)
    # branca's template has no lang attribute; without it browsers guess the language.
    page = m.get_root().render().replace("<html>", '<html lang="zh-CN">', 1)
    leftover = remote_urls(page)
    if leftover:
        raise RuntimeError(f"the page '{what}' still loads remote assets: {leftover}")
    return page
