"""Kube's read reuse within one reconcile run, without an API server."""

from __future__ import annotations

import json

from ansible_collections.etcdproxy.operator.plugins.module_utils.kube import Kube
from kubernetes import client


class Response:
    def __init__(self, body: dict) -> None:
        self.data = json.dumps(body).encode()


class Apps:
    def __init__(self) -> None:
        self.reads = 0

    def read_namespaced_deployment(self, name: str, namespace: str, _preload_content: bool = True) -> Response:
        self.reads += 1
        return Response({"metadata": {"name": name, "namespace": namespace}})


def kube(reuse: bool) -> tuple[Kube, Apps]:
    k = Kube(client.ApiClient(), reuse_reads=reuse)
    k.apps = Apps()
    return k, k.apps


def test_one_read_serves_a_whole_run_when_asked():
    k, apps = kube(reuse=True)
    obj = {"kind": "Deployment", "metadata": {"namespace": "ns", "name": "etcd-a"}}
    assert k.get_deployment("ns", "etcd-a") == k.get_object(obj) == {"metadata": {"name": "etcd-a", "namespace": "ns"}}
    k.get_deployment("ns", "etcd-b")
    assert apps.reads == 2  # one per Deployment


def test_reads_are_fresh_by_default():
    k, apps = kube(reuse=False)
    k.get_deployment("ns", "etcd-a")
    k.get_deployment("ns", "etcd-a")
    assert apps.reads == 2


class Core:
    def __init__(self) -> None:
        self.reads = 0

    def read_namespaced_config_map(self, name: str, namespace: str, _preload_content: bool = True) -> Response:
        self.reads += 1
        return Response({"metadata": {"name": name}, "data": {"n": str(self.reads)}})

    def create_namespaced_config_map(self, namespace: str, body: dict) -> None:
        pass

    def patch_namespaced_config_map(self, name: str, namespace: str, body: dict) -> None:
        pass


def test_a_write_through_the_client_makes_the_next_read_fresh():
    k = Kube(client.ApiClient(), reuse_reads=True)
    k.core = core = Core()
    first = k.get_configmap("ns", "etcd-a-client-ca")
    assert k.get_configmap("ns", "etcd-a-client-ca") == first and core.reads == 1
    k.write("ConfigMap", "ns", "etcd-a-client-ca", first, {"data": {"ca.crt": "x"}})
    assert k.get_configmap("ns", "etcd-a-client-ca")["data"] == {"n": "2"}
    k.add_owner_references("ConfigMap", "ns", "etcd-a-client-ca", [])
    k.get_configmap("ns", "etcd-a-client-ca")
    assert core.reads == 3
