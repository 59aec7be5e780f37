"""Status of an EtcdStorage: conditions, transitions, Events and when to look again.

Plain Python, no Ansible and no Kubernetes client: the module ``etcdstorage_status``
reads the cluster, feeds what it saw to :func:`desired_status`, and writes only
what :func:`status_changes` reports as different (an unchanged EtcdStorage costs
no write).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils import names
from ansible_collections.etcdproxy.operator.plugins.module_utils.rollout import rollout
from ansible_collections.etcdproxy.operator.plugins.module_utils.secretdata import b64d
from ansible_collections.etcdproxy.operator.plugins.module_utils.status.pods import Trouble
from ansible_collections.etcdproxy.operator.plugins.module_utils.times import parse_rfc3339, rfc3339

# Condition types, in the order they are reported.
# Only when False: the tenant's prefix is the core's own users' (keyspace.reserved_overlap); nothing else
# is then looked at or reported.
PREFIX_AVAILABLE = "PrefixAvailable"
CORE_CONFIGURED = "CoreEtcdConfigured"
CORE_REACHABLE = "CoreEtcdReachable"
CERTIFICATES_READY = "CertificatesReady"
PROXY_AVAILABLE = "ProxyAvailable"
# Reported when the endpoint has published usage; informs, never blocks Ready (a tenant at its limit
# is still served: reads and deletes work).
WITHIN_LIMITS = "WithinLimits"
READY = "Ready"


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str
    message: str

    def to_dict(self, generation: int, transition: str) -> dict[str, Any]:
        return {
            "type": self.type, "status": self.status, "reason": self.reason,
            "message": self.message, "observedGeneration": generation,
            "lastTransitionTime": transition,
        }


@dataclass
class Observed:
    """What the module read from the cluster for one EtcdStorage."""

    name: str
    namespace: str
    generation: int
    config_errors: list[str] = field(default_factory=list)
    # Problems with the admin-provided core etcd material (empty: fine).
    core_problems: list[str] = field(default_factory=list)
    # Problems with this tenant's certificates; None while certificates are
    # not managed by this reconcile (the condition is then left out).
    certificate_problems: list[str] | None = None
    deployment: dict[str, Any] | None = None
    # Why the proxy's pods do not run (status/pods.py), looked for only while its rollout is incomplete.
    proxy_trouble: Trouble | None = None
    # Result of the core etcd health check: None when not checked, "" when healthy, else what failed.
    core_health: str | None = None
    # Proxy objects that still differ from the spec (applied right after this
    # run); observedGeneration is only advanced once none are left.
    pending: list[str] = field(default_factory=list)
    # From the endpoint's usage records (usage.summarize); None: none published.
    limits: Condition | None = None
    # What the API server said when the proxy objects were last applied and refused ("": not refused).
    apply_error: str = ""
    # For an EtcdStorage created from a backup (spec.restoreFrom): the Restored condition (module_utils/clone.py).
    restore: Condition | None = None
    # Why the tenant's prefix cannot be served (keyspace.reserved_message); "" when it can.
    prefix_reserved: str = ""




def check_core_material(configmap: dict[str, Any] | None, secret: dict[str, Any] | None,
                        namespace: str, configmap_name: str, ca_key: str, secret_name: str,
                        parse_certs: Any = None) -> list[str]:
    """Problems with the core etcd CA ConfigMap and client Secret, each naming the fix."""
    problems: list[str] = []
    if configmap is None:
        problems.append(
            f"ConfigMap {namespace}/{configmap_name} with the core etcd CA is missing: create it with key "
            f"{ca_key} holding the PEM CA that signed the core etcd serving certificates")
    else:
        pem = (configmap.get("data") or {}).get(ca_key)
        if not pem:
            problems.append(f"ConfigMap {namespace}/{configmap_name} has no key {ca_key}: put the core etcd "
                            f"CA bundle (PEM) under {ca_key}")
        elif parse_certs is not None:
            try:
                parse_certs(pem)
            except ValueError:
                problems.append(f"ConfigMap {namespace}/{configmap_name} key {ca_key} is not a PEM "
                                f"certificate bundle: replace it with the core etcd CA")
    if secret is None:
        problems.append(
            f"Secret {namespace}/{secret_name} with the core etcd client certificate is missing: create a "
            f"kubernetes.io/tls Secret with tls.crt and tls.key (a client certificate the core etcd trusts)")
    else:
        data = secret.get("data") or {}
        absent = [k for k in ("tls.crt", "tls.key") if not data.get(k)]
        if absent:
            problems.append(f"Secret {namespace}/{secret_name} lacks {' and '.join(absent)}: it must hold the "
                            f"core etcd client certificate and key")
        elif parse_certs is not None:
            try:
                parse_certs(b64d(data["tls.crt"]))
            except ValueError:
                problems.append(f"Secret {namespace}/{secret_name} tls.crt is not a PEM certificate")
    return problems


def proxy_condition(deployment: dict[str, Any] | None, trouble: Trouble | None = None) -> Condition:
    """From the proxy Deployment; ``trouble``: why its pods do not run (status/pods.py), named instead of
    the Deployment's own words while the rollout is incomplete."""
    if deployment is None:
        return Condition(PROXY_AVAILABLE, "False", "DeploymentMissing", "the proxy Deployment does not exist yet")
    state = rollout(deployment)
    want, available, updated = state.want, state.available, state.updated
    conds = {c.get("type"): c for c in (deployment.get("status") or {}).get("conditions") or []}
    progressing = conds.get("Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        if trouble:
            return Condition(PROXY_AVAILABLE, "False", trouble.reason,
                             f"proxy rollout is stuck, {available}/{want} replicas available: {trouble.message}")
        return Condition(PROXY_AVAILABLE, "False", "ProgressDeadlineExceeded",
                         f"proxy rollout is stuck: {progressing.get('message', '')}".strip())
    if available < 1:
        if trouble:
            return Condition(PROXY_AVAILABLE, "False", trouble.reason,
                             f"0/{want} proxy replicas available: {trouble.message}")
        return Condition(PROXY_AVAILABLE, "False", "NoReplicasAvailable",
                         f"0/{want} proxy replicas available; pods wait for the core etcd material and "
                         f"the certificates they mount")
    if not state.current or updated < want or available < want:
        failing = f"; {trouble.message}" if trouble else ""
        if state.current and updated >= want and progressing.get("reason") == "NewReplicaSetAvailable":
            # The rollout had ended (every replica was available); some are not now: not a rollout.
            return Condition(PROXY_AVAILABLE, "True", "ReplicasUnavailable",
                             f"{available}/{want} proxy replicas available{failing}")
        return Condition(PROXY_AVAILABLE, "True", "RollingOut",
                         f"{available}/{want} proxy replicas available, {updated} updated{failing}")
    return Condition(PROXY_AVAILABLE, "True", "MinimumReplicasAvailable",
                     f"{available}/{want} proxy replicas available")


def desired_conditions(obs: Observed) -> list[Condition]:
    if obs.prefix_reserved:
        cond = Condition(PREFIX_AVAILABLE, "False", "PrefixReserved",
                         f"{obs.prefix_reserved}; nothing is served or issued for it and its keys are never "
                         f"deleted: create the EtcdStorage under another name and delete this one")
        return [cond, Condition(READY, "False", cond.reason, f"{cond.type}: {cond.message}")]
    conds: list[Condition] = []
    if obs.config_errors:
        conds.append(Condition(CORE_CONFIGURED, "False", "OperatorMisconfigured", "; ".join(obs.config_errors)))
    elif obs.core_problems:
        conds.append(Condition(CORE_CONFIGURED, "False", "CoreEtcdMaterialInvalid", "; ".join(obs.core_problems)))
    else:
        conds.append(Condition(CORE_CONFIGURED, "True", "Configured",
                               "core etcd CA and client certificate are present"))
    if obs.config_errors or obs.core_problems:
        conds.append(Condition(CORE_REACHABLE, "Unknown", "NotChecked",
                               "not checked: the core etcd material or operator settings are not usable (see "
                               f"{CORE_CONFIGURED})"))
    elif obs.core_health is not None:
        if obs.core_health:
            conds.append(Condition(CORE_REACHABLE, "False", "CoreEtcdUnreachable",
                                   f"no core etcd endpoint answered a health check ({obs.core_health}); "
                                   f"the proxies cannot serve until it is back"))
        else:
            conds.append(Condition(CORE_REACHABLE, "True", "Healthy", "the core etcd answers health checks"))
    if obs.certificate_problems is not None:
        if obs.certificate_problems:
            conds.append(Condition(CERTIFICATES_READY, "False", "CertificatesNotReady",
                                   "; ".join(obs.certificate_problems)))
        else:
            conds.append(Condition(CERTIFICATES_READY, "True", "Issued", "certificates issued and delivered"))
    if obs.restore is not None:  # before the proxy: while not filled, no proxy is applied at all
        conds.append(obs.restore)
    if obs.apply_error:
        conds.append(Condition(PROXY_AVAILABLE, "False", "ApplyFailed",
                               APPLY_FAILED_PREFIX + obs.apply_error))
    else:
        conds.append(proxy_condition(obs.deployment, obs.proxy_trouble))
    blocking = [c for c in conds if c.status != "True"]
    if obs.limits is not None:
        conds.append(obs.limits)
    if blocking:
        first = blocking[0]
        conds.append(Condition(READY, "False", first.reason, f"{first.type}: {first.message}"))
    else:
        conds.append(Condition(READY, "True", "Ready",
                               f"serving at {names.endpoint(obs.name, obs.namespace)} "
                               f"with prefix /{obs.name}/"))
    return conds


def desired_status(obs: Observed, old_status: dict[str, Any] | None, now: datetime.datetime,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole new .status; keeps lastTransitionTime of conditions whose status did not change."""
    old_conds = {c.get("type"): c for c in (old_status or {}).get("conditions") or []}
    stamp = rfc3339(now)
    observed = obs.generation if not obs.pending else int((old_status or {}).get("observedGeneration") or 0)
    conditions = []
    for cond in desired_conditions(obs):
        old = old_conds.get(cond.type)
        transition = old.get("lastTransitionTime", stamp) if old and old.get("status") == cond.status else stamp
        conditions.append(cond.to_dict(observed, transition))
    status: dict[str, Any] = dict(old_status or {})
    status.update({
        "observedGeneration": observed,
        "endpoint": names.endpoint(obs.name, obs.namespace),
        "prefix": f"/{obs.name}/",
        "conditions": conditions,
    })
    if extra:
        status.update(extra)
    return status


def status_changes(old_status: dict[str, Any] | None, new_status: dict[str, Any]) -> bool:
    return (old_status or {}) != new_status


@dataclass(frozen=True)
class Event:
    type: str  # "Normal" or "Warning"
    reason: str
    message: str


# False conditions whose message names one cause (not counts or times): a new message is a new Event.
MESSAGE_EVENTS = (CORE_CONFIGURED, CERTIFICATES_READY)


def transition_events(old_status: dict[str, Any] | None, new_status: dict[str, Any]) -> list[Event]:
    """One Event per condition whose status or reason changed, or whose cause changed (MESSAGE_EVENTS);
    never on an unchanged reconcile."""
    old = {c.get("type"): c for c in (old_status or {}).get("conditions") or []}
    events = []
    for cond in new_status.get("conditions", []):
        before = old.get(cond["type"])
        if before and before.get("status") == cond["status"] and before.get("reason") == cond["reason"]:
            # Same reason, other cause (a missing core CA now present but garbage): say it again.
            if not (cond["type"] in MESSAGE_EVENTS and cond["status"] == "False"
                    and before.get("message") != cond["message"]):
                continue
        if cond["type"] == READY and cond["status"] != "True":
            continue  # the blocking condition's own Event already says why
        if cond["status"] == "Unknown":
            continue  # not checked: the condition that stopped the check has its own Event
        if before is None and cond["status"] == "True" and cond["type"] != READY:
            continue  # don't announce every sub-condition being fine on creation
        if before is None and cond["reason"] == "DeploymentMissing":
            continue  # a new EtcdStorage's first status, written just before its proxy is applied: no Warning
        kind = "Normal" if cond["status"] == "True" else "Warning"
        events.append(Event(kind, cond["reason"], f"{cond['type']}: {cond['message']}"))
    return events


# ProxyAvailable reasons a watch event ends: the proxy fully rolled out, not there yet (its creation is one),
# or some replicas of a finished rollout unavailable (the Deployment's status gains `unavailableReplicas` and
# loses it again when they are back: a change of fields, which the dependent predicate passes; so a node
# outage that leaves hundreds of tenants a replica short costs no run every retry period).
PROXY_WATCHED_REASONS = ("MinimumReplicasAvailable", "DeploymentMissing", "ReplicasUnavailable")


# A tenant blocked for long is looked at less often: after a tenth of how long it has been so (the retry
# period at least, this at most). Fifty tenants whose pods never schedule would otherwise keep the operator's
# two workers busy every retry period for as long as nobody fixes them, and every other tenant waits behind them.
BACKOFF_DIVISOR = 10
BACKOFF_MAX_SECONDS = 600


def requeue_after(new_status: dict[str, Any], retry_seconds: int, limits_recheck_seconds: int = 60,
                  now: datetime.datetime | None = None) -> int | None:
    """Seconds until the next look when something we do not watch blocks readiness (backed off by how long
    Ready has been False, when ``now`` is given), or while the tenant is at a limit (so WithinLimits turns
    True again once it is not)."""
    for cond in new_status.get("conditions", []):
        blocked = cond["type"] in (CORE_CONFIGURED, CORE_REACHABLE, CERTIFICATES_READY) and cond["status"] != "True"
        # A refused apply, or pods that are not (all) running: ansible-operator's dependent predicate passes no
        # Deployment status change that adds no field, so neither a rollout's progress nor a pod's crash loop
        # is a watch event (status/pods.py says why they do not run).
        blocked = blocked or (cond["type"] == PROXY_AVAILABLE and cond["reason"] not in PROXY_WATCHED_REASONS)
        if blocked:
            return backed_off(new_status, retry_seconds, now)
    for cond in new_status.get("conditions", []):
        if cond["type"] == WITHIN_LIMITS and cond["status"] != "True":
            return limits_recheck_seconds
    return None


def backed_off(status: dict[str, Any], retry_seconds: int, now: datetime.datetime | None) -> int:
    """The retry period, or a tenth of how long Ready has been False when that is longer (at most
    BACKOFF_MAX_SECONDS). A Ready that is True (a rollout under a proxy that still serves) does not back off;
    a rollout that stays stuck turns ProxyAvailable, and so Ready, False at the Deployment's progress
    deadline (10 minutes), and backs off from then."""
    ready = next((c for c in status.get("conditions", []) if c["type"] == READY), None)
    if now is None or not ready or ready["status"] == "True" or not ready.get("lastTransitionTime"):
        return retry_seconds
    blocked_for = (now - parse_rfc3339(ready["lastTransitionTime"])).total_seconds()
    return max(retry_seconds, min(int(blocked_for) // BACKOFF_DIVISOR, BACKOFF_MAX_SECONDS))


APPLY_FAILED_PREFIX = "the proxy objects could not be applied: "


def previous_apply_error(old_status: dict[str, Any] | None) -> str:
    """The API server's message of a refused apply still reported in ``old_status`` ("" if none)."""
    for cond in (old_status or {}).get("conditions") or []:
        if cond.get("type") == PROXY_AVAILABLE and cond.get("reason") == "ApplyFailed":
            return str(cond.get("message") or "").removeprefix(APPLY_FAILED_PREFIX)
    return ""


def api_message(text: str) -> str:
    """The API server's own message inside a failed request's text (kubernetes.core puts the response body
    in its ``msg``), else the text itself, shortened."""
    import json
    import re

    text = text or ""
    try:  # the body is printed as a Python bytes literal: one level of escaping too many
        unescaped = text.encode("utf-8", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        unescaped = text
    for candidate in (unescaped, text):
        found = re.search(r'"message"\s*:\s*"((?:[^"\\]|\\.)*)"', candidate)
        if found:
            try:
                return str(json.loads(f'"{found.group(1)}"'))
            except ValueError:
                return found.group(1)
    return text.strip()[:500]


def merge_patch(old: Any, new: Any) -> Any:
    """The RFC 7386 JSON merge patch that turns ``old`` into ``new`` (removed keys become null)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_patch(old[key], value)
    return patch
