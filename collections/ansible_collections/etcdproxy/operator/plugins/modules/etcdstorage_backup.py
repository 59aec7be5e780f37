#!/usr/bin/python
"""Ansible module: back up one tenant's keys at one revision to a file, or fill an empty tenant from one."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcdstorage_backup
short_description: Back up one EtcdStorage's keys at one revision, or restore them into an empty tenant
description:
  - With O(action=backup), reads every key under C(/<name>/) from the core etcd at a single revision, a page at
    a time, and writes them to O(path) as one compressed, checksummed artifact with keys relative to the prefix
    (so it restores under any name). If the core compacts past that revision mid-way, starts again at a newer
    one and says so (RV(backup.restarts)). Keys attached to a lease (Kubernetes Events) are left out and counted.
    The file appears only once complete (written aside, then renamed).
  - With O(action=restore), checks the artifact at O(path) through (format, checksum, counts) before writing
    anything, then fills the prefix C(/<name>/), which must be empty; a damaged artifact writes nothing.
  - Uses the core etcd CA and client certificate of the operator namespace, like the operator.
  - Refuses a name whose prefix shares keys with one the core's own users keep (C(/registry), the main
    kube-apiserver's, and O(reserved_prefixes)), which hold the core's data, not a tenant's.
version_added: 0.2.0
author: etcdproxy-operator developers
options:
  action:
    description: What to do.
    type: str
    choices: [backup, restore]
    required: true
  path:
    description:
      - The artifact as a local file (written by O(action=backup), read by O(action=restore)).
      - Exactly one of O(path) and O(s3).
    type: path
  s3:
    description:
      - The artifact as an object in S3-compatible storage (uploaded after the backup is complete, downloaded
        to a temporary file before a restore).
    type: dict
    suboptions:
      endpoint:
        description: The endpoint URL, e.g. C(https://s3.example.com:9000).
        type: str
        required: true
      bucket:
        description: The bucket; it must exist.
        type: str
        required: true
      key:
        description: The object key of the artifact.
        type: str
        required: true
      region:
        description: The region to sign requests for.
        type: str
        default: us-east-1
      credentials_secret:
        description: Secret in O(namespace) with keys C(AWS_ACCESS_KEY_ID) and C(AWS_SECRET_ACCESS_KEY).
        type: str
        required: true
      ca_configmap:
        description: ConfigMap in O(namespace) whose C(ca.crt) is the endpoint's CA, when it is not publicly trusted.
        type: str
attributes:
  check_mode:
    support: full
    details: A backup in check mode reads nothing; a restore checks the artifact and that the prefix is empty.
notes:
  - Reads the core etcd client key; the task calling it must set C(no_log).
extends_documentation_fragment:
  - etcdproxy.operator.etcdstorage
  - etcdproxy.operator.etcdstorage.core
"""

EXAMPLES = r"""
- name: Back up tenant wardle
  etcdproxy.operator.etcdstorage_backup:
    action: backup
    name: wardle
    namespace: kube-apiserver-storage
    path: /backups/wardle.etcdbackup
    core_endpoints: ["https://10.0.0.10:2379"]
    core_ca_configmap: etcd-coreserving-ca
    core_ca_key: ca.crt
    core_client_secret: etcd-coreserving-cert
  no_log: true

- name: Back up tenant wardle to S3-compatible storage
  etcdproxy.operator.etcdstorage_backup:
    action: backup
    name: wardle
    namespace: kube-apiserver-storage
    s3:
      endpoint: https://s3.example.com:9000
      bucket: etcd-backups
      key: wardle/2026-11-28.etcdbackup
      credentials_secret: backup-s3-credentials
      ca_configmap: backup-s3-ca
    core_endpoints: ["https://10.0.0.10:2379"]
    core_ca_configmap: etcd-coreserving-ca
    core_ca_key: ca.crt
    core_client_secret: etcd-coreserving-cert
  no_log: true

- name: Restore it as a new tenant wardle-copy (its prefix must be empty)
  etcdproxy.operator.etcdstorage_backup:
    action: restore
    name: wardle-copy
    namespace: kube-apiserver-storage
    path: /backups/wardle.etcdbackup
    core_endpoints: ["https://10.0.0.10:2379"]
    core_ca_configmap: etcd-coreserving-ca
    core_ca_key: ca.crt
    core_client_secret: etcd-coreserving-cert
  no_log: true
"""

RETURN = r"""
backup:
  description: What the artifact holds (no key or value is ever returned).
  returned: success, unless a backup in check mode
  type: dict
  contains:
    storage: {description: The EtcdStorage backed up., type: str}
    prefix: {description: Its prefix at backup time., type: str}
    revision: {description: The core revision every key was read at., type: int}
    keys: {description: Keys in the artifact., type: int}
    bytes: {description: Key and value bytes in the artifact (uncompressed)., type: int}
    sha256: {description: Checksum over the artifact's content., type: str}
    startedAt: {description: When the (last) read began., type: str}
    finishedAt: {description: When it ended., type: str}
    restarts: {description: Times the backup started again because the core compacted past its revision., type: int}
    leasedKeysSkipped: {description: Lease-attached keys left out., type: int}
    restoredTo: {description: With O(action=restore), the prefix filled., type: str}
    written: {description: With O(action=restore), keys written., type: int}
location:
  description: Where the artifact is (the file, or C(s3://bucket/key at endpoint)).
  returned: success
  type: str
"""

import traceback
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible_collections.etcdproxy.operator.plugins.module_utils import keyspace
    from ansible_collections.etcdproxy.operator.plugins.module_utils.args import COMMON_OPTIONS, CORE_OPTIONS
    from ansible_collections.etcdproxy.operator.plugins.module_utils.coreetcd import material
    from ansible_collections.etcdproxy.operator.plugins.module_utils.kube import Kube, api_client
    from ansible_collections.etcdproxy.operator.plugins.module_utils.s3store import (
        DestinationError, Location, credentials,
    )
    from ansible_collections.etcdproxy.operator.plugins.module_utils.secretdata import secret_text
    from ansible_collections.etcdproxy.operator.plugins.module_utils.transfer import (
        Core, Destination, execute, explain,
    )
    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()
    COMMON_OPTIONS = CORE_OPTIONS = {}


def destination(kube: Kube, namespace: str, path: str | None, s3: dict | None) -> Destination:
    """The file, or the S3 object with its credentials and CA read from the operator namespace."""
    if not s3:
        return Destination(path=path)
    location = Location(s3["endpoint"], s3["bucket"], s3["key"], s3["region"])
    access = credentials(secret_text(kube.get_secret(namespace, s3["credentials_secret"])), s3["credentials_secret"])
    s3_ca = None
    if s3["ca_configmap"]:
        s3_ca = ((kube.get_configmap(namespace, s3["ca_configmap"]) or {}).get("data") or {}).get("ca.crt")
        if not s3_ca:
            raise DestinationError(f"the ConfigMap {s3['ca_configmap']} in {namespace} has no ca.crt")
    return Destination(s3=location, access=access, s3_ca=s3_ca)


def run(module: AnsibleModule) -> dict:
    p = module.params
    taken = keyspace.reserved_overlap(p["name"], p["reserved_prefixes"])
    if taken:
        raise ValueError(f"{keyspace.reserved_message(p['name'], taken)}; back up the core etcd itself with "
                         "etcdctl snapshot")
    kube = Kube(api_client(p["kubeconfig"]))
    ca, cert, key = material(kube.get_configmap(p["namespace"], p["core_ca_configmap"]),
                             kube.get_secret(p["namespace"], p["core_client_secret"]), p["core_ca_key"])
    if p["core_endpoints"] and not (ca and cert and key):
        raise ValueError(f"the core etcd CA ConfigMap {p['core_ca_configmap']} or client Secret "
                         f"{p['core_client_secret']} in {p['namespace']} is missing")
    dest = destination(kube, p["namespace"], p["path"], p["s3"])
    summary = execute(p["action"], p["name"], Core(p["core_endpoints"], ca, cert, key), dest, module.check_mode)
    result = {"changed": True, "location": dest.where()}
    if summary:
        result["backup"] = summary
    return result


def main(module_class: Callable[..., Any] = AnsibleModule) -> None:
    """``module_class``: AnsibleModule, or the in-process stand-in of the action plugin of the same name
    (plugin_utils/inprocess.py)."""
    module = module_class(
        argument_spec=dict(**COMMON_OPTIONS, **CORE_OPTIONS,
                           action=dict(type="str", choices=["backup", "restore"], required=True),
                           path=dict(type="path"),
                           s3=dict(type="dict", options=dict(
                               endpoint=dict(type="str", required=True), bucket=dict(type="str", required=True),
                               key=dict(type="str", required=True, no_log=False),
                               region=dict(type="str", default="us-east-1"),
                               credentials_secret=dict(type="str", required=True, no_log=False),
                               ca_configmap=dict(type="str")))),
        required_one_of=[("path", "s3")],
        mutually_exclusive=[("path", "s3")],
        supports_check_mode=True,
    )
    if IMPORT_ERROR:
        module.fail_json(msg="etcdstorage_backup needs the urllib3 and boto3 libraries",
                         exception=IMPORT_ERROR)
    p = module.params
    try:
        module.exit_json(**run(module))
    except Exception as exc:  # what failed, what was (not) written, what to do; never a traceback alone
        where = p["path"] or "the downloaded artifact"
        module.fail_json(msg=explain(p["action"], p["name"], where, exc)[1])


if __name__ == "__main__":
    main()
