"""Run a tenant's proxy exactly as the operator's Deployment describes it, as a local process.

Pods do not run on the local control plane (kwok fakes them), so the e2e tests take the proxy
container's command and the Secrets/ConfigMaps its volumes mount, write those files to a directory,
point the paths there, bind to loopback ports, and start the real ``etcd grpc-proxy``.
"""

from __future__ import annotations

import base64
import http.client
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from .cluster import BIN_DIR, free_port, stop_pid, wait_for


@dataclass
class ProxyProcess:
    proc: subprocess.Popen
    port: int
    metrics_port: int
    dir: Path
    log: Path

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_pid(self.proc.pid)
        shutil.rmtree(self.dir, ignore_errors=True)


def materialize_volumes(core: client.CoreV1Api, namespace: str, pod_spec: dict[str, Any],
                        root: Path) -> dict[str, Path]:
    """Write every ConfigMap/Secret volume of the pod to ``root/<volume>``; mountPath -> local dir."""
    mounts = {}
    container = pod_spec["containers"][0]
    by_name = {v["name"]: v for v in pod_spec["volumes"]}
    for mount in container["volumeMounts"]:
        vol = by_name[mount["name"]]
        target = root / mount["name"]
        target.mkdir(parents=True)
        if "configMap" in vol:
            data = core.read_namespaced_config_map(vol["configMap"]["name"], namespace).data or {}
            files = {k: v.encode() for k, v in data.items()}
        elif "secret" in vol:
            data = core.read_namespaced_secret(vol["secret"]["secretName"], namespace).data or {}
            files = {k: base64.b64decode(v) for k, v in data.items()}
        else:
            files = {}
        for key, content in files.items():
            (target / key).write_bytes(content)
            (target / key).chmod(0o600)
        mounts[mount["mountPath"]] = target
    return mounts


def start_proxy(core: client.CoreV1Api, deployment: dict[str, Any], log_dir: Path) -> ProxyProcess:
    namespace = deployment["metadata"]["namespace"]
    pod_spec = deployment["spec"]["template"]["spec"]
    root = Path(tempfile.mkdtemp(prefix="etcdproxy-e2e-"))
    mounts = materialize_volumes(core, namespace, pod_spec, root)
    port, metrics = free_port(), free_port()
    argv = []
    for arg in pod_spec["containers"][0]["command"]:
        for mount_path, local in mounts.items():
            arg = arg.replace(mount_path, str(local))
        if arg.startswith("--listen-addr="):
            arg = f"--listen-addr=127.0.0.1:{port}"
        elif arg.startswith("--metrics-addr="):
            arg = f"--metrics-addr=http://127.0.0.1:{metrics}"
        argv.append(arg)
    assert argv[:3] == ["etcd", "grpc-proxy", "start"], argv
    argv[0] = str(BIN_DIR / "etcd")
    log = log_dir / f"{deployment['metadata']['name']}-proxy.log"
    fh = open(log, "ab")
    proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    fh.close()

    def healthy() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", metrics, timeout=2)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    wait_for("etcd grpc-proxy", healthy, 60, proc, log)
    return ProxyProcess(proc, port, metrics, root, log)
