"""Body limits per upload route (api/limits.py) and photos accepted only once decoded.

Every multipart route of the app must be in the one table of upload routes; each route in it takes a
body just under its limit (the file it promises, in full) and refuses one just over it with 413,
with or without a Content-Length."""

from __future__ import annotations

import io

import pytest
from fastapi import params
from fastapi.routing import APIRoute
from PIL import Image

from api.limits import MULTIPART_ENVELOPE_BYTES, UPLOAD_ROUTES, upload_limits
from tests.conftest import make_client, report_incident, settings_for

BOUNDARY = "wangge-test-boundary"


def api_routes(routes, prefix: str = ""):
    """Every APIRoute with its full path, through included routers (FastAPI keeps them nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):
            yield from api_routes(
                route.original_router.routes, prefix + route.include_context.prefix
            )


def multipart_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every route taking a file."""
    out = set()
    for path, route in api_routes(app.routes):
        if any(isinstance(f.field_info, params.File) for f in route.dependant.body_params):
            out.update((m, path) for m in route.methods)
    return out


def multipart(file_bytes: int, total: int | None = None, filename: str = "x.txt") -> bytes:
    """A multipart body with one file part of `file_bytes` bytes, padded by an ignored form field to
    exactly `total` bytes when given."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    body = head + b"\x00" * file_bytes + tail
    if total is not None:
        pad_head = (
            f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="padding"\r\n\r\n'.encode()
        )
        room = total - len(body) - len(pad_head)
        assert room >= 0, (total, len(body))
        body = head + b"\x00" * file_bytes + pad_head + b"p" * room + tail
        assert len(body) == total
    return body


def send(
    client, method: str, path: str, body: bytes, *, chunked: bool = False, json_body: bool = False
):
    ctype = "application/json" if json_body else f"multipart/form-data; boundary={BOUNDARY}"
    content = (body[i : i + (1 << 20)] for i in range(0, len(body), 1 << 20)) if chunked else body
    return client.request(method, path, content=content, headers={"Content-Type": ctype})


def concrete(path: str) -> str:
    return path.replace("{incident_id}", "987654321")


def test_every_multipart_route_is_in_the_upload_table(test_db_url, accounts):
    from api.main import create_app

    found = multipart_routes(create_app(settings_for(test_db_url)))
    assert found, "the app has upload routes"
    assert found <= set(UPLOAD_ROUTES), found - set(UPLOAD_ROUTES)
    assert ("POST", "/incidents/{incident_id}/attachments") in found


@pytest.mark.parametrize("route", sorted(UPLOAD_ROUTES))
def test_each_upload_route_takes_a_body_just_under_its_limit_and_refuses_one_just_over(
    test_db_url, accounts, route
):
    method, template = route
    settings = settings_for(test_db_url)
    limit = upload_limits(settings)[route]
    promised = getattr(settings, UPLOAD_ROUTES[route])
    assert limit == promised + MULTIPART_ENVELOPE_BYTES
    json_body = template.endswith("/drawn")
    path = concrete(template)
    with make_client(test_db_url, "admin") as client:
        if json_body:
            under, over = b"x" * (limit - 1), b"x" * (limit + 1)
        else:
            # The whole promised file, padded to one byte under the limit.
            under, over = multipart(promised, total=limit - 1), multipart(promised, total=limit + 1)
        r = send(client, method, path, under, json_body=json_body)
        assert r.status_code != 413 and r.status_code in (404, 422), (
            route,
            r.status_code,
            r.text[:300],
        )
        for chunked in (False, True):
            r = send(client, method, path, over, chunked=chunked, json_body=json_body)
            assert r.status_code == 413, (route, chunked, r.status_code)
            assert r.headers["content-type"].startswith("application/problem+json")


def test_a_photo_over_its_promised_size_is_413_at_its_size_not_the_json_limit(
    test_db_url, accounts
):
    settings = settings_for(test_db_url)
    assert settings.max_attachment_bytes > settings.max_json_body_bytes  # the audit's 2 MiB trap
    with make_client(test_db_url, "admin") as client:
        path = concrete("/incidents/{incident_id}/attachments")
        r = send(
            client, "POST", path, multipart(settings.max_json_body_bytes + 1, filename="a.jpg")
        )
        assert r.status_code == 404, r.text[:200]  # past the size checks
        r = send(
            client, "POST", path, multipart(settings.max_attachment_bytes + 1, filename="a.jpg")
        )
        assert r.status_code == 413


# --- photos are decoded --------------------------------------------------------------------------


def image_bytes(fmt: str, size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def admin_incident(scratch_db_url, accounts, engine):
    from sqlalchemy import text

    with engine.connect() as c:
        x, y = c.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM grid "
                "WHERE level = 4 AND valid_to IS NULL ORDER BY code LIMIT 1) q"
            )
        ).one()
    with make_client(scratch_db_url, "admin", max_attachment_pixels=10_000) as admin:
        inc = report_incident(admin, x, y, description="垃圾").json()
        yield admin, inc["id"]


def test_only_whole_decodable_images_are_accepted(admin_incident):
    admin, incident_id = admin_incident
    path = f"/incidents/{incident_id}/attachments"
    for fmt, kind in (("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")):
        good = image_bytes(fmt)
        r = admin.post(path, files={"file": (f"ok.{fmt.lower()}", good)})
        assert r.status_code == 201, (fmt, r.text)
        assert r.json()["content_type"] == kind
        for name, bad in (
            (
                "signature only",
                good[:12] if fmt == "WEBP" else good[:8] if fmt == "PNG" else good[:3],
            ),
            ("truncated", good[: len(good) // 2]),
            ("corrupted", good[:40] + bytes(b ^ 0x5A for b in good[40:])),
        ):
            r = admin.post(path, files={"file": (f"bad.{fmt.lower()}", bad)})
            assert r.status_code == 422, (fmt, name, r.status_code)
            err = r.json()["errors"][0]
            assert err["loc"] == ["body", "file"] and err["type"] in (
                "unreadable_image",
                "unsupported_type",
            ), err
    # More pixels than allowed (here 10,000): refused before decoding them.
    r = admin.post(path, files={"file": ("big.png", image_bytes("PNG", (200, 100)))})
    assert r.status_code == 422 and r.json()["errors"][0]["type"] == "too_many_pixels"
    assert len(admin.get(path).json()) == 3
