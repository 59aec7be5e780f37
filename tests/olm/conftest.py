"""Fixtures of the OLM tests: a cluster of their own (real node, the cluster's registry, CoreDNS) with
OLM installed from its chart and every image of the OLM path pushed; then the operator installed
through OLM as README's "Install with OLM" says. Runs in its own network namespace (`make olm-test`)."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from kubernetes import client

from localcp.admin import OPERATOR_NAMESPACE, install_admission, seed_operator_namespace
from localcp.bundles import csv_name
from localcp.cluster import ControlPlane
from localcp.config import REPO
from localcp.dns import install_dns
from localcp.olm import VERSIONS, Published, install_olm, operator_env, publish, subscribe, wait_csv
from localcp.probes import StartError, wait_for

WORKDIR = REPO / ".cache" / "test-olm"
TIMEOUT = float(os.environ.get("ETCDPROXY_TEST_TIMEOUT", "90"))


@dataclass
class Olm:
    cp: ControlPlane
    published: Published
    timings: dict[str, float] = field(default_factory=dict)

    @functools.cached_property
    def api(self) -> client.ApiClient:
        return self.cp.api()

    def wait(self, what: str, check, timeout: float = TIMEOUT) -> None:
        try:
            wait_for(what, check, timeout, interval=0.25)
        except StartError as exc:
            pytest.fail(f"{exc}\n{self.cp.log_tails(15)}")

    def wait_csv(self, version: str, timeout: float = 240) -> None:
        try:
            wait_csv(self.cp, OPERATOR_NAMESPACE, csv_name(version), timeout)
        except StartError as exc:
            pytest.fail(f"{exc}\n{self.cp.log_tails(15)}")

    def operator_pods(self) -> list[client.V1Pod]:
        return [p for p in client.CoreV1Api(self.api).list_namespaced_pod(
            OPERATOR_NAMESPACE, label_selector="app.kubernetes.io/name=etcdproxy-operator").items
            if p.metadata.deletion_timestamp is None]


@pytest.fixture(scope="session")
def olm() -> Iterator[Olm]:
    cp = ControlPlane(workdir=WORKDIR, node="real", registry=True)
    try:
        cp.start()
        install_dns(cp)
        published = publish(cp, WORKDIR / "olm")
        install_olm(cp)
    except (StartError, RuntimeError) as exc:
        cp.stop()
        pytest.fail(f"the OLM cluster did not start: {exc}\n{cp.log_tails()}")
    yield Olm(cp, published)
    cp.stop()


@pytest.fixture(scope="session")
def installed(olm: Olm) -> Olm:
    """The first version installed as a user does: namespace and core material, then the subscription."""
    seed_operator_namespace(olm.cp)
    install_admission(olm.cp)
    t0 = time.monotonic()
    subscribe(olm.cp, olm.published.catalogs[VERSIONS[0]], operator_env(olm.cp))
    olm.wait_csv(VERSIONS[0])
    olm.timings["install_s"] = round(time.monotonic() - t0, 1)
    return olm
