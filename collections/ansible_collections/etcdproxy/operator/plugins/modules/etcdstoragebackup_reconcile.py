#!/usr/bin/python
"""Ansible module: one reconcile of an EtcdStorageBackup (its Job, its status, its artifact on deletion)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: etcdstoragebackup_reconcile
short_description: Run an EtcdStorageBackup as a Job and record how it ended
description:
  - Checks what the backup needs (the EtcdStorage, the credentials Secret, the CA ConfigMap, the operator's own
    image); while something is missing the backup stays C(Pending) and the C(Complete) condition and an Event
    name the field and the fix.
  - Creates the Job that runs the backup (the operator's image, the core etcd material and the S3 credentials
    mounted, no API access), and copies its result (revision, keys, bytes, sha256, times) into the status once
    it ends. A Job that ended without a result (pod killed, evicted) is started again, up to three times; a
    reported failure is final.
  - With O(finalizing=true) (the finalizer), deletes the stored artifact when C(spec.deletionPolicy=Delete).
  - Writes status and Events only on change: an unchanged EtcdStorageBackup costs no write.
version_added: 0.2.0
author: etcdproxy-operator developers
options:
  finalizing:
    description: The EtcdStorageBackup is being deleted; apply its deletion policy to the artifact.
    type: bool
    default: false
  job_image:
    description:
      - The image of the backup Job; empty means the operator's own (its pod is named by C(ETCDPROXY_POD_NAME)).
    type: str
    default: ""
  retry_period:
    description: How soon to look again while something the backup needs is missing (Go duration).
    type: str
    default: 30s
attributes:
  check_mode:
    support: full
notes:
  - Reads S3 credentials on deletion; the task calling it must set C(no_log).
extends_documentation_fragment:
  - etcdproxy.operator.etcdstorage
  - etcdproxy.operator.etcdstorage.core
"""

EXAMPLES = r"""
- name: Run the backup, record its result
  etcdproxy.operator.etcdstoragebackup_reconcile:
    name: wardle-nightly
    namespace: kube-apiserver-storage
    core_endpoints: ["https://10.0.0.10:2379"]
    core_ca_configmap: etcd-coreserving-ca
    core_ca_key: ca.crt
    core_client_secret: etcd-coreserving-cert
  no_log: true
"""

RETURN = r"""
phase:
  description: Pending, Running, Succeeded or Failed (empty when the EtcdStorageBackup is gone).
  returned: always
  type: str
requeue_after:
  description: Go duration after which to reconcile again, or an empty string.
  returned: always
  type: str
events:
  description: Events emitted, as type, reason and message.
  returned: always
  type: list
  elements: dict
"""

import datetime
import traceback
from collections.abc import Callable
from typing import Any

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible_collections.etcdproxy.operator.plugins.module_utils import backupjob, keyspace, names
    from ansible_collections.etcdproxy.operator.plugins.module_utils.args import COMMON_OPTIONS, CORE_OPTIONS
    from ansible_collections.etcdproxy.operator.plugins.module_utils.backupstatus import (
        FAILED, PREFIX_RESERVED, SUCCEEDED, decide, job_state, with_times,
    )
    from ansible_collections.etcdproxy.operator.plugins.module_utils.clone import DONE as RESTORED
    from ansible_collections.etcdproxy.operator.plugins.module_utils.args import refuse_without_core_endpoints
    from ansible_collections.etcdproxy.operator.plugins.module_utils.kube import Kube, api_client
    from ansible_collections.etcdproxy.operator.plugins.module_utils.s3store import (
        CREDENTIAL_KEYS, DestinationError, Location, ca_file, credentials, delete,
    )
    from ansible_collections.etcdproxy.operator.plugins.module_utils.secretdata import secret_text
    from ansible_collections.etcdproxy.operator.plugins.module_utils.times import rfc3339
    IMPORT_ERROR = None
except ImportError:
    IMPORT_ERROR = traceback.format_exc()
    COMMON_OPTIONS = CORE_OPTIONS = {}


def problem_of(kube: Kube, namespace: str, cr: dict, image: str, reserved: list[str]) -> tuple[str, str] | None:
    """The first thing the backup needs that is missing: (reason, message naming the field and the fix).
    ``reserved``: the operator's ETCDPROXY_RESERVED_PREFIXES."""
    spec = cr.get("spec") or {}
    s3 = spec.get("s3") or {}
    storage = kube.get_etcdstorage(spec.get("storageName", ""))
    if storage is None:
        return "StorageNotFound", (f"spec.storageName: there is no EtcdStorage {spec.get('storageName')!r}; "
                                   "create it, or name an existing one")
    taken = keyspace.reserved_overlap(spec["storageName"], reserved)
    if taken:  # the main cluster's data, Secrets included: never copied to a bucket by a tenant's request
        return PREFIX_RESERVED, (f"spec.storageName: {keyspace.reserved_message(spec['storageName'], taken)}; "
                                 "nothing of it is backed up (back up the core etcd itself with etcdctl snapshot)")
    restore = (storage.get("status") or {}).get("restore") or {}
    if (storage.get("spec") or {}).get("restoreFrom") and restore.get("phase") != RESTORED:
        return "StorageNotRestored", (f"spec.storageName: the EtcdStorage {spec['storageName']} is a clone not yet "
                                      "filled from its backup; the backup waits for it")
    secret = kube.get_secret(namespace, s3.get("credentialsSecret", ""))
    if secret is None:
        return "CredentialsNotFound", (f"spec.s3.credentialsSecret: there is no Secret {s3.get('credentialsSecret')!r} "
                                       f"in {namespace}; create it with {' and '.join(CREDENTIAL_KEYS)}")
    try:
        credentials(secret_text(secret), s3["credentialsSecret"])
    except DestinationError as exc:
        return "CredentialsIncomplete", f"spec.s3.credentialsSecret: {exc}"
    if s3.get("caConfigMap"):
        data = (kube.get_configmap(namespace, s3["caConfigMap"]) or {}).get("data") or {}
        if not data.get("ca.crt"):
            return "CANotFound", (f"spec.s3.caConfigMap: the ConfigMap {s3['caConfigMap']} in {namespace} is missing "
                                  "or has no ca.crt; put the endpoint's CA certificate there")
    if not image:
        return "OperatorImageUnknown", ("the operator cannot tell its own image for the backup Job: set "
                                        "ETCDPROXY_POD_NAME (config/manager does) or ETCDPROXY_JOB_IMAGE")
    return None


def finalize(kube: Kube, namespace: str, cr: dict, check_mode: bool) -> dict:
    spec, status = cr.get("spec") or {}, cr.get("status") or {}
    if spec.get("deletionPolicy") != "Delete" or status.get("phase") != SUCCEEDED:
        return {"changed": False, "phase": status.get("phase", ""), "events": [], "requeue_after": ""}
    s3 = backupjob.s3_settings(cr)
    access = credentials(secret_text(kube.get_secret(namespace, s3["credentialsSecret"])), s3["credentialsSecret"])
    location = Location(s3["endpoint"], s3["bucket"], s3["key"], s3["region"])
    event = ("Normal", "ArtifactDeleted", f"deleted {location.url()} (deletionPolicy Delete)")
    if not check_mode:
        ca = ((kube.get_configmap(namespace, s3["caConfigMap"]) or {}).get("data") or {}).get("ca.crt") \
            if s3.get("caConfigMap") else None
        with ca_file(ca) as path:
            if not delete(location, access, path, owner=cr["metadata"]["uid"]):
                event = ("Warning", "ArtifactKept", f"kept {location.url()}: the object there is not the one "
                                                    "this backup stored (replaced since); deletionPolicy Delete "
                                                    "leaves it")
        kube.create_event(cr, *event, rfc3339(datetime.datetime.now(datetime.UTC)))
    return {"changed": True, "phase": status.get("phase", ""), "requeue_after": "",
            "events": [dict(zip(("type", "reason", "message"), event, strict=True))]}


def report_stuck_deletion(kube: Kube, cr: dict, exc: Exception, check_mode: bool) -> None:
    """A Deleted=False condition and an Event on an EtcdStorageBackup whose artifact could not be deleted."""
    message = (f"the artifact could not be deleted ({exc}): fix that, or set spec.deletionPolicy to Retain "
               "to let the deletion finish without deleting it")
    old = cr.get("status") or {}
    kept = [c for c in old.get("conditions") or [] if c.get("type") != "Deleted"]
    now = rfc3339(datetime.datetime.now(datetime.UTC))
    new = with_times({**old, "conditions": [*kept, {"type": "Deleted", "status": "False",
                                                      "reason": "ArtifactNotDeleted", "message": message}]}, old, now)
    if new != old and not check_mode:
        kube.create_event(cr, "Warning", "ArtifactNotDeleted", message, now)
        kube.patch_backup_status(cr["metadata"]["namespace"], cr["metadata"]["name"], new)


def run(module: AnsibleModule) -> dict:
    p = module.params
    kube = Kube(api_client(p["kubeconfig"]))
    namespace, name = p["namespace"], p["name"]
    cr = kube.get_backup(namespace, name)
    if cr is None:
        return {"changed": False, "phase": "", "events": [], "requeue_after": ""}
    if p["finalizing"]:
        try:
            return finalize(kube, namespace, cr, module.check_mode)
        except Exception as exc:  # the finalizer stays; say why, and how to let the deletion finish
            report_stuck_deletion(kube, cr, exc, module.check_mode)
            raise
    old = cr.get("status") or {}
    job_name = names.backup_job(name)
    s3 = backupjob.s3_settings(cr)
    location = Location(s3["endpoint"], s3["bucket"], s3["key"], s3["region"]).url()
    if old.get("phase") in (SUCCEEDED, FAILED):  # final: no reads, no writes
        return {"changed": False, "phase": old["phase"], "events": [], "requeue_after": ""}
    job = kube.get_job(namespace, job_name)
    if job and job["metadata"].get("deletionTimestamp"):  # an interrupted attempt's Job on its way out
        return {"changed": False, "phase": old.get("phase", ""), "events": [], "requeue_after": "5s"}
    image = p["job_image"] or backupjob.own_image(kube, namespace)
    problem = problem_of(kube, namespace, cr, image, p["reserved_prefixes"]) if job is None else None
    pods = backupjob.job_pods(kube, namespace, job)
    decision = decide(old, int(cr["metadata"].get("generation") or 0), cr["spec"]["storageName"], job_name,
                      location, problem, job_state(job, pods))
    now = rfc3339(datetime.datetime.now(datetime.UTC))
    new = with_times(decision.status, old, now)
    changed = new != old
    if not module.check_mode:
        if decision.delete_job:
            kube.delete_job(namespace, job_name)
        if decision.create_job:
            kube.create_job(backupjob.manifest(
                action="backup", job=job_name, namespace=namespace, storage=cr["spec"]["storageName"], image=image,
                core_endpoints=p["core_endpoints"], core_ca_configmap=p["core_ca_configmap"],
                core_ca_key=p["core_ca_key"], core_client_secret=p["core_client_secret"], s3=s3,
                collections_path=backupjob.collections_path(),
                labels={names.STORAGE_LABEL: cr["spec"]["storageName"]}, owner=cr["metadata"]["uid"]))
        if changed:
            for event in decision.events:  # first: if the status write fails, the next run repeats them
                kube.create_event(cr, *event, now)
            kube.patch_backup_status(namespace, name, new)
    events = [dict(zip(("type", "reason", "message"), e, strict=True)) for e in decision.events] if changed else []
    return {"changed": changed or decision.create_job or decision.delete_job, "phase": new.get("phase", ""),
            "events": events,
            "requeue_after": p["retry_period"] if decision.requeue else ""}


def main(module_class: Callable[..., Any] = AnsibleModule) -> None:
    """``module_class``: AnsibleModule, or the in-process stand-in of the action plugin of the same name
    (plugin_utils/inprocess.py)."""
    module = module_class(
        argument_spec=dict(**COMMON_OPTIONS, **CORE_OPTIONS,
                           finalizing=dict(type="bool", default=False),
                           job_image=dict(type="str", default=""),
                           retry_period=dict(type="str", default="30s")),
        supports_check_mode=True,
    )
    if IMPORT_ERROR:
        module.fail_json(msg="etcdstoragebackup_reconcile needs the urllib3 and boto3 libraries",
                         exception=IMPORT_ERROR)
    refuse_without_core_endpoints(module)
    try:
        module.exit_json(**run(module))
    except Exception as exc:  # report, never crash-loop with a traceback as the only message
        module.fail_json(msg=f"EtcdStorageBackup {module.params['name']}: {exc}", exception=traceback.format_exc())


if __name__ == "__main__":
    main()
