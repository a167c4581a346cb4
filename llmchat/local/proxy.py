"""A small TCP load balancer: one address in front of several chat-service replicas.

Hand-rolled rather than nginx/HAProxy because the local mode must run from a clone with
nothing but Python and redis-server, and a layer-4 proxy carries HTTP and WebSocket alike in
~100 lines. Each new connection goes to the next replica (round robin) that accepts a TCP
connection; a dead replica is skipped at once, so clients that reconnect land on a live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

from llmchat.logs import get_logger

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
    def __init__(self, host: str, port: int, backends: list[tuple[str, int]]) -> None:
        self.host = host
        self.port = port
        self.backends = backends
        self._next = itertools.cycle(range(len(backends)))
        self._server: asyncio.Server | None = None

    async def _connect_backend(
        self,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.backends)):
            host, port = self.backends[next(self._next)]
            try:
                return await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
            except (OSError, TimeoutError):
                continue
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._connect_backend()
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
