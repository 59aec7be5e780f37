"""Why proxy pods do not become available, read from the pods themselves.

Admission accepts resources the guard cannot run with (a memory limit below what it needs, requests no
node can hold), and the operator's settings can name an image nodes cannot pull. The Deployment only says
that replicas are unavailable; the pods say why, and that is what ProxyAvailable reports, with the field
to change. Plain Python over pod objects as the API server returns them (read only while a rollout is
incomplete: an available proxy costs no read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Waiting reasons of a container that will not start by itself.
IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
START_REASONS = ("CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "RunContainerError")


@dataclass(frozen=True)
class Trouble:
    reason: str  # the ProxyAvailable reason
    message: str  # what is wrong and what to change


def pod_trouble(pods: list[dict[str, Any]], container: str) -> Trouble | None:
    """The first problem that keeps a proxy pod from running ``container``, or None if there is none
    (pods still starting, or none yet). Pods being deleted are not looked at."""
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("name") or ""):
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        found = _trouble(pod, str(meta.get("name") or ""), container)
        if found:
            return found
    return None


def _trouble(pod: dict[str, Any], name: str, container: str) -> Trouble | None:
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
    waiting = (state.get("state") or {}).get("waiting") or {}
    last = (state.get("lastState") or {}).get("terminated") or {}
    now = (state.get("state") or {}).get("terminated") or {}
    if "OOMKilled" in (last.get("reason"), now.get("reason")):
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
    if reason in START_REASONS:
        namespace = (pod.get("metadata") or {}).get("namespace") or ""
        return Trouble("GuardFailing",
                       f"pod {name}: the guard does not start ({reason}; {_short(_ended(last or now, waiting))}): "
                       f"kubectl -n {namespace} logs {name} --previous")
    return None


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
