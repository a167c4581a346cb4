"""A small TCP load balancer: one address in front of several chat-service replicas.

Hand-rolled rather than nginx/HAProxy because the local mode must run from a clone with
nothing but Python and redis-server, and a layer-4 proxy carries HTTP and WebSocket alike in
~100 lines. Each new connection goes to the next replica (round robin) that accepts a
connection; a dead replica is skipped at once, so clients that reconnect land on a live one.

A replica reached over its Unix proxy socket (``LLMCHAT_PROXY_SOCKET``, a ``Path`` backend)
first gets a PROXY protocol v1 line naming the client's address, so its per-address limits
(sign-ups) apply to the real client rather than to the balancer. Only this socket, which only
the same user may open, takes such a line: no client can name its own address (the balancer
never forwards a client's ``X-Forwarded-For`` as trusted, and the replicas trust none).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
from collections.abc import Sequence
from pathlib import Path

from llmchat.logs import get_logger

#: A replica: ``(host, port)`` over TCP, or the path of its proxy socket.
Backend = tuple[str, int] | Path


def proxy_line(peer: object, local: object) -> bytes:
    """The PROXY protocol v1 line for a client at ``peer`` that reached us at ``local``."""
    if not isinstance(peer, tuple) or not isinstance(local, tuple):
        return b"PROXY UNKNOWN\r\n"  # not an IP socket: the replica keeps its own view
    try:
        src, dst = ipaddress.ip_address(peer[0]), ipaddress.ip_address(local[0])
    except (ValueError, IndexError):
        return b"PROXY UNKNOWN\r\n"
    if src.version != dst.version:
        return b"PROXY UNKNOWN\r\n"
    family = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {peer[1]} {local[1]}\r\n".encode("ascii")


log = get_logger(__name__)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class TcpBalancer:
    def __init__(self, host: str, port: int, backends: Sequence[Backend]) -> None:
        self.host = host
        self.port = port
        self.backends = list(backends)
        self._next = itertools.cycle(range(len(backends)))
        self._server: asyncio.Server | None = None

    async def _connect_backend(
        self, client: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.backends)):
            backend = self.backends[next(self._next)]
            try:
                if isinstance(backend, Path):
                    up = await asyncio.wait_for(asyncio.open_unix_connection(str(backend)), 1.0)
                    up[1].write(
                        proxy_line(
                            client.get_extra_info("peername"), client.get_extra_info("sockname")
                        )
                    )
                    return up
                return await asyncio.wait_for(asyncio.open_connection(*backend), 1.0)
            except (OSError, TimeoutError):
                continue
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._connect_backend(writer)
        if upstream is None:
            body = b'{"error":{"code":"no_backend","message":"no chat-service replica is up"}}'
            writer.write(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                b"retry-after: 1\r\ncontent-length: " + str(len(body)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + body
            )
            with contextlib.suppress(Exception):
                await writer.drain()
                writer.close()
            return
        up_reader, up_writer = upstream
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        log.info("balancer_listening", host=self.host, port=self.port, backends=self.backends)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
