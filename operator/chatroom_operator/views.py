"""What the operator's indexes keep of a room's children: a Deployment's readiness and a Lease's
holder, as frozen views (pure; built from the bodies kopf hands over)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DeploymentView:
    """What the status needs from a child Deployment (kept in the operator's index)."""

    name: str
    owner_uid: str | None
    replicas: int
    ready_replicas: int
    updated_replicas: int
    status_replicas: int
    generation: int
    observed_generation: int

    @classmethod
    def from_body(
        cls, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any], status: Mapping[str, Any]
    ) -> DeploymentView:
        owners = [o for o in meta.get("ownerReferences") or [] if o.get("controller")]
        return cls(
            name=name,
            owner_uid=owners[0].get("uid") if owners else None,
            replicas=int(spec.get("replicas", 1)),
            ready_replicas=int(status.get("readyReplicas") or 0),
            updated_replicas=int(status.get("updatedReplicas") or 0),
            status_replicas=int(status.get("replicas") or 0),
            generation=int(meta.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
        )

    def ready_for(self, desired: int) -> bool:
        """Rolled out: the desired replicas, all updated and ready, no old ones left."""
        return (
            self.replicas == desired
            and self.observed_generation >= self.generation
            and self.updated_replicas >= desired
            and self.ready_replicas >= desired
            and self.status_replicas == desired
        )


@dataclass(frozen=True)
class LeaseView:
    """A room Lease: who holds it, in which term, until when."""

    name: str
    holder: str | None
    term: int
    renewed_at: dt.datetime | None
    duration_s: int

    @classmethod
    def from_spec(cls, name: str, spec: Mapping[str, Any]) -> LeaseView:
        renewed = spec.get("renewTime")
        return cls(
            name=name,
            holder=spec.get("holderIdentity") or None,
            term=int(spec.get("leaseTransitions") or 0),
            renewed_at=_parse_time(renewed) if isinstance(renewed, str) else None,
            duration_s=int(spec.get("leaseDurationSeconds") or 0),
        )

    def live_holder(self, now: dt.datetime) -> str | None:
        if self.holder is None or self.renewed_at is None:
            return None
        if now >= self.renewed_at + dt.timedelta(seconds=self.duration_s):
            return None
        return self.holder


def _parse_time(value: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def format_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- problems ----------------------------------------------------------------------------------
