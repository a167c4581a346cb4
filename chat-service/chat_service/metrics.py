"""chat-service metrics."""

from prometheus_client import Counter, Gauge, Histogram

from llmchat.metrics import LATENCY_BUCKETS, name

MESSAGE_LATENCY = Histogram(
    name("message_latency_seconds"),
    "Time from a message being accepted by chat-service to its delivery to a client.",
    buckets=LATENCY_BUCKETS,
)
WS_CONNECTIONS = Gauge(name("websocket_connections"), "Open WebSocket connections.")
MESSAGES = Counter(
    name("messages_total"), "Messages posted, by transport and outcome.", ["transport", "outcome"]
)
DELIVERED = Counter(name("entries_delivered_total"), "Timeline entries pushed to clients.")
LIVE_EVENTS = Counter(name("live_events_delivered_total"), "Ephemeral events pushed to clients.")
REDIS_UP = Gauge(name("redis_up"), "1 while Redis answers, 0 while it does not.")
SLOW_CLIENTS = Counter(
    name("slow_client_disconnects_total"), "Clients disconnected because they could not keep up."
)
FEED_ERRORS = Counter(name("feed_errors_total"), "Redis errors while following a room's timeline.")
AUTH = Counter(name("auth_tokens_total"), "Tokens handed out, by how.", ["how"])
AUTH_FAILURES = Counter(
    name("auth_failures_total"), "Requests refused for their credentials, by reason.", ["reason"]
)
RATE_LIMITED = Counter(
    name("rate_limited_total"), "Actions refused by a rate limit, by scope.", ["scope"]
)
GC_PAUSE = Histogram(
    name("gc_pause_seconds"),
    "Garbage-collection pauses of the process, by generation (the event loop stops meanwhile).",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
GC_FROZEN = Gauge(
    name("gc_frozen_objects"), "Objects moved out of the collector's sight (see gc_policy.py)."
)
