"""Fixtures of the real-node tests: one cluster with a real node (containerd, kubelet, kube-proxy,
CoreDNS) per session, with the operator installed in-cluster from config/default, as a user installs it."""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from ansible_collections.etcdproxy.operator.plugins.module_utils import names
from kubernetes import client

from localcp.admin import OPERATOR_NAMESPACE
from localcp.cluster import ControlPlane
from localcp.config import REPO
from localcp.dns import install_dns
from localcp.etcdclient import Client
from localcp.incluster import install_operator
from localcp.probes import StartError, accepts, wait_for
from localcp.tenant import delivered_files
from localcp.wardle import GROUP, PLURAL, VERSION, etcdstorage, wait_ready

WORKDIR = REPO / ".cache" / "test-node"
SAMPLE = REPO / "config" / "samples" / "etcd_v1alpha1_etcdstorage.yaml"
SAMPLE_REPLICAS = yaml.safe_load(SAMPLE.read_text())["spec"]["replicas"]
TIMEOUT = float(os.environ.get("ETCDPROXY_TEST_TIMEOUT", "90"))


@dataclass
class Node:
    cp: ControlPlane

    @functools.cached_property
    def api(self) -> client.ApiClient:
        """One admin client (and its connection pool) for the session, not one per poll."""
        return self.cp.api()

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def wait(self, what: str, check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        """Poll until ``check`` holds; on timeout fail with the tails of the cluster's logs."""
        try:
            wait_for(what, check, timeout, interval=0.2)
        except StartError as exc:
            pytest.fail(f"{exc}\n{self.cp.log_tails(15)}")

    def tenant(self, name: str, namespace: str, spec: dict | None = None) -> None:
        """An EtcdStorage like the sample (delivering to ``namespace``), Ready, with every replica Ready
        (the EtcdStorage is Ready as soon as its Deployment is available, which can be one pod of two), and
        its Service routed: kube-proxy writes a new Service's rules a moment after its endpoints are ready
        (until then a connection is refused), and a test's first call must meet the proxy, not that lag."""
        etcdstorage(self.cp, name, namespace, spec)
        wait_ready(self.cp, name)
        replicas = (spec or {}).get("replicas", SAMPLE_REPLICAS)
        self.wait(f"{replicas} proxy pods of {name} Ready", lambda: len(self.ready_pods(name)) == replicas)
        ip = self.service_ip(name)
        self.wait(f"kube-proxy routing the Service of {name}", lambda: accepts(ip, 2379))

    def annotate(self, name: str, key: str, value: str) -> None:
        client.CustomObjectsApi(self.api).patch_cluster_custom_object(
            GROUP, VERSION, PLURAL, name, {"metadata": {"annotations": {key: value}}})

    def delete_tenant(self, name: str) -> None:
        client.CustomObjectsApi(self.api).delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)

    def storage(self, name: str) -> dict:
        """The EtcdStorage ``name`` as the API server has it."""
        return client.CustomObjectsApi(self.api).get_cluster_custom_object(GROUP, VERSION, PLURAL, name)

    def condition(self, name: str, ctype: str) -> dict:
        """Condition ``ctype`` of EtcdStorage ``name`` ({} when it has none)."""
        conds = (self.storage(name).get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == ctype), {})

    def proxy_pods(self, name: str) -> list[client.V1Pod]:
        return self.core.list_namespaced_pod(
            OPERATOR_NAMESPACE, label_selector=f"{names.STORAGE_LABEL}={name}").items

    def ready_pods(self, name: str) -> list[client.V1Pod]:
        return [p for p in self.proxy_pods(name) if p.metadata.deletion_timestamp is None and any(
            c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))]

    def service_ip(self, name: str) -> str:
        return self.core.read_namespaced_service(names.proxy(name), OPERATOR_NAMESPACE).spec.cluster_ip

    def server_name(self, name: str) -> str:
        return f"{names.proxy(name)}.{OPERATOR_NAMESPACE}.svc"

    def client(self, name: str, files: tuple[str, str, str], retry: bool = False) -> Client:
        """A client of the tenant's Service (its ClusterIP, through kube-proxy) with ``files``, as an API server
        connects; ``retry``: retry UNAVAILABLE as etcd's Go client does."""
        return Client(f"{self.service_ip(name)}:2379", *files, server_name=self.server_name(name),
                      retry_unavailable=retry)

    def wait_rolled(self, name: str, before: set[str], replicas: int = SAMPLE_REPLICAS) -> None:
        """Until every pod of ``before`` (names) is gone and ``replicas`` new ones are Ready."""
        self.wait("the pods rolled", lambda: len(self.ready_pods(name)) == replicas and not before & {
            p.metadata.name for p in self.proxy_pods(name)}, 120)

    def files(self, namespace: str, out: Path) -> tuple[str, str, str]:
        """What the API server in ``namespace`` was given (the sample's ConfigMap and Secret names)."""
        return delivered_files(self.core, namespace, out, configmap="etcd-serving-ca", secret="etcd-client-cert")


def container_pid(pod: client.V1Pod, container: str = "guard") -> int:
    """The host PID of a container's main process (found by its ID in /proc/<pid>/cgroup)."""
    (status,) = [s for s in pod.status.container_statuses if s.name == container]
    cid = status.container_id.split("://")[1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if cid in (entry / "cgroup").read_text() and (entry / "comm").read_text().strip() != "pause":
                return int(entry.name)
        except OSError:
            continue
    raise LookupError(f"no process of container {cid}")


def kill_container(pod: client.V1Pod, container: str = "guard") -> None:
    os.kill(container_pid(pod, container), signal.SIGKILL)


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    cp = ControlPlane(workdir=WORKDIR, node="real")
    try:
        cp.start()
        install_dns(cp)
        # As shipped but for the staged CA rotation's wait (a sixth of the CA's lifetime by default):
        # long enough for kubelet to carry a new bundle to every pod (syncFrequency 10 s here).
        install_operator(cp, env={"ETCDPROXY_CA_OVERLAP": "30s"})
    except StartError as exc:
        cp.stop()
        pytest.fail(f"the real-node cluster did not start: {exc}\n{cp.log_tails()}")
    yield Node(cp)
    cp.stop()
