"""Ansible module: remove what ansible-operator left on the operator's disk for objects that are gone."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: runner_leftovers
short_description: Remove ansible-operator's directories of deleted objects and old discovery caches
description:
  - ansible-operator keeps a directory per object under C(/tmp/ansible-operator/runner) (a run's inputs and the
    artifacts of its last runs) and never removes it, not even once the object is gone; kubernetes.core keeps a
    discovery cache per EtcdStorage in the temporary directory (C(k8srcp-*.json)). Under churn both would grow
    until the operator's pod is evicted for its ephemeral storage.
  - Lists the objects of O(kind) and removes the directories of those that no longer exist, unless a run started
    in one after the list (an object created again under the same name reuses its directory). Also removes
    discovery caches not written for a day (a live tenant's is only rebuilt at its next apply).
  - Runs from the finalizers, so what deleted objects left goes at the next deletion of that kind; the
    directory of the object being deleted is in use by this very run and stays until then.
  - Does nothing unless the task runs in a run ansible-operator started for an object of O(kind) (the
    one-off playbook, or a run by hand, has nothing on this disk to tidy).
  - Never fails: what cannot be listed or removed is kept and said in a warning.
version_added: 0.1.0
author: etcdproxy-operator developers
options:
  kind:
    description: The kind whose deleted objects' directories are removed.
    type: str
    required: true
    choices: [EtcdStorage, EtcdStorageBackup]
  kubeconfig:
    description:
      - Path to a kubeconfig; defaults to E(K8S_AUTH_KUBECONFIG), then E(KUBECONFIG), then in-cluster config.
    type: path
attributes:
  check_mode:
    support: full
requirements:
  - urllib3 >= 2
  - PyYAML
"""

EXAMPLES = r"""
- name: Remove what deleted EtcdStorages left on the operator's disk
  etcdproxy.operator.runner_leftovers:
    kind: EtcdStorage
"""

RETURN = r"""
removed:
  description: The deleted objects whose directories were removed (C(name), or C(namespace/name)).
  returned: always
  type: list
  elements: str
discovery_caches_removed:
  description: How many old kubernetes.core discovery caches were removed.
  returned: always
  type: int
"""

import os
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.etcdproxy.operator.plugins.module_utils import names

try:
    from ansible_collections.etcdproxy.operator.plugins.module_utils import leftovers
    from ansible_collections.etcdproxy.operator.plugins.module_utils.kube import ApiError, Kube, api_client
    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()


def run(module: Any) -> dict[str, Any]:
    p = module.params
    namespaced = p["kind"] == names.BACKUP_KIND
    kind_dir = leftovers.kind_directory(names.GROUP, names.VERSION, p["kind"])
    result: dict[str, Any] = {"changed": False, "removed": [], "discovery_caches_removed": 0}
    if leftovers.own_directory(kind_dir, Path(os.getcwd()), namespaced) is None:
        return result
    warnings = []
    kube = Kube(api_client(p["kubeconfig"]))
    listed_at = time.time()
    live: dict[str, set[str]] = {}
    for namespace in leftovers.namespaces_on_disk(kind_dir) if namespaced else [""]:
        try:
            live[namespace] = kube.backup_names(namespace) if namespaced else kube.etcdstorage_names()
        except (ApiError, OSError) as exc:
            warnings.append(f"kept the directories of deleted {p['kind']}s{' in ' + namespace if namespace else ''}: "
                            f"they could not be listed ({exc})")
    stale = leftovers.stale_directories(kind_dir, live, listed_at)
    caches = leftovers.stale_discovery_caches(Path(tempfile.gettempdir()), time.time())
    if not module.check_mode:
        stale, problems = leftovers.remove(stale)
        caches, cache_problems = leftovers.remove(caches)
        warnings += [f"kept {problem}" for problem in problems + cache_problems]
    result.update(changed=bool(stale or caches), discovery_caches_removed=len(caches),
                  removed=[str(d.relative_to(kind_dir)) for d in stale])
    if warnings:
        result["warnings"] = warnings
    return result


def main(module_class: Callable[..., Any] = AnsibleModule) -> None:
    """``module_class``: AnsibleModule, or the in-process stand-in of the action plugin of the same name
    (plugin_utils/inprocess.py)."""
    module = module_class(
        argument_spec=dict(
            kind=dict(type="str", required=True, choices=[names.KIND, names.BACKUP_KIND]),
            kubeconfig=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    if IMPORT_ERROR:
        module.fail_json(msg="runner_leftovers needs the urllib3 library", exception=IMPORT_ERROR)
    try:
        module.exit_json(**run(module))
    except Exception as exc:  # tidying must never hold up a deletion
        module.exit_json(changed=False, removed=[], discovery_caches_removed=0,
                         warnings=[f"what deleted {module.params['kind']}s left was kept: {exc}"])


if __name__ == "__main__":
    main()
