"""What happens when an EtcdStorage is deleted: delivered material and, by policy, its keys.

- Destination objects the operator created (owner reference to the EtcdStorage) are left to the
  garbage collector (the delivery Role need not grant ``delete``); objects an admin pre-created are
  kept, emptied of our keys and annotations.
- ``deletionPolicy: Delete`` removes every key under ``/<name>/`` from the core etcd (exactly that
  prefix: ``/foo/`` never touches ``/foobar/``) through etcd's JSON gateway (``/v3/kv/deleterange``),
  with the admin's core client certificate. ``Retain`` (default) keeps them.
"""

from __future__ import annotations

import base64
from typing import Any

from ansible_collections.etcdproxy.operator.plugins.module_utils import keyspace
from ansible_collections.etcdproxy.operator.plugins.module_utils.names import OWNER_ANNOTATION, UID_ANNOTATION

OUR_ANNOTATIONS = (OWNER_ANNOTATION, UID_ANNOTATION)
OUR_CONFIGMAP_KEYS = ("serving-ca.crt",)
OUR_SECRET_KEYS = ("tls.crt", "tls.key")


def prefix_range(name: str) -> tuple[bytes, bytes]:
    """[key, range_end) covering exactly the keys that start with ``/<name>/``."""
    return keyspace.prefix_range(keyspace.tenant_prefix(name))


def deleterange_body(name: str) -> dict[str, Any]:
    return keyspace.range_body(keyspace.tenant_prefix(name))


def lease_markers_body(name: str, after: bytes = b"", limit: int = 1000) -> dict[str, Any]:
    """A JSON-gateway range over the lease markers of tenant ``name`` (keys only), from ``after`` on."""
    return keyspace.range_body(keyspace.lease_marker_prefix(name), start=after + b"\x00" if after else None,
                               keys_only=True, limit=limit)


def lease_ids(range_response: dict[str, Any]) -> list[int]:
    """The lease IDs the markers in a range response name; malformed keys are skipped."""
    ids = (keyspace.lease_marker_id(base64.b64decode(kv.get("key") or "")) for kv in range_response.get("kvs") or [])
    return [lease for lease in ids if lease is not None]


def release_patch(obj: dict[str, Any] | None, kind: str, name: str, uid: str) -> dict[str, Any] | None:
    """The strategic merge patch (the client's default for a dict) that gives a destination object back: our
    keys emptied or removed, our annotations and our owner reference dropped (so that the object outlives the
    EtcdStorage for whoever uses it next); None when it is not ours (or another tenant's): never touched."""
    if obj is None:
        return None
    meta = obj.get("metadata") or {}
    if (meta.get("annotations") or {}).get(OWNER_ANNOTATION) != name:
        return None
    keys = OUR_SECRET_KEYS if kind == "Secret" else OUR_CONFIGMAP_KEYS
    data: dict[str, Any] = {}
    for key in keys:
        if key in (obj.get("data") or {}):
            # kubernetes.io/tls Secrets must keep tls.crt/tls.key: empty them instead.
            data[key] = "" if kind == "Secret" and obj.get("type") == "kubernetes.io/tls" else None
    patch: dict[str, Any] = {"metadata": {"annotations": {a: None for a in OUR_ANNOTATIONS}}, "data": data}
    refs = meta.get("ownerReferences") or []
    if uid and any(ref.get("uid") == uid for ref in refs):
        patch["metadata"]["ownerReferences"] = [{"$patch": "delete", "uid": uid}]  # the list merges by uid
    return patch


def release_plan(obj: dict[str, Any] | None, kind: str, name: str, uid: str) -> tuple[str, dict[str, Any] | None]:
    """("gc" | "patch" | "skip", patch body) for one destination object of an EtcdStorage being deleted."""
    patch = release_patch(obj, kind, name, uid)
    if patch is None:
        return "skip", None
    if "ownerReferences" in patch["metadata"]:
        return "gc", None  # owned: the garbage collector deletes it with the EtcdStorage
    return "patch", patch
