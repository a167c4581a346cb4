"""Blocking Kubernetes calls of the operator (the handlers run them in threads).

Children are written with server-side apply (field manager ``llmchat-operator``, forced), so a
reconcile sends the whole desired object and the API server keeps what is unchanged. Leases
are only created: their holders own the spec.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from chatroom_operator.naming import MANAGER
from chatroom_operator.spec import GROUP, PLURAL, VERSION

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
NOT_FOUND = 404
CONFLICT = 409


def new_api_client() -> k8s_client.ApiClient:
    """In a pod: its ServiceAccount; elsewhere: ``KUBECONFIG`` (or ``~/.kube/config``)."""
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        return k8s_client.ApiClient()
    except k8s_config.ConfigException:
        api: k8s_client.ApiClient = k8s_config.new_client_from_config()  # type: ignore[no-untyped-call]
        return api


class Kube:
    """The handful of calls the reconciler makes."""

    def __init__(self, api: k8s_client.ApiClient) -> None:
        self.api = api
        self.apps = k8s_client.AppsV1Api(api)
        self.core = k8s_client.CoreV1Api(api)
        self.leases = k8s_client.CoordinationV1Api(api)
        self.custom = k8s_client.CustomObjectsApi(api)

    def apply(self, obj: dict[str, Any]) -> None:
        """Server-side apply one Deployment or ConfigMap."""
        meta = obj["metadata"]
        kwargs: dict[str, Any] = {
            "field_manager": MANAGER,
            "force": True,
            "_content_type": APPLY,
        }
        if obj["kind"] == "Deployment":
            self.apps.patch_namespaced_deployment(meta["name"], meta["namespace"], obj, **kwargs)
        elif obj["kind"] == "ConfigMap":
            self.core.patch_namespaced_config_map(meta["name"], meta["namespace"], obj, **kwargs)
        else:  # pragma: no cover - a programming error
            raise ValueError(f"cannot apply a {obj['kind']}")

    def ensure_lease(self, obj: dict[str, Any]) -> bool:
        """Create the Lease unless it exists; True when created."""
        try:
            self.leases.create_namespaced_lease(obj["metadata"]["namespace"], obj)  # type: ignore[arg-type]
        except ApiException as exc:
            if exc.status == CONFLICT:
                return False
            raise
        return True

    def delete_deployment(self, namespace: str, name: str) -> bool:
        try:
            self.apps.delete_namespaced_deployment(name, namespace, propagation_policy="Background")
        except ApiException as exc:
            if exc.status == NOT_FOUND:
                return False
            raise
        return True

    def secret_keys(self, namespace: str, name: str) -> set[str] | None:
        """The keys of a Secret (never its values); None when it does not exist."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == NOT_FOUND:
                return None
            raise
        return set((secret.data or {}).keys()) | set((secret.string_data or {}).keys())

    def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event about ``obj`` (what ``kubectl describe`` and ``get events`` show)."""
        meta = obj.get("metadata") or {}
        now = dt.datetime.now(dt.UTC)
        namespace = meta.get("namespace") or "default"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "generateName": f"{meta.get('name', 'object')}.",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": MANAGER},
            "reportingComponent": MANAGER,
            "reportingInstance": MANAGER,
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": 1,
        }
        self.core.create_namespaced_event(namespace, event)  # type: ignore[arg-type]

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
            field_manager=MANAGER,
            _content_type=MERGE,
        )
