"""A stored message survives the loss of a Redis master: acknowledged only once a replica has it.

Redis replicates asynchronously; ``WAIT n timeout`` blocks until ``n`` replicas have every
write made so far *on the connection it runs on*. So the append and its ``WAIT`` go in one
pipeline on a plain client of the key's master (``llmchat.redis_conn.master_client``), never
on a random pooled connection of a cluster client.

Settings (environment, validated when the first client is made):

- ``LLMCHAT_REDIS_WAIT_REPLICAS``: replicas that must confirm a message before it is
  acknowledged; default 1 on a Redis Cluster, 0 on a single Redis (no ``WAIT`` at all).
- ``LLMCHAT_REDIS_WAIT_TIMEOUT_MS``: how long to wait for them (1 to 60,000; default 1,000).
  When fewer confirm in time the message is on the master only: the caller gets
  :class:`NotReplicatedError` (a storage error: retry with the same message id, which stores
  nothing twice) and ``llmchat_redis_not_replicated_total`` counts it.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.exceptions import ConnectionError as RedisConnectionError

from llmchat.metrics import name

NOT_REPLICATED = Counter(
    name("redis_not_replicated_total"),
    "Writes not confirmed by enough Redis replicas within the WAIT timeout (not acknowledged).",
)


class DurabilitySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LLMCHAT_REDIS_", extra="ignore")

    wait_replicas: int | None = Field(default=None, ge=0, le=16)
    wait_timeout_ms: int = Field(default=1000, ge=1, le=60_000)


@dataclass(frozen=True)
class Durability:
    replicas: int
    timeout_ms: int

    @classmethod
    def from_env(cls, cluster: bool) -> Durability:
        s = DurabilitySettings()
        replicas = s.wait_replicas if s.wait_replicas is not None else (1 if cluster else 0)
        return cls(replicas, s.wait_timeout_ms)

    def wait_command(self) -> tuple[str, int, int]:
        return ("WAIT", self.replicas, self.timeout_ms)

    def check(self, confirmed: object, what: str) -> None:
        """Raise :class:`NotReplicatedError` when ``WAIT`` answered fewer than asked."""
        got = int(confirmed)  # type: ignore[call-overload]
        if got < self.replicas:
            NOT_REPLICATED.inc()
            raise NotReplicatedError(what, got, self.replicas, self.timeout_ms)


class NotReplicatedError(RedisConnectionError):
    """Stored on the master, but not confirmed by enough replicas in time: not acknowledged.

    A storage error (a subclass of redis-py's ``ConnectionError``, so every edge answers it as
    storage being unavailable); the message is safe to send again with the same id."""

    def __init__(self, what: str, confirmed: int, wanted: int, timeout_ms: int) -> None:
        super().__init__(
            f"{what} was not confirmed by a Redis replica ({confirmed} of {wanted} within "
            f"{timeout_ms} ms), so it is not acknowledged; send it again with the same id"
        )
        self.confirmed = confirmed
        self.wanted = wanted
