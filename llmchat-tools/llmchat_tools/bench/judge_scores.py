"""The judge bench's figures, without I/O: each pair's result, and per method the accuracy,
ties, swap consistency, length trap, Cohen's kappa and seconds per verdict."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llmchat.ratings import outcome

if TYPE_CHECKING:
    pass


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
