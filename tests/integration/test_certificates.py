"""Certificate issuance, delivery and rotation against the real control plane and ansible-operator."""

from __future__ import annotations

import base64
import time

from ansible_collections.etcdproxy.operator.plugins.module_utils import names
from ansible_collections.etcdproxy.operator.plugins.module_utils.x509 import (
    bundle_hash,
    fingerprint,
    load_certs,
    signed_by,
)
from cryptography import x509
from kubernetes import client
from kubernetes.client.rest import ApiException

from localcp.admin import OPERATOR_NAMESPACE, ensure_namespace
from localcp.config import OPERATOR_USER

from .conftest import audit_writes

HASH = "etcd.etcdproxy.dev/client-ca-hash"


def dests(ns: str, *names: str) -> list[dict[str, str]]:
    return [{"name": n, "namespace": ns} for n in names]


class Material:
    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)

    def cm(self, ns: str, name: str) -> dict | None:
        try:
            return self.core.read_namespaced_config_map(name, ns).to_dict()
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def secret(self, ns: str, name: str) -> dict | None:
        try:
            obj = self.core.read_namespaced_secret(name, ns).to_dict()
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        obj["text"] = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        return obj

    def bundle(self, ns: str, name: str, key: str) -> list[x509.Certificate]:
        return load_certs(((self.cm(ns, name) or {}).get("data") or {})[key])

    def leaf(self, ns: str, name: str) -> x509.Certificate:
        return load_certs(self.secret(ns, name)["text"]["tls.crt"])[0]

    def client_ca_bundle(self, es: str) -> list[x509.Certificate]:
        return self.bundle(OPERATOR_NAMESPACE, f"etcd-{es}-client-ca", "ca.crt")

    def serving_leaf(self, es: str) -> x509.Certificate:
        return self.leaf(OPERATOR_NAMESPACE, f"etcd-{es}-serving")


def verifies(leaf: x509.Certificate, bundle: list[x509.Certificate]) -> bool:
    return any(signed_by(leaf, ca) for ca in bundle)


def fps(certs: list[x509.Certificate]) -> set[str]:
    return {fingerprint(c) for c in certs}


def test_material_is_delivered_everywhere_and_verifies(storages, api):
    m = Material(api)
    name = storages.unique("pki")
    ns1, ns2 = f"{name}-a", f"{name}-b"
    spec = {"replicas": 1, "caCertConfigMap": dests(ns1, "serving-ca") + dests(ns2, "serving-ca"),
            "clientCertSecret": dests(ns1, "client") + dests(ns2, "client")}
    storages.create(name, spec)
    storages.wait_condition(name, "Ready", "True")
    assert storages.condition(name, "CertificatesReady")["status"] == "True"

    serving = m.serving_leaf(name)
    san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    svc = f"etcd-{name}"
    assert set(san.get_values_for_type(x509.DNSName)) == {
        svc, f"{svc}.{OPERATOR_NAMESPACE}", f"{svc}.{OPERATOR_NAMESPACE}.svc",
        f"{svc}.{OPERATOR_NAMESPACE}.svc.cluster.local", "localhost"}
    client_bundle = m.client_ca_bundle(name)
    for ns in (ns1, ns2):
        assert verifies(serving, m.bundle(ns, "serving-ca", "serving-ca.crt"))
        secret = m.secret(ns, "client")
        assert secret["type"] == "kubernetes.io/tls"
        assert "PRIVATE KEY" in secret["text"]["tls.key"]
        leaf = load_certs(secret["text"]["tls.crt"])[0]
        assert verifies(leaf, client_bundle)
        assert not verifies(leaf, m.bundle(ns, "serving-ca", "serving-ca.crt"))
    # CA keys stay in the operator namespace; the proxy restarts only for its trusted bundle.
    ca_secret = m.secret(OPERATOR_NAMESPACE, f"etcd-{name}-ca")
    assert {"serving-ca.key", "client-ca.key"} <= set(ca_secret["text"])
    for ns in (ns1, ns2):
        assert "PRIVATE KEY" not in str((m.cm(ns, "serving-ca") or {}).get("data"))
    dep = storages.deployment(name)
    bundle_text = m.cm(OPERATOR_NAMESPACE, f"etcd-{name}-client-ca")["data"]["ca.crt"]
    assert dep["spec"]["template"]["metadata"]["annotations"][HASH] == bundle_hash(bundle_text)
    # Status publishes every certificate's lifetime.
    certs = storages.get(name)["status"]["certificates"]
    assert {c["namespace"] for c in certs["clients"]} == {ns1, ns2}
    assert certs["serving"]["renewalTime"] < certs["serving"]["notAfter"]
    assert "servingCA" in certs and "clientCA" in certs


def test_foreign_keys_kept_and_garbage_replaced_with_a_warning(storages, api):
    m = Material(api)
    name = storages.unique("merge")
    ns = f"{name}-ns"
    ensure_namespace(api, ns)
    m.core.create_namespaced_config_map(ns, {"metadata": {"name": "ca"},
                                             "data": {"other": "keep me", "serving-ca.crt": "garbage"}})
    m.core.create_namespaced_secret(ns, {"metadata": {"name": "cert"}, "type": "kubernetes.io/tls",
                                         "data": {"tls.crt": base64.b64encode(b"junk").decode(),
                                                  "tls.key": base64.b64encode(b"junk").decode(),
                                                  "extra": base64.b64encode(b"mine").decode()}})
    storages.create(name, {"replicas": 1, "caCertConfigMap": dests(ns, "ca"), "clientCertSecret": dests(ns, "cert")})
    storages.wait_condition(name, "Ready", "True")
    cm, secret = m.cm(ns, "ca"), m.secret(ns, "cert")
    assert cm["data"]["other"] == "keep me"
    assert secret["text"]["extra"] == "mine"
    assert verifies(m.serving_leaf(name), load_certs(cm["data"]["serving-ca.crt"]))
    assert verifies(load_certs(secret["text"]["tls.crt"])[0], m.client_ca_bundle(name))
    warnings = [e.message for e in storages.events(name, "ReplacedInvalidData") if e.type == "Warning"]
    assert any(f"ConfigMap {ns}/ca" in w for w in warnings), warnings
    assert any("spec.clientCertSecret[0]" in w for w in warnings), warnings


def test_unchanged_etcdstorage_with_destinations_reconciles_without_writes(storages, cp):
    name = storages.unique("quiet")
    ns = f"{name}-ns"
    storages.create(name, {"replicas": 1, "caCertConfigMap": dests(ns, "ca"), "clientCertSecret": dests(ns, "c")})
    storages.wait_condition(name, "Ready", "True")
    storages.wait("proxy settled", lambda: storages.condition(name, "ProxyAvailable")["reason"]
                  == "MinimumReplicasAvailable")
    storages.patch(name, {"metadata": {"annotations": {"ansible.sdk.operatorframework.io/reconcile-period": "1s"}}})
    first = storages.reconciles(name)
    storages.wait("a reconcile after the annotation", lambda: storages.reconciles(name) >= first + 1)
    since, before = time.time(), storages.reconciles(name)
    storages.wait("three more reconciles", lambda: storages.reconciles(name) >= before + 3)
    writes = [f"{w['verb']} {w['requestURI']}" for w in audit_writes(cp.audit_log, OPERATOR_USER, since)
              if name in w.get("requestURI", "") or ns in w.get("requestURI", "")
              or name in str(w.get("objectRef", {}))]
    assert writes == []


def test_rotate_annotation_renews_leaves_and_both_chains_verify(storages, api):
    m = Material(api)
    name = storages.unique("rot")
    ns = f"{name}-ns"
    storages.create(name, {"replicas": 1, "caCertConfigMap": dests(ns, "ca"), "clientCertSecret": dests(ns, "c")})
    storages.wait_condition(name, "Ready", "True")
    old_serving, old_client = m.serving_leaf(name), m.leaf(ns, "c")
    old_hash = storages.deployment(name)["spec"]["template"]["metadata"]["annotations"][HASH]
    storages.patch(name, {"metadata": {"annotations": {"etcd.etcdproxy.dev/rotate": "2026-11-24"}}})
    storages.wait("leaves renewed", lambda: m.leaf(ns, "c").serial_number != old_client.serial_number
                  and m.serving_leaf(name).serial_number != old_serving.serial_number)
    new_client = m.leaf(ns, "c")
    for leaf in (old_client, new_client):
        assert verifies(leaf, m.client_ca_bundle(name))
    for leaf in (old_serving, m.serving_leaf(name)):
        assert verifies(leaf, m.bundle(ns, "ca", "serving-ca.crt"))
    # Same CAs: the proxy is not restarted for a leaf renewal.
    assert storages.deployment(name)["spec"]["template"]["metadata"]["annotations"][HASH] == old_hash
    # The annotation is handled once, not on every reconcile.
    serial = new_client.serial_number
    storages.patch(name, {"metadata": {"annotations": {"ansible.sdk.operatorframework.io/reconcile-period": "1s"}}})
    before = storages.reconciles(name)
    storages.wait("two more reconciles", lambda: storages.reconciles(name) >= before + 2)
    assert m.leaf(ns, "c").serial_number == serial


def test_rotate_ca_annotation_runs_the_staged_rotation(storages, api):
    m = Material(api)
    name = storages.unique("carot")
    ns = f"{name}-ns"
    storages.create(name, {"replicas": 1, "caCertConfigMap": dests(ns, "ca"), "clientCertSecret": dests(ns, "c")})
    storages.wait_condition(name, "Ready", "True")
    old_client_cas, old_serving_cas = fps(m.client_ca_bundle(name)), fps(m.bundle(ns, "ca", "serving-ca.crt"))
    old_client, old_serving = m.leaf(ns, "c"), m.serving_leaf(name)
    old_hash = storages.deployment(name)["spec"]["template"]["metadata"]["annotations"][HASH]

    storages.patch(name, {"metadata": {"annotations": {"etcd.etcdproxy.dev/rotate-ca": "1"}}})
    # Stage 1: the next CAs are published in every bundle (proxy rolls for its trusted bundle).
    storages.wait("next CAs published", lambda: len(m.client_ca_bundle(name)) == 2
                  and len(m.bundle(ns, "ca", "serving-ca.crt")) == 2)
    saw_overlap = storages.get(name)["status"]["certificates"]
    # Stage 2: leaves re-signed by the new CAs only after delivery; the old chains still verify.
    storages.wait("leaves re-signed by the new CAs", lambda: not signed_by(m.leaf(ns, "c"), _only(
        m.client_ca_bundle(name), old_client_cas)) and not signed_by(m.serving_leaf(name), _only(
            m.bundle(ns, "ca", "serving-ca.crt"), old_serving_cas)))
    client_bundle, serving_bundle = m.client_ca_bundle(name), m.bundle(ns, "ca", "serving-ca.crt")
    assert old_client_cas < fps(client_bundle) and old_serving_cas < fps(serving_bundle)
    for leaf, bundle in ((old_client, client_bundle), (m.leaf(ns, "c"), client_bundle),
                         (old_serving, serving_bundle), (m.serving_leaf(name), serving_bundle)):
        assert verifies(leaf, bundle)
    assert storages.deployment(name)["spec"]["template"]["metadata"]["annotations"][HASH] != old_hash
    storages.wait("status shows both rotations done", lambda: all(
        "rotation" not in storages.get(name)["status"]["certificates"][k] for k in ("clientCA", "servingCA")))
    certs = storages.get(name)["status"]["certificates"]
    assert "previousTrustedUntil" in certs["clientCA"] and "previousTrustedUntil" in certs["servingCA"]
    assert storages.condition(name, "Ready")["status"] == "True"
    # While the rotation was staged, status said when the overlap window started and when signing switches.
    if "rotation" in saw_overlap.get("clientCA", {}):
        assert saw_overlap["clientCA"]["rotation"]["phase"] == "Overlap"


def _only(bundle: list[x509.Certificate], keep: set[str]) -> x509.Certificate:
    (cert,) = [c for c in bundle if fingerprint(c) in keep]
    return cert


def test_adding_a_destination_issues_one_cert_without_rotating(storages, api):
    m = Material(api)
    name = storages.unique("add")
    ns = f"{name}-ns"
    storages.create(name, {"replicas": 1, "clientCertSecret": dests(ns, "one")})
    storages.wait_condition(name, "Ready", "True")
    ca_before = m.secret(OPERATOR_NAMESPACE, f"etcd-{name}-ca")["text"]["client-ca.crt"]
    one_rv = m.secret(ns, "one")["metadata"]["resource_version"]
    dep_before = storages.deployment(name)
    storages.patch(name, {"spec": {"clientCertSecret": dests(ns, "one", "two")}})
    storages.wait("second client cert delivered", lambda: m.secret(ns, "two") is not None)
    storages.wait_condition(name, "Ready", "True")
    assert verifies(m.leaf(ns, "two"), m.client_ca_bundle(name))
    assert m.secret(OPERATOR_NAMESPACE, f"etcd-{name}-ca")["text"]["client-ca.crt"] == ca_before
    assert m.secret(ns, "one")["metadata"]["resource_version"] == one_rv
    dep_after = storages.deployment(name)
    assert dep_after["spec"]["template"] == dep_before["spec"]["template"]


def test_missing_destination_namespace_is_reported_and_isolated(storages, api):
    m = Material(api)
    name = storages.unique("nons")
    good_ns, missing_ns = f"{name}-ok", f"{name}-missing"
    ensure_namespace(api, good_ns)
    storages.create(name, {"replicas": 1, "clientCertSecret": [{"name": "c", "namespace": good_ns},
                                                               {"name": "c", "namespace": missing_ns}]},
                    make_namespaces=False)
    cond = storages.wait_condition(name, "CertificatesReady", "False")
    assert f"namespace {missing_ns} does not exist" in cond["message"]
    assert "spec.clientCertSecret[1]" in cond["message"]
    assert storages.condition(name, "Ready")["status"] == "False"
    # The other destination is still served, and a neighbour is unaffected.
    storages.wait("good destination served", lambda: m.secret(good_ns, "c") is not None)
    other = storages.unique("neighbour")
    storages.create(other, {"replicas": 1})
    storages.wait_condition(other, "Ready", "True")
    # Creating the namespace repairs it without user action on the EtcdStorage.
    ensure_namespace(api, missing_ns)
    storages.wait_condition(name, "Ready", "True")
    assert verifies(m.leaf(missing_ns, "c"), m.client_ca_bundle(name))


def test_destination_of_another_tenant_is_refused_not_overwritten(storages, api):
    m = Material(api)
    first, second = storages.unique("owner"), storages.unique("intruder")
    ns = f"{first}-ns"
    storages.create(first, {"replicas": 1, "clientCertSecret": dests(ns, "shared")})
    storages.wait_condition(first, "Ready", "True")
    before = m.secret(ns, "shared")["text"]["tls.crt"]
    storages.create(second, {"replicas": 1, "clientCertSecret": dests(ns, "shared")})
    cond = storages.wait_condition(second, "CertificatesReady", "False")
    assert f"already receives the material of EtcdStorage {first}" in cond["message"]
    assert m.secret(ns, "shared")["text"]["tls.crt"] == before


def test_a_ca_bundle_destination_taken_out_of_the_spec_is_given_back_and_can_move_to_another_tenant(
        storages, api):
    """Moving an API server to another EtcdStorage means taking its ConfigMap out of one spec and into the
    other. The first kept our bundle and mark in it, so the second was refused it as another tenant's."""
    m = Material(api)
    first, second = storages.unique("cafrom"), storages.unique("cato")
    ns = f"{first}-ns"
    storages.create(first, {"replicas": 1, "caCertConfigMap": dests(ns, "moving", "staying")})
    storages.wait_condition(first, "Ready", "True")
    storages.patch(first, {"spec": {"caCertConfigMap": dests(ns, "staying")}})

    def given_back() -> bool:
        cm = m.cm(ns, "moving") or {}
        return not (cm.get("metadata", {}).get("annotations") or {}).get(names.OWNER_ANNOTATION) and \
            "serving-ca.crt" not in (cm.get("data") or {})

    storages.wait("the ConfigMap given back", given_back)
    assert [e for e in storages.events(first, "CABundleReleased") if f"{ns}/moving" in e.message]
    assert m.cm(ns, "staying")["metadata"]["annotations"][names.OWNER_ANNOTATION] == first
    storages.create(second, {"replicas": 1, "caCertConfigMap": dests(ns, "moving")})
    storages.wait_condition(second, "Ready", "True")
    assert m.cm(ns, "moving")["metadata"]["annotations"][names.OWNER_ANNOTATION] == second
    assert verifies(m.serving_leaf(second), m.bundle(ns, "moving", "serving-ca.crt"))


def test_a_deleted_ca_store_is_reported_as_lost_keys_and_everything_is_reissued(storages, api):
    """The CA keys are only in the CA store: once it is deleted, no staged rotation is possible. The operator
    issues new CAs and re-issues every certificate, and a Warning says that API servers holding the old
    material fail until they restart (not the Normal 'CA issued' of a new EtcdStorage)."""
    m = Material(api)
    name = storages.unique("lostca")
    ns = f"{name}-ns"
    storages.create(name, {"replicas": 1, "caCertConfigMap": dests(ns, "ca"), "clientCertSecret": dests(ns, "c")})
    storages.wait_condition(name, "Ready", "True")
    old_client = m.leaf(ns, "c")
    m.core.delete_namespaced_secret(f"etcd-{name}-ca", OPERATOR_NAMESPACE)

    def lost_keys() -> list[str]:
        return [e.message for e in storages.events(name, "CAKeysLost") if e.type == "Warning"]

    storages.wait("a CAKeysLost Warning", lambda: bool(lost_keys()))
    assert f"Secret {OPERATOR_NAMESPACE}/etcd-{name}-ca" in lost_keys()[0]
    storages.wait("the client certificate re-issued", lambda: m.leaf(ns, "c").serial_number != old_client.serial_number)
    storages.wait_condition(name, "Ready", "True")
    new_bundle = m.bundle(ns, "ca", "serving-ca.crt")
    assert verifies(m.serving_leaf(name), new_bundle) and verifies(m.leaf(ns, "c"), m.client_ca_bundle(name))


def test_a_destination_in_the_operator_namespace_is_refused_and_nothing_there_is_written(storages, api):
    """The operator namespace holds the CA keys and the core etcd credentials, which no EtcdStorage may
    receive material into (a client certificate merged into the core client Secret would cut every tenant
    off the core); the EtcdStorage's other destinations are still served."""
    m = Material(api)
    name = storages.unique("opns")
    ns = f"{name}-ns"
    core_cert, core_ca = m.secret(OPERATOR_NAMESPACE, "etcd-coreserving-cert"), m.cm(OPERATOR_NAMESPACE,
                                                                                    "etcd-coreserving-ca")
    storages.create(name, {"replicas": 1,
                           "caCertConfigMap": [{"namespace": OPERATOR_NAMESPACE, "name": "etcd-coreserving-ca"},
                                               *dests(ns, "ca")],
                           "clientCertSecret": [{"namespace": OPERATOR_NAMESPACE, "name": "etcd-coreserving-cert"},
                                                *dests(ns, "c")]})
    cond = storages.wait_condition(name, "CertificatesReady", "False")
    for where in ("spec.caCertConfigMap[0]", "spec.clientCertSecret[0]"):
        assert f"{where}: namespace {OPERATOR_NAMESPACE} is the operator's own" in cond["message"], cond["message"]
    storages.wait("the other destinations served", lambda: m.secret(ns, "c") is not None and m.cm(ns, "ca"))
    assert verifies(m.leaf(ns, "c"), m.client_ca_bundle(name))
    assert m.secret(OPERATOR_NAMESPACE, "etcd-coreserving-cert")["data"] == core_cert["data"]
    assert m.cm(OPERATOR_NAMESPACE, "etcd-coreserving-ca")["data"] == core_ca["data"]
    # A neighbour still reaches the core with the untouched credentials.
    other = storages.unique("opns-neighbour")
    storages.create(other, {"replicas": 1})
    storages.wait_condition(other, "Ready", "True")
