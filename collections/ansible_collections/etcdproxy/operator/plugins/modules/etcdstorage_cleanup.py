#!/usr/bin/python
"""Ansible module: what an EtcdStorage leaves behind when it is deleted (the finalizer's work)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcdstorage_cleanup
short_description: Release an EtcdStorage's delivered material and, by policy, its keys in the core etcd
description:
  - Runs from the finalizer C(etcd.etcdproxy.dev/cleanup) when an EtcdStorage is deleted.
  - Destination ConfigMaps and Secrets the operator created carry an owner reference and go with the EtcdStorage
    (garbage collector); ones an admin pre-created are kept, emptied of our keys (C(serving-ca.crt), C(tls.crt),
    C(tls.key)) and annotations. Objects that carry another EtcdStorage's material are never touched.
  - Deletes the proxy's client CA ConfigMap C(etcd-<name>-client-ca), which the core CA ConfigMap and client
    Secret also own (so that deleting them reconciles the EtcdStorage) and would otherwise keep.
  - With C(spec.deletionPolicy=Delete), removes every key under C(/<name>/) from the core etcd (exactly that
    prefix) and revokes every lease the tenant was granted through its endpoint (a lease can outlive its
    keys by its TTL, which a tenant chooses), using the core etcd CA and client certificate of the operator
    namespace; with C(Retain) keeps them and says so in an Event. Never for a prefix that shares keys with
    one the core's own users keep (C(/registry), O(reserved_prefixes)); a Warning Event C(KeysKept) says so.
  - Fails (so the finalizer stays and the deletion is retried) when the keys must be deleted but no core
    etcd endpoint answers; set C(spec.deletionPolicy=Retain) to let the deletion finish anyway.
version_added: 0.1.0
author: etcdproxy-operator developers
options: {}
attributes:
  check_mode:
    support: full
notes:
  - Reads the core etcd client key; the task calling it must set C(no_log).
extends_documentation_fragment:
  - etcdproxy.operator.etcdstorage
  - etcdproxy.operator.etcdstorage.core
  - etcdproxy.operator.etcdstorage.object
"""

EXAMPLES = r"""
- name: Release what the EtcdStorage leaves behind
  etcdstorage_cleanup:
    name: wardle
    uid: "{{ cr.metadata.uid }}"
    namespace: kube-apiserver-storage
    spec: "{{ cr.spec }}"
    core_endpoints: "{{ 'https://10.0.0.10:2379'.split(',') }}"
  no_log: true
"""

RETURN = r"""
deleted_keys:
  description: Keys removed from the core etcd (0 with C(Retain)).
  returned: always
  type: int
revoked_leases:
  description: The tenant's leases revoked in the core etcd (0 with C(Retain)).
  returned: always
  type: int
released:
  description: What happened to each destination object (emptied, or left to the garbage collector).
  returned: always
  type: dict
"""

import datetime
import traceback
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible_collections.etcdproxy.operator.plugins.module_utils.cleanup import release_plan
    from ansible_collections.etcdproxy.operator.plugins.module_utils.coreetcd import delete_tenant, material
    from ansible_collections.etcdproxy.operator.plugins.module_utils import keyspace, names
    from ansible_collections.etcdproxy.operator.plugins.module_utils.args import (
        COMMON_OPTIONS, CORE_OPTIONS, OBJECT_OPTIONS,
    )
    from ansible_collections.etcdproxy.operator.plugins.module_utils.args import refuse_without_core_endpoints
    from ansible_collections.etcdproxy.operator.plugins.module_utils.kube import ApiError, Kube, api_client
    from ansible_collections.etcdproxy.operator.plugins.module_utils.spec import with_defaults
    from ansible_collections.etcdproxy.operator.plugins.module_utils.times import rfc3339
    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()
    COMMON_OPTIONS = CORE_OPTIONS = OBJECT_OPTIONS = {}


def run(module: AnsibleModule) -> dict:
    p = module.params
    kube = Kube(api_client(p["kubeconfig"]))
    name, uid, ns, spec = p["name"], p["uid"], p["namespace"], p["spec"] or {}
    owner = {"metadata": {"name": name, "uid": uid}}
    now = rfc3339(datetime.datetime.now(datetime.UTC))
    released, changed = {}, False
    dests = [("ConfigMap", d) for d in spec.get("caCertConfigMap") or []]
    dests += [("Secret", d) for d in spec.get("clientCertSecret") or []]
    for kind, d in dests:
        getter = kube.get_secret if kind == "Secret" else kube.get_configmap
        try:
            obj = getter(d["namespace"], d["name"])
        except ApiError as exc:
            released[f"{kind} {d['namespace']}/{d['name']}"] = f"not readable (HTTP {exc.status})"
            continue
        action, patch = release_plan(obj, kind, name, uid)
        key = f"{kind} {d['namespace']}/{d['name']}"
        if action == "gc":
            released[key] = "left to the garbage collector (owned by the EtcdStorage)"
        if action != "patch":
            continue
        changed = True
        if not module.check_mode:
            try:
                kube.patch(kind, d["namespace"], d["name"], patch)
            except ApiError as exc:
                if exc.status != 404:
                    raise RuntimeError(f"cannot empty {key} of our keys: HTTP {exc.status} {exc.reason}") from exc
        released[key] = "emptied"

    # The proxy's client CA ConfigMap also depends on the core material (see depend_on_core_material),
    # which would keep it after the EtcdStorage is gone: delete it here.
    client_ca = names.client_ca(name)
    if kube.get_configmap(ns, client_ca) is not None:
        changed = True
        if not module.check_mode:
            kube.delete_configmap(ns, client_ca)

    deleted = revoked = 0
    policy = with_defaults(spec)["deletionPolicy"]
    reserved = keyspace.reserved_overlap(name, p["reserved_prefixes"])
    if policy == "Delete" and reserved:
        if not module.check_mode:
            kube.create_event(owner, "Warning", "KeysKept",
                              f"deletionPolicy Delete was not applied: {keyspace.reserved_message(name, reserved)}; "
                              f"nothing was deleted from the core etcd", now)
    elif policy == "Delete":
        changed = True
        if not module.check_mode:
            ca, cert, key = material(kube.get_configmap(ns, p["core_ca_configmap"]),
                                     kube.get_secret(ns, p["core_client_secret"]), p["core_ca_key"])
            if not (ca and cert and key):
                raise RuntimeError(f"cannot delete the keys of {name}: the core etcd CA ConfigMap or client Secret "
                                   f"in {ns} is missing; restore it, or set spec.deletionPolicy=Retain")
            deleted, revoked = delete_tenant(p["core_endpoints"], name, ca, cert, key)
            kube.create_event(owner, "Normal", "KeysDeleted",
                              f"deletionPolicy Delete: removed {deleted} keys under /{name}/ from the core etcd "
                              f"and revoked the {revoked} leases the tenant held", now)
    elif not module.check_mode:
        kube.create_event(owner, "Normal", "KeysRetained",
                          f"deletionPolicy Retain: the keys under /{name}/ stay in the core etcd; a new "
                          f"EtcdStorage named {name} would see them", now)
    return {"changed": changed, "deleted_keys": deleted, "revoked_leases": revoked, "released": released}


def main(module_class: Callable[..., Any] = AnsibleModule) -> None:
    """``module_class``: AnsibleModule, or the in-process stand-in of the action plugin of the same name
    (plugin_utils/inprocess.py)."""
    module = module_class(
        argument_spec=dict(**COMMON_OPTIONS, **CORE_OPTIONS, **OBJECT_OPTIONS),
        supports_check_mode=True,
    )
    if IMPORT_ERROR:
        module.fail_json(msg="etcdstorage_cleanup needs the urllib3 library", exception=IMPORT_ERROR)
    refuse_without_core_endpoints(module)
    try:
        module.exit_json(**run(module))
    except Exception as exc:  # the finalizer stays; ansible-operator retries with backoff
        msg = f"deletion waits: {exc}"
        try:  # the task is no_log: say why in an Event too
            kube = Kube(api_client(module.params["kubeconfig"]))
            now = rfc3339(datetime.datetime.now(datetime.UTC))
            kube.create_event({"metadata": {"name": module.params["name"], "uid": module.params["uid"]}},
                              "Warning", "CleanupFailed", msg, now)
        except Exception:
            pass
        module.fail_json(msg=f"EtcdStorage {module.params['name']}: {msg}")


if __name__ == "__main__":
    main()
