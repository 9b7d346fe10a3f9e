"""gzip by ISA-L (api.compression): the answers a client gets are the same bytes once unzipped, compressed only
where they were before (size, type, an answer's own Content-Encoding), streamed answers included, and the
compressor that runs is ISA-L's, not zlib's."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import httpx
import pytest
from isal import isal_zlib
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from api import compression
from api.compression import GZip, gzip_bytes

# A page-like body: repeated keys and Chinese text, as the lists and GeoJSON are.
BIG = json.dumps([{"id": i, "name": f"第{i}村民小组", "state": "visit", "note": "暴雨后道路积水"}
                  for i in range(600)], ensure_ascii=False).encode()


async def _big(request: Any) -> Response:
    return Response(BIG, media_type="application/json")


async def _small(request: Any) -> Response:
    return Response(b'{"ok": true}', media_type="application/json")


async def _streamed(request: Any) -> StreamingResponse:
    async def parts() -> Any:
        for k in range(0, len(BIG), 5000):
            yield BIG[k:k + 5000]
    return StreamingResponse(parts(), media_type="text/csv")


async def _events(request: Any) -> StreamingResponse:
    async def parts() -> Any:
        yield b"data: " + BIG[:4000] + b"\n\n"
    return StreamingResponse(parts(), media_type="text/event-stream")


async def _own_encoding(request: Any) -> Response:
    body = gzip_bytes(BIG)
    return Response(body, media_type="application/x-protobuf", headers={"Content-Encoding": "gzip"})


APP = GZip(Starlette(routes=[Route("/big", _big), Route("/small", _small), Route("/streamed", _streamed),
                             Route("/events", _events), Route("/own", _own_encoding)]), minimum_size=2048)


def _get(path: str, encoding: str = "gzip, deflate, br") -> tuple[httpx.Response, bytes]:
    async def go() -> tuple[httpx.Response, bytes]:
        async with (httpx.AsyncClient(transport=httpx.ASGITransport(app=APP), base_url="http://t") as client,
                    client.stream("GET", path, headers={"Accept-Encoding": encoding}) as r):
            return r, b"".join([part async for part in r.aiter_raw()])
    return asyncio.run(go())


def test_a_large_answer_is_gzip_that_unzips_to_the_same_bytes() -> None:
    r, raw = _get("/big")
    assert r.headers["content-encoding"] == "gzip" and "accept-encoding" in r.headers["vary"].lower()
    assert int(r.headers["content-length"]) == len(raw) < len(BIG) / 4
    assert gzip.decompress(raw) == BIG


def test_without_gzip_asked_small_or_excluded_answers_go_as_they_are() -> None:
    for path, encoding, body in (("/big", "identity", BIG), ("/small", "gzip", b'{"ok": true}'),
                                 ("/events", "gzip", b"data: " + BIG[:4000] + b"\n\n")):
        r, raw = _get(path, encoding)
        assert "content-encoding" not in r.headers, path
        assert raw == body, path


def test_a_streamed_answer_unzips_whole_and_an_answers_own_encoding_is_left_alone() -> None:
    r, raw = _get("/streamed")
    assert r.headers["content-encoding"] == "gzip" and "content-length" not in r.headers
    assert gzip.decompress(raw) == BIG
    r, raw = _get("/own")
    assert raw == gzip_bytes(BIG) and gzip.decompress(raw) == BIG   # compressed once


def test_the_compressor_that_runs_is_isal(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []
    real = isal_zlib.compressobj

    def counting(*args: Any) -> Any:
        made.append(args[0])
        return real(*args)

    monkeypatch.setattr(compression.isal_zlib, "compressobj", counting)
    assert gzip.decompress(_get("/big")[1]) == BIG
    assert gzip.decompress(_get("/streamed")[1]) == BIG
    assert made == [compression.LEVEL, compression.LEVEL]
    _get("/small")
    assert len(made) == 2   # nothing compressed, no compressor made


def test_the_service_compresses_with_it() -> None:
    from api.main import create_app

    assert [m.cls for m in create_app().user_middleware].count(GZip) == 1
    assert gzip.decompress(gzip_bytes(BIG)) == BIG and gzip_bytes(BIG) == gzip_bytes(BIG)   # same bytes each time
