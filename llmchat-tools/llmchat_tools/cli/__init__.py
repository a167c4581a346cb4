"""The ``llmchat`` command: one entry point for every component and the local tools."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from pydantic_settings import BaseSettings
from rich.console import Console

from llmchat import __version__

app = typer.Typer(
    name="llmchat",
    help="LLM-In-The-Chat: people and language models in one room.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
S = TypeVar("S", bound=BaseSettings)


def fail_settings(exc: ValidationError) -> typer.Exit:
    """Show invalid settings readably (which variable, what is wrong) and exit with 2."""
    err.print("[bold red]invalid configuration:[/]")
    for e in exc.errors():
        field = ".".join(str(p) for p in e["loc"])
        err.print(f"  LLMCHAT_{field.upper()}: {e['msg']}", soft_wrap=True)
    return typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        Console().print(f"llmchat {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Each component runs as ``llmchat <component>``; settings come from LLMCHAT_* variables."""


def _overrides(**flags: object) -> dict[str, object]:
    return {k: v for k, v in flags.items() if v is not None}


def _settings(cls: type[S], **flags: object) -> S:
    """A service's settings: its LLMCHAT_* variables with the given flags on top; invalid
    settings are shown readably and the command exits with 2."""
    try:
        return cls(**_overrides(**flags))  # type: ignore[arg-type]
    except ValidationError as exc:
        raise fail_settings(exc) from exc


@app.command("chat-service")
def chat_service(
    host: Annotated[str | None, typer.Option(help="Address to listen on [LLMCHAT_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [LLMCHAT_PORT, default 8000].")] = None,
    redis_url: Annotated[str | None, typer.Option(help="Redis URL [LLMCHAT_REDIS_URL].")] = None,
    replica_id: Annotated[
        str | None, typer.Option(help="Replica name [LLMCHAT_REPLICA_ID].")
    ] = None,
    max_message_bytes: Annotated[
        int | None, typer.Option(help="Largest message [LLMCHAT_MAX_MESSAGE_BYTES, 8192].")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="[LLMCHAT_LOG_LEVEL, INFO]")] = None,
    log_format: Annotated[
        str | None, typer.Option(help="json or console [LLMCHAT_LOG_FORMAT]")
    ] = None,
) -> None:
    """Run chat-service: the REST and WebSocket API, the web page and /metrics."""
    from chat_service.main import run
    from chat_service.settings import ChatServiceSettings

    settings = _settings(
        ChatServiceSettings,
        host=host,
        port=port,
        redis_url=redis_url,
        replica_id=replica_id,
        max_message_bytes=max_message_bytes,
        log_level=log_level,
        log_format=log_format,
    )
    run(settings)


@app.command("model-worker")
def model_worker(
    model_name: Annotated[
        str | None, typer.Option(help="Name in the room [LLMCHAT_MODEL_NAME].")
    ] = None,
    rooms: Annotated[
        str | None, typer.Option(help="Rooms, comma-separated [LLMCHAT_ROOMS].")
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="llamacpp, ollama or gemini [LLMCHAT_BACKEND].")
    ] = None,
    backend_model: Annotated[
        str | None, typer.Option(help="Model tag, registry name or .gguf [LLMCHAT_BACKEND_MODEL].")
    ] = None,
    backend_host: Annotated[
        str | None, typer.Option(help="Ollama/Gemini URL [LLMCHAT_BACKEND_HOST].")
    ] = None,
    redis_url: Annotated[str | None, typer.Option(help="Redis URL [LLMCHAT_REDIS_URL].")] = None,
    port: Annotated[int | None, typer.Option(help="Health/metrics port [LLMCHAT_PORT].")] = None,
) -> None:
    """Run a model-worker: answer a model's jobs in its rooms."""
    from model_worker.main import run
    from model_worker.settings import WorkerSettings

    settings = _settings(
        WorkerSettings,
        model_name=model_name,
        rooms=rooms,
        backend=backend,
        backend_model=backend_model,
        backend_host=backend_host,
        redis_url=redis_url,
        port=port,
    )
    run(settings)


@app.command("judge")
def judge(
    rooms: Annotated[
        str | None, typer.Option(help="Rooms, comma-separated [LLMCHAT_ROOMS].")
    ] = None,
    judge_provider: Annotated[
        str | None, typer.Option(help="local or gemini [LLMCHAT_JUDGE_PROVIDER].")
    ] = None,
    judge_model: Annotated[
        str | None, typer.Option(help="Judge model [LLMCHAT_JUDGE_MODEL].")
    ] = None,
    judge_method: Annotated[
        str | None,
        typer.Option(help="rubric, grade, reference or pairwise [LLMCHAT_JUDGE_METHOD]."),
    ] = None,
    redis_url: Annotated[str | None, typer.Option(help="Redis URL [LLMCHAT_REDIS_URL].")] = None,
    port: Annotated[int | None, typer.Option(help="Health/metrics port [LLMCHAT_PORT].")] = None,
) -> None:
    """Run the judge: score each round's answers, publish verdicts, update ratings."""
    from judge.main import run
    from judge.settings import JudgeSettings

    settings = _settings(
        JudgeSettings,
        rooms=rooms,
        judge_provider=judge_provider,
        judge_model=judge_model,
        judge_method=judge_method,
        redis_url=redis_url,
        port=port,
    )
    run(settings)


@app.command("operator")
def operator_cmd(
    namespaces: Annotated[
        str | None,
        typer.Option(help="Namespaces to watch, comma-separated; empty: all [LLMCHAT_NAMESPACES]."),
    ] = None,
    image: Annotated[
        str | None, typer.Option(help="Image of the rooms' pods [LLMCHAT_IMAGE].")
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option(help="Redis URL for the rooms' pods [LLMCHAT_REDIS_URL].")
    ] = None,
    lease_namespace: Annotated[
        str | None, typer.Option(help="Namespace of the operator Lease [LLMCHAT_LEASE_NAMESPACE].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Health/metrics port [LLMCHAT_PORT].")] = None,
) -> None:
    """Run the ChatRoom operator (active/standby on a Lease; /healthz, /metrics)."""
    from chatroom_operator.main import run
    from chatroom_operator.settings import OperatorSettings

    settings = _settings(
        OperatorSettings,
        namespaces=namespaces,
        image=image,
        redis_url=redis_url,
        lease_namespace=lease_namespace,
        port=port,
    )
    raise typer.Exit(run(settings))


@app.command("up")
def up(
    port: Annotated[int, typer.Option(help="The one address clients use.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    replicas: Annotated[int, typer.Option(min=1, max=8, help="chat-service replicas.")] = 2,
    room: Annotated[str, typer.Option(help="The room to create.")] = "lobby",
    mode: Annotated[str, typer.Option(help="Room mode: leader or all.")] = "leader",
    model: Annotated[
        list[str] | None,
        typer.Option(
            help="A model as NAME=BACKEND:MODEL (repeatable), e.g. smol=llamacpp:smollm2-135m "
            "or llama=ollama:llama3.2:1b. Default: smol (SmolLM2-135M) and qwen "
            "(Qwen2.5-Coder-0.5B)."
        ),
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="Redis data (AOF) and logs.")] = Path(".llmchat"),
    redis_url: Annotated[
        str | None, typer.Option(help="Use this Redis instead of starting one.")
    ] = None,
    redis_port: Annotated[int, typer.Option(help="Port of the Redis this starts.")] = 6380,
    status: Annotated[bool, typer.Option(help="Show the live status table.")] = True,
    first_port: Annotated[
        int,
        typer.Option(
            min=1,
            max=65000,
            help="First of the consecutive ports used by the chat-service replicas, then the "
            "model workers' and the judge's health endpoints.",
        ),
    ] = 8101,
) -> None:
    """Run the whole room locally: Redis, chat-service replicas behind one port, model workers.

    Crashed processes are restarted; Ctrl-C stops everything cleanly. Open http://localhost:8000.
    """
    import asyncio

    from llmchat.logs import configure_logging
    from llmchat.models import RoomCreate, RoomMode
    from llmchat_tools.local.up import DEFAULT_MODELS, UpConfig, parse_model, run_up

    try:
        models = [parse_model(m) for m in model] if model else list(DEFAULT_MODELS)
        RoomCreate(name=room, mode=RoomMode(mode))
    except ValueError as exc:
        err.print(f"[bold red]invalid option:[/] {exc}")
        raise typer.Exit(2) from exc
    configure_logging("WARNING" if status else "INFO", "console")
    cfg = UpConfig(
        host=host,
        port=port,
        replicas=replicas,
        data_dir=data_dir,
        redis_url=redis_url,
        redis_port=redis_port,
        room=room,
        mode=RoomMode(mode),
        models=models,
        first_port=first_port,
    )
    asyncio.run(run_up(cfg, show_status=status))


@app.command("chat")
def chat(
    room: Annotated[str, typer.Argument(help="The room to join, e.g. lobby.")] = "lobby",
    url: Annotated[
        list[str] | None,
        typer.Option(
            help="chat-service address; repeat it for failover [default http://127.0.0.1:8000]."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="Your name in the room (no spaces) [default: the token's user, else $USER]."
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="LLMCHAT_TOKEN",
            help="Your token (sign in as its user). Without one, signs up for --name, "
            "which must be free.",
        ),
    ] = None,
) -> None:
    """Chat in a room from the terminal: history, live answers, verdicts; each line is posted.

    Ctrl-D, /quit or Ctrl-C leaves. A lost connection resumes where it stopped.
    """
    import getpass

    from llmchat_tools.chat_cli import run_chat

    who = name or (None if token else getpass.getuser())
    raise typer.Exit(run_chat(url or ["http://127.0.0.1:8000"], room, who, token))


# Sub-command groups that live in their own modules (registered when present).
for _module, _name in (
    ("llmchat_tools.cli.dev", "dev"),
    ("llmchat_tools.bench", "bench"),
    ("llmchat_tools.cli.chaos", "chaos"),
):
    try:
        _sub = importlib.import_module(_module)
    except ModuleNotFoundError as _exc:  # pragma: no cover - only while a module is missing
        if _exc.name != _module:
            raise
        continue
    app.add_typer(_sub.app, name=_name)


def main() -> None:
    app()
