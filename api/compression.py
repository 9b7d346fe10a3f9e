"""gzip for answers, by ISA-L (python-isal, PSF-2.0 / ISA-L BSD-3): the same gzip any client reads, for a
fraction of zlib's CPU.

Every JSON page, GeoJSON answer and vector tile a browser asks for goes gzipped (village links feel the bytes).
zlib at level 6 costs ~5 µs per KB here, and it ran on the event loop (Starlette compresses bodies under 128 KiB
inline) or in a tile's worker thread: a 43 KB list page 0.2–0.6 ms, a busy tile more, as much as a small
statement. ISA-L's level 2 compresses the same answers 4–12× faster for ~5–8 % more bytes
(bench/README.md, "Session 12 … gzip by ISA-L"). Its levels are 0–3.

- `gzip_bytes(body)`: one answer compressed whole (the tiles).
- `GZip`: Starlette's GZipMiddleware (which answers it compresses, the headers, streaming) with ISA-L's
  compressor in place of zlib's.
"""

from __future__ import annotations

from typing import Any

from isal import igzip, isal_zlib
from starlette.datastructures import Headers
from starlette.middleware.gzip import GZipMiddleware, GZipResponder
from starlette.types import Receive, Scope, Send

__all__ = ["LEVEL", "GZip", "gzip_bytes"]

LEVEL = 2   # ISA-L's 0..3; 3 costs ~2.5x of 2 for <1 % fewer bytes on our answers


def gzip_bytes(body: bytes) -> bytes:
    """`body` as one gzip member (no file name, time 0: the same bytes for the same body)."""
    return igzip.compress(body, LEVEL, mtime=0)


class _Responder(GZipResponder):
    """Starlette's gzip responder whose compressor is ISA-L's (the same `compress`/`flush` calls: a streamed
    answer is flushed with Z_SYNC_FLUSH between parts as before)."""

    _isal: Any = None

    @property
    def compressor(self) -> Any:
        if self._isal is None:
            self._isal = isal_zlib.compressobj(LEVEL, isal_zlib.DEFLATED, 16 + isal_zlib.MAX_WBITS)
        return self._isal


class GZip(GZipMiddleware):
    """GZipMiddleware with ISA-L: an answer is compressed when the client asks for gzip, it is at least
    `minimum_size` bytes, it has no Content-Encoding of its own (the tiles) and its type is not excluded (the
    live feed's event stream)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "gzip" not in Headers(scope=scope).get("accept-encoding", ""):
            return await super().__call__(scope, receive, send)
        responder = _Responder(self.app, self.minimum_size, thread_minimum_size=self.thread_minimum_size,
                               exclude_content_types=self.exclude_content_types)
        await responder(scope, receive, send)
