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
