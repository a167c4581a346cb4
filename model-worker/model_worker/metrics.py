"""model-worker metrics (the AI response latency, queue time and generation outcomes)."""

from prometheus_client import Counter, Gauge, Histogram

from llmchat.metrics import LATENCY_BUCKETS, name

QUEUE_TIME = Histogram(
    name("queue_time_seconds"),
    "Job queued to picked up by a worker.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
FIRST_TOKEN = Histogram(
    name("ai_first_token_seconds"),
    "Job picked up to first token.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
RESPONSE = Histogram(
    name("ai_response_seconds"),
    "Job picked up to the answer stored.",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
GENERATIONS = Counter(name("generations_total"), "Generations by outcome.", ["model", "outcome"])
JOBS = Counter(name("jobs_total"), "Jobs taken, by how they were handled.", ["model", "how"])
TOKENS = Counter(name("generated_tokens_total"), "Text deltas generated.", ["model"])
BACKEND_UP = Gauge(name("backend_up"), "1 while the model backend answers.", ["model"])
STALLED = Gauge(
    name("worker_stalled"),
    "1 while the worker's job loop is stuck (it then gives up leadership and is not ready).",
    ["model"],
)

ELECTIONS = Counter(
    name("elections_total"), "Leaders elected, by room and reason.", ["room", "reason"]
)
ELECTION_TIME = Histogram(
    name("leader_election_seconds"),
    "Leader lost (lease expired or released) to a new leader.",
    ["room"],
    buckets=LATENCY_BUCKETS,
)
LEADER = Gauge(name("room_leader"), "1 for the model that leads the room.", ["room", "model"])
FENCED = Counter(
    name("fenced_answers_total"), "Answers refused because leadership moved on.", ["model"]
)
