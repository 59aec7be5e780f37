"""Where a Deployment's rollout stands, read from its status in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rollout:
    want: int  # spec.replicas
    available: int
    updated: int
    total: int  # every pod of the Deployment, old ones included
    current: bool  # the controller has seen the latest spec
    pod_annotations: dict[str, str]

    @property
    def complete(self) -> bool:
        """The latest pod template runs on every replica and no old pod is left."""
        return (self.current and self.updated == self.want and self.available >= self.want
                and self.total == self.want)


def rollout(deployment: dict[str, Any]) -> Rollout:
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    return Rollout(
        want=int(spec.get("replicas", 1)),
        available=int(status.get("availableReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        total=int(status.get("replicas") or 0),
        current=int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0),
        pod_annotations=((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {},
    )
