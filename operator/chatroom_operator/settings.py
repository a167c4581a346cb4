"""Operator settings: ``LLMCHAT_`` environment variables, validated once at start-up."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from llmchat import __version__
from llmchat.settings import LeaseSettings, split_list

#: Where Kubernetes mounts the pod's namespace.
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
SECRET_NAME = r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)?$"
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"


def _own_namespace() -> str:
    """The pod's namespace in a cluster, ``default`` outside one."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


class OperatorSettings(LeaseSettings):
    """The operator's settings; Redis URL and log settings are validated by the base."""

    # -- what the children run ---------------------------------------------------------------
    #: The image of every model-worker and judge pod (a room's spec.image overrides it).
    image: str = Field(default=f"llm-in-the-chat:{__version__}", min_length=1)
    #: Their image pull policy (a room's spec.imagePullPolicy overrides it).
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    #: The Redis the children use (the room timeline, queues and ratings).
    redis_url: str = Field(default="redis://redis:6379/0")
    #: A Secret, in each room's namespace, with the children's Redis URL (one with a password):
    #: they read it by secretKeyRef, so it is never written into a Deployment. '' - they get
    #: ``redis_url`` as a plain value.
    child_redis_secret: str = Field(default="", pattern=SECRET_NAME)
    #: The key of that URL in the Secret.
    child_redis_secret_key: str = Field(default="redis-url", pattern=SECRET_KEY)
    #: The Ollama server of models with backend ollama and no backendHost.
    ollama_host: str = Field(default="http://ollama:11434")
    #: The port of the children's /healthz, /readyz and /metrics (their probes use it).
    child_port: int = Field(default=8080, ge=1, le=65535)
    #: The ServiceAccount of the children's pods ('' - the namespace's default).
    child_service_account: str = Field(default="")

    # -- what the operator watches -----------------------------------------------------------
    #: Namespaces whose ChatRooms are reconciled (comma-separated); empty - the whole cluster.
    namespaces: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: How often each room's status is refreshed from its Deployments and Leases.
    status_interval_s: float = Field(default=1.0, gt=0, le=300)
    #: How often a Degraded room is fully reconciled again (e.g. to find a Secret created later).
    recheck_interval_s: float = Field(default=5.0, gt=0, le=3600)

    # -- active/standby ----------------------------------------------------------------------
    #: The operator's own Lease: only its holder reconciles.
    lease_name: str = Field(default="llmchat-operator", pattern=DNS_LABEL)
    #: The namespace of that Lease (default: the pod's namespace, else ``default``).
    lease_namespace: str = Field(default_factory=_own_namespace, pattern=DNS_LABEL)
    #: The Lease's duration (Kubernetes Leases count whole seconds); a crashed active
    #: operator is replaced after about this long.
    lease_duration_s: int = Field(default=2, ge=1, le=60)
    #: How often the active operator renews its Lease.
    lease_renew_s: float = Field(default=0.5, gt=0, le=30)
    #: How often a standby tries to acquire the Lease.
    lease_retry_s: float = Field(default=0.25, gt=0, le=30)
    #: This replica's identity in the Lease (default: host name and pid).
    identity: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")

    # -- kopf's watch streams ----------------------------------------------------------------
    # Watch streams can go silent without being closed (kopf issues #232, #585, #847): the
    # server-side timeout makes the API server end each watch, the client-side timeout ends a
    # stream that hangs anyway, and kopf re-lists and re-watches.
    #: Asks the API server to end each watch request after this long.
    watch_server_timeout_s: int = Field(default=60, gt=0, le=3600)
    #: Ends a watch request locally after this long, whatever the server does.
    watch_client_timeout_s: float = Field(default=90.0, gt=0, le=3600)
    #: Gives up connecting to the API server after this long.
    watch_connect_timeout_s: float = Field(default=10.0, gt=0, le=600)

    # -- health, metrics, logs ---------------------------------------------------------------
    #: Address of /healthz, /readyz and /metrics.
    host: str = Field(default="127.0.0.1")
    #: Their port; 0 - off.
    port: int = Field(default=8080, ge=0, le=65535)

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_list(value)

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, value: list[str]) -> list[str]:
        bad = [n for n in value if not re.match(DNS_LABEL, n)]
        if bad:
            raise ValueError(f"invalid namespace names: {', '.join(bad)}")
        return value

    @model_validator(mode="after")
    def _timings(self) -> OperatorSettings:
        if not self.watch_server_timeout_s < self.watch_client_timeout_s:
            raise ValueError("watch_server_timeout_s must be shorter than watch_client_timeout_s")
        return self
