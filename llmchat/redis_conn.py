"""Creating Redis clients with the project's timeouts and retry policy."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: Errors that mean "Redis is not reachable right now" (as opposed to a bad command).
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,  # includes TimeoutError (asyncio.wait_for)
)


#: Connections one client may open. When all are busy a caller waits (up to ``POOL_WAIT_S``)
#: instead of failing at once, as redis-py's default pool (100, then an error) would under a
#: burst of thousands of WebSocket joins and leaves.
POOL_SIZE = 512
POOL_WAIT_S = 5.0


def create_redis(url: str, *, socket_timeout: float | None = 5.0) -> aioredis.Redis:
    """A pooled asyncio client that decodes to ``str`` and retries briefly on connection errors.

    ``socket_timeout`` must be None (or longer than the block time) for clients used for
    blocking reads such as XREAD BLOCK.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT_S,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=socket_timeout,
        health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
