"""An EtcdStorage created from a backup (``spec.restoreFrom``): its prefix is filled before it is served.

Until the fill is done the proxy is not applied at all, so no tenant can read a half-filled prefix or write
into it, and the ``Restored`` condition (blocking Ready) says what happens; its transitions are Events, like
every other condition's. The fill runs as a restore Job (module_utils/backupjob.py) of the backup's artifact,
into an empty prefix only: a prefix that already holds
keys before the first attempt (kept by an earlier EtcdStorage of the same name with deletionPolicy Retain) is
never touched. An attempt that ends without a result or fails on the core etcd may have written part of the
keys; since nothing else can have written there, the next attempt clears the prefix and starts again (up to
MAX_ATTEMPTS). A reported artifact or destination failure is final: nothing was written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils import backupjob, keyspace, names
from ansible_collections.etcdproxy.operator.plugins.module_utils.backupjob import CORE_FAILED
from ansible_collections.etcdproxy.operator.plugins.module_utils.backupstatus import (
    FIGURES,
    MAX_ATTEMPTS,
    SUCCEEDED,
    JobState,
    job_state,
)
from ansible_collections.etcdproxy.operator.plugins.module_utils.coreetcd import delete_tenant
from ansible_collections.etcdproxy.operator.plugins.module_utils.status.conditions import Condition

RESTORED = "Restored"  # the condition type
FILLING, DONE, FAILED = "Filling", "Restored", "Failed"


@dataclass
class CloneDecision:
    condition: Condition
    status: dict[str, Any]  # .status.restore
    count_prefix: bool = False  # ask again with the prefix's key count
    clear_prefix: bool = False
    create_job: bool = False
    delete_job: bool = False
    requeue: bool = False

    @property
    def done(self) -> bool:
        return self.condition.status == "True"


def decide(name: str, namespace: str, old: dict[str, Any] | None, backup_name: str, backup: dict[str, Any] | None,
           job: JobState, prefix_keys: int | None) -> CloneDecision:
    """``old``: .status.restore; ``prefix_keys``: the prefix's key count, or None when not counted yet."""
    old = dict(old or {})
    attempts = int(old.get("attempts") or 0)
    base = {**old, "backup": backup_name}
    job_name = names.restore_job(name)
    if old.get("phase") == DONE:
        return CloneDecision(Condition(RESTORED, "True", DONE, _done_message(old)), old)
    if old.get("phase") == FAILED:
        return CloneDecision(Condition(RESTORED, "False", old.get("reason") or FAILED, old.get("message", "")), old)
    if job.state == "absent":
        where = f"spec.restoreFrom.backupName: the EtcdStorageBackup {backup_name} in {namespace}"
        if backup is None:
            return _waiting(base, "BackupNotFound", f"{where} does not exist; create it or name another")
        phase = (backup.get("status") or {}).get("phase") or "Pending"
        if phase == "Failed":
            return _waiting(base, "BackupFailed", f"{where} Failed and never will succeed: delete this EtcdStorage "
                                                  "and create it again from a backup that succeeded")
        if phase != SUCCEEDED:
            return _waiting(base, "BackupNotSucceeded", f"{where} is {phase}, not Succeeded: the clone waits for it")
        if attempts >= MAX_ATTEMPTS:
            return _failed(base, "Interrupted", f"{attempts} attempts to fill /{name}/ ended without a result")
        if attempts == 0:
            if prefix_keys is None:
                return CloneDecision(Condition(RESTORED, "False", "Checking", "checking the prefix"), base,
                                     count_prefix=True)
            if prefix_keys:
                return _waiting(base, "PrefixNotEmpty", (
                    f"the prefix /{name}/ already holds {prefix_keys} keys (kept by an earlier EtcdStorage of this "
                    "name?): a clone fills an empty prefix only; delete those keys or choose another name. "
                    "Nothing was written"))
        message = (f"filling /{name}/ from backup {backup_name} (Job {job_name}, attempt {attempts + 1}); "
                   "the endpoint is served once it is done")
        return CloneDecision(Condition(RESTORED, "False", "Restoring", message),
                             {**base, "phase": FILLING, "attempts": attempts + 1, "job": job_name},
                             clear_prefix=attempts > 0, create_job=True)
    if job.state == "running":
        return CloneDecision(Condition(RESTORED, "False", "Restoring",
                                       f"filling /{name}/ from backup {backup_name} (Job {job_name})"), base)
    result = job.result or {}
    if job.state == "succeeded" and result.get("result") == "Succeeded":
        summary = result.get("summary") or {}
        done = {**base, "phase": DONE, **{k: summary[k] for k in FIGURES if k in summary}}
        message = _done_message(done)
        return CloneDecision(Condition(RESTORED, "True", DONE, message), done)
    reason = str(result.get("reason") or "")
    if result.get("result") == "Failed" and reason != CORE_FAILED:
        return _failed(base, reason or FAILED, str(result.get("message") or "the restore failed"))
    why = result.get("message") or job.why or "its pod ended without a result (killed, evicted or lost)"
    if attempts >= MAX_ATTEMPTS:
        return _failed(base, reason or "Interrupted", f"attempt {attempts} of {MAX_ATTEMPTS} failed too: {why}")
    message = f"attempt {attempts} to fill /{name}/ did not finish ({why}); clearing it and starting again"
    return CloneDecision(Condition(RESTORED, "False", "RestoreInterrupted", message), {**base, "phase": FILLING},
                         delete_job=True)


def _done_message(st: dict[str, Any]) -> str:
    return (f"filled from backup {st.get('backup')}: {st.get('keys', 0)} keys as they were at revision "
            f"{st.get('revision', 0)} of the source")


def _waiting(base: dict[str, Any], reason: str, message: str) -> CloneDecision:
    return CloneDecision(Condition(RESTORED, "False", reason, message), {**base, "phase": "Waiting"}, requeue=True)


def _failed(base: dict[str, Any], reason: str, message: str) -> CloneDecision:
    return CloneDecision(Condition(RESTORED, "False", reason, message),
                         {**base, "phase": FAILED, "reason": reason, "message": message})


def reconcile_clone(kube: Any, p: dict[str, Any], core: tuple[str, str, str], check_mode: bool) -> CloneDecision:
    """Observe and act for one EtcdStorage with spec.restoreFrom. ``core``: the core etcd CA, cert and key."""
    name, namespace = p["name"], p["namespace"]
    cr = kube.get_etcdstorage(name) or {}
    old = (cr.get("status") or {}).get("restore")
    if (old or {}).get("phase") in (DONE, FAILED):  # settled: no reads
        return decide(name, namespace, old, "", None, JobState("absent"), None)
    backup_name = p["spec"]["restoreFrom"]["backupName"]
    backup = kube.get_backup(namespace, backup_name)
    job = kube.get_job(namespace, names.restore_job(name))
    if job and job["metadata"].get("deletionTimestamp"):
        return CloneDecision(Condition(RESTORED, "False", "Restoring", "waiting for the last attempt's Job to go"),
                             old or {}, requeue=True)
    state = job_state(job, backupjob.job_pods(kube, namespace, job))
    decision = decide(name, namespace, old, backup_name, backup, state, None)
    if decision.count_prefix:
        keys = _first_answer(p["core_endpoints"], lambda endpoint: _count(endpoint, core, keyspace.tenant_prefix(name)))
        decision = decide(name, namespace, old, backup_name, backup, state, keys)
    if check_mode:
        return decision
    if decision.delete_job:
        kube.delete_job(namespace, names.restore_job(name))
    if decision.clear_prefix:
        delete_tenant(p["core_endpoints"], name, *core)
    if decision.create_job:
        assert backup is not None
        image = p.get("job_image") or backupjob.own_image(kube, namespace)
        if not image:
            return _waiting(decision.status, "OperatorImageUnknown", (
                "the operator cannot tell its own image for the restore Job: set ETCDPROXY_POD_NAME "
                "(config/manager does) or ETCDPROXY_JOB_IMAGE"))
        kube.create_job(backupjob.manifest(
            action="restore", job=names.restore_job(name), namespace=namespace, storage=name, image=image,
            core_endpoints=p["core_endpoints"], core_ca_configmap=p["core_ca_configmap"], core_ca_key=p["core_ca_key"],
            core_client_secret=p["core_client_secret"], s3=backupjob.s3_settings(backup),
            collections_path=backupjob.collections_path(), labels={names.STORAGE_LABEL: name},
            sha256=str((backup.get("status") or {}).get("sha256") or "")))
    return decision


def _count(endpoint: str, core: tuple[str, str, str], prefix: bytes) -> int:
    # grpc loads only when a clone needs it: every EtcdStorage reconcile imports this file.
    from ansible_collections.etcdproxy.operator.plugins.module_utils.coregrpc import connect

    with connect(endpoint, *core) as kv:
        return kv.count(prefix)


def _first_answer(endpoints: list[str], call: Any) -> Any:
    errors = []
    for endpoint in endpoints:
        try:
            return call(endpoint)
        except Exception as exc:  # this endpoint failed: try the next one
            errors.append(f"{endpoint}: {exc}")
    raise RuntimeError("no core etcd endpoint answered: " + "; ".join(errors))
