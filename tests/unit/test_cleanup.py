"""Deletion: the exact key range, and what happens to each delivered object."""

from __future__ import annotations

import base64

from ansible_collections.etcdproxy.operator.plugins.module_utils.cleanup import (
    deleterange_body,
    lease_ids,
    lease_markers_body,
    prefix_range,
    release_plan,
)


def in_range(key: bytes, name: str) -> bool:
    start, end = prefix_range(name)
    return start <= key < end


def test_prefix_range_is_exactly_the_tenant_prefix():
    assert prefix_range("foo") == (b"/foo/", b"/foo0")
    assert in_range(b"/foo/", "foo") and in_range(b"/foo/registry/pods/x", "foo")
    assert in_range(b"/foo/\xff\xff", "foo")
    for outside in (b"/foo", b"/foobar/x", b"/foo-bar/x", b"/fo/x", b"/foo0", b"/registry/secrets/x"):
        assert not in_range(outside, "foo"), outside


def test_deleterange_body_is_base64():
    body = deleterange_body("a")
    assert base64.b64decode(body["key"]) == b"/a/" and base64.b64decode(body["range_end"]) == b"/a0"


def obj(holder="t", owner_uid=None, kind_type=None, data=None):
    meta = {"annotations": {"etcd.etcdproxy.dev/storage": holder} if holder else {}}
    if owner_uid:
        meta["ownerReferences"] = [{"uid": owner_uid}]
    out = {"metadata": meta, "data": data or {"tls.crt": "x", "tls.key": "y", "other": "z"}}
    if kind_type:
        out["type"] = kind_type
    return out


def test_release_plan():
    assert release_plan(None, "Secret", "t", "u") == ("skip", None)
    assert release_plan(obj(holder="other"), "Secret", "t", "u") == ("skip", None)
    assert release_plan(obj(holder=""), "Secret", "t", "u") == ("skip", None)
    assert release_plan(obj(owner_uid="u"), "Secret", "t", "u") == ("gc", None)
    action, patch = release_plan(obj(kind_type="kubernetes.io/tls"), "Secret", "t", "u")
    assert action == "patch" and patch["data"] == {"tls.crt": "", "tls.key": ""}
    assert patch["metadata"]["annotations"]["etcd.etcdproxy.dev/storage"] is None
    action, patch = release_plan(obj(kind_type="Opaque"), "Secret", "t", "u")
    assert patch["data"] == {"tls.crt": None, "tls.key": None}
    action, patch = release_plan(obj(data={"serving-ca.crt": "x", "mine": "y"}), "ConfigMap", "t", "u")
    assert patch["data"] == {"serving-ca.crt": None}


def test_lease_markers_of_one_tenant_only_and_their_ids():
    body = lease_markers_body("a")
    key, end = base64.b64decode(body["key"]), base64.b64decode(body["range_end"])
    assert key == b"\x00etcdproxy-guard/leases/a/" and end == b"\x00etcdproxy-guard/leases/a0"
    assert not (key <= b"\x00etcdproxy-guard/leases/ab/1" < end)  # tenant "ab" is not "a"
    assert body["keys_only"] is True
    assert base64.b64decode(lease_markers_body("a", after=key + b"7f")["key"]) == key + b"7f\x00"
    kvs = [{"key": base64.b64encode(key + k).decode()} for k in (b"7f", b"694d", b"not-hex")]
    assert lease_ids({"kvs": kvs}) == [0x7F, 0x694D]
