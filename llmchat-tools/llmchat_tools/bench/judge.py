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
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

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
from llmchat_tools.bench.judge_pairs import (
    DEFAULT_PAIRS,
    Pair,
    PairFileError,
    conversation,
    good_first,
    load_pairs,
)
from llmchat_tools.bench.judge_scores import (
    PairResult,
    Summary,
    last_line,
    pass_verdicts,
    summarise,
)

if TYPE_CHECKING:
    from judge.methods import Judgement
    from judge.scorers import Scorer
    from judge.settings import JudgeSettings

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
