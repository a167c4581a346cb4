"""Short garbage-collection pauses with thousands of long-lived WebSocket connections.

Each open connection keeps ~300 objects that Python's cyclic collector tracks (the ASGI scope,
uvicorn's and websockets' protocol state, our session's tasks and queue). A full collection
walks every one of them: with 10,000 connections (~3 million objects) it stopped the event loop
for ~2 s, measured by ``llmchat bench fanout --clients 10000 --rooms 100 --rate 20``, and
Python starts one whenever the objects created since the last one exceed 25 % of the old ones,
so a ramp of new connections brought a longer pause every few seconds.

The policy: objects that survive a full collection are alive, so they are frozen
(``gc.freeze``: moved to the permanent generation, which later collections skip). Later full
collections walk only what was created since, and are short. Frozen objects are still freed by
reference counting when a connection closes; only reference cycles among them would stay. So
the objects frozen since the last collection of everything are counted per open connection:
more connections legitimately mean more objects, but once that count is ``growth`` times what
the last collection of everything found per connection (connections closed and new ones took
their place, or cycles piled up), everything is unfrozen and collected once (one long pause,
logged with its length) and frozen again.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable
from typing import Any

from chat_service import metrics
from llmchat.logs import get_logger
from llmchat.tasks import stop_task

log = get_logger(__name__)


#: Objects per connection assumed when the last whole collection saw (almost) no connections.
NOMINAL_PER_CONNECTION = 500


class GcPolicy:
    def __init__(
        self,
        connections: Callable[[], int],
        *,
        growth: float = 2.0,
        floor: int = 500_000,
        interval: float = 1.0,
    ) -> None:
        self.connections = connections  # open connections now
        self.growth = growth  # objects per connection, against the last whole collection
        self.floor = floor  # never collect everything for fewer frozen objects than this
        self.interval = interval
        self._started = 0.0
        self._full_done = False
        self._startup = 0  # objects frozen at start-up
        self._frozen = 0  # objects frozen since (freed ones are not subtracted: see step)
        self._per_connection = float(NOMINAL_PER_CONNECTION)
        self._task: asyncio.Task[None] | None = None
        self.freezes = 0
        self.whole_collections = 0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        # Runs inside the collector: only note what happened (no allocation-heavy work here).
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = int(info["generation"])
        metrics.GC_PAUSE.labels(str(generation)).observe(time.perf_counter() - self._started)
        if generation == 2:
            self._full_done = True

    def step(self) -> None:
        """Freeze the survivors of a full collection; collect everything if cycles pile up."""
        if self._full_done:
            self._full_done = False
            # counted here, not with gc.get_freeze_count(), which walks every frozen object
            # (~35 ms for 10,000 connections' worth): what is frozen now is what was not before
            self._frozen += len(gc.get_objects())
            gc.freeze()
            self.freezes += 1
        metrics.GC_FROZEN.set(self._frozen)
        grown = self._frozen - self._startup
        if grown > self.floor and grown / max(1, self.connections()) > (
            self.growth * self._per_connection
        ):
            self.collect_everything("objects per connection grew")

    def collect_everything(self, reason: str, *, startup: bool = False) -> None:
        started = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        self._full_done = False
        gc.freeze()
        frozen = self._frozen = gc.get_freeze_count()
        if startup:
            self._startup = frozen
        conns = self.connections()
        self._per_connection = (
            max(NOMINAL_PER_CONNECTION, (frozen - self._startup) / conns)
            if conns >= 100
            else float(NOMINAL_PER_CONNECTION)
        )
        self.whole_collections += 1
        log.info(
            "gc_collected_everything",
            reason=reason,
            collected=collected,
            objects=frozen,
            connections=conns,
            pause_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self.collect_everything("start-up", startup=True)  # what was imported and built at start-up
        self._task = asyncio.create_task(self._run(), name="gc-policy")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.step()

    async def stop(self) -> None:
        if self._task is None:  # never started: nothing of ours to undo
            return
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        await stop_task(self._task)
        self._task = None
        gc.unfreeze()
