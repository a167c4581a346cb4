"""The ChatRoom reconciler: a room's spec and its children's views in, applied children, status
and Events out.

- ``Reconciler.full`` (create / update of the spec / resume): check what the schema cannot
  (Secrets), server-side apply the children, delete the children of removed models, write the
  status.
- ``Reconciler.refresh`` (the refresh loop, every ``status_interval_s``): the status from the
  operator's indexes of the rooms' Deployments and Leases (no API reads), drift repaired (a deleted
  or scaled child), a Degraded room re-checked every ``recheck_interval_s``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from chatroom_operator import metrics
from chatroom_operator.builders import (
    children,
    judge_name,
    redis_secret,
    worker_name,
)
from chatroom_operator.kube import NOT_FOUND, Kube
from chatroom_operator.settings import OperatorSettings
from chatroom_operator.spec import ChatRoomSpec, RoomRef, parse_spec
from chatroom_operator.status import (
    PHASES,
    Problem,
    compute_status,
    find_problems,
    same_status,
    secrets_needed,
    transitions,
)
from chatroom_operator.views import DeploymentView, LeaseView

RoomKey = tuple[str, str]
T = TypeVar("T")
#: Threads for the reconciler's blocking API calls.
API_THREADS = 8
#: Problems that make the children unbuildable: nothing is applied until they are fixed.
BLOCKING = frozenset({"NameTooLong", "DuplicateModels", "NoModels", "InvalidSpec"})
RETRY_DELAY_S = 2.0
#: Rooms refreshed at once by the refresh loop.
REFRESH_CONCURRENCY = 16
_log = logging.getLogger("chatroom_operator")


@dataclass
class RoomState:
    """What the operator remembers about one room between handler calls."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The status last written (or read from the room on takeover).
    status: dict[str, Any] | None = None
    problems: list[Problem] = field(default_factory=list)
    #: monotonic time of the last full reconcile (None: not yet in this process).
    last_full: float | None = None
    phase: str | None = None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
    )


class Reconciler:
    def __init__(self, settings: OperatorSettings, kube: Kube) -> None:
        self.settings = settings
        self.kube = kube
        self.rooms: dict[RoomKey, RoomState] = {}
        self._refresher: asyncio.Task[None] | None = None
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=API_THREADS, thread_name_prefix="reconcile"
        )

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking API call on the reconciler's own threads (bounded, apart from the
        default pool, so the operator Lease's renewals never queue behind a burst)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def _event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            await self._call(self.kube.post_event, body, type_, reason, message)
        except ApiException as exc:  # an Event is never worth failing a reconcile for
            _log.warning("posting event %s failed: %s", reason, exc.reason)

    def state(self, key: RoomKey) -> RoomState:
        return self.rooms.setdefault(key, RoomState())

    def forget(self, key: RoomKey) -> None:
        self.rooms.pop(key, None)
        self._count_phases()

    def _count_phases(self) -> None:
        counts = dict.fromkeys(PHASES, 0)
        for state in self.rooms.values():
            if state.phase in counts:
                counts[state.phase] += 1
        for phase, count in counts.items():
            metrics.ROOMS.labels(phase=phase).set(count)

    # -- full reconcile ----------------------------------------------------------------------

    async def full(
        self,
        body: Mapping[str, Any],
        deployments: Iterable[DeploymentView],
        leases: Iterable[LeaseView],
        logger: kopf.Logger,
    ) -> None:
        room = _room_ref(body)
        state = self.state((room.namespace, room.name))
        started = time.perf_counter()
        async with state.lock:
            try:
                await self._full(
                    room=room,
                    body=body,
                    state=state,
                    deployments=list(deployments),
                    leases=list(leases),
                    logger=logger,
                )
            except ApiException as exc:
                metrics.RECONCILE_ERRORS.labels(error=f"api-{exc.status}").inc()
                raise kopf.TemporaryError(
                    f"the API server refused a change ({exc.status} {exc.reason}); retrying",
                    delay=RETRY_DELAY_S,
                ) from exc
            except Exception as exc:
                metrics.RECONCILE_ERRORS.labels(error=type(exc).__name__).inc()
                raise
            finally:
                metrics.RECONCILE_SECONDS.labels(kind="full").observe(time.perf_counter() - started)

    async def _full(
        self,
        *,
        room: RoomRef,
        body: Mapping[str, Any],
        state: RoomState,
        deployments: list[DeploymentView],
        leases: list[LeaseView],
        logger: kopf.Logger,
    ) -> None:
        try:
            spec = parse_spec(body.get("spec") or {})
        except ValidationError as exc:
            state.problems = [Problem("InvalidSpec", _validation_message(exc))]
            state.last_full = time.monotonic()
            await self._write_status(
                room=room,
                body=body,
                state=state,
                spec=ChatRoomSpec(),
                deployments=deployments,
                leases=leases,
            )
            return
        redis = redis_secret(self.settings)
        names = secrets_needed(spec, redis)
        found = await asyncio.gather(
            *(self._call(self.kube.secret_keys, room.namespace, n) for n in names)
        )
        problems = find_problems(room, spec, dict(zip(names, found, strict=True)), redis)
        state.problems = problems
        if not any(p.reason in BLOCKING for p in problems):
            await self._apply(
                room=room,
                body=body,
                spec=spec,
                problems=problems,
                deployments=deployments,
                logger=logger,
            )
        state.last_full = time.monotonic()
        await self._write_status(
            room=room, body=body, state=state, spec=spec, deployments=deployments, leases=leases
        )

    async def _apply(
        self,
        *,
        room: RoomRef,
        body: Mapping[str, Any],
        spec: ChatRoomSpec,
        problems: list[Problem],
        deployments: list[DeploymentView],
        logger: kopf.Logger,
    ) -> None:
        judge_blocked = any(p.blocks_judge for p in problems)
        kids = children(room, spec, self.settings, with_judge=not judge_blocked)
        # the ConfigMap first: the pods mount it
        for cm in kids.config_maps:
            await self._call(self.kube.apply, cm)
        await asyncio.gather(*(self._call(self.kube.apply, d) for d in kids.deployments))
        created = await asyncio.gather(
            *(self._call(self.kube.ensure_lease, lease) for lease in kids.leases)
        )
        metrics.CHILDREN_CHANGED.labels(kind="Lease", action="create").inc(sum(created))

        owned = {d.name for d in deployments if d.owner_uid == room.uid}
        wanted = kids.deployment_names()
        # a judge whose Secret went missing keeps running with the key it has
        keep = wanted | ({judge_name(room.name)} if judge_blocked else set())
        stale = sorted(owned - keep)
        removed = await asyncio.gather(
            *(self._call(self.kube.delete_deployment, room.namespace, n) for n in stale)
        )
        added = sorted(wanted - owned)
        metrics.CHILDREN_CHANGED.labels(kind="Deployment", action="create").inc(len(added))
        metrics.CHILDREN_CHANGED.labels(kind="Deployment", action="delete").inc(sum(removed))
        if added or stale:
            message = "; ".join(
                part
                for part in (
                    f"created {', '.join(added)}" if added else "",
                    f"deleted {', '.join(stale)}" if stale else "",
                )
                if part
            )
            await self._event(body, "Normal", "ChildrenChanged", message)
            logger.info(f"children changed: {message}")

    # -- the refresh loop --------------------------------------------------------------------

    def start_refresher(
        self,
        rooms: kopf.Index[RoomKey, Any],
        deployments: kopf.Index[RoomKey, DeploymentView],
        leases: kopf.Index[RoomKey, LeaseView],
    ) -> None:
        self._refresher = asyncio.create_task(self._refresh_loop(rooms, deployments, leases))

    async def stop_refresher(self) -> None:
        task, self._refresher = self._refresher, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _refresh_loop(
        self,
        rooms: kopf.Index[RoomKey, Any],
        deployments: kopf.Index[RoomKey, DeploymentView],
        leases: kopf.Index[RoomKey, LeaseView],
    ) -> None:
        limit = asyncio.Semaphore(REFRESH_CONCURRENCY)

        async def one(key: RoomKey, body: Any) -> None:
            async with limit:
                try:
                    await self.refresh(body, views(deployments, key), views(leases, key), _log)
                except (kopf.TemporaryError, ApiException) as exc:
                    _log.warning("refresh of %s/%s failed: %s", key[0], key[1], exc)

        while True:
            started = time.monotonic()
            bodies = {key: next(iter(store)) for key, store in rooms.items() if len(store)}
            for gone in set(self.rooms) - set(bodies):
                self.forget(gone)
            try:
                await asyncio.gather(*(one(key, body) for key, body in bodies.items()))
            except Exception:  # keep refreshing the other rooms
                metrics.RECONCILE_ERRORS.labels(error="refresh").inc()
                _log.exception("status refresh failed")
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.05, self.settings.status_interval_s - elapsed))

    # -- status ------------------------------------------------------------------------------

    async def refresh(
        self,
        body: Mapping[str, Any],
        deployments: Iterable[DeploymentView],
        leases: Iterable[LeaseView],
        logger: kopf.Logger,
    ) -> None:
        """The timer: status from the indexes; a full reconcile when something drifted."""
        room = _room_ref(body)
        state = self.state((room.namespace, room.name))
        if state.lock.locked() or state.last_full is None:
            return  # a full reconcile is running, or the change handlers have not run yet
        deployments, leases = list(deployments), list(leases)
        try:
            spec = parse_spec(body.get("spec") or {})
        except ValidationError:
            spec = ChatRoomSpec()
        since = time.monotonic() - state.last_full
        drift = self._drift(room, spec, state, deployments, leases)
        if (state.problems and since >= self.settings.recheck_interval_s) or (
            drift and since >= 2 * self.settings.status_interval_s
        ):
            if drift:
                logger.info(f"repairing drift: {drift}")
            await self.full(body, deployments, leases, logger)
            return
        started = time.perf_counter()
        async with state.lock:
            await self._write_status(
                room=room, body=body, state=state, spec=spec, deployments=deployments, leases=leases
            )
        metrics.RECONCILE_SECONDS.labels(kind="status").observe(time.perf_counter() - started)

    def _drift(
        self,
        room: RoomRef,
        spec: ChatRoomSpec,
        state: RoomState,
        deployments: list[DeploymentView],
        leases: list[LeaseView],
    ) -> str:
        if any(p.reason in BLOCKING for p in state.problems):
            return ""
        have = {d.name: d for d in deployments if d.owner_uid == room.uid}
        want = {worker_name(room.name, m.name): m.replicas for m in spec.models}
        if not any(p.blocks_judge for p in state.problems):
            want[judge_name(room.name)] = spec.judge.replicas
        missing = sorted(set(want) - set(have))
        if missing:
            return f"missing {', '.join(missing)}"
        scaled = sorted(n for n, r in want.items() if have[n].replicas != r)
        if scaled:
            return f"replicas changed on {', '.join(scaled)}"
        extra = sorted(set(have) - set(want) - {judge_name(room.name)})
        if extra:
            return f"stale {', '.join(extra)}"
        if len({lease.name for lease in leases}) < 2:
            return "a Lease is missing"
        return ""

    async def _write_status(
        self,
        *,
        room: RoomRef,
        body: Mapping[str, Any],
        state: RoomState,
        spec: ChatRoomSpec,
        deployments: list[DeploymentView],
        leases: list[LeaseView],
    ) -> None:
        previous = state.status if state.status is not None else dict(body.get("status") or {})
        new = compute_status(
            room=room,
            spec=spec,
            deployments=deployments,
            leases=leases,
            problems=state.problems,
            previous=previous,
            now=_now(),
        )
        if not same_status(previous, new):
            try:
                await self._call(self.kube.patch_status, room.namespace, room.name, new)
            except ApiException as exc:
                if exc.status == NOT_FOUND:
                    return  # the room is being deleted
                raise
            for type_, reason, message in transitions(previous, new):
                await self._event(body, type_, reason, message)
        state.status = new
        state.phase = new["phase"]
        self._count_phases()


def _room_ref(body: Mapping[str, Any]) -> RoomRef:
    meta = body.get("metadata") or {}
    return RoomRef(
        name=meta["name"],
        namespace=meta["namespace"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 0),
    )


def views(index: kopf.Index[Any, Any], key: RoomKey) -> list[Any]:
    store = index.get(key)
    return list(store) if store is not None else []
