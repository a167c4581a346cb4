"""Write the scenario results: a Markdown table, CSV, results.json and PNG plots."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # the object API: no pyplot state, renders with Agg

from llmchat_tools.bench.scenarios_faults import MODEL_CRASH, REPLICA_CRASH, STORM
from llmchat_tools.bench.scenarios_measures import Summary
from llmchat_tools.bench.scenarios_results import ScenarioResult
from llmchat_tools.bench.scenarios_runner import RunConfig

#: (key, column title, unit scale, decimals)
COLUMNS: tuple[tuple[str, str, float, int], ...] = (
    ("message_latency_s", "message latency ms", 1000.0, 0),
    ("ai_first_token_s", "AI first token s", 1.0, 2),
    ("ai_complete_s", "AI complete s", 1.0, 2),
    ("queue_s", "queue time s", 1.0, 2),
    ("recovery_s", "recovery s", 1.0, 2),
    ("leader_election_s", "leader election s", 1.0, 2),
)
FAULT_COLOURS = {REPLICA_CRASH: "tab:red", STORM: "tab:orange", MODEL_CRASH: "tab:purple"}


def _num(value: float | None, scale: float, decimals: int) -> str:
    return "-" if value is None else f"{value * scale:.{decimals}f}"


def cell(summary: Summary | None, scale: float = 1.0, decimals: int = 2) -> str:
    """``p50 / p95 / p99`` (a dash when nothing was measured)."""
    if summary is None or summary.n == 0:
        return "-"
    return " / ".join(_num(v, scale, decimals) for v in (summary.p50, summary.p95, summary.p99))


def markdown(results: Sequence[ScenarioResult], cfg: RunConfig, command: str) -> str:
    head = [
        "#",
        "scenario",
        "messages",
        "lost",
        "duplicated",
        "order kept",
        *(title for _, title, _, _ in COLUMNS),
    ]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i < 2 else "---:" for i in range(len(head))) + "|",
    ]
    for r in results:
        i = r.integrity
        row = [
            str(r.scenario.number),
            r.scenario.name,
            str(i.sent),
            str(i.lost),
            str(i.duplicated),
            f"{i.clients_in_order}/{i.clients}",
            *(cell(r.measures.get(k), scale, d) for k, _, scale, d in COLUMNS),
        ]
        lines.append("| " + " | ".join(row) + " |")
    table = "\n".join(lines)
    return (
        "# The eight scenarios\n\n"
        f"Produced by `{command}`.\n\n"
        f"{cfg.users} users on WebSockets through the one address, {cfg.rate:g} messages/s, "
        f"{cfg.cycles} fault cycle(s) per scenario ({cfg.pre_s:g} s steady load, the faults, "
        f"{cfg.post_s:g} s more), storms of {cfg.storm} messages, answers of at most "
        f"{cfg.max_tokens} tokens. Each cell is p50 / p95 / p99. *Messages* counts the people's "
        "messages; *lost* and *duplicated* compare them with the stored timeline; *order kept* "
        "counts the clients whose whole sequence equals the stored timeline.\n\n" + table + "\n\n"
        "- **message latency**: sent -> delivered to every client in the room.\n"
        "- **AI first token / complete**: job picked up -> first token / answer stored "
        "(from each answer).\n"
        "- **queue time**: job queued -> picked up by a worker.\n"
        "- **recovery**: first fault of a cycle -> service restored with nothing missing "
        "(replica crash: every client that was on it reconnected and caught up, posts in flight "
        "acknowledged; storm: every storm message delivered to every client; model crash: a "
        "leader with a newer term answered).\n"
        "- **leader election**: the leader's worker killed -> the new leader elected "
        "(the lease's `since` from `GET /api/v1/rooms/{room}/leader`).\n"
    )


def _flat(r: ScenarioResult) -> dict[str, Any]:
    i = r.integrity
    row: dict[str, Any] = {
        "scenario": r.scenario.number,
        "name": r.scenario.name,
        "replica_crash": r.scenario.replica_crash,
        "storm": r.scenario.storm,
        "model_crash": r.scenario.model_crash,
        "messages": i.sent,
        "acked": i.acked,
        "stored_entries": i.stored,
        "lost": i.lost,
        "duplicated": i.duplicated,
        "unacked": i.unacked,
        "clients_in_order": i.clients_in_order,
        "clients": i.clients,
        "reconnects": r.reconnects,
        "duplicates_dropped_by_clients": r.duplicates_dropped,
        "ok": r.ok,
    }
    keys = [k for k, _, _, _ in COLUMNS] + [
        "recovery_replica_crash_s",
        "recovery_storm_s",
        "recovery_model_crash_s",
    ]
    for key in keys:
        s = r.measures.get(key)
        for stat in ("n", "p50", "p95", "p99", "max"):
            value = getattr(s, stat) if s else None
            row[f"{key}_{stat}"] = round(value, 4) if isinstance(value, float) else value
    return row


def write_csv(results: Sequence[ScenarioResult], path: Path) -> None:
    rows = [_flat(r) for r in results]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["scenario"])
        writer.writeheader()
        writer.writerows(rows)


def to_json(results: Sequence[ScenarioResult], cfg: RunConfig, command: str) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for r in results:
        out.append(
            {
                "scenario": r.scenario.number,
                "name": r.scenario.name,
                "faults": r.scenario.faults,
                "room": r.scenario.room,
                "ok": r.ok,
                "started_at": r.started_at,
                "duration_s": round(r.ended_at - r.started_at, 2),
                "integrity": {k: v for k, v in asdict(r.integrity).items() if k != "problems"},
                "measures": {k: v.as_dict() for k, v in r.measures.items()},
                "fault_events": [
                    {
                        "kind": f.kind,
                        "cycle": f.cycle,
                        "at_s": round(f.at - r.started_at, 3),
                        "target": f.target,
                        "recovery_s": f.recovery_s,
                        "election_s": f.election_s,
                        "detail": f.detail,
                    }
                    for f in r.faults
                ],
                "reconnects": r.reconnects,
                "duplicates_dropped_by_clients": r.duplicates_dropped,
                "restarts": r.restarts,
                "notes": r.notes,
            }
        )
    return {"command": command, "config": asdict(cfg), "scenarios": out}


def plot(r: ScenarioResult, path: Path) -> None:
    """Message latency over time with the faults marked (and the AI answers' complete time)."""
    fig = Figure(figsize=(9, 4.4), dpi=110)
    ax = fig.subplots()
    for storm, label, colour in (
        (False, "message latency", "tab:blue"),
        (True, "storm", "tab:cyan"),
    ):
        xs = [t for t, _, s in r.latency_series if s == storm]
        ys = [lat * 1000 for _, lat, s in r.latency_series if s == storm]
        if xs:
            ax.scatter(xs, ys, s=8, label=label, color=colour)
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the scenario started (message sent)")
    ax.set_ylabel("sent -> delivered to every client (ms)")
    extra_handles: list[Any] = []
    if r.answer_series:
        ax2 = ax.twinx()
        xs = [t for t, _ in r.answer_series]
        ys = [v for _, v in r.answer_series]
        extra_handles = ax2.plot(xs, ys, "g.", ms=5, label="AI answer complete (s, right)")
        ax2.set_ylabel("AI answer complete (s)", color="tab:green")
    seen: set[str] = set()
    for f in r.faults:
        x = f.at - r.started_at
        colour = FAULT_COLOURS.get(f.kind, "k")
        ax.axvline(x, color=colour, ls="--", lw=1.2, label=None if f.kind in seen else f.kind)
        seen.add(f.kind)
        if f.recovery_s is not None:
            ax.axvspan(x, x + f.recovery_s, color=colour, alpha=0.12)
    ax.set_title(f"scenario {r.scenario.number}: {r.scenario.name} (shaded: until recovered)")
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(
        handles=[*handles, *extra_handles],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=6,
        fontsize=7,
        frameon=False,
    )
    fig.tight_layout()
    fig.savefig(path)


def plot_overview(results: Sequence[ScenarioResult], path: Path) -> None:
    """p99 message latency and the worst recovery per scenario, side by side."""
    names = [f"{r.scenario.number}" for r in results]
    lat = [(r.measures["message_latency_s"].p99 or 0.0) * 1000 for r in results]
    rec = [r.measures["recovery_s"].max or 0.0 for r in results]
    fig = Figure(figsize=(10, 3.8), dpi=110)
    a1, a2 = fig.subplots(1, 2)
    a1.bar(names, lat, color="tab:blue")
    a1.set_title("p99 message latency (ms)")
    a1.set_xlabel("scenario")
    a2.bar(names, rec, color="tab:red")
    a2.set_title("worst recovery (s)")
    a2.set_xlabel("scenario")
    fig.suptitle(" · ".join(f"{r.scenario.number}={r.scenario.slug}" for r in results), size=7)
    fig.tight_layout()
    fig.savefig(path)


def write_all(
    results: Sequence[ScenarioResult], cfg: RunConfig, out: Path, command: str
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.md", out / "results.csv", out / "results.json"]
    written[0].write_text(markdown(results, cfg, command))
    write_csv(results, written[1])
    written[2].write_text(json.dumps(to_json(results, cfg, command), indent=2) + "\n")
    for r in results:
        path = out / f"scenario-{r.scenario.number}-{r.scenario.slug}.png"
        plot(r, path)
        written.append(path)
    if results:
        plot_overview(results, out / "overview.png")
        written.append(out / "overview.png")
    return written
