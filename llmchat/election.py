"""Who should lead a room (pure functions).

* A free lease (a new room, or a leader that died) goes to the healthy model with the best
  rating; ties go to the room's model order.
* A healthy leader hands over only to a challenger that is better *with confidence*: the
  challenger's lower bound is above the leader's upper bound (plus ``hysteresis`` rating
  points), after the leader has led ``min_tenure_s``. On equal models the intervals keep
  overlapping, so the leader does not flap; see :mod:`llmchat.ratings` for the bounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llmchat.ratings import Rating


@dataclass(frozen=True)
class ElectionPolicy:
    #: Extra rating points the challenger's lower bound must clear above the leader's upper one.
    hysteresis: float = 0.0
    #: A healthy leader keeps the lease at least this long before handing it over.
    min_tenure_s: float = 10.0


def _rating(ratings: Mapping[str, Rating], model: str) -> Rating:
    return ratings.get(model) or Rating(model=model)


def nominee(models: list[str], ratings: Mapping[str, Rating], healthy: set[str]) -> str | None:
    """The healthy model with the best rating; ties go to the room's model order."""
    best: str | None = None
    for m in models:
        if m not in healthy:
            continue
        if best is None or _rating(ratings, m).rating > _rating(ratings, best).rating:
            best = m
    return best


def confidently_better(challenger: Rating, leader: Rating, margin: float = 0.0) -> bool:
    """The challenger's lower bound is above the leader's upper bound (plus ``margin``)."""
    return challenger.low > leader.high + margin


def should_hand_over(
    *,
    leader: str,
    models: list[str],
    ratings: Mapping[str, Rating],
    healthy: set[str],
    tenure_s: float,
    policy: ElectionPolicy,
) -> str | None:
    """The model a healthy leader should hand the lease to, if any (else None)."""
    if tenure_s < policy.min_tenure_s:
        return None
    current = _rating(ratings, leader)
    best: Rating | None = None
    for m in models:  # the challenger with the highest lower bound (room order breaks ties)
        if m == leader or m not in healthy:
            continue
        r = _rating(ratings, m)
        if best is None or r.low > best.low:
            best = r
    if best is not None and confidently_better(best, current, policy.hysteresis):
        return best.model
    return None


def may_acquire(
    *,
    me: str,
    models: list[str],
    ratings: Mapping[str, Rating],
    healthy: set[str],
    excluded: set[str],
) -> bool:
    """A free lease goes to the nominee among healthy models (a lapsed holder is excluded)."""
    return nominee(models, ratings, healthy - excluded) == me
