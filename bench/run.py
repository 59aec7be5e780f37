"""`make bench`: figures for the README and closing notes. Prints a table and JSON; never gates anything.

- control-plane start, cold (first start after the binaries were built or the page cache
  was dropped is not something we can force here, so "cold" is the first start in this
  process, with PKI generation) and warm (an immediate restart);
- wall time of one reconcile of an unchanged EtcdStorage: from ansible-operator writing the
  runner's input (env/extravars) to ansible-runner writing its rc, i.e. everything but the
  operator's Go side;
- apply -> Ready=True over 10 EtcdStorages created one after another (p50/p90);
- API writes made by periodic reconciles of an unchanged EtcdStorage (audit log; target 0);
- memory (RSS) of the operator process with 50 EtcdStorages, and how long 40 more took to be Ready;
- time to issue a full tenant bundle (2 CAs + serving leaf + one client leaf), ECDSA and RSA, and
  each module's wall time inside a reconcile (ansible-runner's own task durations);
- the data path (bench/datapath.py): core etcd direct vs stock grpc-proxy vs the guard, same client;
- the real node (bench/node.py): cluster start, the operator Ready in-cluster, apply -> Ready with
  real proxy pods (the sample's 2 replicas, probes and all);
- per-tenant backup and restore (bench/backup.py): throughput beside `etcdctl get --prefix` of the same
  ~100 MB tenant, and peak memory at two sizes.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils import leftovers
from kubernetes import client

from bench.backup import backup_figures
from bench.node import node_figures
from bench.stats import pct, print_figures, rss_mib
from localcp.admin import ensure_namespace, install_crds, install_rbac, seed_operator_namespace
from localcp.cluster import ControlPlane
from localcp.config import OPERATOR_USER, REPO
from localcp.operator import Operator, start_operator
from localcp.probes import wait_for
from localcp.tenant import ProxyProcess, delivered_files, start_proxy, start_stock_proxy
from localcp.tenant_apiserver import start_tenant_apiserver

GROUP, VERSION, PLURAL = "etcd.etcdproxy.dev", "v1alpha1", "etcdstorages"
RUNNER_DIR = leftovers.kind_directory(GROUP, VERSION, "EtcdStorage")


def is_ready(es: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (es.get("status") or {}).get("conditions", []))


def ready(custom: client.CustomObjectsApi, name: str) -> bool:
    return is_ready(custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name))


def reconcile_walls(name: str, runs: int, custom: client.CustomObjectsApi) -> list[float]:
    """Trigger ``runs`` reconciles of an unchanged object one at a time and time each."""
    walls = []
    base = RUNNER_DIR / name
    for i in range(runs):
        before = {p.name for p in (base / "artifacts").iterdir()} if (base / "artifacts").exists() else set()
        custom.patch_cluster_custom_object(GROUP, VERSION, PLURAL, name,
                                           {"metadata": {"annotations": {"bench/poke": str(i)}}})

        def new_run_done(before: set[str] = before) -> bool:
            fresh = [p for p in (base / "artifacts").iterdir() if p.name not in before and p.name != "latest"]
            return bool(fresh) and (fresh[0] / "rc").exists()

        wait_for("reconcile finished", new_run_done, 60, interval=0.05)
        fresh = next(p for p in (base / "artifacts").iterdir() if p.name not in before and p.name != "latest")
        start = (base / "env" / "extravars").stat().st_mtime
        walls.append((fresh / "rc").stat().st_mtime - start)
    return walls


def task_durations(name: str) -> dict[str, float]:
    """Median duration of each module in the runs kept for ``name``, from ansible-runner's own events."""
    per: dict[str, list[float]] = {}
    for run in (RUNNER_DIR / name / "artifacts").iterdir():
        if run.name == "latest" or not (run / "job_events").exists():
            continue
        for f in (run / "job_events").iterdir():
            ev = json.loads(f.read_text())
            data = ev.get("event_data") or {}
            if ev.get("event") == "runner_on_ok" and data.get("duration") is not None:
                per.setdefault(data["task_action"], []).append(float(data["duration"]))
    return {action: round(statistics.median(v), 3) for action, v in per.items()}


def issuance_ms(key_type: str, rounds: int = 20) -> float:
    """Median time to issue a full tenant bundle: 2 CAs, the serving leaf and one client leaf."""
    import datetime

    from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.decide import (
        client_spec,
        issue_leaf,
        plan_ca,
        serving_spec,
    )
    from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.settings import Settings
    from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.store import CAState

    h = datetime.timedelta(hours=1)
    settings = Settings(ca_validity=8760 * h, serving_validity=730 * h, client_validity=730 * h, key_type=key_type)
    times = []
    for _ in range(rounds):
        now = datetime.datetime.now(datetime.UTC)
        t0 = time.perf_counter()
        serving, client_ca = CAState(), CAState()
        plan_ca("serving", serving, "b", settings, now, False, False)
        plan_ca("client", client_ca, "b", settings, now, False, False)
        issue_leaf(serving_spec("b", "ns"), serving.current, settings.serving_validity, key_type, now)
        issue_leaf(client_spec("b", "ns", "s"), client_ca.current, settings.client_validity, key_type, now)
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def audit_writes(path: Path, since: float, name: str) -> int:
    from datetime import datetime

    count = 0
    for line in path.read_text().splitlines():
        ev = json.loads(line)
        if ev.get("user", {}).get("username") != OPERATOR_USER or ev.get("verb") in ("get", "list", "watch"):
            continue
        ts = datetime.fromisoformat(ev["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()
        if ts >= since and name in ev.get("requestURI", ""):
            count += 1
    return count


def datapath_figures(cp: ControlPlane, results: dict[str, object], n: int = 2000, clients: int = 16,
                     per_client: int = 250) -> None:
    """Same client, three targets; then a tenant kube-apiserver behind the stock proxy and behind the guard."""
    from bench import datapath, lists

    core = client.CoreV1Api(cp.api())
    apps = client.AppsV1Api(cp.api())
    dep = cp.api().sanitize_for_serialization(apps.read_namespaced_deployment("etcd-bench-0",
                                                                              "kube-apiserver-storage"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-datapath-"))
    tenant = delivered_files(core, "default", tmp, configmap="etcd-bench-0-ca", secret="etcd-bench-0")
    direct = cp.core_files()
    stock = start_stock_proxy(core, dep, cp.logs)
    try:
        guard = start_proxy(core, dep, cp.logs)
    except BaseException:
        stock.stop()
        raise
    try:
        targets = {"direct": (cp.etcd_endpoints[0], direct, None), "stock_proxy": (stock.endpoint, tenant, None),
                   "guard": (guard.endpoint, tenant, guard.proc.pid)}
        for label, (endpoint, files, pid) in targets.items():
            for key, value in datapath.sequential(endpoint, files, n).items():
                results[f"dp_{label}_{key}"] = value
            for key, value in datapath.concurrent(endpoint, files, clients, per_client, pid).items():
                results[f"dp_{label}_{clients}c_{key}"] = value
        results["dp_guard_over_stock_put_p50"] = round(results["dp_guard_put_p50_ms"]
                                                       / results["dp_stock_proxy_put_p50_ms"], 2)
        results["dp_guard_over_stock_get_p50"] = round(results["dp_guard_get_p50_ms"]
                                                       / results["dp_stock_proxy_get_p50_ms"], 2)
        for label, pod in (("stock_proxy", stock), ("guard", guard)):
            server = start_tenant_apiserver(cp, pod, tenant, tmp, f"bench-{label}")
            try:
                for key, value in datapath.consistent_lists(server.core(), 5).items():
                    results[f"tenant_apiserver_{label}_{key}"] = value
            finally:
                server.stop()
        lists.list_figures(cp, results, dep, tenant)
        limit_figures(cp, results, guard, tenant, tmp)
    finally:
        stock.stop()
        guard.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def limit_figures(cp: ControlPlane, results: dict[str, object], guard: ProxyProcess,
                  files: tuple[str, str, str], tmp: Path) -> None:
    """The amounts: Status calls per replica (idle), a noisy neighbour over its request rate, usage memory."""
    from bench import limits

    results.update(limits.status_calls_per_replica_s(guard))
    custom = client.CustomObjectsApi(cp.api())
    custom.patch_cluster_custom_object(GROUP, VERSION, PLURAL, "bench-1",
                                       {"spec": {"limits": {"requestsPerSecond": 200, "requestBurst": 200}}})
    apps = client.AppsV1Api(cp.api())

    def limited() -> bool:
        dep = apps.read_namespaced_deployment("etcd-bench-1", "kube-apiserver-storage")
        return "--requests-per-second=200" in dep.spec.template.spec.containers[0].command

    wait_for("bench-1 with a request rate of 200/s", limited, 60, None, None, interval=0.2)
    core = client.CoreV1Api(cp.api())
    dep = cp.api().sanitize_for_serialization(apps.read_namespaced_deployment("etcd-bench-1",
                                                                              "kube-apiserver-storage"))
    noisy = start_proxy(core, dep, cp.logs)
    try:
        noisy_files = delivered_files(core, "default", tmp, configmap="etcd-bench-1-ca", secret="etcd-bench-1")
        results.update(limits.noisy_neighbour(noisy, noisy_files, guard, files))
    finally:
        noisy.stop()
    results.update(limits.fill_to_key_limit(guard, files, 100_000))
    results.update(limits.far_back_watches(cp, guard, files))


def apply_to_ready(custom: client.CustomObjectsApi, op: Operator, bodies: list[dict[str, Any]]) -> list[float]:
    """Seconds from each create to Ready, one EtcdStorage at a time."""
    out = []
    for body in bodies:
        name = body["metadata"]["name"]
        t0 = time.monotonic()
        custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
        wait_for(f"{name} Ready", lambda name=name: ready(custom, name), 120, op.proc, op.log, interval=0.05)
        out.append(time.monotonic() - t0)
    return out


def operator_on(cp: ControlPlane, max_concurrent: int = 2) -> Operator:
    """The operator out of cluster on a started control plane, as a platform team installs it
    (``max_concurrent``: --max-concurrent-reconciles, 2 as config/manager sets it)."""
    install_crds(cp)
    seed_operator_namespace(cp)
    install_rbac(cp)
    os.environ.setdefault("ETCDPROXY_RETRY_PERIOD", "2s")
    op = start_operator(cp.operator_kubeconfig, ",".join(cp.etcd_endpoints), cp.logs / "operator.log",
                        max_concurrent=max_concurrent)
    ensure_namespace(cp.api(), "default")  # the delivery Role an API server admin would grant
    return op


def storage_body(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "EtcdStorage", "metadata": {"name": name},
            "spec": {"replicas": 1, "caCertConfigMap": [{"name": f"etcd-{name}-ca", "namespace": "default"}],
                     "clientCertSecret": [{"name": f"etcd-{name}", "namespace": "default"}]}}


@contextmanager
def one_tenant(name: str) -> Iterator[tuple[ControlPlane, dict[str, Any], tuple[str, str, str]]]:
    """A control plane, the operator and one Ready EtcdStorage delivering to "default": its Deployment
    (to run its guard locally) and the delivered client files. For a benchmark run alone."""
    cp = ControlPlane(workdir=REPO / ".cache" / "bench-localcp")
    cp.start()
    op = None
    tmp = Path(tempfile.mkdtemp(prefix="bench-tenant-"))
    try:
        op = operator_on(cp)
        custom = client.CustomObjectsApi(cp.api())
        custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, storage_body(name))
        wait_for(f"{name} Ready", lambda: ready(custom, name), 120, op.proc, op.log, interval=0.05)
        core, apps = client.CoreV1Api(cp.api()), client.AppsV1Api(cp.api())
        dep = cp.api().sanitize_for_serialization(apps.read_namespaced_deployment(f"etcd-{name}",
                                                                                  "kube-apiserver-storage"))
        yield cp, dep, delivered_files(core, "default", tmp, configmap=f"etcd-{name}-ca", secret=f"etcd-{name}")
    finally:
        if op is not None:
            op.stop()
        cp.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    results: dict[str, object] = {}
    results["issue_tenant_bundle_ecdsa_ms"] = issuance_ms("ecdsa")
    results["issue_tenant_bundle_rsa_ms"] = issuance_ms("rsa", rounds=5)
    workdir = REPO / ".cache" / "bench-localcp"
    for old in RUNNER_DIR.glob("bench-*"):  # artifacts of earlier bench runs would mix in
        shutil.rmtree(old, ignore_errors=True)
    cp = ControlPlane(workdir=workdir)
    cp.start()
    results["control_plane_cold_start_s"] = cp.timings["total_s"]
    cp.stop()
    cp = ControlPlane(workdir=workdir)
    cp.start()
    results["control_plane_warm_start_s"] = cp.timings["total_s"]
    op = None
    try:
        op = operator_on(cp)
        custom = client.CustomObjectsApi(cp.api())

        to_ready = apply_to_ready(custom, op, [storage_body(f"bench-{i}") for i in range(10)])
        results["apply_to_ready_p50_s (goal <= 2.5; the shape's floor: make bench-floor)"] = round(
            statistics.median(to_ready), 3)
        results["apply_to_ready_p90_s"] = round(pct(to_ready, 0.9), 3)

        since = time.time()
        walls = reconcile_walls("bench-0", 5, custom)
        results["reconcile_wall_p50_s"] = round(statistics.median(walls), 3)
        results["reconcile_wall_max_s"] = round(max(walls), 3)
        results["writes_per_unchanged_reconcile"] = audit_writes(cp.audit_log, since, "bench-0") / len(walls)
        for action, seconds in task_durations("bench-0").items():
            results[f"module_{action}_p50_s"] = seconds

        datapath_figures(cp, results)

        # Memory of the operator (the Go process; ansible-runner children come and go) with 50 tenants.
        t0 = time.monotonic()
        for i in range(10, 50):
            body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "EtcdStorage", "metadata": {"name": f"bench-{i}"},
                    "spec": {"replicas": 1}}
            custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
        wait_for("50 EtcdStorages Ready", lambda: all(ready(custom, f"bench-{i}") for i in range(50)), 900,
                 op.proc, op.log, interval=0.5)
        results["fifty_tenants_ready_s"] = round(time.monotonic() - t0, 1)
        results["operator_rss_50_tenants_mib"] = rss_mib(op.proc.pid)
    finally:
        if op is not None:
            op.stop()
        cp.stop()
    node_figures(results)
    backup_figures(results)

    print_figures("benchmark", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
