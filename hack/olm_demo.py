"""`make olm-demo`: the operator installed and upgraded through OLM, as a platform team would.

Inside the harness's network namespace: a cluster with a real node and an image registry on it; OLM
from its own chart (images built here, pushed to that registry); the operator's bundle and a
file-based catalog pushed there too. Then what a user does: the operator namespace with the core
etcd's material, an OperatorGroup, a CatalogSource and a Subscription; an EtcdStorage Ready; the
catalog gains the next version and OLM upgrades the operator while a tenant client keeps writing
through its endpoint. Prints the install and upgrade times. KEEP=1 leaves it running.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from localcp.admin import OPERATOR_NAMESPACE, seed_operator_namespace
from localcp.bundles import csv_name
from localcp.cluster import ControlPlane
from localcp.config import BIN_DIR
from localcp.dns import install_dns
from localcp.load import Load
from localcp.narrate import kubectl, run_demo, step
from localcp.olm import VERSIONS, install_olm, operator_env, publish, subscribe, upgrade, wait_csv
from localcp.probes import StartError
from localcp.wardle import etcdstorage, service_client, wait_ready


def demo(cp: ControlPlane) -> None:
    t0 = time.monotonic()
    first, second = VERSIONS
    step("a local cluster with a real node and an image registry on it")
    cp.start()
    install_dns(cp)
    print(f"up in {time.monotonic() - t0:.1f}s", flush=True)
    step("images pushed to the registry: OLM, opm, the operator, the guard, bundles and catalogs")
    published = publish(cp, cp.workdir / "olm")
    print(published.timings, flush=True)
    step("OLM, from its own chart (hack/tools/olm pins its module)")
    t = time.monotonic()
    install_olm(cp)
    print(f"OLM ready in {time.monotonic() - t:.1f}s", flush=True)
    kubectl(cp, "-n", "olm", "get", "deployments,csv")
    step(f"install {csv_name(first)}: operator namespace with the core etcd's material, OperatorGroup, "
         "CatalogSource, Subscription")
    seed_operator_namespace(cp)
    t = time.monotonic()
    subscribe(cp, published.catalogs[first], operator_env(cp))
    wait_csv(cp, OPERATOR_NAMESPACE, csv_name(first))
    installed = time.monotonic() - t
    print(f"CSV Succeeded {installed:.1f}s after the Subscription", flush=True)
    kubectl(cp, "-n", OPERATOR_NAMESPACE, "get", "subscription,installplan,csv,deployment")
    step("an EtcdStorage `wardle`, delivering to namespace wardle")
    etcdstorage(cp, "wardle", "wardle")
    wait_ready(cp, "wardle")
    kubectl(cp, "get", "etcdstorage", "-o", "wide")
    step(f"upgrade to {csv_name(second)}: the catalog gains it; a tenant client writes throughout")
    with tempfile.TemporaryDirectory() as tmp, Load(service_client(cp, "wardle", "wardle", Path(tmp))) as load:
        load.wait_ops(20)
        t = time.monotonic()
        upgrade(cp, published.catalogs[second])
        wait_csv(cp, OPERATOR_NAMESPACE, csv_name(second))
        upgraded = time.monotonic() - t
        load.wait_ops(20)
    print(f"CSV {csv_name(second)} Succeeded {upgraded:.1f}s after the catalog moved; tenant client: "
          f"{load.ok} operations, {len(load.failures)} failed", flush=True)
    if load.failures:
        raise StartError(f"the tenant client failed during the upgrade: {load.failures[:3]}")
    kubectl(cp, "-n", OPERATOR_NAMESPACE, "get", "csv,deployment")
    print(f"\ninstall {installed:.1f}s, upgrade {upgraded:.1f}s", flush=True)


def main() -> int:
    cp = ControlPlane(node="real", registry=True)
    return run_demo("OLM demo", cp, lambda: demo(cp), [
        f"{BIN_DIR / 'kubectl'} --kubeconfig {cp.kubeconfig} get csv,subscription,installplan -A"])


if __name__ == "__main__":
    sys.exit(main())
