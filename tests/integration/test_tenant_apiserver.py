"""A real kube-apiserver as a tenant: behind the operator's proxy, with only the material delivered to it."""

from __future__ import annotations

import json
import subprocess
import threading

from kubernetes import client, config, watch

from hack.localcp.cluster import BIN_DIR, free_port, https_get, stop_pid, wait_for
from hack.localcp.tenant import start_proxy

from .test_data_path import etcdctl, tenant_files

# What a kube-apiserver needs behind the proxy, besides --etcd-servers/--etcd-cafile/--etcd-certfile/--etcd-keyfile:
# the core cluster's own compaction covers the shared keyspace, so the tenant must not compact it.
TENANT_FLAGS = ["--etcd-compaction-interval=0"]


def test_tenant_kube_apiserver_runs_through_the_proxy(storages, cp, tmp_path):
    name = storages.unique("tenant")
    ns = f"{name}-ns"
    storages.create(name, {"replicas": 1, "caCertConfigMap": [{"name": "etcd-ca", "namespace": ns}],
                           "clientCertSecret": [{"name": "etcd-client", "namespace": ns}]})
    storages.wait_condition(name, "Ready", "True")
    proxy = start_proxy(storages.core, storages.deployment(name), cp.logs)
    ca, cert, key = tenant_files(storages, ns, tmp_path)
    p = cp.pki
    port = free_port()
    log = cp.logs / f"{name}-apiserver.log"
    fh = open(log, "ab")
    apiserver = subprocess.Popen([
        str(BIN_DIR / "kube-apiserver"), f"--etcd-servers={proxy.endpoint}", f"--etcd-cafile={ca}",
        f"--etcd-certfile={cert}", f"--etcd-keyfile={key}", *TENANT_FLAGS,
        "--bind-address=127.0.0.1", f"--secure-port={port}", "--advertise-address=127.0.0.1",
        f"--tls-cert-file={p.path('serving-localhost')}",
        f"--tls-private-key-file={p.path('serving-localhost', 'key')}",
        f"--client-ca-file={p.path('kube-ca')}", "--authorization-mode=RBAC",
        "--service-account-issuer=https://tenant.invalid", f"--service-account-key-file={p.path('sa', 'pub')}",
        f"--service-account-signing-key-file={p.path('sa', 'key')}", "--service-cluster-ip-range=10.97.0.0/16",
        "--endpoint-reconciler-type=none", f"--cert-dir={tmp_path}/certs",
    ], stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    fh.close()
    try:
        admin = (p.path("admin"), p.path("admin", "key"))
        wait_for("tenant kube-apiserver /readyz", lambda: https_get(port, "/readyz", p.path("kube-ca"), *admin)[0]
                 == 200, 180, apiserver, log, interval=0.5)
        kubeconfig = tmp_path / "tenant.kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "t",
            "clusters": [{"name": "t", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                   "certificate-authority": str(p.path("kube-ca"))}}],
            "users": [{"name": "a", "user": {"client-certificate": str(admin[0]), "client-key": str(admin[1])}}],
            "contexts": [{"name": "t", "context": {"cluster": "t", "user": "a"}}]}))
        tenant = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))

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
        core = (",".join(cp.etcd_endpoints), str(p.path("etcd-ca")), str(p.path("apiserver-etcd-client")),
                str(p.path("apiserver-etcd-client", "key")))
        tenant_keys = etcdctl(*core, "get", "--prefix", f"/{name}/", "--keys-only").stdout.split()
        assert f"/{name}//registry/configmaps/default/through-the-proxy" in tenant_keys
        main = etcdctl(*core, "get", "/registry/configmaps/default/through-the-proxy", "--keys-only")
        assert main.stdout.strip() == ""
        main_api = client.CoreV1Api(storages.api)
        main_names = [c.metadata.name for c in main_api.list_namespaced_config_map("default").items]
        assert "through-the-proxy" not in main_names
    finally:
        stop_pid(apiserver.pid)
        proxy.stop()
