"""Stopping background tasks for certain, even when a library swallows the cancellation.

``task.cancel(); await task`` is the usual way to stop a background loop, but on Python 3.11 a
cancellation can be lost: ``asyncio.wait_for`` drops it when the awaited operation finishes in
the same loop turn as the cancel arrives (CPython gh-86296, fixed in 3.12 by rebuilding
``wait_for`` on ``asyncio.timeout``). redis-py sends every command under ``wait_for`` when a
socket timeout is set, so a task cancelled while a Redis command is being written carries on as
if nothing happened. A loop such as a job-claim renewal then runs forever, and whoever awaits
it waits forever: a model worker stopped taking jobs for a minute while still holding a room's
leadership (the chaos scenarios caught it). Cancelling again until the task is done is the
remedy; asyncio has no helper that does that, hence this one.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from llmchat.logs import get_logger

log = get_logger(__name__)

#: How long a cancelled task may take to finish (its own clean-up) before it is cancelled again.
RECANCEL_AFTER_S = 0.5
#: Cancellations sent at most; a task still running after all of them is left to run (logged).
MAX_CANCELS = 20


async def stop_task(
    task: asyncio.Future[Any] | None, *, recancel_after_s: float = RECANCEL_AFTER_S
) -> int:
    """Cancel ``task`` and wait until it has finished, cancelling again if it carries on.

    Returns how many cancellations it took (0: the task had already finished). Whatever the
    task raised, or returned, is dropped: this is for background loops whose outcome nobody
    reads. A cancellation of the caller itself is passed on once the task is stopped, so
    stopping stays safe inside ``finally`` blocks of cancelled code.
    """
    if task is None:
        return 0
    cancels = 0
    caller_cancelled = False
    while not task.done() and cancels < MAX_CANCELS:
        task.cancel()
        cancels += 1
        try:
            await asyncio.wait({task}, timeout=recancel_after_s)
        except asyncio.CancelledError:
            caller_cancelled = True  # finish stopping the task first, then honour it
    if cancels > 1:
        name = task.get_name() if isinstance(task, asyncio.Task) else repr(task)
        log.warning("task_cancel_swallowed", task=name, cancels=cancels, stopped=task.done())
    if task.done() and not task.cancelled():
        task.exception()  # mark it retrieved: a failed loop is not "never retrieved"
    if caller_cancelled:
        raise asyncio.CancelledError
    return cancels


async def stop_tasks(tasks: Iterable[asyncio.Future[Any] | None]) -> None:
    """``stop_task`` for several tasks at once."""
    await asyncio.gather(*(stop_task(t) for t in tasks))


async def run_until_stopped(
    main: Callable[[asyncio.Event], Coroutine[Any, Any, object]], *, grace_s: float = 5.0
) -> None:
    """Run a component's main loop until it ends or SIGTERM/SIGINT arrives; then set its stop
    event, give it ``grace_s`` to finish and stop it. An error it ended with is raised."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(main(stop), name="main")
    signalled = asyncio.create_task(stop.wait(), name="signals")
    await asyncio.wait({task, signalled}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    await asyncio.wait({task}, timeout=grace_s)
    await stop_task(signalled)
    if task.done() and not task.cancelled():
        task.result()
    await stop_task(task)
