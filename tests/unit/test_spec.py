"""The operator's spec defaults are the CRD's: one list in code, held to the CRD here."""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible_collections.etcdproxy.operator.plugins.module_utils.spec import DEFAULT_RESOURCES, DEFAULTS, with_defaults

CRD = Path(__file__).resolve().parents[2] / "config" / "crd" / "bases" / "etcd.etcdproxy.dev_etcdstorages.yaml"


def crd_spec_defaults() -> dict:
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    return {field: schema["default"] for field, schema in spec.items() if "default" in schema}


def test_the_operator_defaults_every_field_the_crd_defaults_and_to_the_same_value():
    assert crd_spec_defaults() == DEFAULTS


def test_unset_and_empty_fields_get_defaults_and_set_ones_are_kept():
    spec = with_defaults({"replicas": 1, "keyAlgorithm": "", "resources": {}})
    assert spec["replicas"] == 1 and spec["keyAlgorithm"] == "ECDSA" and spec["resources"] == DEFAULT_RESOURCES
    spec["resources"]["requests"]["cpu"] = "1"  # a copy: the defaults are not shared
    assert DEFAULT_RESOURCES["requests"]["cpu"] == "50m"
