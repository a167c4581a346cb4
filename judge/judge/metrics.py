"""Judge metrics."""

from prometheus_client import Counter, Gauge, Histogram

from llmchat.metrics import LATENCY_BUCKETS, name

JUDGE_LATENCY = Histogram(
    name("judge_latency_seconds"),
    "Round complete to verdict stored.",
    ["room"],
    buckets=LATENCY_BUCKETS,
)
PARSE_FAILURES = Counter(
    name("judge_parse_failures_total"), "Judge outputs that were not a valid verdict.", ["room"]
)
VERDICTS = Counter(name("judge_verdicts_total"), "Rounds judged, by outcome.", ["room", "outcome"])
RATE_LIMITED = Counter(
    name("judge_rate_limited_total"),
    "Rounds deferred because the room's judge-call limit was reached (each counted once).",
    ["room"],
)
DEFERRED = Gauge(
    name("judge_deferred_rounds"), "Rounds waiting for the room's judge-call limit.", ["room"]
)
SCORES = Histogram(
    name("judge_score"),
    "Scores given, per model.",
    ["room", "model"],
    buckets=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
)
POSITION_SHIFT = Histogram(
    name("judge_position_shift"),
    "Score change when a candidate's position is swapped.",
    ["room"],
    buckets=(0, 0.5, 1, 2, 3, 5, 9),
)
ACTIVE = Gauge(name("judge_active"), "1 while this judge replica holds the judge lease.")
RATING = Gauge(name("model_rating"), "The model's rating in the room.", ["room", "model"])
RATING_BOUND = Gauge(
    name("model_rating_bound"),
    "Half-width of the model's rating interval (rating points): how sure the rating is.",
    ["room", "model"],
)
