"""Auto-pipelining: Redis commands issued in the same event-loop turn share one round trip.

redis-py sends every command, and every pipeline, as its own round trip and pays for each one
in Python: a connection checkout from the pool (a condition variable and a timeout), retry
wrappers, a socket timeout, reply bookkeeping. Under load that bookkeeping, not Redis, bounded
chat-service: py-spy put ~40 % of the process under ``Router.post``'s two calls, half of it in
the pool checkout and timeouts. ioredis has "auto-pipelining" for this; redis-py has none, so
this small batcher does it (hand-rolled for that reason): a caller submits a short list of
commands and awaits their replies; everything submitted while the event loop was busy goes out
as one non-transactional pipeline on the next loop turn, and each caller gets its own replies.

Use it for short, independent commands on the hot path (a post's reads and its script, a rate
limit bucket). Never for blocking commands (XREAD BLOCK, BLPOP): one of those would hold up the
whole batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import weakref
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

#: A command as ``execute_command`` takes it: ``("GET", key)``.
Command = tuple[Any, ...]

#: Commands in one pipeline at most (a burst is split over several round trips).
MAX_BATCH_COMMANDS = 2_000
#: Pipelines in flight at once; while they are out, new commands gather into the next one.
MAX_IN_FLIGHT = 2


class BatchScript:
    """A Lua script called by SHA through the batcher (loaded on first NOSCRIPT)."""

    def __init__(self, lua: str) -> None:
        self.lua = lua
        self.sha = hashlib.sha1(lua.encode("utf-8")).hexdigest()  # Redis names scripts by SHA-1

    def command(self, keys: Sequence[Any], args: Sequence[Any]) -> Command:
        return ("EVALSHA", self.sha, len(keys), *keys, *args)


class CommandBatcher:
    """Gathers the commands of concurrent callers into shared pipelines."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._scripts: dict[str, BatchScript] = {}
        self._pending: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]] = []
        self._scheduled = False
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.pipelines = 0  # round trips made (for tests and benchmarks)
        self.requests = 0  # callers served

    def script(self, lua: str) -> BatchScript:
        script = BatchScript(lua)
        self._scripts[script.sha] = script
        return script

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """The replies to ``commands`` in order; the first error reply is raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append((commands, future))
        self._schedule(loop)
        replies = await future
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._pending and not self._scheduled and self._in_flight < MAX_IN_FLIGHT:
            self._scheduled = True
            loop.call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        taken = size = 0
        while taken < len(self._pending) and size < MAX_BATCH_COMMANDS:
            size += len(self._pending[taken][0])
            taken += 1
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        batch = [(cmds, fut) for cmds, fut in batch if not fut.done()]  # callers that gave up
        if not batch:
            self._schedule(asyncio.get_running_loop())
            return
        self._in_flight += 1
        task = asyncio.create_task(self._flush(batch), name="redis-batch")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(
        self, batch: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]]
    ) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for commands, _ in batch:
                for command in commands:
                    pipe.execute_command(*command)
            try:
                replies = await pipe.execute(raise_on_error=False)
            except Exception as exc:  # Redis unreachable: every caller in the batch hears it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            except asyncio.CancelledError:  # shutting down
                for _, future in batch:
                    future.cancel()
                raise
            self.pipelines += 1
            self.requests += len(batch)
            at = 0
            for commands, future in batch:
                mine = list(replies[at : at + len(commands)])
                at += len(commands)
                if any(isinstance(r, NoScriptError) for r in mine):
                    mine = await self._rerun_unknown_scripts(commands, mine)
                if not future.done():
                    future.set_result(mine)
        finally:
            self._in_flight -= 1
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._schedule(asyncio.get_running_loop())

    async def _rerun_unknown_scripts(
        self, commands: Sequence[Command], replies: list[Any]
    ) -> list[Any]:
        """Redis lost its script cache (a restart, SCRIPT FLUSH): load and run those again.

        A NOSCRIPT reply means the script did not run, so running it again is safe.
        """
        out = list(replies)
        for i, (command, reply) in enumerate(zip(commands, replies, strict=True)):
            if not isinstance(reply, NoScriptError):
                continue
            script = self._scripts.get(str(command[1]))
            if script is None:
                continue
            try:
                await self._redis.script_load(script.lua)
                out[i] = await self._redis.execute_command(*command)  # type: ignore[no-untyped-call]
            except ResponseError as exc:
                out[i] = exc
        return out


_BATCHERS: weakref.WeakKeyDictionary[aioredis.Redis, CommandBatcher] = weakref.WeakKeyDictionary()


def batcher_for(redis: aioredis.Redis) -> CommandBatcher:
    """The one batcher of a Redis client (shared by the router and the rate limiter)."""
    batcher = _BATCHERS.get(redis)
    if batcher is None:
        batcher = _BATCHERS[redis] = CommandBatcher(redis)
    return batcher
