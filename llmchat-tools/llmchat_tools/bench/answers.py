"""`llmchat bench answers`: are a room's answers as good as its models' answers alone?

Every question of FILE is asked twice per model, side by side in one run:

* **through the room**, as a person asks: signed up as an ordinary user, one question at a
  time over the WebSocket, addressed to every compared model with ``@mentions`` (so the room's
  routing mode does not matter, and they all answer it from the same cut), waiting for their
  answers before the next question. The room's conversation grows question after question:
  every model reads the others' earlier answers, as in a real room.
* **directly**: the same backend and model, with its own chat template, a one-line system
  prompt (the model's system prompt in the room, or "You are a helpful assistant.") and the
  question; the same sampling settings as the room's worker.

An answer is right when it contains any of the question's ``any`` strings (case-insensitive).
It *speaks for someone else* when a line of it opens as another participant or a role label
(``bob: ...``, ``User: ...``) or it starts with its own name: what users must never see.

FILE is JSON Lines, one question a line: ``{"q": "What is the capital of France?", "any":
["paris"]}``; blank lines are skipped. The committed set is ``data/questions.jsonl`` beside this
module.

Without ``--room-url`` the suite starts the default local room (``llmchat up``'s models and
settings: Redis, one chat-service, one worker per model; no judge, it is not needed) on free
loopback ports. With ``--room-url http://HOST:PORT/rooms/ROOM`` it talks to a running room;
``--model NAME=BACKEND:MODEL`` then says how to reach each model directly (default: the local
room's models).

The last line printed is ``room/direct <ratio> forged <n>``: the lowest ratio of room accuracy to
direct accuracy over the models, and how many posted answers spoke for someone else.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

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
from llmchat_tools.bench.answers_ask import (
    Target,
    ask_direct,
    ask_room,
    parse_room_url,
    room_models,
    sign_up,
)
from llmchat_tools.bench.answers_data import (
    DEFAULT_QUESTIONS,
    ModelResult,
    QuestionFileError,
    load_questions,
)
from llmchat_tools.bench.local_system import create_room, start_worker
from llmchat_tools.local.up import (
    DEFAULT_MODELS,
    LocalModel,
    parse_model,
)


def start_local_room(procs: Procs, models: list[LocalModel], room: str, seed: int) -> str:
    """The default local room on free loopback ports: Redis, one chat-service, the workers."""
    procs.redis()
    _, url = procs.chat_service("chat-service-1")
    create_room(url, procs.admin_token, room, models)
    for m in models:
        start_worker(procs, m, [room], seed)
    return url


def report(
    results: dict[str, ModelResult], questions: Path, n: int, target: str
) -> tuple[str, dict[str, Any], float, int]:
    headers = [
        "model",
        "backend",
        "room right",
        "direct right",
        "room acc",
        "direct acc",
        "room/direct",
        "speaks for others",
        "cut by hygiene",
        "asked again (repeat)",
        "no answer",
        "generation s (median)",
    ]
    rows = [
        [
            r.name,
            r.backend,
            f"{r.room_right}/{r.asked}",
            f"{r.direct_right}/{r.asked}",
            fmt(r.room_accuracy, 2),
            fmt(r.direct_accuracy, 2),
            fmt(r.ratio, 2),
            str(r.forged),
            str(r.cut_by_hygiene),
            str(r.retried),
            str(r.missing),
            fmt(median(r.room_seconds), 1),
        ]
        for r in results.values()
    ]
    show_table(f"answers: {n} questions from {questions}", headers, rows)
    worst = min((r.ratio for r in results.values()), default=0.0)
    forged = sum(r.forged for r in results.values())
    md = (
        f"{n} questions from `{questions}`, room: {target}.\n\n"
        + md_table(headers, rows)
        + f"\n\n`room/direct {worst:.2f} forged {forged}`\n"
    )
    data = {
        "questions": str(questions),
        "target": target,
        "room_direct_min": worst,
        "forged": forged,
        "models": {
            k: {**asdict(v), "room_accuracy": v.room_accuracy, "direct_accuracy": v.direct_accuracy}
            for k, v in results.items()
        },
    }
    return md, data, worst, forged


def run_suite(  # noqa: PLR0917 - one parameter per command-line option
    questions_path: Path,
    room_url: str | None,
    token: str | None,
    model_specs: list[str] | None,
    limit: int | None,
    seed: int,
    out: Path,
) -> tuple[float, int]:
    questions = load_questions(questions_path)[: limit or None]
    models = [parse_model(s) for s in model_specs] if model_specs else list(DEFAULT_MODELS)
    results = {m.name: ModelResult(m.name, f"{m.backend}:{m.backend_model}") for m in models}
    with workdir() as wd, Procs(wd) as procs:
        if room_url is None:
            room = "bench-answers"
            base = start_local_room(procs, models, room, seed)
            where = "the default local room (started by the suite)"
        else:
            base, room = parse_room_url(room_url)
            where = room_url
        tok, user = sign_up(base, room, token)
        target = Target(base, room, tok, user)
        missing = {m.name for m in models} - set(room_models(target))
        if missing:
            raise RuntimeError(f"room {room} has no model(s) {sorted(missing)}; see --model")
        asyncio.run(ask_room(target, models, questions, results))
    asyncio.run(ask_direct(models, questions, results, seed))
    md, data, worst, forged = report(results, questions_path, len(questions), where)
    write_results(out, "answers", md, data)
    return worst, forged


def register(app: typer.Typer) -> None:
    @app.command("answers")
    def answers(  # noqa: PLR0917 - typer: one parameter per option
        questions: Annotated[
            Path, typer.Option("--questions", help='JSON Lines: {"q": ..., "any": [...]}.')
        ] = DEFAULT_QUESTIONS,
        room_url: Annotated[
            str | None,
            typer.Option(help="A running room, http://HOST:PORT/rooms/ROOM (default: start one)."),
        ] = None,
        token: Annotated[
            str | None, typer.Option(help="A user token for --room-url (default: sign up).")
        ] = None,
        model: Annotated[
            list[str] | None,
            typer.Option(help="NAME=BACKEND:MODEL of each model to compare (repeatable)."),
        ] = None,
        limit: Annotated[int | None, typer.Option(help="Only the first N questions.")] = None,
        seed: Annotated[int, typer.Option(help="Sampling seed on both sides.")] = 7,
        out: Annotated[Path | None, typer.Option(help="Results folder.")] = None,
    ) -> None:
        """A room's answers against the same models asked directly."""
        console.rule("llmchat bench answers")
        try:
            worst, forged = run_suite(
                questions, room_url, token, model, limit, seed, out or default_out("answers")
            )
        except QuestionFileError as exc:
            raise typer.BadParameter(str(exc), param_hint="--questions") from exc
        typer.echo(f"room/direct {worst:.2f} forged {forged}")
