"""`llmchat bench scenarios`: the eight fault scenarios against the real local system.

Every combination of {chat-service crash, message storm, model crash} (the first being none),
with simulated users on WebSockets, a steady message rate and faults at set times; it records
the five measures (message latency, AI first token and complete, queue time, recovery, leader
election; p50/p95/p99), checks every message (none lost, none duplicated, order kept) and
writes a Markdown table, CSV, results.json and PNG plots.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from llmchat.logs import configure_logging
from llmchat_tools.bench.scenarios_faults import SCENARIOS, Scenario
from llmchat_tools.bench.scenarios_results import ScenarioResult
from llmchat_tools.bench.scenarios_runner import RunConfig, run_scenario
from llmchat_tools.bench.scenarios_system import LocalSystem, SystemConfig
from llmchat_tools.redis_cluster import RedisCluster

DEFAULT_OUT = Path("docs/bench/scenarios")


async def run_scenarios(
    cfg: RunConfig,
    scenarios: Sequence[Scenario],
    data_dir: Path,
    progress: Progress | None = None,
    redis_url: str | None = None,
) -> list[ScenarioResult]:
    """Start the local system, run ``scenarios`` one after another, stop everything.

    ``redis_url``: use that Redis (one node, or any node of a Redis Cluster) instead of
    starting one."""
    task = None
    if progress is not None:
        task = progress.add_task("starting the local system", total=len(scenarios))

    def report(what: str, done: float) -> None:
        if progress is not None and task is not None:
            progress.update(task, description=what, completed=done)

    system = LocalSystem(
        SystemConfig(
            rooms=[s.room for s in scenarios],
            data_dir=data_dir,
            max_tokens=cfg.max_tokens,
            extra_env={"LLMCHAT_CONTEXT_TOKENS": str(cfg.context_tokens)},
            redis_url=redis_url,
        )
    )
    results: list[ScenarioResult] = []
    try:
        await system.start()
        for i, scenario in enumerate(scenarios):
            results.append(await run_scenario(system, scenario, cfg, report, float(i)))
            report(f"{scenario.number}/8 {scenario.name}: done", float(i + 1))
    finally:
        report("stopping the local system", float(len(results)))
        await system.stop()
    return results


def _run_and_report(  # noqa: PLR0917 - the command's choices
    console: Console,
    cfg: RunConfig,
    chosen: list[Scenario],
    out: Path,
    command: str,
    data_dir: Path | None,
    redis: str,
) -> bool:
    """Run the chosen scenarios (on a Redis Cluster of the run's own with ``redis="cluster"``),
    print and write the results; whether every message was kept."""
    # lazily: `llmchat` imports every suite at start, and the report needs matplotlib
    from llmchat_tools.bench.scenarios_report import markdown, write_all  # noqa: PLC0415

    tmp = Path(tempfile.mkdtemp(prefix="llmchat-scenarios-")) if data_dir is None else None
    workdir = data_dir or tmp
    assert workdir is not None
    ok = False
    cluster = None
    try:
        if redis == "cluster":
            cluster = RedisCluster(base_dir=workdir / "redis-cluster", appendfsync="everysec")
            cluster.start()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.1f}/{task.total:.0f} scenarios"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            url = cluster.url if cluster is not None else None
            results = asyncio.run(run_scenarios(cfg, chosen, workdir, progress, url))
        written = write_all(results, cfg, out, command)
        console.print(markdown(results, cfg, command))
        console.print("wrote " + ", ".join(str(p) for p in written[:3]) + " and the plots")
        ok = all(r.ok for r in results)
        for r in results:
            for note in r.notes:
                console.print(f"[yellow]scenario {r.scenario.number}:[/] {note}")
    finally:
        if cluster is not None:
            cluster.stop()
        if tmp is not None and ok:
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is not None:
            console.print(f"process logs kept in {tmp / 'logs'}")
    return ok


def register(app: typer.Typer) -> None:
    @app.command("scenarios")
    def scenarios(  # noqa: PLR0917 - one parameter per flag
        out: Annotated[Path, typer.Option(help="Where to write the results.")] = DEFAULT_OUT,
        quick: Annotated[
            bool, typer.Option(help="A short run: 3 users, one short fault cycle per scenario.")
        ] = False,
        only: Annotated[
            list[int] | None,
            typer.Option(min=1, max=8, help="Run only these scenarios (1-8; repeatable)."),
        ] = None,
        users: Annotated[int | None, typer.Option(min=1, max=100, help="Simulated users.")] = None,
        rate: Annotated[
            float | None, typer.Option(min=0.1, max=100, help="Messages per second.")
        ] = None,
        cycles: Annotated[
            int | None, typer.Option(min=1, max=20, help="Fault cycles per scenario.")
        ] = None,
        storm: Annotated[
            int | None, typer.Option(min=1, max=5000, help="Messages in a storm.")
        ] = None,
        max_tokens: Annotated[
            int | None, typer.Option(min=1, max=512, help="Longest model answer (tokens).")
        ] = None,
        data_dir: Annotated[
            Path | None,
            typer.Option(help="Keep Redis data and process logs here (default: a temp dir)."),
        ] = None,
        redis: Annotated[
            str,
            typer.Option(
                help="single: one Redis; cluster: a real Redis Cluster (3 masters, 3 replicas) "
                "started on 127.0.0.1 for the run."
            ),
        ] = "single",
    ) -> None:
        """The eight fault scenarios: five measures, every message checked, table and plots."""
        configure_logging("ERROR", "console")
        if redis not in ("single", "cluster"):
            raise typer.BadParameter(f"--redis must be single or cluster, not {redis!r}")
        cfg = RunConfig.quick() if quick else RunConfig()
        overrides = {
            "users": users,
            "rate": rate,
            "cycles": cycles,
            "storm": storm,
            "max_tokens": max_tokens,
        }
        cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
        chosen = [s for s in SCENARIOS if not only or s.number in only]
        command = "llmchat bench scenarios " + shlex.join(sys.argv[3:]) if sys.argv[3:] else ""
        command = command.strip() or "llmchat bench scenarios"
        console = Console()
        ok = _run_and_report(console, cfg, chosen, out, command, data_dir, redis)
        if not ok:
            console.print("[bold red]a scenario lost, repeated or reordered a message[/]")
            raise typer.Exit(1)
