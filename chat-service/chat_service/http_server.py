"""Serving chat-service: uvicorn's h11 HTTP protocol with the limits a public socket needs.

uvicorn bounds idle keep-alive connections but not a client that is slow to send its request
head, it checks its concurrency limit for HTTP requests but not for WebSocket upgrades, and its
faster parser (httptools) has no header size limit. So chat-service runs the h11 protocol
(``h11_max_incomplete_event_size`` caps the head) through a small subclass that adds:

- a header-read timeout: a request head not complete ``header_timeout`` seconds after its first
  byte (or after the connection opened) gets 408 and the connection is closed, so silent or
  trickling sockets (slowloris) cannot pile up;
- a connection limit for every connection, WebSockets included: over it, 503 at once;
- the PROXY protocol (v1, HAProxy's) on an optional Unix socket only (``proxy_socket``): a
  connection there starts with a line naming the real client, which ``llmchat up``'s balancer
  sends. Only processes that may open that socket (mode 0600: the same user) can name an
  address; TCP clients never can. Behind an HTTP proxy, ``trusted_proxies`` lets uvicorn take
  the client from ``X-Forwarded-For``, from those proxies' addresses only.

Hand-rolled as subclasses because uvicorn has these hooks but not these behaviours, and a
front proxy cannot be assumed (``llmchat up`` has none).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from pathlib import Path
from typing import Any, ClassVar

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from chat_service.settings import ChatServiceSettings
from llmchat.logs import get_logger

log = get_logger(__name__)

#: The longest PROXY protocol v1 line (the specification's own bound, CRLF included).
MAX_PROXY_LINE = 107


def _plain(status: str, body: bytes, *extra: bytes) -> bytes:
    head = [f"HTTP/1.1 {status}".encode(), b"content-type: application/json", *extra]
    head += [b"connection: close", b"content-length: " + str(len(body)).encode()]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


BUSY = _plain(
    "503 Service Unavailable",
    b'{"error":{"code":"too_many_connections","message":"the service has too many open '
    b'connections; retry shortly"}}',
    b"retry-after: 1",
)
SLOW = _plain(
    "408 Request Timeout",
    b'{"error":{"code":"request_timeout","message":"the request head was not sent in time"}}',
)
BAD_PROXY = _plain(
    "400 Bad Request",
    b'{"error":{"code":"bad_proxy_header","message":"expected a PROXY protocol v1 line"}}',
)


def parse_proxy_line(line: bytes) -> tuple[str, int] | None:
    """The client a PROXY protocol v1 line names: ``PROXY TCP4 <src> <dst> <sport> <dport>``.
    None for ``PROXY UNKNOWN`` (the proxy does not know: keep the socket's own address).
    Raises ValueError for anything else."""
    if not line.endswith(b"\r\n") or len(line) > MAX_PROXY_LINE:
        raise ValueError("not a PROXY line")
    parts = line[:-2].decode("ascii").split(" ")
    if parts[:1] != ["PROXY"] or len(parts) < 2:
        raise ValueError("not a PROXY line")
    if parts[1] == "UNKNOWN":
        return None
    if parts[1] not in ("TCP4", "TCP6") or len(parts) != 6:
        raise ValueError("malformed PROXY line")
    source = ipaddress.ip_address(parts[2])
    ipaddress.ip_address(parts[3])
    if source.version != (4 if parts[1] == "TCP4" else 6):
        raise ValueError("PROXY address family mismatch")
    port = int(parts[4])
    if not 0 <= port <= 65535 or not 0 <= int(parts[5]) <= 65535:
        raise ValueError("PROXY port out of range")
    return str(source), port


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header-read timeout, a connection limit and the PROXY
    protocol on the proxy socket (see the module's docstring). Configured by ``configure``."""

    header_timeout: ClassVar[float] = 10.0
    max_connections: ClassVar[int] = 0
    proxy_socket: ClassVar[str | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._proxy_pending: bytearray | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.max_connections and len(self.connections) > self.max_connections:
            transport.write(BUSY)
            transport.close()
            return
        sockname = transport.get_extra_info("sockname")
        if self.proxy_socket and isinstance(sockname, str) and sockname == self.proxy_socket:
            self._proxy_pending = bytearray()
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._proxy_pending is not None:
            rest = self._take_proxy_line(data)
            if not rest:  # incomplete, refused, or nothing after it yet (b"" is EOF to h11)
                return
            data = rest
        if self._head_timer is None and self._between_requests() and data:
            self._arm_head_timer()
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before:  # a request head was read
            self._disarm_head_timer()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._disarm_head_timer()
        super().handle_websocket_upgrade(event)
        # the WebSocket protocol took the socket's address: give it the client's (it builds its
        # scope, or its task reads ``client``, only after this returns)
        upgraded = self.transport.get_protocol()
        if upgraded is not self and self.client is not None:
            upgraded.client = self.client  # type: ignore[attr-defined]
            scope = getattr(upgraded, "scope", None)
            if isinstance(scope, dict):
                scope["client"] = self.client

    # -- internals ----------------------------------------------------------------------------

    def _take_proxy_line(self, data: bytes) -> bytes | None:
        """Consume the PROXY line; the bytes after it, or None while it is incomplete."""
        assert self._proxy_pending is not None
        self._proxy_pending += data
        end = self._proxy_pending.find(b"\r\n")
        if end < 0:
            if len(self._proxy_pending) > MAX_PROXY_LINE:
                self._refuse(BAD_PROXY)
            return None
        line = bytes(self._proxy_pending[: end + 2])
        rest = bytes(self._proxy_pending[end + 2 :])
        self._proxy_pending = None
        try:
            client = parse_proxy_line(line)
        except (ValueError, UnicodeDecodeError):
            self._refuse(BAD_PROXY)
            return None
        if client is not None:
            self.client = client
        return rest

    def _refuse(self, response: bytes) -> None:
        self._disarm_head_timer()
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        if self.header_timeout > 0:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._between_requests() and not self.transport.is_closing():
            log.debug("request_head_timeout", client=self.client)
            self._refuse(SLOW)


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, cutting a peer that stopped answering pings at
    once: closing politely would wait for a write buffer that a peer who does not read never
    drains, so its memory would stay held."""

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        with contextlib.suppress(Exception):
            self.transport.abort()


def configure(settings: ChatServiceSettings) -> type[GuardedH11Protocol]:
    """The HTTP protocol class for these settings (uvicorn instantiates it per connection)."""
    return type(
        "ChatServiceHttp",
        (GuardedH11Protocol,),
        {
            "header_timeout": settings.header_timeout_s,
            "max_connections": settings.max_connections,
            "proxy_socket": str(settings.proxy_socket) if settings.proxy_socket else None,
        },
    )


def unix_listener(path: Path) -> socket.socket:
    """A Unix socket only its owner may connect to (a stale one is replaced)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def uvicorn_config(settings: ChatServiceSettings, app: FastAPI) -> uvicorn.Config:
    trusted = [str(net) for net in settings.trusted_proxies]
    ws: Any = (
        GuardedWebSocketProtocol if settings.ws_impl == "websockets-sansio" else settings.ws_impl
    )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        http=configure(settings),
        ws=ws,
        ws_max_size=settings.ws_max_frame_bytes,
        ws_per_message_deflate=settings.ws_compression,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        limit_concurrency=settings.max_connections or None,
        # X-Forwarded-For from the configured proxies only; none: the socket's own address
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or [],
        server_header=False,
        timeout_graceful_shutdown=5,
    )


def serve(settings: ChatServiceSettings, app: FastAPI) -> None:
    """Run until stopped: the TCP address, plus the balancer's Unix socket if configured."""
    config = uvicorn_config(settings, app)
    server = uvicorn.Server(config)
    if settings.proxy_socket is None:
        server.run()
        return
    sockets = [config.bind_socket(), unix_listener(settings.proxy_socket)]
    log.info(
        "chat_service_listening",
        address=f"{settings.host}:{settings.port}",
        proxy_socket=str(settings.proxy_socket),
    )
    try:
        server.run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            settings.proxy_socket.unlink()
