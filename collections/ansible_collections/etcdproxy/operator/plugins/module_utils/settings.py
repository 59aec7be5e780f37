"""The operator's own settings (its environment, roles/etcdstorage/defaults/main.yml): what is wrong with them.

Checked in the module rather than in the role's Jinja: ansible templates every expression again wherever a
variable is used, so the same checks written as role variables cost ~0.1 s of every reconcile (docs/design.md,
"Where apply->Ready goes"). A problem here is reported as CoreEtcdConfigured=False (OperatorMisconfigured) and
keeps the proxy objects from being applied; it names the environment variable and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# The limits given in bytes (quantities); the others are counts or rates (integers). The guard parses the same
# fields as quantities (guard/limits.go; tests/unit/test_usage.py checks they agree).
BYTE_LIMITS = ("storage", "writeBytesPerSecond", "writeBurst", "readBytesInFlight")

_WHOLE_BYTES = re.compile(r"[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?")
_INTEGER = re.compile(r"[0-9]+")
_PERCENT = re.compile(r"[0-9]|[1-8][0-9]|90")
_ENDPOINT = re.compile(r"https://[^,/]+")


def settings_errors(default_limits: Mapping[str, Any], core_reserve_percent: str | None, core_quota_bytes: str,
                    core_endpoints: list[str], reserved_prefixes: list[str]) -> list[str]:
    """One message per operator setting that is wrong, in a fixed order; empty when all are right.

    ``default_limits``: the operator's defaults (ETCDPROXY_LIMIT_*), not a tenant's spec.limits (admission
    checks those, and allows forms such as 1.5Gi that the defaults do not); ``core_reserve_percent`` None:
    not given, not checked."""
    errors = [
        f"the operator default for spec.limits.{field} (ETCDPROXY_LIMIT_*) must be a whole quantity of bytes such "
        "as 512Mi for storage, write and read fields, or an integer for the others"
        for field, value in default_limits.items()
        if not (_WHOLE_BYTES if field in BYTE_LIMITS else _INTEGER).fullmatch(str(value))
    ]
    if core_reserve_percent is not None and not _PERCENT.fullmatch(str(core_reserve_percent)):
        errors.append(f"ETCDPROXY_CORE_RESERVE_PERCENT={core_reserve_percent} must be an integer from 0 to 90")
    if core_quota_bytes and not _WHOLE_BYTES.fullmatch(str(core_quota_bytes)):
        errors.append(f"ETCDPROXY_CORE_QUOTA_BYTES={core_quota_bytes} must be a quantity of bytes such as 8Gi")
    if not all(_ENDPOINT.fullmatch(e) for e in core_endpoints):
        errors.append(f"ETCDPROXY_CORE_ENDPOINTS={','.join(core_endpoints)} must list https:// URLs without paths")
    if not all(p.startswith("/") for p in reserved_prefixes):
        errors.append(f"ETCDPROXY_RESERVED_PREFIXES={','.join(reserved_prefixes)} must list key prefixes starting "
                      "with /, such as the --etcd-prefix of a kube-apiserver")
    return errors
