"""Noticing that the worker's job loop has stopped moving.

A worker's heartbeat and electors run beside its job loop. If the loop gets stuck (a lost
cancellation once left it waiting for good) while they carry on, the worker keeps its rooms'
leadership and answers nothing. The loop beats on every pass and on every generated token;
when it has not beaten for ``stall_after_s`` (plus a generation's own time limit while one
runs), the worker counts as not serving: its electors give up the lease, its heartbeat stops,
/readyz says not ready and ``llmchat_worker_stalled`` is 1, and the log says where the loop is
stuck. It all reverses by itself once the loop moves again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from llmchat.logs import get_logger
from model_worker import metrics

log = get_logger(__name__)


def awaiting(task: asyncio.Task[Any] | None, limit: int = 12) -> list[str]:
    """Where a suspended task is waiting: its chain of awaits, outermost first."""
    if task is None or task.done():
        return []
    out: list[str] = []
    obj: Any = task.get_coro()
    while obj is not None and len(out) < limit:
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
        if frame is None:
            out.append(type(obj).__name__)
            break
        out.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})")
        obj = getattr(obj, "cr_await", None) or getattr(obj, "gi_yieldfrom", None)
    return out


class LoopWatchdog:
    def __init__(
        self, model: str, stall_after_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.model = model
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._beat: float | None = None  # not watching until the loop's first beat (start-up
        # loads the model, which may take minutes)
        self._allowance = 0.0
        self.stalled = False  # as last reported
        self.task: asyncio.Task[Any] | None = None  # the loop watched (its stack goes in the log)

    def beat(self, allowance_s: float = 0.0) -> None:
        """The loop moved; until the next beat it may take ``allowance_s`` more than usual."""
        self._beat = self._clock()
        self._allowance = allowance_s

    def overdue_s(self) -> float:
        """How far past its bound the loop's next beat is (0: on time, or not started)."""
        if self._beat is None:
            return 0.0
        return max(0.0, self._clock() - self._beat - self.stall_after_s - self._allowance)

    def check(self) -> bool:
        """Report a change: stalled (with where the loop waits) or moving again."""
        stalled = self.overdue_s() > 0
        if stalled and not self.stalled:
            log.warning(
                "job_loop_stalled",
                model=self.model,
                still_for_s=round(self._clock() - (self._beat or 0.0), 1),
                awaiting=awaiting(self.task),
            )
        elif self.stalled and not stalled:
            log.info("job_loop_moving_again", model=self.model)
        self.stalled = stalled
        metrics.STALLED.labels(self.model).set(1 if stalled else 0)
        return stalled

    async def run(self, every_s: float = 1.0) -> None:
        while True:
            self.check()
            await asyncio.sleep(every_s)
