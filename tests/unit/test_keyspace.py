"""Where tenants may live in the core's keyspace (module_utils/keyspace.py): never where the core's own users
keep their keys."""

from __future__ import annotations

import pytest
import yaml
from ansible_collections.etcdproxy.operator.plugins.module_utils.keyspace import (
    KUBE_APISERVER_PREFIX,
    reserved_message,
    reserved_overlap,
)

from localcp.config import REPO

CRD = REPO / "config/crd/bases/etcd.etcdproxy.dev_etcdstorages.yaml"


@pytest.mark.parametrize(("name", "reserved", "want"), [
    ("registry", [], "/registry"),  # the main kube-apiserver's, always
    ("registry-b", [], ""),  # /registry holds /registry/..., not /registry-b/...
    ("registr", [], ""),
    ("wardle", [], ""),
    ("k8s", ["/k8s"], "/k8s"),  # a kube-apiserver with --etcd-prefix=/k8s
    ("k8s", ["/k8s/"], "/k8s/"),
    ("tenants", ["/tenants/main"], "/tenants/main"),  # a reserved prefix inside the tenant's
    ("main", ["/tenants/main"], ""),
    ("anything", ["/"], "/"),  # a kube-apiserver storing at the root: no tenant is safe
    ("wardle", ["", " "], ""),  # blanks (an empty setting) reserve nothing
])
def test_a_tenant_prefix_sharing_keys_with_a_reserved_one_is_found(name, reserved, want):
    assert reserved_overlap(name, reserved) == want


def test_the_message_names_the_field_both_prefixes_and_the_setting():
    msg = reserved_message("registry", "/registry")
    assert msg.startswith("metadata.name:") and "/registry/" in msg and "ETCDPROXY_RESERVED_PREFIXES" in msg


def test_admission_refuses_the_name_of_the_main_kube_apiservers_prefix():
    """The CRD's rule and KUBE_APISERVER_PREFIX name the same thing (the rule cannot read the constant)."""
    crd = yaml.safe_load(CRD.read_text())
    rules = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
    name = KUBE_APISERVER_PREFIX.strip("/")
    assert any(r["rule"] == f"self.metadata.name != '{name}'" for r in rules), rules
