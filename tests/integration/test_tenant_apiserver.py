"""A real kube-apiserver as a tenant: behind the operator's proxy, with only the material delivered to it."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config, watch

from hack.localcp.cluster import BIN_DIR, free_port, https_get, stop_pid, wait_for
from hack.localcp.tenant import start_proxy

from .test_data_path import etcdctl, tenant_files

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

    def metrics(self) -> str:
        p = self.api.configuration
        status, body = https_get(self.port, "/metrics", Path(p.ssl_ca_cert), Path(p.cert_file), Path(p.key_file),
                                 timeout=10)
        assert status == 200
        return body.decode()


def start_tenant_apiserver(cp, proxy, files: tuple[str, str, str], tmp_path: Path, name: str) -> TenantApiserver:
    """A kube-apiserver whose only storage is the tenant endpoint, with the delivered material."""
    ca, cert, key = files
    p = cp.pki
    port = free_port()
    log = cp.logs / f"{name}-apiserver.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen([
            str(BIN_DIR / "kube-apiserver"), f"--etcd-servers={proxy.endpoint}", f"--etcd-cafile={ca}",
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
    kubeconfig = tmp_path / f"{name}.kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": f"https://127.0.0.1:{port}",
                                               "certificate-authority": str(p.path("kube-ca"))}}],
        "users": [{"name": "a", "user": {"client-certificate": str(admin[0]), "client-key": str(admin[1])}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "a"}}]}))
    return TenantApiserver(proc, port, log, config.new_client_from_config(config_file=str(kubeconfig)))


def configmaps(api: client.CoreV1Api) -> list[str]:
    return [c.metadata.name for c in api.list_namespaced_config_map("default").items]


def consistent_list_seconds(api: client.CoreV1Api, n: int) -> list[float]:
    """Wall time of ``n`` consistent LISTs (no resourceVersion: must reflect the latest etcd revision)."""
    out = []
    for _ in range(n):
        start = time.monotonic()
        api.list_namespaced_config_map("default")
        out.append(time.monotonic() - start)
    return out


def test_tenant_kube_apiservers_run_through_the_guard(storages, cp, tmp_path):
    names = [storages.unique("tenant"), storages.unique("tenantb")]
    for name in names:
        ns = f"{name}-ns"
        storages.create(name, {"replicas": 1, "caCertConfigMap": [{"name": "etcd-ca", "namespace": ns}],
                               "clientCertSecret": [{"name": "etcd-client", "namespace": ns}]})
    for name in names:
        storages.wait_condition(name, "Ready", "True")
    name, other = names
    proxies = {n: start_proxy(storages.core, storages.deployment(n), cp.logs) for n in names}
    servers: dict[str, TenantApiserver] = {}
    try:
        for n in names:
            servers[n] = start_tenant_apiserver(cp, proxies[n], tenant_files(storages, f"{n}-ns", tmp_path),
                                                tmp_path, n)
        tenant = servers[name].core()
        seen = []
        w = watch.Watch()

        def watcher() -> None:
            for event in w.stream(tenant.list_namespaced_config_map, "default", timeout_seconds=60):
                seen.append((event["type"], event["object"].metadata.name))
                if event["object"].metadata.name == "through-the-proxy":
                    w.stop()

        thread = threading.Thread(target=watcher, daemon=True)
        thread.start()
        tenant.create_namespaced_config_map("default", {"metadata": {"name": "through-the-proxy"},
                                                        "data": {"k": "v"}})
        listed = [c.metadata.name for c in tenant.list_namespaced_config_map("default").items]
        assert "through-the-proxy" in listed
        thread.join(timeout=60)
        assert ("ADDED", "through-the-proxy") in seen
        # Its keys are in the core etcd under the tenant's prefix, and not in the main cluster's keyspace.
        p = cp.pki
        core = (",".join(cp.etcd_endpoints), str(p.path("etcd-ca")), str(p.path("apiserver-etcd-client")),
                str(p.path("apiserver-etcd-client", "key")))
        tenant_keys = etcdctl(*core, "get", "--prefix", f"/{name}/", "--keys-only").stdout.split()
        assert f"/{name}//registry/configmaps/default/through-the-proxy" in tenant_keys
        assert all(k.startswith(f"/{name}/") for k in tenant_keys)
        main = etcdctl(*core, "get", "/registry/configmaps/default/through-the-proxy", "--keys-only")
        assert main.stdout.strip() == ""
        main_api = client.CoreV1Api(storages.api)
        assert "through-the-proxy" not in configmaps(main_api)
        # The second tenant's API server sees none of it; its own namespace list is its own.
        other_api = servers[other].core()
        assert "through-the-proxy" not in configmaps(other_api)
        other_api.create_namespace({"metadata": {"name": "only-in-b"}})
        assert "only-in-b" not in [n.metadata.name for n in tenant.list_namespace().items]
        assert "only-in-b" not in [n.metadata.name for n in main_api.list_namespace().items]

        # The guard reports etcd 3.5.0, so the API server does not rely on watch progress requests
        # (which the stock proxy drops) and consistent LISTs do not wait for them.
        assert "RequestWatchProgress feature is not supported" in servers[name].log.read_text(errors="replace")
        times = consistent_list_seconds(tenant, 20)
        print(f"consistent LIST through the guard: max {max(times) * 1000:.0f} ms, "
              f"median {sorted(times)[10] * 1000:.0f} ms")
        # A stalled read waits ~3 s for a progress notification; a healthy one takes milliseconds.
        assert max(times) < 1.5, times
        # Consistent reads go to etcd, never to the watch cache's wait-for-progress path.
        from_cache = [line for line in servers[name].metrics().splitlines()
                      if line.startswith("apiserver_watch_cache_consistent_read_total") and "configmaps" in line]
        assert from_cache == []
    finally:
        for server in servers.values():
            stop_pid(server.proc.pid)
        for proxy in proxies.values():
            proxy.stop()
