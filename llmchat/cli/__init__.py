"""The ``llmchat`` command: one entry point for every component and the local tools."""

from __future__ import annotations

import importlib
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from llmchat import __version__

app = typer.Typer(
    name="llmchat",
    help="LLM-In-The-Chat: people and language models in one room.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def fail_settings(exc: ValidationError) -> typer.Exit:
    """Show invalid settings readably (which variable, what is wrong) and exit with 2."""
    err.print("[bold red]invalid configuration:[/]")
    for e in exc.errors():
        field = ".".join(str(p) for p in e["loc"])
        err.print(f"  LLMCHAT_{field.upper()} / --{field.replace('_', '-')}: {e['msg']}")
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

    try:
        settings = ChatServiceSettings(
            **_overrides(  # type: ignore[arg-type]
                host=host,
                port=port,
                redis_url=redis_url,
                replica_id=replica_id,
                max_message_bytes=max_message_bytes,
                log_level=log_level,
                log_format=log_format,
            )
        )
    except ValidationError as exc:
        raise fail_settings(exc) from exc
    run(settings)


# Sub-command groups that live in their own modules (registered when present).
for _module, _name in (("llmchat.cli.dev", "dev"),):
    try:
        _sub = importlib.import_module(_module)
    except ModuleNotFoundError as _exc:  # pragma: no cover - only while a module is missing
        if _exc.name != _module:
            raise
        continue
    app.add_typer(_sub.app, name=_name)


def main() -> None:
    app()
