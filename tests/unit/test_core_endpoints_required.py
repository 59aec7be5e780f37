"""An operator without its core etcd endpoints must not touch a single object: each module that reconciles
refuses before its first request (module_utils/args.py, refuse_without_core_endpoints)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from ansible_collections.etcdproxy.operator.plugins.plugin_utils.inprocess import run_main

from .loopback import QuietHandler, serving

COMMON = {"name": "a", "namespace": "kube-apiserver-storage", "core_ca_configmap": "etcd-ca",
          "core_ca_key": "ca.crt", "core_client_secret": "etcd-client", "core_endpoints": []}


class Counter(QuietHandler):
    requests: ClassVar[list[str]] = []

    def answer(self) -> None:
        Counter.requests.append(f"{self.command} {self.path}")
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = answer  # noqa: N815 (http.server's names)


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Iterator[str]:
    Counter.requests = []
    with serving(Counter) as url:
        path = tmp_path / "config"
        path.write_text(yaml.safe_dump({
            "current-context": "c", "contexts": [{"name": "c", "context": {"cluster": "c"}}],
            "clusters": [{"name": "c", "cluster": {"server": url}}]}))
        yield str(path)


@pytest.mark.parametrize(("module", "extra"), [
    ("etcdstorage_reconcile", {"spec": {"replicas": 1}}),
    ("etcdstorage_cleanup", {"spec": {"deletionPolicy": "Delete"}}),
    ("etcdstoragebackup_reconcile", {}),
])
def test_refused_before_any_request(kubeconfig: str, module: str, extra: dict[str, Any]):
    main = importlib.import_module(f"ansible_collections.etcdproxy.operator.plugins.modules.{module}").main
    result = run_main(main, {**COMMON, **extra, "kubeconfig": kubeconfig}, check_mode=False)
    assert result.get("failed") and "ETCDPROXY_CORE_ENDPOINTS is not set" in result["msg"]
    assert Counter.requests == []
    # the same call with endpoints goes on to read from the API server (the check above is not vacuous)
    run_main(main, {**COMMON, **extra, "kubeconfig": kubeconfig, "core_endpoints": ["https://127.0.0.1:1"]},
             check_mode=False)
    assert Counter.requests
