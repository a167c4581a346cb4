"""The operator's Prometheus metrics (prefix ``llmchat_``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from llmchat.metrics import LATENCY_BUCKETS, name

RECONCILE_SECONDS = Histogram(
    name("operator_reconcile_duration_seconds"),
    "Time to reconcile one ChatRoom (kind: full = children and status, status = status only).",
    ["kind"],
    buckets=LATENCY_BUCKETS,
)
RECONCILE_ERRORS = Counter(
    name("operator_reconcile_errors_total"),
    "Reconciles that failed (they are retried), by error type.",
    ["error"],
)
ROOMS = Gauge(
    name("operator_rooms"),
    "ChatRooms this operator reconciles, by phase.",
    ["phase"],
)
ACTIVE = Gauge(
    name("operator_active"),
    "1 while this replica holds the operator Lease and reconciles, 0 on standby.",
)
LEASE_TERM = Gauge(
    name("operator_lease_term"),
    "The term of the operator Lease this replica holds (0 on standby).",
)
CHILDREN_CHANGED = Counter(
    name("operator_children_changed_total"),
    "Child objects created or deleted, by kind and action.",
    ["kind", "action"],
)
