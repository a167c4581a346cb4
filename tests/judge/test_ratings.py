"""The ratings math (pure): Bradley-Terry fit, its uncertainty, ties, provisional models."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence

import pytest

from llmchat.ratings import (
    CONFIDENCE_Z,
    ELO_PER_LOGIT,
    INITIAL,
    PROVISIONAL_ROUNDS,
    TIE_MARGIN,
    Rating,
    Record,
    fit,
    inverse,
    outcome,
    refit,
    solve,
    update,
)


def play(rounds: Sequence[Mapping[str, float]]) -> dict[str, Rating]:
    ratings: dict[str, Rating] = {}
    for scores in rounds:
        ratings = update(ratings, scores)
    return ratings


def test_outcome_counts_close_scores_as_a_tie() -> None:
    assert outcome(8, 3) == 1.0
    assert outcome(3, 8) == 0.0
    assert outcome(7, 7 + TIE_MARGIN) == 0.5
    assert outcome(7, 7 + 2 * TIE_MARGIN) == 0.0


def test_a_new_model_is_unrated_and_provisional() -> None:
    r = Rating(model="ada")
    assert r.rating == INITIAL and r.provisional
    assert r.low < INITIAL < r.high


def test_the_winner_rates_higher_and_the_records_add_up() -> None:
    ratings = play([{"ada": 8, "bob": 3}] * 3 + [{"ada": 5, "bob": 5}])
    ada, bob = ratings["ada"], ratings["bob"]
    assert ada.rating > INITIAL > bob.rating
    assert math.isclose(ada.rating - INITIAL, INITIAL - bob.rating)  # centred on the mean
    assert (ada.wins, ada.losses, ada.ties, ada.games, ada.rounds) == (3, 0, 1, 4, 4)
    assert (bob.wins, bob.losses, bob.ties) == (0, 3, 1)
    assert ada.versus["bob"] == Record(wins=3, ties=1) and bob.versus["ada"] == Record(
        losses=3, ties=1
    )
    assert math.isclose(ada.mean_score, (8 * 3 + 5) / 4)


def test_ratings_do_not_depend_on_the_order_of_rounds() -> None:
    rounds = [
        {"ada": 8, "bob": 3},
        {"ada": 2, "bob": 9},
        {"ada": 7, "bob": 4},
        {"ada": 6, "bob": 6},
    ]
    a = play(rounds)
    b = play(list(reversed(rounds)))
    for m in ("ada", "bob"):
        assert math.isclose(a[m].rating, b[m].rating, abs_tol=1e-6)
        assert math.isclose(a[m].high, b[m].high, abs_tol=1e-6)


def test_the_interval_narrows_with_games() -> None:
    widths = []
    for n in (2, 8, 32):
        r = play([{"ada": 8, "bob": 3}, {"ada": 3, "bob": 8}] * (n // 2))["ada"]
        widths.append(r.high - r.low)
        assert math.isclose(r.rating, INITIAL, abs_tol=1e-6)  # even record: even ratings
    assert widths[0] > widths[1] > widths[2] > 0


def test_the_fit_matches_the_closed_form_for_two_models() -> None:
    """Two models, w wins of a to l of b, prior N(0, 1): the MAP θ = θa = -θb solves
    w - n·p = θ with p = sigmoid(2θ), n = w + l; the Laplace covariance is the inverse of
    [[1 + h, -h], [-h, 1 + h]] with h = n·p(1 - p), so Var(θa - θb) = 2 / (1 + 2h) and θa's
    standard error about the mean is half the difference's. Only a's record is given: the fit
    mirrors it for b."""
    w, lost = 9, 3
    theta, se = fit(["a", "b"], {"a": {"b": Record(wins=w, losses=lost)}})
    t = theta[0]
    p = 1 / (1 + math.exp(-2 * t))
    assert math.isclose(w - (w + lost) * p, t, abs_tol=1e-8)
    assert math.isclose(theta[0], -theta[1])
    # Laplace covariance of (θa, θb): inverse of [[1 + h, -h], [-h, 1 + h]], h = n·p(1-p)
    h = (w + lost) * p * (1 - p)
    var_diff = 2 / (1 + 2 * h)  # Var(θa - θb)
    assert math.isclose(se[0], math.sqrt(var_diff) / 2, rel_tol=1e-9)


def test_a_room_with_more_models_ranks_them_by_strength() -> None:
    rng = random.Random(3)
    strength = {"ada": 1.5, "bob": 0.5, "cyd": -1.0}
    rounds = []
    for _ in range(60):
        scores = {m: 5 + s + rng.gauss(0, 1.5) for m, s in strength.items()}
        rounds.append(scores)
    ratings = play(rounds)
    ranked = sorted(ratings, key=lambda m: -ratings[m].rating)
    assert ranked == ["ada", "bob", "cyd"]
    assert math.isclose(sum(r.rating for r in ratings.values()) / 3, INITIAL, abs_tol=1e-6)
    for r in ratings.values():
        half = (r.high - r.low) / 2
        assert math.isclose(r.rating - r.low, half) and half > 0


def test_provisional_until_enough_rounds() -> None:
    ratings: dict[str, Rating] = {}
    for i in range(PROVISIONAL_ROUNDS):
        assert all(r.provisional for r in ratings.values())
        ratings = update(ratings, {"ada": 6, "bob": 5})
        if i < PROVISIONAL_ROUNDS - 1:
            assert ratings["ada"].provisional
    assert not ratings["ada"].provisional and not ratings["bob"].provisional
    ratings = update(ratings, {"ada": 6, "bob": 5, "new": 7})
    assert ratings["new"].provisional and not ratings["ada"].provisional


def test_bounds_are_z_standard_errors_on_the_elo_scale() -> None:
    ratings = play([{"ada": 9, "bob": 2}] * 5)
    theta, se = fit(["ada", "bob"], {m: r.versus for m, r in ratings.items()})
    ada = ratings["ada"]
    assert math.isclose(ada.rating, INITIAL + ELO_PER_LOGIT * theta[0])
    assert math.isclose(ada.high - ada.rating, CONFIDENCE_Z * ELO_PER_LOGIT * se[0])


def test_old_elo_records_load_and_refit_without_games() -> None:
    old = Rating.model_validate_json('{"model": "ada", "rating": 1100.0, "games": 4, "wins": 4}')
    new = refit({"ada": old, "bob": Rating(model="bob")})
    assert new["ada"].rating == INITIAL and new["ada"].wins == 4  # no per-opponent record yet


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_solve_and_inverse(n: int) -> None:
    rng = random.Random(n)
    a = [[rng.uniform(-1, 1) + (5 if i == j else 0) for j in range(n)] for i in range(n)]
    x = [rng.uniform(-2, 2) for _ in range(n)]
    b = [sum(a[i][j] * x[j] for j in range(n)) for i in range(n)]
    got = solve(a, b)
    assert all(math.isclose(g, w, abs_tol=1e-9) for g, w in zip(got, x, strict=True))
    inv = inverse(a)
    for i, j in itertools.product(range(n), range(n)):
        prod = sum(a[i][k] * inv[k][j] for k in range(n))
        assert math.isclose(prod, 1.0 if i == j else 0.0, abs_tol=1e-9)
