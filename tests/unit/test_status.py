"""Conditions, transitions, Events and requeue decisions (module_utils/status/conditions.py)."""

from __future__ import annotations

import base64
import datetime

from ansible_collections.etcdproxy.operator.plugins.module_utils.status.conditions import (
    Observed,
    check_core_material,
    desired_status,
    merge_patch,
    proxy_condition,
    requeue_after,
    status_changes,
    transition_events,
)
from ansible_collections.etcdproxy.operator.plugins.module_utils.x509 import (
    CertSpec,
    cert_pem,
    load_certs,
    make_ca,
    make_leaf,
    new_private_key,
)

NOW = datetime.datetime(2026, 11, 24, 12, 0, tzinfo=datetime.UTC)
LATER = NOW + datetime.timedelta(minutes=5)


def deployment(want=2, available=2, updated=2, generation=1, observed=1, progressing=None):
    conds = [{"type": "Progressing", "reason": progressing or "NewReplicaSetAvailable", "message": "m"}]
    return {"metadata": {"generation": generation}, "spec": {"replicas": want},
            "status": {"availableReplicas": available, "updatedReplicas": updated,
                       "observedGeneration": observed, "conditions": conds}}


def conds(status):
    return {c["type"]: c for c in status["conditions"]}


def test_ready_when_core_material_and_proxy_are_fine():
    st = desired_status(Observed("a", "ns", 3, deployment=deployment()), None, NOW)
    c = conds(st)
    assert c["Ready"]["status"] == "True"
    assert c["ProxyAvailable"]["reason"] == "MinimumReplicasAvailable"
    assert st["observedGeneration"] == 3 and c["Ready"]["observedGeneration"] == 3
    assert st["endpoint"] == "https://etcd-a.ns.svc:2379" and st["prefix"] == "/a/"


def test_not_ready_names_the_first_blocking_condition():
    obs = Observed("a", "ns", 1, core_problems=["ConfigMap ns/etcd-coreserving-ca ... is missing"],
                   deployment=deployment())
    c = conds(desired_status(obs, None, NOW))
    assert c["Ready"]["status"] == "False"
    assert c["Ready"]["reason"] == "CoreEtcdMaterialInvalid"
    assert "etcd-coreserving-ca" in c["Ready"]["message"]


def test_operator_misconfiguration_wins_over_material_problems():
    obs = Observed("a", "ns", 1, config_errors=["ETCDPROXY_CORE_ENDPOINTS is not set"], core_problems=["x"])
    assert conds(desired_status(obs, None, NOW))["Ready"]["reason"] == "OperatorMisconfigured"


def test_a_reserved_prefix_is_the_only_thing_reported():
    obs = Observed("registry", "ns", 1, core_problems=["x"], certificate_problems=[], deployment=deployment(),
                   prefix_reserved="metadata.name: the prefix /registry/ shares keys with /registry")
    st = desired_status(obs, {"conditions": [{"type": "ProxyAvailable", "status": "True"}]}, NOW)
    assert [c["type"] for c in st["conditions"]] == ["PrefixAvailable", "Ready"]
    c = conds(st)
    assert c["PrefixAvailable"]["status"] == "False" and c["Ready"]["reason"] == "PrefixReserved"
    assert "another name" in c["Ready"]["message"]
    assert [(e.type, e.reason) for e in transition_events(None, st)] == [("Warning", "PrefixReserved")]


def test_certificates_condition_only_when_managed():
    assert "CertificatesReady" not in conds(desired_status(Observed("a", "ns", 1, deployment=deployment()),
                                                           None, NOW))
    obs = Observed("a", "ns", 1, certificate_problems=["namespace x missing"], deployment=deployment())
    c = conds(desired_status(obs, None, NOW))
    assert c["CertificatesReady"]["status"] == "False" and c["Ready"]["reason"] == "CertificatesNotReady"


def test_unchanged_reconcile_produces_identical_status():
    obs = Observed("a", "ns", 1, deployment=deployment())
    first = desired_status(obs, None, NOW)
    second = desired_status(obs, first, LATER)
    assert not status_changes(first, second)
    assert transition_events(first, second) == []


def test_transition_time_moves_only_when_status_flips():
    first = desired_status(Observed("a", "ns", 1, deployment=deployment(available=0)), None, NOW)
    same = desired_status(Observed("a", "ns", 1, deployment=deployment(available=0)), first, LATER)
    assert conds(same)["ProxyAvailable"]["lastTransitionTime"] == "2026-11-24T12:00:00Z"
    flipped = desired_status(Observed("a", "ns", 1, deployment=deployment()), first, LATER)
    assert conds(flipped)["ProxyAvailable"]["lastTransitionTime"] == "2026-11-24T12:05:00Z"


def test_pending_objects_hold_observed_generation_back():
    first = desired_status(Observed("a", "ns", 1, deployment=deployment()), None, NOW)
    pending = desired_status(Observed("a", "ns", 2, deployment=deployment(), pending=["Deployment ns/etcd-a"]),
                             first, LATER)
    assert pending["observedGeneration"] == 1
    done = desired_status(Observed("a", "ns", 2, deployment=deployment()), pending, LATER)
    assert done["observedGeneration"] == 2


def test_events_on_transitions_only():
    bad = desired_status(Observed("a", "ns", 1, core_problems=["missing"], deployment=deployment()), None, NOW)
    first = transition_events(None, bad)
    assert [(e.type, e.reason) for e in first] == [("Warning", "CoreEtcdMaterialInvalid")]
    good = desired_status(Observed("a", "ns", 1, deployment=deployment()), bad, LATER)
    events = transition_events(bad, good)
    assert ("Normal", "Configured") in [(e.type, e.reason) for e in events]
    assert ("Normal", "Ready") in [(e.type, e.reason) for e in events]


def test_a_new_etcdstorage_gets_no_warning_for_the_proxy_it_is_about_to_apply():
    first = desired_status(Observed("a", "ns", 1), None, NOW)
    assert conds(first)["ProxyAvailable"]["reason"] == "DeploymentMissing"
    assert transition_events(None, first) == []
    # A proxy Deployment deleted by hand is still said (the same run re-applies it).
    ready = desired_status(Observed("a", "ns", 1, deployment=deployment()), None, NOW)
    gone = desired_status(Observed("a", "ns", 1), ready, LATER)
    assert ("Warning", "DeploymentMissing") in [(e.type, e.reason) for e in transition_events(ready, gone)]


def rolling_out(**kwargs):
    """A Deployment in the middle of a rollout (its Progressing condition says so)."""
    return deployment(progressing="ReplicaSetUpdated", **kwargs)


def test_proxy_condition_cases():
    assert proxy_condition(None).reason == "DeploymentMissing"
    assert proxy_condition(deployment(available=0)).status == "False"
    assert proxy_condition(rolling_out(want=3, available=2, updated=3)).reason == "RollingOut"
    assert proxy_condition(deployment(generation=2, observed=1)).reason == "RollingOut"
    stuck = proxy_condition(deployment(progressing="ProgressDeadlineExceeded"))
    assert stuck.status == "False" and stuck.reason == "ProgressDeadlineExceeded"


def test_requeue_only_while_waiting_for_something_unwatched():
    bad = desired_status(Observed("a", "ns", 1, core_problems=["missing"]), None, NOW)
    assert requeue_after(bad, 30) == 30
    # Pods: a Deployment status change that adds no field (a rollout's progress, a pod's crash loop) is no
    # watch event.
    for incomplete in (deployment(available=0), rolling_out(want=3, available=2, updated=3),
                       deployment(progressing="ProgressDeadlineExceeded")):
        waiting_for_pods = desired_status(Observed("a", "ns", 1, deployment=incomplete), None, NOW)
        assert requeue_after(waiting_for_pods, 30) == 30
    assert requeue_after(desired_status(Observed("a", "ns", 1, deployment=deployment()), None, NOW), 30) is None
    assert requeue_after(desired_status(Observed("a", "ns", 1), None, NOW), 30) is None  # created in this run


def test_a_tenant_blocked_for_long_is_looked_at_less_often():
    blocked = desired_status(Observed("a", "ns", 1, core_problems=["missing"]), None, NOW)
    since = NOW
    for seconds, expected in ((0, 30), (100, 30), (400, 40), (3000, 300), (86400, 600)):
        assert requeue_after(blocked, 30, now=since + datetime.timedelta(seconds=seconds)) == expected, seconds
    assert requeue_after(blocked, 30) == 30  # without a clock, the retry period
    # A rollout under a proxy that still serves (Ready True): the retry period, however old Ready is.
    rolling = desired_status(Observed("a", "ns", 1, deployment=rolling_out(want=3, available=2, updated=3)), None, NOW)
    assert requeue_after(rolling, 30, now=NOW + datetime.timedelta(days=3)) == 30


def _material(cn: str = ""):
    key = new_private_key()
    ca = make_ca(CertSpec(common_name="ca", usage="ca"), key, NOW, datetime.timedelta(days=1))
    leaf_key = new_private_key()
    leaf = make_leaf(CertSpec(common_name=cn, organization="o", usage="client"), leaf_key.public_key(), ca, key,
                     NOW, datetime.timedelta(hours=1))
    cm = {"data": {"ca.crt": cert_pem(ca)}}
    secret = {"data": {"tls.crt": base64.b64encode(cert_pem(leaf).encode()).decode(), "tls.key": "eA=="}}
    return cm, secret


def check(cm, secret):
    return check_core_material(cm, secret, "ns", "core-ca", "ca.crt", "core-cert", parse_certs=load_certs)


def test_core_material_ok():
    assert check(*_material()) == []


def test_core_material_problems_name_object_and_fix():
    cm, secret = _material()
    assert "ConfigMap ns/core-ca" in check(None, secret)[0] and "create it" in check(None, secret)[0]
    assert "has no key ca.crt" in check({"data": {}}, secret)[0]
    assert "not a PEM certificate bundle" in check({"data": {"ca.crt": "garbage"}}, secret)[0]
    assert "Secret ns/core-cert" in check(cm, None)[0]
    assert "lacks tls.key" in check(cm, {"data": {"tls.crt": secret["data"]["tls.crt"]}})[0]
    assert "not a PEM certificate" in check(cm, {"data": {"tls.crt": "Z2FyYmFnZQ==", "tls.key": "eA=="}})[0]


def test_core_client_certificate_may_have_a_common_name():
    # The stock grpc-proxy refused one; the guard does not (a CN lets the core apply etcd RBAC to it).
    assert check(*_material(cn="etcdproxy-guard")) == []


def test_merge_patch_deletes_what_disappeared_and_sends_only_changes():
    old = {"a": 1, "certs": {"ca": {"notAfter": "x", "rotation": {"phase": "Overlap"}}}, "gone": True}
    new = {"a": 1, "certs": {"ca": {"notAfter": "y"}}, "added": [1]}
    patch = merge_patch(old, new)
    assert patch == {"gone": None, "certs": {"ca": {"notAfter": "y", "rotation": None}}, "added": [1]}
    assert merge_patch(new, new) == {}


def test_core_reachability_condition_only_when_checked():
    assert "CoreEtcdReachable" not in conds(desired_status(Observed("a", "ns", 1, deployment=deployment()), None, NOW))
    ok = conds(desired_status(Observed("a", "ns", 1, deployment=deployment(), core_health=""), None, NOW))
    assert ok["CoreEtcdReachable"]["status"] == "True" and ok["Ready"]["status"] == "True"
    down = desired_status(Observed("a", "ns", 1, deployment=deployment(), core_health="https://x: ConnectTimeout"),
                          None, NOW)
    c = conds(down)
    assert c["CoreEtcdReachable"]["reason"] == "CoreEtcdUnreachable" and "https://x" in c["Ready"]["message"]
    assert requeue_after(down, 30) == 30


def test_api_message_is_taken_from_kubernetes_core_failure_text():
    from ansible_collections.etcdproxy.operator.plugins.module_utils.status.conditions import api_message

    msg = ("Failed to create object: b'{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
           "\"message\":\"Deployment.apps \\\\\"etcd-x\\\\\" is invalid: spec.template.spec.containers[0]"
           ".resources: Forbidden: HugePages require cpu or memory\",\"reason\":\"Invalid\"}'")
    assert api_message(msg) == ('Deployment.apps "etcd-x" is invalid: spec.template.spec.containers[0].resources: '
                                "Forbidden: HugePages require cpu or memory")
    assert api_message("no body here") == "no body here"


def test_core_reachable_is_unknown_when_not_checked_and_a_new_cause_is_a_new_event():
    missing = desired_status(Observed("a", "ns", 1, core_problems=["ConfigMap x is missing"],
                                      deployment=deployment()), None, NOW)
    reach = [c for c in missing["conditions"] if c["type"] == "CoreEtcdReachable"]
    assert reach and reach[0]["status"] == "Unknown" and reach[0]["reason"] == "NotChecked"
    garbage = desired_status(Observed("a", "ns", 1, core_problems=["ConfigMap x is not a PEM bundle"],
                                      deployment=deployment()), missing, LATER)
    events = transition_events(missing, garbage)
    assert [(e.reason, "PEM" in e.message) for e in events] == [("CoreEtcdMaterialInvalid", True)]
    assert transition_events(garbage, garbage) == []


def test_the_client_ca_depends_on_its_etcdstorage_first_and_on_the_core_material_that_exists():
    from ansible_collections.etcdproxy.operator.plugins.module_utils.status.step import core_material_owners

    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "core-ca", "uid": "u-cm"}}
    assert core_material_owners("a", "u-es", cm, None) == [
        {"apiVersion": "etcd.etcdproxy.dev/v1alpha1", "kind": "EtcdStorage", "name": "a", "uid": "u-es"},
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "core-ca", "uid": "u-cm"}]


def test_the_restored_condition_reaches_the_status_step_as_object_or_as_module_option():
    from ansible_collections.etcdproxy.operator.plugins.module_utils.status.conditions import Condition
    from ansible_collections.etcdproxy.operator.plugins.module_utils.status.step import restore_condition

    cond = Condition("Restored", "True", "Restored", "filled from backup b")
    assert restore_condition(cond) is cond
    assert restore_condition({"type": "Restored", "status": "True", "reason": "Restored",
                              "message": "filled from backup b"}) == cond
    assert restore_condition(None) is None
