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
    k = Kube(client.ApiClient(), reuse_deployment_reads=reuse)
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
