"""The CA store: both CAs of an EtcdStorage (current, next, retired) and its rotation tokens, as kept
in the Secret etcd-<name>-ca of the operator namespace (format version 1)."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils.times import parse_rfc3339, rfc3339
from ansible_collections.etcdproxy.operator.plugins.module_utils.x509 import (
    PrivateKey,
    cert_pem,
    fingerprint,
    key_pem,
    load_certs,
    load_key,
    public_key_matches,
)
from cryptography import x509

KINDS = ("serving", "client")


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
    # Revoked client certificate names (destinations that left the spec) and the notAfter of the last
    # certificate each was issued. Kept here, beside the CA that signed them, rather than only in the
    # ConfigMap the proxy reads: a ConfigMap deleted or edited by hand must not lift a revocation, and a
    # lost store means a new client CA, which no revoked certificate chains to.
    revoked: dict[str, str] = field(default_factory=dict)
    # Client destinations ("<namespace>/<name>") and the notAfter of the last certificate issued to each,
    # saved with the CA before the certificate is delivered: a destination that leaves the spec is revoked
    # even if the run that delivered to it ended before writing the status that lists it.
    issued: dict[str, str] = field(default_factory=dict)

    def to_secret_data(self) -> dict[str, str]:
        data: dict[str, str] = {}
        state: dict[str, Any] = {"version": 1, "rotate": self.rotate_token, "rotateCA": self.rotate_ca_token}
        if self.revoked:
            state["revokedClients"] = dict(sorted(self.revoked.items()))
        if self.issued:
            state["issuedClients"] = dict(sorted(self.issued.items()))
        for kind, ca in self.cas.items():
            for slot, kp in (("", ca.current), ("-next", ca.next)):
                if kp:
                    data[f"{kind}-ca{slot}.crt"] = cert_pem(kp.cert)
                    data[f"{kind}-ca{slot}.key"] = key_pem(kp.key)
            state[kind] = {
                "nextCreated": rfc3339(ca.next_created) if ca.next_created else None,
                "retired": [{"cert": cert_pem(c), "until": rfc3339(u)} for c, u in ca.retired],
                "issuedUntil": {fp: rfc3339(t) for fp, t in sorted(ca.issued_until.items())},
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
        for key, attr in (("revokedClients", "revoked"), ("issuedClients", "issued")):
            entries = state.get(key) or {}
            if isinstance(entries, dict):
                setattr(store, attr, {str(k): str(v) for k, v in entries.items()})
            else:
                problems.append(f"state.json {key} is not a map")
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
                ca.next_created = parse_rfc3339(created) if created else ca.next.cert.not_valid_before_utc
            for item in kstate.get("retired") or []:
                try:
                    ca.retired.append((load_certs(item["cert"])[0], parse_rfc3339(item["until"])))
                except (KeyError, ValueError) as exc:
                    problems.append(f"{kind} retired CA: {exc}")
            for fp, t in (kstate.get("issuedUntil") or {}).items():
                ca.issued_until[fp] = parse_rfc3339(t)
        return store, problems
