"""`make demo`: the operator's main job, for real, on a local cluster with a real node.

Inside the harness's network namespace (hack/in-netns.sh): etcd + kube-apiserver + controllers and a
real node (containerd, kubelet, kube-proxy, CoreDNS), the operator installed in-cluster from
config/default, the sample EtcdStorage `wardle`, and k8s.io/sample-apiserver running in namespace
wardle on only what the operator delivered there, registered as wardle.example.com. A Flunder is
created through the main kube-apiserver, listed back, and found under /wardle/ in the core etcd. A
second tenant's API server sees none of it. KEEP=1 leaves it all running (`make cluster-down` stops it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import yaml
from kubernetes import client

from localcp.admin import OPERATOR_NAMESPACE, ensure_namespace, kubectl_apply, kustomize_build
from localcp.cluster import ControlPlane
from localcp.config import BIN_DIR, REPO
from localcp.dns import install_dns
from localcp.incluster import install_operator
from localcp.probes import StartError, wait_for

GROUP, VERSION, PLURAL = "etcd.etcdproxy.dev", "v1alpha1", "etcdstorages"
SECOND = "wardle-b"  # a second tenant with its own API server, to show what it cannot see


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def kubectl(cp: ControlPlane, *args: str, check: bool = False) -> str:
    print(f"$ kubectl {' '.join(args)}", flush=True)
    out = subprocess.run([str(BIN_DIR / "kubectl"), f"--kubeconfig={cp.kubeconfig}", *args],
                         capture_output=True, text=True)
    print((out.stdout + out.stderr).rstrip(), flush=True)
    if check and out.returncode != 0:
        raise StartError(f"kubectl {' '.join(args)} failed")
    return out.stdout


def etcdstorage(cp: ControlPlane, name: str, namespace: str) -> None:
    """What the API server's admin and the platform admin do: a namespace that grants delivery, then the
    EtcdStorage (the sample's, renamed for the second tenant)."""
    api = cp.api()
    ensure_namespace(api, namespace, grant_delivery=False)
    role = (REPO / "config/rbac/destination_role_example.yaml").read_text().replace("namespace: wardle",
                                                                                    f"namespace: {namespace}")
    kubectl_apply(cp, role, "the delivery Role")
    obj = yaml.safe_load((REPO / "config/samples/etcd_v1alpha1_etcdstorage.yaml").read_text())
    obj["metadata"]["name"] = name
    for dest in obj["spec"]["caCertConfigMap"] + obj["spec"]["clientCertSecret"]:
        dest["namespace"] = namespace
    kubectl_apply(cp, yaml.safe_dump(obj), f"EtcdStorage {name}")


def wait_ready(cp: ControlPlane, name: str) -> None:
    custom = client.CustomObjectsApi(cp.api())

    def ready() -> bool:
        es = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        conditions = (es.get("status") or {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    wait_for(f"EtcdStorage {name} Ready", ready, 180, None, cp.logs / "kubelet.log", interval=0.25)


def tenant_apiserver(cp: ControlPlane, namespace: str, register: bool) -> None:
    """config/samples/wardle; for the second tenant the same objects moved to its namespace and storage,
    without the APIService (one group has one server)."""
    manifests = kustomize_build("config/samples/wardle")
    if namespace != "wardle":
        docs = [d for d in yaml.safe_load_all(manifests) if d and d["kind"] != "APIService"]
        manifests = yaml.safe_dump_all(docs).replace("namespace: wardle", f"namespace: {namespace}") \
            .replace("etcd-wardle.", f"etcd-{namespace}.").replace("name: wardle:", f"name: {namespace}:")
    elif not register:
        raise ValueError("wardle is the registered one")
    kubectl_apply(cp, manifests, f"sample-apiserver in {namespace}")
    apps = client.AppsV1Api(cp.api())

    def available() -> bool:
        return (apps.read_namespaced_deployment("wardle-server", namespace).status.available_replicas or 0) >= 1

    wait_for(f"sample-apiserver in {namespace}", available, 120, None, cp.logs / "kubelet.log", interval=0.25)


def apiservice_available(cp: ControlPlane) -> None:
    reg = client.ApiregistrationV1Api(cp.api())

    def available() -> bool:
        svc = reg.read_api_service("v1alpha1.wardle.example.com")
        return any(c.type == "Available" and c.status == "True" for c in svc.status.conditions or [])

    wait_for("APIService v1alpha1.wardle.example.com Available", available, 60, None, cp.logs / "kube-apiserver.log",
             interval=0.25)


def core_keys(cp: ControlPlane, prefix: str) -> str:
    p = cp.pki
    out = subprocess.run([str(BIN_DIR / "etcdctl"), f"--endpoints={cp.etcd_endpoints[0]}",
                          f"--cacert={p.path('etcd-ca')}", f"--cert={p.path('apiserver-etcd-client')}",
                          f"--key={p.path('apiserver-etcd-client', 'key')}", "get", "--prefix", "--keys-only", prefix],
                         check=True, capture_output=True, text=True).stdout
    return "\n".join(line for line in out.splitlines() if line)


def main() -> int:
    keep = os.environ.get("KEEP") == "1"
    t0 = time.monotonic()
    cp = ControlPlane(node="real")
    succeeded = False
    try:
        step("a local cluster with a real node (etcd, kube-apiserver, controllers, containerd, kubelet, kube-proxy)")
        cp.start()
        install_dns(cp)
        print(f"up in {time.monotonic() - t0:.1f}s", flush=True)
        step("the operator, installed in-cluster from config/default (image built here)")
        install_operator(cp)
        kubectl(cp, "-n", OPERATOR_NAMESPACE, "get", "deployment,pods", "-o", "wide")
        step("the sample EtcdStorage `wardle` (config/samples), delivering to namespace wardle")
        applied = time.monotonic()
        etcdstorage(cp, "wardle", "wardle")
        wait_ready(cp, "wardle")
        print(f"Ready {time.monotonic() - applied:.1f}s after apply", flush=True)
        kubectl(cp, "get", "etcdstorage", "-o", "wide")
        kubectl(cp, "-n", OPERATOR_NAMESPACE, "get", "pods,service", "-l", "app.kubernetes.io/name=etcd-proxy",
                "-o", "wide")
        step("k8s.io/sample-apiserver in namespace wardle, on only what was delivered there (config/samples/wardle)")
        tenant_apiserver(cp, "wardle", register=True)
        apiservice_available(cp)
        kubectl(cp, "get", "apiservice", "v1alpha1.wardle.example.com")
        step("a Flunder, created and listed through the main kube-apiserver")
        flunder = {"apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder",
                   "metadata": {"name": "my-first-flunder", "namespace": "wardle"}, "spec": {}}
        kubectl_apply(cp, yaml.safe_dump(flunder), "the Flunder")
        kubectl(cp, "-n", "wardle", "get", "flunders", check=True)
        step("its key in the core etcd, under /wardle/")
        keys = core_keys(cp, "/wardle/")
        print(keys, flush=True)
        if "flunders/wardle/my-first-flunder" not in keys:
            raise StartError("the Flunder is not under /wardle/ in the core etcd")
        step(f"a second tenant `{SECOND}` with its own sample-apiserver: it sees none of wardle's objects")
        etcdstorage(cp, SECOND, SECOND)
        wait_ready(cp, SECOND)
        tenant_apiserver(cp, SECOND, register=False)
        ip = client.CoreV1Api(cp.api()).read_namespaced_service("api", SECOND).spec.cluster_ip
        direct = [str(BIN_DIR / "kubectl"), f"--kubeconfig={cp.kubeconfig}", f"--server=https://{ip}",
                  "--insecure-skip-tls-verify", "get", "flunders", "-A", "-o", "name"]
        # kube-proxy programs the new Service's rules a moment after its pod is Ready.
        wait_for(f"{SECOND}'s API server behind its Service", lambda: subprocess.run(
            direct, capture_output=True).returncode == 0, 30, None, cp.logs / "kube-proxy.log", interval=0.25)
        seen = kubectl(cp, f"--server=https://{ip}", "--insecure-skip-tls-verify", "get", "flunders", "-A",
                       "-o", "name", check=True)
        if seen.strip():
            raise StartError(f"{SECOND}'s API server sees objects it must not: {seen}")
        print(f"({SECOND}'s API server at {ip} lists no flunders)", flush=True)
        print(f"\ndemo finished in {time.monotonic() - t0:.1f}s", flush=True)
        succeeded = True
        if keep:
            netns = os.environ.get("ETCDPROXY_NETNS", "")
            print(f"\nKEEP=1: still running, inside network namespace {netns}. Look at it with\n"
                  f"  hack/in-netns.sh demo {BIN_DIR / 'kubectl'} --kubeconfig {cp.kubeconfig} get pods -A\n"
                  f"  hack/in-netns.sh demo ctr --address {cp.real_node.socket} -n k8s.io containers ls\n"
                  "stop it with `make cluster-down`")
        return 0
    except (StartError, RuntimeError, client.ApiException) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        print(cp.log_tails(), file=sys.stderr)
        return 1
    finally:
        if not (keep and succeeded):  # a failed demo cleans up after itself, KEEP=1 or not
            cp.stop()
            print("stopped the local cluster", flush=True)


if __name__ == "__main__":
    sys.exit(main())
