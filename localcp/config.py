"""Where the harness finds things and the fixed facts of the local cluster."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BIN_DIR = Path(os.environ.get("ETCDPROXY_BIN_DIR", REPO / ".cache" / "bin"))
DEFAULT_WORKDIR = Path(os.environ.get("LOCALCP_DIR", REPO / ".cache" / "localcp"))
KUBE_VERSION = "v1.34.4"
SERVICE_CIDR = "10.96.0.0/16"
FAKE_NODE = "kwok-node-0"
OPERATOR_USER = "system:serviceaccount:kube-apiserver-storage:etcdproxy-operator"
# The real node (localcp/node.py): a bridge in the harness's network namespace carries the node IP;
# pods get addresses from the same range; the control plane listens on the node IP too.
NODE_NAME = "epo-node"
BRIDGE = "epo0"
NODE_IP = "10.88.0.1"
POD_CIDR = "10.88.0.0/16"
CLUSTER_DNS = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
# The cluster's image registry (localcp/registry.py) on the node IP; containerd trusts the cluster CA for it.
REGISTRY = f"{NODE_IP}:5000"
