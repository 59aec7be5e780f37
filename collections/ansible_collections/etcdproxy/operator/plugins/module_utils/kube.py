"""A small JSON-in, JSON-out layer over the kubernetes client for our modules.

Reads return plain dicts (or None when the object does not exist), so the
decision logic stays plain Python; writes are explicit and few.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

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
from kubernetes import client, config
from kubernetes.client.rest import ApiException


def api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """From the kubeconfig ansible-operator exports (K8S_AUTH_KUBECONFIG), or in-cluster."""
    path = kubeconfig or os.environ.get("K8S_AUTH_KUBECONFIG") or os.environ.get("KUBECONFIG")
    if path:
        return config.new_client_from_config(config_file=path, context=context)
    config.load_incluster_config()
    return client.ApiClient()


class Kube:
    def __init__(self, api: client.ApiClient, reuse_reads: bool = False) -> None:
        """``reuse_reads``: answer repeated reads of a Deployment, ConfigMap, Secret or EtcdStorage from the
        first one, until this client writes that object. For one reconcile run, whose steps read the same
        objects (the proxy Deployment, its client CA, the EtcdStorage) and in which only this client writes
        them."""
        self.api = api
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self._reads: dict[tuple[str, str, str], dict[str, Any] | None] | None = {} if reuse_reads else None

    def _read(self, kind: str, fn: Any, namespace: str, name: str) -> dict[str, Any] | None:
        if self._reads is None:
            return self._get(fn, name, namespace)
        if (kind, namespace, name) not in self._reads:
            self._reads[kind, namespace, name] = self._get(fn, name, namespace)
        return self._reads[kind, namespace, name]

    def _written(self, kind: str, namespace: str, name: str) -> None:
        if self._reads is not None:
            self._reads.pop((kind, namespace, name), None)

    @staticmethod
    def _json(resp: Any) -> dict[str, Any]:
        return json.loads(resp.data)

    def _get(self, fn: Any, *args: Any) -> dict[str, Any] | None:
        try:
            return self._json(fn(*args, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read("ConfigMap", self.core.read_namespaced_config_map, namespace, name)

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read("Secret", self.core.read_namespaced_secret, namespace, name)

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._read("Deployment", self.apps.read_namespaced_deployment, namespace, name)

    def get_namespace(self, name: str) -> dict[str, Any] | None:
        return self._get(self.core.read_namespace, name)

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(self.core.read_namespaced_service, name, namespace)

    def get_object(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The live version of one of our proxy objects (Deployment or Service)."""
        meta = obj["metadata"]
        readers = {"Deployment": self.get_deployment, "Service": self.get_service,
                   "ConfigMap": self.get_configmap, "Secret": self.get_secret}
        return readers[obj["kind"]](meta["namespace"], meta["name"])

    def get_etcdstorage(self, name: str) -> dict[str, Any] | None:
        def read(name: str, _namespace: str, **kwargs: Any) -> Any:  # cluster-scoped
            return self.custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name, **kwargs)

        return self._read("EtcdStorage", read, "", name)

    def get_backup(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, BACKUP_PLURAL, name)

    def patch_backup_status(self, namespace: str, name: str, status_patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of an EtcdStorageBackup's .status (null deletes a key)."""
        return self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, BACKUP_PLURAL, name,
                                                                 {"status": status_patch})

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(self.core.read_namespaced_pod, name, namespace)

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(self.batch.read_namespaced_job, name, namespace)

    def create_job(self, body: dict[str, Any]) -> None:
        """POST, so ansible-operator's proxy adds the owner reference (and watches Jobs for us)."""
        self.batch.create_namespaced_job(body["metadata"]["namespace"], body)

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and its pods now (a Job's own default leaves the pods orphaned)."""
        try:
            self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise

    def job_pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        resp = self.core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job}",
                                             _preload_content=False)
        return self._json(resp).get("items") or []

    def write(self, kind: str, namespace: str, name: str, existing: dict[str, Any] | None,
              body: dict[str, Any]) -> None:
        """Create ``body`` (POST, so ansible-operator's proxy adds the owner reference) or merge-patch it
        onto ``existing``: keys of others in data, labels and annotations are kept."""
        self._written(kind, namespace, name)
        if kind == "Secret":
            create, patch = self.core.create_namespaced_secret, self.core.patch_namespaced_secret
        else:
            create, patch = self.core.create_namespaced_config_map, self.core.patch_namespaced_config_map
        if existing is None:
            full = {"apiVersion": "v1", "kind": kind, **body}
            full["metadata"] = {**body.get("metadata", {}), "name": name, "namespace": namespace}
            create(namespace, full)
        else:
            patch(name, namespace, body)

    def add_owner_references(self, kind: str, namespace: str, name: str, refs: list[dict[str, str]]) -> None:
        """Add owner references to a ConfigMap or Secret, keeping its others (a strategic merge patch:
        the API merges the list by uid)."""
        self._written(kind, namespace, name)
        patch = self.core.patch_namespaced_secret if kind == "Secret" else self.core.patch_namespaced_config_map
        patch(name, namespace, {"metadata": {"ownerReferences": refs}})

    def delete_configmap(self, namespace: str, name: str) -> bool:
        """Delete a ConfigMap; False if it was already gone."""
        self._written("ConfigMap", namespace, name)
        try:
            self.core.delete_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def patch_etcdstorage_status(self, name: str, status_patch: dict[str, Any]) -> dict[str, Any]:
        """Apply a JSON merge patch (null deletes a key) to .status through the status subresource."""
        self._written("EtcdStorage", "", name)
        return self.custom.patch_cluster_custom_object_status(GROUP, VERSION, PLURAL, name,
                                                              {"status": status_patch})

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
        self.core.create_namespaced_event(namespace, body)
