"""What deleted objects leave on the operator's disk goes (ansible-operator never removes it): the runner
directory of each deleted EtcdStorage and EtcdStorageBackup, and old kubernetes.core discovery caches."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from ansible_collections.etcdproxy.operator.plugins.module_utils import leftovers, names
from kubernetes import client

from localcp.admin import OPERATOR_NAMESPACE


def test_an_etcdstorages_directory_goes_at_the_next_deletion_and_the_living_keep_theirs(storages):
    kind_dir = leftovers.kind_directory(names.GROUP, names.VERSION, names.KIND)
    first, second, living = (storages.unique(p) for p in ("gone-first", "gone-second", "living"))
    for name in (first, second, living):
        storages.create(name, {"replicas": 1})
    for name in (first, second, living):
        storages.wait_condition(name, "Ready", "True")
    old_cache = Path(tempfile.gettempdir()) / f"k8srcp-{first}.json"  # the pattern kubernetes.core writes
    old_cache.write_text("{}")
    day_and_more = time.time() - leftovers.DISCOVERY_CACHE_MAX_AGE - 60
    os.utime(old_cache, (day_and_more, day_and_more))

    storages.delete(first)
    storages.wait(f"{first} deleted", lambda: storages.get(first) is None)
    assert (kind_dir / first / "artifacts").is_dir()  # its own finalizer run was in it
    storages.delete(second)
    storages.wait(f"{second} deleted", lambda: storages.get(second) is None)
    assert not (kind_dir / first).exists()
    assert not old_cache.exists()
    assert (kind_dir / second / "artifacts").is_dir()
    existing = storages.custom.list_cluster_custom_object(names.GROUP, names.VERSION, names.PLURAL)["items"]
    assert living in {i["metadata"]["name"] for i in existing}
    for item in existing:  # every EtcdStorage that exists keeps its directory, this test's or not
        assert (kind_dir / item["metadata"]["name"] / "artifacts").is_dir(), item["metadata"]["name"]

def test_a_backups_directory_goes_at_the_next_deletion_of_a_backup(storages):
    kind_dir = leftovers.kind_directory(names.GROUP, names.VERSION, names.BACKUP_KIND) / OPERATOR_NAMESPACE
    backups = client.CustomObjectsApi(storages.api)

    def make_and_delete(name: str) -> None:
        backups.create_namespaced_custom_object(names.GROUP, names.VERSION, OPERATOR_NAMESPACE, names.BACKUP_PLURAL, {
            "apiVersion": names.API_VERSION, "kind": names.BACKUP_KIND,
            "metadata": {"name": name, "namespace": OPERATOR_NAMESPACE},
            "spec": {"storageName": storages.unique("nothing-here"),
                     "s3": {"endpoint": "https://127.0.0.1:1", "bucket": "tenant-backups",
                            "credentialsSecret": "none"}}})

        def reason() -> str:
            status = backups.get_namespaced_custom_object(names.GROUP, names.VERSION, OPERATOR_NAMESPACE,
                                                          names.BACKUP_PLURAL, name).get("status") or {}
            return ((status.get("conditions") or [{}])[0]).get("reason", "")

        storages.wait(f"backup {name} reconciled", lambda: reason() == "StorageNotFound")
        backups.delete_namespaced_custom_object(names.GROUP, names.VERSION, OPERATOR_NAMESPACE, names.BACKUP_PLURAL,
                                                name)

        def gone() -> bool:
            return name not in {i["metadata"]["name"] for i in backups.list_namespaced_custom_object(
                names.GROUP, names.VERSION, OPERATOR_NAMESPACE, names.BACKUP_PLURAL)["items"]}

        storages.wait(f"backup {name} deleted", gone)

    first, second = storages.unique("bk-first"), storages.unique("bk-second")
    make_and_delete(first)
    assert (kind_dir / first / "artifacts").is_dir()
    make_and_delete(second)
    assert not (kind_dir / first).exists()
    assert (kind_dir / second / "artifacts").is_dir()
