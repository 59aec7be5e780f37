"""What a cluster admin does before installing the operator, done against the local control plane."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, utils
from kubernetes.client.rest import ApiException

from .cluster import ControlPlane
from .config import BIN_DIR, OPERATOR_USER, REPO
from .probes import wait_for

OPERATOR_NAMESPACE = "kube-apiserver-storage"


def apply(api: client.ApiClient, obj: dict[str, Any]) -> None:
    """Create, or replace if it exists (admin-side convenience, not the operator's code path)."""
    try:
        utils.create_from_dict(api, obj)
    except utils.FailToCreateError as exc:
        if not all(isinstance(e, ApiException) and e.status == 409 for e in exc.api_exceptions):
            raise
        kind, meta = obj["kind"], obj["metadata"]
        core = client.CoreV1Api(api)
        if kind == "ConfigMap":
            core.replace_namespaced_config_map(meta["name"], meta["namespace"], obj)
        elif kind == "Secret":
            core.replace_namespaced_secret(meta["name"], meta["namespace"], obj)
        elif kind != "Namespace":
            raise


def ensure_namespace(api: client.ApiClient, name: str, grant_delivery: bool = True) -> None:
    """A namespace, by default with the Role an API server admin grants the operator (see
    config/rbac/destination_role_example.yaml; here without resourceNames, for any object)."""
    apply(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    if not grant_delivery:
        return
    rbac = client.RbacAuthorizationV1Api(api)
    role = {"metadata": {"name": "etcdproxy-operator-delivery", "namespace": name},
            "rules": [{"apiGroups": [""], "resources": ["configmaps", "secrets"],
                       "verbs": ["get", "create", "update", "patch"]}]}
    binding = {"metadata": {"name": "etcdproxy-operator-delivery", "namespace": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                           "name": "etcdproxy-operator-delivery"},
               "subjects": [{"kind": "ServiceAccount", "name": "etcdproxy-operator",
                             "namespace": OPERATOR_NAMESPACE}]}
    for create, body in ((rbac.create_namespaced_role, role), (rbac.create_namespaced_role_binding, binding)):
        try:
            create(name, body)
        except ApiException as exc:
            if exc.status != 409:
                raise


def kustomize_apply(cp: ControlPlane, path: str, *extra: str) -> str:
    """``kustomize build <path> | kubectl apply --server-side -f -`` as the admin; returns kubectl's output."""
    return kubectl_apply(cp, kustomize_build(path), path, *extra)


def kustomize_build(path: str | Path) -> str:
    return subprocess.run([str(BIN_DIR / "kustomize"), "build", str(REPO / path)], check=True,
                          capture_output=True, text=True).stdout


def kubectl_apply(cp: ControlPlane, manifests: str, what: str, *extra: str) -> str:
    """``kubectl apply --server-side`` of ``manifests`` as the admin; returns kubectl's output."""
    out = subprocess.run([str(BIN_DIR / "kubectl"), f"--kubeconfig={cp.kubeconfig}", "apply", "--server-side",
                          "--force-conflicts", "-f", "-", *extra], input=manifests, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl apply of {what} failed: {out.stderr}")
    return out.stdout


def wait_deployment_ready(cp: ControlPlane, namespace: str, name: str, timeout: float, what: str = "") -> None:
    """Until the Deployment's current generation has a Ready replica (kubelet's log on failure)."""
    apps = client.AppsV1Api(cp.api())

    def ready() -> bool:
        dep = apps.read_namespaced_deployment(name, namespace)
        return (dep.status.ready_replicas or 0) >= 1 and dep.status.observed_generation == dep.metadata.generation

    wait_for(what or f"Deployment {namespace}/{name}", ready, timeout, None, cp.logs / "kubelet.log", interval=0.25)


def install_rbac(cp: ControlPlane) -> None:
    """The operator's ServiceAccount, Roles and bindings, from config/rbac."""
    kustomize_apply(cp, "config/rbac")


def built_objects(built: str) -> list[dict[str, Any]]:
    """The objects of kustomize's output."""
    return [d for d in yaml.safe_load_all(built) if d]


def admission_objects(built: str) -> list[dict[str, Any]]:
    """The admission policies and bindings among kustomize's output (config/admission)."""
    return [d for d in built_objects(built) if d["apiVersion"].startswith("admissionregistration.")]


def exempting_label(objects: list[dict[str, Any]]) -> str:
    """The namespace label that exempts the operator namespace from the backup policy (its binding's one
    selector term: the label does not exist)."""
    binding = next(d for d in objects if d["kind"] == "ValidatingAdmissionPolicyBinding")
    (term,) = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert term["operator"] == "DoesNotExist", term
    return term["key"]


def install_admission(cp: ControlPlane, namespace: str = OPERATOR_NAMESPACE) -> None:
    """What README's "Install with OLM" asks of an admin: the operator namespace labelled, config/admission
    applied (OLM cannot ship admission policies in a bundle)."""
    built = kustomize_build("config/admission")
    client.CoreV1Api(cp.api()).patch_namespace(
        namespace, {"metadata": {"labels": {exempting_label(admission_objects(built)): "true"}}})
    kubectl_apply(cp, built, "config/admission")


def remove_admission(api: client.ApiClient) -> None:
    """config/admission's policy and binding deleted (both named as the policy is)."""
    admission = client.AdmissionregistrationV1Api(api)
    for d in admission_objects(kustomize_build("config/admission")):
        delete = (admission.delete_validating_admission_policy if d["kind"] == "ValidatingAdmissionPolicy"
                  else admission.delete_validating_admission_policy_binding)
        delete(d["metadata"]["name"])


def seed_operator_namespace(cp: ControlPlane, namespace: str = OPERATOR_NAMESPACE,
                            ca_configmap: str = "etcd-coreserving-ca",
                            client_secret: str = "etcd-coreserving-cert") -> None:
    """The operator namespace with the core etcd CA ConfigMap and client Secret."""
    api = cp.api()
    ensure_namespace(api, namespace, grant_delivery=False)
    pki = cp.pki
    apply(api, {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": ca_configmap, "namespace": namespace},
                "data": {"ca.crt": pki.path("etcd-ca").read_text()}})
    apply(api, {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": client_secret, "namespace": namespace},
                "data": {"tls.crt": b64(pki.path("operator-etcd-client")),
                         "tls.key": b64(pki.path("operator-etcd-client", "key"))}})


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def install_crds(cp: ControlPlane) -> None:
    """Every CRD of config/crd (EtcdStorage, EtcdStorageBackup), applied as a user applies them; returns once
    each is Established and served (ansible-operator stops if a watched kind's cache never syncs)."""
    apply_crds(cp, kustomize_build("config/crd"), "the CRDs (config/crd)")


def apply_crds(cp: ControlPlane, built: str, what: str) -> None:
    """The CRDs in the YAML stream ``built``, applied; returns once each is Established and served."""
    import yaml

    kubectl_apply(cp, built, what)
    api = cp.api()
    ext = client.ApiextensionsV1Api(api)
    custom = client.CustomObjectsApi(api)
    for crd in (d for d in yaml.safe_load_all(built) if d):
        name, group, plural = crd["metadata"]["name"], crd["spec"]["group"], crd["spec"]["names"]["plural"]
        version = crd["spec"]["versions"][0]["name"]

        def established(name: str = name) -> bool:
            got = ext.read_custom_resource_definition(name)
            return any(c.type == "Established" and c.status == "True" for c in got.status.conditions or [])

        def served(group: str = group, version: str = version, plural: str = plural) -> bool:
            try:  # discovery of a new group can lag Established by a moment
                custom.list_cluster_custom_object(group, version, plural)
                return True
            except ApiException:
                return False

        wait_for(f"CRD {name} established", established, 30)
        wait_for(f"{plural} served", served, 30)


def operator_may(api: client.ApiClient, verb: str, resource: str, namespace: str = "", group: str = "") -> bool:
    """Whether the API server authorizes the operator's ServiceAccount (a SubjectAccessReview)."""
    review = {"spec": {"user": OPERATOR_USER, "groups": ["system:serviceaccounts",
                                                        f"system:serviceaccounts:{OPERATOR_NAMESPACE}",
                                                        "system:authenticated"],
                       "resourceAttributes": {"verb": verb, "resource": resource, "namespace": namespace,
                                              "group": group}}}
    return client.AuthorizationV1Api(api).create_subject_access_review(review).status.allowed
