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
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
import typer

from llmchat.auth import authorization
from llmchat_tools.bench._common import (
    Procs,
    console,
    default_out,
    fmt,
    md_table,
    median,
    progress,
    show_table,
    wait_until,
    workdir,
    write_results,
)
from llmchat_tools.client import RoomClient
from llmchat_tools.local.up import (
    DEFAULT_MODELS,
    LocalModel,
    UpConfig,
    parse_model,
    room_spec,
    worker_env,
)

DEFAULT_QUESTIONS = Path(__file__).with_name("data") / "questions.jsonl"
DIRECT_SYSTEM = "You are a helpful assistant."
#: How long one answer may take through the room before it counts as missing.
ANSWER_TIMEOUT_S = 240.0


class QuestionFileError(ValueError):
    """The questions file is not in the documented format (the message says where and why)."""


@dataclass(frozen=True)
class Question:
    q: str
    any: tuple[str, ...]

    def right(self, answer: str) -> bool:
        low = answer.lower()
        return any(a.lower() in low for a in self.any)


def load_questions(path: Path) -> list[Question]:
    """The questions of a JSON Lines file, each ``{"q": str, "any": [str, ...]}``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise QuestionFileError(f"{path}: cannot read: {exc}") from exc
    out: list[Question] = []
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise QuestionFileError(f"{path}:{n}: not JSON: {exc.msg}") from exc
        if not isinstance(obj, dict):
            raise QuestionFileError(f"{path}:{n}: expected an object with 'q' and 'any'")
        q, any_ = obj.get("q"), obj.get("any")
        if not isinstance(q, str) or not q.strip():
            raise QuestionFileError(f"{path}:{n}: 'q' must be a non-empty string")
        if (
            not isinstance(any_, list)
            or not any_
            or not all(isinstance(a, str) and a.strip() for a in any_)
        ):
            raise QuestionFileError(f"{path}:{n}: 'any' must be a non-empty list of strings")
        if extra := sorted(set(obj) - {"q", "any"}):
            raise QuestionFileError(f"{path}:{n}: unknown field(s) {', '.join(extra)}")
        out.append(Question(q.strip(), tuple(a.strip() for a in any_)))
    if not out:
        raise QuestionFileError(f"{path}: no questions")
    return out


def speaks_for_someone_else(text: str, model: str, participants: set[str]) -> bool:
    """What a user must never see in a posted answer (see the module's docstring)."""
    from model_worker.prompt import clean_answer, speaks_for_others  # noqa: PLC0415

    starts_with_own_name = clean_answer(text, model) != text.strip()
    return starts_with_own_name or speaks_for_others(text, model, participants)


@dataclass
class ModelResult:
    name: str
    backend: str
    room_right: int = 0
    direct_right: int = 0
    asked: int = 0
    forged: int = 0
    missing: int = 0
    cut_by_hygiene: int = 0
    retried: int = 0
    room_seconds: list[float] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def room_accuracy(self) -> float:
        return self.room_right / self.asked if self.asked else 0.0

    @property
    def direct_accuracy(self) -> float:
        return self.direct_right / self.asked if self.asked else 0.0

    @property
    def ratio(self) -> float:
        if self.direct_right == 0:
            return 1.0 if self.room_right == 0 else float("inf")
        return self.room_right / self.direct_right


@dataclass(frozen=True)
class Target:
    base_url: str
    room: str
    token: str
    user: str


def parse_room_url(url: str) -> tuple[str, str]:
    """``http://HOST:PORT/rooms/ROOM`` (or ``.../api/v1/rooms/ROOM``, ``#/ROOM``): base, room."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise typer.BadParameter(f"{url!r}: expected http://HOST:PORT/rooms/ROOM")
    base = f"{parts.scheme}://{parts.netloc}"
    path = (parts.fragment or parts.path).strip("/").split("/")
    room = path[-1] if path and path[-1] and path[-1] not in ("rooms", "v1", "api") else "lobby"
    return base, room


def sign_up(base_url: str, room: str, token: str | None) -> tuple[str, str]:
    """A token and name for the bench's person: the given token, or a fresh open sign-up;
    then joins the room."""
    with httpx.Client(base_url=base_url, timeout=15) as http:
        if token is None:
            name = f"bench-{secrets.token_hex(3)}"
            r = http.post("/api/v1/auth/signup", json={"name": name})
            if r.status_code not in {200, 201}:
                raise RuntimeError(
                    f"sign-up at {base_url} refused ({r.status_code}: {r.text[:200]}); pass --token"
                )
            token = str(r.json()["token"])
        me = http.get("/api/v1/auth/me", headers=authorization(token))
        me.raise_for_status()
        name = str(me.json()["user"])
        r = http.post(f"/api/v1/rooms/{room}/members", headers=authorization(token))
        if r.status_code >= 400 and r.status_code != 409:
            raise RuntimeError(f"could not join {room}: {r.status_code} {r.text[:200]}")
        return token, name


def room_models(target: Target) -> list[str]:
    r = httpx.get(
        f"{target.base_url}/api/v1/rooms/{target.room}",
        headers=authorization(target.token),
        timeout=15,
    )
    r.raise_for_status()
    return [str(m["name"]) for m in r.json()["models"]]


async def ask_room(
    target: Target, models: list[LocalModel], questions: list[Question], results: dict[str, Any]
) -> None:
    """Every question through the room, one at a time, addressed to every compared model at
    once (so they answer it from the same cut, as a round), waiting for all their answers."""
    client = RoomClient([target.base_url], target.room, target.user, token=target.token)
    await client.start(timeout=30)
    participants = {target.user, *(m.name for m in models)}
    address = " ".join(f"@{m.name}" for m in models)
    try:
        with progress() as bar:
            task = bar.add_task("through the room", total=len(questions))
            for q in questions:
                t0 = time.monotonic()
                ack = await client.post(f"{address} {q.q}", timeout=60)
                cut = ack["cursor"]
                for m in models:
                    res: ModelResult = results[m.name]
                    res.asked += 1

                    def reply(es: list[dict[str, Any]], c: str = cut, who: str = m.name) -> bool:
                        return any(_answer_of(e, c, who) for e in es)

                    remaining = max(1.0, ANSWER_TIMEOUT_S - (time.monotonic() - t0))
                    try:
                        await client.wait_for(reply, timeout=remaining)
                    except TimeoutError:
                        res.missing += 1
                        res.samples.append({"q": q.q, "room": None, "room_right": False})
                        continue
                    entry = next(e for e in client.entries if _answer_of(e, cut, m.name))
                    text = str(entry["text"]) if entry["kind"] == "model" else ""
                    res.room_seconds.append(float(entry["meta"].get("total_s") or 0.0))
                    right = q.right(text)
                    res.room_right += right
                    if text and speaks_for_someone_else(text, m.name, participants):
                        res.forged += 1
                    meta = entry.get("meta") or {}
                    res.cut_by_hygiene += bool(meta.get("forged_cut"))
                    res.retried += meta.get("retried") == "repeat"
                    res.samples.append({"q": q.q, "room": text, "room_right": right})
                bar.advance(task)
    finally:
        await client.close()


def _answer_of(entry: dict[str, Any], cut: str, model: str) -> bool:
    """The model's answer to the message at ``cut``, or the note that it could not answer."""
    meta = entry.get("meta") or {}
    if meta.get("cut") != cut or meta.get("model") != model:
        return False
    return entry["kind"] in ("model", "system")


async def ask_direct(
    models: list[LocalModel], questions: list[Question], results: dict[str, Any], seed: int
) -> None:
    """Every question to every model's backend directly, with its own chat template."""
    from model_worker.main import backend_options  # noqa: PLC0415
    from model_worker.settings import WorkerSettings  # noqa: PLC0415

    from llmchat.llm.backends import BackendSpec, create_backend  # noqa: PLC0415
    from llmchat.llm.backends.base import ChatMessage  # noqa: PLC0415

    with progress() as bar:
        task = bar.add_task("directly", total=len(questions) * len(models))
        for m in models:
            settings = WorkerSettings(
                rooms=["bench"],
                backend=m.backend,
                backend_model=m.backend_model,
                backend_host=m.host,
                temperature=m.temperature,
                prompt_cache=False,
            )
            backend = create_backend(
                BackendSpec(
                    kind=settings.backend,
                    model=settings.backend_model,
                    host=settings.backend_host,
                    options=backend_options(settings),
                )
            )
            system = ChatMessage(role="system", content=m.system_prompt or DIRECT_SYSTEM)
            res: ModelResult = results[m.name]
            try:
                for i, q in enumerate(questions):
                    text = await backend.complete(
                        [system, ChatMessage(role="user", content=q.q)],
                        max_tokens=settings.max_tokens,
                        temperature=settings.temperature,
                        seed=seed,
                        timeout_s=settings.generation_timeout_s,
                    )
                    right = q.right(text)
                    res.direct_right += right
                    if i < len(res.samples):
                        res.samples[i].update(direct=text.strip(), direct_right=right)
                    bar.advance(task)
            finally:
                await backend.close()


def start_local_room(procs: Procs, models: list[LocalModel], room: str, seed: int) -> str:
    """The default local room on free loopback ports: Redis, one chat-service, the workers."""
    procs.redis()
    _, url = procs.chat_service("chat-service-1")
    spec = room_spec(UpConfig(room=room, models=models)).model_dump(mode="json")
    r = httpx.post(
        url + "/api/v1/rooms", json=spec, headers=authorization(procs.admin_token), timeout=15
    )
    if r.status_code not in (200, 201):
        raise RuntimeError(f"could not create room {room}: {r.status_code} {r.text}")
    for m in models:
        env = {**worker_env(m, room), "LLMCHAT_SEED": str(seed)}
        env.pop("LLMCHAT_MODEL_NAME")
        env.pop("LLMCHAT_ROOMS")
        _, wurl = procs.worker(m.name, room, f"{m.name}-1", **env)
        wait_until(partial(_ready, wurl), 300, f"model-worker {m.name} ready")
    return url


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


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
