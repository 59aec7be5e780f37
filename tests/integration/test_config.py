"""config/ (kustomize) against the real API server, and the RBAC it ships."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml
from ansible_collections.etcdproxy.operator.plugins.module_utils import names
from kubernetes import client
from kubernetes.client.rest import ApiException

from localcp.admin import (
    OPERATOR_NAMESPACE,
    admission_objects,
    built_objects,
    ensure_namespace,
    exempting_label,
    kubectl_apply,
    kustomize_apply,
    kustomize_build,
    operator_may,
    remove_admission,
)
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
        remove_admission(api)  # the next test starts without it


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


def test_the_namespace_the_operator_is_installed_in_is_the_one_the_backup_policy_exempts(tmp_path: Path):
    # A user who installs into another namespace with an overlay moves the exemption with the operator.
    (tmp_path / "kustomization.yaml").write_text(json.dumps({
        "namespace": "storage-elsewhere", "resources": [os.path.relpath(REPO / "config" / "default", tmp_path)]}))
    for built, namespace in ((kustomize_build("config/default"), OPERATOR_NAMESPACE),
                             (kustomize_build(tmp_path), "storage-elsewhere")):
        label = exempting_label(admission_objects(built))
        (ns,) = [d for d in built_objects(built) if d["kind"] == "Namespace"]
        (deployment,) = [d for d in built_objects(built) if d["kind"] == "Deployment"]
        assert ns["metadata"]["name"] == deployment["metadata"]["namespace"] == namespace
        assert label in ns["metadata"]["labels"]
        # Only the operator namespace carries it.
        assert [d for d in built_objects(built) if label in d["metadata"].get("labels", {})] == [ns]


def test_a_backup_outside_the_operator_namespace_is_refused_at_admission(cp, api, storages):
    """The operator caches its own namespace only, so a backup made elsewhere would never be served; the
    policy config/default ships refuses it and says where to make it."""
    ensure_namespace(api, "wardle", grant_delivery=False)
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    body = {"apiVersion": f"{names.GROUP}/{names.VERSION}", "kind": names.BACKUP_KIND,
            "metadata": {"name": "misplaced"},
            "spec": {"storageName": "wardle", "s3": {"bucket": "backups", "endpoint": "https://127.0.0.1:9",
                                                      "credentialsSecret": "backup-s3"}}}

    def create(namespace: str) -> str:
        """'' when the API server accepts it (server dry run), else its message."""
        try:
            custom.create_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.BACKUP_PLURAL,
                                                   body, dry_run="All")
        except ApiException as exc:
            assert exc.status == 403, exc.body
            return json.loads(exc.body)["message"]
        return ""

    assert create("wardle") == ""  # without the policy nothing stops it
    built = kustomize_build("config/default")
    policy = admission_objects(built)
    assert [d["kind"] for d in policy] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    label = exempting_label(policy)
    # What config/default's Namespace adds to the operator namespace (here made by the harness).
    core.patch_namespace(OPERATOR_NAMESPACE, {"metadata": {"labels": {label: "true"}}})
    kubectl_apply(cp, yaml.safe_dump_all(policy), "the admission policy of config/default")
    try:
        storages.wait("the policy in force", lambda: create("wardle") != "")
        refused = create("wardle")
        assert "EtcdStorageBackup misplaced in namespace wardle" in refused
        assert f"the namespace labelled {label}); create it there" in refused
        assert create(OPERATOR_NAMESPACE) == ""
    finally:
        remove_admission(api)
        core.patch_namespace(OPERATOR_NAMESPACE, {"metadata": {"labels": {label: None}}})
