"""Leases: who holds a role (a room's leadership, the active judge), for how long, in which term.

One interface, two implementations: ``RedisLease`` for local runs (below) and
``KubernetesLease`` on a ``coordination.k8s.io/v1`` Lease (``llmchat.lease_k8s``). The holder
renews before the lease runs out; a holder that stops renewing loses it and another candidate
acquires it with the next term. The term (Kubernetes' ``leaseTransitions``) is the fencing token:
a writer that acts as holder passes its term, and writes with a stale term are refused.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import cast

import redis.asyncio as aioredis

from llmchat.keys import PREFIX


@dataclass(frozen=True)
class LeaseTimings:
    """Defaults fail over in about a second (client-go's are 15 s / 10 s / 2 s)."""

    duration_s: float = 1.0
    renew_every_s: float = 0.25
    retry_every_s: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.renew_every_s < self.duration_s:
            raise ValueError("renew interval must be positive and shorter than the lease duration")
        if not 0 < self.retry_every_s <= self.duration_s:
            raise ValueError("retry interval must be positive and at most the lease duration")

    def still_ours(self, since_renewed_s: float) -> bool:
        """Whether a lease renewed ``since_renewed_s`` ago is surely still ours: it has not
        expired, even if the next renewal (due in ``renew_every_s``) fails too."""
        return since_renewed_s < self.duration_s - self.renew_every_s


@dataclass(frozen=True)
class LeaseRecord:
    name: str
    holder: str | None
    term: int
    acquired_at: float | None
    renewed_at: float | None
    duration_s: float

    @property
    def expires_at(self) -> float | None:
        return None if self.renewed_at is None else self.renewed_at + self.duration_s

    def held(self, now: float | None = None) -> bool:
        exp = self.expires_at
        return self.holder is not None and exp is not None and (now or time.time()) < exp


class Lease(abc.ABC):
    """A named lease. Methods never raise for contention: they return what happened."""

    name: str
    duration_s: float

    @abc.abstractmethod
    async def try_acquire(self, holder: str) -> LeaseRecord | None:
        """Take the lease if it is free or expired (or already ours); the record, or None."""

    @abc.abstractmethod
    async def renew(self, holder: str, term: int) -> bool:
        """Extend our lease; False when it is no longer ours (lost: stop acting as holder)."""

    @abc.abstractmethod
    async def release(self, holder: str, term: int) -> bool:
        """Give the lease up at once (graceful shutdown, handover)."""

    @abc.abstractmethod
    async def read(self) -> LeaseRecord:
        """The current record (the holder may be expired)."""


# KEYS: lease hash. ARGV: holder, now_ms, duration_ms.
# Returns {holder, term, acquired_ms, renewed_ms, prev_holder, prev_expiry_ms} or {} when held
# by another. The hash outlives expiry (no TTL) so the term only ever grows.
_ACQUIRE = """
local h = redis.call('HMGET', KEYS[1], 'holder', 'term', 'acquired', 'renewed', 'duration')
local now = tonumber(ARGV[2])
local holder, term = h[1], tonumber(h[2] or '0')
local renewed, duration = tonumber(h[4] or '0'), tonumber(h[5] or '0')
local live = holder and holder ~= '' and now < renewed + duration
if live and holder ~= ARGV[1] then
  return {}
end
if live and holder == ARGV[1] then
  redis.call('HSET', KEYS[1], 'renewed', now, 'duration', ARGV[3])
  return {holder, tostring(term), h[3], tostring(now), holder, tostring(renewed + duration)}
end
term = term + 1
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'term', term, 'acquired', now, 'renewed', now,
  'duration', ARGV[3])
return {ARGV[1], tostring(term), tostring(now), tostring(now), holder or '',
  tostring(renewed + duration)}
"""

# KEYS: lease hash. ARGV: holder, term, now_ms, duration_ms. 1 renewed, 0 lost.
_RENEW = """
local h = redis.call('HMGET', KEYS[1], 'holder', 'term', 'renewed', 'duration')
local now = tonumber(ARGV[3])
if h[1] ~= ARGV[1] or h[2] ~= ARGV[2] then return 0 end
if now >= tonumber(h[3]) + tonumber(h[4]) then return 0 end
redis.call('HSET', KEYS[1], 'renewed', now, 'duration', ARGV[4])
return 1
"""

# KEYS: lease hash. ARGV: holder, term, now_ms.
_RELEASE = """
local h = redis.call('HMGET', KEYS[1], 'holder', 'term')
if h[1] ~= ARGV[1] or h[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'holder', '', 'renewed', ARGV[3], 'duration', 0,
  'released', ARGV[3])
return 1
"""

#: Fencing check for other scripts: KEYS[n] = lease hash, ARGV holder/term/now_ms.
FENCE_LUA = """
local function fenced(key, holder, term, now)
  local h = redis.call('HMGET', key, 'holder', 'term', 'renewed', 'duration')
  if h[1] ~= holder or h[2] ~= term then return true end
  return tonumber(now) >= tonumber(h[3]) + tonumber(h[4])
end
"""


def lease_key(name: str) -> str:
    return f"{PREFIX}:lease:{{{name}}}"


def now_ms() -> int:
    return int(time.time() * 1000)


class RedisLease(Lease):
    """A lease on a Redis hash, with the same semantics as a Kubernetes Lease.

    Expiry is judged against the writers' clocks (as Kubernetes clients do against the
    renewTime they wrote), so hosts sharing a Redis need roughly synchronised clocks.
    """

    def __init__(
        self, redis: aioredis.Redis, name: str, duration_s: float = 1.0, key: str | None = None
    ) -> None:
        self.name = name
        self.key = key or lease_key(name)
        self.duration_s = duration_s
        self._redis = redis
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @property
    def _duration_ms(self) -> int:
        return int(self.duration_s * 1000)

    async def try_acquire(self, holder: str) -> LeaseRecord | None:
        res = await self._acquire(keys=[self.key], args=[holder, now_ms(), self._duration_ms])
        if not res:
            return None
        return LeaseRecord(
            name=self.name,
            holder=str(res[0]),
            term=int(res[1]),
            acquired_at=int(res[2]) / 1000,
            renewed_at=int(res[3]) / 1000,
            duration_s=self.duration_s,
        )

    async def renew(self, holder: str, term: int) -> bool:
        res = await self._renew(keys=[self.key], args=[holder, term, now_ms(), self._duration_ms])
        return bool(int(res))

    async def release(self, holder: str, term: int) -> bool:
        return bool(int(await self._release(keys=[self.key], args=[holder, term, now_ms()])))

    async def mirror(self, holder: str, term: int, duration_s: float) -> None:
        """Copy another lease's state here (the fencing record; see ``lease_select``)."""
        await self._redis.hset(
            self.key,
            mapping={
                "holder": holder,
                "term": term,
                "renewed": now_ms(),
                "duration": int(duration_s * 1000),
            },
        )

    async def read(self) -> LeaseRecord:
        h = cast(dict[str, str], await self._redis.hgetall(self.key))
        holder = h.get("holder") or None
        renewed = int(h["renewed"]) / 1000 if h.get("renewed") else None
        return LeaseRecord(
            name=self.name,
            holder=holder,
            term=int(h.get("term", 0)),
            acquired_at=int(h["acquired"]) / 1000 if h.get("acquired") else None,
            renewed_at=renewed,
            duration_s=int(h.get("duration", 0)) / 1000 if holder else 0.0,
        )
