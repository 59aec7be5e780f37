"""The fake node kwok runs: where the proxy Deployments' pods are scheduled (they never run)."""

from __future__ import annotations

from pathlib import Path

from .config import FAKE_NODE
from .node import wait_node_ready


def create_fake_node(api, kwok_log: Path) -> None:
    """Create the node kwok manages (by annotation) and wait until it is Ready."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    core.create_node({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": FAKE_NODE, "annotations": {"kwok.x-k8s.io/node": "fake"},
                     "labels": {"kubernetes.io/hostname": FAKE_NODE, "type": "kwok",
                                "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
        "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000", "ephemeral-storage": "100Gi"},
                   "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000", "ephemeral-storage": "100Gi"}},
    })

    # The TaintNodesByCondition admission plugin taints every new node
    # not-ready; without a node-lifecycle controller nothing would lift it.
    core.patch_node(FAKE_NODE, {"spec": {"taints": None}})

    wait_node_ready(api, kwok_log, FAKE_NODE, timeout=60)
