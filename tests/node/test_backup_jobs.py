"""EtcdStorageBackup served by the operator in-cluster: each backup runs as a real Job of the operator's image on
the real node, reads the core etcd from a pod, and stores its artifact in a real S3-compatible server
(versitygw on the node IP, TLS with the cluster CA). Bad input, an interrupted Job, a restarted operator and
the deletion policy, as a user meets them."""

from __future__ import annotations

import io
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from ansible_collections.etcdproxy.operator.plugins.module_utils import etcdpb, keyspace, names
from ansible_collections.etcdproxy.operator.plugins.module_utils.backup import Reader
from kubernetes import client

from localcp.admin import OPERATOR_NAMESPACE, apply
from localcp.config import NODE_IP
from localcp.probes import StartError, wait_for
from localcp.s3server import S3Server
from localcp.wardle import etcdstorage, wait_ready

from .conftest import container_pid

PLURAL = names.BACKUP_PLURAL
BUCKET = "backups"
CREDENTIALS = "backup-s3"
CA = "backup-s3-ca"


@pytest.fixture(scope="module")
def s3(node) -> Iterator[S3Server]:
    shutil.rmtree(node.cp.workdir / "s3", ignore_errors=True)  # a bucket of an earlier run
    server = S3Server(node.cp.workdir / "s3", node.cp.pki, host=NODE_IP).start()
    server.client().create_bucket(Bucket=BUCKET)
    meta = {"namespace": OPERATOR_NAMESPACE}
    apply(node.api, {"apiVersion": "v1", "kind": "Secret", "metadata": {**meta, "name": CREDENTIALS},
                     "stringData": {"AWS_ACCESS_KEY_ID": server.access_key,
                                    "AWS_SECRET_ACCESS_KEY": server.secret_key}})
    apply(node.api, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {**meta, "name": CA},
                     "data": {"ca.crt": server.ca.read_text()}})
    yield server
    server.stop()


@pytest.fixture(scope="module", autouse=True)
def tenants_leave(node) -> Iterator[None]:
    """Every EtcdStorage of this module ("bk-…") is deleted when it ends: their proxy pods would keep the node's
    CPU requested, and later modules' pods would stay unscheduled (CI: "Insufficient cpu")."""
    yield
    custom = client.CustomObjectsApi(node.api)
    mine = {s["metadata"]["name"] for s in custom.list_cluster_custom_object(
        names.GROUP, names.VERSION, "etcdstorages")["items"] if s["metadata"]["name"].startswith("bk-")}
    for name in mine:
        node.delete_tenant(name)

    def pods_gone() -> bool:
        return not [p for p in node.core.list_namespaced_pod(OPERATOR_NAMESPACE).items
                    if (p.metadata.labels or {}).get(names.STORAGE_LABEL) in mine
                    and p.status.phase in ("Pending", "Running")]

    node.wait("this module's proxy pods gone", pods_gone, 180)


def fill(node, storage: str, keys: int, value_bytes: int = 200) -> None:
    """An EtcdStorage (one proxy replica: nothing here talks to it) and ``keys`` keys under its prefix, written
    to the core directly."""
    etcdstorage(node.cp, storage, f"{storage}-ns", {"replicas": 1})
    with node.cp.core_client() as core:
        for i in range(keys):
            core.put(f"/{storage}/registry/things/{i:06d}".encode(), os.urandom(value_bytes))


def request(node, server: S3Server, name: str, storage: str, **spec: Any) -> None:
    s3_spec = {"endpoint": server.endpoint, "bucket": BUCKET, "credentialsSecret": CREDENTIALS, "caConfigMap": CA,
               **spec.pop("s3", {})}
    client.CustomObjectsApi(node.api).create_namespaced_custom_object(
        names.GROUP, names.VERSION, OPERATOR_NAMESPACE, PLURAL,
        {"apiVersion": names.API_VERSION, "kind": names.BACKUP_KIND,
         "metadata": {"name": name, "namespace": OPERATOR_NAMESPACE},
         "spec": {"storageName": storage, "s3": s3_spec, **spec}})


def get(node, name: str) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(node.api).get_namespaced_custom_object(
            names.GROUP, names.VERSION, OPERATOR_NAMESPACE, PLURAL, name)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def status(node, name: str) -> dict[str, Any]:
    return (get(node, name) or {}).get("status") or {}


def wait_phase(node, name: str, phase: str, timeout: float = 120) -> dict[str, Any]:
    try:
        wait_for(f"EtcdStorageBackup {name} {phase}", lambda: status(node, name).get("phase") == phase, timeout,
                 interval=0.3)
    except StartError as exc:
        pytest.fail(f"{exc}\nstatus: {status(node, name)}\n{pod_logs(node)}")
    return status(node, name)


def stored_key(node, name: str) -> str:
    """The object key a Succeeded request stored its artifact at (its location: s3://<bucket>/<key> at <endpoint>)."""
    return wait_phase(node, name, "Succeeded")["location"].split(" at ")[0].removeprefix(f"s3://{BUCKET}/")


def pod_logs(node) -> str:
    """The operator's and the backup Jobs' logs, for a failure message."""
    out = []
    for pod in node.core.list_namespaced_pod(OPERATOR_NAMESPACE).items:
        if pod.metadata.labels.get("app.kubernetes.io/name") in ("etcdproxy-operator", "etcdproxy-backup"):
            try:
                text = node.core.read_namespaced_pod_log(pod.metadata.name, OPERATOR_NAMESPACE, tail_lines=40)
            except client.ApiException as exc:
                text = str(exc)
            out.append(f"==> {pod.metadata.name} ({pod.status.phase}) <==\n{text}")
    return "\n".join(out)


def events(node, name: str) -> list[client.CoreV1Event]:
    return [e for e in node.core.list_namespaced_event(OPERATOR_NAMESPACE).items
            if e.involved_object.kind == names.BACKUP_KIND and e.involved_object.name == name]


def job_pods(node, name: str) -> list[client.V1Pod]:
    return node.core.list_namespaced_pod(
        OPERATOR_NAMESPACE, label_selector=f"batch.kubernetes.io/job-name={names.backup_job(name)}").items


def operator_pods(node) -> list[client.V1Pod]:
    return node.core.list_namespaced_pod(OPERATOR_NAMESPACE,
                                         label_selector="app.kubernetes.io/name=etcdproxy-operator").items


def core_at(node, storage: str, revision: int) -> dict[bytes, bytes]:
    """The tenant's keys and values at ``revision``, read from the core key by key (a gRPC message holds 4 MiB)."""
    key, end = keyspace.prefix_range(keyspace.tenant_prefix(storage))
    prefix = f"/{storage}/".encode()

    def at(request: etcdpb.RangeRequest) -> list[etcdpb.KeyValue]:
        return list(etcdpb.RangeResponse.FromString(
            core.unary("/etcdserverpb.KV/Range", request.SerializeToString())).kvs)

    with node.cp.core_client() as core:
        keys = [kv.key for kv in at(etcdpb.RangeRequest(key=key, range_end=end, revision=revision, keys_only=True))]
        return {k[len(prefix):]: at(etcdpb.RangeRequest(key=k, revision=revision))[0].value for k in keys}


def stored(s3: S3Server, key: str) -> tuple[dict[str, Any], dict[bytes, bytes]]:
    body = s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
    reader = Reader(io.BytesIO(body))
    records = dict(reader.records())
    return {**reader.header, **(reader.trailer or {})}, records


def object_exists(s3: S3Server, key: str) -> bool:
    return s3.client().list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount", 0) > 0


def test_a_backup_runs_as_a_job_and_records_exactly_what_it_stored(node, s3):
    fill(node, "bk-one", 300)
    request(node, s3, "one", "bk-one")
    st = wait_phase(node, "one", "Succeeded")
    key = "bk-one/one.etcdbackup"
    assert st["location"] == f"s3://{BUCKET}/{key} at {s3.endpoint}"
    header, records = stored(s3, key)
    # The artifact holds exactly the tenant's keys at the recorded revision, and the status says so.
    assert records == core_at(node, "bk-one", st["revision"])
    assert (st["keys"], st["sha256"], st["revision"]) == (len(records), header["sha256"], header["revision"])
    (cond,) = st["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Complete", "True", "Stored")
    assert any(e.reason == "BackupStored" for e in events(node, "one"))
    # The Job ran the operator's own image with no API credentials; its log shows what it did.
    (pod,) = job_pods(node, "one")
    (operator,) = operator_pods(node)
    assert pod.spec.containers[0].image == operator.spec.containers[0].image
    assert pod.spec.automount_service_account_token is False
    mounts = [m.mount_path for m in pod.spec.containers[0].volume_mounts]
    assert not any(m.startswith("/var/run/secrets/kubernetes.io") for m in mounts), mounts
    log = node.core.read_namespaced_pod_log(pod.metadata.name, OPERATOR_NAMESPACE)
    assert "backup of bk-one" in log and s3.secret_key not in log


@pytest.mark.parametrize("case", ["unknown storage", "missing credentials", "missing bucket", "wrong credentials"])
def test_bad_input_is_named_in_a_condition_and_an_event_and_stores_nothing(node, s3, case):
    name = "bad-" + case.replace(" ", "-")
    if case == "unknown storage":
        request(node, s3, name, "no-such-storage")
        reason, phase, words = "StorageNotFound", "Pending", "spec.storageName"
    elif case == "missing credentials":
        fill(node, "bk-creds", 3)
        request(node, s3, name, "bk-creds", s3={"credentialsSecret": "not-there"})
        reason, phase, words = "CredentialsNotFound", "Pending", "spec.s3.credentialsSecret"
    elif case == "missing bucket":
        fill(node, "bk-bucket", 3)
        request(node, s3, name, "bk-bucket", s3={"bucket": "no-such-bucket"})
        reason, phase, words = "DestinationFailed", "Failed", "no-such-bucket does not exist"
    else:
        fill(node, "bk-wrong", 3)
        apply(node.api, {"apiVersion": "v1", "kind": "Secret",
                         "metadata": {"namespace": OPERATOR_NAMESPACE, "name": "backup-s3-wrong"},
                         "stringData": {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": "not-the-key"}})
        request(node, s3, name, "bk-wrong", s3={"credentialsSecret": "backup-s3-wrong"})
        reason, phase, words = "DestinationFailed", "Failed", "refused the credentials"
    st = wait_phase(node, name, phase)
    (cond,) = st["conditions"]
    assert cond["reason"] == reason and words in cond["message"], cond
    node.wait(f"an Event {reason}", lambda: any(words in (e.message or "") for e in events(node, name)))
    if phase == "Pending":
        assert job_pods(node, name) == []
    assert s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{name}").get("KeyCount", 0) == 0


def test_an_interrupted_backup_starts_again_and_a_restarted_operator_picks_it_up(node, s3):
    # Large enough (48 MiB of incompressible values) that the backup is still running when it is killed.
    fill(node, "bk-big", 48, value_bytes=1 << 20)
    request(node, s3, "big", "bk-big")

    def running_pid() -> int | None:
        for pod in job_pods(node, "big"):
            states = pod.status.container_statuses or []
            if states and states[0].state.running:
                return container_pid(pod, "backup")
        return None

    node.wait("the backup Job's container running", lambda: running_pid() is not None)
    os.kill(running_pid(), signal.SIGKILL)
    node.wait("the interruption reported",
              lambda: (status(node, "big").get("attempts") or 0) >= 2 or any(
                  c.get("reason") == "Interrupted" for c in status(node, "big").get("conditions") or []))
    # The operator itself restarts while the second attempt runs.
    for pod in operator_pods(node):
        node.core.delete_namespaced_pod(pod.metadata.name, OPERATOR_NAMESPACE, grace_period_seconds=0)
    st = wait_phase(node, "big", "Succeeded", timeout=240)
    assert st["attempts"] == 2
    assert any(e.reason == "BackupInterrupted" for e in events(node, "big"))
    _, records = stored(s3, "bk-big/big.etcdbackup")
    assert records == core_at(node, "bk-big", st["revision"])


def test_deleting_a_backup_keeps_or_removes_its_artifact_as_its_spec_says(node, s3):
    fill(node, "bk-del", 5)
    for name, policy in (("kept", "Retain"), ("removed", "Delete")):
        request(node, s3, name, "bk-del", deletionPolicy=policy)
        wait_phase(node, name, "Succeeded")
        assert object_exists(s3, f"bk-del/{name}.etcdbackup")
        client.CustomObjectsApi(node.api).delete_namespaced_custom_object(
            names.GROUP, names.VERSION, OPERATOR_NAMESPACE, PLURAL, name)
        node.wait(f"EtcdStorageBackup {name} gone", lambda n=name: get(node, n) is None)
    assert object_exists(s3, "bk-del/kept.etcdbackup")
    assert not object_exists(s3, "bk-del/removed.etcdbackup")
    assert any(e.reason == "ArtifactDeleted" for e in events(node, "removed"))


def test_a_deletion_that_cannot_delete_the_artifact_says_why_and_how_to_let_it_finish(node, s3):
    fill(node, "bk-stuck", 3)
    creds = node.core.read_namespaced_secret(CREDENTIALS, OPERATOR_NAMESPACE)
    apply(node.api, {"apiVersion": "v1", "kind": "Secret",
                     "metadata": {"name": "backup-s3-once", "namespace": OPERATOR_NAMESPACE}, "data": creds.data})
    request(node, s3, "stuck", "bk-stuck", deletionPolicy="Delete", s3={"credentialsSecret": "backup-s3-once"})
    wait_phase(node, "stuck", "Succeeded")
    node.core.delete_namespaced_secret("backup-s3-once", OPERATOR_NAMESPACE)  # a hand deletion
    api = client.CustomObjectsApi(node.api)
    api.delete_namespaced_custom_object(names.GROUP, names.VERSION, OPERATOR_NAMESPACE, PLURAL, "stuck")

    def reported() -> bool:
        conds = {c["type"]: c for c in status(node, "stuck").get("conditions") or []}
        return conds.get("Deleted", {}).get("reason") == "ArtifactNotDeleted"

    node.wait("the stuck deletion reported", reported)
    (deleted,) = [c for c in status(node, "stuck")["conditions"] if c["type"] == "Deleted"]
    assert "backup-s3-once" in deleted["message"] and "deletionPolicy to Retain" in deleted["message"]
    assert get(node, "stuck") is not None and object_exists(s3, "bk-stuck/stuck.etcdbackup")
    api.patch_namespaced_custom_object(names.GROUP, names.VERSION, OPERATOR_NAMESPACE, PLURAL, "stuck",
                                       {"spec": {"deletionPolicy": "Retain"}})
    node.wait("the deletion finished", lambda: get(node, "stuck") is None)
    assert object_exists(s3, "bk-stuck/stuck.etcdbackup")


# --- An EtcdStorage created from a backup (spec.restoreFrom) ---

def proxy_exists(node, name: str) -> bool:
    return bool(client.AppsV1Api(node.api).list_namespaced_deployment(
        OPERATOR_NAMESPACE, field_selector=f"metadata.name={names.proxy(name)}").items)


def prefix_count(node, name: str) -> int:
    key, end = keyspace.prefix_range(keyspace.tenant_prefix(name))
    with node.cp.core_client() as core:
        raw = core.unary("/etcdserverpb.KV/Range", etcdpb.RangeRequest(key=key, range_end=end, count_only=True)
                         .SerializeToString())
    return etcdpb.RangeResponse.FromString(raw).count


def restore_pid(node, name: str) -> int | None:
    pods = node.core.list_namespaced_pod(
        OPERATOR_NAMESPACE, label_selector=f"batch.kubernetes.io/job-name={names.restore_job(name)}").items
    for pod in pods:
        states = pod.status.container_statuses or []
        if states and states[0].state.running:
            return container_pid(pod, "backup")
    return None


@contextmanager
def sampled(probe: Callable[[], Any]) -> Iterator[list[Any]]:
    """What ``probe`` answers every 100 ms while the block runs (an API error skips one sample)."""
    seen: list[Any] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                seen.append(probe())
            except client.ApiException:
                pass
            stop.wait(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        stop.set()
        watcher.join()


def test_a_clone_is_served_only_once_filled_even_when_its_fill_and_the_operator_are_killed(node, s3):
    fill(node, "bk-src", 40, value_bytes=1 << 20)
    request(node, s3, "src", "bk-src")
    backup = wait_phase(node, "src", "Succeeded")
    expected = core_at(node, "bk-src", backup["revision"])

    def probe() -> tuple[bool, bool, int]:  # (Ready, proxy Deployment exists, keys in the prefix)
        ready = node.condition("bk-clone", "Ready").get("status") == "True"
        return ready, proxy_exists(node, "bk-clone"), prefix_count(node, "bk-clone")

    with sampled(probe) as seen:
        etcdstorage(node.cp, "bk-clone", "bk-clone-ns", {"restoreFrom": {"backupName": "src"}})
        node.wait("the restore Job's container running", lambda: restore_pid(node, "bk-clone") is not None)
        node.wait("the fill under way", lambda: prefix_count(node, "bk-clone") > 0, timeout=60)
        os.kill(restore_pid(node, "bk-clone"), signal.SIGKILL)
        for pod in operator_pods(node):  # the operator dies too, as the attempt fails
            node.core.delete_namespaced_pod(pod.metadata.name, OPERATOR_NAMESPACE, grace_period_seconds=0)
        wait_ready(node.cp, "bk-clone")
    status_ = node.storage("bk-clone")["status"]
    assert status_["restore"]["attempts"] == 2 and status_["restore"]["phase"] == "Restored"
    assert any(0 < keys < len(expected) for _, _, keys in seen), "never saw a half-filled prefix: not interrupted"
    half = [s for s in seen if s[2] != len(expected) and (s[0] or s[1])]
    assert not half, f"served while not filled (Ready, Deployment, keys): {half[:5]}"
    assert core_at(node, "bk-clone", 0) == expected
    assert core_at(node, "bk-src", 0) == expected  # the source untouched


def test_a_clone_never_writes_into_a_prefix_that_holds_keys_or_from_a_missing_backup(node, s3):
    with node.cp.core_client() as core:
        core.put(b"/bk-kept/registry/left/behind", b"retained by an earlier tenant")
    etcdstorage(node.cp, "bk-kept", "bk-kept-ns", {"restoreFrom": {"backupName": "src"}})
    etcdstorage(node.cp, "bk-nobackup", "bk-nobackup-ns", {"restoreFrom": {"backupName": "no-such-backup"}})
    node.wait("PrefixNotEmpty", lambda: node.condition("bk-kept", "Restored").get("reason") == "PrefixNotEmpty")
    node.wait("BackupNotFound", lambda: node.condition("bk-nobackup", "Restored").get("reason") == "BackupNotFound")
    assert "spec.restoreFrom.backupName" in node.condition("bk-nobackup", "Restored")["message"]
    for name in ("bk-kept", "bk-nobackup"):
        assert node.condition(name, "Ready")["status"] == "False" and not proxy_exists(node, name)
    with node.cp.core_client() as core:
        assert core.range(b"/bk-kept/", b"/bk-kept0") == [(b"/bk-kept/registry/left/behind",
                                                            b"retained by an earlier tenant")]
    # A backup of a clone that is not filled would hold a part of it: it waits.
    request(node, s3, "of-unfilled", "bk-kept")
    assert wait_phase(node, "of-unfilled", "Pending")["conditions"][0]["reason"] == "StorageNotRestored"
    # Admission: restoreFrom only at creation, so an existing tenant is never overwritten in place.
    etcdstorage(node.cp, "bk-plain", "bk-plain-ns")
    with pytest.raises(client.ApiException) as refused:
        client.CustomObjectsApi(node.api).patch_cluster_custom_object(
            names.GROUP, names.VERSION, "etcdstorages", "bk-plain", {"spec": {"restoreFrom": {"backupName": "src"}}})
    assert "restoreFrom can be set only when the EtcdStorage is created" in refused.value.body


def runs_of(node, name: str) -> int:
    """Reconciles of one EtcdStorage the operator finished (its own log line per ansible-runner run)."""
    done = 0
    for pod in operator_pods(node):
        log = node.core.read_namespaced_pod_log(pod.metadata.name, OPERATOR_NAMESPACE)
        done += sum(1 for line in log.splitlines()
                    if '"Ansible-runner exited successfully"' in line and f'"name":"{name}"' in line)
    return done


def test_a_clone_whose_proxy_is_refused_keeps_its_restored_condition_through_the_retries(node, s3):
    """Hugepages without cpu or memory pass admission and the API server refuses the pod template. The role's
    report of the refusal writes the whole .status; it once left the clone's Restored condition out, so every
    retry dropped it and the next run put it back with a new Event."""
    fill(node, "bk-rf-src", 3)
    request(node, s3, "rf", "bk-rf-src")
    wait_phase(node, "rf", "Succeeded")
    etcdstorage(node.cp, "bk-refused", "bk-refused-ns",
                {"restoreFrom": {"backupName": "rf"}, "resources": {"limits": {"hugepages-2Mi": "2Mi"}}})
    node.wait("ApplyFailed", lambda: node.condition("bk-refused", "ProxyAvailable").get("reason") == "ApplyFailed",
              timeout=180)
    restored = node.condition("bk-refused", "Restored")
    assert restored.get("status") == "True", node.storage("bk-refused")["status"]["conditions"]
    with sampled(lambda: node.condition("bk-refused", "Restored")) as seen:
        runs = runs_of(node, "bk-refused")
        node.wait("two more refused runs", lambda: runs_of(node, "bk-refused") >= runs + 2, timeout=150)
    assert seen and all(c.get("status") == "True" for c in seen), [c.get("reason") for c in seen][:20]
    restored_events = [e for e in node.core.list_namespaced_event(
        "default", field_selector="involvedObject.name=bk-refused").items if e.reason == "Restored"]
    assert len(restored_events) == 1, [(e.reason, e.message) for e in restored_events]


def test_a_clone_of_a_damaged_artifact_is_named_and_writes_nothing(node, s3):
    """The artifact changed after its backup succeeded (truncated in the bucket): the restore Job checks it whole
    before the first put, the clone says so in a condition and an Event, and its prefix stays empty."""
    fill(node, "bk-dmg-src", 30, value_bytes=2000)
    request(node, s3, "dmg", "bk-dmg-src")
    key = stored_key(node, "dmg")
    body = s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=body[: len(body) // 2])
    etcdstorage(node.cp, "bk-dmg", "bk-dmg-ns", {"restoreFrom": {"backupName": "dmg"}})
    node.wait("the clone failed for good", lambda: (node.storage("bk-dmg").get("status") or {})
              .get("restore", {}).get("phase") == "Failed", timeout=120)
    restored = node.condition("bk-dmg", "Restored")
    assert restored["reason"] == "ArtifactDamaged" and "is not a usable backup" in restored["message"], restored
    assert "nothing was written" in restored["message"]
    node.wait("an Event ArtifactDamaged", lambda: any(
        e.reason == "ArtifactDamaged" for e in node.core.list_namespaced_event(
            "default", field_selector="involvedObject.name=bk-dmg").items))
    assert node.condition("bk-dmg", "Ready")["status"] == "False" and not proxy_exists(node, "bk-dmg")
    assert prefix_count(node, "bk-dmg") == 0
    assert node.storage("bk-dmg")["status"]["restore"]["attempts"] == 1  # a reported failure is not retried


def test_a_backup_never_replaces_another_ones_artifact_and_a_replaced_one_is_neither_restored_nor_deleted(node, s3):
    """Two requests naming one key: the second fails and the first's artifact is untouched. An artifact replaced
    behind the operator's back (here: another backup's object copied over it) is refused by a clone (its sha256
    is not the one its backup recorded) and kept when its request is deleted with deletionPolicy Delete."""
    fill(node, "bk-own", 5)
    fill(node, "bk-other", 7)
    request(node, s3, "own", "bk-own", deletionPolicy="Delete", s3={"key": "shared/one.etcdbackup"})
    wait_phase(node, "own", "Succeeded")
    stored_first = s3.client().get_object(Bucket=BUCKET, Key="shared/one.etcdbackup")["Body"].read()
    request(node, s3, "same-key", "bk-other", s3={"key": "shared/one.etcdbackup"})
    (cond,) = wait_phase(node, "same-key", "Failed")["conditions"]
    assert cond["reason"] == "DestinationFailed" and "an object already exists" in cond["message"], cond
    assert s3.client().get_object(Bucket=BUCKET, Key="shared/one.etcdbackup")["Body"].read() == stored_first

    # Replaced behind the operator's back: a valid artifact, but not the one "own" recorded.
    request(node, s3, "other", "bk-other")
    other_key = stored_key(node, "other")
    s3.client().copy_object(Bucket=BUCKET, Key="shared/one.etcdbackup",
                            CopySource={"Bucket": BUCKET, "Key": other_key})
    etcdstorage(node.cp, "bk-swapped", "bk-swapped-ns", {"restoreFrom": {"backupName": "own"}})
    node.wait("the clone refused the replaced artifact", lambda: (node.storage("bk-swapped").get("status") or {})
              .get("restore", {}).get("phase") == "Failed", timeout=120)
    restored = node.condition("bk-swapped", "Restored")
    assert restored["reason"] == "ArtifactDamaged" and "not the artifact its backup recorded" in restored["message"]
    assert prefix_count(node, "bk-swapped") == 0

    client.CustomObjectsApi(node.api).delete_namespaced_custom_object(
        names.GROUP, names.VERSION, OPERATOR_NAMESPACE, PLURAL, "own")
    node.wait("the request gone", lambda: get(node, "own") is None)
    assert object_exists(s3, "shared/one.etcdbackup")  # another backup's object: kept
    assert any(e.reason == "ArtifactKept" for e in events(node, "own"))
