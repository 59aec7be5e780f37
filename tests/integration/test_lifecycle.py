"""Deletion with nothing lost by surprise: deletionPolicy, delivered material, name reuse."""

from __future__ import annotations

import base64

from ansible_collections.etcdproxy.operator.plugins.module_utils.x509 import fingerprint, load_certs

from localcp.admin import OPERATOR_NAMESPACE, ensure_namespace
from localcp.tenant import delivered_files, start_proxy
from localcp.tenant import etcdctl as tenant_etcdctl


def etcdctl(cp, *args: str) -> str:
    """etcdctl on the core with the admin's material."""
    out = tenant_etcdctl(",".join(cp.etcd_endpoints), *cp.core_files(), *args)
    assert out.returncode == 0, out.stderr
    return out.stdout


def keys(cp, prefix: str) -> list[str]:
    return etcdctl(cp, "get", "--prefix", "--keys-only", prefix).split()


def test_delete_policy_removes_exactly_its_prefix(storages, cp):
    name = storages.unique("del")
    sibling = name + "bar"  # its name has ours as a prefix
    storages.create(name, {"replicas": 1, "deletionPolicy": "Delete"})
    storages.create(sibling, {"replicas": 1, "deletionPolicy": "Delete"})
    storages.wait_condition(name, "Ready", "True")
    for key in (f"/{name}/registry/a", f"/{name}/registry/b", f"/{sibling}/registry/a", f"/{name}"):
        etcdctl(cp, "put", key, "v")
    storages.delete(name)
    storages.wait(f"{name} deleted", lambda: storages.get(name) is None)
    assert keys(cp, f"/{name}/") == []
    assert keys(cp, f"/{sibling}/") == [f"/{sibling}/registry/a"]
    assert keys(cp, f"/{name}") == [f"/{name}", f"/{sibling}/registry/a"]  # outside the prefix: kept
    assert any("removed 2 keys" in e.message for e in storages.events(name, "KeysDeleted"))
    assert storages.condition(sibling, "Ready")["status"] == "True"


def test_delete_policy_revokes_the_leases_the_tenant_was_granted(storages, cp, tmp_path):
    """A lease outlives its keys by its TTL (the tenant picks it, up to years): Delete revokes the tenant's,
    and only the tenant's."""
    name, other = storages.unique("dellease"), storages.unique("otherlease")
    for n in (name, other):
        storages.create(n, {"replicas": 1, "deletionPolicy": "Delete",
                            "caCertConfigMap": [{"name": "etcd-ca", "namespace": f"{n}-ns"}],
                            "clientCertSecret": [{"name": "etcd-client", "namespace": f"{n}-ns"}]})
    leases = {}
    for n in (name, other):
        storages.wait_condition(n, "Ready", "True")
        proxy = start_proxy(storages.core, storages.deployment(n), cp.logs)
        try:
            files = delivered_files(storages.core, f"{n}-ns", tmp_path)
            granted = tenant_etcdctl(proxy.endpoint, *files, "lease", "grant", "36000")
            assert granted.returncode == 0, granted.stderr
            leases[n] = granted.stdout.split()[1]  # "lease 694d… granted with TTL(36000s)"
            put = tenant_etcdctl(proxy.endpoint, *files, "put", "/registry/events/e", "v", f"--lease={leases[n]}")
            assert put.returncode == 0, put.stderr
        finally:
            proxy.stop()
    assert "remaining" in etcdctl(cp, "lease", "timetolive", leases[name])
    storages.delete(name)
    storages.wait(f"{name} deleted", lambda: storages.get(name) is None)
    assert "already expired" in etcdctl(cp, "lease", "timetolive", leases[name])  # revoked
    assert "remaining" in etcdctl(cp, "lease", "timetolive", leases[other])  # another tenant's: kept
    assert any("revoked the 1 leases" in e.message for e in storages.events(name, "KeysDeleted"))


def test_retain_keeps_keys_and_says_so(storages, cp):
    name = storages.unique("keep")
    storages.create(name, {"replicas": 1})
    storages.wait_condition(name, "Ready", "True")
    assert storages.get(name)["spec"]["deletionPolicy"] == "Retain"
    etcdctl(cp, "put", f"/{name}/registry/x", "v")
    storages.delete(name)
    storages.wait(f"{name} deleted", lambda: storages.get(name) is None)
    assert keys(cp, f"/{name}/") == [f"/{name}/registry/x"]
    assert storages.events(name, "KeysRetained")


def test_delivered_material_is_released_and_admin_objects_kept(storages, api):
    name = storages.unique("rel")
    ns = f"{name}-ns"
    ensure_namespace(api, ns)
    core = storages.core
    core.create_namespaced_secret(ns, {"metadata": {"name": "precreated"}, "type": "kubernetes.io/tls",
                                       "data": {"tls.crt": "", "tls.key": "",
                                                "note": base64.b64encode(b"admin's").decode()}})
    storages.create(name, {"replicas": 1, "clientCertSecret": [{"name": "precreated", "namespace": ns}],
                           "caCertConfigMap": [{"name": "made-by-operator", "namespace": ns}]})
    storages.wait_condition(name, "Ready", "True")
    assert core.read_namespaced_secret("precreated", ns).data["tls.key"]
    storages.delete(name)
    storages.wait(f"{name} deleted", lambda: storages.get(name) is None)
    kept = core.read_namespaced_secret("precreated", ns)
    assert base64.b64decode(kept.data["note"]) == b"admin's"
    assert not kept.data.get("tls.key") and not kept.data.get("tls.crt")
    assert "etcd.etcdproxy.dev/storage" not in (kept.metadata.annotations or {})
    storages.wait("operator-made ConfigMap gone", lambda: not any(
        c.metadata.name == "made-by-operator" for c in core.list_namespaced_config_map(ns).items))


def test_reused_name_does_not_inherit_the_old_ca(storages):
    name = storages.unique("reuse")
    core = storages.core

    def client_ca() -> str:
        secret = core.read_namespaced_secret(f"etcd-{name}-ca", OPERATOR_NAMESPACE)
        return fingerprint(load_certs(base64.b64decode(secret.data["client-ca.crt"]).decode())[0])

    storages.create(name, {"replicas": 1})
    storages.wait_condition(name, "Ready", "True")
    first = client_ca()
    storages.delete(name)
    storages.wait(f"{name} deleted", lambda: storages.get(name) is None)
    storages.created.remove(name)
    storages.create(name, {"replicas": 1})
    storages.wait_condition(name, "Ready", "True")
    assert client_ca() != first
