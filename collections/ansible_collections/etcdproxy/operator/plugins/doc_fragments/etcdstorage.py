"""Option documentation shared by the etcdstorage_* modules (extends_documentation_fragment)."""

from __future__ import annotations


class ModuleDocFragment:
    # name, namespace and how to reach the API server: every etcdstorage_* module
    DOCUMENTATION = r"""
options:
  name:
    description: Name of the EtcdStorage.
    type: str
    required: true
  namespace:
    description: The operator namespace, where the proxies, the CA store and the core etcd material live.
    type: str
    required: true
  kubeconfig:
    description:
      - Path to a kubeconfig; defaults to E(K8S_AUTH_KUBECONFIG), then E(KUBECONFIG), then in-cluster config.
      - A kubeconfig whose user runs an exec plugin or an auth provider, or that names a proxy, is read by the
        C(kubernetes) Python client's loader; the others need only C(urllib3) and C(PyYAML).
    type: path
requirements:
  - urllib3 >= 2
  - PyYAML
  - kubernetes >= 28 (only for the kubeconfigs said under O(kubeconfig))
"""

    # the admin's core etcd material and endpoints
    CORE = r"""
options:
  core_ca_configmap:
    description: ConfigMap holding the core etcd CA bundle (the role's C(etcdstorage_core_ca_configmap)).
    type: str
    required: true
  core_ca_key:
    description: Key of the CA bundle in O(core_ca_configmap).
    type: str
    required: true
  core_client_secret:
    description: kubernetes.io/tls Secret with the core etcd client certificate.
    type: str
    required: true
  core_endpoints:
    description: Core etcd client URLs.
    type: list
    elements: str
    default: []
  reserved_prefixes:
    description:
      - Key prefixes the core etcd's other users keep, besides C(/registry) (always reserved); an EtcdStorage
        whose prefix shares keys with one gets nothing and its keys are never deleted.
    type: list
    elements: str
    default: []
"""

    # uid and spec of the EtcdStorage
    OBJECT = r"""
options:
  uid:
    description: UID of the EtcdStorage; material of an earlier object with the same name is not reused.
    type: str
    default: ""
  spec:
    description: The EtcdStorage spec.
    type: dict
    default: {}
"""

    # the tenant's limits, for status.usage and WithinLimits (the status step)
    LIMITS = r"""
options:
  limits:
    description:
      - The tenant's limits in force (spec.limits over the operator's defaults), to compare the usage its
        endpoint replicas report with; sets C(status.usage) and the C(WithinLimits) condition.
    type: dict
    default: {}
  default_limits:
    description:
      - The operator's default limits (E(ETCDPROXY_LIMIT_*)), checked as the guard parses them (whole
        quantities of bytes, or integers). A wrong one, or a wrong O(core_reserve_percent),
        O(core_quota_bytes), O(core_endpoints) or O(reserved_prefixes), is reported as
        C(CoreEtcdConfigured=False) (C(OperatorMisconfigured)) naming the variable, and no proxy object
        is applied.
    type: dict
    default: {}
  core_reserve_percent:
    description:
      - Share of the core's space quota kept for the main cluster (E(ETCDPROXY_CORE_RESERVE_PERCENT)), an
        integer from 0 to 90; not checked when left out.
    type: str
  core_quota_bytes:
    description:
      - The core's space quota for cores whose Status does not report it (E(ETCDPROXY_CORE_QUOTA_BYTES));
        empty means etcd's default.
    type: str
    default: ''
"""
