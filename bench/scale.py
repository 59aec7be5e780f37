"""`make bench-scale`: one operator and 500 EtcdStorages (kwok node: fake pods, real everything else).
Prints each figure beside its goal; never gates anything.

- 500 created in batches of 50 and all Ready (how long);
- the operator's CPU while nothing changes (its own and every ansible-runner child's, from
  /proc/<pid>/stat, over IDLE_MINUTES, 30 by default), as a share of one core;
- apply -> Ready p50 of new EtcdStorages while the 500 exist, one at a time;
- 50 created at once, all Ready (how long);
- the operator's RSS with all of them, and the runner artifacts kept on disk;
- the 50 deleted at once: how long until all are gone, and how many runner directories they left.

`python -m bench.scale [tenants] [idle minutes] [max concurrent reconciles]` runs it with other sizes.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client

from bench.run import GROUP, PLURAL, RUNNER_DIR, VERSION, apply_to_ready, is_ready, operator_on
from bench.stats import print_figures, rss_mib
from localcp.cluster import ControlPlane
from localcp.config import REPO
from localcp.probes import wait_for

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its children it has waited for (ansible-operator waits for each run)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime + cutime + cstime) / CLOCK_TICKS


def body(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "EtcdStorage", "metadata": {"name": name},
            "spec": {"replicas": 1}}


def ready_names(custom: client.CustomObjectsApi) -> set[str]:
    return {i["metadata"]["name"] for i in custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
            if is_ready(i)}


def create_all(custom: client.CustomObjectsApi, names: list[str], op, timeout: float) -> float:
    t0 = time.monotonic()
    for name in names:
        custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body(name))
    wanted = set(names)
    wait_for(f"{len(names)} EtcdStorages Ready", lambda: wanted <= ready_names(custom), timeout, op.proc, op.log,
             interval=1)
    return time.monotonic() - t0


def delete_all(custom: client.CustomObjectsApi, names: list[str], op, timeout: float) -> float:
    """Delete ``names`` at once; how long until all are gone (their finalizer runs done)."""
    t0 = time.monotonic()
    for name in names:
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    wanted = set(names)

    def all_gone() -> bool:
        items = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
        return not wanted & {i["metadata"]["name"] for i in items}

    wait_for(f"{len(names)} EtcdStorages deleted", all_gone, timeout, op.proc, op.log, interval=1)
    return time.monotonic() - t0


def quiet(op, seconds: float = 20) -> None:
    """Wait until no run has started for ``seconds`` (the last reconciles of the creations are done)."""
    def no_recent_run() -> bool:
        newest = max((p.stat().st_mtime for p in RUNNER_DIR.glob("*/*") if p.is_dir()), default=0)
        return time.time() - newest > seconds

    wait_for("no reconcile for a while", no_recent_run, 600, op.proc, op.log, interval=1)


def main() -> int:
    tenants = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    idle_minutes = float(sys.argv[2]) if len(sys.argv) > 2 else 30
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    results: dict[str, object] = {"tenants": tenants, "max_concurrent_reconciles": workers}
    shutil.rmtree(RUNNER_DIR, ignore_errors=True)
    cp = ControlPlane(workdir=REPO / ".cache" / "bench-scale")
    cp.start()
    op = None
    try:
        op = operator_on(cp, workers)
        custom = client.CustomObjectsApi(cp.api())
        batches = []
        for start in range(0, tenants, 50):
            batches.append(create_all(custom, [f"s-{i}" for i in range(start, min(start + 50, tenants))], op, 900))
        results[f"{tenants}_created_in_batches_of_50_all_ready_s"] = round(sum(batches), 1)
        quiet(op)
        before, t0 = cpu_seconds(op.proc.pid), time.monotonic()
        time.sleep(idle_minutes * 60)  # the measurement window itself: nothing is created or changed
        share = (cpu_seconds(op.proc.pid) - before) / (time.monotonic() - t0)
        results[f"idle_cpu_{idle_minutes:g}_min_percent_of_a_core (goal <= 5)"] = round(share * 100, 2)
        to_ready = apply_to_ready(custom, op, [body(f"new-{i}") for i in range(10)])
        results[f"apply_to_ready_p50_s_with_{tenants} (goal <= 5)"] = round(statistics.median(to_ready), 2)
        cpu0 = cpu_seconds(op.proc.pid)
        burst = create_all(custom, [f"burst-{i}" for i in range(50)], op, 900)
        results["fifty_at_once_all_ready_s (goal <= 60; the shape's floor: make bench-floor)"] = round(burst, 1)
        results["fifty_at_once_operator_cpu_cores"] = round((cpu_seconds(op.proc.pid) - cpu0) / burst, 2)
        results[f"operator_rss_mib_with_{tenants + 60} (goal <= 150)"] = rss_mib(op.proc.pid)
        kept = sum(f.stat().st_size for f in RUNNER_DIR.rglob("*") if f.is_file())
        results[f"runner_artifacts_kept_mib_for_{tenants + 60}"] = round(kept / 2**20, 1)
        gone = delete_all(custom, [f"burst-{i}" for i in range(50)], op, 900)
        results["fifty_deleted_at_once_all_gone_s"] = round(gone, 1)
        left = sum((RUNNER_DIR / f"burst-{i}").exists() for i in range(50))
        results["runner_directories_left_by_the_fifty_deleted (ansible-operator alone: 50)"] = left
    finally:
        if op is not None:
            op.stop()
        cp.stop()
    print_figures("scale benchmark", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
