"""A real kube-apiserver as a tenant: its only storage is a tenant endpoint, with the delivered material."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config

from .cluster import ControlPlane
from .config import BIN_DIR
from .kubeconfigs import write_kubeconfig
from .probes import free_port, https_get, wait_for
from .processes import stop_pid

# What a kube-apiserver needs behind the proxy, besides --etcd-servers/--etcd-cafile/--etcd-certfile/--etcd-keyfile:
# the core cluster's own compaction covers the shared keyspace, so the tenant must not compact it.
TENANT_FLAGS = ["--etcd-compaction-interval=0"]


@dataclass
class TenantApiserver:
    proc: subprocess.Popen
    port: int
    log: Path
    api: client.ApiClient

    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def stop(self) -> None:
        stop_pid(self.proc.pid)

    def metrics(self) -> str:
        p = self.api.configuration
        status, body = https_get(self.port, "/metrics", Path(p.ssl_ca_cert), Path(p.cert_file), Path(p.key_file),
                                 timeout=10)
        assert status == 200
        return body.decode()


def start_tenant_apiserver(cp: ControlPlane, proxy: Any, files: tuple[str, str, str], tmp_path: Path,
                           name: str, binary: str = "kube-apiserver") -> TenantApiserver:
    """A kube-apiserver whose only storage is the tenant endpoint, with the delivered material.
    ``binary``: ``kube-apiserver`` (v1.34) or ``kube-apiserver-1.37``, both built by hack/install-tools.sh."""
    ca, cert, key = files
    p = cp.pki
    port = free_port()
    log = cp.logs / f"{name}-apiserver.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen([
            str(BIN_DIR / binary), f"--etcd-servers={proxy.endpoint}", f"--etcd-cafile={ca}",
            f"--etcd-certfile={cert}", f"--etcd-keyfile={key}", *TENANT_FLAGS,
            "--bind-address=127.0.0.1", f"--secure-port={port}", "--advertise-address=127.0.0.1",
            f"--tls-cert-file={p.path('serving-localhost')}",
            f"--tls-private-key-file={p.path('serving-localhost', 'key')}",
            f"--client-ca-file={p.path('kube-ca')}", "--authorization-mode=RBAC",
            "--service-account-issuer=https://tenant.invalid", f"--service-account-key-file={p.path('sa', 'pub')}",
            f"--service-account-signing-key-file={p.path('sa', 'key')}", "--service-cluster-ip-range=10.97.0.0/16",
            "--endpoint-reconciler-type=none", f"--cert-dir={tmp_path}/{name}-certs",
        ], stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    admin = (p.path("admin"), p.path("admin", "key"))
    try:
        wait_for("tenant kube-apiserver /readyz", lambda: https_get(port, "/readyz", p.path("kube-ca"), *admin)[0]
                 == 200, 180, proc, log, interval=0.5)
    except BaseException:
        stop_pid(proc.pid)
        raise
    kubeconfig = write_kubeconfig(tmp_path / f"{name}.kubeconfig", port, p.path("kube-ca"), *admin)
    return TenantApiserver(proc, port, log, config.new_client_from_config(config_file=str(kubeconfig)))


def consistent_list_seconds(api: client.CoreV1Api, n: int) -> list[float]:
    """Wall time of ``n`` consistent LISTs (no resourceVersion: must reflect the latest etcd revision)."""
    out = []
    for _ in range(n):
        start = time.monotonic()
        api.list_namespaced_config_map("default")
        out.append(time.monotonic() - start)
    return out


