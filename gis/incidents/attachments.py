"""Photos of an incident: decoded to be accepted (not judged by name or signature), size- and
pixel-capped, stored with a hash."""

from __future__ import annotations

import hashlib
import io
import warnings
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gis.auth.principal import Principal
from gis.context import Context
from gis.errors import Forbidden, InputError, NotFound, Problem
from gis.incidents.service import access_params, as_context, visible_condition


def sniff_image(data: bytes) -> str | None:
    """The image type from the file's first bytes; None for anything else (SVG and HTML included)."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


_PIL_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}


def check_photo(data: bytes, *, max_pixels: int, loc: tuple[str | int, ...] = ("body", "file")) -> str:
    """The photo's content type once Pillow has decoded all of it; InputError (at `loc`) for
    anything that is not a whole JPEG, PNG or WebP image, or has more than `max_pixels` pixels.

    The signature only picks the decoder: a file that merely starts like an image (a bare PNG
    signature, a truncated or corrupted file, HTML behind a JPEG marker) fails to decode."""
    from PIL import Image

    kind = sniff_image(data)
    if kind is None:
        raise InputError(Problem(loc, "photos are JPEG, PNG or WebP", "unsupported_type"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[kind]]) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise InputError(Problem(
                        loc, f"the photo has {width}×{height} pixels; at most {max_pixels} in all",
                        "too_many_pixels",
                        ctx={"width": width, "height": height, "max_pixels": max_pixels}))
                im.verify()          # chunk checksums and structure; leaves the image unusable
            with Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[kind]]) as im:
                im.load()            # every pixel decoded: a truncated file fails here
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as exc:
        name = kind.split("/")[1].upper()
        raise InputError(Problem(loc, f"the file is not a readable {name} image: {exc}",
                                 "unreadable_image")) from None
    return kind


def _visible(session: Session, principal: Principal, incident_id: int) -> None:
    ok = session.execute(
        text(f"SELECT 1 FROM incident i WHERE i.id = :id AND {visible_condition(principal)}"),
        {"id": incident_id, **access_params(principal)},
    ).first()
    if ok is None:
        raise NotFound(f"no incident {incident_id} that you may see")


def add_attachment(session: Session, actor: Context | Principal, incident_id: int, filename: str, data: bytes,
                   *, max_bytes: int, max_pixels: int) -> dict[str, Any]:
    """Store a photo of the incident, documenting its latest step (audited as "create")."""
    ctx = as_context(actor)
    principal = ctx.principal
    if principal is None:
        raise Forbidden("attaching a photo needs a signed-in account")
    _visible(session, principal, incident_id)
    if not data:
        raise InputError(Problem(("body", "file"), "the file is empty", "empty_file"))
    if len(data) > max_bytes:
        raise InputError(Problem(("body", "file"), f"at most {max_bytes} bytes per photo", "file_too_large"))
    kind = check_photo(data, max_pixels=max_pixels)
    name = (filename or "photo").replace("\\", "/").rsplit("/", 1)[-1][:200] or "photo"
    # The photo belongs to the incident's latest step (the one it documents).
    event_id = session.execute(
        text("SELECT max(id) FROM incident_event WHERE incident_id = :i"), {"i": incident_id}
    ).scalar_one()
    row = session.execute(
        text(
            "INSERT INTO incident_attachment (incident_id, event_id, filename, content_type, size, sha256, data, "
            "uploaded_by) VALUES (:i, :e, :n, :t, :s, :h, :d, :u) RETURNING id"
        ),
        {"i": incident_id, "e": event_id, "n": name, "t": kind, "s": len(data),
         "h": hashlib.sha256(data).hexdigest(), "d": data, "u": principal.user_id},
    ).one()
    out = next(a for a in list_attachments(session, principal, incident_id) if a["id"] == row.id)
    ctx.audit(session, "create", resource="incident_attachment", resource_ids=[out["id"]],
              detail={"incident_id": incident_id, "size": out["size"]})
    return out


def list_attachments(session: Session, principal: Principal, incident_id: int) -> list[dict[str, Any]]:
    """Metadata only; the bytes come from get_attachment."""
    _visible(session, principal, incident_id)
    rows = session.execute(
        text("SELECT id, event_id, filename, content_type, size, sha256, uploaded_at FROM incident_attachment "
             "WHERE incident_id = :i ORDER BY id"), {"i": incident_id},
    ).mappings()
    return [{**dict(r), "uploaded_at": r["uploaded_at"].isoformat()} for r in rows]


def get_attachment(
    session: Session, principal: Principal, incident_id: int, attachment_id: int
) -> tuple[str, str, bytes]:
    _visible(session, principal, incident_id)
    row = session.execute(
        text("SELECT filename, content_type, data FROM incident_attachment WHERE id = :a AND incident_id = :i"),
        {"a": attachment_id, "i": incident_id},
    ).first()
    if row is None:
        raise NotFound(f"incident {incident_id} has no attachment {attachment_id}")
    return row.filename, row.content_type, bytes(row.data)
