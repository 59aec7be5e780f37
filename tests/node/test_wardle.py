"""The seed's demo as a test: k8s.io/sample-apiserver runs on the sample EtcdStorage with only what the
operator delivered to its namespace, serves wardle.example.com through the main kube-apiserver, and
stores its objects under the tenant's prefix; a second tenant's API server sees none of them."""

from __future__ import annotations

import yaml
from kubernetes import client

from localcp.admin import kubectl_apply
from localcp.wardle import apiservice_available, core_keys, flunders_seen_by, tenant_apiserver


def test_sample_apiserver_keeps_its_objects_in_its_own_etcdstorage(node):
    node.tenant("wardle", "wardle")
    tenant_apiserver(node.cp, "wardle", register=True)
    apiservice_available(node.cp)
    flunder = {"apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder",
               "metadata": {"name": "test-flunder", "namespace": "wardle"}, "spec": {}}
    kubectl_apply(node.cp, yaml.safe_dump(flunder), "a Flunder")
    listed = client.CustomObjectsApi(node.api).list_namespaced_custom_object(
        "wardle.example.com", "v1alpha1", "wardle", "flunders")
    assert "test-flunder" in [f["metadata"]["name"] for f in listed["items"]]
    keys = core_keys(node.cp, "/wardle/").splitlines()
    assert "/wardle//registry/wardle.example.com/wardle.example.com/flunders/wardle/test-flunder" in keys
    # The main cluster's own keyspace holds no wardle objects.
    assert core_keys(node.cp, "/registry/wardle.example.com") == ""

    node.tenant("wardle-b", "wardle-b")
    tenant_apiserver(node.cp, "wardle-b", register=False)
    assert flunders_seen_by(node.cp, "wardle-b") == []
    assert "flunder.wardle.example.com/test-flunder" in flunders_seen_by(node.cp, "wardle")


def test_a_deleted_service_comes_back_and_the_api_server_finds_it_by_name(node):
    """A hand-deleted Service is recreated with a new ClusterIP; the tenant API server, which knows its
    endpoint by DNS name only, reconnects to it."""
    node.tenant("wardle", "wardle")
    tenant_apiserver(node.cp, "wardle", register=True)
    apiservice_available(node.cp)
    old_ip = node.service_ip("wardle")
    node.core.delete_namespaced_service("etcd-wardle", "kube-apiserver-storage")
    custom = client.CustomObjectsApi(node.api)

    def new_service_and_write() -> bool:
        try:
            if node.service_ip("wardle") == old_ip:
                return False
            custom.create_namespaced_custom_object("wardle.example.com", "v1alpha1", "wardle", "flunders", {
                "apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder",
                "metadata": {"name": "after-service-loss"}, "spec": {}})
            return True
        except client.ApiException as exc:
            return exc.status == 409  # created by an earlier attempt whose answer was lost

    node.wait("a Flunder written through the recreated Service", new_service_and_write, 120)
    assert "flunder.wardle.example.com/after-service-loss" in flunders_seen_by(node.cp, "wardle")
