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
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from llmchat import keys

app = typer.Typer(
    help="Faults for the stress scenarios: kill pods, storm a room.", no_args_is_help=True
)
# soft_wrap: a pod has no terminal (80 columns): one log line per event, never wrapped
console = Console(soft_wrap=True)
err = Console(stderr=True)

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
ROOM_LABEL = "llmchat.io/room"
MODEL_LABEL = "llmchat.io/model"
COMPONENT_LABEL = "app.kubernetes.io/component"
NAME_LABEL = "app.kubernetes.io/name"
PART_OF = "llm-in-the-chat"


class ChaosError(RuntimeError):
    """The fault could not be caused (nothing to kill, no leader, refused by the API)."""


def default_namespace() -> str:
    """The pod's own namespace in a cluster, else ``default``."""
    try:
        return SA_NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"


def _holder(lease: Any, now: datetime) -> str | None:
    """The Lease's holder if it is still valid (renewTime + duration in the future)."""
    spec = lease.spec
    if spec is None or not spec.holder_identity:
        return None
    renewed = spec.renew_time or spec.acquire_time
    duration = spec.lease_duration_seconds
    if renewed is not None and duration:
        if renewed.tzinfo is None:
            renewed = renewed.replace(tzinfo=UTC)
        if (now - renewed).total_seconds() > float(duration):
            return None
    return str(spec.holder_identity)


def leader_selector(room: str, holder: str) -> str:
    """Pods of the model that holds the lease (the holder is the model's name; a
    ``model/replica`` or ``model:replica`` identity is cut to the model)."""
    model = holder.split("/", 1)[0].split(":", 1)[0]
    return (
        f"{NAME_LABEL}={PART_OF},{COMPONENT_LABEL}=model-worker,{ROOM_LABEL}={room},"
        f"{MODEL_LABEL}={model}"
    )


@dataclass
class KillResult:
    namespace: str
    selector: str
    candidates: list[str]
    deleted: list[str]
    leader: str | None = None
    notes: list[str] = field(default_factory=list)


def kill_pods(
    api: Any,
    *,
    namespace: str,
    selector: str = "",
    leader_of: str | None = None,
    judge_of: str | None = None,
    count: int = 1,
    grace_period_s: int = 0,
    rng: random.Random | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> KillResult:
    """Delete ``count`` random running pods matching ``selector`` in ``namespace`` (and, with
    ``leader_of``, belonging to the model that leads that room; with ``judge_of``, the pod of
    that room's active judge). ``api`` is a ``kubernetes.client.ApiClient``."""
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    core = k8s.CoreV1Api(api)
    leader: str | None = None
    parts = [s for s in (selector.strip(),) if s]

    def holder_of(lease_name: str, what: str) -> str:
        try:
            lease = k8s.CoordinationV1Api(api).read_namespaced_lease(lease_name, namespace)
        except ApiException as exc:
            raise ChaosError(
                f"cannot read Lease {namespace}/{lease_name}: {exc.status} {exc.reason}"
            ) from exc
        holder = _holder(lease, now or datetime.now(UTC))
        if holder is None:
            raise ChaosError(f"{what} (its Lease {lease_name} is free or expired)")
        return holder

    judge_pod: str | None = None
    if leader_of:
        leader = holder_of(keys.leader_lease_name(leader_of), f"room {leader_of} has no leader")
        parts.append(leader_selector(leader_of, leader))
    if judge_of:
        judge_pod = holder_of(
            keys.judge_lease_name(judge_of), f"room {judge_of} has no active judge"
        )
        leader = judge_pod
        parts.append(f"{NAME_LABEL}={PART_OF},{COMPONENT_LABEL}=judge,{ROOM_LABEL}={judge_of}")
    if not parts:
        raise ChaosError("give a --selector, --leader-of or --judge-of: refusing to kill every pod")
    full = ",".join(parts)
    try:
        pods = core.list_namespaced_pod(namespace, label_selector=full).items
    except ApiException as exc:
        raise ChaosError(f"cannot list pods in {namespace}: {exc.status} {exc.reason}") from exc
    alive: list[str] = []
    for pod in pods:
        meta, status = pod.metadata, pod.status
        phase = status.phase if status is not None else None
        if meta is None or not meta.name or meta.deletion_timestamp is not None:
            continue
        if judge_pod is not None and meta.name != judge_pod:
            continue  # the active judge only: the holder names its pod
        if phase in ("Running", "Pending"):
            alive.append(str(meta.name))
    alive.sort()
    result = KillResult(namespace, full, alive, [], leader)
    if not alive:
        raise ChaosError(f"no running pod matches {full!r} in {namespace}")
    chosen = (rng or random.Random()).sample(alive, min(count, len(alive)))
    for name in sorted(chosen):
        if dry_run:
            result.notes.append(f"would delete {name}")
            continue
        try:
            core.delete_namespaced_pod(name, namespace, grace_period_seconds=grace_period_s)
        except ApiException as exc:
            if exc.status == 404:  # gone meanwhile: someone else's fault did it
                result.notes.append(f"{name} was already gone")
                continue
            raise ChaosError(f"cannot delete pod {namespace}/{name}: {exc.status}") from exc
        result.deleted.append(name)
    return result


def api_client(kubeconfig: Path | None) -> Any:
    """A client from ``kubeconfig``, else the in-cluster ServiceAccount, else ~/.kube/config."""
    from kubernetes import config as k8s_config

    if kubeconfig is not None:
        return k8s_config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        return k8s_config.new_client_from_config()  # type: ignore[no-untyped-call]
    from kubernetes import client as k8s

    return k8s.ApiClient()


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


@dataclass
class StormResult:
    sent: int = 0
    stored: int = 0
    duplicate: int = 0
    failed: int = 0
    throttled: int = 0  # 429 answers waited out (Retry-After), not failures
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


async def issue_tokens(url: str, admin_token: str, names: list[str]) -> dict[str, str]:
    """A token for each name from the service (``POST /auth/tokens`` with the admin
    credential; a free name is registered)."""
    import httpx

    from llmchat.auth import authorization

    out: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=10.0) as http:
        for name in names:
            try:
                r = await http.post(
                    url.rstrip("/") + "/api/v1/auth/tokens",
                    json={"name": name},
                    headers=authorization(admin_token),
                )
            except httpx.HTTPError as exc:
                raise ChaosError(f"getting a token for {name!r} failed: {exc!r}") from exc
            if r.status_code != 201:
                raise ChaosError(
                    f"getting a token for {name!r} failed: {r.status_code} {r.text[:200]}"
                )
            out[name] = str(r.json()["token"])
    return out


async def storm_room(
    url: str,
    room: str,
    *,
    count: int,
    concurrency: int = 10,
    author: str = "storm",
    token: str | None = None,
    authors: list[tuple[str, str]] | None = None,
    timeout_s: float = 10.0,
    attempts: int = 3,
    max_wait_s: float = 90.0,
) -> StormResult:
    """Post ``count`` messages to ``room`` at once (``concurrency`` in flight); each message has
    its own id and is retried with that id, so a retry never stores twice. ``token`` is
    ``author``'s token (every call needs one); ``authors`` — (name, token) pairs — spreads the
    messages over several people instead. A 429 is waited out (``Retry-After``) and counted as
    throttled, not failed, for up to ``max_wait_s``: the rate limits shape the storm, and nothing
    may be lost."""
    import httpx

    from llmchat.auth import authorization

    base = url.rstrip("/") + f"/api/v1/rooms/{room}"
    result = StormResult()
    started = time.monotonic()
    gate = asyncio.Semaphore(concurrency)
    run = uuid.uuid4().hex[:8]
    people = authors or [(author, token or "")]
    heads = [authorization(t) if t else {} for _, t in people]
    async with httpx.AsyncClient(timeout=timeout_s) as http:
        for (name, _), auth in zip(people, heads, strict=True):
            r = await http.post(base + "/members", json={"name": name}, headers=auth)
            if r.status_code not in (200, 201):
                raise ChaosError(f"joining {room} failed: {r.status_code} {r.text[:200]}")

        async def one(i: int) -> None:
            name, auth = people[i % len(people)][0], heads[i % len(people)]
            body = {"id": f"storm-{run}-{i}", "author": name, "text": f"storm message {i + 1}"}
            async with gate:
                result.sent += 1
                attempt = 0
                while attempt < attempts:
                    try:
                        resp = await http.post(base + "/messages", json=body, headers=auth)
                    except httpx.HTTPError as exc:
                        problem = repr(exc)
                    else:
                        if resp.status_code in (200, 201):
                            if resp.json().get("duplicate"):
                                result.duplicate += 1
                            else:
                                result.stored += 1
                            return
                        problem = f"{resp.status_code} {resp.text[:120]}"
                        wait = resp.headers.get("Retry-After", "1")
                        if resp.status_code == 429 and time.monotonic() - started < max_wait_s:
                            result.throttled += 1
                            await asyncio.sleep(float(wait) if wait.isdigit() else 1.0)
                            continue
                    attempt += 1
                    await asyncio.sleep(0.2 * attempt)
                result.failed += 1
                if len(result.errors) < 5:
                    result.errors.append(problem)

        await asyncio.gather(*(one(i) for i in range(count)))
    result.seconds = time.monotonic() - started
    return result


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
