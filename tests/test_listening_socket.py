"""The service's listening socket: connections it accepts send without Nagle's delay."""

from __future__ import annotations

import asyncio
import http.client
import socket

from gis.service_user import bind_socket
from tests.browser import serve_app_in_thread


def test_accepted_connections_have_nagle_off():
    """asyncio sets TCP_NODELAY only on sockets that report the TCP protocol; the listener must
    be made so that what it accepts does (else kept-alive requests wait on delayed ACKs)."""

    async def accepted_nodelay() -> int:
        got: asyncio.Future = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                sock = transport.get_extra_info("socket")
                got.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        listener = bind_socket("127.0.0.1", 0)
        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(got, 5)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) != 0


def test_a_kept_alive_connection_answers_every_request():
    """Many requests on one connection to the real app (as browsers and API clients do)."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict:
        return {"pong": True}

    with serve_app_in_thread(app) as base:
        host, port = base.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        for _ in range(20):
            conn.request("GET", "/ping")
            response = conn.getresponse()
            assert response.status == 200 and response.read() == b'{"pong":true}'
            assert not response.will_close
        conn.close()
