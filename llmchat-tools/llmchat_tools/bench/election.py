"""`llmchat bench election`: does the better model come to lead, and does a leader stay put
between equal models?

The suite starts a local system on free loopback ports (Redis, one chat-service, one model
worker per model, the room's judge with its default settings) and then:

1. asks every question of the pool (the first ``--pool`` questions of FILE) to each contestant
   **directly** (its own chat template, no room), to know which is better: the one with the
   higher direct accuracy (an answer is right when it contains one of the question's ``any``
   strings, as in ``llmchat bench answers``);
2. **one live room** in ``all`` mode with both contestants, **the weaker one listed first** (so
   it leads at the start, by room order: the hard case): every question of the pool is asked,
   one a round; both models answer in the room, the judge scores the round, the ratings move and
   the models' electors act on them; the leader is read from ``GET /rooms/{room}/leader`` after
   each judged round (shown as the ``live`` row);
3. **the seeds replay those judged rounds**: seed ``s`` takes them in its own shuffled order and
   folds them, one a round, into fresh ratings with the room's own functions
   (``llmchat.ratings.update``, ``llmchat.election.should_hand_over``, the weaker model leading
   first) for ``--rounds`` rounds (whether the leader is then *settled*, its lower bound above
   every other model's upper bound, is shown). Generating answers and verdicts once and
   reusing them is what makes ten seeds affordable on 2 cores; it is honest because a round's
   verdict depends only on its question and answers (the judge is greedy, the answers are what
   the room produced), so what a seed varies is the order the room meets its questions in,
   which is what decides how soon the better model leads. The live room checks that the
   running electors follow the same rule;
4. the equal-models check, live: a room with two copies of one model (same weights and settings,
   different sampling seeds) for ``--equal-rounds`` judged rounds, counting leader changes.

Printed: per seed, the leader after each round and the round from which the better model led
to the end; the equal-models changes; the last line ``better_model_leads <k>/<n> median_rounds
<r>``: in how many seeds the better model led within 10 judged rounds, and the median of those
rounds (over the seeds where it came to lead).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from llmchat.auth import authorization
from llmchat.election import confidently_better
from llmchat.ids import server_msg_id
from llmchat.models import RoomMode
from llmchat.ratings import Rating, outcome
from llmchat_tools.bench._common import (
    Procs,
    console,
    default_out,
    fmt,
    md_table,
    median,
    show_table,
    wait_until,
    workdir,
    write_results,
)
from llmchat_tools.bench.answers import (
    DEFAULT_QUESTIONS,
    ModelResult,
    Question,
    QuestionFileError,
    ask_direct,
    load_questions,
    sign_up,
)
from llmchat_tools.client import RoomClient
from llmchat_tools.local.up import LocalModel, UpConfig, room_spec, worker_env

#: The better model must lead within this many judged rounds (the acceptance bar).
WITHIN_ROUNDS = 10
#: How long one round (both answers and the verdict) may take before the suite gives up.
ROUND_TIMEOUT_S = 600.0
#: Time for the electors to act on new ratings (renew every 0.25 s, campaign every 0.1 s).
SETTLE_S = 1.5


@dataclass
class JudgedRound:
    q: str
    scores: dict[str, float]
    #: each answer right by the question's ``any`` strings (the ground truth the judge never sees)
    right: dict[str, bool]
    answers: dict[str, str]


@dataclass
class SeedRun:
    seed: int
    room: str
    order: list[str]
    leaders: list[str | None] = field(default_factory=list)
    rounds: list[JudgedRound] = field(default_factory=list)
    unjudged: int = 0
    rounds_to_lead: int | None = None
    settled: bool = False
    ratings: dict[str, dict[str, Any]] = field(default_factory=dict)


def rounds_to_lead(leaders: Sequence[str | None], better: str) -> int | None:
    """The judged round (1-based) from which ``better`` led to the end; None if it did not."""
    if not leaders or leaders[-1] != better:
        return None
    k = len(leaders)
    while k > 0 and leaders[k - 1] == better:
        k -= 1
    return k + 1


def replay(
    rounds: Sequence[JudgedRound], order: Sequence[str], better: str, seed: int, max_rounds: int
) -> SeedRun:
    """One seed: the judged ``rounds`` in the seed's order, folded into fresh ratings with the
    room's rating and election functions; ``order[0]`` leads first (pure)."""
    from llmchat.election import ElectionPolicy, should_hand_over  # noqa: PLC0415
    from llmchat.ratings import update  # noqa: PLC0415

    run = SeedRun(seed=seed, room="replay", order=list(order))
    shuffled = list(rounds)
    random.Random(seed).shuffle(shuffled)
    policy = ElectionPolicy(min_tenure_s=0.0)
    ratings: dict[str, Rating] = {}
    leader = order[0]
    for r in shuffled[:max_rounds]:
        ratings = update(ratings, {m: r.scores[m] for m in order if m in r.scores})
        leader = (
            should_hand_over(
                leader=leader,
                models=list(order),
                ratings=ratings,
                healthy=set(order),
                tenure_s=float("inf"),
                policy=policy,
            )
            or leader
        )
        run.rounds.append(r)
        run.leaders.append(leader)
    # no stop once settled: a settled leader can still be overtaken later, and replayed
    # rounds cost nothing
    run.settled = settled(ratings, leader)
    run.ratings = {m: x.model_dump(exclude={"versus"}) for m, x in ratings.items()}
    run.rounds_to_lead = rounds_to_lead(run.leaders, better)
    return run


@dataclass
class Agreement:
    """The judge against the ground truth (the ``any`` strings), over the contestants' rounds."""

    #: rounds where exactly the model was right: (judged for it, rounds)
    only_right: dict[str, tuple[int, int]]
    #: rounds where both were right or both wrong: wins per model, and ties
    same_wins: dict[str, int]
    same_ties: int

    @property
    def same_rounds(self) -> int:
        return sum(self.same_wins.values()) + self.same_ties


def agreement(rounds: Sequence[JudgedRound], a: str, b: str) -> Agreement:
    """How the judge's verdicts line up with which answers were right (pure). Where only one
    answer is right the judge should pick it; where both are right (or both wrong) a judge
    without bias splits its wins evenly: a lean there towards one model is its preference."""
    only = {a: [0, 0], b: [0, 0]}
    wins = {a: 0, b: 0}
    ties = 0
    for r in rounds:
        if a not in r.scores or b not in r.scores or a not in r.right or b not in r.right:
            continue
        res = outcome(r.scores[a], r.scores[b])
        if r.right[a] != r.right[b]:
            winner = a if r.right[a] else b
            only[winner][1] += 1
            only[winner][0] += res == (1.0 if winner == a else 0.0)
        elif res == 0.5:
            ties += 1
        else:
            wins[a if res == 1.0 else b] += 1
    return Agreement({m: (v[0], v[1]) for m, v in only.items()}, wins, ties)


def leader_changes(leaders: Sequence[str | None], initial: str | None) -> int:
    """How often the leader changed, from ``initial`` through ``leaders`` (gaps ignored)."""
    changes = 0
    current = initial
    for leader in leaders:
        if leader is None:
            continue
        if current is not None and leader != current:
            changes += 1
        current = leader
    return changes


def settled(ratings: Mapping[str, Rating], leader: str | None) -> bool:
    """The leader is better with confidence than every other model: no change can follow soon."""
    if leader is None or leader not in ratings:
        return False
    return all(confidently_better(ratings[leader], r) for m, r in ratings.items() if m != leader)


class Room:
    """The bench's view of a room: post a question, wait for the verdict, read the leader."""

    def __init__(self, base: str, room: str, admin: str) -> None:
        self.base, self.room, self.admin = base, room, admin
        self.client: RoomClient | None = None

    async def open(self) -> None:
        token, user = sign_up(self.base, self.room, None)
        self.client = RoomClient([self.base], self.room, user, token=token)
        await self.client.start(timeout=30)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    def _get(self, path: str) -> dict[str, Any]:
        r = httpx.get(
            f"{self.base}/api/v1/rooms/{self.room}{path}",
            headers=authorization(self.admin),
            timeout=15,
        )
        r.raise_for_status()
        return dict(r.json())

    def leader(self) -> str | None:
        value = self._get("/leader").get("leader")
        return str(value) if value else None

    def ratings(self) -> dict[str, Rating]:
        board = self._get("/ratings")
        return {
            s["model"]: Rating.model_validate(
                {k: v for k, v in s.items() if k in Rating.model_fields}
            )
            for s in board["standings"]
        }

    async def round(self, question: Question) -> JudgedRound | None:
        """Ask ``question`` (every model answers: an ``all`` room); the round, if judged."""
        assert self.client is not None
        ack = await self.client.post(question.q, timeout=60)
        cut = ack["cursor"]
        verdict_id = server_msg_id("verdict", cut)

        def verdict(es: list[dict[str, Any]]) -> bool:
            return any(e["msg_id"] == verdict_id for e in es)

        await self.client.wait_for(verdict, timeout=ROUND_TIMEOUT_S)
        entry = next(e for e in self.client.entries if e["msg_id"] == verdict_id)
        await asyncio.sleep(SETTLE_S)
        if entry["kind"] != "judge":
            return None
        answers = {
            str(e["author"]): str(e["text"])
            for e in self.client.entries
            if e["kind"] == "model" and (e.get("meta") or {}).get("cut") == cut
        }
        scores = {str(m): float(v) for m, v in (entry.get("meta") or {}).get("scores", {}).items()}
        return JudgedRound(
            q=question.q,
            scores=scores,
            right={m: question.right(a) for m, a in answers.items()},
            answers=answers,
        )


def create_room(base: str, admin: str, room: str, models: Sequence[LocalModel]) -> None:
    spec = room_spec(UpConfig(room=room, models=list(models), mode=RoomMode.ALL))
    r = httpx.post(
        base + "/api/v1/rooms",
        json=spec.model_dump(mode="json"),
        headers=authorization(admin),
        timeout=15,
    )
    if r.status_code not in (200, 201):
        raise RuntimeError(f"could not create room {room}: {r.status_code} {r.text}")


async def live_room(base: str, admin: str, run: SeedRun, questions: Sequence[Question]) -> None:
    """Every question asked once in the live room, in order; the judged rounds and leaders."""
    room = Room(base, run.room, admin)
    await room.open()
    try:
        for q in questions:
            judged = await room.round(q)
            if judged is None:
                run.unjudged += 1
                continue
            run.rounds.append(judged)
            run.leaders.append(room.leader())
            console.print(
                f"  [dim]{run.room} round {len(run.leaders)}: leader {run.leaders[-1]}[/]"
            )
        run.ratings = {m: r.model_dump(exclude={"versus"}) for m, r in room.ratings().items()}
        run.settled = settled(room.ratings(), run.leaders[-1] if run.leaders else None)
    finally:
        await room.close()


def start_system(
    procs: Procs, models: Sequence[tuple[LocalModel, list[str], int]], rooms: list[str]
) -> str:
    """Redis, a chat-service, the workers (model, its rooms, its seed) and the judge."""
    procs.redis()
    _, url = procs.chat_service("chat-service-1")
    for m, serves, seed in models:
        env = {
            **worker_env(m, ",".join(serves)),
            "LLMCHAT_SEED": str(seed),
            "LLMCHAT_MIN_TENURE_S": "0",
        }
        env.pop("LLMCHAT_MODEL_NAME")
        env.pop("LLMCHAT_ROOMS")
        _, wurl = procs.worker(m.name, ",".join(serves), f"{m.name}-1", **env)
        wait_until(partial(_ready, wurl), 300, f"model-worker {m.name} ready")
    judge = procs.python(
        "judge",
        ["-m", "llmchat", "judge"],
        LLMCHAT_ROOMS=",".join(rooms),
        LLMCHAT_CONSUMER="judge-1",
    )
    time.sleep(0.5)
    judge.check()
    return url


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Outcome:
    better: str
    direct: dict[str, float]
    seeds: list[SeedRun]
    equal_model: str
    equal_leaders: list[str | None]
    equal_initial: str | None
    equal_changes: int
    agreement: Agreement | None = None
    #: the live room whose judged rounds the seeds replay
    live: SeedRun | None = None

    @property
    def led_within(self) -> int:
        return sum(
            r.rounds_to_lead is not None and r.rounds_to_lead <= WITHIN_ROUNDS for r in self.seeds
        )

    @property
    def median_rounds(self) -> float:
        got = [float(r.rounds_to_lead) for r in self.seeds if r.rounds_to_lead is not None]
        return median(got)


def last_line(o: Outcome) -> str:
    return (
        f"better_model_leads {o.led_within}/{len(o.seeds)} median_rounds {fmt(o.median_rounds, 1)}"
    )


def report(o: Outcome, questions: Path) -> tuple[str, dict[str, Any]]:
    headers = [
        "seed",
        "room order",
        "leader after each judged round",
        "unjudged",
        "better leads from",
        "settled",
    ]
    shown = ([o.live] if o.live is not None else []) + o.seeds
    rows = [
        [
            "live" if r is o.live else str(r.seed),
            " > ".join(r.order),
            " ".join((m or "-") for m in r.leaders),
            str(r.unjudged),
            str(r.rounds_to_lead) if r.rounds_to_lead is not None else "never",
            "yes" if r.settled else "no",
        ]
        for r in shown
    ]
    direct = ", ".join(f"{m} {a:.2f}" for m, a in o.direct.items())
    show_table(f"election: better model {o.better} (direct accuracy {direct})", headers, rows)
    equal = (
        f"equal models (two copies of {o.equal_model}): {o.equal_changes} leader change(s) in "
        f"{len(o.equal_leaders)} judged rounds"
    )
    console.print(equal)
    agree = ""
    if o.agreement is not None:
        ag = o.agreement
        only = "; ".join(
            f"only {m} right: judge agreed {k}/{n}" for m, (k, n) in ag.only_right.items()
        )
        same = ", ".join(f"{m} won {w}" for m, w in ag.same_wins.items())
        agree = (
            "Judge against the truth (the questions' `any` strings) over the live room's rounds: "
            f"{only}. Both right or both wrong ({ag.same_rounds} rounds): {same}, "
            f"{ag.same_ties} ties."
        )
        console.print(agree)
    md = (
        f"Questions from `{questions}`. Direct accuracy: {direct}; the better model: "
        f"**{o.better}**.\n\n"
        + md_table(headers, rows)
        + f"\n\n{equal}: {' '.join((m or '-') for m in o.equal_leaders)}.\n\n{agree}\n\n"
        + f"`{last_line(o)}`\n"
    )
    data = {
        "questions": str(questions),
        "better": o.better,
        "direct_accuracy": o.direct,
        "live": asdict(o.live) if o.live is not None else None,
        "seeds": [asdict(r) for r in o.seeds],
        "equal": {
            "model": o.equal_model,
            "leaders": o.equal_leaders,
            "initial": o.equal_initial,
            "changes": o.equal_changes,
        },
        "agreement": asdict(o.agreement) if o.agreement else None,
        "better_model_leads": o.led_within,
        "median_rounds": o.median_rounds,
    }
    return md, data


def run_suite(  # noqa: PLR0917 - one parameter per command-line option
    questions_path: Path,
    strong: str,
    weak: str,
    equal_model: str,
    seeds: int,
    rounds: int,
    equal_rounds: int,
    out: Path,
    pool: int | None = None,
) -> Outcome:
    questions = load_questions(questions_path)[:pool]
    a = LocalModel(room_name(weak, "a"), backend_model=weak)
    b = LocalModel(room_name(strong, "b"), backend_model=strong)
    # which is better: direct accuracy on the same questions
    results = {m.name: ModelResult(m.name, f"llamacpp:{m.backend_model}") for m in (a, b)}
    for r in results.values():
        r.asked = len(questions)
    asyncio.run(ask_direct([a, b], questions, results, seed=7))
    direct = {m: r.direct_accuracy for m, r in results.items()}
    better, worse = (b, a) if direct[b.name] >= direct[a.name] else (a, b)
    twins = [
        LocalModel("twin-a", backend_model=equal_model),
        LocalModel("twin-b", backend_model=equal_model),
    ]
    rooms = ["elect", "twins"] if equal_rounds else ["elect"]
    with workdir() as wd, Procs(wd) as procs:
        base = start_system(
            procs,
            [(a, ["elect"], 1), (b, ["elect"], 2)]
            + ([(twins[0], ["twins"], 11), (twins[1], ["twins"], 12)] if equal_rounds else []),
            rooms,
        )
        create_room(base, procs.admin_token, "elect", [worse, better])
        live = SeedRun(seed=-1, room="elect", order=[worse.name, better.name])
        console.print(f"[bold]live room[/]: {len(questions)} questions, {worse.name} listed first")
        asyncio.run(live_room(base, procs.admin_token, live, questions))
        live.rounds_to_lead = rounds_to_lead(live.leaders, better.name)
        runs = [replay(live.rounds, live.order, better.name, s, rounds) for s in range(seeds)]
        equal_leaders: list[str | None] = []
        initial: str | None = None
        if equal_rounds:
            create_room(base, procs.admin_token, "twins", twins)
            twin_run = SeedRun(seed=0, room="twins", order=[t.name for t in twins])
            initial = _first_leader(base, procs.admin_token, "twins")
            asyncio.run(_equal(base, procs.admin_token, twin_run, questions, equal_rounds))
            equal_leaders = twin_run.leaders
    outcome = Outcome(
        agreement=agreement(live.rounds, b.name, a.name),
        live=live,
        better=better.name,
        direct=direct,
        seeds=runs,
        equal_model=equal_model,
        equal_leaders=equal_leaders,
        equal_initial=initial,
        equal_changes=leader_changes(equal_leaders, initial),
    )
    md, data = report(outcome, questions_path)
    write_results(out, "election", md, data)
    return outcome


def room_name(model: str, suffix: str) -> str:
    """A model's name in the bench's rooms: its registry name, made a valid model name."""
    base = re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")[:30].strip("-") or "model"
    return f"{base}-{suffix}"


def _first_leader(base: str, admin: str, room: str) -> str | None:
    view = Room(base, room, admin)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        leader = view.leader()
        if leader:
            return leader
        time.sleep(0.2)
    return None


async def _equal(
    base: str, admin: str, run: SeedRun, questions: Sequence[Question], rounds: int
) -> None:
    room = Room(base, run.room, admin)
    await room.open()
    order = list(questions)
    random.Random(99).shuffle(order)
    try:
        i = 0
        while len(run.leaders) < rounds and i < 3 * rounds:
            q = order[i % len(order)]
            i += 1
            judged = await room.round(q)
            if judged is not None:
                run.rounds.append(judged)
                run.leaders.append(room.leader())
                console.print(f"  [dim]twins round {len(run.leaders)}: leader {run.leaders[-1]}[/]")
            else:
                run.unjudged += 1
    finally:
        await room.close()


def register(app: typer.Typer) -> None:
    @app.command("election")
    def election(  # noqa: PLR0917 - typer: one parameter per option
        questions: Annotated[
            Path, typer.Option("--questions", help='JSON Lines: {"q": ..., "any": [...]}.')
        ] = DEFAULT_QUESTIONS,
        strong: Annotated[str, typer.Option(help="One contestant (packaged model).")] = (
            "qwen2.5-coder-0.5b"
        ),
        weak: Annotated[str, typer.Option(help="The other contestant.")] = "smollm2-135m",
        equal_model: Annotated[
            str, typer.Option(help="The model of the equal-models check.")
        ] = "smollm2-135m",
        seeds: Annotated[
            int, typer.Option(min=1, max=1000, help="Seeds (orders of the judged rounds).")
        ] = 10,
        pool: Annotated[
            int,
            typer.Option(min=2, max=1000, help="Questions asked in the live room (the first N)."),
        ] = 30,
        rounds: Annotated[
            int, typer.Option(min=1, max=200, help="Judged rounds each seed replays.")
        ] = 15,
        equal_rounds: Annotated[
            int, typer.Option(min=0, max=500, help="Judged rounds of the equal-models check.")
        ] = 30,
        out: Annotated[Path | None, typer.Option(help="Results folder.")] = None,
    ) -> None:
        """Does the better model come to lead; does a leader stay put between equal models?"""
        console.rule("llmchat bench election")
        try:
            outcome = run_suite(
                questions,
                strong,
                weak,
                equal_model,
                seeds,
                rounds,
                equal_rounds,
                out or default_out("election"),
                pool,
            )
        except QuestionFileError as exc:
            raise typer.BadParameter(str(exc), param_hint="--questions") from exc
        typer.echo(
            f"equal_models_leader_changes {outcome.equal_changes} "
            f"rounds {len(outcome.equal_leaders)}"
        )
        typer.echo(last_line(outcome))
