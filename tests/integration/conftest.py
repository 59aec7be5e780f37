"""Fixtures: one real local control plane and one real ansible-operator per test session."""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.etcdproxy.operator.plugins.module_utils.kube import Kube, api_client
from kubernetes import client
from kubernetes.client.rest import ApiException

from localcp.admin import OPERATOR_NAMESPACE, ensure_namespace, install_crds, install_rbac, seed_operator_namespace
from localcp.cluster import ControlPlane
from localcp.config import REPO
from localcp.operator import Operator, completed_runs, start_operator
from localcp.probes import StartError, wait_for

GROUP, VERSION, PLURAL = "etcd.etcdproxy.dev", "v1alpha1", "etcdstorages"
WORKDIR = REPO / ".cache" / "test-localcp"
# The harness waits on conditions; this only bounds how long before a test fails.
TIMEOUT = float(os.environ.get("ETCDPROXY_TEST_TIMEOUT", "90"))


@pytest.fixture(scope="session")
def cp() -> Iterator[ControlPlane]:
    plane = ControlPlane(workdir=WORKDIR)
    try:
        plane.start()
        install_crds(plane)
        seed_operator_namespace(plane)
        install_rbac(plane)
    except StartError as exc:
        pytest.fail(f"local control plane did not start: {exc}\n{plane.log_tails()}")
    yield plane
    plane.stop()


@pytest.fixture(scope="session")
def operator(cp: ControlPlane) -> Iterator[Operator]:
    os.environ.setdefault("ETCDPROXY_RETRY_PERIOD", "2s")
    # Staged CA rotation in seconds instead of a sixth of the CA lifetime.
    os.environ.setdefault("ETCDPROXY_CA_OVERLAP", "2s")
    op = start_operator(cp.operator_kubeconfig, ",".join(cp.etcd_endpoints), cp.logs / "operator.log")
    yield op
    op.stop()


@pytest.fixture(scope="session")
def api(cp: ControlPlane) -> client.ApiClient:
    return cp.api()


class Storages:
    """Create EtcdStorages for a test and delete them afterwards."""

    def __init__(self, api: client.ApiClient, op: Operator, kubeconfig: Path) -> None:
        self.api = api
        self.op = op
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.kube = Kube(api_client(str(kubeconfig)))  # the operator's own client, as the admin
        self.created: list[str] = []

    @staticmethod
    def unique(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:6]}"

    def create(self, name: str, spec: dict[str, Any] | None = None,
               make_namespaces: bool = True) -> dict[str, Any]:
        spec = spec if spec is not None else {"replicas": 1}
        for dest in spec.get("caCertConfigMap", []) + spec.get("clientCertSecret", []):
            if make_namespaces:
                ensure_namespace(self.api, dest["namespace"])
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "EtcdStorage", "metadata": {"name": name},
                "spec": spec}
        obj = self.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body)
        self.created.append(name)
        return obj

    def create_ready_tenant(self, prefix: str) -> tuple[str, str]:
        """An EtcdStorage delivering ConfigMap etcd-ca and Secret etcd-client to ``<name>-ns``, Ready."""
        name = self.unique(prefix)
        ns = f"{name}-ns"
        self.create(name, {"replicas": 1, "caCertConfigMap": [{"name": "etcd-ca", "namespace": ns}],
                           "clientCertSecret": [{"name": "etcd-client", "namespace": ns}]})
        self.wait_condition(name, "Ready", "True")
        return name, ns

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_cluster_custom_object(GROUP, VERSION, PLURAL, name, body)

    def delete(self, name: str) -> None:
        try:
            self.custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def condition(self, name: str, ctype: str) -> dict[str, Any] | None:
        obj = self.get(name) or {}
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond["type"] == ctype:
                return cond
        return None

    def events(self, name: str, reason: str | None = None) -> list[client.V1Event]:
        """The Events about EtcdStorage ``name`` (those with ``reason`` only, if given)."""
        items = self.core.list_namespaced_event("default", field_selector=f"involvedObject.name={name}").items
        return [e for e in items if reason is None or e.reason == reason]

    def wait(self, what: str, check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        try:
            wait_for(what, check, timeout, self.op.proc, self.op.log, interval=0.2)
        except StartError as exc:
            pytest.fail(f"{exc}\n--- operator log tail ---\n{tail(self.op.log)}")

    def wait_condition(self, name: str, ctype: str, status: str, reason: str | None = None,
                       timeout: float = TIMEOUT) -> dict[str, Any]:
        def ok() -> bool:
            c = self.condition(name, ctype)
            return bool(c and c["status"] == status and (reason is None or c["reason"] == reason))

        try:
            self.wait(f"EtcdStorage {name} {ctype}={status} {reason or ''}", ok, timeout)
        except BaseException as exc:  # say what it was instead
            raise AssertionError(f"{exc}\nstatus of {name}: {json.dumps((self.get(name) or {}).get('status'))}") \
                from exc
        cond = self.condition(name, ctype)
        assert cond is not None
        return cond

    def deployment(self, name: str) -> dict[str, Any] | None:
        return self.kube.get_deployment(OPERATOR_NAMESPACE, f"etcd-{name}")

    def service(self, name: str) -> dict[str, Any] | None:
        return self.kube.get_service(OPERATOR_NAMESPACE, f"etcd-{name}")

    def reconciles(self, name: str) -> int:
        """Completed ansible-runner runs for ``name``, from the operator's log."""
        return completed_runs(self.op.log.read_text(errors="replace"), name)

    def cleanup(self) -> None:
        for name in self.created:
            self.delete(name)


def tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def another_control_plane(session_operator: Operator, workdir: str, **options: Any
                          ) -> Iterator[tuple[ControlPlane, Storages]]:
    """A control plane of its own (``options``: e.g. a 3-member or small-quota core) with its own operator.
    The session's operator is stopped meanwhile: one ansible-operator per machine (its API proxy port is
    fixed in its code)."""
    session_operator.stop()
    plane = ControlPlane(workdir=REPO / ".cache" / workdir, **options)
    op = None
    try:
        plane.start()
        install_crds(plane)
        seed_operator_namespace(plane)
        install_rbac(plane)
        op = start_operator(plane.operator_kubeconfig, ",".join(plane.etcd_endpoints), plane.logs / "operator.log")
        storages = Storages(plane.api(), op, plane.kubeconfig)
        yield plane, storages
        storages.cleanup()
    finally:
        if op is not None:
            op.stop()
        plane.stop()
        session_operator.restart()


@pytest.fixture
def storages(api: client.ApiClient, operator: Operator, cp: ControlPlane) -> Iterator[Storages]:
    s = Storages(api, operator, cp.kubeconfig)
    yield s
    s.cleanup()


def audit_writes(audit_log: Path, user: str, since: float) -> list[dict[str, Any]]:
    """Mutating requests by ``user`` logged after ``since`` (epoch seconds)."""
    out = []
    for line in audit_log.read_text().splitlines():
        ev = json.loads(line)
        if ev.get("user", {}).get("username") != user:
            continue
        if ev.get("verb") in ("get", "list", "watch"):
            continue
        ts = ev.get("requestReceivedTimestamp") or ev.get("stageTimestamp")
        if ts and _epoch(ts) >= since:
            out.append(ev)
    return out


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def now() -> float:
    return time.time()
