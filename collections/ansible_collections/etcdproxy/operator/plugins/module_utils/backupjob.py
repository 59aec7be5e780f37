"""The Job that runs one backup (or restore) of one tenant, and the program it runs.

The operator never holds a reconcile worker for a backup: it creates this Job (the operator's own image, the
core etcd material and the S3 credentials mounted from the operator namespace, no API access at all) and
reads how it ended from the pod's termination message, a JSON object written here. While it runs, its log
(``kubectl logs job/<name>``) shows progress, a JSON line per 10 000 keys.

The manifest (``manifest``) and the program (``main``) are the two sides of one contract, so both are here:
the environment variables and mount paths below are its only home.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils import names
from ansible_collections.etcdproxy.operator.plugins.module_utils.s3store import Location

CONTAINER = "backup"
CORE_DIR = "/etc/etcdproxy/core"
S3_CA_DIR = "/etc/etcdproxy/s3-ca"
WORK_DIR = "/work"  # the artifact while it is written or read (emptyDir: the pod's ephemeral storage)
TERMINATION_LOG = "/dev/termination-log"
MESSAGE_LIMIT = 4096  # what kubelet keeps of a termination message
# A backup or restore that runs longer is stopped and reported (it would otherwise hold its pod forever).
DEADLINE_SECONDS = 6 * 3600
# Why a backup or restore failed, as the result's reason and a condition reason (transfer.explain says it).
ARTIFACT_DAMAGED = "ArtifactDamaged"
DESTINATION_FAILED = "DestinationFailed"
PREFIX_NOT_EMPTY = "PrefixNotEmpty"
CORE_FAILED = "CoreEtcdFailed"
JOB_IMAGE_BROKEN = "JobImageBroken"
ENV = {
    "storage": "ETCDPROXY_STORAGE",
    "endpoints": "ETCDPROXY_CORE_ENDPOINTS",
    "s3_endpoint": "ETCDPROXY_S3_ENDPOINT",
    "bucket": "ETCDPROXY_S3_BUCKET",
    "key": "ETCDPROXY_S3_KEY",
    "region": "ETCDPROXY_S3_REGION",
    "owner": "ETCDPROXY_BACKUP_OWNER",  # a backup: the request's uid, kept on the object it stores
    "sha256": "ETCDPROXY_ARTIFACT_SHA256",  # a restore: what the artifact must hash to (its backup's record)
}


def manifest(*, action: str, job: str, namespace: str, storage: str, image: str, core_endpoints: list[str],
             core_ca_configmap: str, core_ca_key: str, core_client_secret: str, s3: dict[str, Any],
             collections_path: str, labels: dict[str, str], owner: str = "", sha256: str = "") -> dict[str, Any]:
    """The Job for ``action`` (backup or restore) of tenant ``storage`` with the S3 object ``s3`` (the CRD's
    spec.s3 fields: endpoint, bucket, key, region, credentialsSecret, caConfigMap); ``owner``: the backup
    request's uid (a backup), ``sha256``: the artifact its backup recorded (a restore)."""
    labels = {**labels, "app.kubernetes.io/name": "etcdproxy-backup", "app.kubernetes.io/managed-by": names.COMPONENT,
              names.ACTION_LABEL: action}
    env = [{"name": ENV["storage"], "value": storage},
           {"name": ENV["endpoints"], "value": ",".join(core_endpoints)},
           {"name": ENV["s3_endpoint"], "value": s3["endpoint"]},
           {"name": ENV["bucket"], "value": s3["bucket"]},
           {"name": ENV["key"], "value": s3["key"]},
           {"name": ENV["region"], "value": s3.get("region") or "us-east-1"},
           {"name": ENV["owner"], "value": owner},
           {"name": ENV["sha256"], "value": sha256},
           *({"name": k, "valueFrom": {"secretKeyRef": {"name": s3["credentialsSecret"], "key": k}}}
             for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")),
           # The collection's Python code, as in the operator's own image.
           {"name": "PYTHONPATH", "value": collections_path},
           {"name": "HOME", "value": WORK_DIR}]
    volumes = [
        {"name": "core-ca", "configMap": {"name": core_ca_configmap,
                                          "items": [{"key": core_ca_key, "path": "ca.crt"}]}},
        {"name": "core-client", "secret": {"secretName": core_client_secret,
                                           "items": [{"key": "tls.crt", "path": "tls.crt"},
                                                     {"key": "tls.key", "path": "tls.key"}]}},
        {"name": "work", "emptyDir": {}},
    ]
    mounts = [{"name": "core-ca", "mountPath": CORE_DIR + "/ca", "readOnly": True},
              {"name": "core-client", "mountPath": CORE_DIR + "/client", "readOnly": True},
              {"name": "work", "mountPath": WORK_DIR}]
    if s3.get("caConfigMap"):
        volumes.append({"name": "s3-ca", "configMap": {"name": s3["caConfigMap"],
                                                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}})
        mounts.append({"name": "s3-ca", "mountPath": S3_CA_DIR, "readOnly": True})
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job, "namespace": namespace, "labels": labels},
        "spec": {
            # The operator decides about retries (an interrupted restore must clear what it wrote first).
            "backoffLimit": 0,
            "activeDeadlineSeconds": DEADLINE_SECONDS,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,  # it needs no API access
                    "enableServiceLinks": False,
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": CONTAINER, "image": image,
                        "command": ["python3", "-m", __name__], "args": [action],
                        "env": env, "volumeMounts": mounts, "workingDir": WORK_DIR,
                        # Measured flat at ~100 MiB for any tenant size (docs/backup.md).
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                      "limits": {"memory": "512Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                    }],
                    "volumes": volumes,
                },
            },
        },
    }


def s3_settings(backup: dict[str, Any]) -> dict[str, Any]:
    """An EtcdStorageBackup's spec.s3 with its defaults (the key: <storageName>/<backup name>.etcdbackup)."""
    spec = backup.get("spec") or {}
    s3 = dict(spec.get("s3") or {})
    s3.setdefault("key", f"{spec.get('storageName')}/{backup['metadata']['name']}.etcdbackup")
    s3.setdefault("region", "us-east-1")
    return s3


def own_image(kube: Any, namespace: str) -> str:
    """The image of the operator's container, read from its own pod (ETCDPROXY_POD_NAME), so a Job runs the
    same code as the operator; empty when it does not run in a pod."""
    pod_name = os.environ.get("ETCDPROXY_POD_NAME", "")
    pod = kube.get_pod(namespace, pod_name) if pod_name else None
    containers = ((pod or {}).get("spec") or {}).get("containers") or []
    return next((c.get("image", "") for c in containers if c.get("name") == "manager"), "")


def collections_path() -> str:
    """Where the operator's image keeps the collection (its first ANSIBLE_COLLECTIONS_PATH entry)."""
    return os.environ.get("ANSIBLE_COLLECTIONS_PATH", "").split(":")[0]


def job_pods(kube: Any, namespace: str, job: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The pods of this very Job (by owner uid: a deleted Job's pods may linger under the same name)."""
    if not job:
        return []
    uid = job["metadata"].get("uid")
    return [pod for pod in kube.job_pods(namespace, job["metadata"]["name"])
            if any(ref.get("uid") == uid for ref in pod["metadata"].get("ownerReferences") or [])]


def result_of(pod: dict[str, Any]) -> dict[str, Any] | None:
    """What the program wrote as its termination message, or None (killed, evicted, never started)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != CONTAINER:
            continue
        message = ((status.get("state") or {}).get("terminated") or {}).get("message")
        if not message:
            return None
        try:
            result = json.loads(message)
        except ValueError:
            return None
        return result if isinstance(result, dict) and result.get("result") in ("Succeeded", "Failed") else None
    return None


def _report(result: dict[str, Any]) -> None:
    text = json.dumps(result, sort_keys=True)
    if len(text) > MESSAGE_LIMIT:  # only a message can be long: shorten it, keep it JSON
        result["message"] = result.get("message", "")[:MESSAGE_LIMIT // 2]
        text = json.dumps(result, sort_keys=True)
    with open(os.environ.get("ETCDPROXY_TERMINATION_LOG", TERMINATION_LOG), "w") as fh:
        fh.write(text)


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def main(argv: list[str]) -> int:
    action = argv[0] if argv else ""
    env = {k: os.environ.get(v, "") for k, v in ENV.items()}
    location = Location(env["s3_endpoint"], env["bucket"], env["key"], env["region"] or "us-east-1")
    where = location.url()
    try:
        from ansible_collections.etcdproxy.operator.plugins.module_utils.transfer import (
            Core,
            Destination,
            execute,
            explain,
        )
    except Exception as exc:  # a broken image: say so in the result instead of leaving none
        _report({"result": "Failed", "reason": JOB_IMAGE_BROKEN,
                 "message": f"the Job's image cannot run the {action or 'job'}: {type(exc).__name__}: {exc}"})
        raise
    try:
        if action not in ("backup", "restore"):
            raise ValueError(f"unknown action {action!r}: backup or restore")
        core = Core([e for e in env["endpoints"].split(",") if e], _read(f"{CORE_DIR}/ca/ca.crt"),
                    _read(f"{CORE_DIR}/client/tls.crt"), _read(f"{CORE_DIR}/client/tls.key"))
        s3_ca = _read(f"{S3_CA_DIR}/ca.crt") if os.path.exists(f"{S3_CA_DIR}/ca.crt") else None
        dest = Destination(s3=location, access=(os.environ.get("AWS_ACCESS_KEY_ID", ""),
                                                os.environ.get("AWS_SECRET_ACCESS_KEY", "")), s3_ca=s3_ca,
                           owner=env["owner"] or None, sha256=env["sha256"] or None)
        print(json.dumps({"msg": f"{action} of {env['storage']} with {where} started"}), flush=True)
        summary = execute(action, env["storage"], core, dest, progress=_progress)
    except Exception as exc:  # every failure is reported by reason; the message names no secret
        reason, message = explain(action, env["storage"], where, exc)
        print(json.dumps({"msg": message, "reason": reason}), file=sys.stderr, flush=True)
        _report({"result": "Failed", "reason": reason, "message": message})
        return 1
    _report({"result": "Succeeded", "location": where, "summary": summary})
    print(json.dumps({"msg": f"{action} of {env['storage']} done", **summary}), flush=True)
    return 0


def _progress(keys: int, size: int) -> None:
    print(json.dumps({"keys": keys, "bytes": size}), flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
