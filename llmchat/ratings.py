"""Per-room ratings: Elo from the judge's scores of each round, kept in Redis.

A round with n candidates counts as n(n-1)/2 pairwise games: the higher average score wins, equal
scores (within ``TIE_MARGIN``) tie. Elo is order-dependent but incremental and easy to read;
it is what chat leaderboards (Chatbot Arena's first board, Open WebUI's arena) show.
"""

from __future__ import annotations

import itertools
from typing import cast

import redis.asyncio as aioredis
from pydantic import BaseModel

from llmchat import keys

INITIAL = 1000.0
K_FACTOR = 24.0
TIE_MARGIN = 0.25


class Rating(BaseModel):
    model: str
    rating: float = INITIAL
    games: int = 0
    wins: int = 0
    losses: int = 0
    ties: int = 0
    rounds: int = 0
    mean_score: float = 0.0


def expected(a: float, b: float) -> float:
    return 1.0 / (1.0 + 10 ** ((b - a) / 400.0))


def update(
    ratings: dict[str, Rating], scores: dict[str, float], k: float = K_FACTOR
) -> dict[str, Rating]:
    """New ratings after one round (pure). Models absent from ``ratings`` start at 1000."""
    out = {m: r.model_copy() for m, r in ratings.items()}
    for m in scores:
        out.setdefault(m, Rating(model=m))
    start = {m: out[m].rating for m in scores}
    for a, b in itertools.combinations(sorted(scores), 2):
        diff = scores[a] - scores[b]
        result = 0.5 if abs(diff) <= TIE_MARGIN else (1.0 if diff > 0 else 0.0)
        delta = k * (result - expected(start[a], start[b]))
        out[a].rating += delta
        out[b].rating -= delta
        for m, res in ((a, result), (b, 1.0 - result)):
            out[m].games += 1
            if res == 0.5:
                out[m].ties += 1
            elif res == 1.0:
                out[m].wins += 1
            else:
                out[m].losses += 1
    for m, s in scores.items():
        rating = out[m]
        rating.mean_score = (rating.mean_score * rating.rounds + s) / (rating.rounds + 1)
        rating.rounds += 1
    return out


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
