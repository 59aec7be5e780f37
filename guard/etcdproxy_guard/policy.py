"""Which etcd gRPC methods a tenant may call through the guard, and how each is handled.

Default deny: a method is forwarded only if it is listed in ``FORWARD_UNARY``/``FORWARD_STREAM``.
The list is what k8s.io/apiserver (1.34-1.37) calls, plus Put/DeleteRange which stay inside the
tenant prefix like Txn does (the grpc-proxy behind the guard prefixes every key of KV, Watch and
Lease-attached keys with ``/<name>/``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

KV = "/etcdserverpb.KV/"
WATCH = "/etcdserverpb.Watch/"
LEASE = "/etcdserverpb.Lease/"
MAINTENANCE = "/etcdserverpb.Maintenance/"

STATUS = MAINTENANCE + "Status"
LEASE_GRANT = LEASE + "LeaseGrant"


class Action(enum.Enum):
    FORWARD_UNARY = "forward-unary"
    FORWARD_STREAM = "forward-stream"
    LOCAL_STATUS = "local-status"
    UNIMPLEMENTED = "unimplemented"
    DENY = "deny"


FORWARD_UNARY = frozenset({KV + "Range", KV + "Put", KV + "DeleteRange", KV + "Txn", LEASE_GRANT})
FORWARD_STREAM = frozenset({WATCH + "Watch"})
# k8s.io/apiserver 1.37 tries RangeStream first and falls back to Range only on UNIMPLEMENTED.
UNIMPLEMENTED = frozenset({KV + "RangeStream"})

# Why the well-known dangerous methods are refused; anything else gets the generic reason.
_REASONS = {
    KV + "Compact": "compaction is cluster-wide (it removes every tenant's history); "
                    "run the tenant API server with --etcd-compaction-interval=0",
    LEASE + "LeaseRevoke": "lease IDs are cluster-wide and guessable; only LeaseGrant is allowed",
    LEASE + "LeaseKeepAlive": "lease IDs are cluster-wide and guessable; only LeaseGrant is allowed",
    LEASE + "LeaseTimeToLive": "lease IDs are cluster-wide and guessable; only LeaseGrant is allowed",
    LEASE + "LeaseLeases": "lease IDs are cluster-wide and guessable; only LeaseGrant is allowed",
}
_SERVICE_REASONS = {
    MAINTENANCE: "maintenance acts on the shared core cluster",
    "/etcdserverpb.Cluster/": "membership of the shared core cluster is not tenant business",
    "/etcdserverpb.Auth/": "authentication of the shared core cluster is not tenant business",
    "/v3electionpb.Election/": "election is not namespaced by the proxy",
    "/v3lockpb.Lock/": "lock is not namespaced by the proxy",
}


@dataclass(frozen=True)
class Decision:
    action: Action
    message: str = ""


def decide(method: str) -> Decision:
    """The handling of one full gRPC method name (``/package.Service/Method``)."""
    if method in FORWARD_UNARY:
        return Decision(Action.FORWARD_UNARY)
    if method in FORWARD_STREAM:
        return Decision(Action.FORWARD_STREAM)
    if method == STATUS:
        return Decision(Action.LOCAL_STATUS)
    if method in UNIMPLEMENTED:
        return Decision(Action.UNIMPLEMENTED, f"{method} is not implemented by the etcdproxy guard")
    reason = _REASONS.get(method)
    if reason is None:
        reason = next((r for prefix, r in _SERVICE_REASONS.items() if method.startswith(prefix)),
                      "only the etcd methods an API server needs are allowed")
    return Decision(Action.DENY, f"{method} is not allowed through the etcdproxy guard: {reason}")


def lease_grant_refusal(requested_id: int) -> str:
    """Why a LeaseGrant is refused, or "" if it may go through.

    Letting a tenant choose the lease ID would tell it which IDs other tenants hold
    ("lease already exists"); API servers always let etcd choose (ID 0).
    """
    if requested_id != 0:
        return (f"{LEASE_GRANT} with a chosen ID ({requested_id}) is not allowed through the etcdproxy guard: "
                "lease IDs are cluster-wide; leave ID 0 so etcd picks one")
    return ""
