"""The certificate step's plan: crash-safe write order and no writes when nothing changed (no cluster)."""

from __future__ import annotations

import dataclasses
import datetime

from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.plan import (
    Destination,
    Observed,
    Write,
    plan_certificates,
)
from ansible_collections.etcdproxy.operator.plugins.module_utils.certs.settings import Settings

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
H = datetime.timedelta(hours=1)
SETTINGS = Settings(ca_validity=300 * H, serving_validity=30 * H, client_validity=30 * H)


def observed(objects: dict[str, dict] | None = None) -> Observed:
    """EtcdStorage "a" with one serving CA destination and one client certificate destination."""
    objects = objects or {}
    return Observed(
        name="a", namespace="ops", uid="uid-a",
        ca_secret=objects.get("Secret ops/etcd-a-ca"),
        client_ca=objects.get("ConfigMap ops/etcd-a-client-ca"),
        serving=objects.get("Secret ops/etcd-a-serving"),
        deployment=None,
        ca_destinations=[Destination("caCertConfigMap", 0, "api", "etcd-ca", objects.get("ConfigMap api/etcd-ca"))],
        client_destinations=[Destination("clientCertSecret", 0, "api", "etcd-client",
                                         objects.get("Secret api/etcd-client"))],
        listed_cas=[("api", "etcd-ca")],
    )


def as_live(write: Write) -> dict:
    """The object the API server would hold after ``write`` created it."""
    return {"metadata": {"name": write.name, "namespace": write.namespace, **write.body["metadata"]},
            "data": write.body["data"], **({"type": write.body["type"]} if "type" in write.body else {})}


def test_a_new_etcdstorage_writes_its_ca_store_first_then_trust_bundles_then_leaves():
    plan = plan_certificates(observed(), SETTINGS, T0)
    assert [w.key for w in plan.writes] == [
        "Secret ops/etcd-a-ca",  # every CA key saved before anything it signed leaves the operator
        "ConfigMap ops/etcd-a-client-ca",  # what the proxy trusts
        "ConfigMap api/etcd-ca",  # what the API servers trust
        "Secret ops/etcd-a-serving",
        "Secret api/etcd-client",
    ]
    assert [w.holds_ca for w in plan.writes] == [True, False, False, False, False]
    assert plan.problems == []
    assert [e["reason"] for e in plan.events] == ["CAIssued", "CAIssued"]
    assert plan.writes[0].body["metadata"]["annotations"]["etcd.etcdproxy.dev/storage-uid"] == "uid-a"
    assert plan.writes[3].body["type"] == "kubernetes.io/tls"


def test_an_unchanged_etcdstorage_plans_no_write():
    first = plan_certificates(observed(), SETTINGS, T0)
    again = plan_certificates(observed({w.key: as_live(w) for w in first.writes}), SETTINGS, T0 + H)
    assert again.writes == [] and again.events == [] and again.problems == []
    assert again.client_hash == first.client_hash


def test_a_lost_leaf_is_reissued_alone_and_the_ca_store_records_it_first():
    first = plan_certificates(observed(), SETTINGS, T0)
    live = {w.key: as_live(w) for w in first.writes}
    del live["Secret api/etcd-client"]
    again = plan_certificates(observed(live), SETTINGS, T0 + H)
    # The store keeps when each CA's last leaf expires (for CA retirement): it is saved before the leaf.
    assert [w.key for w in again.writes] == ["Secret ops/etcd-a-ca", "Secret api/etcd-client"]


def test_a_lost_ca_store_is_named_as_such_and_a_first_issue_is_not():
    """Deleting the CA store leaves certificates in use that no kept key signed: the re-issue is an outage
    for API servers that hold the old ones, and the Events must say so (a first issue is no loss)."""
    first = plan_certificates(observed(), SETTINGS, T0)
    assert "CAKeysLost" not in [e["reason"] for e in first.events]
    live = {w.key: as_live(w) for w in first.writes}
    del live["Secret ops/etcd-a-ca"]
    again = plan_certificates(observed(live), SETTINGS, T0 + H)
    (lost,) = [e for e in again.events if e["reason"] == "CAKeysLost"]
    assert lost["type"] == "Warning"
    assert "Secret ops/etcd-a-ca" in lost["message"] and "serving and client CA" in lost["message"]
    assert "restarts" in lost["message"]
    # What happens is unchanged: new CAs, every certificate re-issued, the CA store written first.
    assert again.writes[0].key == "Secret ops/etcd-a-ca"
    assert {"Secret ops/etcd-a-serving", "Secret api/etcd-client"} <= {w.key for w in again.writes}
    # Material of an earlier EtcdStorage of the same name is replaced with its own Event, not this one.
    reused = plan_certificates(dataclasses.replace(observed({w.key: as_live(w) for w in first.writes}), uid="uid-b"),
                               SETTINGS, T0 + H)
    assert [e["reason"] for e in reused.events if e["type"] == "Warning"] == ["StaleMaterialReplaced"]


def applied(live: dict[str, dict], plan) -> dict[str, dict]:
    """``live`` after the plan's writes (merge patches: keys set to null go)."""
    out = dict(live)
    for w in plan.writes:
        data = {**(live.get(w.key) or {}).get("data", {}), **w.body["data"]}
        out[w.key] = as_live(dataclasses.replace(w, body={**w.body, "data": {
            k: v for k, v in data.items() if v is not None}}))
    return out


def test_a_client_destination_that_left_the_spec_is_revoked_by_name_until_its_last_certificate_expires():
    first = plan_certificates(dataclasses.replace(observed(), listed_clients=[("api", "etcd-client")]), SETTINGS, T0)
    live = applied({}, first)
    issued = first.certificates["clients"]
    assert [(c["namespace"], c["name"]) for c in issued] == [("api", "etcd-client")]

    def without_it(live: dict[str, dict], previous: list) -> Observed:
        return dataclasses.replace(observed(live), client_destinations=[], listed_clients=[],
                                   previous_clients=previous)

    # The destination is taken out of the spec: the next run sees it only in the last status.
    plan = plan_certificates(without_it(live, issued), SETTINGS, T0 + H)
    line = f"{issued[0]['notAfter']} etcdstorage:a:api/etcd-client\n"
    assert [w.key for w in plan.writes] == ["Secret ops/etcd-a-ca", "ConfigMap ops/etcd-a-client-ca"]
    assert plan.writes[1].body["data"]["revoked-clients"] == line
    assert plan.client_hash != first.client_hash  # the proxy rolls: connections of the revoked end
    assert [e["reason"] for e in plan.events] == ["ClientCertificateRevoked"]
    assert plan.released == [("api", "etcd-client")]  # given back after the writes
    live = applied(live, plan)
    # Later runs keep it from the CA store alone, with no Event and no write ...
    again = plan_certificates(without_it(live, []), SETTINGS, T0 + 2 * H)
    assert again.writes == [] and again.events == [] and again.client_hash == plan.client_hash
    # ... and put it back in a ConfigMap deleted by hand ...
    rebuilt = {k: v for k, v in live.items() if k != "ConfigMap ops/etcd-a-client-ca"}
    (write,) = plan_certificates(without_it(rebuilt, []), SETTINGS, T0 + 2 * H).writes
    assert write.key == "ConfigMap ops/etcd-a-client-ca" and write.body["data"]["revoked-clients"] == line
    # ... until the certificate it was issued has expired: then the line goes (null in the patch).
    expired = plan_certificates(without_it(live, []), SETTINGS, T0 + 31 * H)
    (write,) = [w for w in expired.writes if w.key == "ConfigMap ops/etcd-a-client-ca"]
    assert write.body["data"]["revoked-clients"] is None
    # Put back, it is not revoked any more.
    back = dataclasses.replace(observed(live), listed_clients=[("api", "etcd-client")])
    (write,) = [w for w in plan_certificates(back, SETTINGS, T0 + 2 * H).writes
                if w.key == "ConfigMap ops/etcd-a-client-ca"]
    assert write.body["data"]["revoked-clients"] is None


def test_a_client_destination_delivered_by_a_run_that_never_wrote_its_status_is_still_revoked():
    """The run that delivered a certificate ended before writing the status that lists its destination (the
    operator restarted); the destination is then taken out of the spec. The CA store, written before the
    certificate left the operator, is what still knows of it."""
    first = plan_certificates(dataclasses.replace(observed(), listed_clients=[("api", "etcd-client")]), SETTINGS, T0)
    live = applied({}, first)
    (issued,) = first.certificates["clients"]
    assert [w.key for w in first.writes].index("Secret ops/etcd-a-ca") < \
        [w.key for w in first.writes].index("Secret api/etcd-client")
    gone = dataclasses.replace(observed(live), client_destinations=[], listed_clients=[], previous_clients=[])
    plan = plan_certificates(gone, SETTINGS, T0 + H)
    (write,) = [w for w in plan.writes if w.key == "ConfigMap ops/etcd-a-client-ca"]
    assert write.body["data"]["revoked-clients"] == f"{issued['notAfter']} etcdstorage:a:api/etcd-client\n"
    assert [e["reason"] for e in plan.events] == ["ClientCertificateRevoked"]
    assert plan.released == [("api", "etcd-client")]
    # Revoked once: the store's record of it moved to the revoked list, so the next run repeats nothing.
    again = plan_certificates(dataclasses.replace(gone, ca_secret=applied(live, plan)["Secret ops/etcd-a-ca"]),
                              SETTINGS, T0 + 2 * H)
    assert again.events == [] and again.released == [] and again.client_hash == plan.client_hash


def test_a_client_destination_still_listed_but_unusable_is_not_revoked():
    first = plan_certificates(observed(), SETTINGS, T0)
    live = {w.key: as_live(w) for w in first.writes}
    # Its namespace is gone for now (reported as a problem by the reader): still in the spec, not revoked.
    broken = dataclasses.replace(observed(live), client_destinations=[], listed_clients=[("api", "etcd-client")],
                                 previous_clients=first.certificates["clients"])
    plan = plan_certificates(broken, SETTINGS, T0 + H)
    assert "ClientCertificateRevoked" not in [e["reason"] for e in plan.events]
    assert plan.client_hash == first.client_hash


def test_a_ca_bundle_destination_that_left_the_spec_is_given_back_and_one_still_listed_keeps_its_record():
    obs = observed()
    obs.previous_cas = [{"namespace": "api", "name": "etcd-ca"}, {"namespace": "old", "name": "gone"},
                        {"namespace": "api", "name": "down"}]
    obs.listed_cas = [("api", "etcd-ca"), ("api", "down")]  # "down" is listed but not usable this run
    plan = plan_certificates(obs, SETTINGS, T0)
    assert plan.released_cas == [("old", "gone")]
    assert plan.certificates["caBundles"] == [{"namespace": "api", "name": "down"},
                                              {"namespace": "api", "name": "etcd-ca"}]
    # The next run, with that status: nothing more to give back, the same record (no status write).
    obs.previous_cas = plan.certificates["caBundles"]
    again = plan_certificates(obs, SETTINGS, T0)
    assert again.released_cas == [] and again.certificates["caBundles"] == plan.certificates["caBundles"]
