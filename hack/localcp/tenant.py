"""Run a tenant's proxy pod exactly as the operator's Deployment describes it, as local processes.

Pods do not run on the local control plane (kwok fakes them), so the e2e tests take each
container's command and the Secrets/ConfigMaps its volumes mount, write those files the way
kubelet does (``..data`` symlink swapped atomically on update), point the paths there, bind to
loopback ports, and start the real programs: ``etcd grpc-proxy`` and the guard in front of it.
"""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from .cluster import BIN_DIR, free_port, stop_pid, wait_for


@dataclass
class Volume:
    """A ConfigMap/Secret volume written like kubelet's atomic writer: files link into ``..data``."""

    kind: str  # configMap | secret | emptyDir
    name: str
    dir: Path
    generation: int = 0

    def read(self, core: client.CoreV1Api, namespace: str) -> dict[str, bytes]:
        if self.kind == "configMap":
            data = core.read_namespaced_config_map(self.name, namespace).data or {}
            return {k: v.encode() for k, v in data.items()}
        if self.kind == "secret":
            data = core.read_namespaced_secret(self.name, namespace).data or {}
            return {k: base64.b64decode(v) for k, v in data.items()}
        return {}

    def write(self, files: dict[str, bytes]) -> None:
        self.generation += 1
        version = self.dir / f"..v{self.generation}"
        version.mkdir(parents=True)
        for key, content in files.items():
            (version / key).write_bytes(content)
            (version / key).chmod(0o600)
        tmp = self.dir / "..data_tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(version.name)
        os.replace(tmp, self.dir / "..data")
        for key in files:
            link = self.dir / key
            if not link.is_symlink():
                link.symlink_to(Path("..data") / key)

    def sync(self, core: client.CoreV1Api, namespace: str) -> None:
        self.write(self.read(core, namespace))


def volumes_of(pod_spec: dict[str, Any], root: Path) -> dict[str, Volume]:
    out = {}
    for vol in pod_spec["volumes"]:
        if "configMap" in vol:
            out[vol["name"]] = Volume("configMap", vol["configMap"]["name"], root / vol["name"])
        elif "secret" in vol:
            out[vol["name"]] = Volume("secret", vol["secret"]["secretName"], root / vol["name"])
        else:
            out[vol["name"]] = Volume("emptyDir", vol["name"], root / vol["name"])
    return out


@dataclass
class ProxyProcess:
    """The pod: ``port`` is the tenant endpoint (the guard); ``proxy_port`` the loopback proxy."""

    procs: dict[str, subprocess.Popen]
    port: int
    proxy_port: int
    metrics_port: int
    health_port: int
    dir: Path
    logs: dict[str, Path]
    namespace: str
    volumes: dict[str, Volume] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.logs["guard"]

    def sync_volumes(self, core: client.CoreV1Api) -> None:
        """What kubelet does on its next sync: write the current Secret/ConfigMap contents."""
        for vol in self.volumes.values():
            if vol.kind != "emptyDir":
                vol.sync(core, self.namespace)

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_pid(proc.pid)
        shutil.rmtree(self.dir, ignore_errors=True)


def _http_ok(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    finally:
        conn.close()


def _argv(container: dict[str, Any], mounts: dict[str, Path], ports: dict[str, int]) -> list[str]:
    rewrite = {
        "--listen-addr=": f"127.0.0.1:{ports['proxy']}",
        "--metrics-addr=": f"http://127.0.0.1:{ports['metrics']}",
        "--listen=": f"127.0.0.1:{ports['guard']}",
        "--backend=": f"127.0.0.1:{ports['proxy']}",
        "--health-listen=": f"127.0.0.1:{ports['health']}",
    }
    argv = []
    for arg in container["command"]:
        for mount_path, local in mounts.items():
            arg = arg.replace(mount_path, str(local))
        for prefix, value in rewrite.items():
            if arg.startswith(prefix):
                arg = prefix + value
        argv.append(arg)
    if argv[0] == "etcd":
        assert argv[1:3] == ["grpc-proxy", "start"], argv
        return [str(BIN_DIR / "etcd"), *argv[1:]]
    assert argv[0] == "etcdproxy-guard", argv
    # The console script the guard image has on PATH; `make venv` installs the same package.
    return [str(Path(sys.executable).parent / "etcdproxy-guard"), *argv[1:]]


def start_proxy(core: client.CoreV1Api, deployment: dict[str, Any], log_dir: Path) -> ProxyProcess:
    namespace = deployment["metadata"]["namespace"]
    name = deployment["metadata"]["name"]
    pod_spec = deployment["spec"]["template"]["spec"]
    root = Path(tempfile.mkdtemp(prefix="etcdproxy-e2e-"))
    volumes = volumes_of(pod_spec, root)
    for vol in volumes.values():
        vol.dir.mkdir(parents=True)
        if vol.kind != "emptyDir":
            vol.sync(core, namespace)
    ports = {k: free_port() for k in ("proxy", "metrics", "guard", "health")}
    pod = ProxyProcess({}, ports["guard"], ports["proxy"], ports["metrics"], ports["health"], root, {},
                       namespace, volumes)
    try:
        for container in pod_spec["containers"]:
            mounts = {m["mountPath"]: volumes[m["name"]].dir for m in container.get("volumeMounts", [])}
            log = log_dir / f"{name}-{container['name']}.log"
            with open(log, "ab") as fh:
                proc = subprocess.Popen(_argv(container, mounts, ports), stdout=fh, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            pod.procs[container["name"]] = proc
            pod.logs[container["name"]] = log
        wait_for("etcd grpc-proxy", lambda: _http_ok(ports["metrics"], "/health"), 60, pod.procs["proxy"],
                 pod.logs["proxy"])
        wait_for("etcdproxy guard", lambda: _http_ok(ports["health"], "/readyz"), 60, pod.procs["guard"],
                 pod.logs["guard"])
    except BaseException:
        pod.stop()
        raise
    return pod


def start_stock_proxy(core: client.CoreV1Api, deployment: dict[str, Any], log_dir: Path) -> ProxyProcess:
    """The design before the guard, for comparison only: the stock proxy serving tenants itself
    (TLS with the same serving cert and client CA), no guard in front."""
    namespace = deployment["metadata"]["namespace"]
    pod_spec = deployment["spec"]["template"]["spec"]
    root = Path(tempfile.mkdtemp(prefix="etcdproxy-stock-"))
    volumes = volumes_of(pod_spec, root)
    for vol in volumes.values():
        vol.dir.mkdir(parents=True)
        if vol.kind != "emptyDir":
            vol.sync(core, namespace)
    ports = {k: free_port() for k in ("proxy", "metrics", "guard", "health")}
    proxy = next(c for c in pod_spec["containers"] if c["name"] == "proxy")
    mounts = {m["mountPath"]: volumes[m["name"]].dir for m in proxy.get("volumeMounts", [])}
    argv = [*_argv(proxy, mounts, ports),
            f"--cert-file={volumes['serving'].dir / 'tls.crt'}", f"--key-file={volumes['serving'].dir / 'tls.key'}",
            f"--trusted-ca-file={volumes['client-ca'].dir / 'ca.crt'}"]
    log = log_dir / f"{deployment['metadata']['name']}-stock-proxy.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    pod = ProxyProcess({"proxy": proc}, ports["proxy"], ports["proxy"], ports["metrics"], 0, root,
                       {"proxy": log, "guard": log}, namespace, volumes)
    try:
        wait_for("stock etcd grpc-proxy", lambda: _http_ok(ports["metrics"], "/health"), 60, proc, log)
    except BaseException:
        pod.stop()
        raise
    return pod
