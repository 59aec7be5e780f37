"""Where things live in the core etcd's keyspace, and etcd's way of naming a key range.

Tenant ``<name>``'s keys are under ``/<name>/`` (the guard's namespace). The guard keeps its own records
outside every tenant prefix (tenant prefixes start with "/"): usage reports (guard/report.go,
usageReportKey) and lease ownership markers (guard/leases.go, leaseMarkerKey). These layouts are the
guard's; this file spells them once for the operator.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

REPORT_ROOT = "\x00etcdproxy-guard/usage"
LEASE_MARKER_ROOT = "\x00etcdproxy-guard/leases"
# Where the main kube-apiserver keeps the cluster's objects (its --etcd-prefix default): never a tenant's.
# The CRD refuses the name at admission too (tests/unit/test_keyspace.py holds the two together); the
# operator setting ETCDPROXY_RESERVED_PREFIXES adds the core's other users.
KUBE_APISERVER_PREFIX = "/registry"


def prefix_range(prefix: bytes) -> tuple[bytes, bytes]:
    """[key, range_end) covering exactly the keys that start with ``prefix`` (which ends with "/")."""
    return prefix, prefix[:-1] + bytes([prefix[-1] + 1])


def range_body(prefix: bytes, start: bytes | None = None, **options: Any) -> dict[str, Any]:
    """A JSON-gateway request body for the keys under ``prefix`` (from ``start`` on, if given)."""
    key, end = prefix_range(prefix)
    return {"key": base64.b64encode(start or key).decode(), "range_end": base64.b64encode(end).decode(),
            **options}


def tenant_prefix(name: str) -> bytes:
    return f"/{name}/".encode()


def reserved_overlap(name: str, reserved: Iterable[str] = ()) -> str:
    """The first key prefix the core's own users keep (KUBE_APISERVER_PREFIX, then ``reserved``) that shares
    keys with tenant ``name``'s prefix, "" if none. A prefix P holds the keys under ``P/``, as a kube-apiserver's
    --etcd-prefix does: ``/registry`` is tenant ``registry``'s, not ``registry-b``'s; ``/registry/k8s`` is inside
    tenant ``registry``'s."""
    mine = tenant_prefix(name).decode()
    for prefix in (KUBE_APISERVER_PREFIX, *(p for p in reserved if p.strip())):
        theirs = prefix.rstrip("/") + "/"
        if mine.startswith(theirs) or theirs.startswith(mine):
            return prefix
    return ""


def reserved_message(name: str, prefix: str) -> str:
    """Why nothing is done for tenant ``name`` whose prefix shares keys with reserved ``prefix``."""
    return (f"metadata.name: the prefix /{name}/ shares keys with {prefix}, which the core etcd's own users keep "
            f"(the main kube-apiserver's {KUBE_APISERVER_PREFIX}, and ETCDPROXY_RESERVED_PREFIXES); a tenant there "
            f"would read and write their data")


def report_prefix(name: str) -> bytes:
    return f"{REPORT_ROOT}/{name}/".encode()


def lease_marker_prefix(name: str) -> bytes:
    return f"{LEASE_MARKER_ROOT}/{name}/".encode()


def lease_marker_id(key: bytes) -> int | None:
    """The lease a marker key ``<LEASE_MARKER_ROOT>/<name>/<hex id>`` names (None if it is not one)."""
    try:
        return int(key.rsplit(b"/", 1)[1], 16)
    except (IndexError, ValueError):
        return None
