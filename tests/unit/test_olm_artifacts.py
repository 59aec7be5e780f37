"""What the OLM path is made of, checked without a cluster: OLM's rendered manifests pull only from the
cluster's registry; the bundle installs OwnNamespace only; the catalog's channel is an upgrade chain
whose bundles point at their images; the bundle and catalog images carry the labels OLM and opm read;
the node's containerd trusts the cluster CA for the registry and for nothing else."""

from __future__ import annotations

from pathlib import Path

import yaml

from localcp import bundles, olm, olm_images
from localcp.config import REGISTRY, REPO
from localcp.node import Node
from localcp.pki import Pki


def images_in(obj) -> list[str]:
    if isinstance(obj, dict):
        return [v for k, v in obj.items() if k == "image" and isinstance(v, str)] + \
            [i for v in obj.values() for i in images_in(v)]
    if isinstance(obj, list):
        return [i for v in obj for i in images_in(v)]
    return []


def test_olm_is_rendered_from_its_chart_with_every_image_from_the_cluster_registry():
    docs = olm.render_olm()
    kinds = {d["kind"] for d in docs}
    assert {"CustomResourceDefinition", "Deployment", "ClusterServiceVersion"} <= kinds
    assert "CatalogSource" not in kinds  # OperatorHub.io's would pull from the internet
    pulled = [i for d in docs if d["kind"] != "CustomResourceDefinition" for i in images_in(d)]
    assert pulled and all(i.startswith(f"{REGISTRY}/") for i in pulled), pulled
    args = [a for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "catalog-operator"
            for a in d["spec"]["template"]["spec"]["containers"][0]["args"]]
    assert f"--opmImage={olm_images.OPM_IMAGE}" in args  # bundle-unpack Jobs run opm from our registry


def test_the_bundle_installs_own_namespace_only(tmp_path: Path):
    out = bundles.generate("0.1.0", tmp_path / "bundle", f"{REGISTRY}/etcdproxy-operator:0.1.0")
    assert "All validation tests have completed successfully" in bundles.validate(out)
    (csv_file,) = (out / "manifests").glob("*.clusterserviceversion.yaml")
    csv = yaml.safe_load(csv_file.read_text())
    modes = {m["type"]: m["supported"] for m in csv["spec"]["installModes"]}
    assert modes == {"OwnNamespace": True, "SingleNamespace": False, "MultiNamespace": False,
                     "AllNamespaces": False}
    (deployment,) = csv["spec"]["install"]["spec"]["deployments"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"{REGISTRY}/etcdproxy-operator:0.1.0"


def test_the_catalog_channel_is_an_upgrade_chain_of_bundle_images(tmp_path: Path):
    dirs = {v: bundles.generate(v, tmp_path / v, f"{REGISTRY}/etcdproxy-operator:{v}") for v in ("0.1.0", "0.2.0")}
    configs = bundles.write_catalog(tmp_path / "catalog", dirs, olm.BUNDLE_REF)
    docs = list(yaml.safe_load_all((configs / bundles.PACKAGE / "catalog.yaml").read_text()))
    (package,) = [d for d in docs if d["schema"] == "olm.package"]
    (channel,) = [d for d in docs if d["schema"] == "olm.channel"]
    assert package["defaultChannel"] == channel["name"] == bundles.CHANNEL
    assert channel["entries"] == [{"name": "etcdproxy-operator.v0.1.0"},
                                  {"name": "etcdproxy-operator.v0.2.0", "replaces": "etcdproxy-operator.v0.1.0"}]
    bundle_images = {d["name"]: d["image"] for d in docs if d["schema"] == "olm.bundle"}
    assert bundle_images == {f"etcdproxy-operator.v{v}": olm.BUNDLE_REF.format(version=v) for v in dirs}


def test_bundle_and_catalog_images_carry_what_olm_and_opm_read(tmp_path: Path):
    bundle_dir = bundles.generate("0.1.0", tmp_path / "bundle")
    annotations = yaml.safe_load((bundle_dir / "metadata/annotations.yaml").read_text())["annotations"]
    image = olm_images.bundle_config(bundle_dir, f"{REGISTRY}/b:v0.1.0")
    assert image.config()["Labels"] == annotations
    assert annotations["operators.operatorframework.io.bundle.package.v1"] == bundles.PACKAGE
    catalog = olm_images.catalog_config(f"{REGISTRY}/c:v1")
    assert catalog.config()["Labels"] == {olm_images.CONFIGS_LABEL: "/configs"}
    assert catalog.entrypoint == ["/bin/opm"] and catalog.cmd[:2] == ["serve", "/configs"]


def test_the_pins_of_the_olm_images_are_the_modules(tmp_path: Path):
    gomod = (REPO / "hack/tools/olm/go.mod").read_text()
    for image, module in ((olm_images.OLM_IMAGE, olm_images.OLM_MODULE), (olm_images.OPM_IMAGE, olm_images.OPM_MODULE)):
        assert f"{module} {image.rsplit(':', 1)[1]}" in gomod


def test_containerd_trusts_the_cluster_ca_for_the_registry_only(tmp_path: Path):
    pki = Pki(tmp_path / "pki")
    node = Node(tmp_path / "node", {}, {})
    node.dir.mkdir()
    config = node._containerd_config(pki).read_text()
    certs_d = tmp_path / "node" / "certs.d"
    assert f'config_path = "{certs_d}"' in config
    assert [p.name for p in certs_d.iterdir()] == [REGISTRY]
    hosts = (certs_d / REGISTRY / "hosts.toml").read_text()
    assert f'server = "https://{REGISTRY}"' in hosts and f'ca = "{pki.path("kube-ca")}"' in hosts
