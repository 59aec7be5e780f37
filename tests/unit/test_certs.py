"""Renewal rules, staged CA rotation and the CA store, driven by a fake clock."""

from __future__ import annotations

import datetime
import shutil
import subprocess

import pytest
from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.decide import (
    ca_spec,
    client_spec,
    issue_leaf,
    leaf_renewal_reason,
    next_due,
    plan_ca,
    renewal_time,
    serving_spec,
)
from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.settings import Settings
from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.store import CAState, KeyPair, Store
from ansible_collections.etcdproxy.operator.plugins.module_utils.x509 import (
    CertSpec,
    bundle_hash,
    bundle_pem,
    cert_pem,
    fingerprint,
    key_pem,
    load_certs,
    make_ca,
    new_private_key,
    signed_by,
)

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
H = datetime.timedelta(hours=1)
SETTINGS = Settings(ca_validity=300 * H, serving_validity=30 * H, client_validity=30 * H, overlap=10 * H)


def fresh_ca(kind: str = "client", now: datetime.datetime = T0, settings: Settings = SETTINGS) -> CAState:
    ca = CAState()
    plan_ca(kind, ca, "t", settings, now, force_rotation=False, next_delivered=False)
    assert ca.current is not None
    return ca


def leaf_texts(spec: CertSpec, ca: CAState, now: datetime.datetime = T0, validity=30 * H, key_type="ecdsa"):
    cert, key = issue_leaf(spec, ca.current, validity, key_type, now)
    return cert_pem(cert), key_pem(key), cert


# ---- settings --------------------------------------------------------------------------------
def test_settings_from_spec_names_the_field():
    s = Settings.from_spec({"servingCertificateValidity": "48h", "keyAlgorithm": "RSA"},
                           {"etcd.etcdproxy.dev/rotate": "1"})
    assert s.serving_validity == 48 * H and s.key_type == "rsa" and s.rotate_token == "1"
    assert s.ca_validity == 8760 * H  # default
    with pytest.raises(ValueError, match=r"spec.clientCertificateValidity: 5m is shorter than 10m"):
        Settings.from_spec({"clientCertificateValidity": "5m"}, {})
    with pytest.raises(ValueError, match=r"spec.signingCertificateValidity"):
        Settings.from_spec({"signingCertificateValidity": "soon"}, {})
    with pytest.raises(ValueError, match=r"spec.keyAlgorithm"):
        Settings.from_spec({"keyAlgorithm": "DSA"}, {})


# ---- leaf renewal rules ------------------------------------------------------------------------
def test_fresh_leaf_needs_nothing_and_renews_at_two_thirds():
    ca = fresh_ca()
    spec = client_spec("t", "ns", "s")
    crt, key, cert = leaf_texts(spec, ca)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert renewal_time(cert) == cert.not_valid_before_utc + lifetime * 2 / 3

    def reason(now):
        return leaf_renewal_reason(crt, key, spec, ca.current, 30 * H, "ecdsa", now, False)

    assert reason(T0) is None
    assert reason(renewal_time(cert) - datetime.timedelta(seconds=1)) is None
    assert reason(renewal_time(cert)) == "reached 2/3 of its lifetime"


def test_leaf_renewal_reasons():
    ca = fresh_ca()
    spec = serving_spec("t", "ns")
    crt, key, _ = leaf_texts(spec, ca)

    def reason(**kw):
        args = dict(cert_text=crt, key_text=key, spec=spec, issuer=ca.current, validity=30 * H, key_type="ecdsa",
                    now=T0, forced=False)
        args.update(kw)
        return leaf_renewal_reason(**args)

    assert reason(cert_text=None) == "missing"
    assert reason(cert_text="garbage") == "unparsable"
    other_key = key_pem(issue_leaf(spec, ca.current, H, "ecdsa", T0)[1])
    assert reason(key_text=other_key) == "key does not match the certificate"
    assert reason(forced=True).startswith("renewal requested")
    assert reason(validity=2 * H) == "validity in the spec is now shorter than what the certificate has left"
    assert reason(spec=serving_spec("t", "other-ns")) == "names (SANs) do not match the spec"
    assert reason(spec=client_spec("t", "ns", "x")) == "subject does not match the spec"
    assert reason(key_type="rsa") == "key algorithm is not RSA"
    assert reason(issuer=fresh_ca().current) == "not signed by the current CA"


# ---- chains --------------------------------------------------------------------------------------
def test_chains_verify_with_cryptography():
    serving, client = fresh_ca("serving"), fresh_ca("client")
    _, _, s_leaf = leaf_texts(serving_spec("t", "ns"), serving)
    _, _, c_leaf = leaf_texts(client_spec("t", "ns", "s"), client)
    assert signed_by(s_leaf, serving.current.cert) and signed_by(c_leaf, client.current.cert)
    assert not signed_by(c_leaf, serving.current.cert)
    bundle = load_certs(bundle_pem(serving.trust()))
    assert any(signed_by(s_leaf, ca) for ca in bundle)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_chains_verify_with_openssl(tmp_path):
    now = datetime.datetime.now(datetime.UTC)
    serving = fresh_ca("serving", now)
    client = fresh_ca("client", now)
    serving.next = KeyPair(*_ca_pair(now))  # a bundle with two CAs
    files = {
        "serving-bundle.pem": bundle_pem(serving.trust()),
        "client-ca.pem": bundle_pem(client.trust()),
        "serving.pem": leaf_texts(serving_spec("t", "ns"), serving, now)[0],
        "client.pem": leaf_texts(client_spec("t", "ns", "s"), client, now)[0],
    }
    for fname, text in files.items():
        (tmp_path / fname).write_text(text)

    def verify(ca, leaf, purpose):
        return subprocess.run(["openssl", "verify", "-purpose", purpose, "-CAfile", str(tmp_path / ca),
                               str(tmp_path / leaf)], capture_output=True, text=True)

    assert verify("serving-bundle.pem", "serving.pem", "sslserver").returncode == 0
    assert verify("client-ca.pem", "client.pem", "sslclient").returncode == 0
    assert verify("client-ca.pem", "serving.pem", "sslserver").returncode != 0


def _ca_pair(now):
    ca = CAState()
    plan_ca("serving", ca, "t", SETTINGS, now, False, False)
    return ca.current.cert, ca.current.key


# ---- staged CA rotation ----------------------------------------------------------------------------
def test_ca_rotation_is_staged_publish_then_sign_then_retire():
    ca = fresh_ca()
    old = ca.current
    spec = client_spec("t", "ns", "s")

    # Before 2/3 of the CA lifetime nothing happens.
    assert not plan_ca("client", ca, "t", SETTINGS, T0 + 100 * H, False, False).changed
    # (1) at 2/3: a next CA joins the bundle, the old one still signs.
    t1 = T0 + 200 * H
    plan = plan_ca("client", ca, "t", SETTINGS, t1, False, False)
    assert plan.changed and ca.next is not None and ca.current is old
    assert {fingerprint(c) for c in ca.trust()} == {fingerprint(old.cert), fingerprint(ca.next.cert)}
    assert [e[1] for e in plan.events] == ["CARotationStarted"]
    # During the overlap, leaves are still signed by the old CA.
    _, _, old_leaf = leaf_texts(spec, ca, t1 + 5 * H)
    ca.note_issued(old_leaf)
    assert signed_by(old_leaf, old.cert)
    # (2) not promoted before the overlap has passed, nor before delivery.
    assert not plan_ca("client", ca, "t", SETTINGS, t1 + 5 * H, False, True).changed
    assert not plan_ca("client", ca, "t", SETTINGS, t1 + 11 * H, False, False).changed
    new = ca.next
    plan = plan_ca("client", ca, "t", SETTINGS, t1 + 11 * H, False, True)
    assert ca.current is new and ca.next is None
    assert [e[1] for e in plan.events] == ["CAPromoted"]
    # The old CA stays trusted until its last leaf expires, and both chains verify meanwhile.
    (retired, until), = ca.retired
    assert fingerprint(retired) == fingerprint(old.cert) and until == old_leaf.not_valid_after_utc
    _, _, new_leaf = leaf_texts(spec, ca, t1 + 11 * H)
    trusted = ca.trust()
    assert any(signed_by(old_leaf, c) for c in trusted) and any(signed_by(new_leaf, c) for c in trusted)
    # (3) once the old leaves have expired the old CA leaves the bundle.
    plan = plan_ca("client", ca, "t", SETTINGS, until + H, False, True)
    assert ca.retired == [] and "CARetired" in [e[1] for e in plan.events]
    assert {fingerprint(c) for c in ca.trust()} == {fingerprint(new.cert)}


def test_forced_rotation_and_key_algorithm_change_start_a_rotation():
    ca = fresh_ca()
    plan_ca("client", ca, "t", SETTINGS, T0 + H, True, False)
    assert ca.next is not None
    ca2 = fresh_ca()
    rsa = Settings(ca_validity=300 * H, serving_validity=30 * H, client_validity=30 * H, key_type="rsa", overlap=H)
    plan_ca("client", ca2, "t", rsa, T0 + H, False, False)
    assert ca2.next is not None


def test_shrunk_ca_validity_starts_a_rotation():
    ca = fresh_ca()
    shorter = Settings(ca_validity=100 * H, serving_validity=30 * H, client_validity=30 * H, overlap=H)
    plan_ca("client", ca, "t", shorter, T0 + H, False, False)
    assert ca.next is not None


def test_default_overlap_is_a_sixth_of_the_ca_lifetime():
    settings = Settings(ca_validity=600 * H, serving_validity=30 * H, client_validity=30 * H)
    ca = fresh_ca(settings=settings)
    plan_ca("client", ca, "t", settings, T0 + 1 * H, True, False)
    lifetime = ca.current.cert.not_valid_after_utc - ca.current.cert.not_valid_before_utc
    assert not plan_ca("client", ca, "t", settings, T0 + H + lifetime / 6 - H, False, True).changed
    assert plan_ca("client", ca, "t", settings, T0 + H + lifetime / 6, False, True).changed


# ---- store ---------------------------------------------------------------------------------------------
def test_store_round_trip_keeps_every_part():
    store = Store(rotate_token="a", rotate_ca_token="b", revoked={"etcdstorage:t:ns/gone": "2026-02-01T00:00:00Z"})
    for kind in ("serving", "client"):
        plan_ca(kind, store.cas[kind], "t", SETTINGS, T0, False, False)
    plan_ca("client", store.cas["client"], "t", SETTINGS, T0 + H, True, False)
    store.cas["serving"].retired.append((store.cas["serving"].current.cert, T0 + 5 * H))
    data = store.to_secret_data()
    assert all("PRIVATE KEY" not in v for k, v in data.items() if not k.endswith(".key"))
    back, problems = Store.from_secret_data(data)
    assert problems == []
    assert back.to_secret_data() == data and back.revoked == store.revoked


def test_store_with_garbage_reports_and_drops_it():
    store = Store()
    plan_ca("client", store.cas["client"], "t", SETTINGS, T0, False, False)
    data = store.to_secret_data()
    data["client-ca.key"] = "not a key"
    back, problems = Store.from_secret_data(data)
    assert back.cas["client"].current is None and problems and "client-ca" in problems[0]


def test_bundle_pem_is_deterministic_and_deduplicated():
    ca, other = fresh_ca(), fresh_ca(now=T0 + H)
    a = bundle_pem([other.current.cert, ca.current.cert, ca.current.cert])
    b = bundle_pem([ca.current.cert, other.current.cert])
    assert a == b and len(load_certs(a)) == 2 and bundle_hash(a) == bundle_hash(b)


def test_next_due_is_the_earliest_future_event():
    ca_store = Store()
    plan_ca("client", ca_store.cas["client"], "t", SETTINGS, T0, False, False)
    plan_ca("serving", ca_store.cas["serving"], "t", SETTINGS, T0, False, False)
    _, _, leaf = leaf_texts(client_spec("t", "n", "s"), ca_store.cas["client"])
    assert next_due(ca_store, [leaf], SETTINGS, T0) == renewal_time(leaf)
    assert next_due(ca_store, [], SETTINGS, T0) == renewal_time(ca_store.cas["client"].current.cert)


def test_common_names_fit_x509_at_the_crds_longest_inputs():
    """Names up to 58 characters, destination names up to 253 and namespaces up to 63 pass admission."""
    name, ns, secret = "n" * 58, "s" * 63, "d" * 253
    specs = [ca_spec(name, "serving"), ca_spec(name, "client"), client_spec(name, ns, secret),
             serving_spec(name, ns)]
    for spec in specs:
        assert len(spec.common_name) <= 64, spec.common_name
    # Issuable, and still distinct per destination.
    now = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)
    key = new_private_key()
    make_ca(ca_spec(name, "client"), key, now, datetime.timedelta(days=1))
    assert client_spec(name, ns, secret + "x").common_name != client_spec(name, ns, secret).common_name
    # Short ones are left as they are (no re-issue of existing certificates).
    assert client_spec("t", "ns", "s").common_name == "etcdstorage:t:ns/s"
