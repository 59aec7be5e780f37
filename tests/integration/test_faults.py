"""Faults around the operator: the core etcd unreachable, the kube-apiserver restarting."""

from __future__ import annotations

from localcp.netfault import Forwarder


def test_core_unreachable_is_reported_and_recovers(storages, operator, cp):
    core_port = int(cp.etcd_endpoints[0].rsplit(":", 1)[1])
    link = Forwarder(core_port).start()
    # The operator (and its proxies) reach the core only through the link.
    with operator.restarted(core_endpoints=f"https://127.0.0.1:{link.port}"):
        try:
            name = storages.unique("partition")
            storages.create(name, {"replicas": 1})
            storages.wait_condition(name, "Ready", "True")
            assert storages.condition(name, "CoreEtcdReachable")["status"] == "True"
            storages.patch(name, {"metadata": {"annotations": {
                "ansible.sdk.operatorframework.io/reconcile-period": "1s"}}})
            link.cut()
            cond = storages.wait_condition(name, "CoreEtcdReachable", "False", reason="CoreEtcdUnreachable")
            assert f"https://127.0.0.1:{link.port}" in cond["message"]
            assert storages.condition(name, "Ready")["status"] == "False"
            link.restore()
            storages.wait_condition(name, "Ready", "True")
        finally:
            link.cut()


def test_operator_recovers_from_a_kube_apiserver_restart(storages, cp):
    first = storages.unique("before")
    storages.create(first, {"replicas": 1})
    storages.wait_condition(first, "Ready", "True")
    cp.restart_apiserver()
    second = storages.unique("after")
    storages.create(second, {"replicas": 1})
    storages.wait_condition(second, "Ready", "True")
    gen = storages.patch(first, {"spec": {"replicas": 2}})["metadata"]["generation"]
    storages.wait("spec change after the restart applied", lambda: storages.get(first)["status"].get(
        "observedGeneration") == gen and (storages.deployment(first) or {}).get("spec", {}).get("replicas") == 2)
