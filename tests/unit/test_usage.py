"""status.usage and WithinLimits from the guard replicas' usage records (module_utils/usage.py)."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import yaml
from ansible_collections.etcdproxy.operator.plugins.module_utils.settings import BYTE_LIMITS
from ansible_collections.etcdproxy.operator.plugins.module_utils.status.conditions import (
    Observed,
    desired_status,
    requeue_after,
    transition_events,
)
from ansible_collections.etcdproxy.operator.plugins.module_utils.usage import (
    REASONS,
    human_bytes,
    quantity_bytes,
    report_prefix,
    summarize,
)

NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)
REPO = Path(__file__).resolve().parents[2]
LIMITS = {"storage": "1Mi", "keys": 10, "watches": 100, "leases": 5}


def record(bytes_=0, keys=0, revision=1, watches=0, refusal=None, at=NOW, leases=0):
    rec = {"bytes": bytes_, "keys": keys, "revision": revision, "watches": watches, "leases": leases,
           "measuredAt": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if refusal:
        rec["lastRefusal"] = {"reason": refusal[0], "message": refusal[1],
                              "at": refusal[2].strftime("%Y-%m-%dT%H:%M:%SZ")}
    return rec


def test_no_record_no_usage_no_condition():
    assert summarize([], LIMITS, NOW) == (None, None)


def test_latest_revision_wins_and_watches_add_up():
    usage, cond = summarize([record(100, 1, revision=5, watches=2, leases=1),
                             record(300, 3, revision=9, watches=3, leases=2)], LIMITS, NOW)
    assert usage is not None and cond is not None
    assert (usage["bytes"], usage["keys"], usage["watches"], usage["leases"]) == (300, 3, 5, 2)
    assert usage["summary"] == "300/1Mi" and usage["storageLimit"] == "1Mi" and usage["keysLimit"] == 10
    assert usage["leasesLimit"] == 5
    assert (cond.type, cond.status, cond.reason) == ("WithinLimits", "True", "WithinLimits")


def test_recent_refusal_names_the_limit_then_expires():
    ago = NOW - datetime.timedelta(seconds=30)
    msg = "storage limit reached: 1.0Mi of 1.0Mi used (spec.limits.storage)"
    _, cond = summarize([record(10, 1), record(10, 1, refusal=("storage", msg, ago))], LIMITS, NOW)
    assert cond is not None and (cond.status, cond.reason) == ("False", "StorageLimitReached")
    assert "spec.limits.storage" in cond.message
    _, later = summarize([record(10, 1, refusal=("write-rate", "w", ago))], LIMITS,
                         NOW + datetime.timedelta(minutes=5))
    assert later is not None and later.status == "True"


def test_every_limit_is_admitted_defaulted_passed_and_enforced():
    """A limit lives in four files: the CRD admits it, the role defaults it, the proxy template passes it,
    the guard enforces it (and names it in its refusals). One missing is a limit silently not applied."""
    crd = yaml.safe_load((REPO / "config/crd/bases/etcd.etcdproxy.dev_etcdstorages.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    admitted = set(spec["limits"]["properties"])
    defaults = set(yaml.safe_load((REPO / "roles/etcdstorage/defaults/main.yml").read_text())
                   ["etcdstorage_default_limits"])
    template = (REPO / "roles/etcdstorage/templates/proxy.yaml.j2").read_text()
    passed = {a or b for a, b in re.findall(r"etcdstorage_limits(?:\.(\w+)|\['(\w+)'\])", template)}
    guard = (REPO / "guard/limits.go").read_text()
    enforced = set(re.findall(r'"spec\.limits\.(\w+)"', guard))
    assert admitted == defaults == passed == enforced, (admitted, defaults, passed, enforced)
    # The role checks the operator's defaults as quantities exactly where the guard parses quantities.
    quantities = {f for f, q in re.findall(r'"spec\.limits\.(\w+)",\s*(true|false)', guard) if q == "true"}
    assert set(BYTE_LIMITS) == quantities
    assert "leases" in enforced
    # Every reason the guard refuses with becomes a condition reason.
    assert set(re.findall(r'\breason\w+\s*=\s*"([\w-]+)"', guard)) == set(REASONS)


def test_every_guard_reason_has_a_condition_reason():
    for reason, expected in (("keys", "KeyLimitReached"), ("write-rate", "WriteRateThrottled"),
                             ("request-rate", "RequestRateThrottled"), ("watches", "WatchLimitReached"),
                             ("leases", "LeaseLimitReached"), ("reads", "ReadLimitReached"),
                             ("core-space", "CoreSpaceLow")):
        _, cond = summarize([record(refusal=(reason, "m", NOW))], LIMITS, NOW)
        assert cond is not None and cond.reason == expected


def test_at_the_limit_without_a_refusal_is_reported():
    _, cond = summarize([record(1 << 20, 1)], LIMITS, NOW)
    assert cond is not None and cond.reason == "StorageLimitReached"
    _, cond = summarize([record(1, 10)], LIMITS, NOW)
    assert cond is not None and cond.reason == "KeyLimitReached"
    _, cond = summarize([record(1, 1, leases=5)], LIMITS, NOW)
    assert cond is not None and cond.reason == "LeaseLimitReached" and "spec.limits.leases" in cond.message
    _, cond = summarize([record(1 << 30, 10**6)], {"storage": "0", "keys": 0}, NOW)
    assert cond is not None and cond.status == "True"


def test_condition_never_blocks_ready_and_requeues_while_false():
    _, cond = summarize([record(refusal=("storage", "full", NOW))], LIMITS, NOW)
    obs = Observed(name="t", namespace="ns", generation=1, certificate_problems=[],
                   deployment={"metadata": {"generation": 1}, "spec": {"replicas": 1},
                               "status": {"availableReplicas": 1, "updatedReplicas": 1, "observedGeneration": 1}},
                   core_health="", limits=cond)
    status = desired_status(obs, None, NOW)
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["Ready"]["status"] == "True"
    assert by_type["WithinLimits"]["status"] == "False"
    assert requeue_after(status, 30, 60) == 60
    events = transition_events({"conditions": [dict(by_type["WithinLimits"], status="True", reason="WithinLimits")]},
                               status)
    assert [(e.type, e.reason) for e in events if e.reason == "StorageLimitReached"] == [
        ("Warning", "StorageLimitReached")]


def test_helpers():
    assert quantity_bytes("512Mi") == 512 << 20 and quantity_bytes(1000) == 1000 and quantity_bytes("") == 0
    assert quantity_bytes("100m") == 1 and quantity_bytes("1.5Gi") == 1610612736
    assert human_bytes(1536) == "1.5Ki" and human_bytes(12) == "12"
    key, end = report_prefix("wardle")
    assert key == "\x00etcdproxy-guard/usage/wardle/" and end == "\x00etcdproxy-guard/usage/wardle0"
