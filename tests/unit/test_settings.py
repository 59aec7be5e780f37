"""The operator's settings: each wrong one is named with its environment variable and the fix; right ones pass."""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible_collections.etcdproxy.operator.plugins.module_utils.settings import settings_errors

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = {"storage": "512Mi", "keys": "100000", "writeBytesPerSecond": "1Mi", "writeBurst": "8Mi",
            "requestsPerSecond": "5000", "requestBurst": "10000", "watches": "1000", "leases": "10000",
            "readBytesInFlight": "64Mi"}
ENDPOINTS = ["https://10.0.0.1:2379", "https://etcd-1:2379"]


def errors(**changed: object) -> list[str]:
    given = {"default_limits": DEFAULTS, "core_reserve_percent": "20", "core_quota_bytes": "",
             "core_endpoints": ENDPOINTS, "reserved_prefixes": []}
    given.update(changed)
    return settings_errors(**given)  # type: ignore[arg-type]


def test_the_shipped_defaults_and_plausible_settings_are_right():
    assert errors() == []
    role = yaml.safe_load((REPO / "roles/etcdstorage/defaults/main.yml").read_text())
    assert set(role["etcdstorage_default_limits"]) == set(DEFAULTS)
    assert errors(core_reserve_percent="0", core_quota_bytes="8Gi", reserved_prefixes=["/k8s", "/other/"]) == []
    assert errors(core_reserve_percent="90", core_quota_bytes="2147483648") == []
    assert errors(default_limits={**DEFAULTS, "keys": 0, "storage": 1048576}) == []  # integers from YAML
    assert errors(core_reserve_percent=None) == []  # not given: not checked


def test_each_wrong_limit_default_is_named():
    wrong = {**DEFAULTS, "storage": "1.5Gi", "keys": "10k", "writeBurst": "8MiB"}
    found = errors(default_limits=wrong)
    assert len(found) == 3
    for field in ("storage", "keys", "writeBurst"):
        assert any(f"spec.limits.{field} (ETCDPROXY_LIMIT_*) must be a whole quantity" in e for e in found), field


def test_wrong_core_settings_are_named_with_their_variable():
    assert errors(core_reserve_percent="91") == ["ETCDPROXY_CORE_RESERVE_PERCENT=91 must be an integer from 0 to 90"]
    assert errors(core_reserve_percent="") == ["ETCDPROXY_CORE_RESERVE_PERCENT= must be an integer from 0 to 90"]
    assert errors(core_reserve_percent="20\n") != []  # a regex's $ would have let the newline through
    assert errors(core_quota_bytes="8 GiB") == ["ETCDPROXY_CORE_QUOTA_BYTES=8 GiB must be a quantity of bytes such "
                                                "as 8Gi"]
    assert errors(core_endpoints=["https://a:2379", "http://b:2379"]) == [
        "ETCDPROXY_CORE_ENDPOINTS=https://a:2379,http://b:2379 must list https:// URLs without paths"]
    assert errors(core_endpoints=["https://a:2379/v3"]) != []
    assert errors(reserved_prefixes=["/k8s", "other"]) == [
        "ETCDPROXY_RESERVED_PREFIXES=/k8s,other must list key prefixes starting with /, such as the --etcd-prefix "
        "of a kube-apiserver"]


def test_several_wrong_settings_are_all_reported():
    assert len(errors(core_reserve_percent="x", core_quota_bytes="y", core_endpoints=["z"],
                      reserved_prefixes=["w"], default_limits={**DEFAULTS, "watches": "many"})) == 5
