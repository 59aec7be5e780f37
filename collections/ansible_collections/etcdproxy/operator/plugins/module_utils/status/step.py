"""Kubernetes side of the status step: observe, write .status and Events on change, find drift.

Shared by the modules etcdstorage_status (alone) and etcdstorage_reconcile (after the certificate
step, in one process). The decisions are in status/conditions.py and drift.py.
"""

from __future__ import annotations

import datetime
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils import keyspace, names
from ansible_collections.etcdproxy.operator.plugins.module_utils.args import COMMON_OPTIONS, CORE_OPTIONS
from ansible_collections.etcdproxy.operator.plugins.module_utils.coreetcd import health, material, session
from ansible_collections.etcdproxy.operator.plugins.module_utils.drift import (
    drifted,
    missing_owners,
    object_key,
    owner_reference,
)
from ansible_collections.etcdproxy.operator.plugins.module_utils.kube import Kube
from ansible_collections.etcdproxy.operator.plugins.module_utils.rollout import rollout
from ansible_collections.etcdproxy.operator.plugins.module_utils.settings import settings_errors
from ansible_collections.etcdproxy.operator.plugins.module_utils.status.conditions import (
    Condition,
    Observed,
    api_message,
    check_core_material,
    desired_status,
    merge_patch,
    previous_apply_error,
    requeue_after,
    status_changes,
    transition_events,
)
from ansible_collections.etcdproxy.operator.plugins.module_utils.status.pods import Trouble, pod_trouble
from ansible_collections.etcdproxy.operator.plugins.module_utils.times import duration_seconds, rfc3339
from ansible_collections.etcdproxy.operator.plugins.module_utils.usage import RECHECK_SECONDS, read_reports, summarize
from ansible_collections.etcdproxy.operator.plugins.module_utils.x509 import load_certs


def restore_condition(value: Condition | dict[str, Any] | None) -> Condition | None:
    """The Restored condition of a clone: as the reconcile module holds it, or as a module option (a dict)."""
    return Condition(**value) if isinstance(value, dict) else value


def proxy_trouble(kube: Kube, deployment: dict[str, Any] | None, now: datetime.datetime) -> Trouble | None:
    """Why the proxy's pods do not run, read from them only while its rollout is incomplete (an available
    proxy costs no read); pods found by the Deployment's own selector."""
    if deployment is None or rollout(deployment).complete:
        return None
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not labels:
        return None
    meta = deployment.get("metadata") or {}
    return pod_trouble(kube.pods(meta.get("namespace") or "", labels), names.GUARD_CONTAINER, now)


def find_drift(kube: Kube, objects: list[dict[str, Any]]) -> tuple[dict[str, str], list[dict[str, Any]], Any]:
    """(why each differing object differs, the objects to apply, the live Deployment)."""
    drift, apply, live_deployment = {}, [], None
    for obj in objects:
        live = kube.get_object(obj)
        if obj["kind"] == "Deployment":
            live_deployment = live
        why = drifted(obj, live)
        if why:
            drift[object_key(obj)] = why
            apply.append(obj)
    return drift, apply, live_deployment


def merge_patched(apply: list[dict[str, Any]], drift: dict[str, str]) -> list[dict[str, Any]]:
    """The objects of ``apply`` sent as a JSON merge patch: Services that exist. A merge patch replaces
    their ports list whole, so a hand-added port is undone instead of kept beside ours; everything else
    (the Deployment, a Service being created) goes in one apply call, one process fewer."""
    return [obj for obj in apply if obj["kind"] == "Service" and drift.get(object_key(obj)) != "missing"]


def k8s_calls(apply: list[dict[str, Any]], patch: list[dict[str, Any]],
              remove: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The kubernetes.core.k8s calls that bring the proxy objects to the spec, in order, as options of that
    module: one apply of the objects of ``apply`` not in ``patch``, one JSON merge patch of those in it, one
    delete of ``remove``. The role loops over them in one task (an empty loop is one skipped task, not one
    per kind of call)."""
    applied = [obj for obj in apply if obj not in patch]
    return ([{"apply": True, "definition": applied}] if applied else []) + (
        [{"merge_type": "merge", "definition": patch}] if patch else []) + (
        [{"state": "absent", "definition": remove}] if remove else [])


def core_material_owners(name: str, uid: str, *core: dict[str, Any] | None) -> list[dict[str, str]]:
    """Owners of the proxy's client CA ConfigMap: its EtcdStorage first, then the core material that exists."""
    owners = [owner_reference({"apiVersion": names.API_VERSION, "kind": names.KIND,
                               "metadata": {"name": name, "uid": uid}})]
    return owners + [owner_reference(obj) for obj in core if obj is not None]


def depend_on_core_material(kube: Kube, namespace: str, name: str, uid: str, check_mode: bool,
                            *core: dict[str, Any] | None) -> bool:
    """Make the proxy's client CA ConfigMap a dependent of the admin's core CA ConfigMap and client
    Secret too; True if references were (or, in check mode, would be) added.

    The core material is not ours and not watched, but when the admin deletes it, garbage collection
    drops its reference from this ConfigMap, and that update is a watch event that reconciles the
    EtcdStorage at once. The EtcdStorage's own reference is always kept, so the ConfigMap is never
    deleted with the core material; because the core material keeps it alive after its EtcdStorage is
    gone, the finalizer deletes it (etcdstorage_cleanup).
    """
    if not uid:
        return False
    live = kube.get_configmap(namespace, names.client_ca(name))
    if live is None:  # not written yet: the next reconcile adds them
        return False
    missing = missing_owners(live, core_material_owners(name, uid, *core))
    if missing and not check_mode:
        kube.add_owner_references("ConfigMap", namespace, names.client_ca(name), missing)
    return bool(missing)


def reconcile_status(kube: Kube, params: dict[str, Any], check_mode: bool,
                     hash_annotation: tuple[str, str] | None = None) -> dict[str, Any]:
    """Observe one EtcdStorage, write its status and Events if they changed, find proxy drift.

    ``params``: the options of etcdstorage_status (see its docs). A tenant whose prefix is the core's own
    users' (``reserved_prefixes``) is reported as such (Observed.prefix_reserved) by both modules, the role's
    report of a refused call included (the removal of its proxy is one). ``hash_annotation`` (key, value) is
    set on the pod template of every Deployment in ``proxy_objects`` before comparing (the
    client CA bundle hash that rolls the proxy when its trusted CAs change).
    """
    p = params
    name, ns = p["name"], p["namespace"]
    config_errors = settings_errors(p["default_limits"], p["core_reserve_percent"], p["core_quota_bytes"],
                                    p["core_endpoints"], p["reserved_prefixes"])
    # A prefix the core's own users keep: no proxy (one there is removed by the caller, module etcdstorage_reconcile).
    reserved = keyspace.reserved_overlap(name, p["reserved_prefixes"])
    if config_errors or reserved:  # rendered from settings that are wrong, or for a reserved prefix: never applied
        p = {**p, "proxy_objects": []}
    if hash_annotation and hash_annotation[1]:
        for obj in p["proxy_objects"]:
            if obj.get("kind") == "Deployment":
                template_meta = obj["spec"]["template"].setdefault("metadata", {})
                template_meta.setdefault("annotations", {})[hash_annotation[0]] = hash_annotation[1]
    manage = p["manage_status"]
    cr = kube.get_etcdstorage(name) if manage else None
    if manage and cr is None:
        return {"changed": False, "ready": False, "status": {}, "events": [], "requeue_after": "",
                "apply": [], "patch": [], "drift": {},
                "msg": f"EtcdStorage {name} no longer exists"}
    drift, apply, live_deployment = find_drift(kube, p["proxy_objects"])
    patch = merge_patched(apply, drift)
    if not manage:
        return {"changed": False, "ready": False, "status": {}, "events": [], "requeue_after": "",
                "apply": apply, "patch": patch, "drift": drift}
    if not p["proxy_objects"]:
        live_deployment = kube.get_deployment(ns, names.proxy(name))
    now = datetime.datetime.now(datetime.UTC)
    trouble = proxy_trouble(kube, live_deployment, now)
    core_cm, core_secret = kube.get_configmap(ns, p["core_ca_configmap"]), kube.get_secret(ns, p["core_client_secret"])
    dependency_changed = depend_on_core_material(kube, ns, name, cr["metadata"].get("uid") or "", check_mode,
                                                 core_cm, core_secret)
    core_problems = check_core_material(core_cm, core_secret, ns, p["core_ca_configmap"], p["core_ca_key"],
                                        p["core_client_secret"], parse_certs=load_certs)
    core_health = None
    usage, limits_condition = None, None
    if p.get("core_endpoints") and not core_problems and not config_errors:
        with session(*material(core_cm, core_secret, p["core_ca_key"])) as core:
            core_health = health(p["core_endpoints"], core) or ""
            if not core_health:
                reports = read_reports(p["core_endpoints"], name, core)
                usage, limits_condition = summarize(reports or [], p["limits"], now)
    obs = Observed(
        name=name, namespace=ns, generation=int(cr["metadata"].get("generation") or 0),
        config_errors=config_errors, core_problems=core_problems,
        certificate_problems=p["certificate_problems"],
        deployment=live_deployment, proxy_trouble=trouble, pending=list(drift), core_health=core_health,
        limits=limits_condition,
        apply_error=api_message(p["apply_error"]) if p.get("apply_error") else "",
        restore=restore_condition(p.get("restore_condition")),
        prefix_reserved=keyspace.reserved_message(name, reserved) if reserved else "",
    )
    old = cr.get("status") or {}
    if not obs.apply_error and drift:
        # A refused apply stays reported until an apply goes through (no flapping between retries).
        obs.apply_error = previous_apply_error(old)
    extra = dict(p["extra_status"] or {})
    if usage is not None:
        extra["usage"] = usage
    new = desired_status(obs, old, now, extra)
    changed = status_changes(old, new)
    events = transition_events(old, new) if changed else []
    if changed and not check_mode:
        # Events first: if the status write then fails, the next run repeats
        # the transition (and its Event) instead of losing it.
        for ev in events:
            kube.create_event(cr, ev.type, ev.reason, ev.message, rfc3339(now))
        kube.patch_etcdstorage_status(name, merge_patch(old, new))
    retry = requeue_after(new, duration_seconds(p["retry_period"], "retry_period"), RECHECK_SECONDS, now)
    due = p["next_check_seconds"]
    if due and due < p["max_requeue_seconds"]:
        retry = min(retry, due) if retry else due
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in new["conditions"])
    return {"changed": changed or dependency_changed, "ready": ready, "status": new, "apply": apply, "patch": patch,
            "drift": drift,
            "events": [ev.__dict__ for ev in events], "requeue_after": f"{retry}s" if retry else ""}

# The module options (argument_spec) of the module that runs this step alone.
STATUS_OPTIONS = dict(
    **COMMON_OPTIONS,
    **CORE_OPTIONS,
    default_limits=dict(type="dict", default={}),
    core_reserve_percent=dict(type="str"),
    core_quota_bytes=dict(type="str", default=""),
    certificate_problems=dict(type="list", elements="str"),
    proxy_objects=dict(type="list", elements="dict", default=[]),
    extra_status=dict(type="dict"),
    limits=dict(type="dict", default={}),
    apply_error=dict(type="str", default=""),
    restore_condition=dict(type="dict"),
    retry_period=dict(type="str", default="30s"),
    next_check_seconds=dict(type="int", default=0),
    max_requeue_seconds=dict(type="int", default=600),
    manage_status=dict(type="bool", default=True),
)
