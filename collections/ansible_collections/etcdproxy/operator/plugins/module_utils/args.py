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


def refuse_without_core_endpoints(module: Any) -> None:
    """Before anything else: an operator without its core endpoints must not touch a single object. OLM starts
    a new CSV's pod once without the Subscription's config.env, then again with it; that first pod would
    otherwise rewrite every proxy to point nowhere. Fails the task, so the run stops and nothing is written.
    (A check in the module rather than an assert task before it: a task is a worker process, ~0.03 s a run.)"""
    if not module.params["core_endpoints"]:
        module.fail_json(msg="ETCDPROXY_CORE_ENDPOINTS is not set on the operator (the core_endpoints option is "
                             "empty), so nothing was done: set it to the core etcd's client URLs "
                             "(config/manager/manager.yaml, or the Subscription's config.env with OLM)")
