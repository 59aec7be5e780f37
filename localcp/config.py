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
