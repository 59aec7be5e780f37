"""`make demo`: the operator's main job, for real, on a local cluster with a real node.

Inside the harness's network namespace (hack/in-netns.sh): etcd + kube-apiserver + controllers and a
real node (containerd, kubelet, kube-proxy, CoreDNS), the operator installed in-cluster from
config/default, the sample EtcdStorage `wardle`, and k8s.io/sample-apiserver running in namespace
wardle on only what the operator delivered there, registered as wardle.example.com. A Flunder is
created through the main kube-apiserver, listed back, and found under /wardle/ in the core etcd. A
second tenant's API server sees none of it. KEEP=1 leaves it all running (`make cluster-down` stops it).
"""

from __future__ import annotations

import sys
import time

import yaml

from localcp.admin import OPERATOR_NAMESPACE, kubectl_apply
from localcp.cluster import ControlPlane
from localcp.config import BIN_DIR
from localcp.dns import install_dns
from localcp.incluster import install_operator
from localcp.narrate import kubectl, run_demo, step
from localcp.probes import StartError
from localcp.wardle import (
    apiservice_available,
    core_keys,
    etcdstorage,
    flunders_seen_by,
    tenant_apiserver,
    wait_ready,
)

SECOND = "wardle-b"  # a second tenant with its own API server, to show what it cannot see


def demo(cp: ControlPlane) -> None:
    t0 = time.monotonic()
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
    seen = flunders_seen_by(cp, SECOND)
    if seen:
        raise StartError(f"{SECOND}'s API server sees objects it must not: {seen}")
    print(f"$ kubectl --server=https://<{SECOND}/api> get flunders -A\n(none: {SECOND}'s API server lists no "
          "flunders)", flush=True)


def main() -> int:
    cp = ControlPlane(node="real")
    return run_demo("demo", cp, lambda: demo(cp), [
        f"{BIN_DIR / 'kubectl'} --kubeconfig {cp.kubeconfig} get pods -A",
        f"ctr --address {cp.real_node.socket} -n k8s.io containers ls"])


if __name__ == "__main__":
    sys.exit(main())
