"""The operator installed in-cluster the way README's "Install in a cluster" says: the core etcd's CA
ConfigMap and client Secret in the operator namespace, then ``config/default`` with the image and the
core endpoints set by a kustomize overlay, applied server-side. Runs on the real node only."""

from __future__ import annotations

import json
import os

from .admin import OPERATOR_NAMESPACE, kubectl_apply, kustomize_build, seed_operator_namespace, wait_deployment_ready
from .cluster import ControlPlane
from .config import REPO
from .images import OPERATOR_IMAGE

DEPLOYMENT = "etcdproxy-operator"


def overlay(cp: ControlPlane, env: dict[str, str] | None = None) -> str:
    """A kustomization over config/default: what a user writes to set the image and the core endpoints
    (``env``: more settings for the manager, e.g. a test's short CA overlap)."""
    d = cp.workdir / "install"
    d.mkdir(parents=True, exist_ok=True)
    image, tag = OPERATOR_IMAGE.split(":")
    patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/env/2",
              "value": {"name": "ETCDPROXY_CORE_ENDPOINTS", "value": ",".join(cp.pod_etcd_endpoints)}}]
    patch += [{"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": k, "value": v}}
              for k, v in (env or {}).items()]
    (d / "kustomization.yaml").write_text(json.dumps({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(REPO / "config" / "default", d)],  # kustomize takes no absolute paths
        "images": [{"name": "controller", "newName": image, "newTag": tag}],
        "patches": [{"target": {"kind": "Deployment", "name": DEPLOYMENT}, "patch": json.dumps(patch)}],
    }, indent=1))
    return str(d)


def install_operator(cp: ControlPlane, env: dict[str, str] | None = None, timeout: float = 120) -> None:
    """Seed the core material, apply the overlay, wait for the operator pod to be Ready."""
    seed_operator_namespace(cp)
    built = kustomize_build(overlay(cp, env))
    env = {e["name"]: e.get("value") for e in _manager(built)["env"]}
    assert env["ETCDPROXY_CORE_ENDPOINTS"] == ",".join(cp.pod_etcd_endpoints), "the overlay patched the wrong entry"
    kubectl_apply(cp, built, "the operator (config/default)")
    wait_deployment_ready(cp, OPERATOR_NAMESPACE, DEPLOYMENT, timeout, "the operator Deployment")


def _manager(built: str) -> dict:
    import yaml

    for doc in yaml.safe_load_all(built):
        if doc and doc.get("kind") == "Deployment" and doc["metadata"]["name"] == DEPLOYMENT:
            return doc["spec"]["template"]["spec"]["containers"][0]
    raise LookupError(f"config/default has no Deployment {DEPLOYMENT}")
