"""The test cluster itself: six real redis-server processes, 3 masters and 3 replicas."""

from __future__ import annotations

import pytest
import redis
from llmchat_tools.redis_cluster import ClusterError, RedisCluster, check_loopback


def test_cluster_is_three_masters_with_a_replica_each(redis_cluster: RedisCluster) -> None:
    masters = redis_cluster.master_nodes()
    assert len(masters) == 3
    assert all(n.url.startswith("redis://127.0.0.1:") for n in redis_cluster.nodes)
    for node in redis_cluster.live_nodes():
        info = node.info_cluster()
        assert info["cluster_state"] == "ok"
        assert info["cluster_known_nodes"] == "6"
    client = redis.RedisCluster.from_url(redis_cluster.url, decode_responses=True)
    try:
        for i in range(30):
            client.set(f"k{{{i}}}", str(i))
        assert sorted(int(client.get(f"k{{{i}}}") or -1) for i in range(30)) == list(range(30))
        spread = {redis_cluster.node_serving(f"k{{{i}}}").port for i in range(30)}
        assert len(spread) == 3  # the keys spread over every master
    finally:
        client.close()


def test_only_loopback_addresses_are_accepted() -> None:
    check_loopback("127.0.0.1")
    with pytest.raises(ClusterError, match=r"127\.0\.0\.0/8"):
        check_loopback("10.0.0.1")
