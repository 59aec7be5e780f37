"""Why proxy pods do not run, as ProxyAvailable reports it (module_utils/status/pods.py, conditions.py)."""

from __future__ import annotations

from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils.names import GUARD_CONTAINER
from ansible_collections.etcdproxy.operator.plugins.module_utils.status.conditions import (
    Observed,
    desired_status,
    proxy_condition,
    transition_events,
)
from ansible_collections.etcdproxy.operator.plugins.module_utils.status.pods import Trouble, pod_trouble
from ansible_collections.etcdproxy.operator.plugins.module_utils.status.step import proxy_trouble

from .test_status import LATER, NOW, conds, deployment


def pod(name: str = "etcd-a-1", resources: dict[str, Any] | None = None, state: dict[str, Any] | None = None,
        last: dict[str, Any] | None = None, conditions: list[dict[str, Any]] | None = None,
        deleting: bool = False) -> dict[str, Any]:
    """A proxy pod as the API server returns one (shapes taken from a real kubelet's)."""
    meta: dict[str, Any] = {"name": name, "namespace": "ops"}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-30T12:00:00Z"
    status: dict[str, Any] = {"conditions": conditions or []}
    if state is not None:
        status["containerStatuses"] = [{"name": GUARD_CONTAINER, "restartCount": 4, "state": state,
                                        "lastState": {"terminated": last} if last else {}}]
    return {"metadata": meta, "spec": {"containers": [{"name": GUARD_CONTAINER, "image": "reg/guard:1",
                                                        "resources": resources or {}}]},
            "status": status}


BACKOFF = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting failed container"}}


def test_an_oom_killed_guard_names_the_memory_limit():
    found = pod_trouble([pod(resources={"limits": {"memory": "6Mi"}}, state=BACKOFF,
                             last={"exitCode": 137, "reason": "OOMKilled"})], GUARD_CONTAINER)
    assert found is not None and found.reason == "GuardOOMKilled"
    assert "at its memory limit 6Mi" in found.message
    assert found.message.endswith("raise spec.resources.limits.memory")


def test_an_unschedulable_pod_names_the_requests_when_a_node_lacks_room():
    said = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available"
    found = pod_trouble([pod(resources={"requests": {"cpu": "64"}},
                             conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": said}])], GUARD_CONTAINER)
    assert found == Trouble("PodUnschedulable", f"pod etcd-a-1 cannot be scheduled ({said}): lower "
                                                f"spec.resources.requests (cpu: 64) or add room on the nodes")
    taint = pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                             "message": "0/1 nodes are available: 1 node(s) had untolerated taint"}])
    other = pod_trouble([taint], GUARD_CONTAINER)
    assert other is not None and "spec.resources" not in other.message and "taints" in other.message


def test_an_image_that_cannot_be_pulled_names_the_operator_setting():
    found = pod_trouble([pod(state={"waiting": {"reason": "ImagePullBackOff", "message": "pull access denied"}})],
                        GUARD_CONTAINER)
    assert found is not None and found.reason == "ImagePullFailed"
    assert "reg/guard:1 (ImagePullBackOff: pull access denied)" in found.message
    assert "ETCDPROXY_GUARD_IMAGE" in found.message


def test_a_guard_that_exits_points_at_its_log():
    found = pod_trouble([pod(state=BACKOFF, last={"exitCode": 2, "reason": "Error", "message": "bad flag\n"})],
                        GUARD_CONTAINER)
    assert found == Trouble("GuardFailing", "pod etcd-a-1: the guard does not start (CrashLoopBackOff; exit code "
                                            "2, Error: bad flag): kubectl -n ops logs etcd-a-1 --previous")
    # Never started: what the kubelet says instead.
    unstarted = pod_trouble([pod(state={"waiting": {"reason": "CreateContainerConfigError",
                                                    "message": "secret \"x\" not found"}})], GUARD_CONTAINER)
    assert unstarted is not None and '(CreateContainerConfigError; secret "x" not found)' in unstarted.message


def test_starting_running_and_deleted_pods_are_no_trouble():
    assert pod_trouble([], GUARD_CONTAINER) is None
    assert pod_trouble([pod()], GUARD_CONTAINER) is None  # not scheduled yet, nothing said
    assert pod_trouble([pod(state={"waiting": {"reason": "ContainerCreating"}})], GUARD_CONTAINER) is None
    assert pod_trouble([pod(state={"running": {}})], GUARD_CONTAINER) is None
    old = pod(state=BACKOFF, last={"exitCode": 137, "reason": "OOMKilled"}, deleting=True)
    assert pod_trouble([old], GUARD_CONTAINER) is None
    # The first pod by name with trouble is the one reported, whatever order the list came in.
    a = pod("etcd-a-1", state={"waiting": {"reason": "ImagePullBackOff"}})
    b = pod("etcd-a-2", state=BACKOFF, last={"exitCode": 137, "reason": "OOMKilled"})
    assert pod_trouble([b, a], GUARD_CONTAINER).reason == "ImagePullFailed"


def test_long_words_from_the_kubelet_are_cut():
    found = pod_trouble([pod(state={"waiting": {"reason": "ErrImagePull", "message": "x" * 5000}})], GUARD_CONTAINER)
    assert found is not None and len(found.message) < 600


OOM = Trouble("GuardOOMKilled", "pod etcd-a-1: the guard was killed for memory: raise spec.resources.limits.memory")


def test_the_trouble_replaces_the_deployments_words_while_nothing_serves():
    none = proxy_condition(deployment(available=0, updated=2), OOM)
    assert (none.status, none.reason) == ("False", "GuardOOMKilled")
    assert none.message == f"0/2 proxy replicas available: {OOM.message}"
    stuck = proxy_condition(deployment(available=2, updated=1, progressing="ProgressDeadlineExceeded"), OOM)
    assert (stuck.status, stuck.reason) == ("False", "GuardOOMKilled") and OOM.message in stuck.message
    # Old pods still serve while the new ones fail: still available, and said.
    rolling = proxy_condition(deployment(available=2, updated=1), OOM)
    assert (rolling.status, rolling.reason) == ("True", "RollingOut") and rolling.message.endswith(OOM.message)
    # Without trouble, what was said before.
    assert proxy_condition(deployment(available=0)).reason == "NoReplicasAvailable"


def test_the_trouble_is_a_warning_event_and_ready_says_it():
    starting = desired_status(Observed("a", "ns", 1, deployment=deployment(available=0)), None, NOW)
    failing = desired_status(Observed("a", "ns", 1, deployment=deployment(available=0), proxy_trouble=OOM),
                             starting, LATER)
    assert conds(failing)["Ready"]["message"] == f"ProxyAvailable: 0/2 proxy replicas available: {OOM.message}"
    assert [(e.type, e.reason) for e in transition_events(starting, failing)] == [("Warning", "GuardOOMKilled")]


class PodLister:
    """Stands in for Kube: answers pod lists, and counts them."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.listed: list[tuple[str, dict[str, str]]] = []
        self._pods = pods

    def pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        self.listed.append((namespace, labels))
        return self._pods


def live(**kwargs: Any) -> dict[str, Any]:
    d = deployment(**kwargs)
    d["metadata"]["namespace"] = "ops"
    d["spec"]["selector"] = {"matchLabels": {"etcd.etcdproxy.dev/storage": "a"}}
    d["status"]["replicas"] = d["spec"]["replicas"]
    return d


def test_pods_are_read_only_while_the_rollout_is_incomplete():
    failing = [pod(state=BACKOFF, last={"exitCode": 137, "reason": "OOMKilled"})]
    kube = PodLister(failing)
    assert proxy_trouble(kube, live()) is None  # available: no read at all
    assert proxy_trouble(kube, None) is None
    assert kube.listed == []
    found = proxy_trouble(kube, live(available=0))
    assert found is not None and found.reason == "GuardOOMKilled"
    assert kube.listed == [("ops", {"etcd.etcdproxy.dev/storage": "a"})]  # by the Deployment's own selector
