"""A Redis Cluster of a test's own, for tests that leave it damaged (a node killed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from llmchat_tools.redis_cluster import RedisCluster

from tests.support.auth import LIVE_REDIS


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A cluster of the test's own: a kill leaves a master without a replica behind."""
    cluster = RedisCluster(base_dir=tmp_path / "cluster")
    cluster.start()
    LIVE_REDIS.append(cluster.url)
    yield cluster
    LIVE_REDIS.remove(LIVE_REDIS[-1])
    cluster.stop()
