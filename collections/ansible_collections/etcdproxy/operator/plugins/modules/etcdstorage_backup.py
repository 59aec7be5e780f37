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
version_added: 0.2.0
author: etcdproxy-operator developers
options:
  action:
    description: What to do.
    type: str
    choices: [backup, restore]
    required: true
  path:
    description: The artifact file (written by O(action=backup), read by O(action=restore)).
    type: path
    required: true
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
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible_collections.etcdproxy.operator.plugins.module_utils import keyspace
    from ansible_collections.etcdproxy.operator.plugins.module_utils.args import COMMON_OPTIONS, CORE_OPTIONS
    from ansible_collections.etcdproxy.operator.plugins.module_utils.backup import ArtifactError
    from ansible_collections.etcdproxy.operator.plugins.module_utils.coreetcd import material, session
    from ansible_collections.etcdproxy.operator.plugins.module_utils.kube import Kube, api_client
    from ansible_collections.etcdproxy.operator.plugins.module_utils.prefixcopy import (
        PrefixNotEmptyError, backup, count, restore, verify,
    )
    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()
    COMMON_OPTIONS = CORE_OPTIONS = {}


def run(module: AnsibleModule) -> dict:
    p = module.params
    name, path = p["name"], p["path"]
    if not p["core_endpoints"]:
        raise ValueError("core_endpoints is empty: set the core etcd client URLs (ETCDPROXY_CORE_ENDPOINTS)")
    if p["action"] == "backup" and module.check_mode:
        return {"changed": True}
    if p["action"] == "restore" and not os.path.isfile(path):
        raise ValueError(f"no artifact at {path}")
    kube = Kube(api_client(p["kubeconfig"]))
    ca, cert, key = material(kube.get_configmap(p["namespace"], p["core_ca_configmap"]),
                             kube.get_secret(p["namespace"], p["core_client_secret"]), p["core_ca_key"])
    if not (ca and cert and key):
        raise ValueError(f"the core etcd CA ConfigMap {p['core_ca_configmap']} or client Secret "
                         f"{p['core_client_secret']} in {p['namespace']} is missing")
    errors = []
    with session(ca, cert, key) as sess:
        for endpoint in p["core_endpoints"]:
            base = endpoint.rstrip("/")
            try:
                if p["action"] == "backup":
                    return {"changed": True, "backup": backup(sess, base, name, path)}
                if module.check_mode:
                    summary = verify(path)
                    if count(sess, base, keyspace.tenant_prefix(name)):
                        raise PrefixNotEmptyError(f"the prefix /{name}/ already has keys")
                    return {"changed": True, "backup": summary}
                return {"changed": True, "backup": restore(sess, base, name, path)}
            except (ArtifactError, PrefixNotEmptyError):
                raise
            except Exception as exc:  # this endpoint failed: try the next one
                errors.append(f"{endpoint}: {exc}")
    raise RuntimeError("no core etcd endpoint answered: " + "; ".join(errors))


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(**COMMON_OPTIONS, **CORE_OPTIONS,
                           action=dict(type="str", choices=["backup", "restore"], required=True),
                           path=dict(type="path", required=True)),
        supports_check_mode=True,
    )
    if IMPORT_ERROR:
        module.fail_json(msg="etcdstorage_backup needs the kubernetes and requests libraries", exception=IMPORT_ERROR)
    try:
        module.exit_json(**run(module))
    except ArtifactError as exc:
        module.fail_json(msg=f"{module.params['path']} is not a usable backup: {exc}; nothing was written")
    except PrefixNotEmptyError as exc:
        module.fail_json(msg=f"{exc}; nothing was written (restore into a new EtcdStorage, or delete the keys "
                             "first: deletionPolicy Delete)")
    except Exception as exc:
        module.fail_json(msg=f"{module.params['action']} of {module.params['name']}: {exc}")


if __name__ == "__main__":
    main()
