"""The printable per-grid-member checklist (明白卡): HTML ready to print (A4) and the same as PDF.

One card per responsible grid member: their households in rescue order, each with its members
(ages, vulnerable flags), the water depth and floors, the route to the assigned shelter and the
grid leader to call. The households come from gis.flood.finder already masked for the reader.
PDF is rendered by WeasyPrint (BSD) with the Noto Sans CJK font from Debian's fonts-noto-cjk,
embedded in the file, so Chinese prints and copies correctly.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from itertools import groupby
from typing import Any

from gis.flood import labels as L

FONT_STACK = '"Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Micro Hei", sans-serif'

_CSS = """
@page { size: A4 landscape; margin: 12mm 10mm 14mm 10mm;
        @bottom-center { content: "%(page)s"; font-size: 8pt; color: #555; } }
html { font-family: %(font)s; font-size: 9.5pt; color: #000; }
body { margin: 0; }
section.card { page-break-after: always; break-after: page; }
section.card:last-child { page-break-after: auto; break-after: auto; }
h1 { font-size: 15pt; margin: 0 0 2mm 0; text-align: center; letter-spacing: 0.1em; }
p.sub { text-align: center; margin: 0 0 3mm 0; font-size: 9pt; }
table.head { width: 100%%; border-collapse: collapse; margin-bottom: 3mm; }
table.head td { padding: 1mm 2mm; border: 0.3mm solid #000; }
table.list { width: 100%%; border-collapse: collapse; }
table.list th, table.list td { border: 0.3mm solid #000; padding: 1.2mm 1.5mm; vertical-align: top; }
table.list th { background: #eee; }
table.list tr { page-break-inside: avoid; break-inside: avoid; }
.flag { display: inline-block; border: 0.2mm solid #000; border-radius: 1mm; padding: 0 1mm; margin-left: 0.8mm;
        font-size: 8pt; }
.urgent { font-weight: bold; }
.note { font-size: 8pt; color: #333; margin-top: 2mm; }
.synthetic { font-size: 8pt; border: 0.3mm dashed #000; padding: 1mm 2mm; margin-bottom: 2mm; text-align: center; }
td.no { text-align: center; width: 9mm; }
td.check { width: 30mm; font-size: 8.5pt; }
"""


def _css() -> str:
    page = L.CHECKLIST_PAGE.replace("{page}", '" counter(page) "')
    return _CSS % {"font": FONT_STACK, "page": page}


def _member_text(m: dict[str, Any]) -> str:
    age = L.AGE.format(age=m["age"]) if m.get("age") is not None else ""
    flags = "".join(f'<span class="flag">{escape(L.MEMBER_FLAGS[f])}</span>' for f in m.get("flags", []))
    relation = f"（{escape(m['relation_to_head'])}）" if m.get("relation_to_head") else ""
    return f"{escape(m.get('name') or '')}{relation} {escape(age)}{flags}"


def _route(h: dict[str, Any]) -> str:
    if h.get("shelter_name") is None:
        return f'<span class="urgent">{escape(L.CHECKLIST_NO_SHELTER)}</span>'
    return escape(L.CHECKLIST_ROUTE.format(kind=L.DISTANCE_KIND.get(str(h.get("distance_kind")), ""),
                                           distance=f"{h['shelter_distance_m']:.0f}", shelter=h["shelter_name"]))


def _row(h: dict[str, Any]) -> str:
    members = "<br>".join(_member_text(m) for m in h.get("members", []))
    if h.get("living_alone_elderly"):
        members += f' <span class="flag urgent">{escape(L.CHECKLIST_ALONE)}</span>'
    depth = (L.CHECKLIST_DEPTH.format(depth=f"{h['depth_m']:.2f}") if h.get("depth_m") is not None
             else L.CHECKLIST_DEPTH_UNKNOWN)
    floors = L.CHECKLIST_FLOORS.format(floors=h["floors"])
    if h.get("upper_floor_dry") and h["floors"] > 1:
        floors += f"（{L.CHECKLIST_UPPER_DRY}）"
    head = (f"<b>{escape(h.get('head_name') or '')}</b> {escape(h.get('phone') or '')}<br>"
            f"{escape(h['household_no'])}<br>{escape(h.get('address') or '')}")
    return (f"<tr><td class=\"no\">{h['priority_rank']}</td><td>{head}</td><td>{members}</td>"
            f"<td>{escape(depth)}<br>{escape(floors)}</td><td>{_route(h)}</td>"
            f"<td class=\"check\">{escape(L.CHECKLIST_CHECKBOXES)}</td></tr>")


def _card_key(h: dict[str, Any]) -> tuple[Any, ...]:
    return (h.get("grid_code") or "", h.get("member_name") or "", h.get("member_phone") or "")


def checklist_html(households: list[dict[str, Any]], extent: dict[str, Any], *, synthetic_notice: str | None = None,
                   generated_at: dt.datetime | None = None) -> str:
    """The whole checklist as one HTML document: a card (page) per grid member."""
    generated_at = generated_at or dt.datetime.now(dt.UTC)
    when = generated_at.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d %H:%M")
    ext_name = extent.get("name") or (f"#{extent['id']}" if extent.get("id") is not None else "")
    masked = any(h.get("personal_fields") == "masked" for h in households)
    cards = []
    ordered = sorted(households, key=lambda h: (_card_key(h), h["priority_rank"]))
    for (grid_code, member, phone), group in groupby(ordered, key=_card_key):
        items = list(group)
        first = items[0]
        grid_path = " / ".join(x for x in (first.get("area_name"), first.get("village_name"),
                                            first.get("grid_name")) if x)
        leader = f"{first.get('leader_name') or ''} {first.get('leader_phone') or ''}".strip()
        member_text = f"{member} {phone}".strip() or L.CHECKLIST_UNASSIGNED
        count = L.CHECKLIST_COUNT.format(households=len(items), residents=sum(h["residents"] for h in items))
        header = "".join(f"<th>{escape(c)}</th>" for c in L.CHECKLIST_COLUMNS)
        cards.append(
            '<section class="card">'
            + (f'<div class="synthetic">{escape(synthetic_notice)}</div>' if synthetic_notice else "")
            + f"<h1>{escape(L.CHECKLIST_TITLE)}</h1><p class=\"sub\">{escape(L.CHECKLIST_SUBTITLE)}</p>"
            + '<table class="head"><tr>'
            + f"<td>{escape(L.CHECKLIST_GRID)}：{escape(grid_path)}（{escape(grid_code)}）</td>"
            + f"<td>{escape(L.CHECKLIST_MEMBER)}：<b>{escape(member_text)}</b></td>"
            + f"<td>{escape(L.CHECKLIST_LEADER)}：{escape(leader)}</td></tr><tr>"
            + f"<td>{escape(L.CHECKLIST_EXTENT)}：{escape(ext_name)}"
            + (f"，{escape(L.CHECKLIST_BUFFER)} {extent['buffer_m']:g} 米" if extent.get("buffer_m") else "")
            + f"</td><td>{escape(count)}</td><td>{escape(L.CHECKLIST_GENERATED)}：{when}</td></tr></table>"
            + f'<table class="list"><thead><tr>{header}</tr></thead><tbody>'
            + "".join(_row(h) for h in items)
            + "</tbody></table>"
            + (f'<p class="note">{escape(L.CHECKLIST_MASKED)}</p>' if masked else "")
            + f'<p class="note">{escape(L.CHECKLIST_SIGN)}</p></section>'
        )
    body = "".join(cards) or f"<p>{escape(L.CHECKLIST_NONE)}</p>"
    return (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
            f"<title>{escape(L.CHECKLIST_TITLE)} — {escape(ext_name)}</title>"
            f"<style>{_css()}</style></head><body>{body}</body></html>")


def checklist_pdf(html: str) -> bytes:
    """The checklist HTML as PDF (fonts embedded)."""
    from weasyprint import HTML

    pdf: bytes = HTML(string=html).write_pdf()
    return pdf
