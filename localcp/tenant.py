"""Run a tenant's proxy pod exactly as the operator's Deployment describes it, as local processes.

Pods do not run on the local control plane (kwok fakes them), so the e2e tests take the
container's command and the Secrets/ConfigMaps its volumes mount, write those files the way
kubelet does (``..data`` symlink swapped atomically on update), point the paths there, bind to
loopback ports, and start the real program: ``etcdproxy-guard`` built from ``guard/``.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from .config import BIN_DIR
from .probes import free_port, http_get, wait_for
from .processes import stop_pid


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
    """The pod's process: ``port`` is the tenant endpoint, ``health_port`` its HTTP health port."""

    proc: subprocess.Popen
    port: int
    health_port: int
    dir: Path
    log: Path
    namespace: str
    volumes: dict[str, Volume] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def metrics_text(self) -> str:
        return http_get(self.health_port, "/metrics", timeout=5)[1].decode()

    def metric(self, name: str, **labels: str) -> float:
        """Value of one sample from the endpoint's /metrics (0 if absent)."""
        for line in self.metrics_text().splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def sync_volumes(self, core: client.CoreV1Api) -> None:
        """What kubelet does on its next sync: write the current Secret/ConfigMap contents."""
        for vol in self.volumes.values():
            if vol.kind != "emptyDir":
                vol.sync(core, self.namespace)

    def stop(self) -> None:
        stop_pid(self.proc.pid)
        shutil.rmtree(self.dir, ignore_errors=True)


def _materialize(core: client.CoreV1Api, deployment: dict[str, Any], prefix: str
                 ) -> tuple[dict[str, Any], dict[str, Volume], dict[str, Path], Path]:
    """The endpoint container, its volumes written like kubelet does, and mountPath -> local dir."""
    namespace = deployment["metadata"]["namespace"]
    pod_spec = deployment["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    root = Path(tempfile.mkdtemp(prefix=prefix))
    volumes = volumes_of(pod_spec, root)
    for vol in volumes.values():
        vol.dir.mkdir(parents=True)
        if vol.kind != "emptyDir":
            vol.sync(core, namespace)
    mounts = {m["mountPath"]: volumes[m["name"]].dir for m in container.get("volumeMounts", [])}
    return container, volumes, mounts, root


def _local_args(container: dict[str, Any], mounts: dict[str, Path], port: int, health: int) -> list[str]:
    """The container's command with files and ports made local."""
    rewrite = {"--listen=": f"127.0.0.1:{port}", "--health-listen=": f"127.0.0.1:{health}"}
    argv = []
    for arg in container["command"]:
        for mount_path, local in mounts.items():
            arg = arg.replace(mount_path, str(local))
        for prefix, value in rewrite.items():
            if arg.startswith(prefix):
                arg = prefix + value
        argv.append(arg)
    assert argv[0] == "etcdproxy-guard", argv
    return argv


def _spawn(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        return subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def start_proxy(core: client.CoreV1Api, deployment: dict[str, Any], log_dir: Path,
                extra_args: tuple[str, ...] = (), label: str = "guard") -> ProxyProcess:
    """The tenant endpoint exactly as the Deployment describes it (the guard binary built from guard/);
    ``extra_args`` only for benchmarks comparing a flag's effect."""
    container, volumes, mounts, root = _materialize(core, deployment, "etcdproxy-e2e-")
    port, health = free_port(), free_port()
    argv = [*_local_args(container, mounts, port, health), *extra_args]
    argv[0] = str(BIN_DIR / "etcdproxy-guard")
    log = log_dir / f"{deployment['metadata']['name']}-{label}.log"
    pod = ProxyProcess(_spawn(argv, log), port, health, root, log, deployment["metadata"]["namespace"], volumes)
    return _ready(pod, "etcdproxy-guard", "/readyz")


# The guard flags named after grpc-proxy's, which the stock proxy understands the same way.
STOCK_PROXY_FLAGS = {"--namespace", "--endpoints", "--cacert", "--cert", "--key", "--listen", "--cert-file",
                     "--key-file", "--trusted-ca-file", "--health-listen"}


def start_stock_proxy(core: client.CoreV1Api, deployment: dict[str, Any], log_dir: Path) -> ProxyProcess:
    """For comparison only: the stock ``etcd grpc-proxy`` with the same flags and files (the design
    before the guard). The guard's flags are named after grpc-proxy's, so the mapping is direct."""
    container, volumes, mounts, root = _materialize(core, deployment, "etcdproxy-stock-")
    port, health = free_port(), free_port()
    argv = [str(BIN_DIR / "etcd"), "grpc-proxy", "start", f"--data-dir={root / 'data'}"]
    for arg in _local_args(container, mounts, port, health)[1:]:
        if arg.split("=", 1)[0] not in STOCK_PROXY_FLAGS:
            continue  # the guard's own (limits, core reserve): the stock proxy has no such thing
        if arg.startswith("--listen="):
            arg = f"--listen-addr=127.0.0.1:{port}"
        elif arg.startswith("--health-listen="):
            arg = f"--metrics-addr=http://127.0.0.1:{health}"
        argv.append(arg)
    log = log_dir / f"{deployment['metadata']['name']}-stock-proxy.log"
    pod = ProxyProcess(_spawn(argv, log), port, health, root, log, deployment["metadata"]["namespace"], volumes)
    return _ready(pod, "stock etcd grpc-proxy", "/health")


def _ready(pod: ProxyProcess, what: str, path: str) -> ProxyProcess:
    """Wait for ``path`` on the health port to answer 200; stop the process if it never does."""
    try:
        wait_for(f"{what} {path}", lambda: http_get(pod.health_port, path, timeout=3)[0] == 200, 60, pod.proc, pod.log)
    except BaseException:
        pod.stop()
        raise
    return pod


def delivered_files(core: client.CoreV1Api, namespace: str, out_dir: Path, configmap: str = "etcd-ca",
                    secret: str = "etcd-client") -> tuple[str, str, str]:
    """What an API server in ``namespace`` was given: serving CA bundle, client cert, client key (paths)."""
    bundle = core.read_namespaced_config_map(configmap, namespace).data["serving-ca.crt"]
    data = core.read_namespaced_secret(secret, namespace).data
    paths = []
    for fname, content in (("ca.crt", bundle.encode()), ("tls.crt", base64.b64decode(data["tls.crt"])),
                           ("tls.key", base64.b64decode(data["tls.key"]))):
        path = out_dir / f"{namespace}-{configmap}-{secret}-{fname}"
        path.write_bytes(content)
        path.chmod(0o600)
        paths.append(str(path))
    return paths[0], paths[1], paths[2]


def etcdctl(endpoint: str, ca: str, cert: str, key: str, *args: str) -> subprocess.CompletedProcess:
    """The pinned etcdctl against ``endpoint`` with the given TLS material (as an API server would connect)."""
    return subprocess.run([str(BIN_DIR / "etcdctl"), f"--endpoints={endpoint}", f"--cacert={ca}", f"--cert={cert}",
                           f"--key={key}", "--dial-timeout=5s", "--command-timeout=10s", *args],
                          capture_output=True, text=True, timeout=60)
