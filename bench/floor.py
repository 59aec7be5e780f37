"""`make bench-floor`: the shape's floor beside our operator, same control plane, same run (kwok node).

Issue 16's two open goals (apply -> Ready p50 <= 2.5 s; 50 created at once all Ready <= 60 s) are measured
twice: once with this product's operator, and once with the least an operator of its shape can do for a new
tenant — the real ansible-operator running a role (bench/floor/) of one in-process step that reads the
Deployment and writes Ready once it serves, and kubernetes.core.k8s applying the Deployment and its Service.
Same binaries, same settings (2 workers, our ansible.cfg and venv), same kind of watch (a cluster-scoped
custom resource owning a Deployment and a Service in the operator namespace). What the floor takes, no
work of ours can remove; what ours takes above it is ours. Figures only; gates nothing.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from bench.run import apply_to_ready, operator_on, storage_body
from bench.scale import create_all
from bench.stats import print_figures
from localcp.admin import OPERATOR_NAMESPACE, apply_crds, seed_operator_namespace
from localcp.cluster import ControlPlane
from localcp.config import REPO
from localcp.operator import start_operator

FLOOR = {"group": "bench.etcdproxy.dev", "version": "v1", "plural": "floors", "kind": "Floor"}
ONE_AT_A_TIME = 6
AT_ONCE = 50


def floor_crd() -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{FLOOR['plural']}.{FLOOR['group']}"},
            "spec": {"group": FLOOR["group"], "scope": "Cluster",
                     "names": {"kind": FLOOR["kind"], "plural": FLOOR["plural"], "singular": "floor"},
                     "versions": [{"name": FLOOR["version"], "served": True, "storage": True,
                                   "subresources": {"status": {}},
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}}]}}


def floor_watches(workdir: Path) -> Path:
    """Our watches.yaml entry for EtcdStorage (its settings, not a copy of them), for Floors and the floor
    role, without the finalizer (a Floor is never deleted here)."""
    entries = yaml.safe_load((REPO / "watches.yaml").read_text())
    ours = next(e for e in entries if e["kind"] == "EtcdStorage")
    floor = {k: v for k, v in ours.items() if k != "finalizer"}
    floor.update(group=FLOOR["group"], version=FLOOR["version"], kind=FLOOR["kind"],
                 role=str(REPO / "bench" / "floor" / "roles" / "floor"))
    path = workdir / "floor-watches.yaml"
    path.write_text(yaml.safe_dump([floor]))
    return path


class Floors:
    """apply_to_ready and create_all's view of Floors: the same calls as for EtcdStorages."""

    def __init__(self, custom: client.CustomObjectsApi) -> None:
        self.custom = custom

    def create_cluster_custom_object(self, group: str, version: str, plural: str, body: dict[str, Any]) -> Any:
        body = {**body, "apiVersion": f"{FLOOR['group']}/{FLOOR['version']}", "kind": FLOOR["kind"]}
        return self.custom.create_cluster_custom_object(FLOOR["group"], FLOOR["version"], FLOOR["plural"], body)

    def get_cluster_custom_object(self, group: str, version: str, plural: str, name: str) -> Any:
        return self.custom.get_cluster_custom_object(FLOOR["group"], FLOOR["version"], FLOOR["plural"], name)

    def list_cluster_custom_object(self, group: str, version: str, plural: str) -> Any:
        return self.custom.list_cluster_custom_object(FLOOR["group"], FLOOR["version"], FLOOR["plural"])


def figures(custom: Any, op: Any, prefix: str) -> tuple[list[float], float]:
    """apply -> Ready of ONE_AT_A_TIME created one at a time, then AT_ONCE created at once, all Ready."""
    to_ready = apply_to_ready(custom, op, [storage_body(f"{prefix}-{i}") for i in range(ONE_AT_A_TIME)])
    burst = create_all(custom, [f"{prefix}-burst-{i}" for i in range(AT_ONCE)], op, 900)
    return to_ready, burst


def main() -> int:
    cp = ControlPlane(workdir=REPO / ".cache" / "bench-floor")
    cp.start()
    results: dict[str, object] = {}
    op = None
    try:
        apply_crds(cp, yaml.safe_dump(floor_crd()), "the Floor CRD")
        custom = client.CustomObjectsApi(cp.api())
        seed_operator_namespace(cp)
        # The floor operator acts as the admin: it needs no RBAC of its own to be measured.
        op = start_operator(cp.kubeconfig, ",".join(cp.etcd_endpoints), cp.logs / "floor-operator.log",
                            namespace=OPERATOR_NAMESPACE, watches=floor_watches(cp.workdir))
        floor_ready, floor_burst = figures(Floors(custom), op, "floor")
        op.stop()
        op = None
        op = operator_on(cp)
        ours_ready, ours_burst = figures(custom, op, "ours")
    finally:
        if op is not None:
            op.stop()
        cp.stop()
    floor_p50, ours_p50 = statistics.median(floor_ready), statistics.median(ours_ready)
    results["apply_to_ready_p50_s (goal <= 2.5): the shape's floor / ours"] = f"{floor_p50:.2f} / {ours_p50:.2f}"
    results["apply_to_ready_max_s: the shape's floor / ours"] = f"{max(floor_ready):.2f} / {max(ours_ready):.2f}"
    results[f"{AT_ONCE}_at_once_all_ready_s (goal <= 60): the shape's floor / ours"] = (
        f"{floor_burst:.1f} / {ours_burst:.1f}")
    results["ours above the floor: apply_to_ready p50 s; at once s"] = (
        f"{ours_p50 - floor_p50:.2f}; {ours_burst - floor_burst:.1f}")
    print_figures("the shape's floor beside ours", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
