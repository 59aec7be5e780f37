"""Figures of the real node (`make bench`): the product path as a user runs it — the operator in-cluster
from config/default, proxy pods started by kubelet, Ready when their probes say so."""

from __future__ import annotations

import statistics
import time

from localcp.cluster import ControlPlane
from localcp.config import REPO
from localcp.dns import install_dns
from localcp.incluster import install_operator
from localcp.wardle import etcdstorage, wait_ready

from .stats import pct


def node_figures(results: dict[str, object], tenants: int = 5) -> None:
    cp = ControlPlane(workdir=REPO / ".cache" / "bench-node", node="real")
    try:
        cp.start()
        install_dns(cp)
        results["real_node_cluster_start_s"] = cp.timings["total_s"]
        t0 = time.monotonic()
        install_operator(cp)
        results["real_node_operator_ready_s"] = round(time.monotonic() - t0, 1)
        to_ready = []
        for i in range(tenants):  # like the sample: 2 replicas, delivering to a namespace of its own
            t0 = time.monotonic()
            etcdstorage(cp, f"bench-real-{i}", f"bench-real-{i}")
            wait_ready(cp, f"bench-real-{i}")
            to_ready.append(time.monotonic() - t0)
        results["real_node_apply_to_ready_p50_s"] = round(statistics.median(to_ready), 2)
        results["real_node_apply_to_ready_max_s"] = round(pct(to_ready, 1.0), 2)
    finally:
        cp.stop()
