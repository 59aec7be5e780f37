"""config/ (kustomize) against the real API server, and the RBAC it ships."""

from __future__ import annotations

import subprocess

from kubernetes import client

from localcp.admin import OPERATOR_NAMESPACE, ensure_namespace, kustomize_apply, operator_may
from localcp.config import BIN_DIR, REPO


def test_default_config_passes_server_side_dry_run_then_applies(cp, api, storages):
    out = kustomize_apply(cp, "config/default", "--dry-run=server")
    assert "deployment.apps/etcdproxy-operator serverside-applied (server dry run)" in out
    assert "clusterrole.rbac.authorization.k8s.io/etcdproxy-operator serverside-applied (server dry run)" in out
    kustomize_apply(cp, "config/default")
    apps = client.AppsV1Api(api)
    try:
        dep = apps.read_namespaced_deployment("etcdproxy-operator", OPERATOR_NAMESPACE)
        container = dep.spec.template.spec.containers[0]
        env = {e.name: e for e in container.env}
        assert env["WATCH_NAMESPACE"].value_from.field_ref.field_path == "metadata.namespace"
        assert "--max-concurrent-reconciles=2" in container.args and "--leader-elect" in container.args
        assert dep.spec.template.spec.service_account_name == "etcdproxy-operator"
        assert container.resources.limits["memory"]
        storages.wait("manager Deployment available (kwok pods)", lambda: (apps.read_namespaced_deployment(
            "etcdproxy-operator", OPERATOR_NAMESPACE).status.available_replicas or 0) == 1)
    finally:
        apps.delete_namespaced_deployment("etcdproxy-operator", OPERATOR_NAMESPACE)


def test_destination_role_example_is_valid(cp, api):
    ensure_namespace(api, "wardle", grant_delivery=False)
    out = subprocess.run([str(BIN_DIR / "kubectl"), f"--kubeconfig={cp.kubeconfig}", "apply", "--dry-run=server",
                          "-f", str(REPO / "config/rbac/destination_role_example.yaml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "role.rbac.authorization.k8s.io/etcdproxy-operator-delivery created (server dry run)" in out.stdout


def test_operator_rbac_denies_what_it_does_not_need(cp, api):
    def can(verb, resource, namespace="", group=""):
        return operator_may(api, verb, resource, namespace, group)

    assert can("list", "secrets", OPERATOR_NAMESPACE)
    assert can("patch", "etcdstorages", group="etcd.etcdproxy.dev")
    assert not can("list", "secrets")  # no cluster-wide Secret access
    assert not can("get", "secrets", "kube-system")
    assert not can("create", "deployments", "default", group="apps")
    # Backups: Jobs and a look at pods in its own namespace only (a Job with a pod template is a way to run
    # anything as any ServiceAccount of that namespace).
    assert can("create", "jobs", OPERATOR_NAMESPACE, group="batch")
    assert can("patch", "etcdstoragebackups/status", OPERATOR_NAMESPACE, group="etcd.etcdproxy.dev")
    assert not can("create", "jobs", "default", group="batch")
    assert not can("create", "pods", OPERATOR_NAMESPACE)
    assert not can("list", "pods", "kube-system")


def test_missing_delivery_rbac_is_reported(storages, api):
    name = storages.unique("norbac")
    ns = f"{name}-ns"
    ensure_namespace(api, ns, grant_delivery=False)
    storages.create(name, {"replicas": 1, "clientCertSecret": [{"name": "c", "namespace": ns}]},
                    make_namespaces=False)
    cond = storages.wait_condition(name, "CertificatesReady", "False")
    assert f"may not read or write Secret {ns}/c" in cond["message"]
    assert "destination_role_example.yaml" in cond["message"]
    ensure_namespace(api, ns)  # the admin grants it: recovers by itself
    storages.wait_condition(name, "Ready", "True")
