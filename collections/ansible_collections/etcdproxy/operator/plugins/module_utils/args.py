"""Argument specs shared by the modules (documented by the doc fragment plugins/doc_fragments/etcdstorage.py)."""

from __future__ import annotations

from typing import Any

COMMON_OPTIONS: dict[str, dict[str, Any]] = dict(
    name=dict(type="str", required=True),
    namespace=dict(type="str", required=True),
    kubeconfig=dict(type="path"),
)
CORE_OPTIONS: dict[str, dict[str, Any]] = dict(
    # No defaults here: the role passes its own (roles/etcdstorage/defaults/main.yml, the one home).
    core_ca_configmap=dict(type="str", required=True),
    core_ca_key=dict(type="str", required=True),
    core_client_secret=dict(type="str", required=True),
    core_endpoints=dict(type="list", elements="str", default=[]),
    reserved_prefixes=dict(type="list", elements="str", default=[]),
)
OBJECT_OPTIONS: dict[str, dict[str, Any]] = dict(
    uid=dict(type="str", default=""),
    spec=dict(type="dict", default={}),
)
