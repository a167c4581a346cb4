"""Per-room ratings that know how sure they are: a Bradley-Terry model fitted to every judged
game, kept in Redis.

A round with n candidates counts as n(n-1)/2 games: the higher score wins when it leads by more
than ``TIE_MARGIN``, else the game is a tie (half a win each). Each model's record against each
opponent is stored; after every round the ratings are refitted from all the records, so they do
not depend on the order of the rounds (Elo does).

The model: P(a beats b) = 1 / (1 + exp(-(θa - θb))), with a Gaussian prior θ ~ N(0, PRIOR_SD²)
that keeps a model with few games near the middle (the maximum a posteriori fit, by Newton's
method). The uncertainty is the curvature of that fit (the Laplace approximation): each model's
standard error is taken relative to the room's mean, because only differences are identified.
Ratings are shown on the Elo scale (1000 = the room's average; 400 points = 10:1 odds), with
``low``/``high`` = rating -+ ``CONFIDENCE_Z`` standard errors: the bounds the election compares
(a challenger takes over only when its ``low`` is above the leader's ``high``).

A model is *provisional* until it has ``PROVISIONAL_ROUNDS`` judged rounds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import cast

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from llmchat import keys

INITIAL = 1000.0
#: Elo points per logit of the Bradley-Terry model (400 points = 10:1 odds).
ELO_PER_LOGIT = 400.0 / math.log(10.0)
#: Prior standard deviation of a model's strength, in logits (≈ 174 Elo points).
PRIOR_SD = 1.0
#: Half-width of the shown interval, in standard errors. For two models the intervals stop
#: overlapping when the difference is 2·z/√2 ≈ 1.41 standard errors of the difference away from
#: 0 (about 92 % one-sided confidence) — chosen by `llmchat bench election` (see the README).
CONFIDENCE_Z = 1.0
#: Judged rounds before a model's rating is no longer provisional.
PROVISIONAL_ROUNDS = 5
#: Scores (1-10) closer than this are a tie.
TIE_MARGIN = 0.25


class Record(BaseModel):
    """One model's games against one opponent."""

    wins: int = Field(default=0, ge=0)
    losses: int = Field(default=0, ge=0)
    ties: int = Field(default=0, ge=0)

    @property
    def games(self) -> int:
        return self.wins + self.losses + self.ties


class Rating(BaseModel):
    model: str
    rating: float = Field(default=INITIAL, description="Elo-scale strength (1000 = room mean).")
    low: float = Field(
        default=INITIAL - CONFIDENCE_Z * PRIOR_SD * ELO_PER_LOGIT,
        description="Lower bound of the rating's confidence interval.",
    )
    high: float = Field(
        default=INITIAL + CONFIDENCE_Z * PRIOR_SD * ELO_PER_LOGIT,
        description="Upper bound of the rating's confidence interval.",
    )
    provisional: bool = Field(
        default=True, description=f"Fewer than {PROVISIONAL_ROUNDS} judged rounds so far."
    )
    games: int = 0
    wins: int = 0
    losses: int = 0
    ties: int = 0
    rounds: int = 0
    mean_score: float = 0.0
    versus: dict[str, Record] = Field(
        default_factory=dict, description="Games against each opponent."
    )


def outcome(score_a: float, score_b: float, margin: float = TIE_MARGIN) -> float:
    """1 when ``a`` wins, 0 when it loses, 0.5 for a tie (scores within ``margin``)."""
    diff = score_a - score_b
    if abs(diff) <= margin:
        return 0.5
    return 1.0 if diff > 0 else 0.0


def update(ratings: Mapping[str, Rating], scores: Mapping[str, float]) -> dict[str, Rating]:
    """New ratings after one round (pure). Models absent from ``ratings`` start unrated."""
    out = {m: r.model_copy(deep=True) for m, r in ratings.items()}
    for m in scores:
        out.setdefault(m, Rating(model=m))
    for a, b in itertools.combinations(sorted(scores), 2):
        result = outcome(scores[a], scores[b])
        for me, them, res in ((a, b, result), (b, a, 1.0 - result)):
            rec = out[me].versus.setdefault(them, Record())
            rating = out[me]
            rating.games += 1
            if res == 0.5:
                rec.ties += 1
                rating.ties += 1
            elif res == 1.0:
                rec.wins += 1
                rating.wins += 1
            else:
                rec.losses += 1
                rating.losses += 1
    for m, s in scores.items():
        rating = out[m]
        rating.mean_score = (rating.mean_score * rating.rounds + s) / (rating.rounds + 1)
        rating.rounds += 1
    return refit(out)


def refit(ratings: Mapping[str, Rating]) -> dict[str, Rating]:
    """Ratings with ``rating``/``low``/``high``/``provisional`` fitted to their records (pure)."""
    models = sorted(ratings)
    theta, se = fit(models, {m: r.versus for m, r in ratings.items()})
    out = {}
    for i, m in enumerate(models):
        r = ratings[m].model_copy(deep=True)
        r.rating = INITIAL + ELO_PER_LOGIT * theta[i]
        half = CONFIDENCE_Z * ELO_PER_LOGIT * se[i]
        r.low, r.high = r.rating - half, r.rating + half
        r.provisional = r.rounds < PROVISIONAL_ROUNDS
        out[m] = r
    return out


def fit(
    models: Sequence[str], versus: Mapping[str, Mapping[str, Record]], iterations: int = 50
) -> tuple[list[float], list[float]]:
    """Bradley-Terry strengths (logits, centred on the mean) and their standard errors.

    Ties count as half a win for each side. Hand-rolled (Newton's method on the log-posterior,
    a dense solve) because rooms have a handful of models and the services need no numeric
    library for that.
    """
    n = len(models)
    # wins[i][j]: i's wins over j, ties counted as half a win for each side; each pair's games
    # are read from one side's record (both sides keep one), or mirrored from the other's
    wins = [[0.0] * n for _ in range(n)]
    for i, j in itertools.combinations(range(n), 2):
        a, b = models[i], models[j]
        rec = versus.get(a, {}).get(b)
        if rec is None and (theirs := versus.get(b, {}).get(a)) is not None:
            rec = Record(wins=theirs.losses, losses=theirs.wins, ties=theirs.ties)
        if rec is not None:
            wins[i][j] = rec.wins + rec.ties / 2
            wins[j][i] = rec.losses + rec.ties / 2
    prior = 1.0 / PRIOR_SD**2
    theta = [0.0] * n
    hessian: list[list[float]] = []
    for _ in range(iterations):
        grad = [-prior * t for t in theta]
        hessian = [[0.0] * n for _ in range(n)]
        for i in range(n):
            hessian[i][i] = prior
            for j in range(n):
                games = wins[i][j] + wins[j][i]
                if i == j or games == 0:
                    continue
                p = 1.0 / (1.0 + math.exp(theta[j] - theta[i]))
                grad[i] += wins[i][j] - games * p
                hessian[i][i] += games * p * (1 - p)
                hessian[i][j] -= games * p * (1 - p)
        step = solve(hessian, grad)  # hessian is minus the log-posterior's Hessian
        theta = [t + s for t, s in zip(theta, step, strict=True)]
        if max((abs(s) for s in step), default=0.0) < 1e-10:
            break
    cov = inverse(hessian) if n else []
    mean = sum(theta) / n if n else 0.0
    # variance of θi minus the room mean: (e_i - 1/n)ᵀ Σ (e_i - 1/n)
    total = sum(sum(row) for row in cov)
    se = []
    for i in range(n):
        row = sum(cov[i])
        var = cov[i][i] - 2 * row / n + total / n**2
        se.append(math.sqrt(max(var, 0.0)))
    return [t - mean for t in theta], se


def solve(a: Sequence[Sequence[float]], b: Sequence[float]) -> list[float]:
    """x with a·x = b (Gaussian elimination with partial pivoting; a is small and regular)."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, n):
            f = m[r][col] / m[col][col]
            for c in range(col, n + 1):
                m[r][c] -= f * m[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - sum(m[r][c] * x[c] for c in range(r + 1, n))) / m[r][r]
    return x


def inverse(a: Sequence[Sequence[float]]) -> list[list[float]]:
    n = len(a)
    columns = [solve(a, [1.0 if i == j else 0.0 for i in range(n)]) for j in range(n)]
    return [[columns[j][i] for j in range(n)] for i in range(n)]


class RatingStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def all(self, room: str) -> dict[str, Rating]:
        raw = cast(dict[str, str], await self._redis.hgetall(keys.ratings(room)))
        return {m: Rating.model_validate_json(v) for m, v in raw.items()}

    async def apply(
        self, room: str, scores: dict[str, float], round_id: str | None = None
    ) -> tuple[dict[str, Rating], bool]:
        """Fold one round into the room's ratings (optimistic transaction: WATCH/MULTI).

        With ``round_id`` the round counts once, however often it is applied (a judge that
        retries a round it already scored, or two judges racing): returns the ratings and
        whether this call changed them.
        """
        key = keys.ratings(room)
        rated = keys.rated_rounds(room)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key, rated)
                    raw = cast(dict[str, str], await pipe.hgetall(key))
                    current = {m: Rating.model_validate_json(v) for m, v in raw.items()}
                    if round_id is not None and await pipe.sismember(rated, round_id):
                        await pipe.reset()  # type: ignore[no-untyped-call]
                        return current, False
                    new = update(current, scores)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(key, mapping={m: r.model_dump_json() for m, r in new.items()})
                    if round_id is not None:
                        pipe.sadd(rated, round_id)
                    await pipe.execute()
                    return new, True
                except aioredis.WatchError:
                    continue
