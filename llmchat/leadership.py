"""One election on one lease: campaign, hold (renew before expiry), release; callbacks say when
leadership starts and stops.

Every role that only one replica may play at a time uses it: a room's leader model
(``model_worker.elector``), the active judge (``judge.service``) and the active operator
(``chatroom_operator.main``). The lease behind it is any ``llmchat.lease.Lease``: Redis locally,
a Kubernetes Lease (mirrored into Redis for fencing) on a cluster.

The loop, after KubeAI's ``internal/leader/election.go`` (one election with
OnStartedLeading/OnStoppedLeading):

- not leading: every ``retry_every_s``, if the candidate is ``fit`` and ``may_acquire`` allows
  it, try to take the lease; on success ``on_started(got, previous)``.
- leading: every ``renew_every_s``, release the lease when the candidate is no longer ``fit``
  (reason ``unhealthy``), renew it (``not-renewed`` when it is no longer ours), then ask
  ``step_down`` whether to hand it over (its answer is the reason); each ends in
  ``on_stopped(reason)``.
- an error of ``errors`` (the store away for a moment) is passed to ``on_error``; a leader then
  stops leading (``error_reason``), unless ``keep_through_errors``: then it keeps leading while
  the lease it last renewed surely has not expired yet (``LeaseTimings.still_ours``).

Hand-rolled rather than client-go's leaderelection (Go) or kubernetes-client's Python
``leaderelection`` (blocking, one Kubernetes Lease only, no fencing term): ours runs on asyncio
over both lease backends and exposes the term the fenced writes carry.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from llmchat.lease import Lease, LeaseRecord, LeaseTimings

#: ``on_started(got, previous)``: the record just acquired, and the one read before the
#: campaign (None unless ``read_first``).
OnStarted = Callable[[LeaseRecord, LeaseRecord | None], None]
#: ``on_stopped(reason)``: ``unhealthy``, ``not-renewed``, ``error_reason``, a ``step_down``
#: reason, or the reason given to ``resign``.
OnStopped = Callable[[str], None]


def _never(_exc: Exception) -> None:
    return None


class Leadership:
    """One candidate (``holder``) in the election on ``lease``."""

    def __init__(
        self,
        lease: Lease,
        holder: str,
        timings: LeaseTimings,
        *,
        on_started: OnStarted | None = None,
        on_stopped: OnStopped | None = None,
        on_error: Callable[[Exception], None] = _never,
        errors: tuple[type[Exception], ...] = (Exception,),
        error_reason: str = "unreachable",
        keep_through_errors: bool = False,
        fit: Callable[[], bool] | None = None,
        read_first: bool = False,
        may_acquire: Callable[[LeaseRecord | None], Awaitable[bool]] | None = None,
        step_down: Callable[[], Awaitable[str | None]] | None = None,
    ) -> None:
        self.lease = lease
        self.holder = holder
        self.timings = timings
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.on_error = on_error
        self.errors = errors
        self.error_reason = error_reason
        self.keep_through_errors = keep_through_errors
        self.fit = fit
        self.read_first = read_first
        self.may_acquire = may_acquire
        self.step_down = step_down
        self.term: int | None = None
        #: time.monotonic() when leadership started, and when the lease was last renewed
        self.since = 0.0
        self.renewed = 0.0

    @property
    def leading(self) -> bool:
        return self.term is not None

    async def run(
        self, stop: asyncio.Event | None = None, until: Callable[[], bool] | None = None
    ) -> None:
        """Campaign and hold until ``stop`` is set or ``until()`` is true (forever: cancel it)."""

        def done() -> bool:
            return (stop is not None and stop.is_set()) or (until is not None and until())

        while not done():
            await self.step()
            if done():
                return
            interval = self.timings.renew_every_s if self.leading else self.timings.retry_every_s
            if stop is None:
                await asyncio.sleep(interval)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)

    async def step(self) -> None:
        """One campaign attempt, or one renewal; errors of ``errors`` are handled here."""
        try:
            if self.term is None:
                await self._campaign()
            else:
                await self._hold(self.term)
        except self.errors as exc:
            self.on_error(exc)
            if self.term is None:
                return
            if self.keep_through_errors and self.timings.still_ours(
                time.monotonic() - self.renewed
            ):
                return
            self._stopped(self.error_reason)

    async def resign(self, reason: str = "shutdown") -> None:
        """Give the lease up at once (graceful shutdown), so a successor need not wait for its
        expiry; a store that is away only leaves it to expire."""
        if self.term is None:
            return
        with contextlib.suppress(*self.errors):
            await self.lease.release(self.holder, self.term)
        self._stopped(reason)

    async def _campaign(self) -> None:
        if self.fit is not None and not self.fit():
            return
        previous = await self.lease.read() if self.read_first else None
        if self.may_acquire is not None and not await self.may_acquire(previous):
            return
        got = await self.lease.try_acquire(self.holder)
        if got is None:
            return
        self.term = got.term
        self.since = self.renewed = time.monotonic()
        if self.on_started is not None:
            self.on_started(got, previous)

    async def _hold(self, term: int) -> None:
        if self.fit is not None and not self.fit():
            await self.lease.release(self.holder, term)
            self._stopped("unhealthy")
            return
        if not await self.lease.renew(self.holder, term):
            self._stopped("not-renewed")
            return
        self.renewed = time.monotonic()
        reason = await self.step_down() if self.step_down is not None else None
        if reason is not None:
            await self.lease.release(self.holder, term)
            self._stopped(reason)

    def _stopped(self, reason: str) -> None:
        if self.term is None:
            return
        if self.on_stopped is not None:
            self.on_stopped(reason)
        self.term = None
