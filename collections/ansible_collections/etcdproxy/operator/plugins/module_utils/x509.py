"""X.509 primitives for etcdproxy-operator, on the ``cryptography`` library.

Plain Python, no Ansible imports: the modules of this collection and the
local control-plane harness in ``localcp`` both use it.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
KEY_TYPES = ("ecdsa", "rsa")
# Backdate notBefore a little so peers with a slightly slow clock accept a fresh cert.
CLOCK_SKEW = datetime.timedelta(minutes=5)


def new_private_key(key_type: str = "ecdsa") -> PrivateKey:
    """ECDSA P-256 (default) or RSA-2048."""
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key type {key_type!r}; use one of {', '.join(KEY_TYPES)}")


def key_type_of(key: PrivateKey) -> str:
    return "rsa" if isinstance(key, rsa.RSAPrivateKey) else "ecdsa"


@dataclass(frozen=True)
class CertSpec:
    """What a certificate must say. ``common_name`` may be empty (no CN at all)."""

    common_name: str = ""
    organization: str = ""
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    # "ca", "server", "client" or "peer" (server and client)
    usage: str = "server"
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def subject(self) -> x509.Name:
        attrs = []
        if self.organization:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization))
        if self.common_name:
            attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, self.common_name))
        return x509.Name(attrs)


def _builder(spec: CertSpec, public_key, issuer: x509.Name, not_before: datetime.datetime,
             not_after: datetime.datetime) -> x509.CertificateBuilder:
    builder = (
        x509.CertificateBuilder()
        .subject_name(spec.subject())
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if spec.usage == "ca":
        return builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    ekus = {
        "server": [ExtendedKeyUsageOID.SERVER_AUTH],
        "client": [ExtendedKeyUsageOID.CLIENT_AUTH],
        "peer": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    }[spec.usage]
    rsa_key = isinstance(public_key, rsa.RSAPublicKey)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=rsa_key,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False,
        ),
        critical=True,
    ).add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in spec.dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in spec.ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder


def _window(now: datetime.datetime, validity: datetime.timedelta) -> tuple[datetime.datetime, datetime.datetime]:
    return now - CLOCK_SKEW, now + validity


def make_ca(spec: CertSpec, key: PrivateKey, now: datetime.datetime,
            validity: datetime.timedelta) -> x509.Certificate:
    """A self-signed CA certificate for ``key``."""
    if spec.usage != "ca":
        raise ValueError("make_ca needs a spec with usage='ca'")
    not_before, not_after = _window(now, validity)
    builder = _builder(spec, key.public_key(), spec.subject(), not_before, not_after)
    return builder.sign(key, hashes.SHA256())


def make_leaf(spec: CertSpec, public_key, ca_cert: x509.Certificate, ca_key: PrivateKey,
              now: datetime.datetime, validity: datetime.timedelta) -> x509.Certificate:
    """A leaf signed by ``ca_cert``/``ca_key``; never outlives its CA."""
    not_before, not_after = _window(now, validity)
    not_after = min(not_after, ca_cert.not_valid_after_utc)
    builder = _builder(spec, public_key, ca_cert.subject, not_before, not_after).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
    )
    return builder.sign(ca_key, hashes.SHA256())


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def load_certs(pem: str) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle; raises ValueError on garbage."""
    certs = x509.load_pem_x509_certificates(pem.encode())
    if not certs:
        raise ValueError("no certificate in PEM data")
    return certs


def load_key(pem: str) -> PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError("unsupported private key type")
    return key


# ---- comparing and bundling certificates --------------------------------------------------
def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()[:32]


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
