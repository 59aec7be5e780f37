#!/usr/bin/python
"""Ansible module: one EtcdStorage reconcile in one process (certificates, then status and drift)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcdstorage_reconcile
short_description: Certificates, status and proxy drift of an EtcdStorage in one module call
description:
  - Issues, delivers and rotates the EtcdStorage's certificates (docs/certificates.md), then does what
    M(etcdproxy.operator.etcdstorage_status) does, in one call with one Kubernetes client and the reads
    shared between the steps; the role calls this one so a steady-state reconcile is a single module call.
  - Sets the annotation C(etcd.etcdproxy.dev/client-ca-hash) on the pod template of the proxy Deployment
    in O(proxy_objects) to the hash of the client CA bundle the proxy must trust, so the proxy restarts
    when (and only when) that bundle changes.
  - For an EtcdStorage with C(spec.restoreFrom), first fills its prefix from that EtcdStorageBackup with a
    restore Job (docs/backup.md); until the fill is done the C(Restored) condition blocks Ready and no proxy
    object is returned to apply.
  - Writes nothing when nothing changed. Returns the proxy objects that differ from the cluster,
    for C(kubernetes.core.k8s) to apply.
  - For an EtcdStorage whose prefix shares keys with one the core's own users keep (C(/registry), the main
    kube-apiserver's, and O(reserved_prefixes)) does nothing but report C(PrefixAvailable=False) and return
    its proxy objects, if they exist, in RV(remove), since a proxy there would serve the main cluster's data.
version_added: 0.1.0
author: etcdproxy-operator developers
options:
  annotations:
    description: The EtcdStorage annotations (C(etcd.etcdproxy.dev/rotate), C(etcd.etcdproxy.dev/rotate-ca)).
    type: dict
    default: {}
  manage_certificates:
    description: Run the certificate step.
    type: bool
    default: true
  ca_overlap:
    description:
      - Least time between publishing a next CA in the bundles and signing with it (a Go duration). Empty
        means a sixth of the CA's lifetime. API servers must restart within it.
    type: str
    default: ''
  proxy_objects:
    description: The proxy Deployment and Service as the role renders them.
    type: list
    elements: dict
    default: []
  retry_period:
    description: How soon to look again while something we do not watch blocks readiness.
    type: str
    default: 30s
  max_requeue_seconds:
    description: The reconcile period; a requeue later than this is left to the periodic reconcile.
    type: int
    default: 600
  manage_status:
    description: Read the EtcdStorage and write its status and Events (off for the one-off playbook).
    type: bool
    default: true
  job_image:
    description: The restore Job's image; empty means the operator's own (its pod is named by C(ETCDPROXY_POD_NAME)).
    type: str
    default: ''
attributes:
  check_mode:
    support: full
notes:
  - Handles private keys; the task calling it must set C(no_log). Nothing it returns contains key material.
requirements:
- cryptography >= 42
extends_documentation_fragment:
  - etcdproxy.operator.etcdstorage
  - etcdproxy.operator.etcdstorage.limits
  - etcdproxy.operator.etcdstorage.core
  - etcdproxy.operator.etcdstorage.object
"""

EXAMPLES = r"""
- name: Reconcile one EtcdStorage
  etcdstorage_reconcile:
    name: "{{ cr.metadata.name }}"
    uid: "{{ cr.metadata.uid }}"
    namespace: kube-apiserver-storage
    spec: "{{ cr.spec }}"
    annotations: "{{ cr.metadata.annotations | default({}) }}"
    proxy_objects: "{{ lookup('ansible.builtin.template', 'proxy.yaml.j2') | ansible.builtin.from_yaml_all | list }}"
  no_log: true
  register: result

- name: Send what differs
  kubernetes.core.k8s:
    state: "{{ item.state | default('present') }}"
    apply: "{{ item.apply | default(omit) }}"
    merge_type: "{{ item.merge_type | default(omit) }}"
    definition: "{{ item.definition }}"
  loop: "{{ result.calls }}"
"""

RETURN = r"""
apply:
  description: The members of O(proxy_objects) that differ from the cluster and must be applied.
  returned: always
  type: list
  elements: dict
patch:
  description: >-
    The members of RV(apply) to send as a JSON merge patch instead (a Service that exists: its ports
    list is replaced whole, so a hand-added port goes). The rest of RV(apply), new Services included,
    is applied in one call.
  returned: always
  type: list
  elements: dict
calls:
  description: >-
    The C(kubernetes.core.k8s) calls that bring the proxy objects to the spec, as options of that module, in
    order: C(apply=true) with the objects of RV(apply) not in RV(patch), C(merge_type=merge) with RV(patch),
    C(state=absent) with RV(remove); empty when nothing differs.
  returned: always
  type: list
  elements: dict
  sample: [{"apply": true, "definition": [{"kind": "Deployment"}]}]
drift:
  description: For each object in RV(apply), the first field that differs (or C(missing)).
  returned: always
  type: dict
ready:
  description: Whether the Ready condition is True.
  returned: always
  type: bool
problems:
  description: Problems found by the certificate step.
  returned: always
  type: list
  elements: str
certificates:
  description: notAfter and renewalTime of every certificate, CA rotation state.
  returned: always
  type: dict
requeue_after:
  description: Go duration after which to reconcile again, or an empty string.
  returned: always
  type: str
events:
  description: Events emitted by both steps.
  returned: always
  type: list
  elements: dict
written:
  description: The objects the certificate step wrote (kind namespace/name), in write order.
  returned: always
  type: list
  elements: str
msg:
  description: Why nothing was done (the EtcdStorage no longer exists), or an empty string.
  returned: always
  type: str
extra_status:
  description: >-
    The C(.status) keys the certificate and restore steps set
    (O(etcdproxy.operator.etcdstorage_status#module:extra_status)).
  returned: always
  type: dict
restore_condition:
  description: The C(Restored) condition of an EtcdStorage created from a backup, else null.
  returned: always
  type: dict
remove:
  description: >-
    The proxy objects to delete (C(apiVersion), C(kind), C(metadata.name), C(metadata.namespace)): those
    that exist of an EtcdStorage whose prefix is reserved, else empty.
  returned: always
  type: list
  elements: dict
"""

import traceback
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.step import (
        CERT_OPTIONS, failed_result, reconcile_certificates,
    )
    from ansible_collections.etcdproxy.operator.plugins.module_utils import keyspace, names
    from ansible_collections.etcdproxy.operator.plugins.module_utils.clone import (
        RESTORED, CloneDecision, reconcile_clone,
    )
    from ansible_collections.etcdproxy.operator.plugins.module_utils.coreetcd import material
    from ansible_collections.etcdproxy.operator.plugins.module_utils.status.conditions import Condition
    from ansible_collections.etcdproxy.operator.plugins.module_utils.args import refuse_without_core_endpoints
    from ansible_collections.etcdproxy.operator.plugins.module_utils.kube import Kube, api_client
    from ansible_collections.etcdproxy.operator.plugins.module_utils.status.step import (
        STATUS_OPTIONS, k8s_calls, reconcile_status,
    )
    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()
    CERT_OPTIONS, STATUS_OPTIONS = {}, {}

STEP_ONLY = ("emit_events", "certificate_problems", "extra_status", "next_check_seconds", "apply_error",
             "restore_condition")


def options() -> dict:
    spec = {k: v for k, v in {**CERT_OPTIONS, **STATUS_OPTIONS}.items() if k not in STEP_ONLY}
    spec["spec"] = dict(type="dict", default={})
    spec["manage_certificates"] = dict(type="bool", default=True)
    spec["job_image"] = dict(type="str", default="")
    return spec


def clone_step(kube: Kube, p: dict, check_mode: bool) -> CloneDecision | None:
    """For an EtcdStorage created from a backup: fill its prefix first (module_utils/clone.py)."""
    if not (p["spec"].get("restoreFrom") and p["manage_status"]):
        return None
    ns = p["namespace"]
    core = material(kube.get_configmap(ns, p["core_ca_configmap"]), kube.get_secret(ns, p["core_client_secret"]),
                    p["core_ca_key"])
    try:
        if not all(core) or not p["core_endpoints"]:
            raise RuntimeError("the core etcd material or endpoints are not usable (see CoreEtcdConfigured)")
        return reconcile_clone(kube, p, core, check_mode)
    except Exception as exc:  # reported through the Restored condition, retried
        old = ((kube.get_etcdstorage(p["name"]) or {}).get("status") or {}).get("restore") or {}
        return CloneDecision(Condition(RESTORED, "False", "RestoreBlocked", f"cannot fill the prefix yet: {exc}"),
                             old, requeue=True)


def proxy_remains(kube: Kube, name: str, namespace: str) -> list[dict[str, Any]]:
    """The proxy Deployment and Service of ``name`` that exist, as kubernetes.core.k8s deletes them."""
    found = [("apps/v1", "Deployment", kube.get_deployment), ("v1", "Service", kube.get_service)]
    return [{"apiVersion": api, "kind": kind, "metadata": {"name": names.proxy(name), "namespace": namespace}}
            for api, kind, get in found if get(namespace, names.proxy(name)) is not None]


def run(module: AnsibleModule) -> dict:
    p = module.params
    # Both steps read the proxy Deployment (rollout state, drift) and the proxy's client CA; neither writes
    # the Deployment (the kubernetes.core.k8s task after this module does), and writes through this client
    # drop what it remembered, so each object is read once unless it was written in between.
    kube = Kube(api_client(p["kubeconfig"]), reuse_reads=True)
    # A prefix the core's own users keep: no certificates, no fill, no proxy; one there is removed.
    reserved = keyspace.reserved_overlap(p["name"], p["reserved_prefixes"])
    certs = None
    if p["manage_certificates"] and not reserved:
        cert_params = {k: p.get(k) for k in CERT_OPTIONS}
        cert_params["emit_events"] = p["manage_status"]
        try:
            certs = reconcile_certificates(kube, cert_params, module.check_mode)
        except Exception as exc:  # reported through CertificatesReady, retried
            certs = failed_result(exc)
    clone = clone_step(kube, p, module.check_mode) if not reserved else None
    status_params = {k: p.get(k) for k in STATUS_OPTIONS if k not in STEP_ONLY}
    extra = {"certificates": certs["certificates"]} if certs and certs["certificates"] else {}
    if clone:
        extra["restore"] = clone.status
    status_params.update(
        certificate_problems=certs["problems"] if certs else None,
        extra_status=extra or None,
        next_check_seconds=certs["next_check_seconds"] if certs else 0,
        restore_condition=clone.condition if clone else None,
        # Until the prefix is filled the proxy is not applied: nothing can read or write a half-filled tenant.
        # (The status step drops them itself for a reserved prefix.)
        proxy_objects=p["proxy_objects"] if not clone or clone.done else [],
    )
    hash_value = certs["client_ca_hash"] if certs else ""
    status = reconcile_status(kube, status_params, module.check_mode, (names.HASH_ANNOTATION, hash_value))
    remove = proxy_remains(kube, p["name"], p["namespace"]) if reserved else []
    requeue = status["requeue_after"] or (p["retry_period"] if clone and clone.requeue else "")
    return {
        "changed": bool(status["changed"] or (certs and certs["changed"])),
        "apply": status["apply"], "patch": status["patch"], "remove": remove,
        "calls": k8s_calls(status["apply"], status["patch"], remove),
        "drift": status["drift"], "ready": status["ready"],
        "requeue_after": requeue,
        "problems": certs["problems"] if certs else [],
        "certificates": certs["certificates"] if certs else {},
        "written": certs["written"] if certs else [],
        "events": (certs["events"] if certs else []) + status["events"],
        # What the status step was given besides the options, for the role's report of a refused apply
        # (etcdstorage_status), so that report keeps the same conditions and .status keys.
        "extra_status": extra or None,
        "restore_condition": asdict(clone.condition) if clone else None,
        "msg": status.get("msg", ""),
    }


def main(module_class: Callable[..., Any] = AnsibleModule) -> None:
    """``module_class``: AnsibleModule, or the in-process stand-in of the action plugin of the same name
    (plugin_utils/inprocess.py)."""
    module = module_class(argument_spec=options(), supports_check_mode=True)
    if IMPORT_ERROR:
        module.fail_json(msg="etcdstorage_reconcile needs the urllib3 and cryptography libraries",
                         exception=IMPORT_ERROR)
    refuse_without_core_endpoints(module)
    try:
        module.exit_json(**run(module))
    except Exception as exc:  # report, never crash-loop with a traceback as the only message
        module.fail_json(msg=f"EtcdStorage {module.params['name']}: {exc}", exception=traceback.format_exc())


if __name__ == "__main__":
    main()
