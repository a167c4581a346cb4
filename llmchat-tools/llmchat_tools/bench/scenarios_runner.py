"""Run the scenarios: simulated users on WebSockets, a steady message rate, faults at set times.

Each scenario has its own room on one running local system. Its users connect through the one
address (the balancer), post at a steady rate, and record when every entry reached them; the
faults of the scenario are injected in each cycle; after the load stops the room is drained and
every message checked against the stored timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection

from llmchat.ids import parse_stream_id
from llmchat.redis_conn import create_redis
from llmchat.timeline import Timeline
from llmchat_tools.bench.scenarios_faults import (
    STORM,
    FaultEvent,
    Scenario,
    kill_busiest_replica,
    kill_leader_worker,
)
from llmchat_tools.bench.scenarios_measures import (
    check_integrity,
    delivery_latencies,
)
from llmchat_tools.bench.scenarios_results import (
    LeaderSample,
    Post,
    ScenarioResult,
    measures_of,
    recover_faults,
)
from llmchat_tools.bench.scenarios_system import LocalSystem, LocalSystemError
from llmchat_tools.client import RoomClient

#: (description, scenarios done as a fraction, e.g. 2.4 = the third scenario 40% through)
Progress = Callable[[str, float], None]

QUESTIONS = (
    "What is a good name for a cat?",
    "How do streams keep order?",
    "Any tips for a rainy weekend?",
    "Which is faster, a bike or a scooter?",
    "Tell me one fact about the moon.",
    "What should I cook tonight?",
    "Why is the sky blue?",
    "How long does tea take to brew?",
)


@dataclass(frozen=True)
class RunConfig:
    users: int = 8
    rate: float = 2.0  # human messages per second, over all users
    cycles: int = 3  # fault cycles per scenario (one sample of recovery each)
    pre_s: float = 5.0  # steady load before the faults of a cycle
    post_s: float = 10.0  # steady load after them
    storm: int = 100  # messages in a storm burst
    stagger_s: float = 0.3  # between the faults of one cycle
    max_tokens: int = 32
    context_tokens: int = 1024  # the worker's prompt budget (its default)
    drain_s: float = 60.0  # at most this long for the room to settle after the load
    post_timeout_s: float = 30.0
    heal_timeout_s: float = 60.0

    @classmethod
    def quick(cls) -> RunConfig:
        return cls(
            users=3,
            rate=2.0,
            cycles=1,
            pre_s=2.0,
            post_s=6.0,
            storm=30,
            max_tokens=12,
            context_tokens=256,
            drain_s=30.0,
        )

    def planned_s(self) -> float:
        return self.cycles * (self.pre_s + self.post_s)


class TracedClient(RoomClient):
    """A room client that also notes when each entry arrived and when it (re)connected."""

    name: str

    def __init__(self, base_url: str, room: str, name: str, token: str) -> None:
        self.received: dict[str, float] = {}
        self.opened: list[float] = []
        self.live_events: list[tuple[float, dict[str, Any]]] = []
        super().__init__(
            [base_url],
            room,
            name,
            token=token,
            cursor="0-0",
            on_entry=self._arrived,
            on_live=self._live,
            reconnect_delay=0.05,
        )

    def _live(self, event: dict[str, Any]) -> None:
        if event.get("type") in ("start", "delta"):
            self.live_events.append((time.time(), event))

    def _arrived(self, entry: dict[str, Any]) -> None:
        self.received.setdefault(str(entry["id"]), time.time())

    async def _on_open(self, ws: ClientConnection, lost_at: float | None) -> None:
        self.opened.append(time.time())
        await super()._on_open(ws, lost_at)


class _Run:
    """The state of one scenario's run."""

    def __init__(self, system: LocalSystem, scenario: Scenario, cfg: RunConfig) -> None:
        self.system = system
        self.scenario = scenario
        self.cfg = cfg
        self.room = scenario.room
        self.clients: list[TracedClient] = []
        self.posts: list[Post] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.faults: list[FaultEvent] = []
        self.leader_samples: list[LeaderSample] = []
        self.notes: list[str] = []
        self.skipped_faults = 0
        self.rng = random.Random(scenario.number)

    # -- load ------------------------------------------------------------------------------

    def _post(self, client: TracedClient, storm: bool = False) -> None:
        post = Post(uuid.uuid4().hex, client.name, time.time(), storm)
        self.posts.append(post)
        text = self.rng.choice(QUESTIONS)
        if storm:
            text = f"storm {len(self.posts)}: {text}"

        async def send() -> None:
            try:
                ack = await client.post(text, post.msg_id, timeout=self.cfg.post_timeout_s)
                post.acked_at = time.time()
                post.entry_id = str(ack["cursor"])
            except Exception as exc:  # recorded: a post that failed is checked as lost
                post.error = repr(exc)

        task = asyncio.create_task(send())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _steady(self, stop: asyncio.Event) -> None:
        interval = 1.0 / self.cfg.rate
        nxt = time.monotonic()
        i = 0
        while not stop.is_set():
            self._post(self.clients[i % len(self.clients)])
            i += 1
            nxt += interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, nxt - time.monotonic()))

    def _storm(self, cycle: int) -> FaultEvent:
        event = FaultEvent(STORM, time.time(), self.room, cycle, {"messages": self.cfg.storm})
        first = len(self.posts)
        for i in range(self.cfg.storm):
            self._post(self.clients[i % len(self.clients)], storm=True)
        event.detail["posts"] = [p.msg_id for p in self.posts[first:]]
        return event

    async def _watch_leader(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            info = await self.system.leader(self.room)
            if info is not None:
                self.leader_samples.append(
                    (
                        time.time(),
                        info.get("leader"),
                        int(info.get("term") or 0),
                        info.get("since"),
                        info.get("election_s"),
                    )
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)

    # -- phases ----------------------------------------------------------------------------

    async def _wait_leader(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = await self.system.leader(self.room)
            if info and info.get("leader"):
                return
            await asyncio.sleep(0.2)
        self.notes.append(f"no leader in {self.room} after {timeout:.0f} s")

    async def _inject(self, cycle: int) -> None:
        sc = self.scenario
        if sc.replica_crash:
            replicas = {c.name: c.replica for c in self.clients}
            self.faults.append(kill_busiest_replica(self.system, replicas, cycle))
            await asyncio.sleep(self.cfg.stagger_s)
        if sc.storm:
            self.faults.append(self._storm(cycle))
            await asyncio.sleep(self.cfg.stagger_s)
        if sc.model_crash:
            try:
                self.faults.append(await kill_leader_worker(self.system, self.room, cycle))
            except LocalSystemError as exc:  # recorded: the scenario then fails its check
                self.skipped_faults += 1
                self.notes.append(f"cycle {cycle + 1}: model crash not injected: {exc}")

    async def _drain(self) -> None:
        """Wait for every post to settle and every client to hold the whole timeline."""
        deadline = time.monotonic() + self.cfg.drain_s
        pending = list(self.tasks)
        if pending:
            await asyncio.wait(pending, timeout=max(0.1, deadline - time.monotonic()))
        redis = create_redis(self.system.redis_url)
        try:
            timeline = Timeline(redis)
            last, since = "", time.monotonic()
            while time.monotonic() < deadline:
                now_last = await timeline.last_id(self.room)
                if now_last != last:
                    last, since = now_last, time.monotonic()
                caught_up = all(c.cursor == last for c in self.clients)
                if caught_up and time.monotonic() - since >= 1.5 and await self._answered(timeline):
                    return
                await asyncio.sleep(0.2)
            self.notes.append(f"the room did not settle within {self.cfg.drain_s:.0f} s")
        finally:
            await redis.aclose()

    async def _answered(self, timeline: Timeline) -> bool:
        """A model has answered at or after the room's last human message."""
        tail = await timeline.tail(self.room, 200)
        humans = [e for e in tail if e.kind == "human"]
        if not humans:
            return True
        last = parse_stream_id(humans[-1].id)
        return any(
            e.kind == "model" and parse_stream_id(str(e.meta.get("cut") or "0-0")) >= last
            for e in tail
        )

    async def _stored(self) -> list[dict[str, Any]]:
        redis = create_redis(self.system.redis_url)
        try:
            timeline = Timeline(redis)
            out: list[dict[str, Any]] = []
            cursor = "0-0"
            while True:
                page = await timeline.read_after(self.room, cursor, 500)
                out.extend(e.model_dump(mode="json") for e in page)
                if len(page) < 500:
                    return out
                cursor = page[-1].id
        finally:
            await redis.aclose()

    async def run(self, progress: Progress, base: float) -> ScenarioResult:
        cfg = self.cfg
        await self.system.wait_healthy(cfg.heal_timeout_s)
        await self._wait_leader(30.0)
        started = time.time()
        stop_load, stop_watch = asyncio.Event(), asyncio.Event()
        watcher: asyncio.Task[None] | None = None
        load: asyncio.Task[None] | None = None
        planned = cfg.planned_s()
        label = f"{self.scenario.number}/8 {self.scenario.name}"

        def tick(what: str) -> None:
            frac = min(0.95, (time.time() - started) / max(planned, 0.1))
            progress(f"{label}: {what}", base + frac)

        try:
            for i in range(cfg.users):
                name = f"user-{i + 1}"
                token = self.system.creds.token(
                    name, ttl_seconds=12 * 3600, redis_url=self.system.redis_url
                )
                client = TracedClient(self.system.url, self.room, name, token)
                self.clients.append(client)
                await client.start(timeout=15.0)
            watcher = asyncio.create_task(self._watch_leader(stop_watch))
            load = asyncio.create_task(self._steady(stop_load))
            for cycle in range(cfg.cycles):
                if cycle:  # let the restarted processes come back before the next faults
                    tick("waiting for the system to heal")
                    await self.system.wait_healthy(cfg.heal_timeout_s)
                    await self._wait_leader(30.0)
                await self._sleep(cfg.pre_s, tick, f"cycle {cycle + 1}: steady load")
                if self.scenario.faults:
                    tick(f"cycle {cycle + 1}: injecting {self.scenario.name}")
                    await self._inject(cycle)
                await self._sleep(cfg.post_s, tick, f"cycle {cycle + 1}: after the faults")
            stop_load.set()
            await load
            progress(f"{label}: draining", base + 0.96)
            await self._drain()
        finally:
            stop_load.set()
            stop_watch.set()
            for task in (load, watcher):
                if task is not None:
                    with contextlib.suppress(Exception):
                        await task
            for task in list(self.tasks):
                task.cancel()
            for client in self.clients:
                await client.close()
        stored = await self._stored()
        for attempt in range(3):  # an entry that arrived as we stopped: compare again
            if all(list(c.received) == [e["id"] for e in stored] for c in self.clients):
                break
            if attempt < 2:
                await asyncio.sleep(0.3)
                stored = await self._stored()
        progress(f"{label}: measuring", base + 0.99)
        return self._result(started, stored)

    async def _sleep(self, seconds: float, tick: Callable[[str], None], what: str) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            tick(what)
            await asyncio.sleep(min(0.5, left))

    # -- results ---------------------------------------------------------------------------

    def _result(self, started: float, stored: list[dict[str, Any]]) -> ScenarioResult:
        received = {c.name: c.received for c in self.clients}
        opened = {c.name: c.opened for c in self.clients}
        integrity = check_integrity(
            sent_ids=[p.msg_id for p in self.posts],
            acked_ids=[p.msg_id for p in self.posts if p.entry_id is not None],
            stored=[(str(e["id"]), str(e["msg_id"])) for e in stored],
            client_sequences={c.name: list(c.received) for c in self.clients},
        )
        acked = [(p.sent_at, p.entry_id) for p in self.posts if p.entry_id is not None]
        latencies = delivery_latencies([(s, e) for s, e in acked if e], received)
        answers = [e for e in stored if e.get("kind") == "model"]
        live_events = [c.live_events for c in self.clients]
        recover_faults(
            self.faults,
            self.posts,
            opened=opened,
            received=received,
            answers=answers,
            samples=self.leader_samples,
            live_events=live_events,
        )
        storm_ids = {p.entry_id for p in self.posts if p.storm}
        latency_series = [(s - started, lat, e in storm_ids) for s, e, lat in latencies]
        return ScenarioResult(
            scenario=self.scenario,
            started_at=started,
            ended_at=time.time(),
            integrity=integrity,
            measures=measures_of(self.faults, latencies, answers),
            faults=self.faults,
            latency_series=latency_series,
            answer_series=[
                (int(str(a["id"]).split("-")[0]) / 1000 - started, float(a["meta"]["total_s"]))
                for a in answers
                if isinstance((a.get("meta") or {}).get("total_s"), int | float)
            ],
            leader_series=[(t - started, ldr, term) for t, ldr, term, _, _ in self.leader_samples],
            reconnects=sum(c.stats.reconnects for c in self.clients),
            duplicates_dropped=sum(c.stats.duplicates_dropped for c in self.clients),
            restarts=self.system.restarts(),
            notes=self.notes + integrity.problems,
            skipped_faults=self.skipped_faults,
        )


async def run_scenario(
    system: LocalSystem,
    scenario: Scenario,
    cfg: RunConfig,
    progress: Progress,
    base: float,
) -> ScenarioResult:
    return await _Run(system, scenario, cfg).run(progress, base)
