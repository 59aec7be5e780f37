"""A tenant's usage and limits as its endpoint replicas report them: ``status.usage`` and ``WithinLimits``.

Each replica of the guard keeps a small JSON record in the core etcd, outside every tenant prefix, under
``\\x00etcdproxy-guard/usage/<name>/<replica>`` (guard/report.go), attached to a lease of its own so that
it goes with the replica. :func:`read_reports` reads them through etcd's JSON gateway; the rest is
plain logic.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils import coreetcd, keyspace
from ansible_collections.etcdproxy.operator.plugins.module_utils.quantity import parse_quantity
from ansible_collections.etcdproxy.operator.plugins.module_utils.status.conditions import WITHIN_LIMITS, Condition
from ansible_collections.etcdproxy.operator.plugins.module_utils.times import parse_rfc3339

# A refusal keeps WithinLimits False this long; the role looks again this soon while it is False.
RECENT_SECONDS = 120
RECHECK_SECONDS = 60

# The guard's refusal reasons (guard/limits.go) and the condition reasons they become.
REASONS = {
    "storage": "StorageLimitReached",
    "keys": "KeyLimitReached",
    "write-rate": "WriteRateThrottled",
    "request-rate": "RequestRateThrottled",
    "watches": "WatchLimitReached",
    "leases": "LeaseLimitReached",
    "reads": "ReadLimitReached",
    "core-space": "CoreSpaceLow",
}


def report_prefix(name: str) -> tuple[str, str]:
    """(key, range_end) of every replica's record of tenant ``name``."""
    key, end = keyspace.prefix_range(keyspace.report_prefix(name))
    return key.decode(), end.decode()


def read_reports(endpoints: list[str], name: str, sess: Any, timeout: float = 3.0) -> list[dict[str, Any]] | None:
    """Every replica's record (possibly none); None when no core endpoint answered. ``sess``: a core
    session (coreetcd.session)."""
    body = keyspace.range_body(keyspace.report_prefix(name))
    for endpoint in endpoints:
        try:
            page = coreetcd.post(sess, endpoint.rstrip("/") + "/v3/kv/range", body, timeout)
        except coreetcd.CALL_ERRORS:
            continue
        out = []
        for kv in page.get("kvs") or []:
            try:
                out.append(json.loads(base64.b64decode(kv.get("value") or "")))
            except ValueError:
                continue  # not ours to judge; the guard rewrites it
        return out
    return None


def quantity_bytes(value: Any) -> int:
    """A quantity of bytes (``512Mi``, ``1.5G``, ``1048576`` or an int) as an int, fractions of a byte
    rounded up as the guard does; 0 for empty."""
    import math

    if value in (None, ""):
        return 0
    return math.ceil(parse_quantity(str(value)))


def human_bytes(n: int) -> str:
    """A byte count as Kubernetes quantities read (Ki, Mi, Gi), one decimal."""
    value = float(n)
    for unit in ("", "Ki", "Mi", "Gi", "Ti"):
        if value < 1024 or unit == "Ti":
            return f"{n}" if unit == "" else f"{value:.1f}{unit}"
        value /= 1024
    return str(n)


def _when(text: str) -> datetime.datetime | None:
    try:
        return parse_rfc3339(text)
    except (AttributeError, ValueError):
        return None


def summarize(reports: list[dict[str, Any]], limits: dict[str, Any], now: datetime.datetime
              ) -> tuple[dict[str, Any] | None, Condition | None]:
    """``status.usage`` and the ``WithinLimits`` condition from the replicas' records (None, None: no record).

    Bytes, keys and leases come from the record of the replica that saw the latest revision (every replica
    follows the same keys and counts the same leases in the core); watches are added up; the most recent
    refusal within RECENT_SECONDS decides the condition, else a limit reached by the live figures.
    """
    if not reports:
        return None, None
    latest = max(reports, key=lambda r: (int(r.get("revision") or 0), str(r.get("measuredAt") or "")))
    used, keys = int(latest.get("bytes") or 0), int(latest.get("keys") or 0)
    leases, leases_limit = int(latest.get("leases") or 0), int(limits.get("leases") or 0)
    storage_limit, keys_limit = quantity_bytes(limits.get("storage")), int(limits.get("keys") or 0)
    storage_text = str(limits.get("storage") or 0)
    usage = {
        "bytes": used, "keys": keys, "watches": sum(int(r.get("watches") or 0) for r in reports),
        "leases": leases, "storageLimit": storage_text, "keysLimit": keys_limit, "leasesLimit": leases_limit,
        "summary": f"{human_bytes(used)}/{storage_text if storage_limit else 'none'}",
        "measuredAt": str(latest.get("measuredAt") or ""),
    }
    recent = []
    for r in reports:
        note = r.get("lastRefusal") or {}
        at = _when(str(note.get("at") or ""))
        if at is not None and (now - at).total_seconds() < RECENT_SECONDS and note.get("reason") in REASONS:
            recent.append((at, note))
    if recent:
        _, note = max(recent, key=lambda x: x[0])
        return usage, Condition(WITHIN_LIMITS, "False", REASONS[note["reason"]],
                                f"refused at {note['at']}: {note.get('message', '')}")
    if storage_limit and used >= storage_limit:
        return usage, Condition(WITHIN_LIMITS, "False", REASONS["storage"],
                                f"{human_bytes(used)} used of {storage_text} (spec.limits.storage)")
    if keys_limit and keys >= keys_limit:
        return usage, Condition(WITHIN_LIMITS, "False", REASONS["keys"],
                                f"{keys} keys of {keys_limit} (spec.limits.keys)")
    if leases_limit and leases >= leases_limit:
        return usage, Condition(WITHIN_LIMITS, "False", REASONS["leases"],
                                f"{leases} live leases of {leases_limit} (spec.limits.leases)")
    return usage, Condition(WITHIN_LIMITS, "True", "WithinLimits", "the tenant is within its limits")
