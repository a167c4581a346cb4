"""A real Redis Cluster on loopback: six Debian ``redis-server`` processes, 3 masters and 3
replicas, made with ``redis-cli --cluster create``. For tests and tools that need a cluster.

Every node binds 127.0.0.1 on a free port, in a temporary directory of its own, with the AOF
on as the single-node test fixture has it. ``start`` waits until every node reports
``cluster_state:ok`` and stops everything it started if any step fails. ``kill_master`` kills
a master with SIGKILL and ``wait_failover`` waits until a replica has taken its slots over.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.crc import key_slot

HOST = "127.0.0.1"
#: Milliseconds a master may be unreachable before its replica takes over (small for tests;
#: Redis's default is 15 s).
NODE_TIMEOUT_MS = 1500


class ClusterError(RuntimeError):
    """The cluster could not be started, or did not reach the state waited for."""


def _free_port() -> int:
    # Redis Cluster also listens on port + 10000 (the cluster bus): both must be free.
    for _ in range(200):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind((HOST, port + 10000))
            except OSError:
                continue
        return port
    raise ClusterError("no free port pair (port, port + 10000) on 127.0.0.1")


def check_loopback(host: str) -> None:
    """Refuse any address that is not on the loopback range (network safety)."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ClusterError(f"refusing {host}: a test cluster only runs on 127.0.0.0/8")
    out = subprocess.run(["ip", "route", "get", host], capture_output=True, text=True, check=False)
    if out.returncode == 0 and " dev lo " not in f" {out.stdout} ":
        raise ClusterError(f"{host} is not routed over loopback: {out.stdout.strip()}")


@dataclass
class ClusterNode:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(
            host=HOST,
            port=self.port,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )

    def info_cluster(self) -> dict[str, str]:
        with self.client() as c:
            raw = str(c.execute_command("CLUSTER", "INFO"))
        pairs = (line.split(":", 1) for line in raw.splitlines() if ":" in line)
        return {k.strip(): v.strip() for k, v in pairs}

    def role(self) -> str:
        with self.client() as c:
            return str(c.execute_command("ROLE")[0])

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _wait(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last})")


@dataclass
class RedisCluster:
    """Start, inspect, break and stop a six-node Redis Cluster on 127.0.0.1."""

    masters: int = 3
    replicas_per_master: int = 1
    node_timeout_ms: int = NODE_TIMEOUT_MS
    base_dir: Path | None = None
    #: the AOF's fsync policy: ``always`` for the durability tests, ``everysec`` for benches
    #: (the single Redis they compare with runs ``everysec``)
    appendfsync: str = "always"
    #: ceiling on the connections of each node
    maxclients: int = 10_000
    nodes: list[ClusterNode] = field(default_factory=list)
    _own_dir: Path | None = None

    @property
    def url(self) -> str:
        """A URL naming one live node (any node of a cluster will do for a client)."""
        for node in self.nodes:
            if node.alive:
                return node.url
        raise ClusterError("no node of the cluster is running")

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def start(self, timeout: float = 60.0) -> RedisCluster:
        server = shutil.which("redis-server")
        cli = shutil.which("redis-cli")
        if not server or not cli:
            raise ClusterError("redis-server and redis-cli are needed (apt-get install redis)")
        check_loopback(HOST)
        root = self.base_dir or Path(tempfile.mkdtemp(prefix="llmchat-redis-cluster-"))
        self._own_dir = None if self.base_dir else root
        try:
            count = self.masters * (1 + self.replicas_per_master)
            for i in range(count):
                node = ClusterNode(_free_port(), root / f"node-{i}")
                self.nodes.append(node)
                self._spawn(server, node)
            for node in self.nodes:
                _wait(f"redis-server on {node.address}", lambda n=node: n.client().ping(), 30)
            subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *(n.address for n in self.nodes),
                    "--cluster-replicas",
                    str(self.replicas_per_master),
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=timeout,
            )
            self.wait_ok(timeout)
            _wait("every replica in sync", self._replicas_in_sync, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, server: str, node: ClusterNode) -> None:
        node.workdir.mkdir(parents=True, exist_ok=True)
        node.proc = subprocess.Popen(
            [
                server,
                "--port",
                str(node.port),
                "--bind",
                HOST,
                "--dir",
                str(node.workdir),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.appendfsync,
                "--maxclients",
                str(self.maxclients),
                "--save",
                "",
                "--logfile",
                str(node.workdir / "redis.log"),
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def live_nodes(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.alive]

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Until every running node reports ``cluster_state:ok`` and sees all slots served."""

        def ok() -> bool:
            for node in self.live_nodes():
                info = node.info_cluster()
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != "16384":
                    return False
            return True

        _wait("cluster_state:ok on every node", ok, timeout)

    def _replicas_in_sync(self) -> bool:
        for node in self.live_nodes():
            with node.client() as c:
                info = c.info("replication")
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def master_nodes(self) -> list[ClusterNode]:
        return [n for n in self.live_nodes() if n.role() == "master"]

    def node_serving(self, key: str) -> ClusterNode:
        """The running master that serves ``key``'s slot now."""
        wanted = key_slot(key.encode("utf-8"))
        for node in self.master_nodes():
            with node.client() as c:
                ranges = c.execute_command("CLUSTER", "SLOTS")
            for start, end, master, *_replicas in ranges:
                if int(start) <= wanted <= int(end) and int(master[1]) == node.port:
                    return self._by_port(int(master[1]), str(master[0]))
        raise ClusterError(f"no master serves slot {wanted}")

    def _by_port(self, port: int, host: str) -> ClusterNode:
        check_loopback(host)
        for node in self.nodes:
            if node.port == port:
                return node
        raise ClusterError(f"{host}:{port} is not a node of this cluster")

    def replica_of(self, master: ClusterNode) -> ClusterNode:
        """The running replica that follows ``master``."""
        for node in self.live_nodes():
            with node.client() as c:
                info = c.info("replication")
            if info.get("role") == "slave" and int(info.get("master_port", 0)) == master.port:
                return node
        raise ClusterError(f"no running replica follows {master.address}")

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL one node, whatever its role."""
        if node.proc is None:
            raise ClusterError(f"{node.address} is not running")
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)

    def kill_master(self, node: ClusterNode | None = None) -> ClusterNode:
        """SIGKILL a master (the first one, unless named); returns it."""
        target = node or self.master_nodes()[0]
        if target.proc is None:
            raise ClusterError(f"{target.address} is not running")
        target.proc.send_signal(signal.SIGKILL)
        target.proc.wait(10)
        return target

    def wait_failover(self, killed: ClusterNode, timeout: float = 60.0) -> ClusterNode:
        """Until a replica of ``killed`` is a master and the cluster is ok again; the new master."""
        promoted: list[ClusterNode] = []

        def done() -> bool:
            for node in self.live_nodes():
                with node.client() as c:
                    info = c.info("replication")
                if info.get("role") == "master" and self._was_replica_of(node, killed):
                    promoted[:] = [node]
            return bool(promoted)

        _wait(f"a replica of {killed.address} to take over", done, timeout)
        self.wait_ok(timeout)
        return promoted[0]

    def _was_replica_of(self, node: ClusterNode, killed: ClusterNode) -> bool:
        # The killed master is marked "fail" and the promoted node now holds slots; nodes.conf
        # of the promoted node lists the killed one as a master with no slots.
        with node.client() as c:
            lines = str(c.execute_command("CLUSTER", "NODES")).splitlines()
        me = next((ln for ln in lines if "myself" in ln.split()[2]), "")
        dead = next((ln for ln in lines if ln.split()[1].startswith(killed.address)), "")
        if not me or not dead:
            return False
        dead_fields = dead.split()
        return "fail" in dead_fields[2] and len(me.split()) > 8 and len(dead_fields) <= 8

    def restart(self, node: ClusterNode, timeout: float = 30.0) -> None:
        """Start a stopped node again (it rejoins as a replica of whoever took its slots)."""
        server = shutil.which("redis-server")
        if server is None:
            raise ClusterError("redis-server is missing")
        self._spawn(server, node)
        _wait(f"redis-server on {node.address}", lambda: node.client().ping(), timeout)

    def flushall(self) -> None:
        for node in self.master_nodes():
            with node.client() as c:
                c.flushall()

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL) and remove the directory made for them."""
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait(5)
                node.proc = None
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()


def cluster_masters(url: str) -> list[tuple[str, int]]:
    """The masters serving slots of the cluster that the node at ``url`` belongs to."""
    with redis.Redis.from_url(url, decode_responses=True) as c:
        slots = c.execute_command("CLUSTER", "SLOTS")
    return sorted({(str(r[2][0]), int(r[2][1])) for r in slots})


def masters_by_key(url: str, names: list[str]) -> dict[tuple[str, int], list[str]]:
    """Which master serves each key (by its slot): master -> keys, every master listed."""
    with redis.Redis.from_url(url, decode_responses=True) as c:
        slots = c.execute_command("CLUSTER", "SLOTS")
    out: dict[tuple[str, int], list[str]] = {(str(r[2][0]), int(r[2][1])): [] for r in slots}
    for name in names:
        slot = key_slot(name.encode("utf-8"))
        for r in slots:
            if int(r[0]) <= slot <= int(r[1]):
                out[(str(r[2][0]), int(r[2][1]))].append(name)
                break
    return out
