"""The certificate step's plan for one EtcdStorage: which objects to write, in which order, with which Events.

Pure: it takes what certs/step.py read (:class:`Observed`), the settings and the clock, and returns a
:class:`Plan`. Writes come out in crash-safe order (docs/design.md), so that a crash between any two of
them leaves nothing a peer cannot verify:

1. the CA store (every CA key the operator will ever sign with is saved before anything it signed
   leaves the operator; if this write fails, nothing after it is written);
2. trust bundles: the proxy's client CA, then the API servers' serving CA ConfigMaps;
3. leaves: the proxy's serving certificate, then the API servers' client certificates.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils import names
from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.decide import (
    client_spec,
    issue_leaf,
    leaf_renewal_reason,
    next_due,
    overlap_for,
    plan_ca,
    renewal_time,
    serving_spec,
)
from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.settings import Settings
from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.store import KINDS, CAState, KeyPair, Store
from ansible_collections.etcdproxy.operator.plugins.module_utils.rollout import rollout
from ansible_collections.etcdproxy.operator.plugins.module_utils.secretdata import b64e, secret_text
from ansible_collections.etcdproxy.operator.plugins.module_utils.times import rfc3339
from ansible_collections.etcdproxy.operator.plugins.module_utils.x509 import (
    CertSpec,
    bundle_hash,
    bundle_pem,
    cert_pem,
    fingerprint,
    key_pem,
    load_certs,
)
from cryptography import x509

LABELS = {"app.kubernetes.io/managed-by": names.COMPONENT}
SERVING_CA_KEY = "serving-ca.crt"  # in the API servers' ConfigMaps
CLIENT_CA_KEY = "ca.crt"  # in the proxy's client CA ConfigMap


@dataclass
class Destination:
    """One usable entry of spec.caCertConfigMap or spec.clientCertSecret, and its live object."""

    field: str
    index: int
    namespace: str
    name: str
    obj: dict[str, Any] | None

    @property
    def where(self) -> str:
        return f"spec.{self.field}[{self.index}]"


@dataclass
class Observed:
    """What the step read for one EtcdStorage (None: the object does not exist)."""

    name: str
    namespace: str
    uid: str
    ca_secret: dict[str, Any] | None
    client_ca: dict[str, Any] | None
    serving: dict[str, Any] | None
    deployment: dict[str, Any] | None
    ca_destinations: list[Destination]
    client_destinations: list[Destination]
    # Every spec.caCertConfigMap and spec.clientCertSecret entry (namespace, name), usable or not; and
    # status.certificates.caBundles and .clients of the last run: a destination in the second and not the
    # first has left the spec (a CA bundle is given back; client certificates are revoked, then given back).
    listed_cas: list[tuple[str, str]] = field(default_factory=list)
    listed_clients: list[tuple[str, str]] = field(default_factory=list)
    previous_cas: list[dict[str, Any]] = field(default_factory=list)
    previous_clients: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Write:
    kind: str  # Secret or ConfigMap
    namespace: str
    name: str
    existing: dict[str, Any] | None
    body: dict[str, Any]  # a merge patch of existing, or the object to create
    where: str
    holds_ca: bool = False  # if this write fails, nothing after it may be written

    @property
    def key(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass
class Plan:
    writes: list[Write] = field(default_factory=list)
    events: list[dict[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    client_hash: str = ""
    # Client destinations (namespace, name) that left the spec, to give back after the writes (which record
    # their revocation); listed until the status no longer has them.
    released: list[tuple[str, str]] = field(default_factory=list)
    # CA bundle destinations (namespace, name) that left the spec, to give back.
    released_cas: list[tuple[str, str]] = field(default_factory=list)
    certificates: dict[str, Any] = field(default_factory=dict)
    due: datetime.datetime | None = None

    def event(self, event_type: str, reason: str, message: str) -> None:
        self.events.append({"type": event_type, "reason": reason, "message": message})


def bundle_fingerprints(pem: str) -> set[str]:
    try:
        return {fingerprint(c) for c in load_certs(pem)}
    except ValueError:
        return set()


def trust_hash(bundle: str, revoked: str) -> str:
    """What the proxy's pod template carries (names.HASH_ANNOTATION): the hash of the client CA bundle, and of
    the revoked client names once there are any, so that a change of either rolls the proxy (a roll also ends
    the connections a revoked certificate opened)."""
    return bundle_hash(bundle + revoked) if revoked else bundle_hash(bundle)


def issued_key(namespace: str, name: str) -> str:
    """A client destination's key in the CA store's record of issued certificates (Store.issued)."""
    return f"{namespace}/{name}"


def issued_destination(key: str) -> tuple[str, str]:
    """(namespace, name) of an ``issued_key``."""
    namespace, _, name = key.partition("/")
    return namespace, name


def listed_clients(obs: Observed) -> set[tuple[str, str]]:
    """The client destinations (namespace, name) the spec lists, usable or not."""
    return set(obs.listed_clients) | {(d.namespace, d.name) for d in obs.client_destinations}


def revocations(obs: Observed, kept: dict[str, str], issued: dict[str, str], now: datetime.datetime
                ) -> tuple[dict[str, str], list[dict[str, Any]], list[dict[str, Any]]]:
    """The revoked client names in force (name -> notAfter, from ``kept``: the CA store's), the destinations
    that left the spec since they were last issued a certificate, and those of them revoked by this run.

    A destination that left spec.clientCertSecret is revoked by name, which covers every certificate ever
    issued to it, until the last one it got expires (the later of status.certificates.clients[].notAfter
    and the CA store's ``issued`` record, which also holds a destination the last status never listed: a
    run that ended between delivering and writing the status); put back, it is no longer revoked (and gets
    a new certificate, its Secret having been given back)."""
    until = dict(kept)
    listed = listed_clients(obs)
    previous: dict[tuple[str, str], str] = {}
    for old in obs.previous_clients:
        previous[(old["namespace"], old["name"])] = str(old.get("notAfter") or "")
    for key, after in issued.items():
        where = issued_destination(key)
        previous[where] = max(previous.get(where, ""), after)
    left, new = [], []
    for (ns, secret), after in sorted(previous.items()):
        if (ns, secret) in listed or not after:
            continue
        old = {"namespace": ns, "name": secret, "notAfter": after}
        cn = client_spec(obs.name, ns, secret).common_name
        left.append(old)
        if cn not in until:
            new.append(old)
        until[cn] = max(until.get(cn, ""), after)
    stamp = rfc3339(now)
    names_listed = {client_spec(obs.name, ns, n).common_name for ns, n in listed}
    return {cn: after for cn, after in until.items() if cn not in names_listed and after > stamp}, left, new


def proxy_rolled(deployment: dict[str, Any] | None, want_hash: str) -> bool:
    """The proxy runs, on every replica, a pod template that trusts the bundle with ``want_hash``."""
    if not deployment:
        return False
    state = rollout(deployment)
    return state.pod_annotations.get(names.HASH_ANNOTATION) == want_hash and state.complete


def write_if_changed(kind: str, namespace: str, name: str, existing: dict[str, Any] | None, data: dict[str, str],
                     where: str, owner: str, tls: bool = False, extra_annotations: dict[str, str] | None = None,
                     remove_keys: tuple[str, ...] | list[str] = (), holds_ca: bool = False) -> Write | None:
    """A write of ``data`` (text values) and our annotations, or None when ``existing`` already holds them."""
    current = secret_text(existing) if kind == "Secret" else dict((existing or {}).get("data") or {})
    meta = (existing or {}).get("metadata") or {}
    annotations = {names.OWNER_ANNOTATION: owner, **(extra_annotations or {})}
    stale_keys = [k for k in remove_keys if k in current and k not in data]
    if all(current.get(k) == v for k, v in data.items()) and not stale_keys and \
            all((meta.get("annotations") or {}).get(k) == v for k, v in annotations.items()):
        return None
    encoded: dict[str, Any] = {k: b64e(v) for k, v in data.items()} if kind == "Secret" else dict(data)
    # A merge patch keeps keys it does not mention: ours that must go are set to null.
    encoded.update({k: None for k in stale_keys} if existing is not None else {})
    body: dict[str, Any] = {"metadata": {"labels": dict(LABELS), "annotations": annotations}, "data": encoded}
    if existing is None and kind == "Secret":
        body["type"] = "kubernetes.io/tls" if tls else "Opaque"
    return Write(kind, namespace, name, existing, body, where, holds_ca)


@dataclass
class _Leaf:
    cert: x509.Certificate
    data: dict[str, str] | None  # None: the existing one stays


def _leaf(plan: Plan, existing: dict[str, Any] | None, spec: CertSpec, issuer_state: CAState, issuer: KeyPair,
          validity: datetime.timedelta, settings: Settings, now: datetime.datetime, force: bool,
          where: str, label: str) -> _Leaf:
    """The leaf to keep, or a new one (noted in the issuer's state). ValueError if it cannot be issued."""
    text = secret_text(existing)
    reason = leaf_renewal_reason(text.get("tls.crt"), text.get("tls.key"), spec, issuer, validity,
                                 settings.key_type, now, force)
    if reason is None:
        return _Leaf(load_certs(text["tls.crt"])[0], None)
    if reason == "unparsable":
        plan.event("Warning", "ReplacedInvalidData", f"{where}: tls.crt/tls.key did not parse; replaced")
    cert, key = issue_leaf(spec, issuer, validity, settings.key_type, now)
    issuer_state.note_issued(cert)
    if reason != "missing":
        plan.event("Normal", "CertificateRenewed", f"{label} renewed: {reason}")
    return _Leaf(cert, {"tls.crt": cert_pem(cert), "tls.key": key_pem(key)})


def plan_certificates(obs: Observed, settings: Settings, now: datetime.datetime) -> Plan:
    """Every certificate decision of one EtcdStorage, as ordered writes and Events."""
    plan = Plan()
    name, ns = obs.name, obs.namespace
    ca_name = names.ca_store(name)

    # ---- the CA store ----------------------------------------------------------------------
    stored = secret_text(obs.ca_secret)
    stale = obs.ca_secret is not None and bool(obs.uid) and \
        ((obs.ca_secret["metadata"].get("annotations") or {}).get(names.UID_ANNOTATION) not in (None, obs.uid))
    if stale:
        plan.event("Warning", "StaleMaterialReplaced",
                   f"Secret {ns}/{ca_name} belonged to an earlier EtcdStorage named {name}; new CAs are issued")
        store, store_problems = Store(), []
    else:
        store, store_problems = Store.from_secret_data(stored)
    for prob in store_problems:
        plan.event("Warning", "ReplacedInvalidData", f"Secret {ns}/{ca_name}: {prob}; replaced")
    store_changed = bool(store_problems) or stale or obs.ca_secret is None
    lost = [kind for kind in KINDS if store.cas[kind].current is None and store.cas[kind].next is None]
    if lost and not stale and (obs.serving is not None or obs.client_ca is not None):
        # Certificates signed by these CAs are in use, but their keys are gone: no staged rotation is
        # possible (it needs the old CA to keep signing through the overlap), so say what breaks and why.
        plan.event("Warning", "CAKeysLost",
                   f"Secret {ns}/{ca_name} no longer holds the {' and '.join(lost)} CA that signed the certificates "
                   "in use (deleted or emptied by hand?): new CAs are issued and every certificate is re-issued "
                   "at once; an API server that still holds the old CA bundle or client certificate fails to "
                   "connect until it restarts with the delivered ones (docs/certificates.md)")

    # ---- CAs: staged rotation ------------------------------------------------------------------
    force_ca = bool(settings.rotate_ca_token) and settings.rotate_ca_token != store.rotate_ca_token
    for kind in KINDS:
        ca = store.cas[kind]
        delivered = False
        if ca.next is not None:
            fp = fingerprint(ca.next.cert)
            if kind == "serving":
                delivered = len(obs.ca_destinations) == len(obs.listed_cas) and all(
                    fp in bundle_fingerprints(((d.obj or {}).get("data") or {}).get(SERVING_CA_KEY, ""))
                    for d in obs.ca_destinations)
            else:
                live = (obs.client_ca or {}).get("data") or {}
                pem = live.get(CLIENT_CA_KEY, "")
                delivered = fp in bundle_fingerprints(pem) and proxy_rolled(
                    obs.deployment, trust_hash(pem, live.get(names.REVOKED_CLIENTS_KEY) or ""))
        ca_plan = plan_ca(kind, ca, name, settings, now, force_ca, delivered)
        store_changed |= ca_plan.changed
        for ev in ca_plan.events:
            plan.event(*ev)
    if force_ca:
        store.rotate_ca_token = settings.rotate_ca_token
        store_changed = True
    client_bundle = bundle_pem(store.cas["client"].trust())
    serving_bundle = bundle_pem(store.cas["serving"].trust())
    in_force, left, new = revocations(obs, store.revoked, store.issued, now)
    if in_force != store.revoked:
        store.revoked, store_changed = in_force, True
    # What the guard reads (names.REVOKED_CLIENTS_KEY): sorted "<notAfter> <name>" lines.
    revoked = "".join(f"{after} {cn}\n" for cn, after in sorted(in_force.items()))
    plan.client_hash = trust_hash(client_bundle, revoked)
    plan.released = [(old["namespace"], old["name"]) for old in left]
    plan.released_cas = [(old["namespace"], old["name"]) for old in obs.previous_cas
                         if (old.get("namespace"), old.get("name")) not in obs.listed_cas]
    for old in new:
        plan.event("Normal", "ClientCertificateRevoked",
                   f"Secret {old['namespace']}/{old['name']} left spec.clientCertSecret: every client certificate "
                   f"issued to it is refused from now on (the proxy rolls; until {old['notAfter']}, when the last "
                   "one expires), and the Secret is given back (certificate and key emptied, our marks removed)")

    # ---- leaves ------------------------------------------------------------------------------
    force_leaf = bool(settings.rotate_token) and settings.rotate_token != store.rotate_token
    if force_leaf:
        store.rotate_token = settings.rotate_token
        store_changed = True
    serving_ca, client_ca = store.cas["serving"].current, store.cas["client"].current
    assert serving_ca is not None and client_ca is not None  # plan_ca created them
    serving = _leaf(plan, obs.serving, serving_spec(name, ns), store.cas["serving"], serving_ca,
                    settings.serving_validity, settings, now, force_leaf,
                    f"Secret {ns}/{names.serving(name)}", "proxy serving certificate")
    clients: list[tuple[Destination, _Leaf]] = []
    for d in obs.client_destinations:
        try:
            leaf = _leaf(plan, d.obj, client_spec(name, d.namespace, d.name), store.cas["client"], client_ca,
                         settings.client_validity, settings, now, force_leaf, d.where,
                         f"client certificate {d.namespace}/{d.name}")
        except ValueError as exc:  # one destination's problem never holds back the others
            plan.problems.append(f"{d.where}: cannot issue a client certificate for Secret {d.namespace}/{d.name}: "
                                 f"{exc}")
            continue
        clients.append((d, leaf))
    store_changed |= serving.data is not None or any(leaf.data is not None for _, leaf in clients)
    # The client destinations issued a certificate, recorded before it leaves (see revocations); one that
    # left the spec is in store.revoked from now on.
    listed = listed_clients(obs)
    issued = {k: v for k, v in store.issued.items() if issued_destination(k) in listed}
    for d, leaf in clients:
        if leaf.data is not None:
            issued[issued_key(d.namespace, d.name)] = rfc3339(leaf.cert.not_valid_after_utc)
    if issued != store.issued:
        store.issued, store_changed = issued, True

    # ---- writes, in crash-safe order: CA store, trust bundles, then leaves ----------------------
    writes: list[Write | None] = []
    if store_changed:
        writes.append(write_if_changed(
            "Secret", ns, ca_name, obs.ca_secret, store.to_secret_data(), "CA store", name,
            extra_annotations={names.UID_ANNOTATION: obs.uid} if obs.uid else None,
            remove_keys=[k for k in stored if k.endswith((".crt", ".key"))], holds_ca=True))
    trusted = {CLIENT_CA_KEY: client_bundle}
    if revoked:
        trusted[names.REVOKED_CLIENTS_KEY] = revoked
    writes.append(write_if_changed("ConfigMap", ns, names.client_ca(name), obs.client_ca, trusted,
                                   "proxy client CA", name, remove_keys=[names.REVOKED_CLIENTS_KEY]))
    for d in obs.ca_destinations:
        old = ((d.obj or {}).get("data") or {}).get(SERVING_CA_KEY)
        if old and not bundle_fingerprints(old):
            plan.event("Warning", "ReplacedInvalidData",
                       f"ConfigMap {d.namespace}/{d.name} key {SERVING_CA_KEY} was not a PEM bundle; replaced")
        writes.append(write_if_changed("ConfigMap", d.namespace, d.name, d.obj, {SERVING_CA_KEY: serving_bundle},
                                       d.where, name))
    if serving.data:
        writes.append(write_if_changed("Secret", ns, names.serving(name), obs.serving, serving.data,
                                       "proxy serving certificate", name, tls=True))
    for d, leaf in clients:
        if leaf.data:
            kind = (d.obj or {}).get("type") or "kubernetes.io/tls"
            if kind != "kubernetes.io/tls":  # said when we write into it, not on every reconcile
                plan.event("Warning", "DestinationNotTLS",
                           f"{d.where}: Secret {d.namespace}/{d.name} has type {kind}, not kubernetes.io/tls; "
                           "tls.crt and tls.key are delivered into it anyway (a Secret's type cannot change: "
                           "delete it to let the operator create a kubernetes.io/tls one)")
            writes.append(write_if_changed("Secret", d.namespace, d.name, d.obj, leaf.data, d.where, name, tls=True))
    plan.writes = [w for w in writes if w is not None]
    plan.certificates = describe(store, serving.cert, [(d, leaf.cert) for d, leaf in clients], settings, now)
    plan.certificates["caBundles"] = ca_bundles(obs)
    plan.due = next_due(store, [serving.cert] + [leaf.cert for _, leaf in clients], settings, now)
    return plan


def ca_bundles(obs: Observed) -> list[dict[str, str]]:
    """``status.certificates.caBundles``: the CA bundle destinations that hold our bundle — delivered by this
    run, or by an earlier one and still listed (one unusable for now keeps its record) — so that one that
    leaves the spec is given back."""
    held = {(d.namespace, d.name) for d in obs.ca_destinations}
    held |= {(str(old.get("namespace")), str(old.get("name"))) for old in obs.previous_cas
             if (old.get("namespace"), old.get("name")) in obs.listed_cas}
    return [{"namespace": ns, "name": n} for ns, n in sorted(held)]


def describe(store: Store, serving_cert: x509.Certificate | None,
             clients: list[tuple[Destination, x509.Certificate]], settings: Settings,
             now: datetime.datetime) -> dict[str, Any]:
    """``status.certificates``: expiry and renewal times, CA rotation state."""
    out: dict[str, Any] = {}
    for kind in KINDS:
        ca = store.cas[kind]
        if not ca.current:
            continue
        entry: dict[str, Any] = {"notAfter": rfc3339(ca.current.cert.not_valid_after_utc),
                                 "renewalTime": rfc3339(renewal_time(ca.current.cert))}
        if ca.next is not None:
            start = ca.next_created or now
            entry["rotation"] = {
                "phase": "Overlap",
                "overlapStart": rfc3339(start),
                "signingFrom": rfc3339(start + overlap_for(ca.current.cert, settings)),
                "nextNotAfter": rfc3339(ca.next.cert.not_valid_after_utc),
            }
        if ca.retired:
            entry["previousTrustedUntil"] = rfc3339(max(u for _, u in ca.retired))
        out[f"{kind}CA"] = entry
    if serving_cert is not None:
        out["serving"] = {"notAfter": rfc3339(serving_cert.not_valid_after_utc),
                          "renewalTime": rfc3339(renewal_time(serving_cert))}
    out["clients"] = [{"namespace": d.namespace, "name": d.name,
                       "notAfter": rfc3339(c.not_valid_after_utc), "renewalTime": rfc3339(renewal_time(c))}
                      for d, c in clients]
    return out
