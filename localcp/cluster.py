"""A real Kubernetes control plane on 127.0.0.1, started from binaries the project built.

etcd (TLS, client-cert auth; also the "core etcd" tenants share), kube-apiserver
(RBAC, client-cert authn, service-account keys, audit log), kube-controller-manager,
kube-scheduler and kwok (fake kubelets, so Deployments get Ready pods). Every
process is started with free ports, waited on through its health endpoint (never
a sleep), logged to ``<workdir>/logs`` and stopped by PID. ``state.json`` in the
workdir lets another process (``make cluster-down``) find and stop them.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "plugins" / "module_utils"))

from etcdproxy_pki import CertSpec, cert_pem, key_pem, make_ca, make_leaf, new_private_key  # noqa: E402

BIN_DIR = Path(os.environ.get("ETCDPROXY_BIN_DIR", REPO / ".cache" / "bin"))
DEFAULT_WORKDIR = Path(os.environ.get("LOCALCP_DIR", REPO / ".cache" / "localcp"))
KUBE_VERSION = "v1.34.4"
SERVICE_CIDR = "10.96.0.0/16"
FAKE_NODE = "kwok-node-0"
OPERATOR_USER = "system:serviceaccount:kube-apiserver-storage:etcdproxy-operator"


class StartError(RuntimeError):
    """A component did not become healthy; the message names its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check: Callable[[], bool], timeout: float, proc: subprocess.Popen | None = None,
             log: Path | None = None, interval: float = 0.1) -> None:
    """Poll ``check`` until it is true; fail fast if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StartError(f"{what} exited with code {proc.returncode}; see {log}")
        try:
            if check():
                return
        except (OSError, ssl.SSLError, http.client.HTTPException):
            pass
        time.sleep(interval)
    raise StartError(f"{what} not ready after {timeout:.0f}s; see {log}")


def https_get(port: int, path: str, ca: Path | None, cert: Path | None = None, key: Path | None = None,
              timeout: float = 2.0) -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    return _get(http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout), path)


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Plain-HTTP GET on loopback (health endpoints): status and body."""
    return _get(http.client.HTTPConnection("127.0.0.1", port, timeout=timeout), path)


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


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


@dataclass
class Pki:
    """Files of the control plane's two CAs and the certs issued from them."""

    dir: Path

    def path(self, name: str, ext: str = "crt") -> Path:
        return self.dir / f"{name}.{ext}"

    def write(self, name: str, cert, key) -> None:
        self.path(name).write_text(cert_pem(cert))
        kp = self.path(name, "key")
        kp.write_text(key_pem(key))
        kp.chmod(0o600)

    def generate(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.UTC)
        year = datetime.timedelta(days=365)
        cas = {}
        for ca in ("etcd-ca", "kube-ca", "front-proxy-ca"):
            key = new_private_key()
            cert = make_ca(CertSpec(common_name=f"localcp {ca}", usage="ca"), key, now, year)
            self.write(ca, cert, key)
            cas[ca] = (cert, key)
        leaves = {
            # name: (ca, spec)
            "etcd-server": ("etcd-ca", CertSpec(common_name="etcd", usage="peer",
                                                dns_names=("localhost",), ip_addresses=("127.0.0.1",))),
            "apiserver-etcd-client": ("etcd-ca", CertSpec(common_name="kube-apiserver", usage="client")),
            # etcd grpc-proxy refuses a backend client cert with a Common Name.
            "operator-etcd-client": ("etcd-ca", CertSpec(organization="etcdproxy-operator", usage="client")),
            "apiserver": ("kube-ca", CertSpec(common_name="kube-apiserver", usage="server",
                                              dns_names=("localhost", "kubernetes", "kubernetes.default",
                                                         "kubernetes.default.svc"),
                                              ip_addresses=("127.0.0.1", "10.96.0.1"))),
            "admin": ("kube-ca", CertSpec(common_name="admin", organization="system:masters", usage="client")),
            "controller-manager": ("kube-ca", CertSpec(common_name="system:kube-controller-manager",
                                                       usage="client")),
            "scheduler": ("kube-ca", CertSpec(common_name="system:kube-scheduler", usage="client")),
            # The operator runs as its ServiceAccount's user name, so config/rbac is what authorizes it
            # (and its requests are countable in the audit log).
            "operator": ("kube-ca", CertSpec(common_name=OPERATOR_USER, organization="system:serviceaccounts",
                                             usage="client")),
            "kwok": ("kube-ca", CertSpec(common_name="kwok", organization="system:masters", usage="client")),
            "front-proxy-client": ("front-proxy-ca", CertSpec(common_name="front-proxy-client", usage="client")),
            "serving-localhost": ("kube-ca", CertSpec(common_name="localhost", usage="server",
                                                      dns_names=("localhost",), ip_addresses=("127.0.0.1",))),
        }
        for name, (ca, spec) in leaves.items():
            ca_cert, ca_key = cas[ca]
            key = new_private_key()
            self.write(name, make_leaf(spec, key.public_key(), ca_cert, ca_key, now, year), key)
        sa = new_private_key("rsa")
        self.path("sa", "key").write_text(key_pem(sa))
        self.path("sa", "key").chmod(0o600)
        from cryptography.hazmat.primitives import serialization

        self.path("sa", "pub").write_bytes(sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


@dataclass
class Process:
    name: str
    pid: int
    log: str


@dataclass
class ControlPlane:
    """Start/stop the whole local control plane. ``etcd_members`` > 1 makes a loopback etcd cluster."""

    workdir: Path = DEFAULT_WORKDIR
    etcd_members: int = 1
    # The core's --quota-backend-bytes (etcd's own default, 2 GiB; tests of the core's headroom use less).
    etcd_quota_bytes: int = 2 << 30
    bin_dir: Path = BIN_DIR
    processes: list[Process] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    # ---- paths -----------------------------------------------------------------
    @property
    def pki(self) -> Pki:
        return Pki(self.workdir / "pki")

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def operator_kubeconfig(self) -> Path:
        return self.workdir / "operator.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.logs / "audit.log"

    @property
    def etcd_endpoints(self) -> list[str]:
        return [f"https://127.0.0.1:{self.ports[f'etcd{i}']}" for i in range(self.etcd_members)]

    @property
    def state_file(self) -> Path:
        return self.workdir / "state.json"

    # ---- lifecycle ---------------------------------------------------------------
    def start(self) -> ControlPlane:
        t0 = time.monotonic()
        missing = [b for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
                   if not (self.bin_dir / b).exists()]
        if missing:
            raise StartError(f"missing binaries {missing} in {self.bin_dir}; run `make tools`")
        if self.state_file.exists():
            ControlPlane.load(self.workdir).stop()
        for sub in ("etcd", "logs"):
            d = self.workdir / sub
            if d.exists():
                subprocess.run(["rm", "-rf", str(d)], check=True)
        self.logs.mkdir(parents=True)
        self.pki.generate()
        try:
            self._start_etcd()
            self._start_apiserver()
            self._write_kubeconfigs()
            self._start_controllers()
            self._create_fake_node()
        except BaseException:
            self.save()
            self.stop()
            raise
        self.timings["total_s"] = round(time.monotonic() - t0, 3)
        self.save()
        return self

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = self.logs / f"{name}.log"
        fh = open(log, "ab")
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=self.workdir)
        fh.close()
        self.processes.append(Process(name, proc.pid, str(log)))
        self.save()
        return proc

    def _start_etcd(self) -> None:
        t0 = time.monotonic()
        for i in range(self.etcd_members):
            self.ports[f"etcd{i}"] = free_port()
            self.ports[f"etcd{i}-peer"] = free_port()
        procs = [self._spawn(f"etcd{i}", self._etcd_argv(i)) for i in range(self.etcd_members)]
        for i, proc in enumerate(procs):
            self.wait_etcd_member(i, proc)
        self.timings["etcd_s"] = round(time.monotonic() - t0, 3)

    def _etcd_argv(self, i: int) -> list[str]:
        p = self.pki
        cluster = ",".join(f"core{j}=http://127.0.0.1:{self.ports[f'etcd{j}-peer']}"
                           for j in range(self.etcd_members))
        url = f"https://127.0.0.1:{self.ports[f'etcd{i}']}"
        peer = f"http://127.0.0.1:{self.ports[f'etcd{i}-peer']}"
        return [
            str(self.bin_dir / "etcd"), f"--name=core{i}", f"--data-dir={self.workdir}/etcd/core{i}",
            f"--listen-client-urls={url}", f"--advertise-client-urls={url}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={cluster}", "--initial-cluster-state=new",
            "--initial-cluster-token=localcp",
            f"--cert-file={p.path('etcd-server')}", f"--key-file={p.path('etcd-server', 'key')}",
            f"--trusted-ca-file={p.path('etcd-ca')}", "--client-cert-auth",
            "--listen-metrics-urls=", "--log-level=warn",
            f"--quota-backend-bytes={self.etcd_quota_bytes}",
        ]

    def stop_etcd_member(self, i: int) -> None:
        for proc in [p for p in self.processes if p.name == f"etcd{i}"]:
            stop_pid(proc.pid)
            self.processes.remove(proc)
        self.save()

    def start_etcd_member(self, i: int) -> None:
        """Start a stopped member again on its ports and data dir (it rejoins the cluster)."""
        proc = self._spawn(f"etcd{i}", self._etcd_argv(i))
        self.wait_etcd_member(i, proc)

    def etcd_member_healthy(self, i: int) -> bool:
        p = self.pki
        status, body = https_get(self.ports[f"etcd{i}"], "/health", p.path("etcd-ca"),
                                 p.path("apiserver-etcd-client"), p.path("apiserver-etcd-client", "key"))
        return status == 200 and json.loads(body).get("health") == "true"

    def wait_etcd_member(self, i: int, proc: subprocess.Popen | None = None, timeout: float = 60) -> None:
        wait_for(f"etcd member {i}", lambda: self.etcd_member_healthy(i), timeout, proc,
                 self.logs / f"etcd{i}.log")

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again on the same port (kubeconfigs stay valid)."""
        for proc in [p for p in self.processes if p.name == "kube-apiserver"]:
            stop_pid(proc.pid)
            self.processes.remove(proc)
        self._start_apiserver(reuse_port=True)
        self.save()

    def _start_apiserver(self, reuse_port: bool = False) -> None:
        t0 = time.monotonic()
        p = self.pki
        if not (reuse_port and "apiserver" in self.ports):
            self.ports["apiserver"] = free_port()
        policy = self.workdir / "audit-policy.yaml"
        # Log every request that is not a read, at Metadata level: the benchmark
        # counts the operator's writes from it.
        policy.write_text(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n"
            "- level: None\n  verbs: [get, list, watch]\n- level: Metadata\n"
        )
        proc = self._spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={','.join(self.etcd_endpoints)}",
            f"--etcd-cafile={p.path('etcd-ca')}", f"--etcd-certfile={p.path('apiserver-etcd-client')}",
            f"--etcd-keyfile={p.path('apiserver-etcd-client', 'key')}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}",
            f"--tls-cert-file={p.path('apiserver')}", f"--tls-private-key-file={p.path('apiserver', 'key')}",
            f"--client-ca-file={p.path('kube-ca')}",
            "--authorization-mode=RBAC", "--anonymous-auth=true",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={p.path('sa', 'pub')}",
            f"--service-account-signing-key-file={p.path('sa', 'key')}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--endpoint-reconciler-type=none", "--allow-privileged=true",
            f"--audit-policy-file={policy}", f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json", "--audit-log-mode=blocking",
            f"--cert-dir={self.workdir}/apiserver-certs",
            f"--requestheader-client-ca-file={p.path('front-proxy-ca')}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={p.path('front-proxy-client')}",
            f"--proxy-client-key-file={p.path('front-proxy-client', 'key')}",
        ])
        admin = (p.path("admin"), p.path("admin", "key"))

        def ready() -> bool:
            status, _ = https_get(self.ports["apiserver"], "/readyz", p.path("kube-ca"), *admin)
            return status == 200

        wait_for("kube-apiserver", ready, 120, proc, self.logs / "kube-apiserver.log", interval=0.2)
        self.timings["apiserver_s"] = round(time.monotonic() - t0, 3)

    def _kubeconfig_for(self, user: str) -> Path:
        p = self.pki
        path = self.workdir / ("admin.kubeconfig" if user == "admin" else f"{user}.kubeconfig")
        return write_kubeconfig(path, self.ports["apiserver"], p.path("kube-ca"), p.path(user), p.path(user, "key"),
                                user)

    def _write_kubeconfigs(self) -> None:
        for user in ("admin", "controller-manager", "scheduler", "kwok", "operator"):
            self._kubeconfig_for(user)

    def _start_controllers(self) -> None:
        t0 = time.monotonic()
        p = self.pki
        serving = [f"--tls-cert-file={p.path('serving-localhost')}",
                   f"--tls-private-key-file={p.path('serving-localhost', 'key')}"]
        self.ports["controller-manager"] = free_port()
        kcm = self._spawn("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.workdir}/controller-manager.kubeconfig",
            f"--authentication-kubeconfig={self.workdir}/controller-manager.kubeconfig",
            f"--authorization-kubeconfig={self.workdir}/controller-manager.kubeconfig",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['controller-manager']}", *serving,
            "--leader-elect=false", "--use-service-account-credentials=true",
            "--controllers=garbage-collector-controller,deployment-controller,replicaset-controller,"
            "serviceaccount-controller,serviceaccount-token-controller,namespace-controller",
            f"--service-account-private-key-file={p.path('sa', 'key')}",
            f"--root-ca-file={p.path('kube-ca')}",
            "--concurrent-gc-syncs=5",
        ])
        self.ports["scheduler"] = free_port()
        sched = self._spawn("kube-scheduler", [
            str(self.bin_dir / "kube-scheduler"),
            f"--kubeconfig={self.workdir}/scheduler.kubeconfig",
            f"--authentication-kubeconfig={self.workdir}/scheduler.kubeconfig",
            f"--authorization-kubeconfig={self.workdir}/scheduler.kubeconfig",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports['scheduler']}", *serving,
            "--leader-elect=false",
        ])
        stages = REPO / "hack" / "localcp" / "kwok-stages.yaml"
        self.ports["kwok"] = free_port()
        kwok = self._spawn("kwok", [
            str(self.bin_dir / "kwok"), f"--kubeconfig={self.workdir}/kwok.kubeconfig",
            f"--config={stages}", "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--cidr=10.0.0.0/16", "--node-ip=10.0.0.1",
            f"--server-address=127.0.0.1:{self.ports['kwok']}",
        ])
        for name, proc in (("kube-controller-manager", kcm), ("kube-scheduler", sched)):
            port = self.ports["controller-manager" if name == "kube-controller-manager" else "scheduler"]
            wait_for(name, lambda port=port: https_get(port, "/healthz", None)[0] == 200, 60, proc,
                     self.logs / f"{name}.log")

        def kwok_ok() -> bool:
            return http_get(self.ports["kwok"], "/healthz")[0] == 200

        wait_for("kwok", kwok_ok, 60, kwok, self.logs / "kwok.log")
        self.timings["controllers_s"] = round(time.monotonic() - t0, 3)

    def api(self):
        """A kubernetes ApiClient for the admin user."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def _create_fake_node(self) -> None:
        from kubernetes import client

        t0 = time.monotonic()
        core = client.CoreV1Api(self.api())
        core.create_node({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": FAKE_NODE, "annotations": {"kwok.x-k8s.io/node": "fake"},
                         "labels": {"kubernetes.io/hostname": FAKE_NODE, "type": "kwok",
                                    "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
            "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000", "ephemeral-storage": "100Gi"},
                       "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000", "ephemeral-storage": "100Gi"}},
        })

        # The TaintNodesByCondition admission plugin taints every new node
        # not-ready; without a node-lifecycle controller nothing would lift it.
        core.patch_node(FAKE_NODE, {"spec": {"taints": None}})

        def node_ready() -> bool:
            node = core.read_node(FAKE_NODE)
            return any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))

        wait_for("fake node", node_ready, 60, None, self.logs / "kwok.log")
        self.timings["node_s"] = round(time.monotonic() - t0, 3)

    def save(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({
            "etcd_members": self.etcd_members, "etcd_quota_bytes": self.etcd_quota_bytes,
            "ports": self.ports, "timings": self.timings,
            "processes": [p.__dict__ for p in self.processes],
        }, indent=1))

    @classmethod
    def load(cls, workdir: Path = DEFAULT_WORKDIR) -> ControlPlane:
        state = json.loads((workdir / "state.json").read_text())
        cp = cls(workdir=workdir, etcd_members=state["etcd_members"],
                 etcd_quota_bytes=state.get("etcd_quota_bytes", 2 << 30))
        cp.ports = state["ports"]
        cp.timings = state.get("timings", {})
        cp.processes = [Process(**p) for p in state["processes"]]
        return cp

    def stop(self) -> None:
        """Stop every process we started, newest first; SIGKILL what ignores SIGTERM."""
        for proc in reversed(self.processes):
            stop_pid(proc.pid)
        self.processes = []
        if self.state_file.exists():
            self.state_file.unlink()

    def log_tails(self, lines: int = 20) -> str:
        out = []
        for proc in self.processes:
            text = Path(proc.log).read_text(errors="replace").splitlines()[-lines:]
            out.append(f"==> {proc.log} <==\n" + "\n".join(text))
        return "\n".join(out)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if we can.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return Path(f"/proc/{pid}").exists() and "Z" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def stop_pid(pid: int, timeout: float = 15) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)
