"""Does a live Kubernetes object already say everything our definition says?

kubernetes.core's client-side apply sends a PATCH on every run for objects with
lists keyed by merge keys (containers, Service ports), even when nothing
changed. The role asks :func:`drifted` first and calls kubernetes.core.k8s only
for the objects that really differ, so an unchanged EtcdStorage costs no write.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils.quantity import parse_quantity as quantity


def parse_quantity(value: Any) -> Decimal | None:
    """A Kubernetes resource quantity as a number (``"500m"`` and ``0.5`` are equal); None if not one (booleans,
    None and "" included: quantity.parse_quantity refuses them)."""
    try:
        return quantity(value)
    except ValueError:
        return None


def contains(desired: Any, actual: Any, path: str = "") -> str | None:
    """None when ``actual`` holds everything in ``desired``; else the first differing path.

    Maps may have extra keys in ``actual`` (server defaults, other actors' labels);
    lists must match item by item; resource quantities compare by value.
    """
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            return path or "."
        for key, want in desired.items():
            if key not in actual:
                if want in ({}, [], None):
                    continue
                return f"{path}.{key}"
            diff = contains(want, actual[key], f"{path}.{key}")
            if diff:
                return diff
        return None
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(desired) != len(actual):
            return path
        for i, (want, got) in enumerate(zip(desired, actual, strict=True)):
            diff = contains(want, got, f"{path}[{i}]")
            if diff:
                return diff
        return None
    if desired == actual:
        return None
    if ".resources." in path + ".":
        a, b = parse_quantity(desired), parse_quantity(actual)
        if a is not None and a == b:
            return None
    return path or "."


def object_key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind')} {ns + '/' if ns else ''}{meta.get('name')}"


# Fields the API server or other controllers own; never compared.
_IGNORED_METADATA = ("annotations", "ownerReferences", "managedFields", "resourceVersion", "uid",
                     "creationTimestamp", "generation")


def comparable(definition: dict[str, Any]) -> dict[str, Any]:
    out = dict(definition)
    meta = dict(out.get("metadata") or {})
    for key in _IGNORED_METADATA:
        meta.pop(key, None)
    out["metadata"] = meta
    out.pop("status", None)
    return out


def drifted(definition: dict[str, Any], live: dict[str, Any] | None) -> str | None:
    """Why ``definition`` must be applied (missing, or the first differing field), or None."""
    if live is None:
        return "missing"
    return contains(comparable(definition), live)


def owner_reference(obj: dict[str, Any]) -> dict[str, str]:
    """A reference to ``obj`` as ansible-operator's proxy writes one (no controller flag)."""
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"]}


def missing_owners(live: dict[str, Any], wanted: list[dict[str, str]]) -> list[dict[str, str]]:
    """The references in ``wanted`` that ``live`` lacks, compared by uid (the API's merge key)."""
    have = {ref.get("uid") for ref in (live.get("metadata") or {}).get("ownerReferences") or []}
    return [ref for ref in wanted if ref["uid"] not in have]
