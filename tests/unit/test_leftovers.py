"""What ansible-operator leaves on disk for deleted objects: which directories and caches go, which stay."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.etcdproxy.operator.plugins.module_utils import leftovers
from ansible_collections.etcdproxy.operator.plugins.module_utils.kube import ApiError
from ansible_collections.etcdproxy.operator.plugins.modules import runner_leftovers
from ansible_collections.etcdproxy.operator.plugins.plugin_utils.inprocess import run_main

HOUR = 3600.0


def object_dir(parent: Path, name: str, started: float | None) -> Path:
    """An object's directory as ansible-operator leaves it; ``started``: when its last run began (None: inputs
    not written yet)."""
    d = parent / name
    (d / "project").mkdir(parents=True)
    (d / "artifacts" / "123").mkdir(parents=True)
    (d / "artifacts" / "123" / "stdout").write_text("run output")
    if started is not None:
        (d / "env").mkdir()
        (d / leftovers.RUN_INPUTS).write_text("{}")
        os.utime(d / leftovers.RUN_INPUTS, (started, started))
    return d


def test_a_directory_goes_only_when_its_object_is_gone_and_no_run_started_after_the_list(tmp_path):
    now = time.time()
    kind_dir = leftovers.kind_directory("g", "v1", "EtcdStorage", root=tmp_path)
    object_dir(kind_dir, "live", now - HOUR)
    gone = object_dir(kind_dir, "gone", now - HOUR)
    object_dir(kind_dir, "reborn", now)  # created again after the list: its first run rewrote the inputs
    just_before = object_dir(kind_dir, "just-before", now - leftovers.CLOCK_MARGIN / 2)  # within the clock's lag
    (kind_dir / "a-file").write_text("not a directory")
    (kind_dir / "a-link").symlink_to(gone)
    assert leftovers.stale_directories(kind_dir, {"": {"live"}}, listed_at=now) == [gone]
    assert just_before.exists()


def test_a_namespaced_kind_is_looked_at_only_in_the_namespaces_that_were_listed(tmp_path):
    now = time.time()
    kind_dir = leftovers.kind_directory("g", "v1", "EtcdStorageBackup", root=tmp_path)
    gone = object_dir(kind_dir / "ops", "daily-1", now - HOUR)
    object_dir(kind_dir / "ops", "daily-2", now - HOUR)
    object_dir(kind_dir / "unlisted", "daily-1", now - HOUR)  # its list failed: kept
    assert leftovers.namespaces_on_disk(kind_dir) == ["ops", "unlisted"]
    assert leftovers.stale_directories(kind_dir, {"ops": {"daily-2"}}, listed_at=now) == [gone]


def test_a_directory_without_inputs_is_dated_by_itself(tmp_path):
    d = object_dir(tmp_path, "half-made", None)
    assert leftovers.last_run_start(d) == d.stat().st_mtime


def test_only_a_run_ansible_operator_started_for_that_kind_has_a_directory_of_its_own(tmp_path):
    cluster = leftovers.kind_directory("g", "v1", "EtcdStorage", root=tmp_path)
    namespaced = leftovers.kind_directory("g", "v1", "EtcdStorageBackup", root=tmp_path)
    assert leftovers.own_directory(cluster, cluster / "wardle" / "project", False) == cluster / "wardle"
    assert leftovers.own_directory(namespaced, namespaced / "ops" / "b" / "project", True) == namespaced / "ops" / "b"
    for cwd, kind_dir, is_namespaced in ((Path("/work/main"), cluster, False),  # the one-off playbook
                                         (cluster / "wardle", cluster, False),  # not the run's project directory
                                         (namespaced / "ops" / "b" / "project", cluster, False),  # another kind
                                         (cluster / "wardle" / "project", cluster, True)):  # wrong depth
        assert leftovers.own_directory(kind_dir, cwd, is_namespaced) is None, cwd


def test_discovery_caches_go_after_a_day_without_a_write(tmp_path):
    now = time.time()
    old, fresh = tmp_path / "k8srcp-aaa.json", tmp_path / "k8srcp-bbb.json"
    other = tmp_path / "someone-elses.json"
    for path, age in ((old, 2 * leftovers.DISCOVERY_CACHE_MAX_AGE), (fresh, HOUR), (other, 10 * HOUR * 24)):
        path.write_text("{}")
        os.utime(path, (now - age, now - age))
    assert leftovers.stale_discovery_caches(tmp_path, now) == [old]


def test_remove_takes_trees_and_files_and_what_is_already_gone(tmp_path):
    tree = object_dir(tmp_path, "gone", time.time())
    cache = tmp_path / "k8srcp-a.json"
    cache.write_text("{}")
    assert leftovers.remove([tree, cache, tmp_path / "never-there"]) == ([tree, cache], [])
    assert not tree.exists() and not cache.exists()


def test_what_cannot_be_removed_is_said_and_the_rest_still_goes(tmp_path, monkeypatch):
    stuck, gone = object_dir(tmp_path, "stuck", time.time()), object_dir(tmp_path, "gone", time.time())
    real_rmtree = leftovers.shutil.rmtree

    def rmtree(path, onerror=None):
        if Path(path) == stuck:
            raise PermissionError(13, "Permission denied")
        real_rmtree(path, onerror=onerror)

    monkeypatch.setattr(leftovers.shutil, "rmtree", rmtree)
    assert leftovers.remove([stuck, gone]) == ([gone], [f"{stuck}: Permission denied"])
    assert stuck.exists() and not gone.exists()


class FakeKube:
    """Answers the module's lists; ``fail``: namespaces whose list is refused."""

    def __init__(self, storages: set[str], backups: dict[str, set[str]], fail: set[str] = frozenset()) -> None:
        self.storages, self.backups, self.fail = storages, backups, fail

    def etcdstorage_names(self) -> set[str]:
        return self.storages

    def backup_names(self, namespace: str) -> set[str]:
        if namespace in self.fail:
            raise ApiError(403, "Forbidden", '{"message": "no"}')
        return self.backups.get(namespace, set())


@pytest.fixture
def runner_root(tmp_path, monkeypatch):
    root = tmp_path / "runner"
    monkeypatch.setattr(leftovers, "RUNNER_ROOT", root)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(runner_leftovers.tempfile, "tempdir", None)  # read TMPDIR again
    return root


def module_run(monkeypatch, kube: FakeKube, cwd: Path, kind: str, check_mode: bool = False) -> dict[str, Any]:
    monkeypatch.setattr(runner_leftovers, "api_client", lambda kubeconfig: None)
    monkeypatch.setattr(runner_leftovers, "Kube", lambda api: kube)
    monkeypatch.chdir(cwd)
    return run_main(runner_leftovers.main, {"kind": kind}, check_mode)


def test_the_module_removes_what_deleted_backups_left_and_keeps_what_it_could_not_list(runner_root, monkeypatch):
    old = time.time() - HOUR
    kind_dir = leftovers.kind_directory("etcd.etcdproxy.dev", "v1alpha1", "EtcdStorageBackup")
    own = object_dir(kind_dir / "ops", "being-deleted", old)
    gone = object_dir(kind_dir / "ops", "deleted-yesterday", old)
    refused = object_dir(kind_dir / "elsewhere", "unknown", old)
    cache = Path(os.environ["TMPDIR"]) / "k8srcp-old.json"
    cache.write_text("{}")
    os.utime(cache, (old - leftovers.DISCOVERY_CACHE_MAX_AGE,) * 2)
    kube = FakeKube(set(), {"ops": {"being-deleted"}}, fail={"elsewhere"})
    checked = module_run(monkeypatch, kube, own / "project", "EtcdStorageBackup", check_mode=True)
    assert checked["changed"] and checked["removed"] == ["ops/deleted-yesterday"] and gone.exists()
    result = module_run(monkeypatch, kube, own / "project", "EtcdStorageBackup")
    assert result["removed"] == ["ops/deleted-yesterday"] and not gone.exists()
    assert result["discovery_caches_removed"] == 1 and not cache.exists()
    assert own.exists() and refused.exists()
    assert "kept the directories of deleted EtcdStorageBackups in elsewhere" in result["warnings"][0]


def test_the_module_does_nothing_outside_a_run_of_ansible_operator(runner_root, monkeypatch, tmp_path):
    kind_dir = leftovers.kind_directory("etcd.etcdproxy.dev", "v1alpha1", "EtcdStorage")
    gone = object_dir(kind_dir, "gone", time.time() - HOUR)
    result = module_run(monkeypatch, FakeKube(set(), {}), tmp_path, "EtcdStorage")
    assert result == {"changed": False, "removed": [], "discovery_caches_removed": 0}
    assert gone.exists()


def test_a_failure_is_a_warning_never_a_failed_deletion(runner_root, monkeypatch):
    kind_dir = leftovers.kind_directory("etcd.etcdproxy.dev", "v1alpha1", "EtcdStorage")
    own = object_dir(kind_dir, "being-deleted", time.time() - HOUR)

    class Broken(FakeKube):
        def etcdstorage_names(self) -> set[str]:
            raise ValueError("surprise")

    result = module_run(monkeypatch, Broken(set(), {}), own / "project", "EtcdStorage")
    assert not result.get("failed") and result["warnings"] == ["what deleted EtcdStorages left was kept: surprise"]
