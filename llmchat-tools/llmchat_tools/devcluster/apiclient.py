"""Talking to the dev cluster's control plane from the host: a minimal apiserver client, the
components' health probes and self-contained kubeconfigs (all on 127.0.0.1)."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmchat_tools.devcluster.certs import CertPair


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class ApiClient:
    """A minimal HTTPS client for the apiserver (admin client certificate, verified CA)."""

    def __init__(self, port: int, ca: Path, client: CertPair, *, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        self._ctx = ssl.create_default_context(cafile=str(ca))
        self._ctx.load_cert_chain(str(client.cert), str(client.key))

    def request(self, method: str, path: str, body: Any | None = None) -> ApiResponse:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self._ctx, timeout=self.timeout
        )
        try:
            payload = json.dumps(body).encode() if body is not None else None
            headers = {"Accept": "application/json"}
            if payload is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            return ApiResponse(resp.status, resp.read())
        finally:
            conn.close()

    def get(self, path: str) -> ApiResponse:
        return self.request("GET", path)


def probe_https_unverified(port: int, path: str, timeout: float = 3.0) -> int:
    """Status code of GET https://127.0.0.1:port/path without verifying the server cert
    (kube-controller-manager and kube-scheduler serve self-signed health endpoints)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def probe_http(port: int, path: str, timeout: float = 3.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path, *, server: str, ca: Path, client: CertPair, user: str, name: str = "llmchat-dev"
) -> Path:
    """A self-contained kubeconfig (certificates embedded)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.cert),
                    "client-key-data": _b64(client.key),
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
