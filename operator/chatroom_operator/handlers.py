"""Thin kopf handlers around ``chatroom_operator.reconciler.Reconciler``: they register on an
explicit registry (``register``), so the intervals come from the settings and importing this module
has no side effects, and only hand kopf's bodies and indexes to the reconciler.

- create / update (of the spec) / resume: ``Reconciler.full``;
- one operator-wide refresh loop, started and stopped with the operator: ``Reconciler.refresh``
  for every room (no finalizer on the rooms, so a room can be deleted while no operator runs).
"""

from __future__ import annotations

import copy
from typing import Any

import kopf

from chatroom_operator.naming import (
    MANAGED_BY_LABEL,
    MANAGER,
    ROOM_LABEL,
)
from chatroom_operator.reconciler import Reconciler, RoomKey, views
from chatroom_operator.settings import OperatorSettings
from chatroom_operator.spec import GROUP, PLURAL, VERSION
from chatroom_operator.views import DeploymentView, LeaseView


def configure_kopf(settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    """kopf's settings for this operator."""
    # Watch streams can go silent without closing (kopf issues #232, #585, #847): bound
    # them on both sides so kopf re-lists and re-watches instead of waiting forever.
    settings.watching.server_timeout = ours.watch_server_timeout_s  # whole seconds
    settings.watching.client_timeout = ours.watch_client_timeout_s
    settings.watching.connect_timeout = ours.watch_connect_timeout_s
    # standalone: the operator Lease, not kopf's peering, decides who reconciles
    settings.peering.standalone = True
    # only warnings from the logs become Events; the handlers post the rest explicitly
    settings.posting.level = 30
    settings.posting.reporting_component = MANAGER
    settings.persistence.finalizer = "operator.llmchat.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="operator.llmchat.io"
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="operator.llmchat.io", key="last-handled-configuration"
    )
    settings.batching.error_delays = (1, 1, 2, 3, 5, 8, 13)


def register(
    registry: kopf.OperatorRegistry, reconciler: Reconciler, settings: OperatorSettings
) -> None:
    """Put every handler on ``registry``."""

    @kopf.on.startup(id="configure", registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, reconciler.settings)

    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
        return info

    _register_indexes(registry)
    _register_reconciler(registry, reconciler)


def _register_indexes(registry: kopf.OperatorRegistry) -> None:
    """The live views of every room's children and bodies (kopf indexes)."""
    children_only: dict[str, Any] = {
        MANAGED_BY_LABEL: MANAGER,
        ROOM_LABEL: kopf.PRESENT,
    }

    @kopf.index(
        "apps", "v1", "deployments", id="room_deployments", labels=children_only, registry=registry
    )
    def room_deployments(
        *, namespace: str | None, name: str, labels: kopf.Labels, body: kopf.Body, **_: Any
    ) -> dict[RoomKey, DeploymentView]:
        view = DeploymentView.from_body(
            name, body.get("metadata") or {}, body.get("spec") or {}, body.get("status") or {}
        )
        return {(namespace or "", labels[ROOM_LABEL]): view}

    @kopf.index(
        "coordination.k8s.io",
        "v1",
        "leases",
        id="room_leases",
        labels=children_only,
        registry=registry,
    )
    def room_leases(
        *, namespace: str | None, name: str, labels: kopf.Labels, spec: kopf.Spec, **_: Any
    ) -> dict[RoomKey, LeaseView]:
        return {(namespace or "", labels[ROOM_LABEL]): LeaseView.from_spec(name, spec)}

    @kopf.index(GROUP, VERSION, PLURAL, id="room_bodies", registry=registry)
    def room_bodies(
        *, namespace: str | None, name: str, body: kopf.Body, **_: Any
    ) -> dict[RoomKey, Any]:
        return {(namespace or "", name): copy.deepcopy(dict(body))}


def _register_reconciler(registry: kopf.OperatorRegistry, reconciler: Reconciler) -> None:
    """The refresher's start and stop, and the full reconcile of a room."""

    @kopf.on.startup(id="start_refresher", registry=registry)
    async def start_refresher(**kwargs: Any) -> None:
        # The indexes are live views, filled in before the first change handler runs. One
        # operator-wide loop (rather than a kopf timer per room) needs no finalizer on the
        # rooms, so a room can be deleted even while no operator runs.
        reconciler.start_refresher(
            kwargs["room_bodies"], kwargs["room_deployments"], kwargs["room_leases"]
        )

    @kopf.on.cleanup(id="stop_refresher", registry=registry)
    async def stop_refresher(**_: Any) -> None:
        await reconciler.stop_refresher()

    @kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile", registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile", registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, id="reconcile", field="spec", registry=registry)
    async def reconcile(
        *, body: kopf.Body, namespace: str | None, name: str, logger: kopf.Logger, **kwargs: Any
    ) -> None:
        key = (namespace or "", name)
        deployments = views(kwargs["room_deployments"], key)
        await reconciler.full(body, deployments, views(kwargs["room_leases"], key), logger)
