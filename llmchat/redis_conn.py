"""Creating Redis clients with the project's timeouts and retry policy, for one Redis or a
Redis Cluster.

``LLMCHAT_REDIS_URL`` may name a single Redis or any node of a Redis Cluster: ``create_redis``
asks that node (``INFO cluster``) and returns redis-py's asyncio ``RedisCluster`` when it says
``cluster_enabled:1``, the plain pooled client otherwise. Both speak the same commands; the few
places where a cluster needs something else (a read over many rooms' streams, live events, a
write confirmed by a replica) ask :func:`is_cluster` and :func:`master_client`.
"""

from __future__ import annotations

import time
import weakref
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot
from redis.exceptions import ClusterError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from llmchat.logs import get_logger

log = get_logger(__name__)

#: Errors that mean "Redis is not reachable right now" (as opposed to a bad command). In a
#: cluster, a master that failed and whose slots are not yet served again reads the same.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    RedisClusterException,  # no node reachable / slots not covered while failing over
    ClusterError,  # CLUSTERDOWN: a master failed and its replica has not taken over yet
    ConnectionError,
    OSError,  # includes TimeoutError (asyncio.wait_for)
)


#: Connections one client may open. When all are busy a caller waits (up to ``POOL_WAIT_S``)
#: instead of failing at once, as redis-py's default pool (100, then an error) would under a
#: burst of thousands of WebSocket joins and leaves.
POOL_SIZE = 512
POOL_WAIT_S = 5.0
#: Seconds spent asking a node whether it is part of a cluster before deciding it is not.
DETECT_TIMEOUT_S = 3.0

_DETECTED: dict[str, bool] = {}


def detect_cluster(url: str, timeout: float = DETECT_TIMEOUT_S) -> bool:
    """Whether the Redis at ``url`` is a node of a Redis Cluster (``cluster_enabled:1``).

    Asked once per URL and remembered. A Redis that does not answer within ``timeout`` is taken
    for a single node (said in the log) and asked again by the next client created.
    """
    if url in _DETECTED:
        return _DETECTED[url]
    deadline = time.monotonic() + timeout
    while True:
        try:
            with redis.Redis.from_url(
                url, socket_connect_timeout=1.0, socket_timeout=1.0, decode_responses=True
            ) as probe:
                info = probe.info("cluster")
            found = bool(int(info.get("cluster_enabled", 0)))
            _DETECTED[url] = found
            return found
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            if time.monotonic() >= deadline:
                log.warning("redis_mode_unknown", error=str(exc), assumed="single node")
                return False
            time.sleep(0.1)


def _pool_options(socket_timeout: float | None) -> dict[str, Any]:
    """The pool settings of every plain client: one Redis, or one node of a cluster."""
    return {
        "max_connections": POOL_SIZE,
        "timeout": POOL_WAIT_S,
        "decode_responses": True,
        "socket_connect_timeout": 2.0,
        "socket_timeout": socket_timeout,
        "health_check_interval": 10,
    }


def create_redis(url: str, *, socket_timeout: float | None = 5.0) -> aioredis.Redis:
    """A pooled asyncio client that decodes to ``str`` and retries briefly on connection errors.

    On a Redis Cluster node, redis-py's asyncio ``RedisCluster`` (typed as ``Redis``: it has
    the same command methods; code that needs the difference asks :func:`is_cluster`).
    ``socket_timeout`` must be None (or longer than the block time) for clients used for
    blocking reads such as XREAD BLOCK.
    """
    if detect_cluster(url):
        cluster = RedisCluster.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=2.0,
            socket_timeout=socket_timeout,
            max_connections=POOL_SIZE,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        )
        return cast(aioredis.Redis, cluster)
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        **_pool_options(socket_timeout),
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


def is_cluster(client: object) -> bool:
    return isinstance(client, RedisCluster)


def as_cluster(client: aioredis.Redis) -> RedisCluster:
    return cast(RedisCluster, client)


def same_slot(*names: str) -> bool:
    """Whether every key named lands on one cluster slot (always true on one Redis)."""
    return len({key_slot(n.encode("utf-8")) for n in names}) <= 1


def slot_groups(client: object, names: list[str]) -> list[list[str]]:
    """``names`` split so that no group crosses a cluster slot (one group on one Redis): what a
    multi-key command such as ``XREADGROUP`` over several rooms' streams must be cut into."""
    if not is_cluster(client) or same_slot(*names):
        return [names] if names else []
    groups: dict[int, list[str]] = {}
    for n in names:
        groups.setdefault(key_slot(n.encode("utf-8")), []).append(n)
    return list(groups.values())


_NODE_CLIENTS: weakref.WeakKeyDictionary[RedisCluster, dict[str, aioredis.Redis]] = (
    weakref.WeakKeyDictionary()
)


async def master_client(client: aioredis.Redis, key: str) -> aioredis.Redis:
    """A plain client of the master serving ``key`` now (the client itself on one Redis).

    Commands sent through one pipeline of it go over one connection, in order: what ``WAIT``
    needs (it counts the writes of the connection it runs on).
    """
    if not is_cluster(client):
        return client
    cluster = as_cluster(client)
    await cluster.initialize()
    node = cluster.get_node_from_key(key)
    if node is None:
        raise RedisClusterException(f"no node serves {key!r}")
    clients = _NODE_CLIENTS.setdefault(cluster, {})
    found = clients.get(node.name)
    if found is None:
        found = clients[node.name] = create_node_client(node.host, int(node.port))
    return found


def create_node_client(
    host: str, port: int, *, socket_timeout: float | None = 5.0
) -> aioredis.Redis:
    """A pooled client of one node of a cluster (no redirections followed: a MOVED reply is an
    error its caller answers by asking the cluster where the key went)."""
    pool = aioredis.BlockingConnectionPool(host=host, port=port, **_pool_options(socket_timeout))
    return aioredis.Redis.from_pool(pool)


async def refresh_topology(client: aioredis.Redis) -> None:
    """Ask the cluster again which node serves which slots (after MOVED, ASK or a failover)."""
    if is_cluster(client):
        try:
            await as_cluster(client).nodes_manager.initialize()
        except UNAVAILABLE_ERRORS as exc:
            log.warning("cluster_topology_refresh_failed", error=str(exc))
