"""Kubernetes side of the certificate step: read the material, let etcdproxy_certs decide, write.

Shared by the modules etcdstorage_certs (alone) and etcdstorage_reconcile (with the status step,
in one process). The decisions themselves are in etcdproxy_certs (plain Python, unit tested);
this file only reads and writes objects, in crash-safe order: CA store, trust bundles, leaves.
"""

from __future__ import annotations

import base64
import datetime
from typing import Any

from ansible.module_utils.etcdproxy_certs import (
    KINDS,
    Settings,
    Store,
    bundle_hash,
    bundle_pem,
    client_spec,
    fingerprint,
    iso,
    issue_leaf,
    leaf_renewal_reason,
    next_due,
    overlap_for,
    parse_go_duration,
    plan_ca,
    renewal_time,
    serving_spec,
)
from ansible.module_utils.etcdproxy_kube import COMMON_OPTIONS, OBJECT_OPTIONS, Kube
from ansible.module_utils.etcdproxy_pki import cert_pem, key_pem, load_certs
from kubernetes.client.rest import ApiException

LABELS = {"app.kubernetes.io/managed-by": "etcdproxy-operator"}
OWNER_ANNOTATION = "etcd.etcdproxy.dev/storage"
UID_ANNOTATION = "etcd.etcdproxy.dev/storage-uid"
HASH_ANNOTATION = "etcd.etcdproxy.dev/client-ca-hash"


def b64d(value):
    try:
        return base64.b64decode(value or "").decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def b64e(text):
    return base64.b64encode(text.encode()).decode()


def secret_text(obj):
    return {k: b64d(v) for k, v in ((obj or {}).get("data") or {}).items()}


def bundle_fingerprints(pem):
    try:
        return {fingerprint(c) for c in load_certs(pem)}
    except ValueError:
        return set()


class Run:
    def __init__(self, params, check_mode, kube):
        self.params = params
        self.check_mode = check_mode
        self.kube = kube
        p = params
        self.name, self.ns, self.uid = p["name"], p["namespace"], p["uid"]
        self.spec = p["spec"] or {}
        self.problems = []
        self.events = []
        self.writes = []  # (kind, namespace, name, existing, body)
        self.now = datetime.datetime.now(datetime.UTC)

    def event(self, kind, reason, message):
        self.events.append({"type": kind, "reason": reason, "message": message})

    def read(self, kind, namespace, name, where):
        """The object, None when missing, or False when it cannot be read (reported)."""
        try:
            getter = self.kube.get_secret if kind == "Secret" else self.kube.get_configmap
            return getter(namespace, name)
        except ApiException as exc:
            self.problems.append(self.api_problem(exc, kind, namespace, name, where))
            return False

    def api_problem(self, exc, kind, namespace, name, where):
        if exc.status == 403:
            return (f"{where}: the operator may not read or write {kind} {namespace}/{name}: grant it with a "
                    f"Role/RoleBinding in namespace {namespace} (see config/rbac/destination_role_example.yaml)")
        if exc.status == 404:
            return f"{where}: namespace {namespace} does not exist: create it, or fix {where}"
        return f"{where}: {kind} {namespace}/{name}: API error {exc.status} {exc.reason}"

    def held_by_other(self, obj, kind, namespace, name, where):
        holder = ((obj or {}).get("metadata", {}).get("annotations") or {}).get(OWNER_ANNOTATION)
        if holder and holder != self.name:
            self.problems.append(f"{where}: {kind} {namespace}/{name} already receives the material of "
                                 f"EtcdStorage {holder}: give each EtcdStorage its own {kind}")
            return True
        return False

    def stage(self, kind, namespace, name, existing, data, where, tls=False, extra_annotations=None,
              remove_keys=()):
        """Queue a write of ``data`` (plain text values) if it differs from ``existing``."""
        current = secret_text(existing) if kind == "Secret" else dict((existing or {}).get("data") or {})
        meta = (existing or {}).get("metadata") or {}
        annotations = {OWNER_ANNOTATION: self.name, **(extra_annotations or {})}
        stale_keys = [k for k in remove_keys if k in current and k not in data]
        if all(current.get(k) == v for k, v in data.items()) and not stale_keys and \
                all((meta.get("annotations") or {}).get(k) == v for k, v in annotations.items()):
            return False
        encoded = {k: b64e(v) for k, v in data.items()} if kind == "Secret" else dict(data)
        # A merge patch keeps keys it does not mention: ours that must go are set to null.
        encoded.update({k: None for k in stale_keys} if existing is not None else {})
        body = {"metadata": {"labels": dict(LABELS), "annotations": annotations}, "data": encoded}
        if existing is None and kind == "Secret":
            body["type"] = "kubernetes.io/tls" if tls else "Opaque"
        self.writes.append((kind, namespace, name, existing, body, where))
        return True


def reconcile_certificates(kube: Kube, params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """The whole certificate decision of one EtcdStorage; writes (unless check mode) only what changed.

    ``params``: name, uid, namespace, spec, annotations, ca_overlap, emit_events (the options of
    etcdstorage_certs). Never raises for a problem with the input or one destination:
    those are returned in ``problems``.
    """
    p = params
    r = Run(params, check_mode, kube)
    name, ns = r.name, r.ns
    try:
        overlap = parse_go_duration(p["ca_overlap"]) if p["ca_overlap"] else None
        settings = Settings.from_spec(r.spec, p["annotations"] or {}, overlap)
    except ValueError as exc:
        return result(r, changed=False, problems=[str(exc)], client_hash="", certificates={}, due=None)

    # ---- read ------------------------------------------------------------------------------
    ca_name, serving_name, client_ca_name = f"etcd-{name}-ca", f"etcd-{name}-serving", f"etcd-{name}-client-ca"
    ca_secret = r.read("Secret", ns, ca_name, "CA store")
    if ca_secret is False:
        return result(r, False, r.problems, "", {}, None)
    stored = secret_text(ca_secret)
    stale = ca_secret is not None and r.uid and \
        ((ca_secret["metadata"].get("annotations") or {}).get(UID_ANNOTATION) not in (None, r.uid))
    if stale:
        r.event("Warning", "StaleMaterialReplaced",
                f"Secret {ns}/{ca_name} belonged to an earlier EtcdStorage named {name}; new CAs are issued")
        store, store_problems = Store(), []
    else:
        store, store_problems = Store.from_secret_data(stored)
    for prob in store_problems:
        r.event("Warning", "ReplacedInvalidData", f"Secret {ns}/{ca_name}: {prob}; replaced")
    client_ca_cm = r.read("ConfigMap", ns, client_ca_name, "proxy client CA")
    serving_secret = r.read("Secret", ns, serving_name, "proxy serving certificate")
    deployment = kube.get_deployment(ns, f"etcd-{name}")
    namespaces = {}

    def namespace_exists(namespace, where):
        if namespace not in namespaces:
            try:
                namespaces[namespace] = kube.get_namespace(namespace) is not None
            except ApiException as exc:
                namespaces[namespace] = exc.status == 403  # cannot tell: try, and report what the write says
        if not namespaces[namespace]:
            r.problems.append(f"{where}: namespace {namespace} does not exist: create it, or fix {where}")
        return namespaces[namespace]

    def destinations(field, kind):
        """(destination, object or None, where) for each usable entry of spec.<field>; problems reported."""
        usable = []
        for i, d in enumerate(r.spec.get(field) or []):
            where = f"spec.{field}[{i}]"
            if not namespace_exists(d["namespace"], where):
                continue
            obj = r.read(kind, d["namespace"], d["name"], where)
            if obj is not False and not r.held_by_other(obj, kind, d["namespace"], d["name"], where):
                usable.append((d, obj, where))
        return usable

    dest_cms = destinations("caCertConfigMap", "ConfigMap")
    dest_secrets = destinations("clientCertSecret", "Secret")

    # ---- CAs -------------------------------------------------------------------------------
    force_ca = bool(settings.rotate_ca_token) and settings.rotate_ca_token != store.rotate_ca_token
    store_changed = bool(store_problems) or stale or ca_secret is None
    for kind in KINDS:
        ca = store.cas[kind]
        delivered = False
        if ca.next is not None:
            fp = fingerprint(ca.next.cert)
            if kind == "serving":
                listed = len(r.spec.get("caCertConfigMap") or [])
                delivered = len(dest_cms) == listed and all(
                    fp in bundle_fingerprints(((obj or {}).get("data") or {}).get("serving-ca.crt", ""))
                    for _, obj, _ in dest_cms)
            else:
                pem = ((client_ca_cm or {}).get("data") or {}).get("ca.crt", "")
                delivered = fp in bundle_fingerprints(pem) and proxy_rolled(deployment, bundle_hash(pem))
        plan = plan_ca(kind, ca, name, settings, r.now, force_ca, delivered)
        store_changed |= plan.changed
        for ev in plan.events:
            r.event(*ev)
    if force_ca:
        store.rotate_ca_token = settings.rotate_ca_token
        store_changed = True

    # ---- bundles ---------------------------------------------------------------------------
    client_bundle = bundle_pem(store.cas["client"].trust())
    serving_bundle = bundle_pem(store.cas["serving"].trust())
    client_hash = bundle_hash(client_bundle)

    # ---- leaves ----------------------------------------------------------------------------
    force_leaf = bool(settings.rotate_token) and settings.rotate_token != store.rotate_token
    if force_leaf:
        store.rotate_token = settings.rotate_token
        store_changed = True
    leaves = []
    serving_ca, client_ca = store.cas["serving"].current, store.cas["client"].current

    def leaf(existing, spec, issuer_state, issuer, validity, where, kind_label):
        text = secret_text(existing)
        reason = leaf_renewal_reason(text.get("tls.crt"), text.get("tls.key"), spec, issuer, validity,
                                     settings.key_type, r.now, force_leaf)
        if reason is None:
            cert = load_certs(text["tls.crt"])[0]
            leaves.append(cert)
            return cert, None
        if reason == "unparsable":
            r.event("Warning", "ReplacedInvalidData", f"{where}: tls.crt/tls.key did not parse; replaced")
        nonlocal store_changed
        cert, key = issue_leaf(spec, issuer, validity, settings.key_type, r.now)
        issuer_state.note_issued(cert)
        store_changed = True
        leaves.append(cert)
        if reason != "missing":
            r.event("Normal", "CertificateRenewed", f"{kind_label} renewed: {reason}")
        return cert, {"tls.crt": cert_pem(cert), "tls.key": key_pem(key)}

    serving_cert, serving_data = leaf(serving_secret or None, serving_spec(name, ns), store.cas["serving"],
                                      serving_ca, settings.serving_validity, f"Secret {ns}/{serving_name}",
                                      "proxy serving certificate")
    client_results = []
    for d, obj, where in dest_secrets:
        try:
            cert, data = leaf(obj, client_spec(name, d["namespace"], d["name"]), store.cas["client"], client_ca,
                              settings.client_validity, where, f"client certificate {d['namespace']}/{d['name']}")
        except ValueError as exc:  # one destination's problem never holds back the others
            r.problems.append(f"{where}: cannot issue a client certificate for Secret {d['namespace']}/{d['name']}: "
                              f"{exc}")
            continue
        client_results.append((d, obj, where, cert, data))

    # ---- writes, in crash-safe order: CA store, trust bundles, then leaves -----------------------
    if store_changed:
        r.stage("Secret", ns, ca_name, ca_secret, store.to_secret_data(), "CA store",
                extra_annotations={UID_ANNOTATION: r.uid} if r.uid else None,
                remove_keys=[k for k in stored if k.endswith((".crt", ".key"))])
    r.stage("ConfigMap", ns, client_ca_name, client_ca_cm or None, {"ca.crt": client_bundle}, "proxy client CA")
    for d, obj, where in dest_cms:
        old = ((obj or {}).get("data") or {}).get("serving-ca.crt")
        if old and not bundle_fingerprints(old):
            r.event("Warning", "ReplacedInvalidData",
                    f"ConfigMap {d['namespace']}/{d['name']} key serving-ca.crt was not a PEM bundle; replaced")
        r.stage("ConfigMap", d["namespace"], d["name"], obj, {"serving-ca.crt": serving_bundle}, where)
    if serving_data:
        r.stage("Secret", ns, serving_name, serving_secret or None, serving_data, "proxy serving certificate",
                tls=True)
    for d, obj, where, _cert, data in client_results:
        if data:
            kind = (obj or {}).get("type") or "kubernetes.io/tls"
            if kind != "kubernetes.io/tls":  # said when we write into it, not on every reconcile
                r.event("Warning", "DestinationNotTLS",
                        f"{where}: Secret {d['namespace']}/{d['name']} has type {kind}, not kubernetes.io/tls; "
                        "tls.crt and tls.key are delivered into it anyway (a Secret's type cannot change: delete "
                        "it to let the operator create a kubernetes.io/tls one)")
            r.stage("Secret", d["namespace"], d["name"], obj, data, where, tls=True)

    written = []
    if not check_mode:
        for kind, wns, wname, existing, body, where in r.writes:
            try:
                kube.write(kind, wns, wname, existing, body)
                written.append(f"{kind} {wns}/{wname}")
            except ApiException as exc:
                r.problems.append(r.api_problem(exc, kind, wns, wname, where))
                if where in ("CA store",):
                    break  # never hand out leaves whose CA is not saved
    certificates = describe(store, serving_cert, client_results, settings, r.now)
    due = next_due(store, leaves, settings, r.now)
    return result(r, bool(r.writes), r.problems, client_hash, certificates, due, written)


def proxy_rolled(deployment, want_hash):
    if not deployment:
        return False
    meta, spec, status = deployment["metadata"], deployment["spec"], deployment.get("status") or {}
    annotations = (spec.get("template", {}).get("metadata") or {}).get("annotations") or {}
    replicas = int(spec.get("replicas", 1))
    return (annotations.get(HASH_ANNOTATION) == want_hash
            and int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
            and int(status.get("updatedReplicas") or 0) == replicas
            and int(status.get("availableReplicas") or 0) >= replicas
            and int(status.get("replicas") or 0) == replicas)


def describe(store, serving_cert, client_results, settings, now):
    out = {}
    for kind in KINDS:
        ca = store.cas[kind]
        if not ca.current:
            continue
        entry = {"notAfter": iso(ca.current.cert.not_valid_after_utc),
                 "renewalTime": iso(renewal_time(ca.current.cert))}
        if ca.next is not None:
            start = ca.next_created or now
            entry["rotation"] = {
                "phase": "Overlap",
                "overlapStart": iso(start),
                "signingFrom": iso(start + overlap_for(ca.current.cert, settings)),
                "nextNotAfter": iso(ca.next.cert.not_valid_after_utc),
            }
        if ca.retired:
            entry["previousTrustedUntil"] = iso(max(u for _, u in ca.retired))
        out[f"{kind}CA"] = entry
    if serving_cert is not None:
        out["serving"] = {"notAfter": iso(serving_cert.not_valid_after_utc),
                          "renewalTime": iso(renewal_time(serving_cert))}
    out["clients"] = [{"namespace": d["namespace"], "name": d["name"],
                       "notAfter": iso(c.not_valid_after_utc), "renewalTime": iso(renewal_time(c))}
                      for d, _o, _w, c, _data in client_results]
    return out


def result(r, changed, problems, client_hash, certificates, due, written=None):
    if r.params["emit_events"] and not r.check_mode:
        owner = {"metadata": {"name": r.name, "uid": r.uid}}
        stamp = iso(r.now)
        for ev in r.events:
            try:
                r.kube.create_event(owner, ev["type"], ev["reason"], ev["message"], stamp)
            except ApiException:
                pass  # Events are best effort; the status condition carries the problems too
    seconds = 0
    if due is not None:
        seconds = max(1, int((due - r.now).total_seconds()) + 1)
    return {"changed": changed, "problems": problems, "client_ca_hash": client_hash,
            "certificates": certificates, "next_check_seconds": seconds, "written": written or [],
            "events": r.events}


def failed_result(exc: Exception) -> dict[str, Any]:
    """What to return when the certificate step itself broke: a problem, reported in status and retried."""
    return {"changed": False, "problems": [f"certificates: unexpected {type(exc).__name__}: {exc}"],
            "client_ca_hash": "", "certificates": {}, "next_check_seconds": 0, "written": [], "events": []}

# The module options (argument_spec) of the module that runs this step alone.
CERT_OPTIONS = dict(
    **COMMON_OPTIONS,
    **OBJECT_OPTIONS,
    annotations=dict(type="dict", default={}),
    ca_overlap=dict(type="str", default=""),
    emit_events=dict(type="bool", default=True),
)
