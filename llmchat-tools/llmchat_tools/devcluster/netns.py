"""The real node's own network and mount namespaces, and the only ways in from the host.

``NodeNamespace`` starts a holder process (``unshare --net --mount --propagation slave``): a
fresh network namespace with nothing but its loopback (no link to the host, so no route out
of the machine) and a private mount namespace (mounts made in it never reach the host, and
vanish with it). Every node component runs in both through ``nsenter``.

The host reaches a service inside only through a ``Forwarder``: it listens on the host's
127.0.0.1 and opens each connection from a thread that has joined the node's network namespace
(``setns`` is per thread), so the test's packets go to loopback and to addresses inside the
namespace the test created, nowhere else.

Every address the node uses is checked with ``ip route get`` inside the namespace before
anything starts (:func:`check_routes`): it must be local or on one of the node's own links,
and an address outside must have no route at all.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import logging
import os
import selectors
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000


class NamespaceError(RuntimeError):
    """The node's namespaces could not be made, or an address is not safely local."""


def _ns_id(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL("libc.so.6", use_errno=True)


def enter_netns(path: str) -> None:
    """Move the calling thread (only it) into the network namespace at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc().setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Route:
    """What ``ip route get ADDRESS`` answered inside the namespace."""

    address: str
    kind: str  # "local", "link" (on one of our links) or "unreachable"
    device: str
    raw: str


def parse_route_get(address: str, output: str, returncode: int) -> Route:
    """Classify ``ip route get`` output (pure: unit-tested)."""
    text = output.strip()
    if returncode != 0 or not text:
        return Route(address, "unreachable", "", text)
    words = text.split()
    device = words[words.index("dev") + 1] if "dev" in words else ""
    if words[0] == "local":
        return Route(address, "local", device, text)
    if "via" in words:
        return Route(address, "gateway", device, text)
    return Route(address, "link", device, text)


class Forwarder:
    """127.0.0.1:<port> on the host -> ``target`` inside the node's network namespace."""

    def __init__(self, netns_path: str, target: tuple[str, int], *, name: str = "") -> None:
        self.netns_path = netns_path
        self.target = target
        self.name = name or f"{target[0]}:{target[1]}"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        accept = threading.Thread(target=self._accept, name=f"fwd-{self.name}", daemon=True)
        accept.start()
        self._threads.append(accept)

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            enter_netns(self.netns_path)  # this thread only; it ends with the connection
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
            with self._lock:
                self._open.update((conn, upstream))
            self._pump(conn, upstream)
        except OSError as exc:
            logger.debug("forwarder %s: %s", self.name, exc)
        finally:
            for s in (conn, upstream):
                if s is not None:
                    with self._lock:
                        self._open.discard(s)
                    s.close()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        open_sides = 2
        while open_sides and not self._stop.is_set():
            for key, _ in sel.select(timeout=0.5):
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                dst: socket.socket = key.data
                data = src.recv(65536)
                if not data:  # half-close: pass the EOF on, keep the other direction
                    sel.unregister(src)
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    open_sides -= 1
                    continue
                dst.sendall(data)
        sel.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            for s in list(self._open):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(timeout=2)


class NodeNamespace:
    """A network + mount namespace held by one process, and the commands run in it."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._holder: subprocess.Popen[bytes] | None = None
        self._forwarders: list[Forwarder] = []

    @property
    def pid(self) -> int:
        if self._holder is None or self._holder.poll() is not None:
            raise NamespaceError("the node's namespace holder is not running")
        return self._holder.pid

    @property
    def netns_path(self) -> str:
        return f"/proc/{self.pid}/ns/net"

    def start(self, timeout: float = 10.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # unshare(2) then exec: the holder's own pid is in the new namespaces
            self._holder = subprocess.Popen(
                ["unshare", "--net", "--mount", "--propagation", "slave", "--", "sleep", "inf"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        me = os.getpid()
        deadline = time.monotonic() + timeout
        while True:
            if self._holder.poll() is not None:
                raise NamespaceError(
                    f"unshare exited with {self._holder.returncode}; see {self.log_path}"
                )
            with contextlib.suppress(OSError):
                if _ns_id(self._holder.pid, "net") != _ns_id(me, "net") and _ns_id(
                    self._holder.pid, "mnt"
                ) != _ns_id(me, "mnt"):
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise NamespaceError("the holder did not enter new namespaces")
            time.sleep(0.02)
        # the guard every later command relies on: nsenter really lands in the new namespaces
        inside = self.run(["readlink", "/proc/self/ns/net", "/proc/self/ns/mnt"]).stdout.split()
        want = [_ns_id(self.pid, "net"), _ns_id(self.pid, "mnt")]
        host = [_ns_id(me, "net"), _ns_id(me, "mnt")]
        if inside != want or any(i == h for i, h in zip(inside, host, strict=True)):
            self.stop()
            raise NamespaceError(f"nsenter check failed: inside {inside}, want {want}")
        logger.info("node namespaces held by pid %d (%s)", self.pid, want[0])

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the node's network and mount namespaces."""
        return ["nsenter", f"--target={self.pid}", "--net", "--mount", "--", *argv]

    def run(
        self, argv: Sequence[str], *, check: bool = True, timeout: float = 60.0, input: str = ""
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.wrap(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input or None,
        )
        if check and result.returncode != 0:
            raise NamespaceError(
                f"`{' '.join(argv)}` in the node namespace failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result

    def links(self) -> list[str]:
        out = self.run(["ip", "-o", "link", "show"]).stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line]

    def forward(self, address: str, port: int, *, name: str = "") -> Forwarder:
        """A host 127.0.0.1 port that reaches ``address:port`` inside the namespace."""
        fwd = Forwarder(self.netns_path, (address, port), name=name)
        self._forwarders.append(fwd)
        return fwd

    def stop(self) -> None:
        for fwd in self._forwarders:
            fwd.close()
        self._forwarders.clear()
        holder, self._holder = self._holder, None
        if holder is not None and holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)


def check_routes(
    ns: NodeNamespace,
    *,
    local: Iterable[str],
    on_links: dict[str, set[str]],
    outside: Iterable[str] = ("1.1.1.1", "8.8.8.8", "192.0.2.1", "10.0.0.1"),
) -> list[Route]:
    """Refuse to start unless every address stays inside the node's namespace.

    ``local`` must be the namespace's own addresses; each address in ``on_links`` must route
    straight onto one of the given links (ours); every ``outside`` address must have no route
    at all (the namespace has no way out). Only links in ``allowed`` may exist. Raises
    :class:`NamespaceError` naming the first address that fails.
    """
    routes: list[Route] = []
    allowed = {"lo"} | {d for devs in on_links.values() for d in devs}
    present = set(ns.links())
    if not present <= allowed:
        raise NamespaceError(
            f"the node namespace has links {sorted(present - allowed)} that are not ours"
        )

    def get(addr: str) -> Route:
        ipaddress.ip_address(addr)  # a literal address, never a name
        res = ns.run(["ip", "route", "get", addr], check=False)
        route = parse_route_get(addr, res.stdout or res.stderr, res.returncode)
        routes.append(route)
        return route

    for addr in local:
        r = get(addr)
        if r.kind != "local":
            raise NamespaceError(f"{addr} is not local to the node namespace: {r.raw!r}")
    for addr, devices in on_links.items():
        r = get(addr)
        if r.kind not in ("local", "link") or r.device not in devices:
            raise NamespaceError(
                f"{addr} does not route onto the node's own links {sorted(devices)}: {r.raw!r}"
            )
    for addr in outside:
        r = get(addr)
        if r.kind != "unreachable":
            raise NamespaceError(
                f"the node namespace has a route out of the machine ({addr}: {r.raw!r}); "
                "refusing to start"
            )
    return routes


def check_host_loopback(addresses: Iterable[str] = ("127.0.0.1",)) -> None:
    """The host side only ever talks to loopback: check it routes there."""
    for addr in addresses:
        res = subprocess.run(
            ["ip", "route", "get", addr], capture_output=True, text=True, check=False, timeout=10
        )
        route = parse_route_get(addr, res.stdout, res.returncode)
        if route.kind != "local" or route.device != "lo":
            raise NamespaceError(f"{addr} does not route to the host's loopback: {route.raw!r}")
