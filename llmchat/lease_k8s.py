"""``KubernetesLease``: the ``Lease`` interface on a ``coordination.k8s.io/v1`` Lease.

Same semantics as ``RedisLease``:

- ``holderIdentity`` is the holder, ``renewTime + leaseDurationSeconds`` the expiry (judged
  against the local clock, as client-go does), ``leaseTransitions`` the term (fencing token).
- The holder may renew until another candidate takes the lease over: a renewal that comes
  late (a stalled event loop, a slow API server) but finds the lease still in its name and
  term is safe, because any takeover would have incremented the term (client-go does the same).
- Every fresh acquisition (of a free, expired or released lease) increments the term, even by
  the previous holder; a lease created by its first acquisition starts at term 1.
- Writes are guarded by ``resourceVersion`` (optimistic concurrency): a 409 means another
  candidate wrote first, so the attempt lost the race.
- ``leaseDurationSeconds`` is an integer in Kubernetes: durations are rounded up to whole
  seconds (at least 1 s).

The official client is blocking, so every call runs in a worker thread: ``asyncio.to_thread``
by default, or a dedicated executor (so a busy default pool cannot delay renewals).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from llmchat.lease import Lease, LeaseRecord

T = TypeVar("T")
_CONFLICT = 409
_NOT_FOUND = 404
_ALREADY_EXISTS = 409
#: Attempts of a renew/release whose write met a conflict that was not a lost lease (e.g.
#: someone edited the Lease's labels between our read and our write).
_WRITE_ATTEMPTS = 3


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def micro_time(value: dt.datetime) -> str:
    """A ``MicroTime`` as the API server parses it (always six fractional digits, UTC)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ts(value: dt.datetime | None) -> float | None:
    return None if value is None else value.timestamp()


class KubernetesLease(Lease):
    """A named Lease object in one namespace."""

    def __init__(
        self,
        api: k8s_client.ApiClient,
        name: str,
        namespace: str,
        duration_s: float = 1.0,
        *,
        labels: dict[str, str] | None = None,
        executor: concurrent.futures.Executor | None = None,
    ) -> None:
        self.name = name
        self._executor = executor
        self.namespace = namespace
        self.seconds = max(1, math.ceil(duration_s))
        self.duration_s = float(self.seconds)
        self.labels = dict(labels or {})
        self._api = k8s_client.CoordinationV1Api(api)

    # -- blocking helpers (run in threads) ---------------------------------------------------

    def _get(self) -> k8s_client.V1Lease | None:
        try:
            lease: k8s_client.V1Lease = self._api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status == _NOT_FOUND:
                return None
            raise
        return lease

    def _body(
        self,
        *,
        holder: str | None,
        term: int,
        acquired: dt.datetime | None,
        renewed: dt.datetime | None,
        resource_version: str | None,
        labels: dict[str, str] | None,
        owners: list[Any] | None = None,
    ) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version:
            metadata["resourceVersion"] = resource_version
        if labels:
            metadata["labels"] = labels
        if owners:
            metadata["ownerReferences"] = owners
        spec: dict[str, Any] = {"leaseDurationSeconds": self.seconds, "leaseTransitions": term}
        if holder is not None:
            spec["holderIdentity"] = holder
        if acquired is not None:
            spec["acquireTime"] = micro_time(acquired)
        if renewed is not None:
            spec["renewTime"] = micro_time(renewed)
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    def _replace(self, body: dict[str, Any]) -> bool:
        try:
            self._api.replace_namespaced_lease(self.name, self.namespace, body)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status in (_CONFLICT, _NOT_FOUND):
                return False
            raise
        return True

    def _record(
        self,
        holder: str | None,
        term: int,
        acquired: dt.datetime | None,
        renewed: dt.datetime | None,
        seconds: int | None = None,
    ) -> LeaseRecord:
        return LeaseRecord(
            name=self.name,
            holder=holder or None,
            term=term,
            acquired_at=_ts(acquired),
            renewed_at=_ts(renewed),
            duration_s=float(seconds if seconds is not None else self.seconds),
        )

    def _parse(self, lease: k8s_client.V1Lease) -> LeaseRecord:
        spec = lease.spec or k8s_client.V1LeaseSpec()
        return self._record(
            spec.holder_identity,
            int(spec.lease_transitions or 0),
            spec.acquire_time,
            spec.renew_time,
            int(spec.lease_duration_seconds or 0) if spec.holder_identity else 0,
        )

    def _try_acquire(self, holder: str) -> LeaseRecord | None:
        now = _now()
        current = self._get()
        if current is None:
            body = self._body(
                holder=holder,
                term=1,
                acquired=now,
                renewed=now,
                resource_version=None,
                labels=self.labels,
            )
            try:
                self._api.create_namespaced_lease(self.namespace, body)  # type: ignore[arg-type]
            except ApiException as exc:
                if exc.status == _ALREADY_EXISTS:
                    return None  # another candidate created it first
                raise
            return self._record(holder, 1, now, now)
        record = self._parse(current)
        meta = current.metadata or k8s_client.V1ObjectMeta()
        live = record.held(now.timestamp())
        if live and record.holder != holder:
            return None
        if live:  # already ours: a renewal in the same term
            acquired = (current.spec.acquire_time if current.spec else None) or now
            term = record.term
        else:  # free, released or expired: a new term
            acquired = now
            term = record.term + 1
        body = self._body(
            holder=holder,
            term=term,
            acquired=acquired,
            renewed=now,
            resource_version=meta.resource_version,
            labels=meta.labels,
            owners=[_owner_dict(o) for o in meta.owner_references or []],
        )
        if not self._replace(body):
            return None
        return self._record(holder, term, acquired, now)

    def _write_if_ours(self, holder: str, term: int, *, release: bool) -> bool:
        for _ in range(_WRITE_ATTEMPTS):
            now = _now()
            current = self._get()
            if current is None:
                return False
            record = self._parse(current)
            if record.holder != holder or record.term != term:
                return False
            meta = current.metadata or k8s_client.V1ObjectMeta()
            spec = current.spec or k8s_client.V1LeaseSpec()
            body = self._body(
                holder=None if release else holder,
                term=term,
                acquired=spec.acquire_time,
                renewed=now,
                resource_version=meta.resource_version,
                labels=meta.labels,
                owners=[_owner_dict(o) for o in meta.owner_references or []],
            )
            if self._replace(body):
                return True
        return False

    # -- the Lease interface -----------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._executor is None:
            return await asyncio.to_thread(fn, *args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def try_acquire(self, holder: str) -> LeaseRecord | None:
        return await self._call(self._try_acquire, holder)

    async def renew(self, holder: str, term: int) -> bool:
        return await self._call(self._write_if_ours, holder, term, release=False)

    async def release(self, holder: str, term: int) -> bool:
        return await self._call(self._write_if_ours, holder, term, release=True)

    async def read(self) -> LeaseRecord:
        lease = await self._call(self._get)
        if lease is None:
            return self._record(None, 0, None, None, 0)
        return self._parse(lease)


def _owner_dict(ref: k8s_client.V1OwnerReference) -> dict[str, Any]:
    owner: dict[str, Any] = {
        "apiVersion": ref.api_version,
        "kind": ref.kind,
        "name": ref.name,
        "uid": ref.uid,
    }
    if ref.controller is not None:
        owner["controller"] = ref.controller
    if ref.block_owner_deletion is not None:
        owner["blockOwnerDeletion"] = ref.block_owner_deletion
    return owner
