"""Where apply -> Ready goes: a timeline of EtcdStorages created one at a time (kwok node), from three
sources on this machine's one clock: watch events of the EtcdStorage and its Deployment, seen by this
process, and ansible-runner's own job events of every run (task starts and ends, the play's end).

`make bench-trace` (`python -m bench.trace [tenants]`, 6 by default) prints, for each tenant, every step in
seconds after its create, then the median of each step over the tenants. Figures only; gates nothing.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from bench.run import GROUP, PLURAL, RUNNER_DIR, VERSION, is_ready, operator_on, storage_body
from localcp.admin import OPERATOR_NAMESPACE
from localcp.cluster import ControlPlane
from localcp.config import REPO
from localcp.probes import wait_for


def _stamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def runner_steps(name: str, runner_dir: Path = RUNNER_DIR) -> list[tuple[float, str]]:
    """(time, what) for every run kept for ``name``, numbered in the order they started: the play's start,
    each task that ran (its start and end, by the task's name), the play's end, and the runner's rc file."""
    runs = []
    for run in (runner_dir / name / "artifacts").iterdir():
        if run.name == "latest":
            continue
        events = sorted((json.loads(f.read_text()) for f in (run / "job_events").iterdir()),
                        key=lambda e: e.get("counter", 0))
        starts = [_stamp(e["created"]) for e in events if e.get("event") == "playbook_on_start"]
        runs.append((min(starts, default=run.stat().st_mtime), run, events))
    steps: list[tuple[float, str]] = []
    for n, (_, run, events) in enumerate(sorted(runs, key=lambda r: r[0]), 1):
        task_started = 0.0
        for ev in events:
            data, kind, at = ev.get("event_data") or {}, ev.get("event"), _stamp(ev["created"])
            task = f"{data.get('task_action')} ({data.get('task', '').replace(name, '<name>')[:50]})"
            if kind == "playbook_on_start":
                steps.append((at, f"run {n}: playbook starts"))
            elif kind == "runner_on_start":
                task_started = at
            elif kind in ("runner_on_ok", "runner_on_failed"):
                steps.append((task_started, f"run {n}: {task} starts"))
                steps.append((at, f"run {n}: {task} ends"))
            elif kind == "playbook_on_stats":
                steps.append((at, f"run {n}: playbook ends"))
        if (run / "rc").exists():
            steps.append(((run / "rc").stat().st_mtime, f"run {n}: runner writes rc"))
    return steps


def runs_done(name: str, quiet_s: float = 1.5) -> bool:
    """Every run kept for ``name`` has ended, and none started in the last ``quiet_s`` seconds."""
    runs = [p for p in (RUNNER_DIR / name / "artifacts").iterdir() if p.name != "latest"]
    newest = max((p.stat().st_mtime for p in runs), default=0.0)
    return all((p / "rc").exists() for p in runs) and time.time() - newest > quiet_s


class Watcher(threading.Thread):
    """Records when the EtcdStorage turns Ready and when its Deployment appears and turns available."""

    def __init__(self, api: client.ApiClient) -> None:
        super().__init__(daemon=True)
        self.api = api
        self.seen: dict[str, list[tuple[float, str]]] = {}

    def saw(self, name: str, what: str) -> bool:
        return what in {w for _, w in self.seen.get(name, [])}

    def note(self, name: str, what: str) -> None:
        if not self.saw(name, what):
            self.seen.setdefault(name, []).append((time.time(), what))

    def run(self) -> None:
        try:
            self._storages()
        except Exception:  # the control plane stopped under the watch: the trace is over
            return

    def _storages(self) -> None:
        apps, custom = client.AppsV1Api(self.api), client.CustomObjectsApi(self.api)
        threading.Thread(target=self._deployments, args=(apps,), daemon=True).start()
        w = watch.Watch()
        for ev in w.stream(custom.list_cluster_custom_object, GROUP, VERSION, PLURAL, timeout_seconds=3600):
            obj: dict[str, Any] = ev["object"]
            if is_ready(obj):
                self.note(obj["metadata"]["name"], "EtcdStorage Ready")

    def _deployments(self, apps: client.AppsV1Api) -> None:
        try:
            self._watch_deployments(apps)
        except Exception:  # the control plane stopped under the watch
            return

    def _watch_deployments(self, apps: client.AppsV1Api) -> None:
        w = watch.Watch()
        for ev in w.stream(apps.list_namespaced_deployment, OPERATOR_NAMESPACE, timeout_seconds=3600):
            dep = ev["object"]
            name = dep.metadata.name.removeprefix("etcd-")
            self.note(name, "Deployment created")
            if (dep.status.available_replicas or 0) >= 1:
                self.note(name, "Deployment available")


def main() -> int:
    tenants = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    for old in RUNNER_DIR.glob("trace-*"):
        shutil.rmtree(old, ignore_errors=True)
    cp = ControlPlane(workdir=REPO / ".cache" / "bench-trace")
    cp.start()
    op = None
    try:
        op = operator_on(cp)
        custom = client.CustomObjectsApi(cp.api())
        watcher = Watcher(cp.api())
        watcher.start()
        created: dict[str, float] = {}
        for i in range(tenants):
            name = f"trace-{i}"
            created[name] = time.time()
            custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, storage_body(name))
            wait_for(f"{name} Ready", lambda name=name: watcher.saw(name, "EtcdStorage Ready"), 120, op.proc, op.log,
                     interval=0.05)
            # The runs the creation brought end before the next tenant starts, so each timeline is its own.
            wait_for(f"{name} runs done", lambda name=name: runs_done(name), 60, op.proc, op.log, interval=0.05)
        per_step: dict[str, list[float]] = {}
        for name, t0 in created.items():
            timeline = sorted(runner_steps(name) + watcher.seen.get(name, []))
            print(f"\n{name}")
            for at, what in timeline:
                print(f"  {at - t0:6.2f} s  {what}")
                per_step.setdefault(what, []).append(at - t0)
        print("\nmedian over the tenants (seconds after the create)")
        for what, values in sorted(per_step.items(), key=lambda kv: statistics.median(kv[1])):
            print(f"  {statistics.median(values):6.2f} s  {what}  (n={len(values)})")
    finally:
        if op is not None:
            op.stop()
        cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
