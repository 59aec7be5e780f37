"""Certificate decisions for one EtcdStorage: issuance, renewal and staged CA rotation.

Plain Python on ``cryptography`` (through etcdproxy_pki), no Ansible, no Kubernetes
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
import json
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.etcdproxy_pki import (
    CertSpec,
    PrivateKey,
    cert_pem,
    key_pem,
    key_type_of,
    load_certs,
    load_key,
    make_ca,
    make_leaf,
    new_private_key,
)
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

KINDS = ("serving", "client")
RENEW_AT = 2 / 3  # of a certificate's lifetime (cert-manager's rule)
MIN_VALIDITY = datetime.timedelta(minutes=10)
# A CA is renewed at two thirds of its life and every renewal rolls the proxy (the CRD holds this too).
MIN_CA_VALIDITY = datetime.timedelta(hours=24)


# ---------------------------------------------------------------------------------------------
# Durations and small helpers
# ---------------------------------------------------------------------------------------------
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_go_duration(text: str) -> datetime.timedelta:
    """A Go duration such as ``730h``, ``1h30m`` or ``90s``; ValueError otherwise."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    total, i = 0.0, 0
    while i < len(s):
        j = i
        while j < len(s) and (s[j].isdigit() or s[j] == "."):
            j += 1
        if j == i:
            raise ValueError(f"invalid duration {text!r}")
        number = float(s[i:j])
        for unit in ("ns", "us", "µs", "ms", "s", "m", "h"):
            if s.startswith(unit, j) and not (unit == "m" and s.startswith("ms", j)):
                total += number * _UNITS[unit]
                i = j + len(unit)
                break
        else:
            raise ValueError(f"invalid duration {text!r}: missing unit")
    return datetime.timedelta(seconds=total)


def iso(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()[:32]


def renewal_time(cert: x509.Certificate) -> datetime.datetime:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start + (end - start) * RENEW_AT


def bundle_pem(certs: list[x509.Certificate]) -> str:
    """Deterministic PEM bundle: oldest first, no duplicates."""
    seen, out = set(), []
    for cert in sorted(certs, key=lambda c: (c.not_valid_before_utc, fingerprint(c))):
        fp = fingerprint(cert)
        if fp not in seen:
            seen.add(fp)
            out.append(cert_pem(cert))
    return "".join(out)


def bundle_hash(pem: str) -> str:
    return hashlib.sha256(pem.encode()).hexdigest()[:16]


def public_key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


# ---------------------------------------------------------------------------------------------
# Settings from the spec
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    ca_validity: datetime.timedelta
    serving_validity: datetime.timedelta
    client_validity: datetime.timedelta
    key_type: str = "ecdsa"
    # Least time between publishing a next CA and signing with it. None: a sixth of
    # the CA's lifetime (half of the last third).
    overlap: datetime.timedelta | None = None
    rotate_token: str = ""
    rotate_ca_token: str = ""

    @classmethod
    def from_spec(cls, spec: dict[str, Any], annotations: dict[str, str],
                  overlap: datetime.timedelta | None = None) -> Settings:
        def validity(field_name: str, default: str) -> datetime.timedelta:
            raw = spec.get(field_name) or default
            try:
                value = parse_go_duration(str(raw))
            except ValueError as exc:
                raise ValueError(f"spec.{field_name}: {exc}; use a Go duration such as 730h") from exc
            least, text = ((MIN_CA_VALIDITY, "24h") if field_name == "signingCertificateValidity"
                           else (MIN_VALIDITY, "10m"))
            if value < least:
                raise ValueError(f"spec.{field_name}: {raw} is shorter than {text}")
            return value

        algo = str(spec.get("keyAlgorithm") or "ECDSA").lower()
        if algo not in ("ecdsa", "rsa"):
            raise ValueError(f"spec.keyAlgorithm: {spec.get('keyAlgorithm')!r} must be ECDSA or RSA")
        return cls(
            ca_validity=validity("signingCertificateValidity", "8760h"),
            serving_validity=validity("servingCertificateValidity", "2160h"),
            client_validity=validity("clientCertificateValidity", "2160h"),
            key_type=algo,
            overlap=overlap,
            rotate_token=annotations.get("etcd.etcdproxy.dev/rotate", ""),
            rotate_ca_token=annotations.get("etcd.etcdproxy.dev/rotate-ca", ""),
        )


# ---------------------------------------------------------------------------------------------
# CA state, kept in the Secret etcd-<name>-ca of the operator namespace
# ---------------------------------------------------------------------------------------------
@dataclass
class KeyPair:
    cert: x509.Certificate
    key: PrivateKey


@dataclass
class CAState:
    current: KeyPair | None = None
    next: KeyPair | None = None
    next_created: datetime.datetime | None = None
    # Old CAs still trusted, with the time their last leaf expires.
    retired: list[tuple[x509.Certificate, datetime.datetime]] = field(default_factory=list)
    # Latest notAfter of the leaves each CA (by fingerprint) signed.
    issued_until: dict[str, datetime.datetime] = field(default_factory=dict)

    def trust(self) -> list[x509.Certificate]:
        certs = [c for c, _ in self.retired]
        certs += [kp.cert for kp in (self.current, self.next) if kp]
        return certs

    def note_issued(self, leaf: x509.Certificate) -> None:
        assert self.current is not None
        fp = fingerprint(self.current.cert)
        end = leaf.not_valid_after_utc
        if fp not in self.issued_until or self.issued_until[fp] < end:
            self.issued_until[fp] = end


@dataclass
class Store:
    """Everything in the CA Secret."""

    cas: dict[str, CAState] = field(default_factory=lambda: {k: CAState() for k in KINDS})
    rotate_token: str = ""
    rotate_ca_token: str = ""

    def to_secret_data(self) -> dict[str, str]:
        data: dict[str, str] = {}
        state: dict[str, Any] = {"version": 1, "rotate": self.rotate_token, "rotateCA": self.rotate_ca_token}
        for kind, ca in self.cas.items():
            for slot, kp in (("", ca.current), ("-next", ca.next)):
                if kp:
                    data[f"{kind}-ca{slot}.crt"] = cert_pem(kp.cert)
                    data[f"{kind}-ca{slot}.key"] = key_pem(kp.key)
            state[kind] = {
                "nextCreated": iso(ca.next_created) if ca.next_created else None,
                "retired": [{"cert": cert_pem(c), "until": iso(u)} for c, u in ca.retired],
                "issuedUntil": {fp: iso(t) for fp, t in sorted(ca.issued_until.items())},
            }
        data["state.json"] = json.dumps(state, sort_keys=True, indent=1)
        return data

    @classmethod
    def from_secret_data(cls, data: dict[str, str]) -> tuple[Store, list[str]]:
        """The store and the problems found (unreadable parts are dropped, and re-created)."""
        problems: list[str] = []
        store = cls()
        try:
            state = json.loads(data.get("state.json") or "{}")
        except ValueError:
            state, _ = {}, problems.append("state.json is not JSON")
        store.rotate_token = str(state.get("rotate") or "")
        store.rotate_ca_token = str(state.get("rotateCA") or "")
        for kind in KINDS:
            ca = store.cas[kind]
            for slot in ("", "-next"):
                crt, key = data.get(f"{kind}-ca{slot}.crt"), data.get(f"{kind}-ca{slot}.key")
                if not crt and not key:
                    continue
                try:
                    pair = KeyPair(load_certs(crt or "")[0], load_key(key or ""))
                    if not public_key_matches(pair.cert, pair.key):
                        raise ValueError("key does not match certificate")
                except ValueError as exc:
                    problems.append(f"{kind}-ca{slot}: {exc}")
                    continue
                if slot:
                    ca.next = pair
                else:
                    ca.current = pair
            kstate = state.get(kind) or {}
            if ca.next is not None:
                created = kstate.get("nextCreated")
                ca.next_created = parse_iso(created) if created else ca.next.cert.not_valid_before_utc
            for item in kstate.get("retired") or []:
                try:
                    ca.retired.append((load_certs(item["cert"])[0], parse_iso(item["until"])))
                except (KeyError, ValueError) as exc:
                    problems.append(f"{kind} retired CA: {exc}")
            for fp, t in (kstate.get("issuedUntil") or {}).items():
                ca.issued_until[fp] = parse_iso(t)
        return store, problems


# ---------------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------------
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
        return "rotation requested by annotation etcd.etcdproxy.dev/rotate-ca"
    if now >= renewal_time(ca):
        return f"CA reached 2/3 of its lifetime ({iso(renewal_time(ca))})"
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
                                f"new {kind} CA now signs certificates; the old one stays trusted until {iso(until)}"))
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
                            f"certificates from {iso(due)}"))
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
        return "renewal requested by annotation etcd.etcdproxy.dev/rotate"
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
    svc = f"etcd-{name}"
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
