"""X.509 primitives: chains verify with cryptography and with openssl."""

from __future__ import annotations

import datetime
import shutil
import subprocess

import pytest
from ansible_collections.etcdproxy.operator.plugins.module_utils.x509 import (
    CertSpec,
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
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime(2026, 11, 24, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


@pytest.mark.parametrize("kind", ["ecdsa", "rsa"])
def test_key_types(kind):
    key = new_private_key(kind)
    assert key_type_of(key) == kind
    assert isinstance(key, ec.EllipticCurvePrivateKey if kind == "ecdsa" else rsa.RSAPrivateKey)
    assert key_type_of(load_key(key_pem(key))) == kind


def test_unknown_key_type_is_refused():
    with pytest.raises(ValueError, match="unknown key type"):
        new_private_key("dsa")


def test_leaf_verifies_against_its_ca_and_carries_the_spec():
    ca_key = new_private_key()
    ca = make_ca(CertSpec(common_name="client-ca", usage="ca"), ca_key, NOW, 10 * DAY)
    key = new_private_key()
    spec = CertSpec(common_name="", organization="o", usage="server", dns_names=("etcd-a", "etcd-a.ns.svc"),
                    ip_addresses=("127.0.0.1",))
    leaf = make_leaf(spec, key.public_key(), ca, ca_key, NOW, DAY)
    leaf.verify_directly_issued_by(ca)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["etcd-a", "etcd-a.ns.svc"]
    assert not leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert leaf.not_valid_after_utc == NOW + DAY


def test_leaf_never_outlives_its_ca():
    ca_key = new_private_key()
    ca = make_ca(CertSpec(common_name="ca", usage="ca"), ca_key, NOW, DAY)
    leaf = make_leaf(CertSpec(common_name="x", usage="client"), new_private_key().public_key(), ca, ca_key,
                     NOW, 30 * DAY)
    assert leaf.not_valid_after_utc == ca.not_valid_after_utc


def test_load_certs_rejects_garbage_and_reads_bundles():
    key = new_private_key()
    a = make_ca(CertSpec(common_name="a", usage="ca"), key, NOW, DAY)
    b = make_ca(CertSpec(common_name="b", usage="ca"), key, NOW, DAY)
    assert len(load_certs(cert_pem(a) + cert_pem(b))) == 2
    with pytest.raises(ValueError):
        load_certs("not pem")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_verifies_the_chain(tmp_path):
    now = datetime.datetime.now(datetime.UTC)
    ca_key = new_private_key("rsa")
    ca = make_ca(CertSpec(common_name="ca", usage="ca"), ca_key, now, DAY)
    leaf = make_leaf(CertSpec(common_name="c", usage="client"), new_private_key().public_key(), ca, ca_key, now, DAY)
    (tmp_path / "ca.pem").write_text(cert_pem(ca))
    (tmp_path / "leaf.pem").write_text(cert_pem(leaf))
    out = subprocess.run(["openssl", "verify", "-purpose", "sslclient", "-CAfile", str(tmp_path / "ca.pem"),
                          str(tmp_path / "leaf.pem")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("OK")
