"""Active/standby: only the Lease holder reconciles; the standby takes over a killed one."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.operator.conftest import OperatorProcess, Rooms, room
from tests.support.k8s import Tool, wait_for

pytestmark = pytest.mark.k8s


def _holder(kubectl: Tool, ns: str) -> str | None:
    lease = kubectl.json("get", "lease", "llmchat-operator", "-n", ns)
    holder: str | None = lease["spec"].get("holderIdentity")
    return holder


def test_standby_takes_over_a_killed_operator(
    operator_factory: Callable[..., OperatorProcess],
    rooms: Rooms,
    kubectl: Tool,
    k8s_namespace: str,
) -> None:
    ns = k8s_namespace
    first = operator_factory("first")
    wait_for(lambda: first.role() == "active", "the first operator to lead", timeout=30)
    second = operator_factory("second")
    assert _holder(kubectl, ns) == first.identity
    rooms.apply(room("before", "qwen"))
    rooms.wait_phase("before", "Ready")
    # the standby does not reconcile
    time.sleep(1.0)
    assert second.role() == "standby"
    assert not any("reconcile" in str(e.get("event", "")) for e in second.log_events())

    killed = time.monotonic()
    first.kill()  # SIGKILL: no release, the Lease has to expire
    rooms.apply(room("during", "qwen", "smol"))
    wait_for(lambda: second.role() == "active", "the standby to take over", timeout=30)
    took_over = time.monotonic() - killed
    rooms.wait_phase("during", "Ready", timeout=60)
    converged = time.monotonic() - killed
    print(
        f"\nfailover: standby active {took_over:.2f} s after SIGKILL of the active operator; "
        f"the room applied meanwhile Ready {converged:.2f} s after the kill"
    )
    assert _holder(kubectl, ns) == second.identity
    lease = kubectl.json("get", "lease", "llmchat-operator", "-n", ns)
    assert lease["spec"]["leaseTransitions"] == 2
    assert took_over < 10
    # the new active operator also keeps the old rooms
    assert rooms.status("before")["phase"] == "Ready"

    # a graceful stop releases the Lease at once: a new standby takes over without waiting
    third = operator_factory("third")
    stopped = time.monotonic()
    assert second.stop() == 0
    wait_for(lambda: third.role() == "active", "the third operator to take over", timeout=30)
    print(f"handover after SIGTERM: {time.monotonic() - stopped:.2f} s")
    rooms.apply(room("after", "qwen"))
    rooms.wait_phase("after", "Ready")
