"""``llmchat operator``: active/standby on the operator's Lease, kopf while active.

Every replica serves /healthz, /readyz and /metrics. A standby retries the Lease every
``lease_retry_s``; the replica that acquires it starts kopf (standalone: the Lease, not kopf's
peering, decides who reconciles) and renews the Lease every ``lease_renew_s``. A replica that
loses the Lease stops kopf and exits with code 1, so its Deployment restarts it as a standby;
on SIGTERM the active replica stops kopf and releases the Lease, so a standby takes over at
once instead of after the Lease's duration.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import time
from typing import Any

import kopf

from chatroom_operator import metrics
from chatroom_operator.handlers import register
from chatroom_operator.kube import Kube, new_api_client
from chatroom_operator.reconciler import Reconciler
from chatroom_operator.settings import OperatorSettings
from llmchat.health_server import HealthServer
from llmchat.leadership import Leadership
from llmchat.lease import LeaseRecord
from llmchat.lease_k8s import KubernetesLease
from llmchat.logs import configure_logging, get_logger

log = get_logger("chatroom_operator")
#: How long kopf may take to stop after the Lease is lost or on SIGTERM.
KOPF_STOP_TIMEOUT_S = 10.0
LOST = 1


class Operator:
    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = settings
        self.role = "standby"
        self.started = time.monotonic()
        self.api = new_api_client()
        # built before campaigning: the client imports its (large) API modules lazily, which
        # would stall the event loop for seconds right after acquiring the Lease
        self.kube = Kube(self.api)
        self.lease = KubernetesLease(
            self.api,
            settings.lease_name,
            settings.lease_namespace,
            duration_s=settings.lease_duration_s,
            # its own thread: renewals never wait behind the reconciler's API calls
            executor=concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lease"),
            labels={
                "app.kubernetes.io/name": "llm-in-the-chat",
                "app.kubernetes.io/component": "operator",
            },
        )

        self.leadership = Leadership(
            self.lease,
            settings.identity,
            settings.lease_timings,
            on_started=self._started,
            on_stopped=self._stopped,
            on_error=self._lease_error,
            keep_through_errors=True,
            error_reason="not-renewed",
        )
        self._kopf_stop = asyncio.Event()
        self._kopf_task: asyncio.Task[None] | None = None
        self._lost = False
        self._waited = 0.0

    def ready(self) -> tuple[bool, dict[str, Any]]:
        return True, {"role": self.role, "identity": self.settings.identity}

    async def run(self, stop: asyncio.Event) -> int:
        health = None
        if self.settings.port:
            health = HealthServer("operator", self.settings.host, self.settings.port, self.ready)
            health.start()
        try:
            return await self._elected(stop)
        finally:
            metrics.ACTIVE.set(0)
            metrics.LEASE_TERM.set(0)
            if health is not None:
                await health.stop()
            self.api.close()  # type: ignore[no-untyped-call]

    async def _elected(self, stop: asyncio.Event) -> int:
        """Stand by until the Lease is ours, run kopf while it stays ours: the exit code."""
        s = self.settings
        log.info(
            "operator_standby",
            identity=s.identity,
            lease=f"{s.lease_namespace}/{s.lease_name}",
        )
        self._waited = time.monotonic()
        leadership = self.leadership
        await leadership.run(stop, until=self._over)
        if self._kopf_task is None:
            return 0
        lost = await self._stop_kopf(stop)
        self.role = "standby"
        if lost:
            return LOST
        term = leadership.term
        await leadership.resign()
        log.info("operator_released", identity=s.identity, term=term)
        return 0

    def _over(self) -> bool:
        """Leadership lost, or kopf ended by itself: this replica stops leading."""
        return self._lost or (self._kopf_task is not None and self._kopf_task.done())

    def _lease_error(self, exc: Exception) -> None:
        # the API server may be away for a moment; a leader keeps acting only while the Lease
        # it last renewed is surely still ours (``LeaseTimings.still_ours``)
        event = "operator_renew_error" if self.leadership.leading else "operator_lease_error"
        log.warning(event, error=str(exc))

    def _started(self, got: LeaseRecord, _previous: LeaseRecord | None) -> None:
        s = self.settings
        log.info(
            "operator_active",
            identity=s.identity,
            term=got.term,
            waited_s=round(time.monotonic() - self._waited, 3),
        )
        self.role = "active"
        metrics.ACTIVE.set(1)
        metrics.LEASE_TERM.set(got.term)
        registry = kopf.OperatorRegistry()
        register(registry, Reconciler(s, self.kube), s)
        self._kopf_task = asyncio.create_task(
            kopf.operator(
                registry=registry,
                standalone=True,
                clusterwide=not s.namespaces,
                namespaces=s.namespaces,
                stop_flag=self._kopf_stop,
            )
        )

    def _stopped(self, reason: str) -> None:
        if reason != "shutdown":
            self._lost = True
            log.error(
                "operator_lease_lost", identity=self.settings.identity, term=self.leadership.term
            )

    async def _stop_kopf(self, stop: asyncio.Event) -> bool:
        """Stop kopf (leadership over); True when it ended by losing the Lease or failing."""
        assert self._kopf_task is not None
        lost = self._lost
        self._kopf_stop.set()
        try:
            await asyncio.wait_for(self._kopf_task, KOPF_STOP_TIMEOUT_S)
        except TimeoutError:
            log.error("operator_kopf_stop_timeout", timeout_s=KOPF_STOP_TIMEOUT_S)
        except Exception as exc:
            log.error("operator_kopf_failed", error=str(exc))
            lost = True
        else:
            if not lost and not stop.is_set():
                # kopf handles SIGTERM/SIGINT itself (its handlers replace ours once it runs)
                # and returns normally; on a fatal error it raises instead
                log.info("operator_kopf_stopped")
                stop.set()
        return lost


async def serve(settings: OperatorSettings, stop: asyncio.Event | None = None) -> int:
    """Run until ``stop`` (or SIGTERM/SIGINT); the process's exit code."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return await Operator(settings).run(stop)


def run(settings: OperatorSettings) -> int:
    configure_logging(settings.log_level, settings.log_format)
    return asyncio.run(serve(settings))
