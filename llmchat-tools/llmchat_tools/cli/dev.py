"""``llmchat dev``: developer tools, chiefly the loopback test control plane."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from llmchat_tools.devcluster import (
    Binaries,
    BinariesNotFoundError,
    BuildError,
    ClusterHandle,
    ClusterStartError,
    DevCluster,
    build_binaries,
    ensure_binaries,
)

app = typer.Typer(
    help="Developer tools: a real Kubernetes control plane on 127.0.0.1 (etcd, kube-apiserver, "
    "kube-controller-manager, kube-scheduler, kwok), built from Go modules by tools/k8s/build.sh.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False)],
    )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@app.callback()
def _dev() -> None:
    """Developer tools."""


@app.command("build")
def build(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    """Build (or reuse) the control-plane binaries: runs tools/k8s/build.sh."""
    _setup_logging(verbose)
    try:
        bins = build_binaries(on_line=lambda line: err.print(line, markup=False, highlight=False))
    except (BuildError, BinariesNotFoundError) as exc:
        err.print(f"[bold red]build failed:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"binaries in [bold]{bins.bin_dir}[/]")


@app.command("cluster")
def cluster(
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="Directory for logs, certificates, etcd data and the kubeconfig "
            "(default: a temporary directory, removed on exit)."
        ),
    ] = None,
    build: Annotated[
        bool, typer.Option("--build/--no-build", help="Build missing binaries first.")
    ] = True,
    taint: Annotated[
        bool, typer.Option(help="Taint the fake node so only tolerating pods land on it.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Start-up timeout in seconds.")] = 120.0,
    real_node: Annotated[
        bool,
        typer.Option(
            "--real-node",
            help="A real node instead of kwok's fake one: containerd, runc, the CNI bridge, "
            "kubelet, kube-proxy and CoreDNS running the project's image (make image), all in "
            "network and mount namespaces of their own (root; see tools/image/ and "
            "llmchat-tools/llmchat_tools/devcluster/node.py).",
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False,
) -> None:
    """Start the test control plane and keep it running until Ctrl-C."""
    _setup_logging(verbose)
    try:
        with console.status("checking binaries (tools/k8s/build.sh)..."):
            bins = ensure_binaries(
                build=build,
                on_line=lambda line: err.print(line, markup=False, highlight=False),
            )
    except (BuildError, BinariesNotFoundError) as exc:
        err.print(f"[bold red]no control-plane binaries:[/] {exc}")
        raise typer.Exit(1) from exc

    signal.signal(signal.SIGTERM, _raise_interrupt)
    if real_node:
        _real_node(workdir, bins, max(timeout, 300.0))
        return
    dev = DevCluster(workdir, binaries=bins, node_taint=taint, startup_timeout=timeout)
    try:
        with console.status(
            "starting etcd, kube-apiserver, controller-manager, scheduler, kwok..."
        ):
            handle = dev.start()
        _show_ready(handle)
        console.print("[dim]Ctrl-C stops the cluster.[/]")
        while True:
            time.sleep(1.0)
            exited = dev.exited_components()
            if exited:
                for name, code in exited:
                    err.print(
                        f"[bold red]{name} exited with code {code}[/]; "
                        f"see {dev.component_log(name)}"
                    )
                raise typer.Exit(1)
    except ClusterStartError as exc:
        err.print(f"[bold red]cluster failed to start:[/] {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        dev.stop()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    console.print("[green]cluster stopped[/]")


def _show_ready(handle: ClusterHandle) -> None:
    """Where the running cluster is, and the two lines that point a shell at it."""
    console.print(
        f"[bold green]cluster ready[/] ({handle.kubernetes_version}) at "
        f"{handle.server}, fake node [bold]{handle.node_name}[/]"
    )
    console.print(f"kubeconfig: [bold]{handle.kubeconfig}[/]")
    console.print(f"logs:       {handle.log_dir}")
    console.print(f"kubectl:    {handle.binaries.kubectl}")
    console.print(f"helm:       {handle.binaries.helm}")
    console.print()
    console.print(f"export KUBECONFIG={handle.kubeconfig}", markup=False, highlight=False)
    console.print(f'export PATH="{handle.binaries.bin_dir}:$PATH"', markup=False, highlight=False)
    console.print()


def _real_node(workdir: Path | None, bins: Binaries, timeout: float) -> None:
    """``llmchat dev cluster --real-node``: the control plane and a real node until Ctrl-C."""
    from llmchat_tools.devcluster.images import ImageError, build_project_images
    from llmchat_tools.devcluster.node import NODE_NAME, NodeError, RealNodeCluster

    try:
        with console.status("building or checking the images (tools/image/build.sh)..."):
            images = build_project_images()
    except ImageError as exc:
        err.print(f"[bold red]no images:[/] {exc}")
        raise typer.Exit(1) from exc
    node = RealNodeCluster(workdir, binaries=bins, images=images, startup_timeout=timeout)
    try:
        with console.status("starting the control plane, containerd, kubelet, kube-proxy..."):
            handle = node.start()
        console.print(
            f"[bold green]cluster ready[/] ({handle.kubernetes_version}): node "
            f"[bold]{NODE_NAME}[/] is a real kubelet; images: " + ", ".join(i.ref for i in images)
        )
        console.print(f"kubeconfig: [bold]{handle.kubeconfig}[/]")
        console.print(f"logs:       {node.log_dir} (and {handle.log_dir})")
        console.print()
        console.print(
            f"export KUBECONFIG={handle.kubeconfig}", markup=False, highlight=False, soft_wrap=True
        )
        console.print(
            f'export PATH="{handle.binaries.bin_dir}:$PATH"',
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        console.print(
            "helm install llm-in-the-chat helm/llm-in-the-chat -n llmchat --create-namespace "
            "--set redis.persistence.enabled=false "
            "--set redis.image.repository=llm-in-the-chat-redis --set redis.image.tag=bookworm",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        console.print(
            "kubectl -n llmchat apply -f k8s/samples/llamacpp/lobby.yaml && "
            "kubectl -n llmchat get rooms",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        console.print(
            "kubectl -n llmchat port-forward service/llm-in-the-chat-chat-service 8000:8000",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        console.print()
        console.print(
            "[dim]The node lives in its own network namespace (no route out of this machine); "
            "kubectl reaches it through 127.0.0.1. Ctrl-C stops it and restores the host.[/]"
        )
        while True:
            time.sleep(1.0)
            exited = node.exited_components()
            if exited:
                for name, code in exited:
                    err.print(f"[bold red]{name} exited with code {code}[/]")
                raise typer.Exit(1)
    except (ClusterStartError, NodeError, OSError) as exc:
        err.print(f"[bold red]the real node failed:[/] {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        problems = node.stop(check=False)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for problem in problems:
            err.print(f"[bold red]{problem}[/]")
    if problems:
        raise typer.Exit(1)
    console.print("[green]cluster stopped; the host is as it was[/]")
