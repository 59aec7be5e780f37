"""The sample tenant on the real node: an EtcdStorage delivering to a namespace, and k8s.io/sample-apiserver
("wardle", config/samples/wardle) running there on only what was delivered. Used by `make demo` and the
real-node tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from ansible_collections.etcdproxy.operator.plugins.module_utils import names
from kubernetes import client

from .admin import OPERATOR_NAMESPACE, ensure_namespace, kubectl_apply, kustomize_build, wait_deployment_ready
from .cluster import ControlPlane
from .config import BIN_DIR, REPO
from .etcdclient import Client
from .probes import wait_for
from .tenant import delivered_files, etcdctl

GROUP, VERSION, PLURAL = "etcd.etcdproxy.dev", "v1alpha1", "etcdstorages"


def etcdstorage(cp: ControlPlane, name: str, namespace: str, spec: dict | None = None) -> None:
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
    obj["spec"].update(spec or {})
    kubectl_apply(cp, yaml.safe_dump(obj), f"EtcdStorage {name}")


def service_client(cp: ControlPlane, name: str, namespace: str, out_dir: Path, retry: bool = False) -> Client:
    """A client of the tenant's Service (its ClusterIP, through kube-proxy) with what was delivered to
    ``namespace`` under the sample's names, as the tenant's API server connects."""
    core = client.CoreV1Api(cp.api())
    files = delivered_files(core, namespace, out_dir, configmap="etcd-serving-ca", secret="etcd-client-cert")
    ip = core.read_namespaced_service(names.proxy(name), OPERATOR_NAMESPACE).spec.cluster_ip
    return Client(f"{ip}:2379", *files, server_name=f"{names.proxy(name)}.{OPERATOR_NAMESPACE}.svc",
                  retry_unavailable=retry)


def wait_ready(cp: ControlPlane, name: str, settled: bool = False) -> None:
    """Until EtcdStorage ``name`` is Ready (one proxy replica serves); with ``settled``, until its status also
    reports every replica available, the last status the operator writes for an unchanged object."""
    custom = client.CustomObjectsApi(cp.api())

    def ready() -> bool:
        es = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        conditions = {c["type"]: c for c in (es.get("status") or {}).get("conditions", [])}
        if conditions.get("Ready", {}).get("status") != "True":
            return False
        return not settled or conditions.get("ProxyAvailable", {}).get("reason") == "MinimumReplicasAvailable"

    what = f"EtcdStorage {name} Ready" + (" with every proxy replica available" if settled else "")
    wait_for(what, ready, 180, None, cp.logs / "kubelet.log", interval=0.25)


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
    wait_deployment_ready(cp, namespace, "wardle-server", 120, f"sample-apiserver in {namespace}")


def apiservice_available(cp: ControlPlane) -> None:
    reg = client.ApiregistrationV1Api(cp.api())

    def available() -> bool:
        svc = reg.read_api_service("v1alpha1.wardle.example.com")
        return any(c.type == "Available" and c.status == "True" for c in svc.status.conditions or [])

    wait_for("APIService v1alpha1.wardle.example.com Available", available, 60, None, cp.logs / "kube-apiserver.log",
             interval=0.25)


def core_keys(cp: ControlPlane, prefix: str) -> str:
    out = etcdctl(cp.etcd_endpoints[0], *cp.core_files(), "get", "--prefix", "--keys-only", prefix)
    out.check_returncode()
    return "\n".join(line for line in out.stdout.splitlines() if line)


def flunders_seen_by(cp: ControlPlane, namespace: str) -> list[str]:
    """Flunders the sample-apiserver in ``namespace`` lists, asked directly at its Service (not through
    the main kube-apiserver), as the cluster admin."""
    ip = client.CoreV1Api(cp.api()).read_namespaced_service("api", namespace).spec.cluster_ip
    argv = [str(BIN_DIR / "kubectl"), f"--kubeconfig={cp.kubeconfig}", f"--server=https://{ip}",
            "--insecure-skip-tls-verify", "get", "flunders", "-A", "-o", "name"]
    answer: list[str] = []

    def answers() -> bool:  # kube-proxy programs a new Service's rules a moment after its pod is Ready
        out = subprocess.run(argv, capture_output=True, text=True)
        answer[:] = [line for line in out.stdout.splitlines() if line]
        return out.returncode == 0

    wait_for(f"the API server behind {namespace}/api", answers, 30, None, cp.logs / "kube-proxy.log", interval=0.25)
    return answer
