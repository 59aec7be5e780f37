"""Odd but plausible input and hand edits, tried as a new user would: what admission accepts, the operator
builds; what it cannot build is a condition with the API server's message, never a silent loop."""

from __future__ import annotations

import pytest
from ansible_collections.etcdproxy.operator.plugins.module_utils import names
from kubernetes import client
from kubernetes.client.rest import ApiException

from localcp.admin import OPERATOR_NAMESPACE, ensure_namespace

from .conftest import GROUP, PLURAL, VERSION


def test_the_longest_names_admission_accepts_become_ready(storages):
    """58-character name, 253-character destination names in 63-character namespaces, 32 of each kind."""
    name = ("b" + storages.unique("")).ljust(58, "x")[:58]
    ns = ("n" * 56) + name[-7:]
    assert len(name) == 58 and len(ns) == 63
    ensure_namespace(storages.api, ns)
    long_dest = ("d" * 245) + name[-8:]
    cms = [{"name": long_dest if i == 0 else f"ca-{i}", "namespace": ns} for i in range(32)]
    secrets = [{"name": long_dest if i == 0 else f"client-{i}", "namespace": ns} for i in range(32)]
    storages.create(name, {"replicas": 1, "caCertConfigMap": cms, "clientCertSecret": secrets})
    storages.wait_condition(name, "Ready", "True", timeout=180)
    assert storages.service(name)["metadata"]["name"] == f"etcd-{name}"
    secret = storages.core.read_namespaced_secret(long_dest, ns)
    assert secret.type == "kubernetes.io/tls" and secret.data["tls.crt"]
    assert len(storages.get(name)["status"]["certificates"]["clients"]) == 32


def test_one_name_too_long_is_refused_at_admission(api):
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "EtcdStorage", "metadata": {"name": "x" * 59}, "spec": {}}
    with pytest.raises(ApiException) as err:
        client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    assert err.value.status == 422 and "at most 58 characters" in err.value.body


def test_the_main_kube_apiservers_prefix_is_refused_at_admission(api):
    """EtcdStorage registry would serve /registry/, the main cluster's own objects (Secrets included; read
    through its endpoint before this rule), and deletionPolicy Delete would have removed them all."""
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "EtcdStorage", "metadata": {"name": "registry"}, "spec": {}}
    with pytest.raises(ApiException) as err:
        client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    assert err.value.status == 422 and "must not be registry" in err.value.body


def test_a_prefix_the_core_s_users_keep_gets_no_proxy_no_backup_and_its_keys_are_never_deleted(storages, operator,
                                                                                                 cp):
    """ETCDPROXY_RESERVED_PREFIXES names the core's other users (a kube-apiserver with another --etcd-prefix);
    one added after a tenant of that name was served closes its endpoint."""
    name, _ = storages.create_ready_tenant("core-user")
    storages.patch(name, {"spec": {"deletionPolicy": "Delete"}})
    with cp.core_client() as core:
        core.put(f"/{name}/registry/pods/default/theirs".encode(), b"the core user's data")
    with operator.restarted(extra_env={"ETCDPROXY_RESERVED_PREFIXES": name}):  # not a key prefix
        cond = storages.wait_condition(name, "Ready", "False", reason="OperatorMisconfigured")
        assert f"ETCDPROXY_RESERVED_PREFIXES={name} must list key prefixes starting with /" in cond["message"]
    with operator.restarted(extra_env={"ETCDPROXY_RESERVED_PREFIXES": f"/elsewhere, /{name}"}):
        cond = storages.wait_condition(name, "Ready", "False", reason="PrefixReserved")
        want = f"PrefixAvailable: metadata.name: the prefix /{name}/ shares keys with /{name}"
        assert cond["message"].startswith(want), cond["message"]
        storages.wait("the proxy Deployment and Service removed",
                      lambda: storages.deployment(name) is None and storages.service(name) is None)
        assert [e.type for e in storages.events(name, "PrefixReserved")] == ["Warning"]
        backups = client.CustomObjectsApi(storages.api)
        backup = storages.unique("reserved-backup")
        backups.create_namespaced_custom_object(GROUP, VERSION, OPERATOR_NAMESPACE, names.BACKUP_PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": names.BACKUP_KIND,
            "metadata": {"name": backup, "namespace": OPERATOR_NAMESPACE},
            "spec": {"storageName": name, "s3": {"endpoint": "https://127.0.0.1:1", "bucket": "tenant-backups",
                                                 "credentialsSecret": "none"}}})

        def backup_status() -> dict:
            return backups.get_namespaced_custom_object(GROUP, VERSION, OPERATOR_NAMESPACE, names.BACKUP_PLURAL,
                                                        backup).get("status") or {}

        storages.wait("the backup request failed", lambda: backup_status().get("phase") == "Failed")
        assert backup_status()["conditions"][0]["reason"] == "StoragePrefixReserved"
        backups.delete_namespaced_custom_object(GROUP, VERSION, OPERATOR_NAMESPACE, names.BACKUP_PLURAL, backup)
        storages.delete(name)
        storages.wait("the EtcdStorage gone", lambda: storages.get(name) is None)
        (kept,) = storages.events(name, "KeysKept")
        assert kept.type == "Warning" and "nothing was deleted" in kept.message
        with cp.core_client() as core:
            assert core.range(f"/{name}/registry/pods/default/theirs".encode()) != []


def test_a_setting_holding_yaml_syntax_is_reported_and_nothing_is_applied(storages, operator):
    """The operator's settings reach the proxy's YAML as JSON strings: one holding a newline and YAML syntax
    (which would have broken the rendered YAML and failed every run) still renders, and the run reports it
    instead of failing; the proxy keeps what it had."""
    name, _ = storages.create_ready_tenant("hostile-setting")
    args = storages.deployment(name)["spec"]["template"]["spec"]["containers"][0]["command"]
    with operator.restarted(extra_env={"ETCDPROXY_LIMIT_STORAGE": "512Mi\nkind: [broken"}):
        cond = storages.wait_condition(name, "Ready", "False", reason="OperatorMisconfigured")
        assert "the operator default for spec.limits.storage (ETCDPROXY_LIMIT_*)" in cond["message"], cond["message"]
        assert storages.condition(name, "CoreEtcdConfigured")["reason"] == "OperatorMisconfigured"
        assert storages.deployment(name)["spec"]["template"]["spec"]["containers"][0]["command"] == args
    storages.wait_condition(name, "Ready", "True")


@pytest.mark.parametrize(("resources", "message"), [
    ({"requests": {"cpu": "banana"}}, "spec.resources.requests.cpu"),
    ({"requests": {"memory": "512Mi"}, "limits": {"memory": "256Mi"}}, "each request must be at most its limit"),
    ({"limits": {"gpu": "1"}}, "resource names must be cpu, memory"),
    # Found as a new user: accepted, then the guard was OOMKilled in a loop.
    ({"limits": {"memory": "6Mi"}}, "resources.limits.memory must be at least 32Mi"),
])
def test_resources_the_api_server_would_refuse_are_refused_at_admission(api, resources, message):
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "EtcdStorage", "metadata": {"name": "bad-resources"},
            "spec": {"resources": resources}}
    with pytest.raises(ApiException) as err:
        client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
    assert err.value.status == 422 and message in err.value.body, err.value.body


def test_unknown_resource_fields_are_dropped_and_defaults_apply(storages):
    name = storages.unique("foobar")
    storages.create(name, {"replicas": 1, "resources": {"foo": "bar"}})
    storages.wait_condition(name, "Ready", "True")
    container = storages.deployment(name)["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


def test_a_refused_apply_is_a_condition_with_the_api_servers_message(storages):
    """Hugepages without cpu or memory pass admission; the API server refuses the pod template."""
    name = storages.unique("hugepages")
    storages.create(name, {"replicas": 1, "resources": {"limits": {"hugepages-2Mi": "2Mi"}}})
    cond = storages.wait_condition(name, "ProxyAvailable", "False", "ApplyFailed")
    assert "hugepages" in cond["message"].lower() and "Deployment" in cond["message"], cond["message"]
    ready = storages.condition(name, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ApplyFailed"
    assert len(storages.events(name, "ApplyFailed")) == 1
    # Retries do not flap the condition (one Event), and fixing the spec recovers.
    reconciles = storages.reconciles(name)
    storages.wait("a retry", lambda: storages.reconciles(name) >= reconciles + 1, timeout=60)
    assert len(storages.events(name, "ApplyFailed")) == 1
    storages.patch(name, {"spec": {"resources": {"limits": None, "requests": {"cpu": "50m", "memory": "64Mi"}}}})
    storages.wait_condition(name, "Ready", "True")
    assert storages.events(name, "MinimumReplicasAvailable")


def test_a_hand_edited_service_is_repaired(storages):
    name = storages.unique("svcedit")
    storages.create(name, {"replicas": 1})
    storages.wait_condition(name, "Ready", "True")
    svc = f"etcd-{name}"
    live = storages.core.read_namespaced_service(svc, OPERATOR_NAMESPACE)  # what kubectl edit does
    live.spec.ports[0].port = 2380
    storages.core.replace_namespaced_service(svc, OPERATOR_NAMESPACE, live)

    def repaired() -> bool:
        ports = storages.service(name)["spec"]["ports"]
        return ports == [{"name": "client", "port": 2379, "protocol": "TCP", "targetPort": "client"}]

    storages.wait("the Service's port repaired", repaired)
    assert storages.condition(name, "Ready")["status"] == "True"
    # Its owner reference survived the repair: it still goes with the EtcdStorage.
    refs = storages.service(name)["metadata"]["ownerReferences"]
    assert [r["name"] for r in refs] == [name]


def test_a_precreated_opaque_destination_is_used_and_said(storages):
    name = storages.unique("opaque")
    ns = f"{name}-ns"
    ensure_namespace(storages.api, ns)
    storages.core.create_namespaced_secret(ns, {"metadata": {"name": "etcd-client"}, "type": "Opaque"})
    storages.create(name, {"replicas": 1, "clientCertSecret": [{"name": "etcd-client", "namespace": ns}]})
    storages.wait_condition(name, "Ready", "True")
    assert storages.core.read_namespaced_secret("etcd-client", ns).data["tls.crt"]

    def warned() -> bool:
        return any("type Opaque" in e.message for e in storages.events(name, "DestinationNotTLS"))

    storages.wait("a DestinationNotTLS Event", warned, timeout=30)


def test_garbage_core_ca_is_a_new_event_and_reachability_is_unknown(storages, api):
    """The admin's core CA replaced by garbage: CoreEtcdConfigured says so, CoreEtcdReachable is Unknown."""
    cm_api = client.CoreV1Api(api)
    original = cm_api.read_namespaced_config_map("etcd-coreserving-ca", OPERATOR_NAMESPACE)
    name = storages.unique("garbageca")
    storages.create(name, {"replicas": 1})
    storages.wait_condition(name, "Ready", "True")
    try:
        cm_api.patch_namespaced_config_map("etcd-coreserving-ca", OPERATOR_NAMESPACE, {"data": {"ca.crt": "garbage"}})
        storages.patch(name, {"metadata": {"annotations": {"test.etcdproxy.dev/poke": "1"}}})
        cond = storages.wait_condition(name, "CoreEtcdConfigured", "False", "CoreEtcdMaterialInvalid")
        assert "not a PEM certificate bundle" in cond["message"]
        reach = storages.condition(name, "CoreEtcdReachable")
        assert reach is not None and reach["status"] == "Unknown" and reach["reason"] == "NotChecked"
    finally:
        cm_api.patch_namespaced_config_map("etcd-coreserving-ca", OPERATOR_NAMESPACE, {"data": original.data})
    storages.patch(name, {"metadata": {"annotations": {"test.etcdproxy.dev/poke": "2"}}})
    storages.wait_condition(name, "Ready", "True")


@pytest.mark.parametrize("kind", ["ConfigMap", "Secret"])
def test_deleted_core_material_is_noticed_at_once_by_every_etcdstorage(storages, api, kind):
    """The admin's core CA ConfigMap or client Secret deleted: every EtcdStorage says so within seconds
    (the periodic reconcile is 10 minutes away), and is Ready again once it is back."""
    core = client.CoreV1Api(api)
    name = "etcd-coreserving-ca" if kind == "ConfigMap" else "etcd-coreserving-cert"
    read = core.read_namespaced_config_map if kind == "ConfigMap" else core.read_namespaced_secret
    create = core.create_namespaced_config_map if kind == "ConfigMap" else core.create_namespaced_secret
    original = api.sanitize_for_serialization(read(name, OPERATOR_NAMESPACE))
    wait_until_garbage_collection_knows_etcdstorages(storages)
    tenants = [storages.unique("coregone") for _ in range(2)]
    for tenant in tenants:
        storages.create(tenant, {"replicas": 1})
    for tenant in tenants:
        storages.wait_condition(tenant, "Ready", "True")
        refs = storages.core.read_namespaced_config_map(f"etcd-{tenant}-client-ca", OPERATOR_NAMESPACE) \
            .metadata.owner_references
        # The proxy's client CA depends on the core material, beside its own EtcdStorage.
        assert {(r.kind, r.name) for r in refs} >= {("EtcdStorage", tenant), (kind, name)}
    restore = {k: original[k] for k in ("data", "type") if k in original}
    restore["metadata"] = {"name": name, "labels": original["metadata"].get("labels") or {}}
    (core.delete_namespaced_config_map if kind == "ConfigMap" else core.delete_namespaced_secret)(
        name, OPERATOR_NAMESPACE)
    try:
        for tenant in tenants:
            cond = storages.wait_condition(tenant, "CoreEtcdConfigured", "False", timeout=30)
            assert f"{name} with the core etcd" in cond["message"] and "missing" in cond["message"]
            assert storages.condition(tenant, "Ready")["status"] == "False"
            # Garbage collection only dropped the reference: the ConfigMap is still there.
            storages.core.read_namespaced_config_map(f"etcd-{tenant}-client-ca", OPERATOR_NAMESPACE)
    finally:
        create(OPERATOR_NAMESPACE, restore)
    for tenant in tenants:
        storages.wait_condition(tenant, "Ready", "True")
    # The core material keeps the client CA ConfigMap alive; the finalizer deletes it with its EtcdStorage.
    storages.delete(tenants[0])
    storages.wait(f"ConfigMap etcd-{tenants[0]}-client-ca deleted", lambda: storages.kube.get_configmap(
        OPERATOR_NAMESPACE, f"etcd-{tenants[0]}-client-ca") is None)


def wait_until_garbage_collection_knows_etcdstorages(storages) -> None:
    """The garbage collector learns new resource types from discovery every 30 s; until it knows
    EtcdStorage it leaves alone every object that references one. Proof that it does: an object owned
    only by an EtcdStorage that does not exist is deleted."""
    probe = storages.unique("gc-probe")
    storages.core.create_namespaced_config_map(OPERATOR_NAMESPACE, {"metadata": {"name": probe, "ownerReferences": [
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "EtcdStorage", "name": probe,
         "uid": "00000000-0000-0000-0000-000000000000"}]}})

    def collected() -> bool:
        try:
            storages.core.read_namespaced_config_map(probe, OPERATOR_NAMESPACE)
        except ApiException as exc:
            return exc.status == 404
        return False

    storages.wait("the garbage collector to know EtcdStorage", collected, timeout=90)
