#!/usr/bin/python
"""Ansible module: issue, deliver and rotate the TLS material of one EtcdStorage."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcdstorage_certs
short_description: Issue, deliver and rotate the certificates of an EtcdStorage
description:
  - Makes the whole certificate decision of one EtcdStorage in one call, and writes only what changed
    (an unchanged EtcdStorage costs no write).
  - Keeps a serving CA and a client CA per EtcdStorage in the Secret C(etcd-<name>-ca) of the operator
    namespace (their keys never leave it), the proxy's serving certificate in the Secret C(etcd-<name>-serving),
    and the client CA bundle the proxy trusts in the ConfigMap C(etcd-<name>-client-ca).
  - Delivers the serving CA bundle (key C(serving-ca.crt)) to every C(spec.caCertConfigMap) and a client
    certificate (C(tls.crt), C(tls.key)) to every C(spec.clientCertSecret), merging with whatever else
    those objects hold.
  - Renews leaves at 2/3 of their lifetime, when the spec changes what they must say, or on the annotation
    C(etcd.etcdproxy.dev/rotate); rotates CAs in stages (publish, then sign, then retire) at 2/3 of their
    lifetime or on C(etcd.etcdproxy.dev/rotate-ca). See docs/certificates.md.
  - Problems with one destination (missing namespace, no RBAC, held by another EtcdStorage) are reported
    in RV(problems) (the status step turns them into the C(CertificatesReady) condition and one Warning
    Event per transition); the other destinations are still served, and nothing is issued for a destination
    that cannot receive it.
version_added: 0.1.0
author: etcdproxy-operator developers
options:
  annotations:
    description: The EtcdStorage annotations (for the rotate annotations).
    type: dict
    default: {}
  ca_overlap:
    description:
      - Least time between publishing a next CA in the bundles and signing with it (a Go duration). Empty
        means a sixth of the CA's lifetime. API servers must restart within it.
    type: str
    default: ''
  emit_events:
    description: Create Events about the EtcdStorage for what this run did.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
notes:
  - Handles private keys; the task calling it must set C(no_log). Nothing it returns contains key material.
extends_documentation_fragment:
  - etcdstorage
  - etcdstorage.object
requirements:
  - cryptography >= 42
"""

EXAMPLES = r"""
- name: Certificates of one EtcdStorage
  etcdstorage_certs:
    name: wardle
    uid: "{{ cr.metadata.uid }}"
    namespace: kube-apiserver-storage
    spec: "{{ cr.spec }}"
    annotations: "{{ cr.metadata.annotations | default({}) }}"
  no_log: true
  register: certs
"""

RETURN = r"""
problems:
  description: One message per problem, naming the object or field and the fix.
  returned: always
  type: list
  elements: str
client_ca_hash:
  description: Hash of the client CA bundle the proxy must trust; the proxy pod template carries it.
  returned: always
  type: str
certificates:
  description: notAfter and renewalTime of every certificate and the state of CA rotations.
  returned: always
  type: dict
next_check_seconds:
  description: Seconds until something is due (a renewal, a promotion, a retirement); 0 when nothing is.
  returned: always
  type: int
written:
  description: The objects written (kind namespace/name), in order.
  returned: always
  type: list
  elements: str
events:
  description: Events emitted (type, reason, message).
  returned: always
  type: list
  elements: dict
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils.etcdproxy_certs_kube import CERT_OPTIONS, failed_result, reconcile_certificates
    from ansible.module_utils.etcdproxy_kube import Kube, api_client
    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()
    CERT_OPTIONS = {}



def main():
    module = AnsibleModule(argument_spec=CERT_OPTIONS, supports_check_mode=True)
    if IMPORT_ERROR:
        module.fail_json(msg="etcdstorage_certs needs the kubernetes and cryptography libraries",
                         exception=IMPORT_ERROR)
    try:
        kube = Kube(api_client(module.params["kubeconfig"]))
        module.exit_json(**reconcile_certificates(kube, module.params, module.check_mode))
    except Exception as exc:  # reported in status (the task is no_log), retried, never a crash loop
        module.exit_json(**failed_result(exc))


if __name__ == "__main__":
    main()
