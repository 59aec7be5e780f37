"""Certificate decisions for one EtcdStorage: issuance, renewal and staged CA rotation.

Plain Python on ``cryptography`` (through x509.py), no Ansible, no Kubernetes
client; every function takes ``now`` so tests drive the clock.

Two CAs per EtcdStorage, each with the same life cycle (see docs/certificates.md):

* ``serving``: signs the proxy's serving certificate; its trust bundle goes to the
  API servers' ConfigMaps (key ``serving-ca.crt``).
* ``client``: signs the API servers' client certificates; its trust bundle is what
  the proxy trusts (``--trusted-ca-file``).

A CA is replaced in three steps, so no peer ever meets a certificate it does not
trust: (1) a *next* CA is created and appended to the trust bundle; (2) on a later
reconcile, once every bundle carries it (and, for the client CA, the proxy has
restarted with it) and the overlap period has passed, it becomes the signing CA and
leaves are re-issued; (3) the old CA leaves the bundle once every leaf it signed
has expired.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass, field

from ansible_collections.etcdproxy.operator.plugins.module_utils import names
from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.settings import (
    Settings,
)
from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.store import CAState, KeyPair, Store
from ansible_collections.etcdproxy.operator.plugins.module_utils.times import rfc3339
from ansible_collections.etcdproxy.operator.plugins.module_utils.x509 import (
    CertSpec,
    PrivateKey,
    fingerprint,
    key_type_of,
    load_certs,
    load_key,
    make_ca,
    make_leaf,
    new_private_key,
    public_key_matches,
    signed_by,
)
from cryptography import x509
from cryptography.x509.oid import NameOID

RENEW_AT = 2 / 3  # of a certificate's lifetime (cert-manager's rule)


def renewal_time(cert: x509.Certificate) -> datetime.datetime:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start + (end - start) * RENEW_AT


# X.509 (RFC 5280 ub-common-name) allows at most 64 characters in a Common Name.
MAX_COMMON_NAME = 64


def fit_common_name(text: str) -> str:
    """``text`` if it fits a Common Name, else its start and a hash of the whole (still unique, stable)."""
    if len(text) <= MAX_COMMON_NAME:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{text[:MAX_COMMON_NAME - len(digest) - 1]}~{digest}"


def ca_spec(name: str, kind: str) -> CertSpec:
    return CertSpec(common_name=fit_common_name(f"etcdproxy {kind} CA for {name}"), organization="etcdproxy-operator",
                    usage="ca")


def ca_rotation_reason(ca: x509.Certificate, key: PrivateKey, settings: Settings, now: datetime.datetime,
                       forced: bool) -> str | None:
    """Why a signing CA must be succeeded by a next CA (or None)."""
    if forced:
        return f"rotation requested by annotation {names.ROTATE_CA_ANNOTATION}"
    if now >= renewal_time(ca):
        return f"CA reached 2/3 of its lifetime ({rfc3339(renewal_time(ca))})"
    if ca.not_valid_after_utc - now > settings.ca_validity + datetime.timedelta(minutes=1):
        return "spec.signingCertificateValidity is now shorter than what the CA has left"
    if key_type_of(key) != settings.key_type:
        return f"spec.keyAlgorithm changed to {settings.key_type.upper()}"
    return None


def overlap_for(ca: x509.Certificate, settings: Settings) -> datetime.timedelta:
    if settings.overlap is not None:
        return settings.overlap
    return (ca.not_valid_after_utc - ca.not_valid_before_utc) / 6


@dataclass
class CAPlan:
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    changed: bool = False


def plan_ca(kind: str, ca: CAState, name: str, settings: Settings, now: datetime.datetime,
            force_rotation: bool, next_delivered: bool) -> CAPlan:
    """Advance one CA's life cycle in place. ``next_delivered``: every consumer already trusts ``ca.next``."""
    plan = CAPlan()
    # (3) drop retired CAs whose leaves have all expired
    keep = [(c, until) for c, until in ca.retired if until > now]
    if len(keep) != len(ca.retired):
        ca.retired = keep
        plan.changed = True
        plan.events.append(("Normal", "CARetired", f"old {kind} CA removed from the trust bundle"))
    if ca.current is None:
        if ca.next is not None:  # a crash between steps: promote what we had
            ca.current, ca.next, ca.next_created = ca.next, None, None
        else:
            key = new_private_key(settings.key_type)
            ca.current = KeyPair(make_ca(ca_spec(name, kind), key, now, settings.ca_validity), key)
            plan.events.append(("Normal", "CAIssued", f"{kind} CA issued"))
        plan.changed = True
        return plan
    # (2) promote the next CA once it is delivered and the overlap has passed
    if ca.next is not None:
        due = (ca.next_created or now) + overlap_for(ca.current.cert, settings)
        if next_delivered and now >= due:
            old = ca.current
            until = ca.issued_until.get(fingerprint(old.cert), old.cert.not_valid_after_utc)
            until = min(until, old.cert.not_valid_after_utc)
            if until > now:
                ca.retired.append((old.cert, until))
            ca.issued_until.pop(fingerprint(old.cert), None)
            ca.current, ca.next, ca.next_created = ca.next, None, None
            plan.changed = True
            plan.events.append(("Normal", "CAPromoted",
                                f"new {kind} CA now signs certificates; the old one stays trusted until "
                                f"{rfc3339(until)}"))
        return plan
    # (1) start a rotation: create the next CA and publish it in the bundles only
    reason = ca_rotation_reason(ca.current.cert, ca.current.key, settings, now, force_rotation)
    if reason:
        key = new_private_key(settings.key_type)
        ca.next = KeyPair(make_ca(ca_spec(name, kind), key, now, settings.ca_validity), key)
        ca.next_created = now
        plan.changed = True
        due = now + overlap_for(ca.current.cert, settings)
        plan.events.append(("Normal", "CARotationStarted",
                            f"{kind} CA rotation: new CA added to the trust bundle ({reason}); it will sign "
                            f"certificates from {rfc3339(due)}"))
    return plan


def leaf_renewal_reason(cert_text: str | None, key_text: str | None, spec: CertSpec, issuer: KeyPair,
                        validity: datetime.timedelta, key_type: str, now: datetime.datetime,
                        forced: bool) -> str | None:
    """Why a delivered leaf must be re-issued, or None when it is fine."""
    if not cert_text or not key_text:
        return "missing"
    try:
        cert = load_certs(cert_text)[0]
        key = load_key(key_text)
    except ValueError:
        return "unparsable"
    if not public_key_matches(cert, key):
        return "key does not match the certificate"
    if forced:
        return f"renewal requested by annotation {names.ROTATE_ANNOTATION}"
    if not signed_by(cert, issuer.cert):
        return "not signed by the current CA"
    if now >= renewal_time(cert):
        return "reached 2/3 of its lifetime"
    if now >= cert.not_valid_after_utc:
        return "expired"
    if cert.not_valid_after_utc - now > validity + datetime.timedelta(minutes=1):
        return "validity in the spec is now shorter than what the certificate has left"
    if cert.subject != spec.subject():
        return "subject does not match the spec"
    if _sans(cert) != (sorted(spec.dns_names), sorted(spec.ip_addresses)):
        return "names (SANs) do not match the spec"
    if key_type_of(key) != key_type:
        return f"key algorithm is not {key_type.upper()}"
    return None


def _sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return sorted(ext.get_values_for_type(x509.DNSName)), sorted(str(i) for i in ext.get_values_for_type(
        x509.IPAddress))


def issue_leaf(spec: CertSpec, issuer: KeyPair, validity: datetime.timedelta, key_type: str,
               now: datetime.datetime) -> tuple[x509.Certificate, PrivateKey]:
    key = new_private_key(key_type)
    return make_leaf(spec, key.public_key(), issuer.cert, issuer.key, now, validity), key


def serving_spec(name: str, namespace: str) -> CertSpec:
    svc = names.proxy(name)
    return CertSpec(
        common_name=svc, organization="etcdproxy-operator", usage="server",
        dns_names=(svc, f"{svc}.{namespace}", f"{svc}.{namespace}.svc", f"{svc}.{namespace}.svc.cluster.local",
                   "localhost"),
        ip_addresses=("127.0.0.1",),
    )


def client_spec(name: str, dest_namespace: str, dest_name: str) -> CertSpec:
    return CertSpec(common_name=fit_common_name(f"etcdstorage:{name}:{dest_namespace}/{dest_name}"),
                    organization="etcdproxy-client", usage="client")


def common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def next_due(store: Store, leaves: list[x509.Certificate], settings: Settings,
             now: datetime.datetime) -> datetime.datetime | None:
    """The earliest moment a later reconcile has something to do (renewal, promotion, retirement)."""
    times: list[datetime.datetime] = [renewal_time(c) for c in leaves]
    for ca in store.cas.values():
        if ca.current:
            times.append(renewal_time(ca.current.cert))
            if ca.next is not None:
                times.append((ca.next_created or now) + overlap_for(ca.current.cert, settings))
        times += [until for _, until in ca.retired]
    future = [t for t in times if t > now]
    return min(future) if future else None
