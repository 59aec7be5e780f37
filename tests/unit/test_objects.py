"""The drift check that keeps unchanged reconciles free of writes."""

from __future__ import annotations

from decimal import Decimal

from ansible_collections.etcdproxy.operator.plugins.module_utils.drift import (
    contains,
    drifted,
    missing_owners,
    parse_quantity,
)

DESIRED = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "etcd-a", "namespace": "ns", "labels": {"app": "x"}},
    "spec": {"selector": {"app": "x"}, "ports": [{"name": "client", "port": 2379, "targetPort": "client"}]},
}


def live(**spec_overrides):
    obj = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "etcd-a", "namespace": "ns", "labels": {"app": "x", "other": "y"},
                     "annotations": {"a": "b"}, "resourceVersion": "7", "uid": "u",
                     "ownerReferences": [{"uid": "o"}]},
        "spec": {"selector": {"app": "x"}, "clusterIP": "10.96.0.5", "type": "ClusterIP",
                 "ports": [{"name": "client", "port": 2379, "protocol": "TCP", "targetPort": "client"}]},
        "status": {"loadBalancer": {}},
    }
    obj["spec"].update(spec_overrides)
    return obj


def test_server_defaults_and_foreign_labels_are_not_drift():
    assert drifted(DESIRED, live()) is None


def test_missing_object_and_changed_fields_are_drift():
    assert drifted(DESIRED, None) == "missing"
    assert drifted(DESIRED, live(selector={"app": "z"})) == ".spec.selector.app"
    assert drifted(DESIRED, live(ports=[])) == ".spec.ports"
    changed = live(ports=[{"name": "client", "port": 2380, "protocol": "TCP", "targetPort": "client"}])
    assert drifted(DESIRED, changed) == ".spec.ports[0].port"


def test_lists_compare_in_order():
    assert contains([1, 2], [2, 1]) == "[0]"
    assert contains([{"a": 1}], [{"a": 1, "b": 2}]) is None


def test_empty_desired_values_match_absent_keys():
    assert contains({"x": {}, "y": [], "z": None}, {}) is None


def test_quantities_compare_by_value_only_under_resources():
    assert contains({"resources": {"requests": {"cpu": 0.5}}}, {"resources": {"requests": {"cpu": "500m"}}}) is None
    assert contains({"resources": {"limits": {"memory": "1Gi"}}},
                    {"resources": {"limits": {"memory": "1024Mi"}}}) is None
    assert contains({"resources": {"limits": {"memory": "1G"}}},
                    {"resources": {"limits": {"memory": "1Gi"}}}) == ".resources.limits.memory"
    assert contains({"image": "0.5"}, {"image": "500m"}) == ".image"


def test_parse_quantity():
    assert parse_quantity("64Mi") == 64 * 2**20
    assert parse_quantity("50m") == Decimal("0.05")
    assert parse_quantity("2") == 2
    assert parse_quantity("abc") is None and parse_quantity(True) is None


def test_missing_owners_compares_by_uid_and_ignores_the_live_objects_others():
    es = {"apiVersion": "etcd.etcdproxy.dev/v1alpha1", "kind": "EtcdStorage", "name": "a", "uid": "u-es"}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "name": "core-ca", "uid": "u-cm"}
    live = {"metadata": {"ownerReferences": [{**es, "blockOwnerDeletion": True}, {"uid": "someone-else"}]}}
    assert missing_owners(live, [es, cm]) == [cm]
    assert missing_owners(live, [es]) == []
    assert missing_owners({"metadata": {}}, [es]) == [es]


def test_only_a_service_that_exists_is_merge_patched():
    from ansible_collections.etcdproxy.operator.plugins.module_utils.drift import object_key
    from ansible_collections.etcdproxy.operator.plugins.module_utils.status.step import merge_patched

    dep = {"kind": "Deployment", "metadata": {"name": "etcd-a", "namespace": "ns"}}
    svc = {"kind": "Service", "metadata": {"name": "etcd-a", "namespace": "ns"}}
    # Both new: one apply call creates both.
    assert merge_patched([dep, svc], {object_key(dep): "missing", object_key(svc): "missing"}) == []
    # The Service exists and differs: a merge patch (its ports list replaced whole).
    assert merge_patched([dep, svc], {object_key(dep): "spec.replicas", object_key(svc): "spec.ports"}) == [svc]


def test_the_k8s_calls_apply_then_merge_patch_then_delete_and_are_none_when_nothing_differs():
    from ansible_collections.etcdproxy.operator.plugins.module_utils.status.step import k8s_calls

    dep = {"kind": "Deployment", "metadata": {"name": "etcd-a", "namespace": "ns"}}
    svc = {"kind": "Service", "metadata": {"name": "etcd-a", "namespace": "ns"}}
    assert k8s_calls([], [], []) == []
    assert k8s_calls([dep, svc], [], []) == [{"apply": True, "definition": [dep, svc]}]
    assert k8s_calls([dep, svc], [svc], []) == [{"apply": True, "definition": [dep]},
                                                {"merge_type": "merge", "definition": [svc]}]
    assert k8s_calls([svc], [svc], []) == [{"merge_type": "merge", "definition": [svc]}]
    # A reserved prefix: nothing to apply, what exists deleted.
    assert k8s_calls([], [], [dep, svc]) == [{"state": "absent", "definition": [dep, svc]}]
