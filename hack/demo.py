"""`make demo`: the operator's main job on an embedded local control plane.

Starts etcd + kube-apiserver + controllers + kwok on 127.0.0.1, installs the CRD,
seeds the operator namespace like an admin would, runs the real ansible-operator,
applies config/samples/, waits for Ready=True, shows what was created, and tears
everything down (KEEP=1 leaves it running and prints the KUBECONFIG to use).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from ansible_collections.etcdproxy.operator.plugins.module_utils import names
from kubernetes import client

from localcp.admin import ensure_namespace, install_crd, install_rbac, seed_operator_namespace
from localcp.cluster import ControlPlane
from localcp.config import BIN_DIR, REPO
from localcp.operator import start_operator
from localcp.probes import StartError, wait_for
from localcp.processes import Process
from localcp.tenant import ProxyProcess, delivered_files, start_proxy

NS = "kube-apiserver-storage"


def kubectl(cp: ControlPlane, *args: str) -> None:
    print(f"\n$ kubectl {' '.join(args)}", flush=True)
    subprocess.run([str(BIN_DIR / "kubectl"), f"--kubeconfig={cp.kubeconfig}", *args], check=False)


def data_path(cp: ControlPlane, api: client.ApiClient, name: str) -> ProxyProcess:
    """Kwok's pods run nothing, so start the endpoint as its Deployment says and use it like the API server
    in "wardle" would: with only the material delivered there."""
    core = client.CoreV1Api(api)
    deployment = api.sanitize_for_serialization(client.AppsV1Api(api).read_namespaced_deployment(names.proxy(name), NS))
    guard = start_proxy(core, deployment, cp.logs)
    tmp = Path(tempfile.mkdtemp(prefix="demo-"))
    files = delivered_files(core, "wardle", tmp, configmap="etcd-serving-ca", secret="etcd-client-cert")
    print(f"\nthe endpoint of {name}, run as its Deployment says, at {guard.endpoint} "
          "(material from namespace wardle):", flush=True)
    flags = [f"--endpoints={guard.endpoint}", f"--cacert={files[0]}", f"--cert={files[1]}", f"--key={files[2]}"]
    attempts = (["put", "/registry/demo", "hello"], ["get", "/registry/demo"],
                ["endpoint", "status", "-w", "table"],  # the tenant's own size and storage limit
                ["snapshot", "save", str(tmp / "core.db")], ["member", "list"])
    for args in attempts:
        print(f"$ etcdctl {' '.join(args)}", flush=True)
        subprocess.run([str(BIN_DIR / "etcdctl"), *flags, *args], check=False)
    return guard


def main() -> int:
    keep = os.environ.get("KEEP") == "1"
    t0 = time.monotonic()
    cp = ControlPlane()
    op = None
    guard: ProxyProcess | None = None
    succeeded = False
    try:
        print("starting the local control plane (etcd, kube-apiserver, controllers, kwok) ...", flush=True)
        cp.start()
        print(f"  up in {cp.timings['total_s']}s: {cp.timings}", flush=True)
        install_crd(cp)
        seed_operator_namespace(cp)
        install_rbac(cp)
        op = start_operator(cp.operator_kubeconfig, ",".join(cp.etcd_endpoints), cp.logs / "operator.log")
        print(f"ansible-operator running (log: {op.log})", flush=True)
        api = cp.api()
        custom = client.CustomObjectsApi(api)
        samples = sorted((REPO / "config" / "samples").glob("*.yaml"))
        names = []
        for path in samples:
            for obj in yaml.safe_load_all(path.read_text()):
                if not obj or obj.get("kind") != "EtcdStorage":
                    continue
                for dest in obj["spec"].get("caCertConfigMap", []) + obj["spec"].get("clientCertSecret", []):
                    ensure_namespace(api, dest["namespace"], grant_delivery=False)
                # What the API server's admin applies so the operator may deliver there.
                subprocess.run([str(BIN_DIR / "kubectl"), f"--kubeconfig={cp.kubeconfig}", "apply", "-f",
                                str(REPO / "config" / "rbac" / "destination_role_example.yaml")],
                               check=True, capture_output=True)
                custom.create_cluster_custom_object("etcd.etcdproxy.dev", "v1alpha1", "etcdstorages", obj)
                names.append(obj["metadata"]["name"])
                print(f"applied {path.relative_to(REPO)}: EtcdStorage {obj['metadata']['name']}", flush=True)
        applied = time.monotonic()

        def all_ready() -> bool:
            for name in names:
                es = custom.get_cluster_custom_object("etcd.etcdproxy.dev", "v1alpha1", "etcdstorages", name)
                conds = (es.get("status") or {}).get("conditions") or []
                if not any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                    return False
            return True

        wait_for("EtcdStorage Ready=True", all_ready, 180, op.proc, op.log, interval=0.25)
        print(f"Ready=True {time.monotonic() - applied:.1f}s after apply", flush=True)
        kubectl(cp, "get", "etcdstorage", "-o", "wide")
        kubectl(cp, "-n", NS, "get", "deployment,service,pods", "-l", "app.kubernetes.io/name=etcd-proxy",
                "-o", "wide")
        kubectl(cp, "-n", "wardle", "get", "configmap/etcd-serving-ca", "secret/etcd-client-cert")
        kubectl(cp, "get", "etcdstorage", names[0], "-o", "jsonpath={range .status.conditions[*]}"
                "{.type}={.status} ({.reason}): {.message}{\"\\n\"}{end}")
        guard = data_path(cp, api, names[0])
        print(f"\ndemo finished in {time.monotonic() - t0:.1f}s", flush=True)
        succeeded = True
        if keep:
            cp.processes.append(Process("etcdproxy-guard", guard.proc.pid, str(guard.log)))
            cp.processes.append(Process("ansible-operator", op.proc.pid, str(op.log)))
            cp.save()
            print(f"\nKEEP=1: still running. export KUBECONFIG={cp.kubeconfig}\n"
                  f"operator log: {op.log}; stop with `make cluster-down`")
            op = guard = None
            return 0
        return 0
    except StartError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        print(cp.log_tails(), file=sys.stderr)
        return 1
    finally:
        if not (keep and succeeded):  # a failed demo cleans up after itself, KEEP=1 or not
            if guard is not None:
                guard.stop()
            if op is not None:
                op.stop()
            cp.stop()
            print("stopped the local control plane", flush=True)


if __name__ == "__main__":
    sys.exit(main())
