"""`llmchat bench judge`: do the judge's verdicts mean something?

Every pair of FILE (a question, a clearly better answer and a clearly worse one) is judged as a
round of two answers is judged in a room: the judge the room would use (``LLMCHAT_JUDGE_*``
settings, the same scorer, method, passes and retries), through the same function
(``judge.service.score_round``), with the conversation rendered as the judge renders a room's.
The verdict's scores are turned into a win, a loss or a tie exactly as the ratings do
(``llmchat.ratings.outcome``).

Printed, per method:

* **accuracy**: pairs where the better answer won (a tie is not a win); **ties**;
* **swap consistency**: for methods that see several answers at once (``rubric``,
  ``pairwise``), the share of pairs whose verdict was the same in both orders; 1.0 for methods
  that grade one answer at a time (no order to be swayed by);
* **length trap**: accuracy on the pairs whose worse answer is at least twice as long as the
  better one; **long good**: on those whose better answer is at least twice as long;
* **kappa**: Cohen's kappa between the verdicts (first answer better / second better / tie) and
  the labels, the better answer placed first or second by a fixed coin per pair;
* **seconds per verdict**: mean wall time of one verdict on two answers (load average shown),
  once the judge is warm: one untimed verdict first (the first pair, the first method) pages the
  model's weights in; its time is reported apart (``warm-up``), as a judge pays it once at start.

FILE is JSON Lines, one pair a line: ``{"q": "...", "good": "...", "bad": "..."}`` with optional
``"context"`` (earlier messages, one a line, ``name: text``; a line without a name is the user's),
``"reference"`` (a correct answer the room supplies: the ``reference`` method then uses it instead
of writing its own) and ``"tag"`` (a category for the per-category table). Blank lines are
skipped. The committed sets, in ``data/`` beside this module: ``judge_pairs.jsonl`` (tuned on) and
``judge_pairs_heldout.jsonl`` (written at the same time, never tuned on).

The last line printed is ``accuracy <a> length_trap <l> swap_consistency <s>
seconds_per_verdict <t>`` for the first method run (the room's, unless ``--method`` says).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmchat.models import Entry, EntryKind
from llmchat.ratings import outcome
from llmchat_tools.bench._common import (
    console,
    default_out,
    fmt,
    md_table,
    progress,
    show_table,
    write_results,
)

if TYPE_CHECKING:
    from judge.methods import Judgement
    from judge.scorers import Scorer
    from judge.settings import JudgeSettings

DATA = Path(__file__).with_name("data")
DEFAULT_PAIRS = DATA / "judge_pairs.jsonl"
FIELDS = {"q", "good", "bad", "context", "reference", "tag"}
_SPEAKER = re.compile(r"^([A-Za-z0-9][\w.-]{0,39}):\s?(.*)$")


class PairFileError(ValueError):
    """The pairs file is not in the documented format (the message says where and why)."""


@dataclass(frozen=True)
class Pair:
    q: str
    good: str
    bad: str
    context: str = ""
    reference: str | None = None
    tag: str = ""

    @property
    def length_trap(self) -> bool:
        """The worse answer is at least twice as long as the better one."""
        return len(self.bad) >= 2 * len(self.good)

    @property
    def long_good(self) -> bool:
        """The better answer is at least twice as long as the worse one."""
        return len(self.good) >= 2 * len(self.bad)


def _text(obj: dict[str, Any], key: str, where: str, *, required: bool) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise PairFileError(f"{where}: {key!r} must be a non-empty string")
    return value.strip()


def load_pairs(path: Path) -> list[Pair]:
    """The pairs of a JSON Lines file (see the module's docstring for the format)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PairFileError(f"{path}: cannot read: {exc}") from exc
    out: list[Pair] = []
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise PairFileError(f"{where}: not JSON: {exc.msg} (column {exc.colno})") from exc
        if not isinstance(obj, dict):
            raise PairFileError(f"{where}: expected an object with 'q', 'good' and 'bad'")
        if extra := sorted(set(obj) - FIELDS):
            allowed = ", ".join(sorted(FIELDS))
            raise PairFileError(
                f"{where}: unknown field(s) {', '.join(extra)} (allowed: {allowed})"
            )
        q, good, bad = (_text(obj, k, where, required=True) or "" for k in ("q", "good", "bad"))
        if good == bad:
            raise PairFileError(f"{where}: 'good' and 'bad' are the same answer")
        out.append(
            Pair(
                q=q,
                good=good,
                bad=bad,
                context=_text(obj, "context", where, required=False) or "",
                reference=_text(obj, "reference", where, required=False),
                tag=_text(obj, "tag", where, required=False) or "",
            )
        )
    if not out:
        raise PairFileError(f"{path}: no pairs")
    return out


def conversation(pair: Pair) -> list[Entry]:
    """The pair's conversation as room entries: its context lines, then the question."""
    rows: list[tuple[str, str]] = []
    for line in pair.context.splitlines():
        if not line.strip():
            continue
        m = _SPEAKER.match(line.strip())
        rows.append((m.group(1), m.group(2)) if m else ("user", line.strip()))
    rows.append(("user", pair.q))
    return [
        Entry(id=f"{i + 1}-0", room="bench", author=a, text=t, kind=EntryKind.HUMAN)
        for i, (a, t) in enumerate(rows)
    ]


def good_first(index: int, pair: Pair) -> bool:
    """The fixed coin that places the better answer first or second (for the kappa)."""
    return hashlib.sha256(f"{index}:{pair.q}".encode()).digest()[0] % 2 == 0


@dataclass
class PairResult:
    index: int
    tag: str
    good_first: bool
    #: "good", "bad" or "tie": which answer the verdict preferred
    verdict: str
    #: the verdict of each pass (order), for methods that see several answers at once
    pass_verdicts: list[str]
    score_good: float
    score_bad: float
    seconds: float
    length_trap: bool
    long_good: bool
    reference: str | None = None
    error: str | None = None


def pass_verdicts(passes_good: Sequence[float], passes_bad: Sequence[float]) -> list[str]:
    """Each pass's own preference, as the ratings would read that pass alone."""
    names = {1.0: "good", 0.0: "bad", 0.5: "tie"}
    return [names[outcome(g, b)] for g, b in zip(passes_good, passes_bad, strict=True)]


@dataclass
class Summary:
    method: str
    pairs: int
    right: int
    ties: int
    wrong: int
    failed: int
    accuracy: float
    swap_consistency: float
    length_trap: float
    length_trap_n: int
    long_good: float
    long_good_n: int
    kappa: float
    seconds_per_verdict: float
    by_tag: dict[str, tuple[int, int]] = field(default_factory=dict)


def cohen_kappa(labels: Sequence[str], verdicts: Sequence[str]) -> float:
    """Cohen's kappa of two raters over the same items (categories are whatever occurs)."""
    n = len(labels)
    if n == 0:
        return float("nan")
    observed = sum(a == b for a, b in zip(labels, verdicts, strict=True)) / n
    cats = set(labels) | set(verdicts)
    expected = sum((labels.count(c) / n) * (verdicts.count(c) / n) for c in cats)
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)


def summarise(method: str, results: Sequence[PairResult], *, sees_several: bool) -> Summary:
    n = len(results)
    right = sum(r.verdict == "good" for r in results)
    ties = sum(r.verdict == "tie" for r in results)
    failed = sum(r.error is not None for r in results)
    traps = [r for r in results if r.length_trap]
    longs = [r for r in results if r.long_good]
    if sees_several:
        judged = [r for r in results if len(r.pass_verdicts) > 1]
        consistent = sum(len(set(r.pass_verdicts)) == 1 for r in judged)
        swap = consistent / len(judged) if judged else float("nan")
    else:
        swap = 1.0

    def side(r: PairResult, who: str) -> str:
        if who == "tie":
            return "tie"
        return "first" if (who == "good") == r.good_first else "second"

    kappa = cohen_kappa([side(r, "good") for r in results], [side(r, r.verdict) for r in results])
    by_tag: dict[str, tuple[int, int]] = {}
    for r in results:
        won, total = by_tag.get(r.tag or "-", (0, 0))
        by_tag[r.tag or "-"] = (won + (r.verdict == "good"), total + 1)
    timed = [r.seconds for r in results if r.error is None]
    return Summary(
        method=method,
        pairs=n,
        right=right,
        ties=ties,
        wrong=n - right - ties - failed,
        failed=failed,
        accuracy=right / n if n else float("nan"),
        swap_consistency=swap,
        length_trap=sum(r.verdict == "good" for r in traps) / len(traps) if traps else 1.0,
        length_trap_n=len(traps),
        long_good=sum(r.verdict == "good" for r in longs) / len(longs) if longs else 1.0,
        long_good_n=len(longs),
        kappa=kappa,
        seconds_per_verdict=sum(timed) / len(timed) if timed else float("nan"),
        by_tag=by_tag,
    )


def last_line(s: Summary) -> str:
    return (
        f"accuracy {s.accuracy:.3f} length_trap {s.length_trap:.3f} "
        f"swap_consistency {s.swap_consistency:.3f} seconds_per_verdict {s.seconds_per_verdict:.2f}"
    )


# -- running the judge ---------------------------------------------------------------------


async def judge_pair(
    scorer: Scorer, settings: JudgeSettings, method: str, index: int, pair: Pair
) -> PairResult:
    """One pair judged as a room's round of two answers is judged."""
    from judge.methods import JudgeFailedError  # noqa: PLC0415
    from judge.rubric import Candidate  # noqa: PLC0415 - the judge is only needed here
    from judge.scorers import ScorerError  # noqa: PLC0415
    from judge.service import render_context, score_round  # noqa: PLC0415

    first = good_first(index, pair)
    texts = {"good": pair.good, "bad": pair.bad}
    order = ["good", "bad"] if first else ["bad", "good"]
    candidates = [Candidate(who, texts[who]) for who in order]
    started = time.monotonic()
    common: dict[str, Any] = {
        "index": index,
        "tag": pair.tag,
        "good_first": first,
        "length_trap": pair.length_trap,
        "long_good": pair.long_good,
    }
    try:
        judgement: Judgement = await score_round(
            scorer,
            method=method,
            context=render_context(conversation(pair)),
            candidates=candidates,
            seed=f"bench-{index}",
            passes=settings.judge_passes,
            retries=settings.judge_retries,
            reference=pair.reference,
        )
    except (JudgeFailedError, ScorerError) as exc:
        return PairResult(
            **common,
            verdict="tie",
            pass_verdicts=[],
            score_good=float("nan"),
            score_bad=float("nan"),
            seconds=time.monotonic() - started,
            error=str(exc),
        )
    seconds = time.monotonic() - started
    by = {s.model: s for s in judgement.scored}
    good, bad = by["good"], by["bad"]
    verdict = {1.0: "good", 0.0: "bad", 0.5: "tie"}[outcome(good.score, bad.score)]
    return PairResult(
        **common,
        verdict=verdict,
        pass_verdicts=pass_verdicts(good.passes, bad.passes),
        score_good=good.score,
        score_bad=bad.score,
        seconds=seconds,
        reference=judgement.reference,
    )


async def run_method(
    scorer: Scorer, settings: JudgeSettings, method: str, pairs: Sequence[Pair]
) -> list[PairResult]:
    results = []
    with progress() as bar:
        task = bar.add_task(method, total=len(pairs))
        for i, pair in enumerate(pairs):
            results.append(await judge_pair(scorer, settings, method, i, pair))
            bar.advance(task)
    return results


def report(
    summaries: list[Summary],
    results: dict[str, list[PairResult]],
    pairs_path: Path,
    judge_name: str,
    warmup_s: float = float("nan"),
) -> tuple[str, dict[str, Any]]:
    headers = [
        "method",
        "accuracy",
        "ties",
        "wrong",
        "failed",
        "swap consistency",
        "length trap",
        "long good",
        "kappa",
        "s / verdict",
    ]
    rows = [
        [
            s.method,
            f"{fmt(s.accuracy, 3)} ({s.right}/{s.pairs})",
            str(s.ties),
            str(s.wrong),
            str(s.failed),
            fmt(s.swap_consistency, 3),
            f"{fmt(s.length_trap, 3)} ({s.length_trap_n})",
            f"{fmt(s.long_good, 3)} ({s.long_good_n})",
            fmt(s.kappa, 3),
            fmt(s.seconds_per_verdict, 2),
        ]
        for s in summaries
    ]
    title = f"judge {judge_name}: {summaries[0].pairs} pairs from {pairs_path}"
    show_table(title, headers, rows)
    tags = sorted({t for s in summaries for t in s.by_tag})
    tag_rows = [
        [s.method] + [f"{s.by_tag.get(t, (0, 0))[0]}/{s.by_tag.get(t, (0, 0))[1]}" for t in tags]
        for s in summaries
    ]
    show_table("right, by category", ["method", *tags], tag_rows)
    load = os.getloadavg()[0]
    md = (
        f"Judge `{judge_name}`, {summaries[0].pairs} pairs from `{pairs_path}`; "
        f"load average {load:.1f} at the end; warm-up (the first, untimed verdict) "
        f"{warmup_s:.1f} s.\n\n"
        + md_table(headers, rows)
        + "\n\nRight, by category:\n\n"
        + md_table(["method", *tags], tag_rows)
        + f"\n\n`{last_line(summaries[0])}`\n"
    )
    data = {
        "pairs": str(pairs_path),
        "judge": judge_name,
        "warmup_s": warmup_s,
        "summaries": [asdict(s) for s in summaries],
        "results": {m: [asdict(r) for r in rs] for m, rs in results.items()},
    }
    return md, data


def run_suite(
    pairs_path: Path,
    methods: list[str] | None,
    judge_model: str | None,
    limit: int | None,
    out: Path,
) -> Summary:
    from judge.main import scorer_from_settings  # noqa: PLC0415 - heavy (the model)
    from judge.methods import METHODS  # noqa: PLC0415
    from judge.settings import JudgeSettings  # noqa: PLC0415

    pairs = load_pairs(pairs_path)[: limit or None]
    overrides: dict[str, Any] = {"judge_model": judge_model} if judge_model else {}
    settings = JudgeSettings(**overrides)
    chosen = methods or [settings.method]
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise typer.BadParameter(
            f"unknown method(s) {unknown}; known: {', '.join(METHODS)}", param_hint="--method"
        )
    scorer = scorer_from_settings(settings)
    results: dict[str, list[PairResult]] = {}
    summaries = []
    try:
        started = time.monotonic()
        asyncio.run(judge_pair(scorer, settings, chosen[0], 0, pairs[0]))  # warm-up, untimed
        warmup_s = time.monotonic() - started
        for method in chosen:
            results[method] = asyncio.run(run_method(scorer, settings, method, pairs))
            summaries.append(
                summarise(method, results[method], sees_several=METHODS[method].sees_several)
            )
    finally:
        asyncio.run(scorer.close())
    md, data = report(summaries, results, pairs_path, scorer.name, warmup_s)
    console.print(f"warm-up (the first, untimed verdict): {warmup_s:.1f} s")
    write_results(out, "judge", md, data)
    return summaries[0]


def register(app: typer.Typer) -> None:
    @app.command("judge")
    def judge(
        pairs: Annotated[
            Path,
            typer.Option("--pairs", help='JSON Lines: {"q": ..., "good": ..., "bad": ...}.'),
        ] = DEFAULT_PAIRS,
        method: Annotated[
            list[str] | None,
            typer.Option(help="Judging method(s) to compare (repeatable; default: the room's)."),
        ] = None,
        judge_model: Annotated[
            str | None, typer.Option(help="The judge model (default: the room's judge).")
        ] = None,
        limit: Annotated[int | None, typer.Option(help="Only the first N pairs.")] = None,
        out: Annotated[Path | None, typer.Option(help="Results folder.")] = None,
    ) -> None:
        """The room's judge on pairs of a better and a worse answer."""
        console.rule("llmchat bench judge")
        try:
            summary = run_suite(pairs, method, judge_model, limit, out or default_out("judge"))
        except PairFileError as exc:
            raise typer.BadParameter(str(exc), param_hint="--pairs") from exc
        typer.echo(last_line(summary))
