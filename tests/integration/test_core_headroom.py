"""No amount of tenant traffic raises NOSPACE on the shared core etcd.

A control plane of its own whose core etcd has a 64 MiB quota (the mechanics are the same at 2 or 8 GiB),
already holding 36 MiB of the main cluster's history. Tenants with the operator's default limits overwrite
three keys with 1 MB values through their real endpoints (the guard run exactly as the Deployment
describes it): the history of those overwrites is what filled the core in the report that started this.
The guard must refuse them with RESOURCE_EXHAUSTED naming the core's quota, while the main cluster's
kube-apiserver keeps writing; no alarm is raised; reads and deletes keep working. With one replica,
three replicas, and two tenants flooding at once.

What the guard promises (docs/guard.md): one tenant, through any number of replicas, takes the core past
the ceiling by at most the writes it has in flight, here one 1 MB put; several tenants bursting at the
same moment, by at most what the core applies before a poll can show it, which the reserve (20%) covers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from ansible_collections.etcdproxy.operator.plugins.module_utils import etcdpb
from kubernetes import client

from localcp.cluster import ControlPlane
from localcp.etcdclient import Client
from localcp.tenant import ProxyProcess, delivered_files, etcdctl, start_proxy

from .conftest import Storages, another_control_plane

QUOTA = 64 << 20
CEILING = QUOTA * 8 // 10  # the default reserve, 20%
PREFILL = 36 << 20  # the main cluster's history before the tenants come: each case's bursts reach the ceiling
ONE_WRITE = 3 << 19  # 1.5 MiB: a 1 MB put and etcd's page rounding
FLOOD_SECONDS = 150  # bounds the flood; it ends as soon as the core's headroom refuses


@dataclass
class SmallCore:
    cp: ControlPlane
    storages: Storages

    def core(self) -> tuple[str, str, str, str]:
        return (",".join(self.cp.etcd_endpoints), *self.cp.core_files())

    def ctl(self, *args: str) -> str:
        out = etcdctl(*self.core(), *args)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def reset(self) -> None:
        """What the core's admin does: compact to now and defragment (the file shrinks)."""
        rev = self.status().header.revision
        self.ctl("compact", str(rev))
        self.ctl("defrag")
        assert self.ctl("alarm", "list").strip() == ""

    def status(self) -> Any:
        """The first core member's Status (its ``dbSize`` only shrinks with defragmentation)."""
        ep, ca, cert, key = self.core()
        with Client(ep.split(",")[0], ca, cert, key) as c:
            return etcdpb.StatusResponse.FromString(c.unary("/etcdserverpb.Maintenance/Status"))

    def prefill(self, size: int) -> None:
        """History of the main cluster's own keys, written to the core directly, up to about size."""
        ep, ca, cert, key = self.core()
        with Client(ep.split(",")[0], ca, cert, key) as c:
            for i in range(max(0, (size - self.status().dbSize) // 1_000_000)):
                c.put(f"/prefill/k{i % 3}".encode(), b"p" * 1_000_000)


@pytest.fixture(scope="module")
def small(operator) -> Iterator[SmallCore]:
    with another_control_plane(operator, "test-localcp-quota", etcd_quota_bytes=QUOTA) as (cp, storages):
        yield SmallCore(cp, storages)


@dataclass
class Tenant:
    name: str
    guards: list[ProxyProcess]
    files: tuple[str, str, str]
    refusals: dict[str, int] = field(default_factory=dict)
    core_refusal: str = ""
    puts: int = 0


def make_tenant(small: SmallCore, prefix: str, replicas: int, tmp_path) -> Tenant:
    s = small.storages
    name = s.unique(prefix)
    ns = f"{name}-ns"
    s.create(name, {"replicas": replicas, "caCertConfigMap": [{"name": "etcd-ca", "namespace": ns}],
                    "clientCertSecret": [{"name": "etcd-client", "namespace": ns}]})
    s.wait_condition(name, "Ready", "True")
    guards = [start_proxy(s.core, s.deployment(name), small.cp.logs) for _ in range(replicas)]
    return Tenant(name, guards, delivered_files(s.core, ns, tmp_path))


def flood(t: Tenant, stop: threading.Event) -> None:
    """Overwrite three keys with 1 MB values, round robin over the replicas, until the core's headroom
    refuses (or the time bound). A write-rate refusal is answered by backing off, as a client would."""
    clients = [Client(g.endpoint, *t.files) for g in t.guards]
    value = b"x" * 1_000_000
    deadline = time.monotonic() + FLOOD_SECONDS
    i = 0
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                clients[i % len(clients)].put(f"/flood/k{i % 3}".encode(), value)
                t.puts += 1
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                text = exc.details() or ""
                reason = "core" if "near its space quota" in text else "rate" if "write rate" in text else text
                t.refusals[reason] = t.refusals.get(reason, 0) + 1
                if reason == "core":
                    t.core_refusal = text
                    if t.refusals[reason] >= 5:  # refused again and again, not once by chance
                        return
                else:
                    stop.wait(0.2)
            i += 1
    finally:
        for c in clients:
            c.close()


def main_cluster_writer(api: client.CoreV1Api, stop: threading.Event, failures: list[str], done: list[int]) -> None:
    n = 0
    while not stop.is_set():
        try:
            api.create_namespaced_config_map("default", {"metadata": {"generateName": "main-"},
                                                         "data": {"v": "y" * 2000}})
            n += 1
        except client.ApiException as exc:
            failures.append(f"{exc.status} {exc.body}")
        stop.wait(0.05)
    done.append(n)


CASES = {"one replica": (1, 1), "three replicas": (1, 3), "two tenants at once": (2, 1)}


@pytest.mark.parametrize("case", list(CASES))
def test_tenant_floods_never_raise_nospace(small: SmallCore, case: str, tmp_path):
    tenants_n, replicas = CASES[case]
    small.reset()
    small.prefill(PREFILL)
    tenants = [make_tenant(small, f"flood{i}", replicas, tmp_path) for i in range(tenants_n)]
    api = client.CoreV1Api(small.cp.api())
    stop, failures, done = threading.Event(), [], []
    writer = threading.Thread(target=main_cluster_writer, args=(api, stop, failures, done), daemon=True)
    try:
        writer.start()
        floods = [threading.Thread(target=flood, args=(t, threading.Event()), daemon=True) for t in tenants]
        for f in floods:
            f.start()
        for f in floods:
            f.join(FLOOD_SECONDS + 30)
        stop.set()
        writer.join(30)
        size = small.status().dbSize
        for t in tenants:
            assert t.core_refusal, f"{t.name}: the core's headroom never refused ({t.puts} puts, {t.refusals})"
            assert "space quota" in t.core_refusal and "64.0Mi" in t.core_refusal, t.core_refusal
        # The guarantee: no alarm, and the main cluster wrote throughout.
        assert small.ctl("alarm", "list").strip() == "", "NOSPACE raised"
        assert size < QUOTA
        if tenants_n == 1:  # a tenant alone: past the ceiling by at most its write in flight
            assert size <= CEILING + ONE_WRITE, f"{(size - CEILING) / 2**20:.2f} MiB past the ceiling"
        assert failures == [], failures[:3]
        assert done and done[0] > 0
        # The reserve is the main cluster's: it can still write what a tenant no longer may.
        api.create_namespaced_config_map("default", {"metadata": {"name": f"after-{tenants[0].name}"},
                                                     "data": {"v": "z" * 500_000}})
        # Tenants can still read and clean up.
        t = tenants[0]
        with Client(t.guards[0].endpoint, *t.files) as c:
            assert len(c.range(b"/flood/", b"/flood0")) == 3
            assert c.delete(b"/flood/", b"/flood0") == 3
        for t in tenants:  # counted by whichever replicas refused
            assert sum(g.metric("etcdproxy_guard_limited_total", reason="core-space") for g in t.guards) >= 1
    finally:
        stop.set()
        for t in tenants:
            for g in t.guards:
                g.stop()
            small.storages.delete(t.name)
