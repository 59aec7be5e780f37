"""Cluster DNS on the real node: CoreDNS (built from its Go module) as a Deployment in kube-system
behind the Service at CLUSTER_DNS, the address kubelet gives every pod. It answers for the
cluster domain only and forwards nothing, so a lookup of any other name fails inside the
harness's network instead of leaving the machine."""

from __future__ import annotations

import json

from .admin import kubectl_apply, wait_deployment_ready
from .cluster import ControlPlane
from .config import CLUSTER_DNS, CLUSTER_DOMAIN
from .images import COREDNS_IMAGE

NAMESPACE = "kube-system"
NAME = "coredns"
PORT = 1053  # unprivileged inside the pod; the Service maps 53 to it
COREFILE = f""".:{PORT} {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
}}
"""


def objects() -> list[dict]:
    labels = {"k8s-app": "kube-dns"}
    meta = {"name": NAME, "namespace": NAMESPACE}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "localcp:coredns"},
         "rules": [{"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "localcp:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "localcp:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"Corefile": COREFILE}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
            "replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "serviceAccountName": NAME, "dnsPolicy": "Default",
                "containers": [{
                    "name": "coredns", "image": COREDNS_IMAGE, "imagePullPolicy": "Never",
                    "args": ["-conf", "/etc/coredns/Corefile"],
                    "ports": [{"containerPort": PORT, "protocol": "UDP", "name": "dns"},
                              {"containerPort": PORT, "protocol": "TCP", "name": "dns-tcp"}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 1},
                    "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                    "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
                                        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                }],
                "volumes": [{"name": "config", "configMap": {"name": NAME}}],
            }},
        }},
        {"apiVersion": "v1", "kind": "Service", "metadata": {**meta, "name": "kube-dns", "labels": labels}, "spec": {
            "selector": labels, "clusterIP": CLUSTER_DNS,
            "ports": [{"name": "dns", "port": 53, "targetPort": PORT, "protocol": "UDP"},
                      {"name": "dns-tcp", "port": 53, "targetPort": PORT, "protocol": "TCP"}]}},
    ]


def install_dns(cp: ControlPlane, timeout: float = 60) -> None:
    kubectl_apply(cp, json.dumps({"apiVersion": "v1", "kind": "List", "items": objects()}), "cluster DNS")
    wait_deployment_ready(cp, NAMESPACE, NAME, timeout, "cluster DNS (CoreDNS)")
