"""Runs last: nothing the operator printed, wrote in Events or status contains private key material."""

from __future__ import annotations

import base64
import json

from ansible_collections.etcdproxy.operator.plugins.module_utils.leftovers import RUNNER_ROOT as RUNNER
from kubernetes import client


def issued_key_fragments(core: client.CoreV1Api) -> set[str]:
    """40-character pieces of every private key in the cluster's Secrets (ours and the admin's)."""
    fragments = set()
    for secret in core.list_secret_for_all_namespaces().items:
        for key, value in (secret.data or {}).items():
            if not key.endswith(".key"):
                continue
            pem = base64.b64decode(value).decode(errors="replace")
            body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
            fragments |= {body[i:i + 40] for i in range(0, max(len(body) - 40, 0), 40)}
    return fragments


def test_no_private_key_material_in_logs_events_or_status(api, operator, cp):
    core = client.CoreV1Api(api)
    fragments = issued_key_fragments(core)
    assert len(fragments) > 10  # the suite did issue keys
    texts = {"operator log": operator.log.read_text(errors="replace")}
    for path in RUNNER.rglob("*"):
        if path.is_file() and (path.name == "stdout" or path.parent.name == "job_events"):
            texts[str(path)] = path.read_text(errors="replace")
    texts["events"] = json.dumps([e.message for e in core.list_event_for_all_namespaces().items])
    custom = client.CustomObjectsApi(api)
    items = custom.list_cluster_custom_object("etcd.etcdproxy.dev", "v1alpha1", "etcdstorages")["items"]
    texts["status"] = json.dumps([i.get("status") for i in items])
    assert len(texts) > 3
    for where, text in texts.items():
        assert "PRIVATE KEY" not in text, where
        leaked = [f for f in fragments if f in text]
        assert not leaked, f"key material in {where}"
