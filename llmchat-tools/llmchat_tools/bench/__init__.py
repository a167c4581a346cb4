"""`llmchat bench SUITE`: benchmarks that print their figures side by side in one run.

Each suite lives in its own module here and registers a command on ``app``; suites write their
results (Markdown, CSV, JSON, plots) under ``--out`` (default ``docs/bench/<suite>``).
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="Benchmarks: figures side by side in one run.", no_args_is_help=True)

#: Suite modules (each defines ``register(app)``); a missing module is skipped while it is
#: being written, any other import error is raised.
SUITES = (
    "worker",
    "scenarios",
    "fanout",
    "failover",
    "ai",
    "context",
    "answers",
    "judge",
    "election",
)

for _suite in SUITES:
    try:
        _module = importlib.import_module(f"llmchat_tools.bench.{_suite}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"llmchat_tools.bench.{_suite}":
            raise
        continue
    _module.register(app)
