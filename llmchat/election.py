"""Who should lead a room: the best healthy model by rating, with hysteresis (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llmchat.ratings import INITIAL


@dataclass(frozen=True)
class ElectionPolicy:
    #: A challenger must beat the leader's rating by this much to take over (no flapping).
    hysteresis: float = 30.0
    #: A healthy leader keeps the lease at least this long before handing it over.
    min_tenure_s: float = 10.0


def nominee(models: list[str], ratings: Mapping[str, float], healthy: set[str]) -> str | None:
    """The healthy model with the best rating; ties go to the room's model order."""
    best: str | None = None
    for m in models:
        if m not in healthy:
            continue
        if best is None or ratings.get(m, INITIAL) > ratings.get(best, INITIAL):
            best = m
    return best


def should_hand_over(
    *,
    leader: str,
    models: list[str],
    ratings: Mapping[str, float],
    healthy: set[str],
    tenure_s: float,
    policy: ElectionPolicy,
) -> str | None:
    """The model a healthy leader should hand the lease to, if any (else None)."""
    best = nominee(models, ratings, healthy - {leader})
    if best is None or tenure_s < policy.min_tenure_s:
        return None
    if ratings.get(best, INITIAL) > ratings.get(leader, INITIAL) + policy.hysteresis:
        return best
    return None


def may_acquire(
    *,
    me: str,
    models: list[str],
    ratings: Mapping[str, float],
    healthy: set[str],
    excluded: set[str],
) -> bool:
    """A free lease goes to the nominee among healthy models (a lapsed holder is excluded)."""
    return nominee(models, ratings, healthy - excluded) == me
