"""EtcdStorage spec defaults: the one home in code, held to the CRD's own defaults by a unit test.

The API server applies the CRD's defaults on admission; the operator applies the same ones again so
that an EtcdStorage that never went through admission (the one-off playbook) behaves the same.
"""

from __future__ import annotations

import copy
from typing import Any

DEFAULTS: dict[str, Any] = {
    "replicas": 3,
    "deletionPolicy": "Retain",
    "keyAlgorithm": "ECDSA",
    "signingCertificateValidity": "8760h",
    "servingCertificateValidity": "2160h",
    "clientCertificateValidity": "2160h",
}
# The proxy container's resources when spec.resources is empty (not a CRD default: an empty
# object must also mean these).
DEFAULT_RESOURCES: dict[str, Any] = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


def with_defaults(spec: dict[str, Any] | None) -> dict[str, Any]:
    """``spec`` with every unset (or empty) defaulted field filled in."""
    out = {k: v for k, v in (spec or {}).items() if v not in (None, "", {}, [])}
    for key, value in DEFAULTS.items():
        out.setdefault(key, value)
    out.setdefault("resources", copy.deepcopy(DEFAULT_RESOURCES))
    return out
