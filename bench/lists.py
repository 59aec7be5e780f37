"""Consistent LISTs of a tenant kube-apiserver holding many objects, through the guard, with watch progress
answered (the guard reports the core's version: the API server serves consistent LISTs from its watch
cache) and without (`--report-version=3.5.0`, what the guard did before: every consistent LIST is a full
range read of the tenant's objects on the shared core). Same tenant, same objects, same run.

Figures per mode: LIST latency p50/p99 and the bytes the core answered the guard per LIST
(etcdproxy_guard_range_response_bytes_total).

Run alone: `python -m bench.lists [objects]` (starts its own control plane and operator)."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client

from bench.stats import pct, print_figures
from localcp.cluster import ControlPlane
from localcp.tenant import start_proxy
from localcp.tenant_apiserver import start_tenant_apiserver

MODES = {"progress": (), "no_progress (3.5.0 reported)": ("--report-version=3.5.0",)}
NAMESPACE = "bench-lists"


def fill(api: client.CoreV1Api, objects: int) -> None:
    api.create_namespace({"metadata": {"name": NAMESPACE}})

    def create(i: int) -> None:
        api.create_namespaced_config_map(NAMESPACE, {"metadata": {"name": f"cm-{i:05d}"},
                                                     "data": {"value": "x" * 200}})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(objects)))


def list_figures(cp: ControlPlane, results: dict[str, object], deployment: dict[str, Any],
                 files: tuple[str, str, str], objects: int = 10_000, lists: int = 20) -> None:
    core = client.CoreV1Api(cp.api())
    tmp = Path(tempfile.mkdtemp(prefix="bench-lists-"))
    filled = False
    figures: dict[str, dict[str, float]] = {}
    for mode, extra in MODES.items():
        guard = start_proxy(core, deployment, cp.logs, extra_args=extra, label=f"lists-{len(extra)}")
        server = None
        try:
            server = start_tenant_apiserver(cp, guard, files, tmp, f"bench-lists-{len(extra)}")
            api = server.core()
            if not filled:
                t0 = time.monotonic()
                fill(api, objects)
                results["lists_fill_s"] = round(time.monotonic() - t0, 1)
                filled = True
            assert len(api.list_namespaced_config_map(NAMESPACE).items) == objects
            times, read = [], []
            for _ in range(lists):
                before = guard.metric("etcdproxy_guard_range_response_bytes_total")
                t0 = time.monotonic()
                body = api.list_namespaced_config_map(NAMESPACE, _preload_content=False).data  # read whole
                times.append(time.monotonic() - t0)
                assert body.count(b'"name":"cm-') == objects
                read.append(guard.metric("etcdproxy_guard_range_response_bytes_total") - before)
            figures[mode] = {"p50_ms": round(statistics.median(times) * 1000, 1),
                             "p99_ms": round(pct(times, 0.99) * 1000, 1),
                             "core_bytes_per_list": round(statistics.median(read))}
            for name, value in figures[mode].items():
                results[f"consistent_list_{objects}_{mode}_{name}"] = value
        finally:
            if server is not None:
                server.stop()
            guard.stop()
    progress, no_progress = (figures[mode] for mode in MODES)
    results[f"consistent_list_{objects}_core_bytes_per_list (goal: none of the objects)"] = (
        f"{progress['core_bytes_per_list']} vs {no_progress['core_bytes_per_list']} before")
    results[f"consistent_list_{objects}_p50_ms (goal: lower than before)"] = (
        f"{progress['p50_ms']} vs {no_progress['p50_ms']} before")


def main() -> int:
    from bench.run import one_tenant

    objects = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    results: dict[str, object] = {}
    with one_tenant("bench-lists") as (cp, deployment, files):
        list_figures(cp, results, deployment, files, objects)
    print_figures("consistent LISTs through the guard", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
