"""Why proxy pods do not run, as ProxyAvailable reports it (module_utils/status/pods.py, conditions.py)."""

from __future__ import annotations

import datetime
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils.names import GUARD_CONTAINER
from ansible_collections.etcdproxy.operator.plugins.module_utils.status.conditions import (
    Observed,
    desired_status,
    proxy_condition,
    requeue_after,
    transition_events,
)
from ansible_collections.etcdproxy.operator.plugins.module_utils.status.pods import Trouble, pod_trouble
from ansible_collections.etcdproxy.operator.plugins.module_utils.status.step import proxy_trouble

from .test_status import LATER, NOW, conds, deployment, rolling_out


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
                             last={"exitCode": 137, "reason": "OOMKilled"})], GUARD_CONTAINER, NOW)
    assert found is not None and found.reason == "GuardOOMKilled"
    assert "at its memory limit 6Mi" in found.message
    assert found.message.endswith("raise spec.resources.limits.memory")


def test_an_unschedulable_pod_names_the_requests_when_a_node_lacks_room():
    said = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available"
    found = pod_trouble([pod(resources={"requests": {"cpu": "64"}},
                             conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": said}])], GUARD_CONTAINER, NOW)
    assert found == Trouble("PodUnschedulable", f"pod etcd-a-1 cannot be scheduled ({said}): lower "
                                                f"spec.resources.requests (cpu: 64) or add room on the nodes")
    taint = pod(conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                             "message": "0/1 nodes are available: 1 node(s) had untolerated taint"}])
    other = pod_trouble([taint], GUARD_CONTAINER, NOW)
    assert other is not None and "spec.resources" not in other.message and "taints" in other.message


def test_an_image_that_cannot_be_pulled_names_the_operator_setting():
    found = pod_trouble([pod(state={"waiting": {"reason": "ImagePullBackOff", "message": "pull access denied"}})],
                        GUARD_CONTAINER, NOW)
    assert found is not None and found.reason == "ImagePullFailed"
    assert "reg/guard:1 (ImagePullBackOff: pull access denied)" in found.message
    assert "ETCDPROXY_GUARD_IMAGE" in found.message


def test_a_guard_that_exits_points_at_its_log():
    found = pod_trouble([pod(state=BACKOFF, last={"exitCode": 2, "reason": "Error", "message": "bad flag\n"})],
                        GUARD_CONTAINER, NOW)
    assert found == Trouble("GuardFailing", "pod etcd-a-1: the guard does not start (CrashLoopBackOff; exit code "
                                            "2, Error: bad flag): kubectl -n ops logs etcd-a-1 --previous")
    # Never started: what the kubelet says instead.
    unstarted = pod_trouble([pod(state={"waiting": {"reason": "CreateContainerConfigError",
                                                    "message": "secret \"x\" not found"}})], GUARD_CONTAINER, NOW)
    assert unstarted is not None and '(CreateContainerConfigError; secret "x" not found)' in unstarted.message


def test_starting_running_and_deleted_pods_are_no_trouble():
    assert pod_trouble([], GUARD_CONTAINER, NOW) is None
    assert pod_trouble([pod()], GUARD_CONTAINER, NOW) is None  # not scheduled yet, nothing said
    assert pod_trouble([pod(state={"waiting": {"reason": "ContainerCreating"}})], GUARD_CONTAINER, NOW) is None
    assert pod_trouble([pod(state={"running": {}})], GUARD_CONTAINER, NOW) is None
    old = pod(state=BACKOFF, last={"exitCode": 137, "reason": "OOMKilled"}, deleting=True)
    assert pod_trouble([old], GUARD_CONTAINER, NOW) is None
    # The first pod by name with trouble is the one reported, whatever order the list came in.
    a = pod("etcd-a-1", state={"waiting": {"reason": "ImagePullBackOff"}})
    b = pod("etcd-a-2", state=BACKOFF, last={"exitCode": 137, "reason": "OOMKilled"})
    assert pod_trouble([b, a], GUARD_CONTAINER, NOW).reason == "ImagePullFailed"


def unready_pod(ready_since: str, started: str = "2026-11-24T11:50:00Z", ready: bool = False) -> dict[str, Any]:
    """A running guard whose readiness probe fails (shape from a real kubelet: the pod cut off from the core)."""
    p = pod(state={"running": {"startedAt": started}},
            conditions=[{"type": "Ready", "status": "True" if ready else "False", "reason": "ContainersNotReady",
                         "message": "containers with unready status: [guard]", "lastTransitionTime": ready_since}])
    p["status"]["containerStatuses"][0].update(ready=ready, started=True, restartCount=0)
    return p


def test_a_guard_that_stopped_being_ready_is_named_at_once():
    # NOW is 12:00; it started at 11:50 and was ready until 11:59:50, when its probe failed three times.
    found = pod_trouble([unready_pod("2026-11-24T11:59:50Z")], GUARD_CONTAINER, NOW)
    assert found is not None and found.reason == "GuardNotReady"
    assert "cannot read the core etcd from the pod" in found.message
    assert found.message.endswith("kubectl -n ops logs etcd-a-1 says which")


def test_a_starting_guard_is_named_only_after_a_minute_unready():
    # Never ready: its Ready condition turned False before the guard started, at the pod's creation.
    starting = unready_pod("2026-11-24T11:59:30Z", started="2026-11-24T11:59:31Z")
    assert pod_trouble([starting], GUARD_CONTAINER, NOW) is None
    assert pod_trouble([starting], GUARD_CONTAINER, NOW + datetime.timedelta(seconds=31)).reason == "GuardNotReady"
    # Ready, or marked unready by others while its container is ready (a node that stopped reporting): not ours.
    assert pod_trouble([unready_pod("2026-11-24T11:00:00Z", ready=True)], GUARD_CONTAINER, NOW) is None


def test_long_words_from_the_kubelet_are_cut():
    found = pod_trouble([pod(state={"waiting": {"reason": "ErrImagePull", "message": "x" * 5000}})],
                        GUARD_CONTAINER, NOW)
    assert found is not None and len(found.message) < 600


OOM = Trouble("GuardOOMKilled", "pod etcd-a-1: the guard was killed for memory: raise spec.resources.limits.memory")
GUARD = Trouble("GuardNotReady", "pod etcd-a-1: the guard runs but is not ready")


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


def test_replicas_lost_after_a_finished_rollout_are_not_a_rollout_and_wake_the_operator_themselves():
    # The Deployment had finished (Progressing: NewReplicaSetAvailable); then one replica became unready.
    lost = proxy_condition(deployment(available=1, updated=2), GUARD)
    assert (lost.status, lost.reason) == ("True", "ReplicasUnavailable")
    assert lost.message == f"1/2 proxy replicas available; {GUARD.message}"
    # Its start and end are watch events (unavailableReplicas comes and goes): no look every retry period.
    status = desired_status(Observed("a", "ns", 1, deployment=deployment(available=1, updated=2),
                                     proxy_trouble=GUARD), None, NOW)
    assert requeue_after(status, 30, 60, NOW) is None
    # During a rollout the same numbers are the rollout's, looked at every retry period.
    assert proxy_condition(rolling_out(available=1, updated=2)).reason == "RollingOut"
    status = desired_status(Observed("a", "ns", 1, deployment=rolling_out(available=1, updated=2)), None, NOW)
    assert requeue_after(status, 30, 60, NOW) == 30


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
    assert proxy_trouble(kube, live(), NOW) is None  # available: no read at all
    assert proxy_trouble(kube, None, NOW) is None
    assert kube.listed == []
    found = proxy_trouble(kube, live(available=0), NOW)
    assert found is not None and found.reason == "GuardOOMKilled"
    assert kube.listed == [("ops", {"etcd.etcdproxy.dev/storage": "a"})]  # by the Deployment's own selector
