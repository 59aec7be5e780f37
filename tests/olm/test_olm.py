"""The operator installed and upgraded through OLM (CatalogSource + Subscription), on a real node,
running with exactly the permissions its CSV grants."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from ansible_collections.etcdproxy.operator.plugins.module_utils import names
from kubernetes import client
from kubernetes.client.rest import ApiException

from localcp.admin import OPERATOR_NAMESPACE, operator_may
from localcp.bundles import csv_name
from localcp.load import Load
from localcp.olm import OPERATOR_REPO, VERSIONS, csv_phase, operator_env, subscribe, upgrade
from localcp.operator import completed_runs
from localcp.wardle import GROUP, PLURAL, VERSION, etcdstorage, service_client, wait_ready

from .conftest import WORKDIR, Olm

FIRST, NEXT = VERSIONS
SA = ("ServiceAccount", "etcdproxy-operator", OPERATOR_NAMESPACE)


def bindings_of_operator(api: client.ApiClient) -> list[tuple[str, dict[str, str]]]:
    """Every RoleBinding and ClusterRoleBinding naming the operator's ServiceAccount, with its labels."""
    rbac = client.RbacAuthorizationV1Api(api)
    found = []
    for kind, items in (("ClusterRoleBinding", rbac.list_cluster_role_binding().items),
                        ("RoleBinding", rbac.list_role_binding_for_all_namespaces().items)):
        for b in items:
            if any((s.kind, s.name, s.namespace) == SA for s in b.subjects or []):
                where = f"{b.metadata.namespace}/" if b.metadata.namespace else ""
                found.append((f"{kind} {where}{b.metadata.name}", b.metadata.labels or {}))
    return found


def test_the_operator_runs_with_exactly_what_its_csv_grants(installed: Olm) -> None:
    api = installed.api
    (pod,) = installed.operator_pods()
    assert pod.spec.service_account_name == "etcdproxy-operator"
    assert pod.spec.containers[0].image == f"{OPERATOR_REPO}:{FIRST}"  # pulled from the cluster's registry
    bindings = bindings_of_operator(api)
    assert bindings, "OLM bound no role to the operator"
    for what, labels in bindings:  # nothing but what OLM made from this CSV
        assert labels.get("olm.owner") == csv_name(FIRST), f"{what} is not OLM's: {labels}"
    # OwnNamespace: its namespaced permissions hold in its namespace only (AllNamespaces would grant
    # every namespace's Secrets); delivery elsewhere needs a grant from that namespace's admin.
    assert operator_may(api, "list", "secrets", OPERATOR_NAMESPACE)
    assert operator_may(api, "create", "deployments", OPERATOR_NAMESPACE, "apps")
    assert operator_may(api, "update", "etcdstorages/status", group="etcd.etcdproxy.dev")
    assert not operator_may(api, "list", "secrets", "default")
    assert not operator_may(api, "get", "secrets", "kube-system")
    assert not operator_may(api, "create", "deployments", "default", "apps")
    assert not operator_may(api, "list", "secrets")  # cluster-wide
    assert operator_may(api, "create", "jobs", OPERATOR_NAMESPACE, "batch")  # backups
    assert not operator_may(api, "create", "jobs", "default", "batch")


@pytest.fixture(scope="session")
def tenant(installed: Olm) -> str:
    """A tenant like the sample, delivering to its own namespace under the example Role's grant, its status
    settled (Ready comes with the first replica; the status is written again once the second is up, which
    the upgrade test would otherwise take for a rewrite by the new operator)."""
    etcdstorage(installed.cp, "olm-a", "olm-a")
    wait_ready(installed.cp, "olm-a", settled=True)
    return "olm-a"


def test_a_tenant_is_served_by_the_operator_olm_installed(installed: Olm, tenant: str, tmp_path: Path) -> None:
    # Ready follows the Deployment; kube-proxy may route the new Service a moment later: retry as an API
    # server's etcd client does (CI: the first put after Ready met "connection refused", as on the node).
    with service_client(installed.cp, tenant, tenant, tmp_path, retry=True) as c:
        c.put(b"/registry/olm/key", b"value")
        assert c.range(b"/registry/olm/key") == [(b"/registry/olm/key", b"value")]


def what_the_operator_wrote(api: client.ApiClient, name: str) -> dict[str, str]:
    """resourceVersions of the tenant's objects (its proxy objects, its certificates and bundles here and in
    the destination namespace), the proxy Deployment's generation, and the EtcdStorage but for its usage
    figures and the WithinLimits condition drawn from them (refreshed at each reconcile, and first
    reported once the endpoint has published usage: the tenant client writes meanwhile)."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    es = client.CustomObjectsApi(api).get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    seen = {f"EtcdStorage metadata.{k}": json.dumps(es["metadata"].get(k), sort_keys=True)
            for k in ("generation", "finalizers", "annotations", "labels")}
    status = dict(es.get("status", {}))
    status.pop("usage", None)
    status["conditions"] = [c for c in status.get("conditions", []) if c["type"] != "WithinLimits"]
    seen |= {f"EtcdStorage status.{k}": json.dumps(v, sort_keys=True) for k, v in status.items()}
    deployment = apps.read_namespaced_deployment(names.proxy(name), OPERATOR_NAMESPACE)
    seen["Deployment generation"] = str(deployment.metadata.generation)
    seen["Service"] = core.read_namespaced_service(names.proxy(name), OPERATOR_NAMESPACE).metadata.resource_version
    for secret in (names.ca_store(name), names.serving(name)):
        seen[f"Secret {secret}"] = core.read_namespaced_secret(secret, OPERATOR_NAMESPACE).metadata.resource_version
    seen["ConfigMap client CA"] = core.read_namespaced_config_map(
        names.client_ca(name), OPERATOR_NAMESPACE).metadata.resource_version
    seen["delivered Secret"] = core.read_namespaced_secret("etcd-client-cert", name).metadata.resource_version
    seen["delivered ConfigMap"] = core.read_namespaced_config_map("etcd-serving-ca", name).metadata.resource_version
    return seen


def assert_unchanged(before: dict[str, str], after: dict[str, str]) -> None:
    changed = {k: (before.get(k), after.get(k)) for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert not changed, "rewritten: " + json.dumps(changed, indent=1)


def runs_logged(installed: Olm, pod: str, name: str) -> int:
    """Completed reconciles of ``name`` in one operator pod's log."""
    try:
        log = client.CoreV1Api(installed.api).read_namespaced_pod_log(pod, OPERATOR_NAMESPACE, container="manager")
    except ApiException:
        return 0
    return completed_runs(log, name)


def test_upgrade_keeps_tenants_serving_and_issues_nothing_anew(installed: Olm, tenant: str, tmp_path: Path) -> None:
    api = installed.api
    before = what_the_operator_wrote(api, tenant)
    with Load(service_client(installed.cp, tenant, tenant, tmp_path)) as load:
        load.wait_ops(20)
        t0 = time.monotonic()
        upgrade(installed.cp, installed.published.catalogs[NEXT])
        installed.wait_csv(NEXT)
        installed.timings["upgrade_s"] = round(time.monotonic() - t0, 1)
        custom = client.CustomObjectsApi(api)
        installed.wait(f"{csv_name(FIRST)} replaced",
                       lambda: csv_phase(installed.cp, OPERATOR_NAMESPACE, csv_name(FIRST), custom) == "")

        def new_operator_reconciled() -> bool:
            pods = installed.operator_pods()
            return (len(pods) == 1 and pods[0].spec.containers[0].image == f"{OPERATOR_REPO}:{NEXT}"
                    and runs_logged(installed, pods[0].metadata.name, tenant) >= 1)

        installed.wait(f"the {NEXT} operator reconciled {tenant}", new_operator_reconciled, 180)
        load.wait_ops(20)
    assert load.failures == [], f"the tenant client failed during the upgrade: {load.failures[:3]}"
    # The new operator found everything as it should be: no certificate re-issued, no object rewritten.
    assert_unchanged(before, what_the_operator_wrote(api, tenant))
    # And it works with the new CSV's permissions: a second tenant comes up.
    etcdstorage(installed.cp, "olm-b", "olm-b")
    wait_ready(installed.cp, "olm-b")
    (WORKDIR / "timings.json").write_text(json.dumps(installed.timings))


def test_uninstall_keeps_tenants_and_a_reinstall_rewrites_nothing(installed: Olm, tenant: str,
                                                                   tmp_path: Path) -> None:
    """OLM first creates a new CSV's Deployment without the Subscription's config (it applies it once the
    Subscription names that CSV): an operator started that way must not touch a tenant."""
    api = installed.api
    custom = client.CustomObjectsApi(api)
    before = what_the_operator_wrote(api, tenant)
    custom.delete_namespaced_custom_object("operators.coreos.com", "v1alpha1", OPERATOR_NAMESPACE,
                                           "subscriptions", "etcdproxy-operator")
    custom.delete_namespaced_custom_object("operators.coreos.com", "v1alpha1", OPERATOR_NAMESPACE,
                                           "clusterserviceversions", csv_name(NEXT))
    installed.wait("the operator uninstalled", lambda: not installed.operator_pods())
    with Load(service_client(installed.cp, tenant, tenant, tmp_path)) as load:  # still served without it
        load.wait_ops(20)
        subscribe(installed.cp, installed.published.catalogs[NEXT], operator_env(installed.cp))
        installed.wait_csv(NEXT)

        def configured_operator_reconciled() -> bool:
            pods = installed.operator_pods()
            env = {e.name: e.value for e in pods[0].spec.containers[0].env} if len(pods) == 1 else {}
            return (env.get("ETCDPROXY_CORE_ENDPOINTS") == operator_env(installed.cp)["ETCDPROXY_CORE_ENDPOINTS"]
                    and runs_logged(installed, pods[0].metadata.name, tenant) >= 1)

        installed.wait("the reinstalled operator reconciled the tenant", configured_operator_reconciled, 180)
        load.wait_ops(20)
    assert load.failures == []
    assert_unchanged(before, what_the_operator_wrote(api, tenant))
