"""The model-worker loop: take jobs, build the prompt at the job's cut, stream, store the answer.

Coalescing: the worker reads its queue in batches; the jobs of one room in a batch (a storm of
human messages, say) become one turn answered at the newest cut. Exactly one answer per turn:
the answer's message id is derived from (model, cut), so a job re-run after a crash cannot store
a second answer, and jobs at or before the newest answered cut are acknowledged without work.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import redis.asyncio as aioredis

from llmchat import live
from llmchat.ids import parse_stream_id
from llmchat.keys import LEADER_QUEUE
from llmchat.llm.backends.base import (
    Backend,
    ChatMessage,
)
from llmchat.logs import get_logger
from llmchat.redact import redact_url
from llmchat.redis_conn import UNAVAILABLE_ERRORS
from llmchat.rooms import RoomStore
from llmchat.router import Fence, FencedError, Router
from llmchat.tasks import stop_task, stop_tasks
from llmchat.timeline import MessageIdConflictError, Timeline
from model_worker import metrics
from model_worker.affinity import Affinity
from model_worker.answers import answer_entry, answer_meta, problem_note
from model_worker.elector import electors_for
from model_worker.heartbeat import heartbeat
from model_worker.jobs import Job, JobQueue, Stream
from model_worker.prompt import (
    build_prompt,
    speaks_for_others,
)
from model_worker.settings import WorkerSettings
from model_worker.startup import prepare
from model_worker.streaming import AnswerStreamer, turn_outcome
from model_worker.watchdog import LoopWatchdog

log = get_logger(__name__)


def newest(jobs: list[Job]) -> Job:
    return max(jobs, key=lambda j: parse_stream_id(j.cut))


class Worker:
    def __init__(self, settings: WorkerSettings, redis: aioredis.Redis, backend: Backend) -> None:
        self.settings = settings
        self.name = settings.model_name
        self.redis = redis
        self.backend = backend
        self.timeline = Timeline(redis)
        self.rooms = RoomStore(redis)
        self.router = Router(redis, self.timeline)
        self.queue = JobQueue(redis, settings.consumer)
        self.affinity = (
            Affinity(redis, self.name, settings.consumer, wait_ms=settings.affinity_wait_ms)
            if settings.affinity
            else None
        )
        self.generations = 0
        self.busy = False
        self.load = 0  # generations running (what affinity publishes)
        self.watchdog = LoopWatchdog(self.name, settings.stall_after_s)
        self.streamer = AnswerStreamer(settings, redis, backend, self.watchdog)
        self._last_reclaim = 0.0
        self.electors = (
            electors_for(settings, redis, self.serving, self._on_elected)
            if settings.elections
            else {}
        )
        self._claim_leader_now: set[str] = set()
        # set when this worker wins a room's lease: a turn it is generating for its own queue
        # then gives way, so the room's leader jobs do not wait behind it (one model, one turn
        # at a time)
        self._elected = asyncio.Event()

    @property
    def healthy(self) -> bool:
        """The backend answers (as the last generation or health check found)."""
        return self.streamer.healthy

    @healthy.setter
    def healthy(self, value: bool) -> None:
        self.streamer.healthy = value

    def serving(self) -> bool:
        """The backend answers and the job loop moves: fit to lead and to take jobs."""
        return self.healthy and self.watchdog.overdue_s() == 0

    def _on_elected(self, room: str) -> None:
        self._claim_leader_now.add(room)
        self._elected.set()

    def streams(self) -> list[Stream]:
        """Our own queue in each room, plus the leader queue of the rooms we lead."""
        own = [(room, self.name) for room in self.settings.rooms]
        led = [(room, LEADER_QUEUE) for room, e in self.electors.items() if e.leading]
        return own + led

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        await prepare(self.settings, self.rooms, self.queue)
        # load the model (or reach the server) before taking jobs: the first prompt needs the
        # tokenizer, and elections need to know whether we can serve
        self.healthy = await self.backend.health()
        metrics.BACKEND_UP.labels(self.name).set(1 if self.healthy else 0)
        self.watchdog.task = asyncio.current_task()
        beating = asyncio.create_task(
            heartbeat(
                stop,
                self.redis,
                model=self.name,
                settings=self.settings,
                serving=self.serving,
                affinity=self.affinity,
                load=lambda: self.load,
            ),
            name="heartbeat",
        )
        watchdog = asyncio.create_task(self.watchdog.run(), name="watchdog")
        electors = [
            asyncio.create_task(e.run(), name=f"elector-{room}")
            for room, e in self.electors.items()
        ]
        log.info(
            "worker_started",
            model=self.name,
            rooms=self.settings.rooms,
            consumer=self.settings.consumer,
            backend=self.backend.name,
            redis=redact_url(self.settings.redis_url),
        )
        try:
            while not stop.is_set():
                self.watchdog.beat()
                try:
                    jobs = await self._next_jobs()
                except UNAVAILABLE_ERRORS as exc:
                    log.warning("worker_redis_error", error=str(exc))
                    await asyncio.sleep(0.5)
                    continue
                if jobs:
                    await self.handle(jobs)
        finally:
            await stop_tasks((beating, watchdog, *electors))
            for elector in self.electors.values():
                await elector.resign()

    async def _next_jobs(self) -> list[Job]:
        if self._claim_leader_now:
            # a new leader takes over every pending leader job at once: the old holder lost its
            # lease, so its claims are void (and its answers would be fenced)
            rooms, self._claim_leader_now = self._claim_leader_now, set()
            taken = await self.queue.reclaim([(r, LEADER_QUEUE) for r in rooms], min_idle_ms=0)
            if taken:
                metrics.JOBS.labels(self.name, "reclaimed").inc(len(taken))
                return taken
        now = time.monotonic()
        streams = self.streams()
        if now - self._last_reclaim >= 1.0:
            self._last_reclaim = now
            reclaimed = await self.queue.reclaim(streams, self.settings.claim_idle_ms)
            if reclaimed:
                metrics.JOBS.labels(self.name, "reclaimed").inc(len(reclaimed))
                log.info("jobs_reclaimed", model=self.name, count=len(reclaimed))
                return reclaimed
        if self.affinity is not None:
            streams, spill = await self.affinity.readable(streams)
            if not streams:  # an idle replica with a warm cache takes all of them
                await asyncio.sleep(0.25)
                return []
            if spill:  # taking over from a busy owner: poll, never block across its turn
                jobs = await self.queue.read(streams, self.settings.batch, block_ms=None)
                if not jobs:
                    await asyncio.sleep(0.05)
                return jobs
        return await self.queue.read(streams, self.settings.batch, block_ms=250)

    async def handle(self, jobs: list[Job]) -> None:
        groups: dict[tuple[str, str], list[Job]] = {}
        for job in jobs:
            groups.setdefault((job.room, job.queue), []).append(job)
        for (room, queue), batch in groups.items():
            room_jobs = batch
            for job in room_jobs:
                metrics.QUEUE_TIME.labels(self.name).observe(job.queue_time)
            answered = await self.queue.answered_cut(room, queue)
            if answered is not None:
                stale = [
                    j for j in room_jobs if parse_stream_id(j.cut) <= parse_stream_id(answered)
                ]
                if stale:
                    metrics.JOBS.labels(self.name, "already_answered").inc(len(stale))
                    await self.queue.ack(stale)
                    room_jobs = [j for j in room_jobs if j not in stale]
            if not room_jobs:
                continue
            if len(room_jobs) > 1:
                metrics.JOBS.labels(self.name, "coalesced").inc(len(room_jobs) - 1)
            metrics.JOBS.labels(self.name, "answered").inc()
            await self._turn(room, room_jobs)

    async def _turn(self, room: str, jobs: list[Job]) -> None:
        """Answer one turn at the newest cut of ``jobs``, renewing their claim meanwhile."""
        turn = newest(jobs)
        # a turn may take as long as its generation is allowed to, on top of the usual bound
        self.watchdog.beat(self.settings.generation_timeout_s)
        renew = asyncio.create_task(self._renew(jobs), name=f"renew-{room}")
        self.busy = True
        try:
            self.load = 1
            if self.affinity is not None:
                with contextlib.suppress(*UNAVAILABLE_ERRORS):
                    await self.affinity.claim(room, turn.queue, load=1)
            if await self._generate_unless_elected(room, turn, jobs):
                await self.queue.mark_answered(room, turn.queue, turn.cut)
                await self.queue.ack(jobs)
        finally:
            self.busy = False
            self.load = 0
            self.watchdog.beat()
            # cancelled again if it carries on: a lost cancel here once left the worker
            # waiting for this loop for good (see llmchat.tasks)
            await stop_task(renew)
            if self.affinity is not None:
                with contextlib.suppress(*UNAVAILABLE_ERRORS):
                    await self.affinity.set_load(0)

    async def _generate_unless_elected(self, room: str, turn: Job, jobs: list[Job]) -> bool:
        """Generate the turn; if this worker is elected leader while it streams an answer for its
        own queue, stop (the jobs stay unacknowledged and are taken up again after
        ``claim_idle_ms``) so the new leader serves its room at once. False: not answered."""
        if turn.queue == LEADER_QUEUE or not self.electors:
            return await self._generate(room, turn, jobs)
        if self._claim_leader_now:  # elected since these jobs were read: lead first
            metrics.JOBS.labels(self.name, "preempted").inc(len(jobs))
            log.info("turn_preempted", model=self.name, room=room, cut=turn.cut, reason="leading")
            return False
        self._elected.clear()
        gen = asyncio.create_task(self._generate(room, turn, jobs), name=f"generate-{room}")
        elected = asyncio.create_task(self._elected.wait())
        try:
            while True:
                done, _ = await asyncio.wait({gen, elected}, return_when=asyncio.FIRST_COMPLETED)
                if gen in done:
                    return gen.result()
                if self.streamer.streaming:
                    break
                # elected after the answer was made: let it be stored, it is nearly done
                self._elected.clear()
                elected = asyncio.create_task(self._elected.wait())
        finally:
            elected.cancel()
        await stop_task(gen)
        metrics.JOBS.labels(self.name, "preempted").inc(len(jobs))
        log.info("turn_preempted", model=self.name, room=room, cut=turn.cut, reason="elected")
        return False

    async def _renew(self, jobs: list[Job]) -> None:
        while True:
            await asyncio.sleep(self.settings.renew_interval_s)
            with contextlib.suppress(*UNAVAILABLE_ERRORS):
                await self.queue.renew(jobs)

    async def _generate(self, room: str, turn: Job, jobs: list[Job]) -> bool:
        """Answer the turn; False when the answer was fenced (the jobs stay for the leader)."""
        messages, speakers = await self._prompt(room, turn)
        base = {"model": self.name, "turn": turn.cut, "worker": self.settings.consumer}
        started = time.monotonic()
        out, text, messages, retried = await self.streamer.answer(room, base, messages, speakers)
        total = time.monotonic() - started
        self.load = 0
        if self.affinity is not None:
            # the model is free again: say so before the answer is stored, or the room's next
            # message (sent as soon as the answer shows up) would find us "busy" and go to a
            # replica with a cold cache
            with contextlib.suppress(*UNAVAILABLE_ERRORS):
                await self.affinity.set_load(0)
        metrics.BACKEND_UP.labels(self.name).set(1 if self.healthy else 0)
        self.generations += 1
        forged = speaks_for_others(out.raw, self.name, speakers)
        outcome, problem = turn_outcome(out, text, forged)
        metrics.GENERATIONS.labels(self.name, outcome).inc()
        await live.publish(self.redis, room, {"type": "end", "outcome": outcome, **base})
        meta = answer_meta(
            model=self.name,
            turn=turn,
            jobs=jobs,
            backend=self.backend.name,
            out=out,
            total_s=total,
            outcome=outcome,
            worker=self.settings.consumer,
            forged=forged,
            retried=retried,
            prompt=messages if self.settings.record_prompt else None,
        )
        as_leader = turn.queue == LEADER_QUEUE
        fence = None
        if as_leader:
            elector = self.electors.get(room)
            fence = elector.fence() if elector else None
            meta["as_leader"] = True
            meta["term"] = fence.term if fence else None
        if text and not await self._post_answer(room, turn, text, meta, fence):
            return False
        if outcome not in ("ok", "cut"):
            await self._report_problem(room, turn, problem, meta)
            log.warning(
                "generation_problem",
                model=self.name,
                room=room,
                outcome=outcome,
                problem=problem,
                raw=out.raw[:300],
            )
        if text:  # picked up -> answer stored (the "AI complete" latency)
            picked = max(j.picked_at for j in jobs)
            metrics.RESPONSE.labels(self.name).observe(max(0.0, time.time() - picked))
        log.info(
            "turn_answered",
            model=self.name,
            room=room,
            cut=turn.cut,
            jobs=len(jobs),
            tokens=len(out.parts),
            total_s=round(total, 3),
            outcome=outcome,
        )
        return True

    async def _prompt(self, room: str, turn: Job) -> tuple[list[ChatMessage], set[str]]:
        """The turn's prompt (the timeline up to its cut) and everyone who speaks in the room."""
        cfg = await self.rooms.get(room)
        system_prompt = ""
        if cfg is not None:
            system_prompt = next((m.system_prompt for m in cfg.models if m.name == self.name), "")
        entries = await self.timeline.read_until(room, turn.cut, self.settings.context_entries)
        messages = build_prompt(
            name=self.name,
            room=room,
            system_prompt=system_prompt,
            entries=entries,
            budget_tokens=self.settings.context_tokens,
            history_truncated=len(entries) >= self.settings.context_entries,
        )
        speakers = {e.author for e in entries} | ({m.name for m in cfg.models} if cfg else set())
        return messages, speakers

    async def _post_answer(
        self, room: str, turn: Job, text: str, meta: dict[str, Any], fence: Fence | None
    ) -> bool:
        """Store the answer (as the leader: fenced by its term, refused without one); False
        when it was fenced."""
        as_leader = bool(meta.get("as_leader"))
        answer = answer_entry(self.name, turn, text, meta, as_leader=as_leader)
        try:
            if as_leader and fence is None:
                raise FencedError("not the leader any more")
            await self.router.post(room, answer, fence)
        except FencedError as exc:
            metrics.FENCED.labels(self.name).inc()
            log.warning("answer_fenced", model=self.name, room=room, cut=turn.cut, error=str(exc))
            return False
        except MessageIdConflictError as exc:
            # another model already answered this turn as leader (a failover while both
            # generated): the turn is answered, once; ours is dropped
            log.warning(
                "answer_superseded", model=self.name, room=room, cut=turn.cut, error=str(exc)
            )
        return True

    async def _report_problem(
        self, room: str, turn: Job, problem: str | None, meta: dict[str, Any]
    ) -> None:
        """The note in the room that this model could not answer the turn (fully)."""
        reason = problem or f"the answer was cut off after {self.settings.generation_timeout_s:g} s"
        note = problem_note(self.name, turn, reason, meta)
        await self.timeline.append(room, note)
