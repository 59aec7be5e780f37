#!/usr/bin/python
"""Ansible module: report an EtcdStorage's conditions and Events, writing only on change."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcdstorage_status
short_description: Compute and write the status of an EtcdStorage
description:
  - Reads the core etcd CA ConfigMap and client Secret in the operator namespace and the proxy Deployment,
    computes the C(CoreEtcdConfigured), C(ProxyAvailable) and C(Ready) conditions, and writes C(.status)
    through the status subresource only when it differs.
  - Emits one Kubernetes Event per condition transition (in namespace C(default), where the API server
    keeps Events of cluster-scoped objects); an unchanged EtcdStorage gets no write.
  - Replaces the C(operator_sdk.util.k8s_status) module, which is not installable here.
version_added: 0.1.0
author: etcdproxy-operator developers
options:
  certificate_problems:
    description:
      - Problems reported by the certificate step. Omit when certificates are not managed by this run;
        the C(CertificatesReady) condition is then left out.
    type: list
    elements: str
  proxy_objects:
    description:
      - The proxy Deployment and Service as the role renders them. Each is compared with the live object;
        those that differ (or are missing) are returned in RV(apply) for C(kubernetes.core.k8s) to apply,
        so an unchanged EtcdStorage costs no write.
    type: list
    elements: dict
    default: []
  extra_status:
    description: Further C(.status) keys to set (for example certificate expiry times).
    type: dict
  next_check_seconds:
    description: Seconds until the certificate step has something due (0 for nothing).
    type: int
    default: 0
  apply_error:
    description:
      - What the API server answered when the role last applied the proxy objects and was refused; reported
        as C(ProxyAvailable=False), reason C(ApplyFailed), with the API server's message, and retried.
    type: str
    default: ''
  restore_condition:
    description:
      - The C(Restored) condition of an EtcdStorage created from a backup (C(type), C(status), C(reason),
        C(message)), as RV(etcdproxy.operator.etcdstorage_reconcile#module:restore_condition) returns it.
        Omit for one that is not.
    type: dict
  max_requeue_seconds:
    description: The reconcile period; a requeue later than this is left to the periodic reconcile.
    type: int
    default: 600
  retry_period:
    description: How soon to look again while the core material or certificates block readiness.
    type: str
    default: 30s
  manage_status:
    description:
      - Read the EtcdStorage and write its status and Events. With C(false) (the one-off playbook, where
        the object may not exist in the cluster) only drift is computed.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
extends_documentation_fragment:
  - etcdproxy.operator.etcdstorage
  - etcdproxy.operator.etcdstorage.limits
  - etcdproxy.operator.etcdstorage.core
"""

EXAMPLES = r"""
- name: Report status and Events
  etcdstorage_status:
    name: wardle
    namespace: kube-apiserver-storage
  register: status_result

- name: Look again later when something outside our watches blocks readiness
  operator_sdk.util.requeue_after:
    period: "{{ status_result.requeue_after }}"
  when: status_result.requeue_after | length > 0
"""

RETURN = r"""
ready:
  description: Whether the Ready condition is True.
  returned: always
  type: bool
  sample: true
status:
  description: The status that was written (or would be, in check mode).
  returned: always
  type: dict
events:
  description: Events emitted in this run (type, reason, message).
  returned: always
  type: list
  elements: dict
apply:
  description: The members of O(proxy_objects) that differ from the cluster and must be applied.
  returned: always
  type: list
  elements: dict
drift:
  description: For each object in RV(apply), the first field that differs (or C(missing)).
  returned: always
  type: dict
  sample: {"Deployment kube-apiserver-storage/etcd-wardle": ".spec.replicas"}
requeue_after:
  description: Go duration after which to reconcile again, or an empty string.
  returned: always
  type: str
  sample: 30s
"""

import traceback
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible_collections.etcdproxy.operator.plugins.module_utils.kube import Kube, api_client
    from ansible_collections.etcdproxy.operator.plugins.module_utils.status.step import (
        STATUS_OPTIONS, reconcile_status,
    )
    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()
    STATUS_OPTIONS = {}



def main(module_class: Callable[..., Any] = AnsibleModule) -> None:
    """``module_class``: AnsibleModule, or the in-process stand-in of the action plugin of the same name
    (plugin_utils/inprocess.py)."""
    module = module_class(argument_spec=STATUS_OPTIONS, supports_check_mode=True)
    if IMPORT_ERROR:
        module.fail_json(msg="etcdstorage_status needs the urllib3 and cryptography libraries",
                         exception=IMPORT_ERROR)
    try:
        kube = Kube(api_client(module.params["kubeconfig"]))
        module.exit_json(**reconcile_status(kube, module.params, module.check_mode))
    except Exception as exc:  # report, never crash-loop with a traceback as the only message
        module.fail_json(msg=f"EtcdStorage {module.params['name']}: {exc}", exception=traceback.format_exc())


if __name__ == "__main__":
    main()
