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

from llmchat.devcluster import (
    BinariesNotFoundError,
    BuildError,
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
    dev = DevCluster(workdir, binaries=bins, node_taint=taint, startup_timeout=timeout)
    try:
        with console.status(
            "starting etcd, kube-apiserver, controller-manager, scheduler, kwok..."
        ):
            handle = dev.start()
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
        console.print(
            f'export PATH="{handle.binaries.bin_dir}:$PATH"', markup=False, highlight=False
        )
        console.print()
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
