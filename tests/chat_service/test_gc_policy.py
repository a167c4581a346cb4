"""The garbage-collection policy: survivors are frozen; piled-up cycles are collected once."""

from __future__ import annotations

import gc
from typing import Any

from chat_service.gc_policy import GcPolicy
from prometheus_client import REGISTRY


class Node:
    def __init__(self) -> None:
        self.other: Any = self  # a reference cycle: only the cyclic collector frees it


def _pauses(generation: str) -> float:
    value = REGISTRY.get_sample_value("llmchat_gc_pause_seconds_count", {"generation": generation})
    return value or 0.0


async def test_survivors_are_frozen_and_piled_up_cycles_are_collected() -> None:
    open_connections = [1]
    policy = GcPolicy(lambda: open_connections[0], floor=20_000, interval=3600)
    policy.start()
    try:
        after_start = gc.get_freeze_count()
        assert after_start > 0 and policy.whole_collections == 1
        pauses_before = _pauses("2")

        open_connections[0] = 1_000
        alive = [Node() for _ in range(30_000)]  # long-lived, like 1,000 connections' state
        gc.collect()
        assert _pauses("2") > pauses_before
        policy.step()  # they survived a full collection: frozen, not walked again
        assert policy.freezes == 1
        assert gc.get_freeze_count() >= after_start + 30_000
        policy.step()  # 30 objects per connection: a normal amount, nothing to collect
        assert policy.whole_collections == 1

        del alive  # the connections closed: their cycles are garbage, but frozen
        open_connections[0] = 1
        frozen_with_garbage = gc.get_freeze_count()
        policy.step()  # per connection, the frozen objects grew: collect everything once
        assert policy.whole_collections == 2
        assert gc.get_freeze_count() < frozen_with_garbage - 25_000
    finally:
        await policy.stop()
    assert gc.get_freeze_count() == 0
    assert policy._on_gc not in gc.callbacks
