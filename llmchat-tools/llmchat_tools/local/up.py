"""`llmchat up`: Redis, chat-service replicas behind one port, model workers (and the judge)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from llmchat.logs import get_logger
from llmchat.models import RoomCreate, RoomMode, RoomModel
from llmchat.redis_conn import UNAVAILABLE_ERRORS, create_redis
from llmchat.rooms import RoomStore
from llmchat_tools.local.credentials import LocalCredentials
from llmchat_tools.local.proxy import Backend, TcpBalancer
from llmchat_tools.local.supervisor import Child, ProcessSpec, Supervisor

log = get_logger(__name__)


@dataclass(frozen=True)
class LocalModel:
    """A model of the local room: its name in the room and how the worker reaches it."""

    name: str
    backend: str = "llamacpp"
    backend_model: str = "smollm2-135m"
    host: str | None = None
    temperature: float = 0.7
    system_prompt: str = ""


#: The default room: two small models of different families, both packaged on PyPI (the judge,
#: a third model, is the judge service's default). Low temperatures: the room answers questions.
DEFAULT_MODELS = (
    LocalModel("smol", backend_model="smollm2-135m", temperature=0.2),
    LocalModel("qwen", backend_model="qwen2.5-coder-0.5b", temperature=0.2),
)


def parse_model(value: str) -> LocalModel:
    """``name=backend:model``, e.g. ``qwen=llamacpp:qwen2.5-coder-0.5b`` or ``l=ollama:llama3``."""
    name, sep, rest = value.partition("=")
    backend, sep2, model = rest.partition(":")
    if (
        not sep
        or not sep2
        or not name
        or backend not in {"llamacpp", "ollama", "gemini"}
        or not model
    ):
        raise ValueError(
            f"invalid --model {value!r}: use NAME=BACKEND:MODEL with BACKEND one of "
            "llamacpp, ollama, gemini (e.g. smol=llamacpp:smollm2-135m)"
        )
    return LocalModel(name=name, backend=backend, backend_model=model)


@dataclass
class UpConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 2
    data_dir: Path = Path(".llmchat")
    redis_url: str | None = None
    redis_port: int = 6380
    room: str = "lobby"
    mode: RoomMode = RoomMode.LEADER
    models: list[LocalModel] = field(default_factory=lambda: list(DEFAULT_MODELS))
    judge: bool = True
    first_port: int = 8101
    #: Where the replicas' proxy sockets go (the balancer passes client addresses there); a
    #: private temporary folder made by ``run_up``. None: the balancer uses their TCP ports.
    socket_dir: Path | None = None

    @property
    def effective_redis_url(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def credentials_file(self) -> Path:
        """The token signing key and the admin credential (mode 0600, kept across runs)."""
        return self.data_dir / "credentials.json"


def worker_env(model: LocalModel, room: str) -> dict[str, str]:
    """The environment that makes a model-worker serve ``model`` in ``room``."""
    env = {
        "LLMCHAT_MODEL_NAME": model.name,
        "LLMCHAT_ROOMS": room,
        "LLMCHAT_BACKEND": model.backend,
        "LLMCHAT_BACKEND_MODEL": model.backend_model,
        "LLMCHAT_TEMPERATURE": str(model.temperature),
    }
    if model.host:
        env["LLMCHAT_BACKEND_HOST"] = model.host
    return env


def redis_spec(cfg: UpConfig) -> ProcessSpec:
    """The local Redis (nothing started or written): on loopback, each write on disk first."""
    data = cfg.data_dir / "redis"
    return ProcessSpec(
        name="redis",
        role="storage",
        url=cfg.effective_redis_url,
        argv=[
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(cfg.redis_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data.resolve()),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--protected-mode",
            "no",
        ],
    )


def plan(
    cfg: UpConfig, python: str = sys.executable, creds: LocalCredentials | None = None
) -> list[ProcessSpec]:
    """The processes of a local run (pure: nothing is started or written). The chat-service
    replicas get ``creds``'s keys; without them the caller must add ``LLMCHAT_TOKEN_SECRET``
    (and ``LLMCHAT_ADMIN_TOKEN``) to their environment."""
    keys = creds.env() if creds is not None else {}
    specs: list[ProcessSpec] = []
    redis_url = cfg.effective_redis_url
    common = {"LLMCHAT_REDIS_URL": redis_url, "LLMCHAT_LOG_FORMAT": "json"}
    if cfg.redis_url is None:
        specs.append(redis_spec(cfg))
    port = cfg.first_port
    for i in range(cfg.replicas):
        specs.append(
            ProcessSpec(
                name=f"chat-service-{i + 1}",
                role="chat-service",
                argv=[python, "-m", "llmchat", "chat-service"],
                env={
                    **common,
                    **keys,
                    "LLMCHAT_PORT": str(port),
                    "LLMCHAT_REPLICA_ID": f"chat-service-{i + 1}",
                    **(
                        {"LLMCHAT_PROXY_SOCKET": str(cfg.socket_dir / f"chat-service-{i + 1}.sock")}
                        if cfg.socket_dir is not None
                        else {}
                    ),
                },
                url=f"http://127.0.0.1:{port}",
                health_url=f"http://127.0.0.1:{port}/readyz",
            )
        )
        port += 1
    for model in cfg.models:
        env = {
            **common,
            **worker_env(model, cfg.room),
            "LLMCHAT_PORT": str(port),
            "LLMCHAT_CONSUMER": f"{model.name}-1",
        }
        specs.append(
            ProcessSpec(
                name=f"worker-{model.name}",
                role="model-worker",
                argv=[python, "-m", "llmchat", "model-worker"],
                env=env,
                url=f"http://127.0.0.1:{port}",
                health_url=f"http://127.0.0.1:{port}/readyz",
            )
        )
        port += 1
    if cfg.judge:
        specs.append(
            ProcessSpec(
                name="judge",
                role="judge",
                argv=[python, "-m", "llmchat", "judge"],
                env={
                    **common,
                    "LLMCHAT_ROOMS": cfg.room,
                    "LLMCHAT_PORT": str(port),
                    "LLMCHAT_CONSUMER": "judge-1",
                },
                url=f"http://127.0.0.1:{port}",
                health_url=f"http://127.0.0.1:{port}/readyz",
            )
        )
    return specs


def balancer_backends(specs: list[ProcessSpec]) -> list[Backend]:
    """Where the balancer sends connections: each replica's proxy socket (with the client's
    address), or its TCP port when it has none."""
    out: list[Backend] = []
    for spec in specs:
        if spec.role != "chat-service":
            continue
        sock = spec.env.get("LLMCHAT_PROXY_SOCKET")
        out.append(Path(sock) if sock else ("127.0.0.1", int(spec.url.rsplit(":", 1)[1])))
    return out


def room_spec(cfg: UpConfig) -> RoomCreate:
    return RoomCreate(
        name=cfg.room,
        title="Local room",
        mode=cfg.mode,
        models=[RoomModel(name=m.name, system_prompt=m.system_prompt) for m in cfg.models],
    )


async def probe_ollama(host: str = "http://127.0.0.1:11434") -> list[str]:
    """Model tags of an Ollama answering at ``host`` (empty when none answers)."""
    try:
        async with httpx.AsyncClient(timeout=0.5) as http:
            r = await http.get(host + "/api/tags")
            r.raise_for_status()
            return [m["name"] for m in r.json().get("models", []) if isinstance(m, dict)]
    except (httpx.HTTPError, ValueError, KeyError):
        return []


async def _wait_redis(url: str, timeout: float = 20.0) -> None:
    client = create_redis(url)
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    await client.ping()
                    return
                except UNAVAILABLE_ERRORS:
                    await asyncio.sleep(0.1)
    finally:
        await client.aclose()


async def _health(children: list[Child]) -> dict[str, str]:
    out: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=0.5) as http:
        for child in children:
            if not child.spec.health_url:
                out[child.spec.name] = "-"
                continue
            try:
                r = await http.get(child.spec.health_url)
                out[child.spec.name] = (
                    "ready" if r.status_code == 200 else f"not ready ({r.status_code})"
                )
            except httpx.HTTPError:
                out[child.spec.name] = "not ready"
    return out


def status_table(cfg: UpConfig, sup: Supervisor, health: dict[str, str]) -> Table:
    table = Table(
        title=f"LLM-In-The-Chat — http://{cfg.host}:{cfg.port}  room '{cfg.room}'  (Ctrl-C stops)",
        caption=f"Admin credential (keep it secret): {cfg.credentials_file} → admin_token",
    )
    for col in ("process", "role", "pid", "state", "health", "restarts", "address"):
        table.add_column(col)
    for child in sup.children:
        h = health.get(child.spec.name, "")
        colour = "green" if h in ("ready", "-") and child.state == "running" else "yellow"
        table.add_row(
            child.spec.name,
            child.spec.role,
            str(child.proc.pid if child.proc else "-"),
            f"[{colour}]{child.state}[/]",
            h,
            str(child.restarts),
            child.spec.url,
        )
    return table


async def run_up(cfg: UpConfig, *, show_status: bool = True) -> None:
    (cfg.data_dir / "redis").mkdir(parents=True, exist_ok=True)
    tags = await probe_ollama()
    if tags and not any(m.backend == "ollama" for m in cfg.models):
        cfg.models.append(
            LocalModel(
                "ollama", backend="ollama", backend_model=tags[0], host="http://127.0.0.1:11434"
            )
        )
    creds = LocalCredentials.load_or_create(cfg.credentials_file)
    if cfg.socket_dir is None:  # private (0700), and short enough for a Unix socket's path
        cfg.socket_dir = Path(tempfile.mkdtemp(prefix="llmchat-up-"))
    specs = plan(cfg, creds=creds)
    sup = Supervisor(specs, cfg.data_dir / "logs")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    balancer = TcpBalancer(cfg.host, cfg.port, balancer_backends(specs))
    console = Console()
    await sup.start()
    try:
        await _wait_redis(cfg.effective_redis_url)
        redis = create_redis(cfg.effective_redis_url)
        try:
            await RoomStore(redis).upsert(room_spec(cfg))
        finally:
            await redis.aclose()
        await balancer.start()
        if show_status:
            with Live(status_table(cfg, sup, {}), console=console, refresh_per_second=2) as live:
                while not stop.is_set():
                    live.update(status_table(cfg, sup, await _health(sup.children)))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 1.0)
        else:
            log.info(
                "up_ready",
                url=f"http://{cfg.host}:{cfg.port}",
                room=cfg.room,
                processes=[s.name for s in specs],
                admin_credential_file=str(cfg.credentials_file),
            )
            await stop.wait()
    finally:
        console.print("stopping…")
        await balancer.close()
        await sup.stop()
        shutil.rmtree(cfg.socket_dir, ignore_errors=True)
        console.print(f"stopped. Logs in {cfg.data_dir / 'logs'}")
