"""What ansible-operator leaves on the operator's disk for objects that no longer exist.

ansible-operator runs every reconcile of an object in a directory of its own,
``/tmp/ansible-operator/runner/<group>/<version>/<kind>/[<namespace>/]<name>`` (the run's inputs and the
artifacts of its last runs, which watches.yaml's maxRunnerArtifacts bounds per object), and never removes
it, not even once the object is gone (ansible-operator-plugins issue 231). kubernetes.core's k8s module
keeps a discovery cache per API server URL in the temporary directory, and ansible-operator puts the owner
of each run in that URL, so every EtcdStorage that applied its proxy leaves one (``k8srcp-<hash>.json``).
Under churn (EtcdStorageBackups made by a schedule and deleted for retention, tenants that CI creates and
deletes) both grow without bound until the kubelet evicts the operator's pod for its ephemeral storage.
The finalizer runs remove them (docs/design.md, "Disk").
"""

from __future__ import annotations

import shutil
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

# ansible-operator's, fixed in its runner (internal/ansible/runner/runner.go).
RUNNER_ROOT = Path("/tmp/ansible-operator/runner")
# ansible-operator writes a run's inputs before it starts ansible-runner, so this file's time is when the
# object's last run started.
RUN_INPUTS = Path("env") / "extravars"
# A file's time comes from the kernel's coarse clock, up to a few milliseconds behind the time a process
# reads: a run that starts just after the list is never taken for one that started before it.
CLOCK_MARGIN = 1.0
# kubernetes.core's discovery caches. Kept for a day since last written: a live tenant whose cache is
# removed only discovers the API again at its next apply.
DISCOVERY_CACHES = "k8srcp-*.json"
DISCOVERY_CACHE_MAX_AGE = 86400.0


def kind_directory(group: str, version: str, kind: str, root: Path | None = None) -> Path:
    """Where ansible-operator keeps the directories of the objects of one kind (under ``root``, by default
    RUNNER_ROOT)."""
    return (root or RUNNER_ROOT) / group / version / kind


def own_directory(kind_dir: Path, cwd: Path, namespaced: bool) -> Path | None:
    """The object directory of this run when ansible-operator started it for an object of this kind (it runs
    ansible-playbook in ``<object directory>/project``), else None: a run by hand or of the one-off playbook
    has nothing on this disk to tidy."""
    if cwd.name != "project":
        return None
    obj = cwd.parent
    parent = obj.parent.parent if namespaced else obj.parent
    return obj if parent == kind_dir else None


def namespaces_on_disk(kind_dir: Path) -> list[str]:
    """The namespaces that hold object directories of a namespaced kind."""
    return sorted(d.name for d in _directories(kind_dir))


def last_run_start(obj_dir: Path) -> float:
    """When the object's last run started (its inputs' time; the directory's own when they are missing)."""
    try:
        return (obj_dir / RUN_INPUTS).stat().st_mtime
    except FileNotFoundError:
        return obj_dir.stat().st_mtime


def stale_directories(kind_dir: Path, live: Mapping[str, Collection[str]], listed_at: float) -> list[Path]:
    """Directories of objects that are not in ``live`` and in which no run started after ``listed_at``.

    ``live``: the names that existed when they were listed at ``listed_at``, per namespace (the key "" for a
    cluster-scoped kind, whose directories sit in ``kind_dir`` itself). Namespaces not in ``live`` are not
    looked at: what could not be listed is kept. An object created again under a deleted one's name after
    the list reuses its directory, and its first run rewrites the inputs, so that directory is kept too."""
    stale = []
    for namespace, names in sorted(live.items()):
        for obj_dir in _directories(kind_dir / namespace if namespace else kind_dir):
            if obj_dir.name in names:
                continue
            try:
                started = last_run_start(obj_dir)
            except FileNotFoundError:  # removed meanwhile (another finalizer run)
                continue
            if started < listed_at - CLOCK_MARGIN:
                stale.append(obj_dir)
    return stale


def stale_discovery_caches(tmp: Path, now: float, max_age: float = DISCOVERY_CACHE_MAX_AGE) -> list[Path]:
    """kubernetes.core discovery caches in ``tmp`` not written for ``max_age`` seconds."""
    stale = []
    for cache in sorted(tmp.glob(DISCOVERY_CACHES)):
        try:
            if cache.is_file() and not cache.is_symlink() and now - cache.stat().st_mtime > max_age:
                stale.append(cache)
        except FileNotFoundError:
            continue
    return stale


def remove(paths: Iterable[Path]) -> tuple[list[Path], list[str]]:
    """Remove each directory tree or file. Returns the ones that were removed, and a message for each that
    could not be (kept; the others are still removed). One already gone (a concurrent run removed it) is
    neither."""
    removed, problems = [], []
    for path in paths:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, onerror=_unless_gone)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror or exc}")
            continue
        removed.append(path)
    return removed, problems


def _unless_gone(function: object, path: str, exc_info: tuple) -> None:
    """rmtree's error handler: a file removed meanwhile is fine, anything else is raised."""
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]


def _directories(parent: Path) -> list[Path]:
    try:
        return sorted(d for d in parent.iterdir() if d.is_dir() and not d.is_symlink())
    except FileNotFoundError:
        return []
