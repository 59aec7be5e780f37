"""An EtcdStorageBackup's life, decided from what its Job did: plain Python, no Kubernetes client.

One request is one backup. Pending while something it needs is missing (retried), Running while its Job
runs, then Succeeded or Failed for good. A Job that ended without a result (its pod killed, evicted, its
node lost) is started again, up to MAX_ATTEMPTS; a Job that reported a failure (bucket, credentials, core)
is not, because the same request would fail the same way: the condition says what to fix, and a new
EtcdStorageBackup tries again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils.backupjob import result_of

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
COMPLETE = "Complete"
MAX_ATTEMPTS = 3
INTERRUPTED = "Interrupted"
# A problem no later look can change (the operator's settings would have to): the request fails for good.
PREFIX_RESERVED = "StoragePrefixReserved"
# Figures copied from the artifact's summary into .status.
FIGURES = ("revision", "keys", "bytes", "sha256", "startedAt", "finishedAt", "restarts", "leasedKeysSkipped")


@dataclass(frozen=True)
class JobState:
    state: str  # absent, running, succeeded, failed
    result: dict[str, Any] | None = None  # the program's termination message
    why: str = ""  # the Job's own failure reason and message (deadline, pod lost)


def job_state(job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> JobState:
    """``pods``: the pods of this Job (by owner uid)."""
    if job is None:
        return JobState("absent")
    result = next((r for r in (result_of(p) for p in pods) if r), None)
    conds = {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
    if "Complete" in conds:
        return JobState("succeeded", result)
    if "Failed" in conds:
        failed = conds["Failed"]
        return JobState("failed", result, f"{failed.get('reason', '')}: {failed.get('message', '')}".strip(": "))
    return JobState("running", result)


@dataclass
class Decision:
    status: dict[str, Any]
    create_job: bool = False
    delete_job: bool = False
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    requeue: bool = False  # look again after the retry period (something unwatched is missing)


def decide(old: dict[str, Any] | None, generation: int, storage: str, job_name: str, location: str,
           problem: tuple[str, str] | None, job: JobState) -> Decision:
    """The new .status (conditions without times: ``with_times`` adds them) and what to do."""
    old = dict(old or {})
    attempts = int(old.get("attempts") or 0)
    base = {**old, "observedGeneration": generation, "location": location}
    if old.get("phase") in (SUCCEEDED, FAILED):
        return Decision(old)
    if job.state == "absent":
        if problem:
            reason, message = problem
            if reason == PREFIX_RESERVED:
                return _failed(base, reason, message)
            return Decision({**base, "phase": PENDING, "conditions": [_cond("False", reason, message)]},
                            events=[("Warning", reason, message)], requeue=True)
        if attempts >= MAX_ATTEMPTS:
            return _failed(base, INTERRUPTED, f"{attempts} attempts were interrupted before they ended")
        message = (f"backing up /{storage}/ to {location}: Job {job_name}, attempt {attempts + 1} "
                   f"(kubectl logs job/{job_name} shows progress)")
        return Decision({**base, "phase": RUNNING, "job": job_name, "attempts": attempts + 1,
                         "conditions": [_cond("False", RUNNING, message)]},
                        create_job=True, events=[("Normal", "BackupStarted", message)])
    if job.state == "running":
        return Decision({**base, "phase": RUNNING, "job": job_name, "attempts": max(attempts, 1),
                         "conditions": old.get("conditions") or [_cond("False", RUNNING, f"Job {job_name} runs")]})
    result = job.result or {}
    if job.state == "succeeded" and result.get("result") == "Succeeded":
        summary = result.get("summary") or {}
        figures = {k: summary[k] for k in FIGURES if k in summary}
        message = (f"stored {figures.get('keys', 0)} keys ({figures.get('bytes', 0)} bytes) read at revision "
                   f"{figures.get('revision', 0)} at {result.get('location', location)}")
        return Decision({**base, **figures, "phase": SUCCEEDED, "conditions": [_cond("True", "Stored", message)]},
                        events=[("Normal", "BackupStored", message)])
    if result.get("result") == "Failed":
        return _failed(base, str(result.get("reason") or "Failed"), str(result.get("message") or "the backup failed"))
    # Ended without a result: interrupted. Start again (after the old Job is gone), or give up.
    why = job.why or "its pod ended without a result (killed, evicted or lost)"
    if job.why.startswith("DeadlineExceeded"):
        return _failed(base, "DeadlineExceeded", f"Job {job_name} ran out of time: {why}")
    if attempts >= MAX_ATTEMPTS:
        return _failed(base, INTERRUPTED, f"attempt {attempts} of {MAX_ATTEMPTS} was interrupted too: {why}")
    message = f"attempt {attempts} was interrupted ({why}); starting it again"
    return Decision({**base, "phase": RUNNING, "conditions": [_cond("False", INTERRUPTED, message)]},
                    delete_job=True, events=[("Warning", "BackupInterrupted", message)])


def _failed(base: dict[str, Any], reason: str, message: str) -> Decision:
    return Decision({**base, "phase": FAILED, "conditions": [_cond("False", reason, message)]},
                    events=[("Warning", "BackupFailed", message)])


def _cond(status: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": COMPLETE, "status": status, "reason": reason, "message": message}


def with_times(new: dict[str, Any], old: dict[str, Any] | None, now: str) -> dict[str, Any]:
    """Stamp lastTransitionTime (kept while a condition's status is unchanged) and observedGeneration."""
    old_conds = {c.get("type"): c for c in (old or {}).get("conditions") or []}
    conds = []
    for cond in new.get("conditions") or []:
        before = old_conds.get(cond["type"]) or {}
        same = before.get("status") == cond["status"] and before.get("lastTransitionTime")
        conds.append({**cond, "observedGeneration": new.get("observedGeneration", 0),
                      "lastTransitionTime": before["lastTransitionTime"] if same else now})
    return {**new, "conditions": conds}
