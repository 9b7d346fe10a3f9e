"""An HTTP client in its OWN process, for benchmarks that time requests against a server in the bench's process.

Before 2026-12-07 the benches (request_profile.py, incident_list_bench.py, tiles_bench.py) ran httpx in the
same Python process as the uvicorn server: the client's CPU (~3.9 ms a request by yappi) and its turns at
the GIL were charged to the server. Here the client is a child process (stdlib `http.client`, one keep-alive
connection, requests one at a time) that the bench drives through a pipe: the bench asks for one request,
the child sends it, reads the whole answer and reports the time from the first byte sent to the last byte
read, measured in the child (the pipe is outside the timing). While the child's request runs the bench's
main thread waits on the pipe, so the server has the process to itself.

    with ClientProcess(base_url, {"Authorization": "Bearer ..."}) as client:
        r = client.get("/incidents", params={"limit": 50})
        r.status_code, r.ms, r.headers["content-type"], r.json()

`r.raw` is the body as sent (gzip stays gzip), `r.content` the body decoded.
"""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str]   # lower-case names
    raw: bytes
    ms: float                 # wall time of the request, measured by the client process

    @property
    def content(self) -> bytes:
        return gzip.decompress(self.raw) if self.headers.get("content-encoding") == "gzip" else self.raw

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class ClientProcess:
    def __init__(self, base_url: str, headers: dict[str, str] | None = None):
        self.base_url = base_url
        self.headers = dict(headers or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ClientProcess:
        self.proc = subprocess.Popen([sys.executable, __file__, self.base_url], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(10)
            self.proc = None

    def get(self, path: str, params: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> Answer:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        if params:
            path += ("&" if "?" in path else "?") + urlencode(params)
        ask = json.dumps({"path": path, "headers": {**self.headers, **(headers or {})}}).encode() + b"\n"
        self.proc.stdin.write(ask)
        self.proc.stdin.flush()
        head = json.loads(self.proc.stdout.readline())
        (size,) = struct.unpack("!Q", self.proc.stdout.read(8))
        body = self.proc.stdout.read(size)
        return Answer(head["status"], head["headers"], body, head["ms"])


def _serve(base_url: str) -> None:
    """The child: one request per line read from stdin; answers a JSON line, then the body length-prefixed."""
    import http.client
    import time

    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port)
    conn.connect()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    for line in stdin:
        ask = json.loads(line)
        t = time.perf_counter()
        conn.request("GET", ask["path"], headers=ask["headers"])
        r = conn.getresponse()
        body = r.read()
        ms = (time.perf_counter() - t) * 1000
        head = {"status": r.status, "ms": ms, "headers": {k.lower(): v for k, v in r.getheaders()}}
        stdout.write(json.dumps(head).encode() + b"\n" + struct.pack("!Q", len(body)) + body)
        stdout.flush()


if __name__ == "__main__":
    _serve(sys.argv[1])
