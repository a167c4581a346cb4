"""`llmchat chaos`: the faults of the stress scenarios, for clusters without Chaos Mesh.

- ``kill-pod`` deletes pods by label selector (grace period 0: the container is killed, as
  Chaos Mesh's pod-kill does); ``--leader-of ROOM`` picks a pod of the model that holds the
  room's ``<room>-leader`` Lease, ``--judge-of ROOM`` the active judge (the pod holding the
  room's ``<room>-judge`` Lease). It needs only ``get/list/delete pods`` and ``get leases`` in
  its namespace (chaos/jobs/rbac.yaml).
- ``storm`` posts a burst of messages to a room through chat-service's REST API.

Both run from the project's image as Kubernetes Jobs (chaos/jobs/), or from a laptop.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from llmchat_tools.cli.chaos_pods import ChaosError, api_client, default_namespace, kill_pods
from llmchat_tools.cli.chaos_storm import issue_tokens, storm_room

__all__ = ["ChaosError", "app", "kill_pods", "storm_room"]

app = typer.Typer(
    help="Faults for the stress scenarios: kill pods, storm a room.", no_args_is_help=True
)
# soft_wrap: a pod has no terminal (80 columns): one log line per event, never wrapped
console = Console(soft_wrap=True)
err = Console(stderr=True)


@app.command("kill-pod")
def kill_pod(
    selector: Annotated[
        str,
        typer.Option(
            help="Label selector, e.g. app.kubernetes.io/component=chat-service "
            "(combined with --leader-of when both are given)."
        ),
    ] = "",
    leader_of: Annotated[
        str | None,
        typer.Option(help="Kill a pod of the model that holds this room's <room>-leader Lease."),
    ] = None,
    judge_of: Annotated[
        str | None,
        typer.Option(help="Kill this room's active judge (the pod holding <room>-judge)."),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="Namespace [default: the pod's own, else default].")
    ] = None,
    count: Annotated[int, typer.Option(min=1, max=100, help="Pods to delete.")] = 1,
    grace_period: Annotated[
        int, typer.Option(min=0, max=300, help="Seconds before SIGKILL (0: at once).")
    ] = 0,
    kubeconfig: Annotated[
        Path | None, typer.Option(help="Kubeconfig [default: in-cluster, else ~/.kube/config].")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Show what would be deleted.")] = False,
) -> None:
    """Delete pods by label (as Chaos Mesh's pod-kill does); their Deployment replaces them."""
    from kubernetes.config import ConfigException

    ns = namespace or default_namespace()
    try:
        api = api_client(kubeconfig)
    except (ConfigException, OSError) as exc:
        err.print(f"[bold red]kill-pod:[/] no Kubernetes access: {exc}")
        raise typer.Exit(2) from exc
    try:
        result = kill_pods(
            api,
            namespace=ns,
            selector=selector,
            leader_of=leader_of,
            judge_of=judge_of,
            count=count,
            grace_period_s=grace_period,
            dry_run=dry_run,
        )
    except ChaosError as exc:
        err.print(f"[bold red]kill-pod:[/] {exc}")
        raise typer.Exit(3) from exc
    finally:
        api.close()
    if result.leader and leader_of:
        console.print(f"room {leader_of} is led by {result.leader}")
    elif result.leader and judge_of:
        console.print(f"room {judge_of}'s active judge is {result.leader}")
    for note in result.notes:
        console.print(note)
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    for name in result.deleted:
        console.print(f"{stamp} deleted pod {ns}/{name}")


@app.command("storm")
def storm(
    room: Annotated[str, typer.Option(help="The room to storm.")] = "lobby",
    url: Annotated[
        str, typer.Option(help="chat-service address.")
    ] = "http://llm-in-the-chat-chat-service:8000",
    count: Annotated[int, typer.Option(min=1, max=10_000, help="Messages in the burst.")] = 200,
    concurrency: Annotated[int, typer.Option(min=1, max=200, help="Requests in flight.")] = 20,
    author: Annotated[str, typer.Option(help="Who posts them.")] = "storm",
    authors: Annotated[
        int,
        typer.Option(
            min=1,
            max=1000,
            help="Spread the storm over this many people (author-1, ...); needs "
            "LLMCHAT_ADMIN_TOKEN to get their tokens from the service.",
        ),
    ] = 1,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="LLMCHAT_TOKEN",
            help="The author's token (default: one issued with LLMCHAT_ADMIN_TOKEN, if set).",
        ),
    ] = None,
) -> None:
    """Post a burst of messages to a room through the REST API (a message storm)."""
    import os

    admin = os.environ.get("LLMCHAT_ADMIN_TOKEN")
    people: list[tuple[str, str]] | None = None
    names = [f"{author}-{i + 1}" for i in range(authors)] if authors > 1 else [author]
    if authors > 1 or token is None:
        if not admin:
            err.print(
                "[bold red]storm:[/] pass --token (or LLMCHAT_TOKEN), or set LLMCHAT_ADMIN_TOKEN "
                "so the storm's authors get tokens from the service (needed for --authors)"
            )
            raise typer.Exit(2)
        try:
            issued = asyncio.run(issue_tokens(url, admin, names))
        except ChaosError as exc:
            err.print(f"[bold red]storm:[/] {exc}")
            raise typer.Exit(3) from exc
        if authors > 1:
            people = [(name, issued[name]) for name in names]
        else:
            token = issued[author]
    try:
        result = asyncio.run(
            storm_room(
                url,
                room,
                count=count,
                concurrency=concurrency,
                author=author,
                token=token,
                authors=people,
            )
        )
    except ChaosError as exc:
        err.print(f"[bold red]storm:[/] {exc}")
        raise typer.Exit(3) from exc
    rate = result.sent / result.seconds if result.seconds else 0.0
    console.print(
        f"storm on {room}: {result.sent} sent, {result.stored} stored, "
        f"{result.duplicate} duplicates, {result.failed} failed, {result.throttled} throttled "
        f"(429, waited out) in {result.seconds:.2f} s "
        f"({rate:.0f}/s)"
    )
    for problem in result.errors:
        err.print(f"  {problem}")
    if result.failed:
        raise typer.Exit(1)
