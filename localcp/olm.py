"""OLM on the local cluster, and the operator installed and upgraded through it as a user does
(docs/olm.md).

``install_olm``: OLM's own Helm chart (deploy/chart of the pinned OLM module, with its upstream values)
rendered by helm with the images pointed at the cluster's registry, minus the OperatorHub.io catalog
(it would pull from the internet); CRDs first, then OLM's controllers, then its packageserver CSV.
``publish``: the images OLM pulls (OLM, opm, the operator and guard images, a bundle per version, a
catalog per step of the channel), pushed with crane. ``subscribe``: what a user writes: an
OperatorGroup for the operator namespace (OwnNamespace), a CatalogSource, a Subscription whose
``config.env`` carries the settings the CSV asks for. ``upgrade``: the catalog gains the next version
(the CatalogSource's image moves to it) and OLM replaces the CSV.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from . import bundles
from .admin import OPERATOR_NAMESPACE, kubectl_apply, wait_deployment_ready
from .cluster import ControlPlane
from .config import BIN_DIR, REGISTRY, REPO
from .images import GUARD_IMAGE, OPERATOR_IMAGE, Image, archive_path, image_id_of
from .olm_images import OLM_IMAGE, OLM_MODULE, OPM_IMAGE, bundle_image, catalog_image, olm_image, opm_image
from .probes import StartError, wait_for

OLM_NAMESPACE = "olm"
GROUP, VERSION = "operators.coreos.com", "v1alpha1"
CATALOG = "etcdproxy-operator"  # the CatalogSource, in OLM's namespace
OPERATOR_REPO = f"{REGISTRY}/etcdproxy-operator"
GUARD_REF = f"{REGISTRY}/{GUARD_IMAGE}"
BUNDLE_REF = f"{REGISTRY}/etcdproxy-operator-bundle:v{{version}}"
CATALOG_REF = f"{REGISTRY}/etcdproxy-operator-catalog:v{{version}}"
# The two versions the harness installs and upgrades between: the shipped one and a next one, built
# from the same sources (the upgrade path is what is tested, not a change of behaviour).
VERSIONS = (bundles.SHIPPED_VERSION, "0.2.0")


def olm_chart() -> Path:
    """deploy/ of the OLM module pinned in hack/tools/olm (from the module cache; no network)."""
    out = subprocess.run(["go", "list", "-m", "-f", "{{.Dir}}", OLM_MODULE], cwd=REPO / "hack/tools/olm",
                         env={**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off"},
                         check=True, capture_output=True, text=True).stdout.strip()
    return Path(out) / "deploy"


def render_olm() -> list[dict]:
    """OLM's manifests from its chart and upstream values, with this cluster's images."""
    deploy = olm_chart()
    out = subprocess.run([str(BIN_DIR / "helm"), "template", "olm", str(deploy / "chart"), "--include-crds",
                          "-f", str(deploy / "upstream" / "values.yaml"),
                          "--set", f"olm.image.ref={OLM_IMAGE}", "--set", f"catalog.image.ref={OLM_IMAGE}",
                          "--set", f"package.image.ref={OLM_IMAGE}",
                          "--set", f"catalog.opmImageArgs=--opmImage={OPM_IMAGE}"],
                         check=True, capture_output=True, text=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    # The chart's OperatorHub.io catalog would have the node pull from the internet.
    return [d for d in docs if d["kind"] != "CatalogSource"]


def install_olm(cp: ControlPlane, timeout: float = 180) -> None:
    """Apply OLM (CRDs first), wait for its two controllers and its packageserver CSV."""
    docs = render_olm()
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    kubectl_apply(cp, yaml.safe_dump_all(crds), "OLM's CRDs")
    ext = client.ApiextensionsV1Api(cp.api())

    def established() -> bool:
        return all(any(c.type == "Established" and c.status == "True"
                       for c in ext.read_custom_resource_definition(d["metadata"]["name"]).status.conditions or [])
                   for d in crds)

    wait_for("OLM's CRDs established", established, 60)
    kubectl_apply(cp, yaml.safe_dump_all([d for d in docs if d["kind"] != "CustomResourceDefinition"]), "OLM")
    for name in ("olm-operator", "catalog-operator"):
        wait_deployment_ready(cp, OLM_NAMESPACE, name, timeout, f"OLM's {name}")
    wait_csv(cp, OLM_NAMESPACE, "packageserver", timeout)


# ---- the images OLM pulls ------------------------------------------------------------------------------
@dataclass
class Published:
    """What ``publish`` pushed: the bundle directories by version and the catalog image of each step."""

    bundles: dict[str, Path] = field(default_factory=dict)
    catalogs: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _archive(image: Image) -> Path:
    """A built archive of ``image`` (the OLM and opm images are built by `make olm-images`, which reads
    Debian's archive; this runs inside the harness's network)."""
    if not image_id_of(image.name):
        raise StartError(f"no image archive {archive_path(image.name)}: run `make olm-images` first")
    return archive_path(image.name)


def publish(cp: ControlPlane, workdir: Path) -> Published:
    """Push every image the OLM path pulls; write a bundle per version and a catalog per channel step."""
    reg = cp.image_registry
    out = Published()
    t0 = time.monotonic()
    reg.push(_archive(olm_image()), OLM_IMAGE)
    reg.push(_archive(opm_image()), OPM_IMAGE)
    reg.push(archive_path(GUARD_IMAGE), GUARD_REF)
    for version in VERSIONS:
        reg.push(archive_path(OPERATOR_IMAGE), f"{OPERATOR_REPO}:{version}")
    out.timings["push platform images_s"] = round(time.monotonic() - t0, 3)
    t0 = time.monotonic()
    for version in VERSIONS:
        bundle_dir = bundles.generate(version, workdir / "bundles" / version, f"{OPERATOR_REPO}:{version}")
        bundles.validate(bundle_dir)
        out.bundles[version] = bundle_dir
        ref = BUNDLE_REF.format(version=version)
        reg.push(bundle_image(bundle_dir, ref).archive(), ref)
        configs = bundles.write_catalog(workdir / "catalogs" / version, dict(out.bundles), BUNDLE_REF)
        ref = CATALOG_REF.format(version=version)
        reg.push(catalog_image(configs, ref).archive(), ref)
        out.catalogs[version] = ref
    out.timings["bundles and catalogs_s"] = round(time.monotonic() - t0, 3)
    return out


# ---- install and upgrade as a user does ----------------------------------------------------------------
def subscribe(cp: ControlPlane, catalog: str, env: dict[str, str]) -> None:
    """The OperatorGroup (OwnNamespace), the CatalogSource and the Subscription. The operator namespace
    and the core etcd's material in it must exist first (README, "Install with OLM")."""
    manifests = [
        {"apiVersion": "operators.coreos.com/v1", "kind": "OperatorGroup",
         "metadata": {"name": "etcdproxy-operator", "namespace": OPERATOR_NAMESPACE},
         "spec": {"targetNamespaces": [OPERATOR_NAMESPACE]}},
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CatalogSource",
         "metadata": {"name": CATALOG, "namespace": OLM_NAMESPACE},
         "spec": {"sourceType": "grpc", "image": catalog, "displayName": "etcdproxy-operator",
                  "grpcPodConfig": {"securityContextConfig": "restricted"}}},
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Subscription",
         "metadata": {"name": bundles.PACKAGE, "namespace": OPERATOR_NAMESPACE},
         "spec": {"name": bundles.PACKAGE, "channel": bundles.CHANNEL, "source": CATALOG,
                  "sourceNamespace": OLM_NAMESPACE, "installPlanApproval": "Automatic",
                  "config": {"env": [{"name": k, "value": v} for k, v in env.items()]}}},
    ]
    kubectl_apply(cp, yaml.safe_dump_all(manifests), "the OLM subscription")


def operator_env(cp: ControlPlane, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The settings the CSV's description asks for, as a user sets them in the Subscription."""
    return {"ETCDPROXY_CORE_ENDPOINTS": ",".join(cp.pod_etcd_endpoints), "ETCDPROXY_GUARD_IMAGE": GUARD_REF,
            **(extra or {})}


def upgrade(cp: ControlPlane, catalog: str) -> None:
    """The channel gains the next version: the CatalogSource serves the catalog that has it."""
    client.CustomObjectsApi(cp.api()).patch_namespaced_custom_object(
        GROUP, VERSION, OLM_NAMESPACE, "catalogsources", CATALOG, {"spec": {"image": catalog}})


def csv_phase(cp: ControlPlane, namespace: str, name: str, custom: client.CustomObjectsApi | None = None) -> str:
    """The CSV's status.phase ("" when there is no such CSV); ``custom``: a client to reuse when polling."""
    custom = custom or client.CustomObjectsApi(cp.api())
    try:
        csv = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "clusterserviceversions", name)
    except ApiException as exc:
        if exc.status == 404:
            return ""
        raise
    return csv.get("status", {}).get("phase", "")


def wait_csv(cp: ControlPlane, namespace: str, name: str, timeout: float = 180) -> None:
    """Until the CSV reports Succeeded; on timeout name its phase and reason."""
    custom = client.CustomObjectsApi(cp.api())

    def succeeded() -> bool:
        return csv_phase(cp, namespace, name, custom) == "Succeeded"

    try:
        wait_for(f"CSV {namespace}/{name} Succeeded", succeeded, timeout, None, cp.logs / "kubelet.log",
                 interval=0.25)
    except StartError as exc:
        try:
            status = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "clusterserviceversions",
                                                         name).get("status", {})
            detail = f"phase {status.get('phase')!r}: {status.get('reason')} {status.get('message')}"
        except ApiException as read:
            detail = f"no CSV ({read.status})"
        raise StartError(f"{exc}; {detail}") from exc
