"""An EtcdStorageBackup's life decided from its Job (module_utils/backupstatus.py) and the Job it runs
(module_utils/backupjob.py): pure logic, no cluster."""

from __future__ import annotations

import json

import pytest
from ansible_collections.etcdproxy.operator.plugins.module_utils import backupjob, names
from ansible_collections.etcdproxy.operator.plugins.module_utils.backupstatus import (
    FAILED,
    MAX_ATTEMPTS,
    PENDING,
    PREFIX_RESERVED,
    RUNNING,
    SUCCEEDED,
    JobState,
    decide,
    job_state,
    with_times,
)

LOC = "s3://b/k at https://s3"
SUMMARY = {"revision": 42, "keys": 7, "bytes": 900, "sha256": "ab", "startedAt": "t0", "finishedAt": "t1",
           "restarts": 0, "leasedKeysSkipped": 1, "storage": "wardle", "prefix": "/wardle/"}


def pod(message: str | None) -> dict:
    state = {"terminated": {"exitCode": 0, **({"message": message} if message is not None else {})}}
    return {"status": {"containerStatuses": [{"name": backupjob.CONTAINER, "state": state}]}}


def job(condition: str | None, reason: str = "", message: str = "") -> dict:
    conds = [{"type": condition, "status": "True", "reason": reason, "message": message}] if condition else []
    return {"metadata": {"name": "j"}, "status": {"conditions": conds}}


def run(old: dict | None, state: JobState, problem: tuple[str, str] | None = None):
    return decide(old, 1, "wardle", "etcdproxy-backup-x", LOC, problem, state)


def test_a_new_backup_starts_a_job_and_says_where_progress_shows():
    d = run(None, JobState("absent"))
    assert d.create_job and not d.delete_job
    assert d.status["phase"] == RUNNING and d.status["attempts"] == 1
    assert "kubectl logs job/etcdproxy-backup-x" in d.status["conditions"][0]["message"]


def test_a_missing_need_keeps_it_pending_names_the_fix_and_starts_nothing():
    d = run(None, JobState("absent"), ("StorageNotFound", "spec.storageName: there is no EtcdStorage 'x'"))
    assert not d.create_job and d.requeue
    assert d.status["phase"] == PENDING
    assert d.status["conditions"][0]["reason"] == "StorageNotFound"
    assert d.events == [("Warning", "StorageNotFound", "spec.storageName: there is no EtcdStorage 'x'")]


def test_a_storage_whose_prefix_is_reserved_fails_the_request_for_good():
    d = run(None, JobState("absent"), (PREFIX_RESERVED, "spec.storageName: the prefix /registry/ shares keys"))
    assert not d.create_job and not d.requeue
    assert d.status["phase"] == FAILED and d.status["conditions"][0]["reason"] == PREFIX_RESERVED


def test_success_records_the_figures_of_the_result():
    result = {"result": "Succeeded", "location": LOC, "summary": SUMMARY}
    state = job_state(job("Complete"), [pod(json.dumps(result))])
    d = run({"phase": RUNNING, "attempts": 1}, state)
    assert d.status["phase"] == SUCCEEDED
    assert {k: d.status[k] for k in ("revision", "keys", "bytes", "sha256", "leasedKeysSkipped")} == \
        {"revision": 42, "keys": 7, "bytes": 900, "sha256": "ab", "leasedKeysSkipped": 1}
    assert "storage" not in d.status and d.status["conditions"][0]["status"] == "True"
    assert d.events[0][1] == "BackupStored"


def test_a_reported_failure_is_final_with_its_reason():
    result = {"result": "Failed", "reason": "DestinationFailed", "message": "the bucket b does not exist"}
    d = run({"phase": RUNNING, "attempts": 1}, job_state(job("Failed", "BackoffLimitExceeded"),
                                                         [pod(json.dumps(result))]))
    assert d.status["phase"] == FAILED and not d.create_job and not d.delete_job
    assert d.status["conditions"][0]["reason"] == "DestinationFailed"
    assert "does not exist" in d.status["conditions"][0]["message"]


@pytest.mark.parametrize("message", [None, "", "not json", json.dumps({"result": "maybe"})])
def test_an_attempt_without_a_result_is_started_again_then_given_up(message):
    state = job_state(job("Failed", "BackoffLimitExceeded", "Job has reached the backoff limit"), [pod(message)])
    d = run({"phase": RUNNING, "attempts": 1}, state)
    assert d.delete_job and d.status["phase"] == RUNNING
    assert d.status["conditions"][0]["reason"] == "Interrupted"
    again = run(d.status, JobState("absent"))
    assert again.create_job and again.status["attempts"] == 2
    last = run({"phase": RUNNING, "attempts": MAX_ATTEMPTS}, state)
    assert last.status["phase"] == FAILED and not last.delete_job


def test_a_deadline_is_final():
    d = run({"phase": RUNNING, "attempts": 1},
            job_state(job("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"), [pod(None)]))
    assert d.status["phase"] == FAILED and d.status["conditions"][0]["reason"] == "DeadlineExceeded"


def test_an_ended_backup_is_never_touched_again():
    for phase in (SUCCEEDED, FAILED):
        old = {"phase": phase, "attempts": 1, "conditions": []}
        d = run(old, JobState("absent"))
        assert d.status == old and not d.create_job and not d.events


def test_a_running_job_changes_nothing_and_times_are_kept():
    first = run(None, JobState("absent"))
    stamped = with_times(first.status, None, "T1")
    again = run(stamped, job_state(job(None), []))
    assert with_times(again.status, stamped, "T2") == stamped


def test_the_job_runs_the_program_with_no_api_access_and_secrets_only_by_reference():
    m = backupjob.manifest(action="backup", job=names.backup_job("w"), namespace="ns", storage="w", image="img:1",
                           core_endpoints=["https://a:2379", "https://b:2379"], core_ca_configmap="ca",
                           core_ca_key="ca.crt", core_client_secret="client",
                           s3={"endpoint": "https://s3", "bucket": "b", "key": "k", "credentialsSecret": "creds",
                               "caConfigMap": "s3ca"}, collections_path="/opt/ansible/collections", labels={})
    spec = m["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert spec["automountServiceAccountToken"] is False and m["spec"]["backoffLimit"] == 0
    assert c["command"] == ["python3", "-m", backupjob.__name__] and c["args"] == ["backup"]
    env = {e["name"]: e for e in c["env"]}
    assert env["ETCDPROXY_CORE_ENDPOINTS"]["value"] == "https://a:2379,https://b:2379"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == \
        {"name": "creds", "key": "AWS_SECRET_ACCESS_KEY"}
    assert all("value" not in e for e in c["env"] if e["name"].startswith("AWS_"))
    assert {v["name"] for v in spec["volumes"]} == {"core-ca", "core-client", "work", "s3-ca"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_job_names_fit_a_label_value_and_stay_distinct():
    long_a, long_b = "a" * 80, "a" * 79 + "b"
    assert len(names.backup_job(long_a)) <= 63 and names.backup_job(long_a) != names.backup_job(long_b)
    assert names.backup_job("w") == "etcdproxy-backup-w"


def test_the_program_reports_a_failure_by_reason_in_its_termination_message(tmp_path, monkeypatch):
    log = tmp_path / "termination-log"
    monkeypatch.setenv("ETCDPROXY_TERMINATION_LOG", str(log))
    monkeypatch.setenv("ETCDPROXY_STORAGE", "w")
    assert backupjob.main(["backup"]) == 1  # no core material mounted here
    result = json.loads(log.read_text())
    assert result["result"] == "Failed" and result["reason"] and "w" in result["message"]
    assert backupjob.result_of(pod(log.read_text())) == result


# --- An EtcdStorage created from a backup (module_utils/clone.py) ---

SUCCEEDED_BACKUP = {"metadata": {"name": "nightly"}, "status": {"phase": SUCCEEDED}}


def clone(old: dict | None, state: JobState, prefix_keys: int | None = 0, backup: dict | None = SUCCEEDED_BACKUP):
    from ansible_collections.etcdproxy.operator.plugins.module_utils.clone import decide as decide_clone

    return decide_clone("copy", "ns", old, "nightly", backup, state, prefix_keys)


def test_a_clone_first_counts_its_prefix_then_fills_it_and_is_not_served_meanwhile():
    first = clone(None, JobState("absent"), prefix_keys=None)
    assert first.count_prefix and not first.create_job and not first.done
    start = clone(None, JobState("absent"))
    assert start.create_job and not start.clear_prefix and not start.done
    assert start.status["attempts"] == 1 and start.condition.reason == "Restoring"
    running = clone(start.status, JobState("running"))
    assert not running.done and not running.create_job and running.status == start.status


def test_a_prefix_with_keys_before_the_first_attempt_is_never_touched():
    d = clone(None, JobState("absent"), prefix_keys=12)
    assert not d.create_job and not d.clear_prefix and d.requeue
    assert d.condition.reason == "PrefixNotEmpty" and "12 keys" in d.condition.message


@pytest.mark.parametrize("backup,reason", [(None, "BackupNotFound"),
                                           ({"status": {"phase": RUNNING}}, "BackupNotSucceeded"),
                                           ({"status": {"phase": FAILED}}, "BackupFailed")])
def test_a_clone_waits_for_its_backup(backup, reason):
    d = clone(None, JobState("absent"), backup=backup)
    assert not d.create_job and d.requeue and d.condition.reason == reason
    assert "spec.restoreFrom.backupName" in d.condition.message


def test_done_when_the_job_reports_success_with_figures():
    result = {"result": "Succeeded", "summary": SUMMARY}
    d = clone({"phase": "Filling", "attempts": 1}, job_state(job("Complete"), [pod(json.dumps(result))]))
    assert d.done and d.status["phase"] == "Restored" and d.status["keys"] == 7 and d.status["revision"] == 42
    again = clone(d.status, JobState("absent"), prefix_keys=None)
    assert again.done and not again.create_job and not again.count_prefix


@pytest.mark.parametrize("message", [None, json.dumps({"result": "Failed", "reason": "CoreEtcdFailed",
                                                       "message": "no core etcd endpoint answered"})])
def test_an_interrupted_fill_is_cleared_and_started_again_never_done(message):
    state = job_state(job("Failed", "BackoffLimitExceeded"), [pod(message)])
    d = clone({"phase": "Filling", "attempts": 1}, state)
    assert d.delete_job and not d.done and d.condition.reason == "RestoreInterrupted"
    retry = clone(d.status, JobState("absent"), prefix_keys=None)
    # Keys of the first attempt are ours (nothing else could write): cleared without counting, then refilled.
    assert retry.create_job and retry.clear_prefix and not retry.count_prefix and retry.status["attempts"] == 2
    assert clone({"phase": "Filling", "attempts": MAX_ATTEMPTS}, state).status["phase"] == "Failed"


def test_a_damaged_artifact_is_final_and_nothing_is_cleared():
    result = {"result": "Failed", "reason": "ArtifactDamaged", "message": "the checksum does not match"}
    d = clone({"phase": "Filling", "attempts": 1}, job_state(job("Failed"), [pod(json.dumps(result))]))
    assert d.status["phase"] == "Failed" and not d.delete_job and not d.clear_prefix
    assert d.condition.reason == "ArtifactDamaged"
    assert clone(d.status, JobState("absent")).condition.reason == "ArtifactDamaged"
