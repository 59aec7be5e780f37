"""Our API client: read reuse within one reconcile run, and what goes over HTTP (a loopback server stands in
for the API server; the integration suite runs every call against a real one)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from ansible_collections.etcdproxy.operator.plugins.module_utils.kube import Api, ApiError, Kube
from ansible_collections.etcdproxy.operator.plugins.module_utils.kubeconfig import Endpoint

from .loopback import QuietHandler, serving


class FakeApi:
    """Counts reads per path; answers each with its path and the number of reads so far."""

    def __init__(self) -> None:
        self.reads: dict[str, int] = {}
        self.writes: list[tuple[str, str, Any, str]] = []

    def get(self, path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
        self.reads[path] = self.reads.get(path, 0) + 1
        return {"path": path, "n": self.reads[path]}

    def request(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
                content_type: str = "application/json") -> Any:
        self.writes.append((method, path, body, content_type))
        return {}


def kube(reuse: bool) -> tuple[Kube, FakeApi]:
    api = FakeApi()
    return Kube(api, reuse_reads=reuse), api  # type: ignore[arg-type]


DEPLOYMENT = "/apis/apps/v1/namespaces/ns/deployments/etcd-a"
CLIENT_CA = "/api/v1/namespaces/ns/configmaps/etcd-a-client-ca"


def test_one_read_serves_a_whole_run_when_asked():
    k, api = kube(reuse=True)
    obj = {"kind": "Deployment", "metadata": {"namespace": "ns", "name": "etcd-a"}}
    assert k.get_deployment("ns", "etcd-a") == k.get_object(obj) == {"path": DEPLOYMENT, "n": 1}
    k.get_deployment("ns", "etcd-b")
    assert api.reads == {DEPLOYMENT: 1, "/apis/apps/v1/namespaces/ns/deployments/etcd-b": 1}


def test_reads_are_fresh_by_default():
    k, api = kube(reuse=False)
    k.get_deployment("ns", "etcd-a")
    k.get_deployment("ns", "etcd-a")
    assert api.reads == {DEPLOYMENT: 2}


def test_a_write_through_the_client_makes_the_next_read_fresh():
    k, api = kube(reuse=True)
    first = k.get_configmap("ns", "etcd-a-client-ca")
    assert k.get_configmap("ns", "etcd-a-client-ca") == first and api.reads[CLIENT_CA] == 1
    k.write("ConfigMap", "ns", "etcd-a-client-ca", first, {"data": {"ca.crt": "x"}})
    assert k.get_configmap("ns", "etcd-a-client-ca") == {"path": CLIENT_CA, "n": 2}
    k.add_owner_references("ConfigMap", "ns", "etcd-a-client-ca", [])
    k.get_configmap("ns", "etcd-a-client-ca")
    assert api.reads[CLIENT_CA] == 3


def test_writes_use_the_patch_each_kind_of_object_takes():
    k, api = kube(reuse=False)
    k.write("Secret", "ns", "etcd-client", None, {"data": {"tls.key": "k"}, "metadata": {"labels": {"a": "b"}}})
    k.write("Secret", "ns", "etcd-client", {"metadata": {}}, {"data": {"tls.key": None}})
    k.patch_etcdstorage_status("a", {"observedGeneration": 2})
    k.patch_backup_status("ns", "b", {"phase": "Done"})
    k.delete_job("ns", "etcd-a-backup")
    assert api.writes == [
        ("POST", "/api/v1/namespaces/ns/secrets",
         {"apiVersion": "v1", "kind": "Secret", "data": {"tls.key": "k"},
          "metadata": {"labels": {"a": "b"}, "name": "etcd-client", "namespace": "ns"}}, "application/json"),
        # built-in kinds: a strategic merge patch (owner references merged by uid, not replaced)
        ("PATCH", "/api/v1/namespaces/ns/secrets/etcd-client", {"data": {"tls.key": None}},
         "application/strategic-merge-patch+json"),
        # custom resources only take a JSON merge patch
        ("PATCH", "/apis/etcd.etcdproxy.dev/v1alpha1/etcdstorages/a/status", {"status": {"observedGeneration": 2}},
         "application/merge-patch+json"),
        ("PATCH", "/apis/etcd.etcdproxy.dev/v1alpha1/namespaces/ns/etcdstoragebackups/b/status",
         {"status": {"phase": "Done"}}, "application/merge-patch+json"),
        ("DELETE", "/apis/batch/v1/namespaces/ns/jobs/etcd-a-backup", None, "application/json"),
    ]


class Recorder(QuietHandler):
    """Answers as an API server would: the object for GET /found, 404 with a Status for others, 403 for
    /forbidden; records each request."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        Recorder.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                              "body": json.loads(body) if body else None})
        if self.path.startswith("/forbidden"):
            status, out = 403, {"kind": "Status", "message": 'secrets "x" is forbidden: User "u" cannot get'}
        elif self.path.startswith("/found") or self.command != "GET":
            status, out = 200, {"kind": "ConfigMap", "metadata": {"name": "found"}}
        else:
            status, out = 404, {"kind": "Status", "message": "not found", "code": 404}
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = answer  # noqa: N815 (http.server's names)


@pytest.fixture
def server() -> Iterator[str]:
    Recorder.seen = []
    with serving(Recorder) as url:
        yield url


def test_over_http_answers_errors_and_headers(server: str):
    api = Api(Endpoint(server=server, headers=lambda: {"Authorization": "Basic dTpw"}))
    assert api.get("/found") == {"kind": "ConfigMap", "metadata": {"name": "found"}}
    assert api.get("/missing") is None
    with pytest.raises(ApiError) as refused:
        api.get("/forbidden")
    assert refused.value.status == 403 and refused.value.reason == "Forbidden"
    assert str(refused.value) == 'HTTP 403 Forbidden: secrets "x" is forbidden: User "u" cannot get'
    api.request("PATCH", "/p", {"data": {"k": None}}, query={"fieldManager": "x"},
                content_type="application/merge-patch+json")
    first, patch = Recorder.seen[0], Recorder.seen[-1]
    assert first["headers"]["Authorization"] == "Basic dTpw" and first["headers"]["Accept"] == "application/json"
    assert patch["path"] == "/p?fieldManager=x" and patch["body"] == {"data": {"k": None}}
    assert patch["headers"]["Content-Type"] == "application/merge-patch+json"


class Lists(FakeApi):
    """Answers lists: a list of two, an answer without items, or the API server's 404."""

    def request(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
                content_type: str = "application/json") -> Any:
        if path.endswith("/namespaces/gone/etcdstoragebackups"):
            raise ApiError(404, "Not Found", '{"message": "the server could not find the requested resource"}')
        if path.endswith("/namespaces/odd/etcdstoragebackups"):
            return {"kind": "Status"}
        return {"items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}], "path": path}


def test_a_list_of_names_is_an_answer_with_items_and_nothing_else_is_an_empty_list():
    """What the lists answer decides which runner directories are removed: no answer must look like
    "nothing exists"."""
    k = Kube(Lists())  # type: ignore[arg-type]
    assert k.etcdstorage_names() == {"a", "b"} == k.backup_names("ops")
    for namespace in ("gone", "odd"):
        with pytest.raises(ApiError):
            k.backup_names(namespace)
