"""Where things live in the core etcd's keyspace, and etcd's way of naming a key range.

Tenant ``<name>``'s keys are under ``/<name>/`` (the guard's namespace). The guard keeps its own records
outside every tenant prefix (tenant prefixes start with "/"): usage reports (guard/report.go,
usageReportKey) and lease ownership markers (guard/leases.go, leaseMarkerKey). These layouts are the
guard's; this file spells them once for the operator.
"""

from __future__ import annotations

import base64
from typing import Any

REPORT_ROOT = "\x00etcdproxy-guard/usage"
LEASE_MARKER_ROOT = "\x00etcdproxy-guard/leases"


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
