"""Why proxy pods do not become available, read from the pods themselves.

Admission accepts resources the guard cannot run with (a memory limit below what it needs, requests no
node can hold), and the operator's settings can name an image nodes cannot pull. The Deployment only says
that replicas are unavailable; the pods say why, and that is what ProxyAvailable reports, with the field
to change. Plain Python over pod objects as the API server returns them (read only while a rollout is
incomplete: an available proxy costs no read).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils.times import parse_rfc3339

# Waiting reasons of a container that will not start by itself.
IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
START_REASONS = ("CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "RunContainerError")
# How long a running guard may stay unready before it is reported: its readiness probe runs every 10 s
# and a starting guard reads the tenant's usage first (seconds, even at the key limit).
NOT_READY_AFTER = datetime.timedelta(minutes=1)


@dataclass(frozen=True)
class Trouble:
    reason: str  # the ProxyAvailable reason
    message: str  # what is wrong and what to change


def pod_trouble(pods: list[dict[str, Any]], container: str, now: datetime.datetime) -> Trouble | None:
    """The first problem that keeps a proxy pod from running ``container`` or from serving (a guard that runs
    but is not ready), or None if there is none (pods still starting, or none yet). Pods being deleted are
    not looked at."""
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("name") or ""):
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        found = _trouble(pod, str(meta.get("name") or ""), container, now)
        if found:
            return found
    return None


def _trouble(pod: dict[str, Any], name: str, container: str, now: datetime.datetime) -> Trouble | None:
    status = pod.get("status") or {}
    spec_container = next((c for c in (pod.get("spec") or {}).get("containers") or []
                           if c.get("name") == container), {})
    resources = spec_container.get("resources") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" \
                and cond.get("reason") == "Unschedulable":
            said = _short(str(cond.get("message") or "no node fits it").strip())
            requests = resources.get("requests") or {}
            fix = (f"lower spec.resources.requests ({_quantities(requests)}) or add room on the nodes"
                   if "Insufficient" in said and requests else "make a node fit it (taints, selectors, room)")
            return Trouble("PodUnschedulable", f"pod {name} cannot be scheduled ({said}): {fix}")
    state = next((s for s in status.get("containerStatuses") or [] if s.get("name") == container), None)
    if state is None:
        return None
    current = state.get("state") or {}
    waiting = current.get("waiting") or {}
    last = (state.get("lastState") or {}).get("terminated") or {}
    ended = current.get("terminated") or {}
    if "OOMKilled" in (last.get("reason"), ended.get("reason")):
        limit = (resources.get("limits") or {}).get("memory")
        at = f" at its memory limit {limit}" if limit else ""
        # No restart count: the message stays the same while the pod keeps failing (no status write).
        return Trouble("GuardOOMKilled",
                       f"pod {name}: the guard was killed for memory (OOMKilled){at}: "
                       f"raise spec.resources.limits.memory")
    reason = waiting.get("reason")
    if reason in IMAGE_REASONS:
        return Trouble("ImagePullFailed",
                       f"pod {name} cannot pull the guard image {spec_container.get('image', '')} ({reason}"
                       f"{': ' + _short(waiting['message']) if waiting.get('message') else ''}): set the operator's "
                       f"ETCDPROXY_GUARD_IMAGE to an image the nodes can pull")
    namespace = (pod.get("metadata") or {}).get("namespace") or ""
    if reason in START_REASONS:
        return Trouble("GuardFailing",
                       f"pod {name}: the guard does not start ({reason}; {_short(_ended(last or ended, waiting))}): "
                       f"kubectl -n {namespace} logs {name} --previous")
    running = current.get("running")
    if running is not None and not state.get("ready") and _unready(status, running, now):
        # Its /readyz fails: the core etcd does not answer the pod, or the guard is still reading the
        # tenant's usage. The kubelet's probe Event says only "503"; the guard logs which.
        return Trouble("GuardNotReady",
                       f"pod {name}: the guard runs but is not ready: it cannot read the core etcd from the pod "
                       f"(network policies, firewalls between the pods and the core's endpoints) or is still "
                       f"reading the tenant's usage; kubectl -n {namespace} logs {name} says which")
    return None


def _unready(status: dict[str, Any], running: dict[str, Any], now: datetime.datetime) -> bool:
    """The pod's Ready condition turned False after its guard started (it was ready, then failed its
    readiness probe), or has been False for NOT_READY_AFTER (it never got ready)."""
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    if ready.get("status") != "False" or not ready.get("lastTransitionTime"):
        return False
    since = parse_rfc3339(str(ready["lastTransitionTime"]))
    started = running.get("startedAt")
    return (bool(started) and since > parse_rfc3339(str(started))) or now - since >= NOT_READY_AFTER


def _ended(terminated: dict[str, Any], waiting: dict[str, Any]) -> str:
    """How the container last ended (exit code, reason, its last words), else what the kubelet says."""
    if not terminated:
        return str(waiting.get("message") or waiting.get("reason") or "")
    said = [f"exit code {terminated.get('exitCode')}"]
    if terminated.get("reason"):
        said.append(str(terminated["reason"]))
    words = str(terminated.get("message") or "").strip()
    return ", ".join(said) + (f": {words}" if words else "")


def _short(text: str, limit: int = 300) -> str:
    """What a kubelet or scheduler said, cut to a length a condition message can carry."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _quantities(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(values.items()))
