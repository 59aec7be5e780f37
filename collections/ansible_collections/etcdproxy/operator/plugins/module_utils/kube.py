"""A small JSON-in, JSON-out client of the Kubernetes API for our modules: urllib3 and the few paths we use.

Reads return plain dicts (or None when the object does not exist), so the decision logic stays plain Python;
writes are explicit and few. Not the kubernetes client: importing it costs ~0.2 s of CPU in every reconcile
run, twice on a new EtcdStorage's way to Ready (docs/design.md, "Our own HTTP calls to the API"); where the
connection comes from is module_utils/kubeconfig.py.
"""

from __future__ import annotations

import json
import socket
import ssl
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from ansible_collections.etcdproxy.operator.plugins.module_utils.kubeconfig import Endpoint, endpoint
from ansible_collections.etcdproxy.operator.plugins.module_utils.names import (
    API_VERSION,
    BACKUP_PLURAL,
    COMPONENT,
    EVENT_NAMESPACE,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
)

# A reconcile makes a handful of small calls; none should wait on a stuck API server for ever.
TIMEOUT = urllib3.Timeout(connect=10.0, read=60.0)
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"  # built-in kinds: lists merged by key


class ApiError(Exception):
    """The API server answered with an error status. ``status``, ``reason`` (the HTTP reason phrase) and
    ``body`` as the kubernetes client's ApiException has them; the message is the Status object's."""

    def __init__(self, status: int, reason: str, body: str) -> None:
        self.status, self.reason, self.body = status, reason, body
        try:
            message = json.loads(body).get("message") or body
        except (ValueError, AttributeError):
            message = body
        super().__init__(f"HTTP {status} {reason}: {str(message)[:1000]}")


class Api:
    """Requests to one API server: JSON bodies and answers, authentication headers from the endpoint."""

    def __init__(self, where: Endpoint) -> None:
        self.where = where
        options: dict[str, Any] = {"timeout": TIMEOUT}
        if where.ssl_context is not None:
            options["ssl_context"] = where.ssl_context
            if where.ssl_context.verify_mode == ssl.CERT_NONE:
                options.update(cert_reqs="CERT_NONE", assert_hostname=False)
        if where.server_hostname:
            options["server_hostname"] = where.server_hostname
        self.pool = urllib3.ProxyManager(where.proxy, **options) if where.proxy else urllib3.PoolManager(**options)

    def request(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
                content_type: str = "application/json") -> Any:
        """The decoded answer (None if empty); ApiError for an error status."""
        url = self.where.server + path + (f"?{urlencode(query)}" if query else "")
        headers = {"Accept": "application/json", "User-Agent": COMPONENT, **self.where.headers()}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), content_type
        resp = self.pool.request(method, url, body=data, headers=headers)
        if resp.status >= 400:
            raise ApiError(resp.status, resp.reason or "", resp.data.decode("utf-8", "replace"))
        return json.loads(resp.data) if resp.data else None

    def get(self, path: str, query: dict[str, str] | None = None) -> dict[str, Any] | None:
        """The object, or None when the API server says it does not exist."""
        try:
            return self.request("GET", path, query=query)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise


def api_client(kubeconfig: str | None = None, context: str | None = None) -> Api:
    """From ``kubeconfig``, else the kubeconfig ansible-operator exports (K8S_AUTH_KUBECONFIG), else in-cluster."""
    return Api(endpoint(kubeconfig, context))


def object_path(kind: str, namespace: str, name: str = "") -> str:
    """The path of a namespaced built-in object (or, without a name, of its collection)."""
    group, plural = {"ConfigMap": ("", "configmaps"), "Secret": ("", "secrets"), "Service": ("", "services"),
                     "Pod": ("", "pods"), "Event": ("", "events"), "Deployment": ("apps/v1", "deployments"),
                     "Job": ("batch/v1", "jobs")}[kind]
    prefix = f"/apis/{group}" if group else "/api/v1"
    return f"{prefix}/namespaces/{quote(namespace, safe='')}/{plural}" + (f"/{quote(name, safe='')}" if name else "")


def etcdstorage_path(name: str = "") -> str:
    """The path of an EtcdStorage (or, without a name, of their collection)."""
    return f"/apis/{GROUP}/{VERSION}/{PLURAL}" + (f"/{quote(name, safe='')}" if name else "")


def backup_path(namespace: str, name: str = "") -> str:
    """The path of an EtcdStorageBackup (or, without a name, of the collection in ``namespace``)."""
    return (f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}/{BACKUP_PLURAL}"
            + (f"/{quote(name, safe='')}" if name else ""))


class Kube:
    def __init__(self, api: Api, reuse_reads: bool = False) -> None:
        """``reuse_reads``: answer repeated reads of a Deployment, ConfigMap, Secret or EtcdStorage from the
        first one, until this client writes that object. For one reconcile run, whose steps read the same
        objects (the proxy Deployment, its client CA, the EtcdStorage) and in which only this client writes
        them."""
        self.api = api
        self._reads: dict[tuple[str, str, str], dict[str, Any] | None] | None = {} if reuse_reads else None

    def _read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        path = etcdstorage_path(name) if kind == KIND else object_path(kind, namespace, name)
        if self._reads is None:
            return self.api.get(path)
        if (kind, namespace, name) not in self._reads:
            self._reads[kind, namespace, name] = self.api.get(path)
        return self._reads[kind, namespace, name]

    def _written(self, kind: str, namespace: str, name: str) -> None:
        if self._reads is not None:
            self._reads.pop((kind, namespace, name), None)

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read("ConfigMap", namespace, name)

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read("Secret", namespace, name)

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read("Deployment", namespace, name)

    def get_namespace(self, name: str) -> dict[str, Any] | None:
        return self.api.get(f"/api/v1/namespaces/{quote(name, safe='')}")

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.api.get(object_path("Service", namespace, name))

    def get_object(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The live version of one of our proxy objects (Deployment or Service)."""
        meta = obj["metadata"]
        readers = {"Deployment": self.get_deployment, "Service": self.get_service,
                   "ConfigMap": self.get_configmap, "Secret": self.get_secret}
        return readers[obj["kind"]](meta["namespace"], meta["name"])

    def get_etcdstorage(self, name: str) -> dict[str, Any] | None:
        return self._read(KIND, "", name)

    def get_backup(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.api.get(backup_path(namespace, name))

    def etcdstorage_names(self) -> set[str]:
        """The names of every EtcdStorage (cluster-scoped). Any error is raised, a 404 too: an answer that
        lists nothing must mean that nothing exists."""
        return _names(self.api.request("GET", etcdstorage_path()))

    def backup_names(self, namespace: str) -> set[str]:
        """The names of the EtcdStorageBackups in ``namespace``; errors as for etcdstorage_names."""
        return _names(self.api.request("GET", backup_path(namespace)))

    def patch_backup_status(self, namespace: str, name: str, status_patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of an EtcdStorageBackup's .status (null deletes a key)."""
        return self.api.request("PATCH", f"{backup_path(namespace, name)}/status", {"status": status_patch},
                                content_type=MERGE_PATCH)

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.api.get(object_path("Pod", namespace, name))

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.api.get(object_path("Job", namespace, name))

    def create_job(self, body: dict[str, Any]) -> None:
        """POST, so ansible-operator's proxy adds the owner reference (and watches Jobs for us)."""
        self.api.request("POST", object_path("Job", body["metadata"]["namespace"]), body)

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and its pods now (a Job's own default leaves the pods orphaned)."""
        try:
            self.api.request("DELETE", object_path("Job", namespace, name), query={"propagationPolicy": "Background"})
        except ApiError as exc:
            if exc.status != 404:
                raise

    def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        return self.pods(namespace, {"batch.kubernetes.io/job-name": job})

    def pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        """The pods in ``namespace`` that carry all of ``labels``."""
        selector = {"labelSelector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))}
        pods = self.api.get(object_path("Pod", namespace), query=selector)
        return (pods or {}).get("items") or []

    def write(self, kind: str, namespace: str, name: str, existing: dict[str, Any] | None,
              body: dict[str, Any]) -> None:
        """Create ``body`` (POST, so ansible-operator's proxy adds the owner reference) or merge-patch it
        onto ``existing``: keys of others in data, labels and annotations are kept."""
        if existing is None:
            self._written(kind, namespace, name)
            full = {"apiVersion": "v1", "kind": kind, **body}
            full["metadata"] = {**body.get("metadata", {}), "name": name, "namespace": namespace}
            self.api.request("POST", object_path(kind, namespace), full)
        else:
            self.patch(kind, namespace, name, body)

    def patch(self, kind: str, namespace: str, name: str, body: dict[str, Any]) -> None:
        """A strategic merge patch of a ConfigMap or Secret: lists of a known key (owner references, by uid) are
        merged, maps merged, null deletes a key."""
        self._written(kind, namespace, name)
        self.api.request("PATCH", object_path(kind, namespace, name), body, content_type=STRATEGIC_MERGE_PATCH)

    def add_owner_references(self, kind: str, namespace: str, name: str, refs: list[dict[str, str]]) -> None:
        """Add owner references to a ConfigMap or Secret, keeping its others (a strategic merge patch:
        the API merges the list by uid)."""
        self.patch(kind, namespace, name, {"metadata": {"ownerReferences": refs}})

    def delete_configmap(self, namespace: str, name: str) -> bool:
        """Delete a ConfigMap; False if it was already gone."""
        self._written("ConfigMap", namespace, name)
        try:
            self.api.request("DELETE", object_path("ConfigMap", namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def patch_etcdstorage_status(self, name: str, status_patch: dict[str, Any]) -> dict[str, Any]:
        """Apply a JSON merge patch (null deletes a key) to .status through the status subresource."""
        self._written(KIND, "", name)
        return self.api.request("PATCH", f"{etcdstorage_path(name)}/status", {"status": status_patch},
                                content_type=MERGE_PATCH)

    def create_event(self, owner: dict[str, Any], event_type: str, reason: str, message: str,
                     now_rfc3339: str) -> None:
        """An Event about an EtcdStorage (cluster-scoped: the API server requires those in "default") or, when
        ``owner`` has a kind and namespace, about that object, in its namespace."""
        meta = owner.get("metadata") or {}
        namespace = meta.get("namespace") or EVENT_NAMESPACE
        involved = {"apiVersion": API_VERSION, "kind": owner.get("kind") or KIND, "name": meta.get("name"),
                    "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")}
        if meta.get("namespace"):
            involved["namespace"] = namespace
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name')}.", "namespace": namespace},
            "involvedObject": involved,
            "type": event_type, "reason": reason, "message": message[:1024],
            "firstTimestamp": now_rfc3339, "lastTimestamp": now_rfc3339, "count": 1,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT, "reportingInstance": socket.gethostname()[:128],
        }
        self.api.request("POST", object_path("Event", namespace), body)


def _names(collection: dict[str, Any] | None) -> set[str]:
    """The names in a list answer; anything else is an error, never an empty list."""
    if not isinstance(collection, dict) or not isinstance(collection.get("items"), list):
        raise ApiError(200, "OK", "the API server's answer to a list has no items")
    return {item["metadata"]["name"] for item in collection["items"]}
