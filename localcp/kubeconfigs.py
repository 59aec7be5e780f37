"""Kubeconfig files for the control plane's users (client-certificate authentication)."""

from __future__ import annotations

import json
from pathlib import Path


def write_kubeconfig(path: Path, port: int, ca: Path, cert: Path, key: Path, user: str = "admin") -> Path:
    """A kubeconfig for https://127.0.0.1:<port> with a client certificate."""
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "localcp", "preferences": {},
        "clusters": [{"name": "localcp", "cluster": {
            "server": f"https://127.0.0.1:{port}", "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "localcp", "context": {"cluster": "localcp", "user": user}}],
    }
    path.write_text(json.dumps(cfg, indent=1))
    path.chmod(0o600)
    return path
