"""Prometheus helpers shared by the services (every metric is prefixed ``llmchat_``)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

#: Buckets for latencies that range from sub-millisecond fan-out to multi-second generations.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

PREFIX = "llmchat_"


def name(metric: str) -> str:
    """The full metric name: ``name("x_seconds")`` -> ``llmchat_x_seconds``."""
    return PREFIX + metric


def render(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The exposition body and its content type, for a ``/metrics`` endpoint."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
