"""The certificate step of one EtcdStorage: read the material, plan (certs/plan.py), write in order.

Run by the module etcdstorage_reconcile (before the status step, in one process). Every decision is in
certs/plan.py and certs/decide.py (plain Python, unit tested); this file only reads, writes the plan's
objects in its order, and reports.
"""

from __future__ import annotations

import datetime
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils import names
from ansible_collections.etcdproxy.operator.plugins.module_utils.args import COMMON_OPTIONS, OBJECT_OPTIONS
from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.plan import (
    Destination,
    Observed,
    Plan,
    plan_certificates,
)
from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.settings import Settings
from ansible_collections.etcdproxy.operator.plugins.module_utils.cleanup import release_patch
from ansible_collections.etcdproxy.operator.plugins.module_utils.kube import ApiError, Kube
from ansible_collections.etcdproxy.operator.plugins.module_utils.times import parse_go_duration, rfc3339


def api_problem(exc: ApiError, kind: str, namespace: str, name: str, where: str) -> str:
    if exc.status == 403:
        return (f"{where}: the operator may not read or write {kind} {namespace}/{name}: grant it with a "
                f"Role/RoleBinding in namespace {namespace} (see config/rbac/destination_role_example.yaml)")
    if exc.status == 404:
        return f"{where}: namespace {namespace} does not exist: create it, or fix {where}"
    return f"{where}: {kind} {namespace}/{name}: API error {exc.status} {exc.reason}"


class Reader:
    """Reads for one run; what cannot be read, or must not be used, becomes a problem."""

    def __init__(self, kube: Kube, name: str, operator_namespace: str) -> None:
        self.kube, self.name, self.operator_namespace = kube, name, operator_namespace
        self.problems: list[str] = []
        self._namespaces: dict[str, bool] = {}

    def read(self, kind: str, namespace: str, name: str, where: str) -> dict[str, Any] | None | bool:
        """The object, None when missing, or False when it cannot be read (reported)."""
        try:
            getter = self.kube.get_secret if kind == "Secret" else self.kube.get_configmap
            return getter(namespace, name)
        except ApiError as exc:
            self.problems.append(api_problem(exc, kind, namespace, name, where))
            return False

    def namespace_exists(self, namespace: str, where: str) -> bool:
        if namespace not in self._namespaces:
            try:
                self._namespaces[namespace] = self.kube.get_namespace(namespace) is not None
            except ApiError as exc:
                self._namespaces[namespace] = exc.status == 403  # cannot tell: try, and report what the write says
        if not self._namespaces[namespace]:
            self.problems.append(f"{where}: namespace {namespace} does not exist: create it, or fix {where}")
        return self._namespaces[namespace]

    def destinations(self, spec: dict[str, Any], field: str, kind: str) -> list[Destination]:
        """Each usable entry of spec.<field> with its live object; the others reported."""
        usable = []
        for i, d in enumerate(spec.get(field) or []):
            dest = Destination(field, i, d["namespace"], d["name"], None)
            if dest.namespace == self.operator_namespace:
                # It holds the CA keys and the core etcd credentials: a leaf merged into the core client
                # Secret would cut every tenant off the core. Nothing there is ever a destination.
                self.problems.append(f"{dest.where}: namespace {dest.namespace} is the operator's own (it holds the "
                                     "CA keys and the core etcd credentials): deliver to the API server's "
                                     "namespace instead")
                continue
            if not self.namespace_exists(dest.namespace, dest.where):
                continue
            obj = self.read(kind, dest.namespace, dest.name, dest.where)
            if obj is False:
                continue
            holder = ((obj or {}).get("metadata", {}).get("annotations") or {}).get(names.OWNER_ANNOTATION)
            if holder and holder != self.name:
                self.problems.append(f"{dest.where}: {kind} {dest.namespace}/{dest.name} already receives the "
                                     f"material of EtcdStorage {holder}: give each EtcdStorage its own {kind}")
                continue
            dest.obj = obj  # type: ignore[assignment]
            usable.append(dest)
        return usable


def reconcile_certificates(kube: Kube, params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """The whole certificate step of one EtcdStorage; writes (unless check mode) only what changed.

    ``params``: name, uid, namespace, spec, annotations, ca_overlap, emit_events (CERT_OPTIONS).
    Never raises for a problem with the input or one destination: those are returned in ``problems``.
    """
    p = params
    name, ns, uid, spec = p["name"], p["namespace"], p["uid"], p["spec"] or {}
    now = datetime.datetime.now(datetime.UTC)
    try:
        overlap = parse_go_duration(p["ca_overlap"]) if p["ca_overlap"] else None
        settings = Settings.from_spec(spec, p["annotations"] or {}, overlap)
    except ValueError as exc:
        return result(kube, p, Plan(problems=[str(exc)]), now, check_mode)

    reader = Reader(kube, name, ns)
    # The status step reads the EtcdStorage too (one read: the module's client reuses it).
    last_certificates = ((kube.get_etcdstorage(name) or {}).get("status") or {}).get("certificates") or {}
    ca_secret = reader.read("Secret", ns, names.ca_store(name), "CA store")
    if ca_secret is False:
        return result(kube, p, Plan(problems=reader.problems), now, check_mode)
    client_ca = reader.read("ConfigMap", ns, names.client_ca(name), "proxy client CA")
    serving = reader.read("Secret", ns, names.serving(name), "proxy serving certificate")
    obs = Observed(
        name=name, namespace=ns, uid=uid, ca_secret=ca_secret or None,
        client_ca=client_ca or None, serving=serving or None,
        deployment=kube.get_deployment(ns, names.proxy(name)),
        ca_destinations=reader.destinations(spec, "caCertConfigMap", "ConfigMap"),
        client_destinations=reader.destinations(spec, "clientCertSecret", "Secret"),
        listed_cas=[(d["namespace"], d["name"]) for d in spec.get("caCertConfigMap") or []],
        listed_clients=[(d["namespace"], d["name"]) for d in spec.get("clientCertSecret") or []],
        previous_cas=last_certificates.get("caBundles") or [],
        previous_clients=last_certificates.get("clients") or [],
    )
    plan = plan_certificates(obs, settings, now)
    plan.problems[:0] = reader.problems
    written = []
    if not check_mode:
        for w in plan.writes:
            try:
                kube.write(w.kind, w.namespace, w.name, w.existing, w.body)
                written.append(w.key)
            except ApiError as exc:
                plan.problems.append(api_problem(exc, w.kind, w.namespace, w.name, w.where))
                if w.holds_ca:
                    break  # never hand out leaves whose CA is not saved
        if plan.writes and written != [w.key for w in plan.writes]:
            plan.released = []  # the revocation may not be written: give nothing back before it is
        for namespace, secret in plan.released:
            if give_back(kube, name, uid, namespace, secret, "Secret"):
                written.append(f"Secret {namespace}/{secret}")
        for namespace, configmap in plan.released_cas:
            if give_back(kube, name, uid, namespace, configmap, "ConfigMap"):
                written.append(f"ConfigMap {namespace}/{configmap}")
                plan.event("Normal", "CABundleReleased",
                           f"ConfigMap {namespace}/{configmap} left spec.caCertConfigMap: our CA bundle and marks "
                           "were removed from it, so it can be given to another EtcdStorage")
    return result(kube, p, plan, now, check_mode, written)


def give_back(kube: Kube, name: str, uid: str, namespace: str, obj_name: str, kind: str) -> bool:
    """Empty a destination that left the spec of our material and marks (a client certificate is already
    revoked); True if it was written. One that is no longer ours, or that the operator may no longer read or
    write (its delivery Role went with it), is left as it is."""
    try:
        obj = kube.get_secret(namespace, obj_name) if kind == "Secret" else kube.get_configmap(namespace, obj_name)
        patch = release_patch(obj, kind, name, uid)
        if patch is None:
            return False
        kube.write(kind, namespace, obj_name, obj, patch)
    except ApiError:
        return False
    return True


def result(kube: Kube, params: dict[str, Any], plan: Plan, now: datetime.datetime, check_mode: bool,
           written: list[str] | None = None) -> dict[str, Any]:
    if params["emit_events"] and not check_mode:
        owner = {"metadata": {"name": params["name"], "uid": params["uid"]}}
        for ev in plan.events:
            try:
                kube.create_event(owner, ev["type"], ev["reason"], ev["message"], rfc3339(now))
            except ApiError:
                pass  # Events are best effort; the status condition carries the problems too
    seconds = max(1, int((plan.due - now).total_seconds()) + 1) if plan.due is not None else 0
    return {"changed": bool(plan.writes), "problems": plan.problems, "client_ca_hash": plan.client_hash,
            "certificates": plan.certificates, "next_check_seconds": seconds, "written": written or [],
            "events": plan.events}


def failed_result(exc: Exception) -> dict[str, Any]:
    """What to return when the certificate step itself broke: a problem, reported in status and retried."""
    return {"changed": False, "problems": [f"certificates: unexpected {type(exc).__name__}: {exc}"],
            "client_ca_hash": "", "certificates": {}, "next_check_seconds": 0, "written": [], "events": []}


# The certificate step's options (argument_spec), part of etcdstorage_reconcile's.
CERT_OPTIONS = dict(
    **COMMON_OPTIONS,
    **OBJECT_OPTIONS,
    annotations=dict(type="dict", default={}),
    ca_overlap=dict(type="str", default=""),
    emit_events=dict(type="bool", default=True),
)
