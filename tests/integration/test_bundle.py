"""`make bundle`: the OLM bundle is generated from config/ and passes operator-sdk's validation."""

from __future__ import annotations

import subprocess

import yaml

from localcp.config import REPO


def test_bundle_generates_and_validates():
    out = subprocess.run(["make", "-s", "bundle"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All validation tests have completed successfully" in out.stdout + out.stderr
    assert "level=error" not in out.stdout + out.stderr
    csv = yaml.safe_load((REPO / "bundle/manifests/etcdproxy-operator.clusterserviceversion.yaml").read_text())
    spec = csv["spec"]
    assert csv["metadata"]["name"] == "etcdproxy-operator.v0.1.0"
    assert spec["minKubeVersion"] and spec["installModes"]
    owned = {crd["name"]: crd for crd in spec["customresourcedefinitions"]["owned"]}
    assert set(owned) == {"etcdstorages.etcd.etcdproxy.dev", "etcdstoragebackups.etcd.etcdproxy.dev"}
    assert all(crd["specDescriptors"] for crd in owned.values())
    strategy = spec["install"]["spec"]
    (dep,) = strategy["deployments"]
    assert dep["name"] == "etcdproxy-operator"
    cluster_rules = strategy["clusterPermissions"][0]["rules"]
    assert any("etcdstorages" in r["resources"] for r in cluster_rules)
    assert not any("secrets" in r["resources"] for r in cluster_rules)  # Secrets only in its namespace
    ns_rules = strategy["permissions"][0]["rules"]
    assert any("secrets" in r["resources"] for r in ns_rules)
    assert any("jobs" in r["resources"] for r in ns_rules)  # backups run as Jobs, in its namespace only
    assert not any("jobs" in r["resources"] for r in cluster_rules)
    for crd in owned:
        assert (REPO / f"bundle/manifests/{crd.split('.', 1)[1]}_{crd.split('.', 1)[0]}.yaml").exists()
