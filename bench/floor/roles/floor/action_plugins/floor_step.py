"""The floor role's one step, in the task's worker as our reconcile runs (bench/floor.py): read the
Deployment; return it and its Service to apply when it is missing; write Ready=True on the Floor once a
replica is available (not again when the Floor's status, as ansible-operator passed it, already says so)."""

from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase
from ansible_collections.etcdproxy.operator.plugins.module_utils.kube import api_client, object_path

FLOOR_PATH = "/apis/bench.etcdproxy.dev/v1/floors"
LABELS = {"app.kubernetes.io/name": "floor-proxy"}


def objects(name: str, namespace: str) -> list[dict[str, Any]]:
    labels = {**LABELS, "app.kubernetes.io/instance": name}
    container = {"name": "proxy", "image": "etcdproxy-guard:floor", "ports": [{"containerPort": 2379}],
                 "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": f"floor-{name}", "namespace": namespace, "labels": labels},
                  "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                           "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": f"floor-{name}", "namespace": namespace, "labels": labels},
               "spec": {"selector": labels, "ports": [{"port": 2379, "targetPort": 2379}]}}
    return [deployment, service]


class ActionModule(ActionBase):
    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        name, namespace = self._task.args["name"], self._task.args["namespace"]
        api = api_client()
        deployment = api.get(object_path("Deployment", namespace, f"floor-{name}"))
        if deployment is None:
            return {"changed": False, "apply": objects(name, namespace)}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (self._task.args.get("status") or {}).get("conditions", []))
        if (deployment.get("status") or {}).get("availableReplicas", 0) >= 1 and not ready:
            condition = {"type": "Ready", "status": "True", "reason": "Available", "message": "",
                         "lastTransitionTime": deployment["metadata"]["creationTimestamp"]}
            api.request("PATCH", f"{FLOOR_PATH}/{name}/status", {"status": {"conditions": [condition]}},
                        content_type="application/merge-patch+json")
            return {"changed": True, "apply": []}
        return {"changed": False, "apply": []}
