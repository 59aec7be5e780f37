"""A real kube-apiserver as a tenant: behind the operator's proxy, with only the material delivered to it."""

from __future__ import annotations

import threading

from kubernetes import client, watch

from localcp.tenant import delivered_files, etcdctl, start_proxy
from localcp.tenant_apiserver import TenantApiserver, consistent_list_seconds, start_tenant_apiserver


def cache_reads(metrics: str, resource: str) -> dict[tuple[str, str], float]:
    """apiserver_watch_cache_consistent_read_total of one resource, by (success, fallback)."""
    out: dict[tuple[str, str], float] = {}
    for line in metrics.splitlines():
        if line.startswith("apiserver_watch_cache_consistent_read_total{") and f'resource="{resource}"' in line:
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:line.index("}")].split(","))
            key = (labels["success"].strip('"'), labels["fallback"].strip('"'))
            out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return out


def configmaps(api: client.CoreV1Api) -> list[str]:
    return [c.metadata.name for c in api.list_namespaced_config_map("default").items]


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
            servers[n] = start_tenant_apiserver(cp, proxies[n], delivered_files(storages.core, f"{n}-ns", tmp_path),
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
        core = (",".join(cp.etcd_endpoints), *cp.core_files())
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
        # Events are stored with a TTL: the API server grants a lease and attaches them to it.
        tenant.create_namespaced_event("default", {
            "metadata": {"name": "leased-event"}, "involvedObject": {"kind": "ConfigMap", "name": "through-the-proxy",
                                                                     "namespace": "default"},
            "reason": "Test", "message": "stored with a lease", "type": "Normal"})
        assert tenant.read_namespaced_event("leased-event", "default").message == "stored with a lease"
        assert "only-in-b" not in [n.metadata.name for n in tenant.list_namespace().items]
        assert "only-in-b" not in [n.metadata.name for n in main_api.list_namespace().items]

        # The guard reports the core's version and answers watch progress requests as the core does, so
        # the API server serves consistent LISTs from its watch cache: none fell back to etcd, and the
        # LISTs read nothing of the tenant's objects from the core.
        log = servers[name].log.read_text(errors="replace")
        assert "RequestWatchProgress feature is not supported" not in log
        read_before = proxies[name].metric("etcdproxy_guard_range_response_bytes_total")
        times = consistent_list_seconds(tenant, 20)
        print(f"consistent LIST through the guard: max {max(times) * 1000:.0f} ms, "
              f"median {sorted(times)[10] * 1000:.0f} ms")
        # A stalled read waits ~3 s for a progress notification; a healthy one takes milliseconds.
        assert max(times) < 1.5, times
        served = cache_reads(servers[name].metrics(), "configmaps")
        assert served.get(("true", "false"), 0) >= 20, served  # success, no fallback
        assert not served.get(("true", "true")), served
        # Each read asked the core for the current revision (a Get of one absent key), nothing more.
        read = proxies[name].metric("etcdproxy_guard_range_response_bytes_total") - read_before
        assert read < 20 * 200, read
    finally:
        for server in servers.values():
            server.stop()
        for proxy in proxies.values():
            proxy.stop()


def test_kube_apiserver_1_37_falls_back_from_range_stream(storages, cp, tmp_path):
    """k8s.io/apiserver 1.37 lists with KV/RangeStream first (feature EtcdRangeStream, beta, on) and falls
    back to Range only on UNIMPLEMENTED: through the guard it must work, and use Range."""
    name, ns = storages.create_ready_tenant("t137")
    endpoint = start_proxy(storages.core, storages.deployment(name), cp.logs)
    server = None
    try:
        server = start_tenant_apiserver(cp, endpoint, delivered_files(storages.core, ns, tmp_path), tmp_path, name,
                                        binary="kube-apiserver-1.37")
        api = server.core()
        assert client.VersionApi(server.api).get_code().git_version == "v1.37.2"
        api.create_namespaced_config_map("default", {"metadata": {"name": "on-137"}, "data": {"k": "v"}})
        assert "on-137" in [c.metadata.name for c in api.list_config_map_for_all_namespaces().items]
        assert "on-137" in configmaps(api)
        # It asked for RangeStream, got UNIMPLEMENTED, and listed with Range instead.
        assert endpoint.metric("etcdproxy_guard_refused_total", method="/etcdserverpb.KV/RangeStream",
                               code="Unimplemented") >= 1
        # (Its LISTs are served from the watch cache, filled by a Range list: storage list metrics stay empty.)
        assert endpoint.metric("grpc_server_handled_total", grpc_method="Range", grpc_code="OK") >= 1
        assert not [line for line in server.metrics().splitlines()
                    if line.startswith("apiserver_storage_list_duration_seconds_count") and 'streamed="true"' in line]
        times = consistent_list_seconds(api, 10)
        assert max(times) < 1.5, times
    finally:
        if server is not None:
            server.stop()
        endpoint.stop()
