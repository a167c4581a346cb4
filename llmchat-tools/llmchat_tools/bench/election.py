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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from llmchat.models import RoomMode
from llmchat_tools.bench._common import (
    Procs,
    console,
    default_out,
    fmt,
    md_table,
    median,
    show_table,
    workdir,
    write_results,
)
from llmchat_tools.bench.answers_ask import ask_direct
from llmchat_tools.bench.answers_data import (
    DEFAULT_QUESTIONS,
    ModelResult,
    QuestionFileError,
    load_questions,
)
from llmchat_tools.bench.election_replay import (
    Agreement,
    SeedRun,
    agreement,
    leader_changes,
    replay,
    room_name,
    rounds_to_lead,
)
from llmchat_tools.bench.election_room import (
    equal_room,
    first_leader,
    live_room,
    start_system,
)
from llmchat_tools.bench.local_system import create_room
from llmchat_tools.local.up import LocalModel

#: The better model must lead within this many judged rounds (the acceptance bar).
WITHIN_ROUNDS = 10


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
        create_room(base, procs.admin_token, "elect", [worse, better], RoomMode.ALL)
        live = SeedRun(seed=-1, room="elect", order=[worse.name, better.name])
        console.print(f"[bold]live room[/]: {len(questions)} questions, {worse.name} listed first")
        asyncio.run(live_room(base, procs.admin_token, live, questions))
        live.rounds_to_lead = rounds_to_lead(live.leaders, better.name)
        runs = [replay(live.rounds, live.order, better.name, s, rounds) for s in range(seeds)]
        equal_leaders: list[str | None] = []
        initial: str | None = None
        if equal_rounds:
            create_room(base, procs.admin_token, "twins", twins, RoomMode.ALL)
            twin_run = SeedRun(seed=0, room="twins", order=[t.name for t in twins])
            initial = first_leader(base, procs.admin_token, "twins")
            asyncio.run(equal_room(base, procs.admin_token, twin_run, questions, equal_rounds))
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
